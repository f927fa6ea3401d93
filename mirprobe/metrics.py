"""Evaluation metrics for probes: the reference implementations that the task
types (:mod:`mirprobe.task_types`, one class per task type) compute their
metrics with, and ``compute_metrics``, which dispatches to them.

Conventions
-----------
Every task type has one *primary* metric, the number that early stopping,
model selection and the results table use (``PRIMARY_METRIC``, derived from
the task types' ``primary_metric``):

=============  ==================  ==========================================
task type      primary metric      what ``y_true`` holds
=============  ==================  ==========================================
``multiclass`` ``accuracy``        int class index per example, shape (n,)
``key``        ``weighted_score``  int key index per clip, shape (n,)
``multilabel`` ``roc_auc_macro``   0/1 matrix, shape (n, n_outputs)
``regression`` ``r2_mean``         float matrix, shape (n, n_outputs)
=============  ==================  ==========================================

``scores`` are always the probe's raw outputs, shape (n, n_outputs): logits
for the classification tasks (no softmax or sigmoid needed; ROC-AUC and
average precision only depend on the ranking), values for regression.
``labels`` name the outputs, in column order.

Metrics are computed with the field's reference implementations:
scikit-learn (accuracy, R², ROC-AUC, average precision) and
``mir_eval.key.weighted_score`` (MIREX key score).

multiclass
    ``accuracy``: fraction of examples whose argmax equals ``y_true``.
key
    Clips are first pooled per song. ``groups`` gives the song id of each
    clip (``None``: each clip is its own song); every clip of a song must
    carry the same key. ``ensemble`` picks how clip scores become one song
    prediction (see ``ensemble_song_scores``):

    ``vote``        majority of the clips' argmaxes; ties go to the lowest
                    class index
    ``max_logit``   argmax of the element-wise maximum of the clip logits
    ``mean_logit``  argmax of the mean clip logit
    ``mean_prob``   argmax of the mean clip softmax probability

    ``weighted_score`` is the mean over songs of
    ``mir_eval.key.weighted_score(reference, estimate)`` (1 same key, 0.5
    fifth, 0.3 relative, 0.2 parallel, 0 otherwise); the labels must
    therefore be key strings such as ``"C major"`` or ``"Db minor"``.
    ``accuracy`` is the song-level accuracy and ``clip_accuracy`` the
    accuracy of the individual clips.
multilabel
    ``roc_auc_macro`` and ``ap_macro`` (average precision, also called
    PR-AUC) are means over tags; ``roc_auc_micro`` and ``ap_micro`` pool
    all (example, tag) pairs. A tag with no positive (or no negative)
    example in the evaluated split has no ROC-AUC; such tags are excluded
    from *both* macro means explicitly, reported as ``tags_excluded`` (their
    names) next to ``n_tags_scored``, and named in a ``TagExclusionWarning``.
    The micro metrics keep every tag (they stay well defined). A metric
    that is undefined altogether (no scorable tag, or no positive or no
    negative in the whole matrix) is ``nan``, with a warning; nothing raises.
regression
    ``r2_<label>`` is the coefficient of determination of each output and
    ``r2_mean`` their unweighted mean.

Every returned dict also holds ``"primary"``, a copy of the primary metric.
All metric values are Python floats.

Functions
---------
``compute_metrics(task_type, *, y_true, scores, labels, groups=None,
ensemble="mean_prob") -> dict``
    All metrics of one task type.
``ensemble_song_scores(scores, groups, *, strategy) -> (song_ids,
song_pred_index)``
    Pool clip scores into one predicted class index per song.
``multilabel_metrics_batched(y_true, scores, *, labels) -> list of dict``
    The multilabel metrics of a stack of k score matrices at once, from
    ranks (Mann-Whitney ROC-AUC with average ranks for ties; average
    precision over distinct thresholds); equal to scikit-learn's to float
    rounding. ``ranked_binary_scores`` is its per-column core.

Errors
------
An unknown task type or ensemble strategy raises ``ConfigError``; scores and
targets of mismatched shapes, non-finite scores, out-of-range classes, or
songs whose clips disagree on their key raise ``DataError``. Both are
``ValueError`` subclasses and their messages name the offending value.
"""

