"""Tests of mirprobe.probes: configs, the jukemir training protocol, grids, I/O."""

import hashlib
import json

import numpy as np
import pytest
import torch
from stage_inputs import LINEAR_PROBE_CONFIG, write_feature_shard

from mirprobe.errors import ConfigError, DataError, ModelError
from mirprobe.metrics import ENSEMBLE_STRATEGIES, TagExclusionWarning, compute_metrics
from mirprobe.probes import (
    PAPER_GRID,
    FittedProbe,
    ProbeConfig,
    expand_grid,
    fit_grid,
    load_probe,
    save_probe,
    train_probe,
)
from mirprobe.probes.model import ProbeMLP

KEYS = [
    f"{tonic} {mode}"
    for mode in ("major", "minor")
    for tonic in ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"]
]


def small_config(**overrides):
    """A fast config: small patience and a step cap."""
    fields = {
        "standardize": True,
        "hidden_sizes": (),
        "batch_size": 64,
        "learning_rate": 1e-2,
        "dropout": 0.1,
        "l2": 0.0,
        "eval_every": 8,
        "patience": 8,
        "max_steps": 1500,
        "seed": 0,
    }
    fields.update(overrides)
    return ProbeConfig(**fields)


def separable_multiclass(*, n, n_features=16, n_classes=4, seed=0):
    rng = np.random.default_rng(seed)
    weights = np.random.default_rng(100).normal(size=(n_features, n_classes))
    X = rng.normal(size=(n, n_features)) * 3.0 + 5.0  # off-centre, so scaling matters
    y = ((X - 5.0) @ weights).argmax(axis=1)
    return X.astype(np.float32), y


def split(X, y, *, n_train, n_valid):
    return (
        X[:n_train],
        y[:n_train],
        X[n_train : n_train + n_valid],
        y[n_train : n_train + n_valid],
        X[n_train + n_valid :],
        y[n_train + n_valid :],
    )


def _train(X_train, y_train, X_valid, y_valid, **overrides):
    """``train_probe`` on a multiclass task of labels a-d (what ``overrides`` leave)."""
    kwargs = {
        "task_type": "multiclass",
        "config": small_config(max_steps=8),
        "labels": list("abcd"),
    }
    kwargs.update(overrides)
    return train_probe(X_train, y_train, X_valid, y_valid, **kwargs)


# -- configs ------------------------------------------------------------------


def test_uid_is_the_sha1_of_the_sorted_json():
    config = ProbeConfig(
        standardize=True,
        hidden_sizes=(512,),
        batch_size=64,
        learning_rate=1e-3,
        dropout=0.5,
        l2=1e-4,
    )
    expected = hashlib.sha1(json.dumps(config.to_dict(), sort_keys=True).encode()).hexdigest()
    assert config.uid() == expected
    # Frozen value: a changed uid would orphan every stored result.
    assert config.uid() == "5fdf082595e2b81c44ae020e5658dd082b8a7fb5"


def test_uid_depends_on_content_not_spelling():
    a = small_config(hidden_sizes=[512], l2=0, batch_size=64.0)
    b = small_config(hidden_sizes=(512,), l2=0.0, batch_size=64)
    assert a == b
    assert a.uid() == b.uid()
    assert small_config(seed=1).uid() != small_config(seed=0).uid()
    assert small_config(patience=9).uid() != small_config().uid()
    assert ProbeConfig.from_dict(a.to_dict()) == a


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dropout", 1.0),
        ("learning_rate", 0.0),
        ("l2", -1.0),
        ("batch_size", 0),
        ("batch_size", 2.5),
        ("hidden_sizes", "512"),
        ("hidden_sizes", (0,)),
        ("standardize", "yes"),
        ("eval_every", 0),
    ],
)
def test_invalid_config_values_are_config_errors_naming_them(field, value):
    with pytest.raises(ConfigError, match=field):
        small_config(**{field: value})


