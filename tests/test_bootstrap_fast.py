"""The bootstrap's fast paths give the numbers of rescoring every resample with
``cell_metrics``, on random cells of every task type: the per-unit path
(metrics scored once per clip or song, then summed over each resample's draws)
the very same numbers, the vectorised one (R², ROC-AUC, AP from each clip's
multiplicity in each draw) the same to 1e-9."""

import numpy as np
import pytest

from mirprobe.bootstrap import (
    _vectorised_distribution,
    bootstrap_distribution,
    resample_draws,
    unit_values,
)
from mirprobe.metrics import ENSEMBLE_STRATEGIES
from mirprobe.predictions import cell_metrics, read_predictions, write_predictions
from mirprobe.task_types import task_type_of

KEYS = ["C major", "G major", "A minor", "E minor", "F major", "D minor"]


def _cell(tmp_path, task_type, rng, *, ensemble="mean_prob"):
    """A random cell: songs of 1 to 5 clips for key, clips otherwise."""
    if task_type == "key":
        clips_per_song = rng.integers(1, 6, size=int(rng.integers(5, 40)))
        song = np.repeat(np.arange(len(clips_per_song)), clips_per_song)
        # ids not in song order, so the units' sorted order differs from the rows'
        order = rng.permutation(len(song))
        song = song[order]
        labels = KEYS
        target = rng.integers(0, len(labels), size=len(clips_per_song))[song]
        song_ids = [f"song{s:03d}" for s in song]
    else:
        n = int(rng.integers(10, 80))
        song_ids = [None] * n
        if task_type == "multiclass":
            labels = ["a", "b", "c"]
            target = rng.integers(0, 3, size=n)
        elif task_type == "multilabel":
            labels = ["t0", "t1", "t2", "t3"]
            # t3 is rare: some resamples hold none of it (the macro means skip it)
            target = (rng.random((n, 4)) < [0.4, 0.5, 0.3, 0.04]).astype(int)
        else:
            labels = ["arousal", "valence"]
            target = rng.normal(size=(n, 2))
    n = len(song_ids)
    # coarse scores, so ties (argmax, votes, ranks) occur
    scores = rng.integers(-2, 3, size=(n, len(labels))).astype(float) + 0.0
    if task_type == "regression":
        scores = target + rng.normal(size=target.shape)
    ids = [f"clip{i:04d}" for i in range(n)]
    path = tmp_path / f"{task_type}-{rng.integers(1 << 30)}.npz"
    write_predictions(
        path,
        task_type=task_type,
        labels=labels,
        clip_ids=ids,
        song_ids=song_ids,
        target=target,
        scores=scores,
        ensemble=ensemble,
        splits={"train": [], "valid": [], "test": ids},
    )
    return read_predictions(path)


CASES = [
    ("multiclass", None, ["accuracy"]),
    *[("key", e, ["weighted_score", "accuracy", "clip_accuracy"]) for e in ENSEMBLE_STRATEGIES],
    ("multilabel", None, ["roc_auc_macro", "ap_macro", "roc_auc_micro", "ap_micro"]),
    ("regression", None, ["r2_mean", "r2_arousal", "r2_valence"]),
]
VECTORISED = {"multilabel": set(CASES[-2][2]), "regression": set(CASES[-1][2])}


@pytest.mark.parametrize(("task_type", "ensemble", "metrics"), CASES)
def test_the_per_unit_path_equals_rescoring_each_resample(tmp_path, task_type, ensemble, metrics):
    rng = np.random.default_rng(len(task_type) + len(ensemble or ""))
    for case in range(5):
        p = _cell(tmp_path, task_type, rng, ensemble=ensemble or "mean_prob")
        fast = bootstrap_distribution(p, metrics, resamples=60, seed=case)
        slow = bootstrap_distribution(p, metrics, resamples=60, seed=case, rescore_all=True)
        for m in metrics:
            if task_type in VECTORISED:
                np.testing.assert_allclose(
                    fast[m], slow[m], rtol=0, atol=1e-9, err_msg=f"{task_type} {m}"
                )
            else:
                np.testing.assert_array_equal(fast[m], slow[m], err_msg=f"{task_type} {m}")


@pytest.mark.parametrize("task_type", ["multiclass", "key", "multilabel", "regression"])
def test_the_metrics_each_task_type_computes_vectorised(tmp_path, task_type):
    p = _cell(tmp_path, task_type, np.random.default_rng(2))
    metrics = [m for _, _, ms in CASES for m in ms]
    draws = resample_draws(len(p.clip_id), resamples=7, seed=0)
    values = _vectorised_distribution(p, metrics, draws=draws)
    assert set(values) == VECTORISED.get(task_type, set())
    assert all(v.shape == (7,) for v in values.values())


def test_the_vectorised_ranked_metrics_skip_a_tag_with_no_positive(tmp_path):
    # a resample of the rare tag's negatives only: the macro means skip the tag, as
    # multilabel_metrics does (and the micro metrics are nan only with no positive at all)
    rng = np.random.default_rng(3)
    p = _cell(tmp_path, "multilabel", rng)
    rare = np.flatnonzero(p.target[:, 3] == 0)
    draws = rng.choice(rare, size=(20, len(p.clip_id)))
    metrics = ["roc_auc_macro", "ap_macro", "roc_auc_micro"]
    fast = _vectorised_distribution(p, metrics, draws=draws)
    with pytest.warns(UserWarning):
        slow = [cell_metrics(p, draw) for draw in draws]
    for m in metrics:
        np.testing.assert_allclose(fast[m], [r[m] for r in slow], rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    ("task_type", "decomposed"),
    [
        ("multiclass", {"accuracy"}),
        ("key", {"weighted_score", "accuracy", "clip_accuracy"}),
        ("multilabel", set()),
        ("regression", set()),
    ],
)
def test_the_metrics_each_task_type_scores_per_unit(tmp_path, task_type, decomposed):
    p = _cell(tmp_path, task_type, np.random.default_rng(1))
    values = unit_values(p)
    assert set(values) == decomposed
    n_units = len(set(p.song_id)) if task_type_of(task_type).scores_songs else len(p.clip_id)
    for numerator, denominator in values.values():
        assert numerator.shape == (n_units,)
        assert denominator is None or denominator.shape == (n_units,)