import math
import warnings

import numpy as np

from mirprobe.errors import ConfigError, DataError

ENSEMBLE_STRATEGIES = ("vote", "max_logit", "mean_logit", "mean_prob")


class TagExclusionWarning(UserWarning):
    """Tags were left out of the macro means: no positive or no negative example."""


def compute_metrics(
    task_type: str,
    *,
    y_true,
    scores,
    labels,
    groups=None,
    ensemble: str = "mean_prob",
) -> dict:
    """Compute every metric of ``task_type`` from raw probe outputs.

    Parameters
    ----------
    task_type : one of ``TASK_TYPES``
    y_true : targets, see the module docstring for the shape per task type
    scores : array, shape (n, n_outputs); logits or regression values
    labels : sequence of str, length n_outputs; output names in column order
    groups : array, shape (n,), optional; song id per clip (``key`` only)
    ensemble : one of ``ENSEMBLE_STRATEGIES`` (``key`` only)

    Returns
    -------
    dict of metric name -> float, plus ``"primary"``; for ``multilabel``
    also ``n_tags_scored`` (int) and ``tags_excluded`` (list of str).
    """
    from mirprobe.task_types import task_type_of

    return task_type_of(task_type).metrics(
        y_true=y_true, scores=scores, labels=labels, groups=groups, ensemble=ensemble
    )


def __getattr__(name):
    # derived from the task-type registry, which imports this module
    from mirprobe import task_types

    if name == "TASK_TYPES":
        return tuple(task_types.TASK_TYPES)
    if name == "PRIMARY_METRIC":
        return {t.name: t.primary_metric for t in task_types.TASK_TYPES.values()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def ensemble_song_scores(scores, groups, *, strategy: str):
    """Pool clip scores into one predicted class index per song.

    Parameters
    ----------
    scores : array, shape (n_clips, n_classes); clip logits
    groups : array, shape (n_clips,); song id of each clip
    strategy : one of ``ENSEMBLE_STRATEGIES`` (see the module docstring)

    Returns
    -------
    song_ids : array, shape (n_songs,); the unique song ids, sorted
    song_pred_index : int array, shape (n_songs,); predicted class per song
    """
    if strategy not in ENSEMBLE_STRATEGIES:
        raise ConfigError(
            f"unknown ensemble strategy {strategy!r}; expected one of {list(ENSEMBLE_STRATEGIES)}"
        )
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise DataError(
            f"scores must be a non-empty (n_clips, n_classes) matrix, got shape {scores.shape}"
        )
    groups = np.asarray(groups)
    if groups.shape != (scores.shape[0],):
        raise DataError(
            f"groups must have shape ({scores.shape[0]},) like the scores' rows, got {groups.shape}"
        )
    song_ids, song_of_clip = np.unique(groups, return_inverse=True)
    n_songs, n_classes = len(song_ids), scores.shape[1]

    if strategy == "vote":
        clip_pred = scores.argmax(axis=1)
        votes = np.zeros((n_songs, n_classes), dtype=np.int64)
        np.add.at(votes, (song_of_clip, clip_pred), 1)
        # argmax returns the first maximum: ties go to the lowest class index
        return song_ids, votes.argmax(axis=1)
    if strategy == "max_logit":
        pooled = np.full((n_songs, n_classes), -np.inf)
        np.maximum.at(pooled, song_of_clip, scores)
        return song_ids, pooled.argmax(axis=1)

    if strategy == "mean_prob":
        shifted = scores - scores.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        scores = exp / exp.sum(axis=1, keepdims=True)
    pooled = np.zeros((n_songs, n_classes))
    np.add.at(pooled, song_of_clip, scores)
    pooled /= np.bincount(song_of_clip, minlength=n_songs)[:, None]
    return song_ids, pooled.argmax(axis=1)


# -- validation ---------------------------------------------------------------


def validate_labels(labels):
    if isinstance(labels, str):
        raise DataError(f"labels must be a sequence of names, got the string {labels!r}")
    labels = [str(label) for label in labels]
    if not labels:
        raise DataError("labels is empty; expected one name per output")
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise DataError(f"labels must be unique; repeated: {duplicates}")
    return labels


def validate_scores(scores, *, n_outputs):
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise DataError(f"scores must be a 2-D (n, n_outputs) array, got shape {scores.shape}")
    if scores.shape[0] == 0:
        raise DataError("scores has no rows; cannot evaluate an empty split")
    if scores.shape[1] != n_outputs:
        raise DataError(f"scores has {scores.shape[1]} columns but labels name {n_outputs} outputs")
    bad_rows = int((~np.isfinite(scores)).any(axis=1).sum())
    if bad_rows:
        raise DataError(f"scores hold NaN or inf in {bad_rows} of {len(scores)} rows")
    return scores


def validate_class_indices(y_true, *, n, n_classes):
    y_true = np.asarray(y_true)
    if y_true.shape != (n,):
        raise DataError(
            f"y_true must be a vector of {n} class indices (one per score row), "
            f"got shape {y_true.shape}"
        )
    if not np.issubdtype(y_true.dtype, np.integer) and not (
        np.isfinite(y_true).all() and (y_true == np.round(y_true)).all()
    ):
        raise DataError(f"y_true must hold integer class indices, got dtype {y_true.dtype}")
    y_true = y_true.astype(np.int64)
    out_of_range = (y_true < 0) | (y_true >= n_classes)
    if out_of_range.any():
        raise DataError(
            f"y_true holds class index {int(y_true[out_of_range][0])}, outside "
            f"[0, {n_classes}) for {n_classes} labels"
        )
    return y_true


def validate_target_matrix(y_true, *, shape, binary):
    y_true = np.asarray(y_true, dtype=np.float64)
    if y_true.ndim == 1 and shape[1] == 1:
        y_true = y_true[:, None]
    if y_true.shape != shape:
        raise DataError(f"y_true must have the scores' shape {shape}, got {y_true.shape}")
    if binary:
        if not np.isin(y_true, (0.0, 1.0)).all():
            bad = y_true[~np.isin(y_true, (0.0, 1.0))][0]
            raise DataError(f"multilabel y_true must hold only 0 and 1, found {bad}")
        return y_true.astype(np.int64)
    bad_rows = int((~np.isfinite(y_true)).any(axis=1).sum())
    if bad_rows:
        raise DataError(f"y_true holds NaN or inf in {bad_rows} of {len(y_true)} rows")
    return y_true


# -- per-task metrics ---------------------------------------------------------


def accuracy(y_true, y_pred):
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y_true, y_pred))