def test_paper_grid_has_216_distinct_configs():
    configs = expand_grid(PAPER_GRID)
    assert len(configs) == 216
    assert len({config.uid() for config in configs}) == 216
    assert {config.hidden_sizes for config in configs} == {(), (512,)}
    assert all(config.patience == 256 and config.eval_every == 8 for config in configs)


def test_expand_grid_order_is_deterministic_and_constants_apply():
    grid = {
        "learning_rate": [1e-3, 1e-4],
        "hidden_sizes": [[], [512]],
        "standardize": [True],
        "batch_size": [64],
        "dropout": [0.5],
        "l2": [0],
    }
    configs = expand_grid(grid, patience=16, max_steps=100)
    assert len(configs) == 4
    # Fields vary in ProbeConfig field order (hidden_sizes before learning_rate),
    # the last one fastest, whatever the grid's key order.
    assert [(c.hidden_sizes, c.learning_rate) for c in configs] == [
        ((), 1e-3),
        ((), 1e-4),
        ((512,), 1e-3),
        ((512,), 1e-4),
    ]
    assert all(c.patience == 16 and c.max_steps == 100 for c in configs)
    reordered = dict(reversed(list(grid.items())))
    assert expand_grid(reordered, patience=16, max_steps=100) == configs


def test_expand_grid_rejects_unknown_keys_naming_them():
    with pytest.raises(ConfigError, match="'momentum'"):
        expand_grid({**PAPER_GRID, "momentum": [0.9]})
    with pytest.raises(ConfigError, match="'epochs'"):
        expand_grid(PAPER_GRID, epochs=3)
    with pytest.raises(ConfigError, match="'seed'"):
        expand_grid({**PAPER_GRID, "seed": [0, 1]}, seed=2)
    with pytest.raises(ConfigError, match="'dropout'"):
        expand_grid({**PAPER_GRID, "dropout": []})


# -- the model ----------------------------------------------------------------


def test_probe_mlp_layout_matches_jukemir():
    linear = ProbeMLP(n_features=5, hidden_sizes=(), n_outputs=3, dropout=0.5)
    assert sorted(linear.state_dict()) == ["output.bias", "output.weight"]
    mlp = ProbeMLP(n_features=5, hidden_sizes=(7,), n_outputs=3, dropout=0.5)
    assert mlp.hidden[0].weight.shape == (7, 5)
    assert mlp.output.weight.shape == (3, 7)
    # Input dropout: in train mode with p close to 1 most inputs are dropped.
    torch.manual_seed(0)
    heavy = ProbeMLP(n_features=1000, hidden_sizes=(), n_outputs=1, dropout=0.99)
    with torch.no_grad():
        heavy.output.weight.fill_(1.0)
        heavy.output.bias.zero_()
        x = torch.ones(1, 1000)
        heavy.train()
        assert heavy(x).item() != pytest.approx(1000.0)
        heavy.eval()
        assert heavy(x).item() == pytest.approx(1000.0)


