"""Tests of mirprobe.metrics against third-party vectors and hand-made cases."""

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from mirprobe.errors import ConfigError, DataError
from mirprobe.metrics import (
    ENSEMBLE_STRATEGIES,
    PRIMARY_METRIC,
    TagExclusionWarning,
    compute_metrics,
    ensemble_song_scores,
)

FIXTURES = Path(
    os.environ.get(
        "MIRPROBE_FIXTURES",
        Path(__file__).resolve().parents[1] / ".." / "shared" / "fixtures",
    )
)
KEY_FIXTURES = FIXTURES / "mir_eval_key"
TAGGING_FIXTURES = FIXTURES / "tagging_metrics" / "mtg_jamendo_mediaeval"

KEYS = [
    f"{tonic} {mode}"
    for mode in ("major", "minor")
    for tonic in ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"]
]


def _read_key(path):
    """Read a mir_eval key annotation: 'tonic<TAB>mode', '#' lines are comments."""
    lines = [
        line.strip()
        for line in path.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    return " ".join(lines[0].split())


def _key_cases():
    if not KEY_FIXTURES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no fixtures at {KEY_FIXTURES}"))]
    return sorted(path.stem[len("ref") :] for path in KEY_FIXTURES.glob("ref*.txt"))


def _enharmonic_index(key):
    """Index of ``key`` in KEYS, mapping sharps to the flat spelling used there."""
    sharp_to_flat = {"C#": "Db", "D#": "Eb", "F#": "Gb", "G#": "Ab", "A#": "Bb"}
    tonic, mode = key.split()
    return KEYS.index(f"{sharp_to_flat.get(tonic, tonic)} {mode}")


@pytest.mark.parametrize("case", _key_cases())
def test_key_weighted_score_matches_mir_eval_vectors(case):
    reference = _read_key(KEY_FIXTURES / f"ref{case}.txt")
    estimate = _read_key(KEY_FIXTURES / f"est{case}.txt")
    expected = json.loads((KEY_FIXTURES / f"output{case}.json").read_text())
    # Labels spelled as in the fixture, so mir_eval sees the third-party strings.
    labels = [reference] + ([estimate] if estimate != reference else [])
    y_true = np.array([0])
    scores = np.zeros((1, len(labels)))
    scores[0, labels.index(estimate)] = 1.0
    metrics = compute_metrics("key", y_true=y_true, scores=scores, labels=labels)
    assert metrics["weighted_score"] == pytest.approx(expected["Weighted Score"], abs=1e-6)
    assert metrics["primary"] == metrics["weighted_score"]


def _tagging_cases():
    results = TAGGING_FIXTURES / "results" / "mediaeval"
    if not results.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no fixtures at {results}"))]
    return sorted(
        path.name[len("baseline_") : -len("_predictions.npy")]
        for path in results.glob("baseline_*_predictions.npy")
    )


@pytest.mark.parametrize("baseline", _tagging_cases())
def test_multilabel_metrics_match_mtg_jamendo_results(baseline):
    results = TAGGING_FIXTURES / "results" / "mediaeval"
    y_true = np.load(results / "groundtruth.npy")
    scores = np.load(results / f"baseline_{baseline}_predictions.npy")
    expected = {}
    for line in (results / f"baseline_{baseline}_results.tsv").read_text().splitlines():
        name, value = line.split("\t")
        expected[name] = float(value)
    tag_file = TAGGING_FIXTURES / "data" / "tags" / "moodtheme_split.txt"
    labels = tag_file.read_text().split()
    assert len(labels) == y_true.shape[1]

    metrics = compute_metrics("multilabel", y_true=y_true, scores=scores, labels=labels)

    # The tsv holds values rounded to 6 decimals.
    assert metrics["roc_auc_macro"] == pytest.approx(expected["ROC-AUC-macro"], abs=1e-6)
    assert metrics["ap_macro"] == pytest.approx(expected["PR-AUC-macro"], abs=1e-6)
    assert metrics["roc_auc_micro"] == pytest.approx(expected["ROC-AUC-micro"], abs=1e-6)
    assert metrics["ap_micro"] == pytest.approx(expected["PR-AUC-micro"], abs=1e-6)
    assert metrics["n_tags_scored"] == len(labels)
    assert metrics["tags_excluded"] == []
    assert metrics["primary"] == metrics["roc_auc_macro"]


# -- key ensembling -----------------------------------------------------------

# One song of three clips over three classes, built so that the strategies
# disagree (worked out in the test below).
DISAGREEING_SCORES = np.array(
    [
        [1.0, 0.9, -5.0],
        [1.0, 0.9, -5.0],
        [-20.0, 4.0, 9.0],
    ]
)


def test_each_ensemble_strategy_on_a_case_where_they_disagree():
    groups = np.array(["song", "song", "song"])
    chosen = {
        strategy: int(ensemble_song_scores(DISAGREEING_SCORES, groups, strategy=strategy)[1][0])
        for strategy in ENSEMBLE_STRATEGIES
    }
    # vote: argmaxes 0, 0, 2 -> 0.
    # max_logit: column maxima (1, 4, 9) -> 2.
    # mean_logit: column means (-6, 1.93, -0.33) -> 1.
    # mean_prob: softmax rows ~(.52, .48, 0), (.52, .48, 0), (0, .007, .993);
    #            means ~(.35, .32, .33) -> 0.
    assert chosen == {"vote": 0, "max_logit": 2, "mean_logit": 1, "mean_prob": 0}
    # Check the hand computation against numpy.
    assert DISAGREEING_SCORES.mean(axis=0).argmax() == 1
    probs = np.exp(DISAGREEING_SCORES) / np.exp(DISAGREEING_SCORES).sum(axis=1, keepdims=True)
    assert probs.mean(axis=0).argmax() == 0


def test_mean_prob_differs_from_vote():
    # argmaxes 0, 1, 1 -> vote 1; one very confident clip wins mean_prob.
    scores = np.array([[10.0, 0.0], [0.0, 0.1], [0.0, 0.1]])
    groups = np.zeros(3)
    assert ensemble_song_scores(scores, groups, strategy="vote")[1][0] == 1
    assert ensemble_song_scores(scores, groups, strategy="mean_prob")[1][0] == 0


def test_vote_ties_go_to_the_lowest_index():
    scores = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    _, pred = ensemble_song_scores(scores, np.zeros(3), strategy="vote")
    assert pred.tolist() == [0]


def test_ensemble_returns_sorted_song_ids_with_their_predictions():
    scores = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    groups = np.array(["b", "a", "b", "a"])
    song_ids, pred = ensemble_song_scores(scores, groups, strategy="mean_logit")
    assert song_ids.tolist() == ["a", "b"]
    assert pred.tolist() == [0, 1]


def test_key_metrics_pool_clips_per_song():
    labels = KEYS
    c_major, g_major, a_minor = (KEYS.index(k) for k in ("C major", "G major", "A minor"))
    # Song 1 (C major): 2 of 3 clips say C major -> exact (1.0).
    # Song 2 (A minor): clips say C major (relative, 0.3).
    y_true = np.array([c_major] * 3 + [a_minor] * 2)
    pred = [c_major, c_major, g_major, c_major, c_major]
    scores = np.zeros((5, 24))
    scores[np.arange(5), pred] = 5.0
    groups = np.array([1, 1, 1, 2, 2])
    metrics = compute_metrics(
        "key",
        y_true=y_true,
        scores=scores,
        labels=labels,
        groups=groups,
        ensemble="vote",
    )
    assert metrics["weighted_score"] == pytest.approx((1.0 + 0.3) / 2)
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["clip_accuracy"] == pytest.approx(2 / 5)
    # Without groups each clip is its own song.
    per_clip = compute_metrics("key", y_true=y_true, scores=scores, labels=labels)
    assert per_clip["weighted_score"] == pytest.approx((1 + 1 + 0.5 + 0.3 + 0.3) / 5)


def test_key_song_with_inconsistent_labels_is_rejected():
    scores = np.zeros((2, 24))
    with pytest.raises(DataError, match="'s1'"):
        compute_metrics(
            "key",
            y_true=np.array([0, 1]),
            scores=scores,
            labels=KEYS,
            groups=np.array(["s1", "s1"]),
        )


def test_key_labels_must_be_key_strings():
    with pytest.raises(DataError, match="'blues'"):
        compute_metrics("key", y_true=[0], scores=[[1.0, 0.0]], labels=["blues", "C major"])


# -- multilabel degenerate tags -----------------------------------------------


def test_tag_without_positives_is_excluded_and_named():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 2, size=(40, 3))
    y_true[:, 1] = 0  # 'never' has no positive example
    y_true[:, 2] = 1  # 'always' has no negative example
    y_true[0, 0], y_true[1, 0] = 0, 1
    scores = rng.normal(size=(40, 3))
    with pytest.warns(TagExclusionWarning, match="never.*always"):
        metrics = compute_metrics(
            "multilabel", y_true=y_true, scores=scores, labels=["ok", "never", "always"]
        )
    assert metrics["tags_excluded"] == ["never", "always"]
    assert metrics["n_tags_scored"] == 1
    from sklearn.metrics import average_precision_score, roc_auc_score

    assert metrics["roc_auc_macro"] == pytest.approx(roc_auc_score(y_true[:, 0], scores[:, 0]))
    assert metrics["ap_macro"] == pytest.approx(average_precision_score(y_true[:, 0], scores[:, 0]))
    assert np.isfinite(metrics["roc_auc_micro"])