def key_metrics(y_true, scores, *, labels, groups, ensemble):
    import mir_eval

    if ensemble not in ENSEMBLE_STRATEGIES:
        raise ConfigError(
            f"unknown ensemble strategy {ensemble!r}; expected one of {list(ENSEMBLE_STRATEGIES)}"
        )
    for label in labels:
        try:
            mir_eval.key.validate_key(label)
        except ValueError as error:
            raise DataError(
                f"key label {label!r} is not a mir_eval key string "
                f"like 'C major' or 'Db minor': {error}"
            ) from None
    if groups is None:
        groups = np.arange(len(y_true))
    groups = np.asarray(groups)
    if groups.shape != y_true.shape:
        raise DataError(
            f"groups must give one song id per clip, shape {y_true.shape}, got {groups.shape}"
        )
    song_ids, song_pred = ensemble_song_scores(scores, groups, strategy=ensemble)
    _, song_of_clip = np.unique(groups, return_inverse=True)
    song_true = np.empty(len(song_ids), dtype=np.int64)
    song_true[song_of_clip] = y_true
    disagree = song_true[song_of_clip] != y_true
    if disagree.any():
        song = groups[disagree][0]
        raise DataError(f"the clips of song {song!r} carry different keys")

    song_scores = [
        mir_eval.key.weighted_score(labels[ref], labels[est])
        for ref, est in zip(song_true, song_pred, strict=True)
    ]
    return {
        "weighted_score": float(np.mean(song_scores)),
        "accuracy": accuracy(song_true, song_pred),
        "clip_accuracy": accuracy(y_true, scores.argmax(axis=1)),
    }