def test_adam_uses_coupled_weight_decay(monkeypatch):
    seen = {}
    adam = torch.optim.Adam

    def spy(params, **kwargs):
        seen.update(kwargs)
        return adam(params, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", spy)
    X, y = separable_multiclass(n=200)
    train_probe(
        X[:100],
        y[:100],
        X[100:],
        y[100:],
        task_type="multiclass",
        config=small_config(l2=1e-3, max_steps=8),
        labels=list("abcd"),
    )
    assert seen == {"lr": 1e-2, "weight_decay": 1e-3}


# -- training -----------------------------------------------------------------


def test_separable_multiclass_is_learned_far_above_chance():
    X, y = separable_multiclass(n=1400)
    X_train, y_train, X_valid, y_valid, X_test, y_test = split(X, y, n_train=800, n_valid=200)
    probe = _train(X_train, y_train, X_valid, y_valid, config=small_config())
    assert isinstance(probe, FittedProbe)
    assert probe.evaluate(X_test, y_test)["accuracy"] > 0.85  # chance is about 0.25
    np.testing.assert_allclose(probe.scaler_mean, X_train.astype(np.float64).mean(axis=0))
    np.testing.assert_allclose(probe.scaler_scale, X_train.astype(np.float64).std(axis=0))


def test_probe_on_shuffled_labels_sits_at_chance():
    """Control task: the same pipeline on labels unrelated to the features."""
    n_classes, n = 10, 3000
    rng = np.random.default_rng(7)
    y = np.arange(n) % n_classes  # balanced, so chance is 1 / n_classes
    X = (rng.normal(size=(n_classes, 16))[y] + rng.normal(scale=0.5, size=(n, 16))).astype(
        np.float32
    )
    order = rng.permutation(n)
    X, y = X[order], y[order]
    y_shuffled = rng.permutation(y)
    labels = [str(i) for i in range(n_classes)]
    fits = {
        name: train_probe(
            X[:600],
            targets[:600],
            X[600:1000],
            targets[600:1000],
            task_type="multiclass",
            config=small_config(),
            labels=labels,
        )
        for name, targets in (("real", y), ("shuffled", y_shuffled))
    }
    # 2000 test rows: the standard error of accuracy at chance is about 0.007.
    control_accuracy = fits["shuffled"].evaluate(X[1000:], y_shuffled[1000:])["accuracy"]
    assert abs(control_accuracy - 1 / n_classes) < 0.05
    assert fits["real"].evaluate(X[1000:], y[1000:])["accuracy"] > 0.9


def test_multilabel_probe_learns_tags_and_excludes_degenerate_ones():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(1200, 12)).astype(np.float32)
    weights = rng.normal(size=(12, 4))
    y = (X @ weights > 0.5).astype(int)
    y[:, 3] = (X[:, 0] > 2.5).astype(int)  # a rare tag
    y_valid = y[600:900].copy()
    y_valid[:, 3] = 0  # no positive in the validation split
    labels = ["rock", "piano", "vocal", "rare"]
    with pytest.warns(TagExclusionWarning, match="rare") as caught:
        probe = train_probe(
            X[:600],
            y[:600],
            X[600:900],
            y_valid,
            task_type="multilabel",
            config=small_config(),
            labels=labels,
        )
    exclusion_warnings = [w for w in caught if issubclass(w.category, TagExclusionWarning)]
    assert len(exclusion_warnings) == 1  # named once, not at every evaluation
    assert probe.record.valid_metrics["tags_excluded"] == ["rare"]
    assert probe.record.valid_metrics["n_tags_scored"] == 3
    test = probe.evaluate(X[900:], y[900:])
    assert test["roc_auc_macro"] > 0.9
    assert 0 < test["ap_macro"] <= 1
    assert test["tags_excluded"] == []


def test_regression_probe_explains_variance():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(1000, 10)).astype(np.float32)
    y = X @ rng.normal(size=(10, 2)) + rng.normal(scale=0.3, size=(1000, 2))
    probe = train_probe(
        X[:600],
        y[:600],
        X[600:800],
        y[600:800],
        task_type="regression",
        config=small_config(hidden_sizes=(16,), dropout=0.0),
        labels=["arousal", "valence"],
    )
    test = probe.evaluate(X[800:], y[800:])
    assert test["r2_arousal"] > 0.8
    assert test["r2_valence"] > 0.8
    assert test["r2_mean"] == pytest.approx((test["r2_arousal"] + test["r2_valence"]) / 2)


def key_dataset(*, n_songs, clips_per_song, noise, seed):
    rng = np.random.default_rng(seed)
    centroids = np.random.default_rng(200).normal(size=(24, 16))
    song_keys = rng.integers(0, 24, size=n_songs)
    y = np.repeat(song_keys, clips_per_song)
    groups = np.repeat([f"song{seed}_{i}" for i in range(n_songs)], clips_per_song)
    X = centroids[y] + rng.normal(scale=noise, size=(len(y), 16))
    return X.astype(np.float32), y, groups


