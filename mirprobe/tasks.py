"""From a metadata table and extracted features to probe-ready arrays.

Label encoding belongs to the task type (:mod:`mirprobe.task_types`, which
lists the encodings); ``encode_labels`` looks it up by name.

:func:`split_arrays` aligns features to metadata by clip id. Every clip of the
table must have features unless the resampling manifests list it as
excluded; anything else is an error, so no clip is dropped silently.
"""

from dataclasses import dataclass

import numpy as np

from .datasets.base import SPLITS
from .errors import DataError
from .task_types import task_type_of


def encode_labels(task_type, label_strings, *, labels):
    """Encode metadata label strings as probe targets, as ``task_type`` does."""
    return task_type_of(task_type).encode(label_strings, labels=labels)


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
    task = task_type_of(task_type)
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
            y=task.encode(rows["label"].tolist(), labels=labels),
            groups=rows["song_id"].tolist(),
        )
    return out