def _scorable_tags(y_true, labels, *, stacklevel):
    """Tags with both a positive and a negative in ``y_true`` (a mask), and the
    names of the others, excluded from the macro means with a warning."""
    n_positive = y_true.sum(axis=0)
    scorable = (n_positive > 0) & (n_positive < len(y_true))
    excluded = [label for label, ok in zip(labels, scorable, strict=True) if not ok]
    if excluded:
        warnings.warn(
            f"{len(excluded)} of {len(labels)} tags have no positive or no "
            f"negative example in this split and are excluded from the macro "
            f"means: {excluded}",
            TagExclusionWarning,
            stacklevel=stacklevel,
        )
    return scorable, excluded


def multilabel_metrics(y_true, scores, *, labels):
    from sklearn.metrics import average_precision_score, roc_auc_score

    scorable, excluded = _scorable_tags(y_true, labels, stacklevel=6)
    if scorable.any():
        kept_true, kept_scores = y_true[:, scorable], scores[:, scorable]
        roc_auc_macro = float(roc_auc_score(kept_true, kept_scores, average="macro"))
        ap_macro = float(average_precision_score(kept_true, kept_scores, average="macro"))
    else:
        warnings.warn(
            "no tag has both positive and negative examples; macro metrics are nan",
            TagExclusionWarning,
            stacklevel=5,
        )
        roc_auc_macro = ap_macro = math.nan

    total_positive = int(y_true.sum())
    if 0 < total_positive < y_true.size:
        roc_auc_micro = float(roc_auc_score(y_true, scores, average="micro"))
        ap_micro = float(average_precision_score(y_true, scores, average="micro"))
    else:
        warnings.warn(
            "y_true has no positive or no negative entry at all; micro metrics are nan",
            TagExclusionWarning,
            stacklevel=5,
        )
        roc_auc_micro = ap_micro = math.nan

    return {
        "roc_auc_macro": roc_auc_macro,
        "ap_macro": ap_macro,
        "roc_auc_micro": roc_auc_micro,
        "ap_micro": ap_micro,
        "n_tags_scored": int(scorable.sum()),
        "tags_excluded": excluded,
    }


def regression_metrics(y_true, scores, *, labels):
    from sklearn.metrics import r2_score

    if len(y_true) < 2:
        raise DataError(f"R² needs at least 2 examples, got {len(y_true)}")
    per_output = r2_score(y_true, scores, multioutput="raw_values")
    metrics = {f"r2_{label}": float(r2) for label, r2 in zip(labels, per_output, strict=True)}
    metrics["r2_mean"] = float(np.mean(per_output))
    return metrics


# -- fast, batched multilabel metrics -------------------------------------------
#
# The same numbers as ``_multilabel_metrics`` (scikit-learn), for a stack of
# score matrices at once, from one descending sort per (matrix, tag) (numpy).
# ROC-AUC is the Mann-Whitney statistic with average ranks for tied scores,
# ``(R+ - P (P + 1) / 2) / (P N)``: the rank sums are exact in float64, so a
# value differs from scikit-learn's trapezoid only by the trapezoid's own
# rounding (a few ulps). Average precision is scikit-learn's uninterpolated
# sum over distinct thresholds, ``sum_t (TP_t - TP_{t-1}) / P * TP_t / (TP_t +
# FP_t)``, evaluated at the end of each block of tied scores.


