"""The batched trainer reproduces the serial reference config by config."""

import numpy as np
import pytest

from mirprobe.errors import ConfigError
from mirprobe.probes import expand_grid, fit_grid
from mirprobe.probes.batched import fit_grid_batched

KEYS = [
    f"{tonic} {mode}"
    for mode in ("major", "minor")
    for tonic in ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"]
]

# Linear and MLP, standardize yes/no, two batch sizes, several lr / dropout / l2.
GRID = {
    "standardize": [False, True],
    "hidden_sizes": [[], [8]],
    "batch_size": [16, 32],
    "learning_rate": [1e-3, 3e-2],
    "dropout": [0.0, 0.5],
    "l2": [0.0, 1e-2],
}


TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
"""Float tolerance: the two trainers round float32 products in different orders."""


def small_grid():
    """16 of the 64 points of GRID (seeded), so every task type stays fast."""
    configs = expand_grid(GRID, eval_every=4, patience=3, max_steps=40)
    rng = np.random.default_rng(0)
    return [configs[i] for i in sorted(rng.choice(len(configs), size=16, replace=False))]


def problem(task_type, *, seed=0):
    rng = np.random.default_rng(seed)
    n, d = 260, 12
    X = (rng.normal(size=(n, d)) * 2.0 + 1.0).astype(np.float32)
    groups = None
    if task_type == "multiclass":
        y = (X @ rng.normal(size=(d, 4)) + rng.normal(size=(n, 4))).argmax(axis=1)
        labels = list("abcd")
    elif task_type == "key":
        songs = np.arange(n) // 4  # four clips per song
        keys = rng.integers(0, 24, size=songs.max() + 1)
        y = keys[songs]
        X = (rng.normal(size=(24, d))[y] * 2 + rng.normal(size=(n, d)) * 2).astype(np.float32)
        groups = np.array([f"song{s}" for s in songs])
        labels = KEYS
    elif task_type == "multilabel":
        y = (X @ rng.normal(size=(d, 5)) + rng.normal(size=(n, 5)) > 1.0).astype(int)
        labels = [f"tag{i}" for i in range(5)]
    else:
        y = X @ rng.normal(size=(d, 2)) + rng.normal(size=(n, 2))
        labels = ["arousal", "valence"]
    split = {"train": slice(0, 140), "valid": slice(140, 200), "test": slice(200, n)}
    out = {name: (X[s], y[s]) for name, s in split.items()}
    out["valid_groups"] = None if groups is None else groups[split["valid"]]
    out["test_groups"] = None if groups is None else groups[split["test"]]
    out["labels"], out["task_type"] = labels, task_type
    return out


def fit(data, configs, **kwargs):
    (X_train, y_train), (X_valid, y_valid) = data["train"], data["valid"]
    return fit_grid(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type=data["task_type"],
        labels=data["labels"],
        configs=configs,
        valid_groups=data["valid_groups"],
        **kwargs,
    )


def assert_same_grid(serial, batched, data):
    assert batched.best_index == serial.best_index
    assert batched.best_config == serial.best_config
    for s, b in zip(serial.records, batched.records, strict=True):
        assert b["uid"] == s["uid"] and b["config"] == s["config"]
        assert b["best_step"] == s["best_step"], s["config"]
        assert b["n_steps"] == s["n_steps"], s["config"]
        assert b["stopped_by"] == s["stopped_by"]
        assert b["ensemble"] == s["ensemble"]
        assert b["curve"]["n_evals"] == s["curve"]["n_evals"]
        for key in ("first", "best", "last"):
            assert np.isclose(b["curve"][key], s["curve"][key], **TOLERANCE), s["config"]
        assert np.isclose(b["valid_metrics"]["primary"], s["valid_metrics"]["primary"])
        assert set(b) == set(s)
    X_test = data["test"][0]
    np.testing.assert_allclose(
        batched.best.predict_scores(X_test), serial.best.predict_scores(X_test), atol=1e-4
    )
    # Full validation curves of the selected probe.
    serial_curve = np.array(serial.best.record.curve)
    batched_curve = np.array(batched.best.record.curve)
    np.testing.assert_allclose(batched_curve, serial_curve, **TOLERANCE)


@pytest.mark.parametrize("task_type", ["multiclass", "key", "multilabel", "regression"])
def test_batched_matches_serial_config_by_config(task_type):
    data = problem(task_type)
    configs = small_grid()
    serial = fit(data, configs, trainer="serial")
    batched = fit(data, configs, trainer="batched")
    assert_same_grid(serial, batched, data)