def key_probe(*, n_train, n_valid, clips_per_song, noise):
    """A key probe trained on ``n_train`` songs of :func:`key_dataset`, early-stopped on
    ``n_valid`` others; with the validation features, keys and songs."""
    X_train, y_train, _ = key_dataset(
        n_songs=n_train, clips_per_song=clips_per_song, noise=noise, seed=0
    )
    X_valid, y_valid, groups = key_dataset(
        n_songs=n_valid, clips_per_song=clips_per_song, noise=noise, seed=1
    )
    probe = train_probe(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type="key",
        config=small_config(),
        labels=KEYS,
        valid_groups=groups,
    )
    return probe, X_valid, y_valid, groups


def test_key_probe_chooses_an_ensemble_on_validation():
    probe, X_valid, y_valid, groups_valid = key_probe(
        n_train=150, n_valid=60, clips_per_song=4, noise=1.5
    )
    assert probe.ensemble in ENSEMBLE_STRATEGIES
    scores = probe.predict_scores(X_valid)
    by_strategy = {
        strategy: compute_metrics(
            "key",
            y_true=y_valid,
            scores=scores,
            labels=KEYS,
            groups=groups_valid,
            ensemble=strategy,
        )["primary"]
        for strategy in ENSEMBLE_STRATEGIES
    }
    best = max(by_strategy.values())
    first_best = next(s for s in ENSEMBLE_STRATEGIES if by_strategy[s] == best)
    assert probe.ensemble == first_best
    assert probe.record.valid_metrics["primary"] == best
    # Every evaluation was scored with its best strategy (jukemir's best_strategy).
    assert probe.record.best_score == best
    assert probe.evaluate(X_valid, y_valid, groups=groups_valid)["primary"] == best
    assert best > 0.5  # chance is about 1/24 exact keys


def test_key_ensemble_ties_go_to_vote():
    probe, *_ = key_probe(n_train=100, n_valid=30, clips_per_song=3, noise=0.1)
    assert probe.record.valid_metrics["weighted_score"] == 1.0
    assert probe.ensemble == "vote"


def test_early_stopping_restores_the_best_state():
    rng = np.random.default_rng(5)
    X = rng.normal(size=(500, 40)).astype(np.float32)
    y = X[:, :1] + rng.normal(scale=1.0, size=(500, 1))  # few rows, many features: overfits
    config = small_config(hidden_sizes=(64,), dropout=0.0, learning_rate=1e-2, patience=10)
    probe = train_probe(
        X[:100],
        y[:100],
        X[100:],
        y[100:],
        task_type="regression",
        config=config,
        labels=["value"],
    )
    record = probe.record
    scores = [score for _, score in record.curve]
    assert record.stopped_by == "patience"
    assert record.best_score == max(scores)
    assert (record.best_step, record.best_score) in record.curve
    assert scores[-1] < record.best_score  # the last state is worse than the restored one
    # jukemir's loop: patience evaluations without improvement, then stop at the next one.
    assert record.n_steps == record.best_step + config.eval_every * (config.patience + 1)
    assert probe.evaluate(X[100:], y[100:])["primary"] == record.best_score
    assert record.valid_metrics["primary"] == record.best_score


def test_max_steps_caps_training():
    X, y = separable_multiclass(n=300)
    probe = _train(
        X[:200], y[:200], X[200:], y[200:], config=small_config(max_steps=20, patience=100)
    )
    assert probe.record.stopped_by == "max_steps"
    assert probe.record.n_steps == 20
    assert [step for step, _ in probe.record.curve] == [0, 8, 16]


def test_training_is_deterministic_and_leaves_the_global_rng_alone():
    X, y = separable_multiclass(n=600)
    kwargs = {
        "task_type": "multiclass",
        "config": small_config(hidden_sizes=(32,), dropout=0.5, max_steps=200),
        "labels": list("abcd"),
    }
    torch.manual_seed(123)
    expected_draw = torch.rand(3)
    torch.manual_seed(123)
    first = train_probe(X[:300], y[:300], X[300:450], y[300:450], **kwargs)
    assert torch.equal(torch.rand(3), expected_draw)
    second = train_probe(X[:300], y[:300], X[300:450], y[300:450], **kwargs)
    np.testing.assert_array_equal(first.predict_scores(X[450:]), second.predict_scores(X[450:]))
    assert first.record.curve == second.record.curve
    other_seed = train_probe(
        X[:300],
        y[:300],
        X[300:450],
        y[300:450],
        **{
            **kwargs,
            "config": small_config(hidden_sizes=(32,), dropout=0.5, max_steps=200, seed=1),
        },
    )
    assert not np.array_equal(first.predict_scores(X[450:]), other_seed.predict_scores(X[450:]))