def ranked_binary_scores(positive, scores, *, need_ap=True):
    """ROC-AUC and average precision of every column of a stack of score matrices.

    Parameters
    ----------
    positive : bool array, shape (n, c); the truth, shared by the stack
    scores : float array (or CPU torch tensor), shape (k, n, c); finite values
        (only their order and ties matter, so float32 outputs need no conversion)
    need_ap : also compute average precision

    Returns
    -------
    (auc, ap) : float64 arrays, shape (k, c); ``ap`` is ``None`` unless
    ``need_ap``. Columns with no positive or no negative get ``nan`` AUC (and
    ``nan`` AP without positives), as scikit-learn leaves them undefined.
    """
    scores = np.asarray(scores)
    positive = np.asarray(positive, dtype=bool)
    k, n, c = scores.shape
    # One run of n scores per (matrix, column), sorted in descending order.
    runs = np.swapaxes(scores, 1, 2)
    truth = positive.T
    if scores.dtype == np.float32 or np.array_equal(runs.astype(np.float32), runs):
        # Sort keys, not indices: each float32 score as an order-preserving
        # integer, shifted left one bit to carry its truth, all bits inverted so
        # that an ascending sort (contiguous, no reversed view) gives descending
        # scores. One plain integer sort yields the ties and the truth at once;
        # within a tie block the order is irrelevant (average ranks).
        as_float = np.array(runs, dtype=np.float32, order="C")  # a copy: changed in place
        as_float += np.float32(0)  # -0 -> +0
        bits = as_float.view(np.uint32)
        # negative floats: flip every bit; positive: flip the sign bit (the mask
        # is the sign smeared by an arithmetic shift, with the sign bit set)
        flips = as_float.view(np.int32) >> 31
        flips |= np.int32(-(2**31))
        bits ^= flips.view(np.uint32)
        keys = bits.astype(np.int64)
        keys <<= 1
        keys |= truth
        np.invert(keys, out=keys)
        keys = np.sort(keys.reshape(k * c, n), axis=-1)
        is_hit = (keys & 1) == 0  # the truth bit was inverted too
        # equal scores differ at most in the (truth) bit 0
        same_as_next = (keys[:, 1:] ^ keys[:, :-1]) <= 1
    else:
        runs = np.ascontiguousarray(runs)
        order = np.argsort(runs, axis=-1)[..., ::-1]
        values = np.take_along_axis(runs, order, axis=-1).reshape(k * c, n)
        is_hit = truth[np.arange(c)[:, None], order].reshape(k * c, n)
        same_as_next = values[:, 1:] == values[:, :-1]
    positives = _Positives(is_hit)
    # Without ties, the positive at descending position i has ascending rank
    # n - i, and, as the j-th positive from the top, its threshold's precision
    # is j / (i + 1): only the positives' positions are needed.
    rank_sum = positives.row_sum(n - positives.pos)
    if need_ap:
        precision_sum = positives.row_sum(positives.jth / (positives.pos + 1))
    # Tied scores (common in a micro-average's tens of thousands of float32
    # scores) take their block's average rank and the precision at the block's
    # end: correct just the elements of tie blocks.
    if same_as_next.any():
        rank_fix, precision_fix = _tie_corrections(same_as_next, is_hit, positives, need_ap)
        rank_sum += rank_fix
        if need_ap:
            precision_sum += precision_fix
    n_pos = positives.count.astype(np.float64)
    n_neg = n - n_pos
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
        auc = np.where((n_pos > 0) & (n_neg > 0), auc, np.nan).reshape(k, c)
        if not need_ap:
            return auc, None
        ap = np.where(n_pos > 0, precision_sum / n_pos, np.nan).reshape(k, c)
    return auc, ap


class _Positives:
    """Where the positives sit in rows of descending-sorted scores.

    ``is_hit`` (rows, n) bool. ``flat`` are the positives' flat indices,
    ``row``/``pos`` their row and 0-based position, ``jth`` their 1-based
    rank among their row's positives, ``count`` the positives per row.
    """

    def __init__(self, is_hit):
        self.rows, self.n = is_hit.shape
        self.flat = np.flatnonzero(is_hit)
        self.row, self.pos = np.divmod(self.flat, self.n)
        self.count = np.bincount(self.row, minlength=self.rows)
        self.before = np.concatenate([[0], np.cumsum(self.count)[:-1]])
        self.jth = np.arange(1, len(self.flat) + 1) - self.before[self.row]

    def row_sum(self, values):
        """Per-row sums of ``values`` given per positive (float64, also with none)."""
        sums = np.bincount(self.row, weights=values, minlength=self.rows)
        return sums.astype(np.float64, copy=False)  # bincount of nothing is int64

    def true_positives_at(self, row, pos):
        """Positives at or above position ``pos`` of ``row`` (arrays)."""
        through = np.searchsorted(self.flat, row * self.n + pos, side="right")
        return through - self.before[row]


