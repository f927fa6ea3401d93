"""Bootstrap confidence intervals of test metrics, and of paired differences.

The unit resampled is what the metric scores: a clip, or for ``key`` a song
(all of a song's clips are drawn together, and a song drawn twice counts
twice). Each resample's metrics come from :func:`mirprobe.predictions.cell_metrics`,
that is :func:`mirprobe.metrics.compute_metrics`, the function behind the
table's numbers. Intervals are percentile intervals.

The draws depend only on the seed and the number of units, so every cell of
one test set sees the same resamples: the difference of two rows, resample by
resample, is a paired bootstrap (:func:`paired_difference`).
"""

import warnings

import numpy as np

from .errors import DataError

DEFAULTS = {"resamples": 1000, "confidence": 0.95, "seed": 0}


def resample_draws(n_units, *, resamples, seed):
    """``(resamples, n_units)`` unit indices drawn with replacement."""
    if n_units < 1:
        raise DataError("cannot bootstrap an empty test set")
    return np.random.default_rng(seed).integers(0, n_units, size=(resamples, n_units))


def _units(predictions):
    """The rows of each resampling unit: songs for key, else clips."""
    if predictions.task_type != "key":
        return [np.array([i]) for i in range(len(predictions.clip_id))]
    _, song_of_clip = np.unique(predictions.song_id, return_inverse=True)
    return [np.flatnonzero(song_of_clip == s) for s in range(song_of_clip.max() + 1)]


def bootstrap_distribution(predictions, metrics, *, resamples, seed):
    """``{metric: array (resamples,)}``: each metric on each resample."""
    from .predictions import cell_metrics

    units = _units(predictions)
    draws = resample_draws(len(units), resamples=resamples, seed=seed)
    values = {m: np.empty(resamples) for m in metrics}
    with warnings.catch_warnings():
        # a resample may hold no positive of a tag: the metric then skips it, as it says
        warnings.simplefilter("ignore")
        for r, draw in enumerate(draws):
            index = np.concatenate([units[u] for u in draw])
            # a song drawn twice is two songs: number each drawn copy
            groups = np.repeat(np.arange(len(draw)), [len(units[u]) for u in draw])
            result = cell_metrics(predictions, index, groups=groups)
            for m in metrics:
                values[m][r] = result.get(m, np.nan)
    return values


def percentile_interval(values, confidence):
    """The central ``confidence`` interval of the finite ``values``."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (float("nan"), float("nan"))
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return (float(low), float(high))


def cell_intervals(predictions, metrics, *, resamples, confidence, seed):
    """``{metric: {"value", "low", "high"}}`` for one cell's predictions."""
    from .predictions import cell_metrics

    point = cell_metrics(predictions)
    spread = bootstrap_distribution(predictions, metrics, resamples=resamples, seed=seed)
    out = {}
    for m in metrics:
        low, high = percentile_interval(spread[m], confidence)
        out[m] = {"value": float(point[m]), "low": low, "high": high}
    return out


def paired_difference(a, b, metrics, *, resamples, confidence, seed):
    """``{metric: {"difference", "low", "high"}}`` of ``a`` minus ``b`` on the same
    resamples of their common test set (the two must hold the same clips, in order)."""
    from .predictions import cell_metrics

    if a.clip_id.tolist() != b.clip_id.tolist():
        raise DataError("a paired comparison needs two cells of one test set (same clips)")
    spread_a = bootstrap_distribution(a, metrics, resamples=resamples, seed=seed)
    spread_b = bootstrap_distribution(b, metrics, resamples=resamples, seed=seed)
    point_a, point_b = cell_metrics(a), cell_metrics(b)
    out = {}
    for m in metrics:
        low, high = percentile_interval(spread_a[m] - spread_b[m], confidence)
        out[m] = {"difference": float(point_a[m] - point_b[m]), "low": low, "high": high}
    return out