def test_unstandardized_probe_keeps_identity_scaler():
    X, y = separable_multiclass(n=300)
    probe = _train(
        X[:200], y[:200], X[200:], y[200:], config=small_config(standardize=False, max_steps=16)
    )
    np.testing.assert_array_equal(probe.scaler_mean, np.zeros(16))
    np.testing.assert_array_equal(probe.scaler_scale, np.ones(16))


# -- grids --------------------------------------------------------------------


def test_fit_grid_selects_the_best_and_records_every_config():
    X, y = separable_multiclass(n=1000)
    configs = expand_grid(
        {"hidden_sizes": [[], [16]], "learning_rate": [1e-5, 1e-2]},
        standardize=True,
        batch_size=64,
        dropout=0.1,
        l2=0.0,
        patience=4,
        max_steps=300,
    )
    result = fit_grid(
        X[:500],
        y[:500],
        X[500:700],
        y[500:700],
        task_type="multiclass",
        labels=list("abcd"),
        configs=configs,
    )
    assert len(result.records) == 4
    json.dumps(result.records, allow_nan=False)  # JSON-serialisable
    primaries = [record["valid_metrics"]["primary"] for record in result.records]
    assert result.best_index == int(np.argmax(primaries))
    assert result.best_config == configs[result.best_index]
    assert result.best.config == result.best_config
    assert result.best_config.learning_rate == 1e-2
    record = result.records[0]
    assert record["uid"] == configs[0].uid()
    assert record["config"] == configs[0].to_dict()
    assert set(record["curve"]) == {"first", "best", "last", "n_evals"}
    assert record["curve"]["best"] == record["valid_metrics"]["primary"]
    assert record["n_steps"] >= record["best_step"]
    assert record["wall_s"] > 0


def test_fit_grid_ties_go_to_the_first_config():
    X, y = separable_multiclass(n=300)
    # max_steps=0: only the initial state is evaluated, identical for both.
    configs = [small_config(max_steps=0, patience=1), small_config(max_steps=0, patience=2)]
    result = fit_grid(
        X[:200],
        y[:200],
        X[200:],
        y[200:],
        task_type="multiclass",
        labels=list("abcd"),
        configs=configs,
    )
    primaries = [record["valid_metrics"]["primary"] for record in result.records]
    assert primaries[0] == primaries[1]
    assert result.best_index == 0


def test_fit_grid_rejects_unknown_trainer_and_duplicate_configs():
    X, y = separable_multiclass(n=100)
    args = (X[:50], y[:50], X[50:], y[50:])
    with pytest.raises(ConfigError, match="'quantum'"):
        fit_grid(
            *args,
            task_type="multiclass",
            labels=list("abcd"),
            configs=[small_config()],
            trainer="quantum",
        )
    with pytest.raises(ConfigError, match="repeats"):
        fit_grid(
            *args,
            task_type="multiclass",
            labels=list("abcd"),
            configs=[small_config(), small_config()],
        )


# -- save / load --------------------------------------------------------------