def test_all_tags_degenerate_gives_nan_not_a_crash():
    with pytest.warns(TagExclusionWarning):
        metrics = compute_metrics(
            "multilabel",
            y_true=np.zeros((4, 2)),
            scores=np.zeros((4, 2)),
            labels=["a", "b"],
        )
    assert np.isnan(metrics["roc_auc_macro"])
    assert np.isnan(metrics["primary"])
    assert metrics["n_tags_scored"] == 0


def test_clean_multilabel_split_does_not_warn():
    y_true = np.array([[0, 1], [1, 0], [1, 1], [0, 0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        metrics = compute_metrics(
            "multilabel", y_true=y_true, scores=y_true * 2.0, labels=["a", "b"]
        )
    assert metrics["roc_auc_macro"] == 1.0
    assert metrics["ap_macro"] == 1.0


# -- multiclass and regression ------------------------------------------------


def test_multiclass_accuracy():
    scores = np.array([[2.0, 1.0], [0.0, 3.0], [5.0, 1.0], [0.0, 1.0]])
    metrics = compute_metrics("multiclass", y_true=[0, 1, 1, 1], scores=scores, labels=["a", "b"])
    assert metrics == {"accuracy": 0.75, "primary": 0.75}


def test_regression_r2_per_output_and_mean():
    from sklearn.metrics import r2_score

    rng = np.random.default_rng(1)
    y_true = rng.normal(size=(50, 2))
    scores = y_true + rng.normal(scale=[0.1, 1.0], size=(50, 2))
    metrics = compute_metrics(
        "regression", y_true=y_true, scores=scores, labels=["arousal", "valence"]
    )
    assert metrics["r2_arousal"] == pytest.approx(r2_score(y_true[:, 0], scores[:, 0]))
    assert metrics["r2_valence"] == pytest.approx(r2_score(y_true[:, 1], scores[:, 1]))
    assert metrics["r2_mean"] == pytest.approx(r2_score(y_true, scores))
    assert metrics["primary"] == metrics["r2_mean"]


def test_primary_metric_table():
    assert PRIMARY_METRIC == {
        "multiclass": "accuracy",
        "key": "weighted_score",
        "multilabel": "roc_auc_macro",
        "regression": "r2_mean",
    }


# -- errors -------------------------------------------------------------------


def test_unknown_task_type_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="'tempo'"):
        compute_metrics("tempo", y_true=[0], scores=[[1.0]], labels=["a"])
    assert issubclass(ConfigError, ValueError)


def test_unknown_ensemble_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="'median'"):
        compute_metrics("key", y_true=[0], scores=[[1.0]], labels=["C major"], ensemble="median")


@pytest.mark.parametrize(
    ("task_type", "y_true", "scores", "match"),
    [
        ("multiclass", [0, 1, 0], np.zeros((2, 2)), r"got shape \(3,\)"),
        ("multiclass", [0, 1], np.zeros((2, 3)), "3 columns"),
        ("multiclass", [0, 2], np.zeros((2, 2)), "class index 2"),
        ("multilabel", np.zeros((2, 3)), np.zeros((2, 2)), r"\(2, 3\)"),
        ("multilabel", np.full((2, 2), 2), np.zeros((2, 2)), "only 0 and 1"),
        ("regression", np.zeros((3, 2)), np.zeros((2, 2)), r"\(3, 2\)"),
        (
            "regression",
            np.zeros((2, 2)),
            [[np.nan, 0.0], [0.0, 0.0]],
            "NaN or inf in 1",
        ),
        ("multiclass", np.zeros(0, dtype=int), np.zeros((0, 2)), "no rows"),
    ],
)
def test_shape_and_value_mismatches_are_data_errors(task_type, y_true, scores, match):
    with pytest.raises(DataError, match=match):
        compute_metrics(task_type, y_true=y_true, scores=scores, labels=["a", "b"])


def test_groups_with_a_non_key_task_are_rejected():
    with pytest.raises(ConfigError, match="'multiclass'"):
        compute_metrics(
            "multiclass", y_true=[0], scores=[[1.0, 0.0]], labels=["a", "b"], groups=[0]
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ranked_scores_equal_sklearn_per_column_under_every_tie_pattern(dtype):
    """Rank-based AUC/AP (the batched trainer's) against scikit-learn, column by
    column, where ties open and close runs, fill whole columns, sit only among
    negatives or only among positives, and span the top and bottom scores."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from mirprobe.metrics import ranked_binary_scores

    rng = np.random.default_rng(7)
    n, c, k = 120, 9, 3
    positive = rng.random((n, c)) < np.linspace(0.05, 0.6, c)
    positive[0, :] = True  # every column has a positive...
    positive[1, :] = False  # ...and a negative
    scores = rng.normal(size=(k, n, c))
    scores[:, :, 0] = np.round(scores[:, :, 0])  # a few large tie blocks
    scores[:, :, 1] = 1.5  # one block: the whole column
    scores[:, :, 2] = np.where(positive[:, 2], scores[:, :, 2], 0.0)  # negatives tied
    scores[:, :, 3] = np.where(positive[:, 3], 2.0, scores[:, :, 3])  # positives tied, at the top
    scores[:, :, 4] = np.where(
        positive[:, 4], -9.0, scores[:, :, 4]
    )  # positives tied, at the bottom
    scores[:, :, 5] = np.round(scores[:, :, 5] * 8) / 8  # many small adjacent blocks
    scores[:, :, 6] = -0.0  # signed zeros tie with zeros
    scores[:, ::2, 6] = 0.0
    scores = scores.astype(dtype)
    auc, ap = ranked_binary_scores(positive, scores)
    auc_only, none = ranked_binary_scores(positive, scores, need_ap=False)
    assert none is None
    np.testing.assert_array_equal(auc_only, auc)
    for j in range(k):
        for t in range(c):
            truth, column = positive[:, t], scores[j, :, t]
            assert abs(auc[j, t] - roc_auc_score(truth, column)) < 1e-12, (j, t)
            assert abs(ap[j, t] - average_precision_score(truth, column)) < 1e-12, (j, t)
    # a column without positives: AUC and AP undefined, not a crash
    empty = np.zeros((n, 1), dtype=bool)
    none_auc, none_ap = ranked_binary_scores(empty, scores[:, :, :1])
    assert np.isnan(none_auc).all() and np.isnan(none_ap).all()