def test_every_curve_matches_with_the_hand_written_adam():
    data = problem("multiclass", seed=1)
    configs = expand_grid(GRID, eval_every=4, patience=3, max_steps=32)[::5]
    serial = fit(data, configs, trainer="serial")
    (X_train, y_train), (X_valid, y_valid) = data["train"], data["valid"]
    for fused in (False, True):
        batched = fit_grid_batched(
            X_train,
            y_train,
            X_valid,
            y_valid,
            task_type="multiclass",
            labels=data["labels"],
            configs=configs,
            fused=fused,
        )
        assert_same_grid(serial, batched, data)


def test_full_curves_and_restored_states_match():
    """Not just the summary: every (step, score) and the restored weights, per config."""
    from mirprobe.probes import train_probe

    data = problem("regression", seed=2)
    configs = expand_grid(GRID, eval_every=4, patience=3, max_steps=32)[1::9]
    (X_train, y_train), (X_valid, y_valid) = data["train"], data["valid"]
    result = fit_grid_batched(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type="regression",
        labels=data["labels"],
        configs=configs,
    )
    X_test = data["test"][0]
    for config, record in zip(configs, result.records, strict=True):
        alone = train_probe(
            X_train,
            y_train,
            X_valid,
            y_valid,
            task_type="regression",
            config=config,
            labels=data["labels"],
        )
        assert record["best_step"] == alone.record.best_step
        assert record["n_steps"] == alone.record.n_steps
    # The stored curve of the selected probe, point by point.
    alone = train_probe(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type="regression",
        config=result.best_config,
        labels=data["labels"],
    )
    np.testing.assert_allclose(
        np.array(result.best.record.curve), np.array(alone.record.curve), **TOLERANCE
    )
    np.testing.assert_allclose(
        result.best.predict_scores(X_test), alone.predict_scores(X_test), atol=1e-4
    )


def test_patience_and_max_steps_stop_each_config_on_its_own():
    data = problem("multiclass", seed=3)
    configs = [
        config
        for config in expand_grid(
            {"learning_rate": [1e-1, 1e-4], "patience": [1, 50]},
            standardize=True,
            hidden_sizes=(),
            batch_size=32,
            dropout=0.0,
            l2=0.0,
            eval_every=2,
            max_steps=30,
        )
    ]
    serial = fit(data, configs, trainer="serial")
    batched = fit(data, configs, trainer="batched")
    assert_same_grid(serial, batched, data)
    assert {r["stopped_by"] for r in batched.records} == {"patience", "max_steps"}


def test_trainer_names_are_checked():
    data = problem("multiclass")
    with pytest.raises(ConfigError, match="'vmap'"):
        fit(data, small_grid()[:1], trainer="vmap")


@pytest.mark.parametrize(
    ("configs", "match"),
    [
        ([], "configs is empty"),
        (["lr=0.1"], r"configs\[0\] must be a ProbeConfig, got str"),
        ("twice", r"configs\[1\] repeats configs\[0\]"),
    ],
)
def test_both_entry_points_check_the_configs_alike(configs, match):
    data = problem("multiclass")
    configs = small_grid()[:1] * 2 if configs == "twice" else configs
    (X_train, y_train), (X_valid, y_valid) = data["train"], data["valid"]
    with pytest.raises(ConfigError, match=match):
        fit(data, configs, trainer="batched")
    with pytest.raises(ConfigError, match=match):
        fit_grid_batched(
            X_train,
            y_train,
            X_valid,
            y_valid,
            task_type="multiclass",
            labels=data["labels"],
            configs=configs,
        )


# -- the quick protocol -------------------------------------------------------


@pytest.mark.parametrize("task_type", ["multiclass", "key", "multilabel", "regression"])
def test_sklearn_cv_protocol_is_labelled_and_round_trips(task_type, tmp_path):
    from mirprobe.metrics import compute_metrics
    from mirprobe.probes import load_probe, save_probe

    data = problem(task_type)
    result = fit(data, small_grid()[:1], trainer="sklearn_cv")
    assert len(result.records) == 1 and result.best_index == 0
    record = result.records[0]
    assert record["protocol"] == "sklearn_cv"
    assert record["config"]["protocol"] == "sklearn_cv"
    assert record["uid"] == result.best_config.uid()
    assert set(record) >= {"valid_metrics", "curve", "best_step", "n_steps", "ensemble"}
    X_test, y_test = data["test"]
    scores = result.best.predict_scores(X_test)
    metrics = compute_metrics(
        task_type, y_true=y_test, scores=scores, labels=data["labels"], groups=data["test_groups"]
    )
    chance = {"multiclass": 0.25, "key": 0.1, "multilabel": 0.5, "regression": 0.0}
    assert metrics["primary"] > chance[task_type]
    path = tmp_path / "quick.pt"
    save_probe(result.best, path)
    loaded = load_probe(path)
    np.testing.assert_array_equal(loaded.predict_scores(X_test), scores)
    assert loaded.config == result.best_config
    assert loaded.ensemble == result.best.ensemble