def _tie_corrections(same_as_next, is_hit, positives, need_ap):
    """What tie blocks change in the positional rank and precision sums.

    ``same_as_next`` (rows, n - 1) marks a descending-sorted score equal to the
    next one; ``is_hit`` (rows, n) is the truth in that order. Every element
    of a tie block gets the block's average rank and the precision at the
    block's end (its threshold) instead of its positional ones. Only
    elements in tie blocks are visited, as one flat sequence of blocks.
    Returns per-row corrections (rank, precision or ``None``).
    """
    rows, n = is_hit.shape
    in_tie = np.zeros((rows, n), dtype=bool)
    in_tie[:, :-1] |= same_as_next
    in_tie[:, 1:] |= same_as_next
    if not (in_tie & is_hit).any():  # ties among negatives only change nothing
        return np.zeros(rows), (np.zeros(rows) if need_ap else None)
    tied = np.flatnonzero(in_tie)
    row, pos = np.divmod(tied, n)
    # a block opens at a tied element not equal to the one before it
    opens = np.ones(len(tied), dtype=bool)
    inner = pos > 0
    opens[inner] = ~same_as_next[row[inner], pos[inner] - 1]
    starts = np.flatnonzero(opens)
    block = np.cumsum(opens) - 1
    first, block_row = pos[starts], row[starts]
    last = np.append(pos[starts[1:] - 1], pos[-1])
    hit = is_hit.reshape(-1)[tied].astype(np.float64)
    block_hits = np.bincount(block, weights=hit)
    positional = np.bincount(block, weights=hit * (n - pos))
    average_rank = n - (first + last) / 2  # ascending, 1-based
    rank_fix = np.bincount(
        block_row, weights=block_hits * average_rank - positional, minlength=rows
    )
    if not need_ap:
        return rank_fix, None
    running = positives.true_positives_at(row, pos)
    positional = np.bincount(block, weights=hit * running / (pos + 1))
    at_end = block_hits * positives.true_positives_at(block_row, last) / (last + 1)
    return rank_fix, np.bincount(block_row, weights=at_end - positional, minlength=rows)


def multilabel_metrics_batched(y_true, scores, *, labels) -> list:
    """``compute_metrics("multilabel", ...)`` for a stack of score matrices, fast.

    ``scores`` has shape (k, n, n_outputs) (a numpy array or torch tensor,
    finite); ``y_true`` is the 0/1 matrix (n, n_outputs) shared by all k.
    Returns k dicts with the keys and meaning of ``compute_metrics``'s
    multilabel result (``primary`` included); every value equals
    scikit-learn's to float rounding (|difference| < 1e-12 in the tests),
    and identical rankings give bit-identical values. Tags without a positive
    or a negative are excluded from the macro means with one
    ``TagExclusionWarning`` per call.
    """
    labels = validate_labels(labels)
    scores = np.asarray(scores)
    if scores.ndim != 3 or scores.shape[-1] != len(labels) or scores.shape[1] == 0:
        raise DataError(f"scores must have shape (k, n, {len(labels)}), got {scores.shape}")
    if not np.isfinite(scores).all():
        raise DataError("scores hold NaN or inf")
    y_true = validate_target_matrix(y_true, shape=scores.shape[1:], binary=True)
    k = scores.shape[0]
    scorable, excluded = _scorable_tags(y_true, labels, stacklevel=3)
    positive = y_true.astype(bool)
    nan = np.full(k, math.nan)
    roc_macro, ap_macro = nan, nan
    if scorable.any():
        auc, ap = ranked_binary_scores(positive[:, scorable], scores[:, :, scorable])
        roc_macro, ap_macro = auc.mean(axis=1), ap.mean(axis=1)
    roc_micro, ap_micro = nan, nan
    total_positive = int(y_true.sum())
    if 0 < total_positive < y_true.size:
        auc, ap = ranked_binary_scores(positive.reshape(-1, 1), scores.reshape(k, -1, 1))
        roc_micro, ap_micro = auc[:, 0], ap[:, 0]
    return [
        {
            "roc_auc_macro": float(roc_macro[j]),
            "ap_macro": float(ap_macro[j]),
            "roc_auc_micro": float(roc_micro[j]),
            "ap_micro": float(ap_micro[j]),
            "n_tags_scored": int(scorable.sum()),
            "tags_excluded": list(excluded),
            "primary": float(roc_macro[j]),
        }
        for j in range(k)
    ]
