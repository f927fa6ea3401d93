"""Per-clip test predictions of one table cell, saved beside its test record.

One ``.npz`` (read with ``allow_pickle=False``) per cell, written by the
evaluate stage from the very scores its metrics were computed from:

``clip_id``, ``song_id``
    the test clips in metadata order, and each clip's song (``""`` where the
    dataset has none); key is scored per song.
``target``
    the encoded targets (see :mod:`mirprobe.tasks`).
``scores``
    the probe's raw outputs, ``(n_clips, n_outputs)``: logits, or regression values.
``decision``
    what the probe decides per clip: the argmax class (multiclass, key; key's
    table scores pool a song's clips first, see ``ensemble``), the tags whose
    logit is above 0 (multilabel), the values themselves (regression).
``labels``, ``task_type``, ``ensemble``
    the output names in column order, the task type and the song pooling strategy.
``split_train``, ``split_valid``, ``split_test``
    the clip ids of each split the cell used (after exclusions).

:func:`cell_metrics` recomputes the cell's test metrics from the file with
:func:`mirprobe.metrics.compute_metrics`, the function the test record's came from.
"""

from dataclasses import dataclass

import numpy as np

from .atomic import atomic_path
from .errors import DataError

FIELDS = ("clip_id", "song_id", "target", "scores", "decision", "labels", "task_type", "ensemble")
SPLIT_FIELDS = ("split_train", "split_valid", "split_test")


@dataclass
class Predictions:
    clip_id: np.ndarray
    song_id: np.ndarray
    target: np.ndarray
    scores: np.ndarray
    decision: np.ndarray
    labels: list
    task_type: str
    ensemble: str
    splits: dict


def decisions(task_type, scores):
    """The probe's per-clip decision from its raw ``scores``."""
    from .task_types import task_type_of

    return task_type_of(task_type).decide(scores)


def _strings(values):
    return np.array(["" if v is None or v != v else str(v) for v in values], dtype=str)


def write_predictions(
    path, *, task_type, labels, clip_ids, song_ids, target, scores, ensemble, splits
):
    """Write one cell's test predictions (``splits``: ``{split: clip ids}``)."""
    scores = np.asarray(scores)
    if len(clip_ids) != scores.shape[0] or len(target) != scores.shape[0]:
        raise DataError(
            f"{path}: {len(clip_ids)} clip ids, {len(target)} targets and "
            f"{scores.shape[0]} score rows; they must be one per test clip"
        )
    arrays = {
        "clip_id": _strings(clip_ids),
        "song_id": _strings(song_ids),
        "target": np.asarray(target),
        "scores": scores,
        "decision": decisions(task_type, scores),
        "labels": _strings(labels),
        "task_type": np.array(task_type),
        "ensemble": np.array(ensemble),
    }
    for split in ("train", "valid", "test"):
        arrays[f"split_{split}"] = _strings(splits[split])
    with atomic_path(path) as tmp:
        # np.savez adds ".npz" to a name without it: give it an open file
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)


def read_predictions(path):
    """Load a predictions file, checking it has every field."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable predictions file ({error})") from None
    with data:
        missing = [k for k in FIELDS + SPLIT_FIELDS if k not in data.files]
        if missing:
            raise DataError(f"{path}: predictions file lacks {missing}")
        return Predictions(
            clip_id=data["clip_id"],
            song_id=data["song_id"],
            target=data["target"],
            scores=data["scores"],
            decision=data["decision"],
            labels=data["labels"].tolist(),
            task_type=str(data["task_type"]),
            ensemble=str(data["ensemble"]),
            splits={k[len("split_") :]: data[k].tolist() for k in SPLIT_FIELDS},
        )


def cell_metrics(predictions, index=None, *, groups=None):
    """The test metrics of ``predictions`` (of the clips at ``index``, repeats allowed;
    ``groups`` overrides the song ids, as a bootstrap over songs must)."""
    from .metrics import compute_metrics

    p = predictions
    rows = slice(None) if index is None else index
    from .task_types import task_type_of

    groups = task_type_of(p.task_type).song_groups(p.song_id[rows] if groups is None else groups)
    return compute_metrics(
        p.task_type,
        y_true=p.target[rows],
        scores=p.scores[rows],
        labels=p.labels,
        groups=groups,
        ensemble=p.ensemble,
    )


def checked_predictions(provenance, test_record, *, provenance_path):
    """The predictions file a provenance record names, checked against its digest
    and against the test record's metrics (the table prints those)."""
    from .datasets.base import file_sha256

    named = provenance.get("predictions")
    if not named:
        raise DataError(
            f"{provenance_path}: names no per-clip predictions file (made before they "
            f"were saved); remake it: snakemake --forcerun evaluate_probe"
        )
    path = named["path"]
    try:
        digest = file_sha256(path)
    except OSError as error:
        raise DataError(f"{provenance_path}: its predictions file {path}: {error}") from None
    if digest != named["sha256"]:
        raise DataError(
            f"{path}: sha256 {digest}, but {provenance_path} records {named['sha256']}; "
            f"the file changed since: snakemake --forcerun evaluate_probe"
        )
    predictions = read_predictions(path)
    rescored = cell_metrics(predictions)
    for metric, value in test_record["metrics"].items():
        if isinstance(value, float) and not np.isclose(rescored.get(metric), value, atol=1e-9):
            raise DataError(
                f"{path}: rescores {metric} to {rescored.get(metric)}, but the test "
                f"record says {value}"
            )
    return predictions