# -- vectorised validation metrics ---------------------------------------------


def _with_ties(scores):
    """Round some columns hard so that many scores tie (as float outputs sometimes do)."""
    scores = scores.copy()
    scores[..., ::2] = np.round(scores[..., ::2] * 2) / 2
    scores[0, :, 0] = 0.25  # one constant column: a single tie block
    return scores


def test_ranked_multilabel_metrics_equal_sklearn():
    import warnings

    from mirprobe.metrics import TagExclusionWarning, compute_metrics, multilabel_metrics_batched

    rng = np.random.default_rng(4)
    n, t, k = 300, 7, 4
    y = (rng.random((n, t)) < np.linspace(0.02, 0.6, t)).astype(int)
    y[:, 3] = 0  # an unscorable tag, excluded from the macro means
    labels = [f"tag{i}" for i in range(t)]
    for scores in (
        rng.normal(size=(k, n, t)).astype(np.float32),
        _with_ties(rng.normal(size=(k, n, t))),
        _with_ties(rng.normal(size=(k, n, t))).astype(np.float32),
    ):
        with pytest.warns(TagExclusionWarning):
            fast = multilabel_metrics_batched(y, scores, labels=labels)
        for j in range(k):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", TagExclusionWarning)
                ref = compute_metrics("multilabel", y_true=y, scores=scores[j], labels=labels)
            assert set(fast[j]) == set(ref)
            assert fast[j]["tags_excluded"] == ref["tags_excluded"] == ["tag3"]
            assert fast[j]["n_tags_scored"] == ref["n_tags_scored"]
            for name in ("roc_auc_macro", "ap_macro", "roc_auc_micro", "ap_micro", "primary"):
                assert abs(fast[j][name] - ref[name]) < 1e-12, name


def test_key_score_table_equals_mir_eval_on_every_pair():
    import mir_eval
    import torch

    from mirprobe.probes.batched import _Task
    from mirprobe.probes.common import validate_inputs

    data = problem("key")
    (X_train, y_train), (X_valid, y_valid) = data["train"], data["valid"]
    inputs = validate_inputs(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type="key",
        labels=KEYS,
        valid_groups=data["valid_groups"],
    )
    task = _Task(inputs, device=torch.device("cpu"))
    for i, ref in enumerate(KEYS):
        for j, est in enumerate(KEYS):
            assert task.scorer.key_table[i, j] == mir_eval.key.weighted_score(ref, est)


@pytest.mark.parametrize("task_type", ["multiclass", "key", "multilabel", "regression"])
def test_vectorised_primary_equals_compute_metrics(task_type):
    import warnings

    import torch

    from mirprobe.metrics import ENSEMBLE_STRATEGIES, compute_metrics
    from mirprobe.probes.batched import _Task
    from mirprobe.probes.common import validate_inputs

    data = problem(task_type)
    (X_train, y_train), (X_valid, y_valid) = data["train"], data["valid"]
    inputs = validate_inputs(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type=task_type,
        labels=data["labels"],
        valid_groups=data["valid_groups"],
    )
    task = _Task(inputs, device=torch.device("cpu"))
    rng = np.random.default_rng(5)
    scores = rng.normal(size=(6, len(y_valid), len(data["labels"])))
    if task_type == "multilabel":
        scores = _with_ties(scores)
    scores = scores.astype(np.float32)
    fast = task.primary(torch.from_numpy(scores))
    extras = [{}]
    if task_type == "key":  # the best of the four song poolings
        extras = [
            {"groups": data["valid_groups"], "ensemble": strategy}
            for strategy in ENSEMBLE_STRATEGIES
        ]
    for j in range(len(scores)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = max(
                compute_metrics(
                    task_type, y_true=y_valid, scores=scores[j], labels=data["labels"], **extra
                )["primary"]
                for extra in extras
            )
        assert abs(fast[j] - ref) < 1e-12
    scores[2, 0, 0] = np.nan  # a diverged config scores nan, the others are untouched
    again = task.primary(torch.from_numpy(scores))
    assert np.isnan(again[2]) and np.allclose(np.delete(again, 2), np.delete(fast, 2))
