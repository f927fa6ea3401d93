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
    from .task_types import task_type_of

    if not task_type_of(predictions.task_type).scores_songs:
        return [np.array([i]) for i in range(len(predictions.clip_id))]
    _, song_of_clip = np.unique(predictions.song_id, return_inverse=True)
    return [np.flatnonzero(song_of_clip == s) for s in range(song_of_clip.max() + 1)]


def unit_values(predictions):
    """``{metric: (numerator, denominator)}`` per resampling unit (in
    :func:`_units` order) of the metrics that are ratios of sums over units
    (``TaskType.unit_values``): accuracy per clip, key scores per song."""
    from .task_types import task_type_of

    p = predictions
    task_type = task_type_of(p.task_type)
    return task_type.unit_values(
        p.target,
        p.scores,
        labels=p.labels,
        groups=task_type.song_groups(p.song_id),
        ensemble=p.ensemble,
    )


def bootstrap_distribution(predictions, metrics, *, resamples, seed, rescore_all=False):
    """``{metric: array (resamples,)}``: each metric on each resample.

    A metric that is a ratio of sums over units (:func:`unit_values`) is scored
    once per unit and its resamples are sums of those values over each draw, the
    same numbers as rescoring each resample. R² and ROC-AUC / AP
    (:func:`_vectorised_distribution`) are computed for all resamples at once
    from each clip's multiplicity in each draw, the same numbers to float
    rounding; anything else is rescored on each resample, as all are with
    ``rescore_all``.
    """
    units = _units(predictions)
    draws = resample_draws(len(units), resamples=resamples, seed=seed)
    values = {}
    decomposed = {} if rescore_all else unit_values(predictions)
    for m in metrics:
        if m in decomposed:
            numerator, denominator = decomposed[m]
            if denominator is None:
                values[m] = numerator[draws].mean(axis=1)
            else:
                values[m] = numerator[draws].sum(axis=1) / denominator[draws].sum(axis=1)
    if not rescore_all:
        values.update(_vectorised_distribution(predictions, metrics, draws=draws))
    rescored = [m for m in metrics if m not in values]
    if rescored:
        values.update(_rescored_distribution(predictions, rescored, units=units, draws=draws))
    return {m: values[m] for m in metrics}


def _vectorised_distribution(predictions, metrics, *, draws):
    """``{metric: array (resamples,)}`` of the metrics of ``metrics`` that have a
    vectorised form (``TaskType.resampled_metrics``: R² of a regression cell,
    ROC-AUC and AP of a multilabel one; units are clips for both). Others are left
    out (rescored by the caller)."""
    from .task_types import task_type_of

    p = predictions
    return task_type_of(p.task_type).resampled_metrics(
        p.target, p.scores, labels=p.labels, metrics=metrics, draws=draws
    )


CHUNK_ELEMENTS = 1 << 22
"""Resample x clip (x output) elements held at once by the vectorised paths."""


