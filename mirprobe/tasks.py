"""From a metadata table and extracted features to probe-ready arrays.

Label encodings, by task type (see :mod:`mirprobe.datasets.base` for the label
strings in the metadata table):

``multiclass``, ``key``
    ``y`` is an int64 vector of indices into the dataset's ``labels()``.
``multilabel``
    ``y`` is a uint8 matrix ``(n, n_labels)``; the label string is ``|``-joined tags.
``regression``
    ``y`` is a float32 matrix ``(n, n_outputs)``; the label string is ``|``-joined floats.

:func:`split_arrays` aligns features to metadata by clip id. Every clip of the
table must have features unless the resampling manifests list it as
excluded; anything else is an error, so no clip is dropped silently.
"""

from dataclasses import dataclass

import numpy as np

from .datasets.base import SPLITS
from .errors import DataError


def encode_labels(task_type, label_strings, *, labels):
    """Encode metadata label strings as probe targets."""
    if task_type in ("multiclass", "key"):
        index = {name: i for i, name in enumerate(labels)}
        unknown = sorted({s for s in label_strings if s not in index})
        if unknown:
            raise DataError(f"labels {unknown[:5]} are not among the task's labels {labels}")
        return np.array([index[s] for s in label_strings], dtype=np.int64)
    if task_type == "multilabel":
        index = {name: i for i, name in enumerate(labels)}
        y = np.zeros((len(label_strings), len(labels)), dtype=np.uint8)
        for row, tags in enumerate(label_strings):
            for tag in filter(None, tags.split("|")):
                if tag not in index:
                    raise DataError(f"tag {tag!r} is not among the task's tags")
                y[row, index[tag]] = 1
        return y
    if task_type == "regression":
        try:
            y = np.array([[float(v) for v in s.split("|")] for s in label_strings], np.float32)
        except ValueError as error:
            raise DataError(f"regression labels must be |-joined floats ({error})") from None
        if y.ndim != 2 or y.shape[1] != len(labels):
            raise DataError(
                f"regression labels have shape {y.shape}, {len(labels)} outputs expected"
            )
        return y
    raise DataError(f"unknown task type {task_type!r}")


@dataclass
class SplitArrays:
    clip_ids: list
    X: np.ndarray
    y: np.ndarray
    groups: list


def split_arrays(metadata, clip_ids, X, *, task_type, labels, excluded=()):
    """``{split: SplitArrays}`` for the clips of ``metadata`` that have features.

    ``excluded`` maps clip id -> reason for clips left out by the bad-audio
    policy; a clip that is neither embedded nor excluded is an error.
    """
    row_of = {clip_id: i for i, clip_id in enumerate(clip_ids)}
    if len(row_of) != len(clip_ids):
        raise DataError("duplicate clip ids across feature shards")
    excluded = dict(excluded)
    missing = [c for c in metadata["clip_id"] if c not in row_of and c not in excluded]
    if missing:
        raise DataError(
            f"{len(missing)} clips have no features and were not excluded: {missing[:5]}"
        )
    unknown = sorted(set(clip_ids) - set(metadata["clip_id"]))
    if unknown:
        raise DataError(f"features for clips absent from the metadata: {unknown[:5]}")
    out = {}
    for split in SPLITS:
        rows = metadata[(metadata["split"] == split) & metadata["clip_id"].isin(row_of)]
        if rows.empty:
            raise DataError(f"split {split!r} has no clips with features")
        ids = rows["clip_id"].tolist()
        out[split] = SplitArrays(
            clip_ids=ids,
            X=X[[row_of[c] for c in ids]],
            y=encode_labels(task_type, rows["label"].tolist(), labels=labels),
            groups=rows["song_id"].tolist(),
        )
    return out