def test_save_load_round_trip_predicts_identically(tmp_path):
    X_train, y_train, _ = key_dataset(n_songs=60, clips_per_song=3, noise=1.5, seed=0)
    X_valid, y_valid, groups = key_dataset(n_songs=20, clips_per_song=3, noise=1.5, seed=1)
    probe = train_probe(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type="key",
        config=small_config(hidden_sizes=(8,), max_steps=64),
        labels=KEYS,
        valid_groups=groups,
    )
    path = tmp_path / "probes" / "probe.pt"
    save_probe(probe, path)
    assert [p.name for p in path.parent.iterdir()] == ["probe.pt"]  # no temporary left
    torch.load(path, weights_only=True)  # no pickled objects
    loaded = load_probe(path)
    np.testing.assert_array_equal(loaded.predict_scores(X_valid), probe.predict_scores(X_valid))
    assert loaded.config == probe.config
    assert loaded.labels == probe.labels
    assert loaded.task_type == "key"
    assert loaded.ensemble == probe.ensemble
    assert loaded.record == probe.record
    assert loaded.evaluate(X_valid, y_valid, groups=groups) == probe.evaluate(
        X_valid, y_valid, groups=groups
    )


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.pt"):
        load_probe(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a probe")
    with pytest.raises(ModelError, match="garbage.pt"):
        load_probe(garbage)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ModelError, match="other.pt"):
        load_probe(other)


# -- input validation ---------------------------------------------------------


def test_non_finite_features_name_the_split_and_row_count():
    X, y = separable_multiclass(n=100)
    X_valid = X[50:].copy()
    X_valid[3, 0] = np.nan
    X_valid[7, 2] = np.inf
    with pytest.raises(DataError, match=r"valid features hold NaN or inf in 2 of 50 rows"):
        _train(X[:50], y[:50], X_valid, y[50:])


@pytest.mark.parametrize(
    ("mutate", "error", "match"),
    [
        (lambda a: {**a, "X_valid": a["X_valid"][:, :5]}, DataError, "valid features have 5"),
        (
            lambda a: {**a, "X_train": a["X_train"][:0], "y_train": a["y_train"][:0]},
            DataError,
            "train split is empty",
        ),
        (lambda a: {**a, "y_train": a["y_train"][:-1]}, DataError, "train targets"),
        (lambda a: {**a, "y_valid": a["y_valid"] + 4}, DataError, "valid targets.*class index"),
        (lambda a: {**a, "task_type": "tempo"}, ConfigError, "'tempo'"),
        (lambda a: {**a, "valid_groups": np.zeros(50)}, ConfigError, "valid_groups"),
        (lambda a: {**a, "labels": ["a", "b", "a", "d"]}, DataError, "repeated"),
    ],
)
def test_invalid_inputs_raise_clear_errors(mutate, error, match):
    X, y = separable_multiclass(n=100)
    arguments = mutate({"X_train": X[:50], "y_train": y[:50], "X_valid": X[50:], "y_valid": y[50:]})
    positional = [arguments.pop(name) for name in ("X_train", "y_train", "X_valid", "y_valid")]
    with pytest.raises(error, match=match):
        _train(*positional, **arguments)


def test_multilabel_targets_must_match_labels():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    y = rng.integers(0, 2, size=(40, 3))
    with pytest.raises(DataError, match=r"train targets.*\(20, 2\)"):
        _train(X[:20], y[:20], X[20:], y[20:], task_type="multilabel", labels=["a", "b"])


def test_predict_scores_checks_width():
    X, y = separable_multiclass(n=100)
    probe = _train(X[:50], y[:50], X[50:], y[50:])
    with pytest.raises(DataError, match="16"):
        probe.predict_scores(X[:, :3])


def test_outputs_that_are_not_finite_at_the_start_are_a_clear_error():
    _, y = separable_multiclass(n=100)
    X = np.full((100, 16), 3e38, dtype=np.float32)  # finite, but the hidden layer overflows
    config = small_config(standardize=False, hidden_sizes=(64,))
    with pytest.raises(DataError, match="standardize"):
        _train(X[:50], y[:50], X[50:], y[50:], config=config)


def test_importing_configs_and_metrics_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, mirprobe.probes, mirprobe.metrics; "
        "from mirprobe.probes import expand_grid, PAPER_GRID; expand_grid(PAPER_GRID); "
        "heavy = [m for m in ('torch', 'sklearn', 'mir_eval') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- the train / evaluate stages on every task type ------------------------------