def _chunks(n_resamples, per_resample):
    step = max(1, CHUNK_ELEMENTS // max(1, per_resample))
    return [slice(start, start + step) for start in range(0, n_resamples, step)]


def r2_distribution(target, scores, labels, metrics, *, draws):
    """``r2_<label>`` and ``r2_mean`` of every resample, as
    ``sklearn.metrics.r2_score`` gives them (a constant target scores 1 if
    predicted exactly, else 0)."""
    y = np.asarray(target, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim == 1:
        y, s = y[:, None], s[:, None]
    if draws.shape[1] < 2:
        raise DataError(f"R² needs at least 2 examples, got {draws.shape[1]}")
    r2 = np.empty((len(draws), y.shape[1]))
    for rows in _chunks(len(draws), draws.shape[1] * y.shape[1]):
        yt, ys = y[draws[rows]], s[draws[rows]]  # (chunk, n, outputs)
        residual = ((yt - ys) ** 2).sum(axis=1)
        total = ((yt - yt.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2[rows] = np.where(total > 0, 1 - residual / total, np.where(residual == 0, 1.0, 0.0))
    out = {f"r2_{label}": r2[:, i] for i, label in enumerate(labels)}
    out["r2_mean"] = r2.mean(axis=1)
    return {m: out[m] for m in metrics if m in out}


RANKED_METRICS = ("roc_auc_macro", "ap_macro", "roc_auc_micro", "ap_micro")


def _multiplicities(draws, n):
    """``(resamples, n)`` counts of each clip in each draw."""
    flat = (draws + n * np.arange(len(draws))[:, None]).ravel()
    return np.bincount(flat, minlength=len(draws) * n).reshape(len(draws), n)


def _weighted_ranked(scores, positive, weights):
    """ROC-AUC and AP of one ranking for every row of ``weights`` (each row: how
    many times each item counts). An item drawn k times is k tied copies, so
    both are scikit-learn's on the repeated items: the Mann-Whitney statistic
    (ties count half) and the sum over distinct thresholds of recall gained
    times precision. Returns ``(auc, ap, n_pos, n_neg)`` per row."""
    order = np.argsort(-scores, kind="stable")
    ordered = scores[order]
    # tie blocks of equal scores, in descending order
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    hit = positive[order]
    w = weights[:, order].astype(np.float64)
    pos = np.add.reduceat(w * hit, starts, axis=1)  # (rows, blocks)
    neg = np.add.reduceat(w * ~hit, starts, axis=1)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    n_pos, n_neg = tp[:, -1], fp[:, -1]
    with np.errstate(divide="ignore", invalid="ignore"):
        below = n_neg[:, None] - fp + 0.5 * neg  # negatives ranked under (ties: half)
        auc = (pos * below).sum(axis=1) / (n_pos * n_neg)
        precision = np.where(pos > 0, tp / (tp + fp), 0.0)
        ap = (pos * precision).sum(axis=1) / n_pos
    return auc, ap, n_pos, n_neg


def ranked_distribution(target, scores, metrics, *, draws):
    """Macro and micro ROC-AUC / AP of every resample (``multilabel_metrics``:
    a macro mean skips the tags with no positive or no negative in the resample;
    a metric with nothing to score is nan)."""
    positive = np.asarray(target).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n, c = positive.shape
    out = {m: np.empty(len(draws)) for m in metrics}
    macro = [m for m in metrics if m.endswith("_macro")]
    micro = [m for m in metrics if m.endswith("_micro")]
    for rows in _chunks(len(draws), n * (c if micro else 1)):
        weights = _multiplicities(draws[rows], n)
        if macro:
            auc = np.empty((len(weights), c))
            ap = np.empty((len(weights), c))
            scorable = np.empty((len(weights), c), dtype=bool)
            for tag in range(c):
                a, b, n_pos, n_neg = _weighted_ranked(s[:, tag], positive[:, tag], weights)
                auc[:, tag], ap[:, tag] = a, b
                scorable[:, tag] = (n_pos > 0) & (n_neg > 0)
            kept = scorable.sum(axis=1)
            with np.errstate(divide="ignore", invalid="ignore"):
                means = {
                    "roc_auc_macro": np.where(scorable, auc, 0).sum(axis=1) / kept,
                    "ap_macro": np.where(scorable, ap, 0).sum(axis=1) / kept,
                }
            for m in macro:
                out[m][rows] = np.where(kept > 0, means[m], np.nan)
        if micro:
            a, b, n_pos, n_neg = _weighted_ranked(
                s.ravel(), positive.ravel(), np.repeat(weights, c, axis=1)
            )
            defined = (n_pos > 0) & (n_neg > 0)
            for m, v in (("roc_auc_micro", a), ("ap_micro", b)):
                if m in micro:
                    out[m][rows] = np.where(defined, v, np.nan)
    return out


def _rescored_distribution(predictions, metrics, *, units, draws):
    """Each metric recomputed (``cell_metrics``) on each resample's clips."""
    from .predictions import cell_metrics

    values = {m: np.empty(len(draws)) for m in metrics}
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


# -- the table's uncertainty (issue 12): intervals per cell, paired comparisons


def _row_key(name, row_keys):
    """A configured comparison side, ``representation`` or ``representation/layer``,
    as the row key it names (``(representation, layer)``)."""
    matches = [k for k in row_keys if "/".join(k) == name] or [k for k in row_keys if k[0] == name]
    if len(matches) != 1:
        raise DataError(
            f"table.comparisons: {name!r} names no single table row; "
            f"choose among {sorted('/'.join(k) for k in row_keys)}"
        )
    return matches[0]


def table_uncertainty(predictions, *, tasks, rows, settings, pairs=()):
    """Intervals of every cell and paired comparisons, on shared resamples.

    ``predictions``: ``{(row_key, task): Predictions}``; ``tasks``:
    ``[(task, title, metrics)]``; ``rows``: ``[(row_key, title)]``;
    ``settings``: ``{"resamples", "confidence", "seed"}``; ``pairs``:
    ``[{"a", "b", "task"?}]`` compared besides each row against the best row of
    each task (on the primary metric). Returns ``(intervals, comparisons)``:
    ``{(row_key, task): {metric: {"value", "low", "high"}}}`` and a list of
    ``{"task", "a", "b", "metric", "difference", "low", "high"}``.
    """
    from .metrics import PRIMARY_METRIC
    from .predictions import cell_metrics

    resamples, confidence, seed = (settings[k] for k in ("resamples", "confidence", "seed"))
    titles = dict(rows)
    intervals, spreads, points = {}, {}, {}
    for task, _, metrics in tasks:
        for row_key, _ in rows:
            p = predictions[(row_key, task)]
            wanted = list(dict.fromkeys([*metrics, PRIMARY_METRIC[p.task_type]]))
            spread = bootstrap_distribution(p, wanted, resamples=resamples, seed=seed)
            point = cell_metrics(p)
            spreads[(row_key, task)], points[(row_key, task)] = spread, point
            cell = intervals[(row_key, task)] = {}
            for m in wanted:
                low, high = percentile_interval(spread[m], confidence)
                cell[m] = {"value": float(point[m]), "low": low, "high": high}
    wanted_pairs = []
    for task, _, _ in tasks:
        keys = [k for k, _ in rows]
        primary = PRIMARY_METRIC[predictions[(keys[0], task)].task_type]
        best = max(keys, key=lambda k: (points[(k, task)][primary], -keys.index(k)))
        wanted_pairs += [(task, best, k, primary) for k in keys if k != best]
    for pair in pairs:
        a, b = (_row_key(pair[side], titles) for side in ("a", "b"))
        for task, _, _ in tasks:
            if pair.get("task") in (None, task):
                primary = PRIMARY_METRIC[predictions[(a, task)].task_type]
                wanted_pairs.append((task, a, b, primary))
    comparisons = []
    for task, a, b, metric in dict.fromkeys(wanted_pairs):
        pa, pb = predictions[(a, task)], predictions[(b, task)]
        if pa.clip_id.tolist() != pb.clip_id.tolist():
            raise DataError(f"{task}: {a} and {b} were tested on other clips; not paired")
        low, high = percentile_interval(
            spreads[(a, task)][metric] - spreads[(b, task)][metric], confidence
        )
        comparisons.append(
            {
                "task": task,
                "a": titles[a],
                "b": titles[b],
                "metric": metric,
                "difference": points[(a, task)][metric] - points[(b, task)][metric],
                "low": low,
                "high": high,
            }
        )
    return intervals, comparisons


def compact(value, low, high):
    """``79.7 [77.5, 81.9]``, in percent."""
    return f"{100 * value:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


def compact_body(body, *, rows, tasks, intervals):
    """The table's lines with each computed cell as ``value [low, high]``."""
    out = []
    for (row_key, _), line in zip(rows, body, strict=True):
        cells, column = [line[0]], 1
        for task, _, metrics in tasks:
            for m in metrics:
                i = intervals[(row_key, task)][m]
                # the value as the table prints it (from the test record)
                cells.append(f"{line[column]} [{100 * i['low']:.1f}, {100 * i['high']:.1f}]")
                column += 1
        out.append(cells)
    return out


def interval_columns(header_titles, *, rows, tasks, intervals, confidence):
    """CSV header and per-row values of the interval columns (percent, one decimal)."""
    level = f"{100 * confidence:g}%"
    header = [f"{t} {level} {end}" for t in header_titles for end in ("low", "high")]
    values = []
    for row_key, _ in rows:
        line = []
        for task, _, metrics in tasks:
            for m in metrics:
                i = intervals[(row_key, task)][m]
                line += [f"{100 * i['low']:.1f}", f"{100 * i['high']:.1f}"]
        values.append(line)
    return header, values


def comparison_lines(comparisons, *, titles):
    """``a − b on Task (metric): +11.0 [+6.2, +15.9]`` lines."""
    return [
        f"{c['a']} − {c['b']} on {titles.get(c['task'], c['task'])} ({c['metric']}): "
        f"{100 * c['difference']:+.1f} [{100 * c['low']:+.1f}, {100 * c['high']:+.1f}]"
        for c in comparisons
    ]