def _stage_inputs(tmp_path, task_type):
    """One feature shard, carrying its dataset as the extract stage writes it,
    for 60 clips with a learnable signal."""
    rng = np.random.default_rng(0)
    labels = {
        "multiclass": ["a", "b", "c"],
        "key": ["C major", "A minor", "G major"],
        "multilabel": ["x", "y", "z"],
        "regression": ["arousal", "valence"],
    }[task_type]
    clips, features = [], []
    for i in range(60):
        split = "train" if i < 30 else "valid" if i < 45 else "test"
        k = i % 3
        x = rng.standard_normal(8).astype(np.float32)
        x[k] += 3.0
        if task_type == "multilabel":
            label = "|".join(labels[j] for j in range(3) if j != k)
        elif task_type == "regression":
            label = f"{0.5 * k}|{-0.25 * k}"
        else:
            label = labels[k]
        # key: two clips per song, as GiantSteps' 30 s clips
        song = f"s{i // 2:03d}" if task_type == "key" else f"c{i:03d}"
        if task_type == "key":
            x[:3] = 0.0
            x[(i // 2) % 3] += 3.0
            label = labels[(i // 2) % 3]
        clips.append({"clip_id": f"c{i:03d}", "split": split, "label": label, "song_id": song})
        features.append(x)
    return write_feature_shard(
        tmp_path / "features.npz",
        task_type=task_type,
        labels=labels,
        clips=clips,
        layers={
            "x": np.stack(features),
            # a layer without the signal, for the layer choice on validation
            "noise": rng.standard_normal((len(clips), 8)).astype(np.float32),
        },
    )


@pytest.mark.parametrize("task_type", ["multiclass", "key", "multilabel", "regression"])
def test_train_and_evaluate_stages_run_every_task_type(tmp_path, task_type):
    # song groups go to the key task only; every other task type once failed here
    from mirprobe.metrics import PRIMARY_METRIC
    from mirprobe.stages import evaluate_probe, train_probe

    inputs = _stage_inputs(tmp_path, task_type)
    probe_config = LINEAR_PROBE_CONFIG
    trained = train_probe(
        **inputs,
        probe_config=probe_config,
        seed=0,
        probe_path=tmp_path / "probe.pt",
        record_path=tmp_path / "train.json",
    )
    assert trained["clip_counts"] == {"train": 30, "valid": 15, "test": 15}
    evaluated = evaluate_probe(
        **inputs, probe_path=tmp_path / "probe.pt", record_path=tmp_path / "test.json"
    )
    primary = evaluated["metrics"][PRIMARY_METRIC[task_type]]
    assert evaluated["metrics"]["primary"] == primary
    assert primary > {"regression": 0.5}.get(task_type, 0.7)


def test_one_table_holds_all_four_task_types(tmp_path):
    """train -> evaluate -> provenance -> table for a multiclass, key, multilabel
    and regression task side by side, as the paper config's table has them, with
    a representation of two layers (one without signal) read at the layer its
    validation scores choose."""
    from mirprobe.stages import assemble_table, cell_provenance, evaluate_probe, train_probe

    probe_config = LINEAR_PROBE_CONFIG
    tasks = ["multiclass", "key", "multilabel", "regression"]
    provenance = []
    for task in tasks:
        (tmp_path / task).mkdir()
        inputs = _stage_inputs(tmp_path / task, task)
        for layer in ("x", "noise"):
            inputs["layer"] = layer
            cell = tmp_path / task / "rep" / layer
            cell.mkdir(parents=True)
            train_probe(
                **inputs,
                probe_config=probe_config,
                seed=0,
                probe_path=cell / "probe.pt",
                record_path=cell / "train.json",
            )
            evaluate_probe(**inputs, probe_path=cell / "probe.pt", record_path=cell / "test.json")
            record = cell_provenance(
                task=task,
                representation="rep",
                layer=layer,
                row_label=f"Rep L{layer}",
                config={"seed": 0, "probe": probe_config, "representations": {"rep": {}}},
                config_sha256="0" * 64,
                workflow_dir=str(tmp_path),
                feature_paths=inputs["feature_paths"],
                train_record_path=cell / "train.json",
                test_record_path=cell / "test.json",
                out_path=cell / "provenance.json",
            )
            test_metrics = json.loads((cell / "test.json").read_text())["metrics"]
            assert record["test_metrics"] == test_metrics
            provenance.append(cell / "provenance.json")
    assemble_table(
        datasets={task: {"label": task.title()} for task in tasks},
        probe_config=probe_config,
        out_paths=[tmp_path / "table.md", tmp_path / "table.csv"],
        provenance_paths=provenance,
        representation_labels={"rep": "Rep"},
    )
    md = (tmp_path / "table.md").read_text()
    chosen = md.split(
        "Layer chosen on validation per task, with its test score (primary metric):\n"
    )
    assert len(chosen) == 2
    line = chosen[1].splitlines()[0]
    assert line.startswith("- Rep: Multiclass Lx (")
    assert [part.split(" (")[0] for part in line[len("- Rep: ") :].split(", ")] == [
        "Multiclass Lx",
        "Key Lx",
        "Multilabel Lx",
        "Regression Lx",
    ]
    lines = (tmp_path / "table.md").read_text().splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert header == [
        "Representation",
        "Multiclass Acc",
        "Key Weighted",
        "Key Acc",
        "Multilabel ROC-AUC",
        "Multilabel AP",
        "Regression R² arousal",
        "Regression R² valence",
        "Regression R²",
    ]
    values = [c.strip() for c in lines[2].strip("|").split("|")][1:]
    assert all(v and 0 <= float(v) <= 100 for v in values), values


def _outputs_at_step(step, X_train, y_train, X_valid, y_valid, groups):
    """The probe's validation outputs after ``step`` training steps: trained with one
    evaluation at ``step`` (evaluations draw no random numbers, so the trajectory is
    the same as with any ``eval_every``), and restored there when it beats step 0."""
    probe = train_probe(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type="key",
        config=small_config(eval_every=step, max_steps=step, patience=1000),
        labels=KEYS,
        valid_groups=groups,
    )
    assert probe.record.best_step == step  # so the module holds the state at ``step``
    return probe.predict_scores(X_valid)


@pytest.mark.parametrize("trainer", ["serial", "batched"])
def test_key_early_stopping_uses_the_best_strategy_of_each_evaluation(trainer):
    # A case where mean_prob and the best of the four strategies peak at different
    # evaluations: jukemir stops and restores on the best of the four.
    X_train, y_train, _ = key_dataset(n_songs=40, clips_per_song=3, noise=2.5, seed=4)
    X_valid, y_valid, groups = key_dataset(n_songs=20, clips_per_song=3, noise=2.5, seed=104)
    eval_every, max_steps = 8, 56
    steps = list(range(eval_every, max_steps + 1, eval_every))
    by_strategy = np.array(
        [
            [
                compute_metrics(
                    "key", y_true=y_valid, scores=scores, labels=KEYS, groups=groups, ensemble=s
                )["primary"]
                for s in ENSEMBLE_STRATEGIES
            ]
            for scores in (
                _outputs_at_step(step, X_train, y_train, X_valid, y_valid, groups) for step in steps
            )
        ]
    )  # (evaluation, strategy)
    best_of_four = by_strategy.max(axis=1)
    mean_prob = by_strategy[:, ENSEMBLE_STRATEGIES.index("mean_prob")]
    peak = int(np.argmax(best_of_four))
    assert steps[peak] != steps[int(np.argmax(mean_prob))]  # the case discriminates

    config = small_config(eval_every=eval_every, max_steps=max_steps, patience=1000)
    result = fit_grid(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type="key",
        labels=KEYS,
        configs=[config],
        valid_groups=groups,
        trainer=trainer,
    )
    record = result.best.record
    assert [step for step, _ in record.curve[1:]] == steps
    np.testing.assert_allclose([score for _, score in record.curve[1:]], best_of_four)
    assert record.best_step == steps[peak]
    assert record.best_score == record.valid_metrics["primary"] == best_of_four[peak]
    assert result.best.ensemble == ENSEMBLE_STRATEGIES[int(np.argmax(by_strategy[peak]))]
