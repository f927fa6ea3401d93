"""The task-type objects (mirprobe.task_types), value by value, and the probes package
they serve: encoding order, loss gradients, vectorised primaries, song pooling,
table columns, dropout scaling, one validation per grid, no import circle."""

import ast
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from mirprobe.errors import ConfigError, DataError
from mirprobe.metrics import ENSEMBLE_STRATEGIES, compute_metrics
from mirprobe.probes import expand_grid, fit_grid
from mirprobe.task_types import KEY_LABELS, TASK_TYPES, Regression, TaskType, task_type_of

NAMES = ["multiclass", "key", "multilabel", "regression"]
GENRES = ["rock", "blues", "jazz", "country"]  # deliberately not sorted
TAGS = ["vocal", "drums", "ambient"]
GRID_AXES = {
    "standardize": [True],
    "hidden_sizes": [[]],
    "batch_size": [32],
    "dropout": [0.0],
    "l2": [0.0],
}


def test_the_registry_maps_every_config_name_to_its_object():
    assert list(TASK_TYPES) == NAMES
    for name in NAMES:
        task = task_type_of(name)
        assert isinstance(task, TaskType) and task.name == name
        assert task_type_of(task) is task
    assert {n: TASK_TYPES[n].primary_metric for n in NAMES} == {
        "multiclass": "accuracy",
        "key": "weighted_score",
        "multilabel": "roc_auc_macro",
        "regression": "r2_mean",
    }
    with pytest.raises(ConfigError, match=r"'tempo'.*\['multiclass', 'key'"):
        task_type_of("tempo")


# -- label encoding ---------------------------------------------------------------


def test_class_encoding_indexes_the_label_names_in_their_given_order():
    assert sorted(KEY_LABELS) != KEY_LABELS  # the order matters
    strings = ["A minor", "C major", "Bb major", "C major", "Gb minor"]
    y = task_type_of("key").encode(strings, labels=KEY_LABELS)
    assert y.dtype == np.int64
    assert [KEY_LABELS[i] for i in y] == strings
    assert y.tolist() == [KEY_LABELS.index(s) for s in strings]
    genres = ["jazz", "rock", "country", "blues"]
    y = task_type_of("multiclass").encode(genres, labels=GENRES)
    assert y.tolist() == [2, 0, 3, 1]
    with pytest.raises(DataError, match="'polka'"):
        task_type_of("multiclass").encode(["polka"], labels=GENRES)


def test_encoded_keys_score_as_the_key_strings_do():
    # what the metrics see (label names by index) is what the metadata said
    import mir_eval

    reference = ["C major", "A minor", "E minor", "Gb major"]
    estimate = ["G major", "A minor", "G major", "Gb minor"]
    key = task_type_of("key")
    y = key.encode(reference, labels=KEY_LABELS)
    scores = np.full((4, 24), -5.0)
    scores[np.arange(4), key.encode(estimate, labels=KEY_LABELS)] = 5.0
    metrics = key.evaluate(y_true=y, scores=scores, labels=KEY_LABELS)
    expected = np.mean(
        [mir_eval.key.weighted_score(r, e) for r, e in zip(reference, estimate, strict=True)]
    )
    assert metrics["weighted_score"] == expected == (0.5 + 1 + 0.3 + 0.2) / 4


def test_multilabel_encoding_sets_the_named_columns():
    y = task_type_of("multilabel").encode(["drums|vocal", "", "ambient"], labels=TAGS)
    assert y.dtype == np.uint8
    assert y.tolist() == [[1, 1, 0], [0, 0, 0], [0, 0, 1]]
    with pytest.raises(DataError, match="'guitar'"):
        task_type_of("multilabel").encode(["guitar"], labels=TAGS)


def test_regression_encoding_parses_the_outputs_in_order():
    y = task_type_of("regression").encode(["0.5|-1.25", "3|4"], labels=["arousal", "valence"])
    assert y.dtype == np.float32
    assert y.tolist() == [[0.5, -1.25], [3.0, 4.0]]
    with pytest.raises(DataError, match="2 outputs expected"):
        task_type_of("regression").encode(["1|2|3"], labels=["arousal", "valence"])


def test_split_arrays_encodes_each_split_and_refuses_a_silently_missing_clip():
    from mirprobe.tasks import split_arrays

    metadata = pd.DataFrame(
        {
            "clip_id": ["a", "b", "c", "d", "e"],
            "split": ["train", "train", "valid", "test", "test"],
            "label": ["jazz", "rock", "blues", "country", "jazz"],
            "song_id": ["s1", "s1", "s2", "s3", "s4"],
        }
    )
    X = np.arange(10, dtype=np.float32).reshape(5, 2)
    clip_ids = ["e", "d", "c", "b", "a"]  # feature rows in another order
    splits = split_arrays(metadata, clip_ids, X, task_type="multiclass", labels=GENRES)
    assert splits["train"].clip_ids == ["a", "b"]
    assert splits["train"].X.tolist() == [[8.0, 9.0], [6.0, 7.0]]
    assert splits["train"].y.tolist() == [2, 0]
    assert splits["test"].y.tolist() == [3, 2]
    assert splits["test"].groups == ["s3", "s4"]
    with pytest.raises(DataError, match=r"1 clips have no features.*'b'"):
        split_arrays(
            metadata, ["e", "d", "c", "a"], X[[0, 1, 2, 4]], task_type="multiclass", labels=GENRES
        )
    splits = split_arrays(
        metadata,
        ["e", "d", "c", "a"],
        X[[0, 1, 2, 4]],
        task_type="multiclass",
        labels=GENRES,
        excluded={"b": "silent"},
    )
    assert splits["train"].clip_ids == ["a"]


# -- losses and their gradients ---------------------------------------------------


def _targets(name, rng, rows, n_outputs):
    if name in ("multiclass", "key"):
        return torch.from_numpy(rng.integers(0, n_outputs, size=rows))
    if name == "multilabel":
        return torch.from_numpy(rng.integers(0, 2, size=(rows, n_outputs)).astype(np.float64))
    return torch.from_numpy(rng.normal(size=(rows, n_outputs)))


@pytest.mark.parametrize("name", NAMES)
def test_loss_gradient_equals_autograd_of_the_loss(name):
    task = task_type_of(name)
    rng = np.random.default_rng(3)
    k, rows, n_outputs = 3, 7, 24 if name == "key" else 5
    targets = _targets(name, rng, rows, n_outputs)
    logits = torch.from_numpy(rng.normal(size=(k, rows, n_outputs)) * 2).requires_grad_()
    # the batched trainer's objective: the sum over configs of each config's mean loss
    total = sum(task.loss(logits[j], targets) for j in range(k))
    total.backward()
    by_hand = task.loss_gradient(logits.detach().clone(), targets)
    torch.testing.assert_close(by_hand, logits.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_the_named_torch_loss_by_value(name):
    task = task_type_of(name)
    rng = np.random.default_rng(4)
    outputs = torch.from_numpy(rng.normal(size=(6, 4)))
    targets = _targets(name, rng, 6, 4)
    expected = {
        "multiclass": torch.nn.CrossEntropyLoss(),
        "key": torch.nn.CrossEntropyLoss(),
        "multilabel": torch.nn.BCEWithLogitsLoss(),
        "regression": torch.nn.MSELoss(),
    }[name](outputs, targets)
    assert float(task.loss(outputs, targets)) == float(expected)


# -- vectorised primary == reference primary ------------------------------------


def _validation_problem(name, rng, n=48):
    groups = None
    if name == "multiclass":
        labels, y = GENRES, rng.integers(0, 4, size=n)
    elif name == "key":
        labels = KEY_LABELS
        songs = np.arange(n) // 3
        y = rng.integers(0, 24, size=songs.max() + 1)[songs]
        groups = np.array([f"song{s}" for s in songs])
    elif name == "multilabel":
        labels = [f"tag{i}" for i in range(5)]
        y = (rng.random(size=(n, 5)) < 0.3).astype(np.uint8)
        y[:, 4] = 0  # a tag with no positive: excluded from the macro mean
    else:
        labels, y = ["arousal", "valence"], rng.normal(size=(n, 2))
    return labels, y, groups


@pytest.mark.parametrize("name", NAMES)
def test_batched_scorer_equals_the_reference_primary(name):
    task = task_type_of(name)
    rng = np.random.default_rng(11)
    labels, y, groups = _validation_problem(name, rng)
    scores = rng.normal(size=(5, len(y), len(labels))).astype(np.float32)
    if name == "multilabel":
        scores = np.round(scores, 1)  # ties between scores
    if name == "key":
        scores[0] = scores[0, :1]  # one config whose clips all agree
    fast = task.batched_scorer(y, labels=labels, groups=groups)(torch.from_numpy(scores))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = [
            task.validation_metrics(s, y, labels=labels, groups=groups)[1]["primary"]
            for s in scores
        ]
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-12)


def test_regression_scorer_follows_the_reference_for_a_constant_output():
    task = task_type_of("regression")
    rng = np.random.default_rng(12)
    y = np.stack([rng.normal(size=20), np.full(20, 2.0)], axis=1)
    scores = rng.normal(size=(3, 20, 2))
    scores[1, :, 1] = 2.0  # exact on the constant output
    fast = task.batched_scorer(y, labels=["a", "b"])(torch.from_numpy(scores))
    reference = [
        compute_metrics("regression", y_true=y, scores=s, labels=["a", "b"])["r2_mean"]
        for s in scores
    ]
    np.testing.assert_allclose(fast, reference, rtol=0, atol=1e-12)


# -- song pooling ------------------------------------------------------------------


def test_only_the_key_task_pools_clips_per_song():
    groups = np.array(["s1", "s1", "s2"])
    assert task_type_of("key").song_groups(groups) is groups
    for name in ("multiclass", "multilabel", "regression"):
        assert task_type_of(name).song_groups(groups) is None
    with pytest.raises(ConfigError, match="only used by the 'key' task type"):
        compute_metrics(
            "multiclass", y_true=[0, 1, 2], scores=np.eye(3), labels=GENRES[:3], groups=groups
        )


def _two_songs():
    """Song s1: three clips of C major, two predicted G major by a small margin and
    one C major by a large one; song s2: one clip of A minor, predicted A minor."""
    labels = ["C major", "G major", "A minor"]
    y = np.array([0, 0, 0, 2])
    groups = np.array(["s1", "s1", "s1", "s2"])
    scores = np.array(
        [
            [0.0, 0.1, -9.0],
            [0.0, 0.1, -9.0],
            [5.0, 0.0, -9.0],
            [-9.0, -9.0, 1.0],
        ]
    )
    return labels, y, groups, scores


def test_key_pools_clips_per_song_with_the_chosen_strategy():
    key = task_type_of("key")
    labels, y, groups, scores = _two_songs()
    # vote and max... per song: vote -> G (fifth, 0.5); max_logit, mean_logit,
    # mean_prob -> C (1.0); song s2 is right either way
    expected = {"vote": 0.75, "max_logit": 1.0, "mean_logit": 1.0, "mean_prob": 1.0}
    for strategy, value in expected.items():
        metrics = key.evaluate(
            y_true=y, scores=scores, labels=labels, groups=groups, ensemble=strategy
        )
        assert metrics["weighted_score"] == value
        assert metrics["clip_accuracy"] == 0.5  # two of four clips argmax right
    # without groups each clip is a song: (0.5 + 0.5 + 1 + 1) / 4
    assert key.evaluate(y_true=y, scores=scores, labels=labels)["weighted_score"] == 0.75
    # a probe that chose no strategy pools by mean probability
    assert key.evaluate(y_true=y, scores=scores, labels=labels, groups=groups)["primary"] == 1.0


def test_key_validation_takes_the_best_strategy_first_in_order_on_ties():
    key = task_type_of("key")
    labels, y, groups, scores = _two_songs()
    strategy, metrics = key.validation_metrics(scores, y, labels=labels, groups=groups)
    assert (strategy, metrics["weighted_score"]) == ("max_logit", 1.0)
    assert key.ensemble_strategies == ENSEMBLE_STRATEGIES
    # where every strategy agrees, the first (vote) is kept
    agree = np.eye(3)[[0, 0, 0, 2]] * 4.0
    strategy, _ = key.validation_metrics(agree, y, labels=labels, groups=groups)
    assert strategy == "vote"


def test_other_task_types_choose_no_strategy():
    task = task_type_of("multiclass")
    ensemble, metrics = task.validation_metrics(np.eye(3), [0, 1, 1], labels=GENRES[:3])
    assert ensemble is None
    assert metrics == {"accuracy": 2 / 3, "primary": 2 / 3}


# -- table columns -----------------------------------------------------------------


def test_default_table_columns_per_task_type():
    from mirprobe.tables import table_metrics

    assert task_type_of("multiclass").table_columns(GENRES) == ["accuracy"]
    assert task_type_of("key").table_columns(KEY_LABELS) == ["weighted_score", "accuracy"]
    assert task_type_of("multilabel").table_columns(TAGS) == ["roc_auc_macro", "ap_macro"]
    assert task_type_of("regression").table_columns(["arousal", "valence"]) == [
        "r2_arousal",
        "r2_valence",
        "r2_mean",
    ]
    assert table_metrics("key", None, KEY_LABELS) == ["weighted_score", "accuracy"]
    assert table_metrics("key", ["accuracy"], KEY_LABELS) == ["accuracy"]


# -- dropout: nn.Dropout's scaling, in both trainers ---------------------------------


def _nn_dropout_keep_scale(p):
    """What ``nn.Dropout(p)`` multiplies a kept entry by (1 / (1 - p), float32)."""
    torch.manual_seed(0)
    out = torch.nn.Dropout(p)(torch.ones(10_000))
    kept = out[out != 0]
    assert len(kept) > 0 and bool((kept == kept[0]).all())
    return float(kept[0])


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_serial_training_forward_scales_kept_entries_as_nn_dropout(p):
    from mirprobe.probes.common import dropout_generators
    from mirprobe.probes.model import ProbeMLP
    from mirprobe.probes.training import _train_forward

    module = ProbeMLP(n_features=400, hidden_sizes=(), n_outputs=400, dropout=p)
    with torch.no_grad():  # the output layer passes its input through
        module.output.weight.copy_(torch.eye(400))
        module.output.bias.zero_()
    x = torch.linspace(1.0, 2.0, 400).repeat(8, 1)
    out = _train_forward(
        module, x, dropout=p, generators=dropout_generators(0, n_sites=1, device="cpu")
    )
    ratio = (out / x).flatten()
    kept = ratio[ratio != 0]
    scale = _nn_dropout_keep_scale(p)
    torch.testing.assert_close(kept, torch.full_like(kept, scale), rtol=1e-6, atol=0)
    assert abs(len(kept) / len(ratio) - (1 - p)) < 0.05  # Bernoulli(1 - p) keeps


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_batched_masks_scale_kept_entries_as_nn_dropout(p):
    from mirprobe.probes.batched import _Pack
    from mirprobe.probes.config import ProbeConfig

    config = ProbeConfig(
        standardize=True, hidden_sizes=(), batch_size=8, learning_rate=1e-3, dropout=p, l2=0.0
    )
    init = [(torch.zeros(2, 3), torch.zeros(2))]
    pack = _Pack([0], [config], init=init, standardize=True, dropout=p, device="cpu")
    assert float(pack.keep_scale) == _nn_dropout_keep_scale(p)


# -- a new task type is one class ------------------------------------------------------


class Loudness(Regression):
    """A made-up task type: one real output per clip, defined by this class alone."""

    name = "loudness"
    default_columns = ("r2_mean",)

    def table_columns(self, labels):
        return list(self.default_columns)


def _loudness_problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    y = (X @ rng.normal(size=(6, 1)) + 0.1 * rng.normal(size=(120, 1))).astype(np.float32)
    return X[:80], y[:80], X[80:], y[80:]


def test_a_new_task_type_is_one_class_through_every_trainer(monkeypatch):
    from mirprobe import task_types
    from mirprobe.tables import table_metrics

    monkeypatch.setitem(task_types.TASK_TYPES, "loudness", Loudness())
    X_train, y_train, X_valid, y_valid = _loudness_problem()
    configs = expand_grid(
        {**GRID_AXES, "learning_rate": [1e-2, 3e-2]},
        eval_every=5,
        patience=2,
        max_steps=30,
        seed=0,
    )
    results = {
        trainer: fit_grid(
            X_train,
            y_train,
            X_valid,
            y_valid,
            task_type="loudness",
            labels=["lufs"],
            configs=configs,
            trainer=trainer,
        )
        for trainer in ("serial", "batched", "sklearn_cv")
    }
    for result in results.values():
        assert result.best.task_type == "loudness"
        metrics = result.best.evaluate(X_valid, y_valid)
        assert metrics["primary"] == metrics["r2_mean"] == metrics["r2_lufs"]
    serial, batched = results["serial"].records, results["batched"].records
    for one, other in zip(serial, batched, strict=True):
        assert one["n_steps"] == other["n_steps"]
        assert math.isclose(
            one["valid_metrics"]["primary"], other["valid_metrics"]["primary"], rel_tol=1e-5
        )
    assert table_metrics("loudness", None, ["lufs"]) == ["r2_mean"]


# -- the probes package: validated once, no import circle -------------------------------


@pytest.mark.parametrize("trainer", ["serial", "batched", "sklearn_cv"])
def test_a_grid_is_validated_once(monkeypatch, trainer):
    from mirprobe.probes import batched, common, grid, quick, training

    calls = []
    real = common.validate_inputs

    def counting(*args, **kwargs):
        calls.append(kwargs["task_type"])
        return real(*args, **kwargs)

    for module in (common, grid, training, batched, quick):
        if hasattr(module, "validate_inputs"):
            monkeypatch.setattr(module, "validate_inputs", counting)
    X_train, y_train, X_valid, y_valid = _loudness_problem()
    configs = expand_grid(
        {**GRID_AXES, "learning_rate": [1e-2, 3e-2, 1e-1]},
        eval_every=5,
        patience=1,
        max_steps=10,
        seed=0,
    )
    fit_grid(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type="regression",
        labels=["lufs"],
        configs=configs,
        trainer=trainer,
    )
    assert calls == ["regression"]


def test_the_probes_package_has_no_import_circle_and_imports_no_private_names():
    package = Path(__file__).resolve().parent.parent / "mirprobe" / "probes"
    imports, private = {}, []
    for path in sorted(package.glob("*.py")):
        name = f"mirprobe.probes.{path.stem}"
        imports[name] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mirprobe"):
                if node.module.startswith("mirprobe.probes."):
                    imports[name].add(node.module)
                private += [f"{name}: {a.name}" for a in node.names if a.name.startswith("_")]
    assert private == []
    # depth-first search for a cycle
    state = {}

    def visit(module, trail):
        if state.get(module) == "open":
            raise AssertionError(f"import circle: {' -> '.join([*trail, module])}")
        if state.get(module) == "done":
            return
        state[module] = "open"
        for target in imports.get(module, ()):
            visit(target, [*trail, module])
        state[module] = "done"

    for module in imports:
        visit(module, [])
    assert "mirprobe.probes.grid" not in set().union(
        *(imports[m] for m in imports if m != "mirprobe.probes.grid")
    )


# -- the user's raw labels ----------------------------------------------------------


def test_user_label_columns_are_the_label_column_or_the_regression_targets():
    for name in ("multiclass", "key", "multilabel"):
        assert task_type_of(name).user_label_columns(None) == ["label"]
        assert task_type_of(name).uses_target_columns is False
    assert task_type_of("regression").user_label_columns(("tempo", "energy")) == [
        "tempo",
        "energy",
    ]
    assert task_type_of("regression").uses_target_columns is True


def test_a_table_row_is_parsed_into_the_task_types_label_string():
    row = {"label": " jazz "}
    assert task_type_of("multiclass").label_from_row(row, target_columns=None, where="w") == "jazz"
    # key: validated with mir_eval, respelt with flats as the 24 key classes
    row = {"label": "C# minor"}
    assert task_type_of("key").label_from_row(row, target_columns=None, where="w") == "Db minor"
    # multilabel: ;-separated, stripped, deduplicated, sorted, |-joined; empty is no tags
    row = {"label": " vocal; drums ;;vocal "}
    assert (
        task_type_of("multilabel").label_from_row(row, target_columns=None, where="w")
        == "drums|vocal"
    )
    assert (
        task_type_of("multilabel").label_from_row({"label": ""}, target_columns=None, where="w")
        == ""
    )
    # regression: the target columns in their given order, as repr of floats
    row = {"tempo": " 120 ", "energy": "0.25", "label": "ignored"}
    assert (
        task_type_of("regression").label_from_row(
            row, target_columns=["energy", "tempo"], where="w"
        )
        == "0.25|120.0"
    )


@pytest.mark.parametrize(
    "name, row, message",
    [
        ("multiclass", {"label": "  "}, r"^row 7: empty label$"),
        ("key", {"label": ""}, r"^row 7: empty label$"),
        ("key", {"label": "C dorian"}, r"^row 7: key 'C dorian' is not in mir_eval"),
        ("key", {"label": "X"}, r"^row 7: key 'X' is valid for mir_eval but not one of the 24"),
        ("multilabel", {"label": "a|b;c"}, r"^row 7: tag 'a\|b' contains '\|'$"),
        ("regression", {"tempo": "fast"}, r"^row 7: target tempo 'fast' is not a finite number$"),
        ("regression", {"tempo": "inf"}, r"^row 7: target tempo 'inf' is not a finite number$"),
    ],
)
def test_a_bad_table_row_is_a_data_error_naming_where_and_the_value(name, row, message):
    with pytest.raises(DataError, match=message):
        task_type_of(name).label_from_row(row, target_columns=["tempo"], where="row 7")


def test_a_track_attribute_value_is_parsed_into_the_task_types_label_string():
    multiclass, key = task_type_of("multiclass"), task_type_of("key")
    assert multiclass.label_from_value(" jazz ", where="track 1") == "jazz"
    assert multiclass.label_from_value(["jazz"], where="track 1") == "jazz"
    assert key.label_from_value(["f# major"], where="track 1") == "Gb major"
    assert task_type_of("multilabel").label_from_value(["b", "a", "b"], where="t") == "a|b"
    assert task_type_of("multilabel").label_from_value("solo", where="t") == "solo"
    regression = task_type_of("regression")
    assert regression.label_from_value(np.array([121.5, 60.0]), where="t") == "121.5"
    assert regression.label_from_value(7, where="t") == "7.0"
    with pytest.raises(DataError, match=r"^2 values \['a', 'b'\], one expected$"):
        multiclass.label_from_value(["a", "b"], where="t")
    with pytest.raises(DataError, match=r"^empty$"):
        key.label_from_value(" ", where="t")
    with pytest.raises(DataError, match=r"^track 9: key 'H major' is not in mir_eval"):
        key.label_from_value("H major", where="track 9")
    with pytest.raises(DataError, match=r"is not a finite number$"):
        regression.label_from_value([], where="t")


def test_label_names_come_from_the_label_strings_or_the_task():
    strings = ["rock", "jazz", "rock", "blues"]
    assert task_type_of("multiclass").label_names(strings, target_columns=None) == [
        "blues",
        "jazz",
        "rock",
    ]
    assert task_type_of("key").label_names(["C major"], target_columns=None) == KEY_LABELS
    assert task_type_of("multilabel").label_names(
        ["vocal|drums", "", "ambient"], target_columns=None
    ) == ["ambient", "drums", "vocal"]
    assert task_type_of("regression").label_names(["1.0|2.0"], target_columns=["b", "a"]) == [
        "b",
        "a",
    ]


def test_group_strata_are_the_common_label_the_rarest_tag_or_the_target_quartile():
    groups = pd.Series(["g1", "g1", "g1", "g2", "g3"])
    labels = pd.Series(["rock", "jazz", "jazz", "rock", "blues"])
    strata = task_type_of("multiclass").group_strata(labels, groups)
    assert strata.to_dict() == {"g1": "jazz", "g2": "rock", "g3": "blues"}
    # tag counts: a 3, b 3, c 1; ties broken by name; a group without tags: ""
    tags = pd.Series(["a|b", "a|c", "a|b", "", "b"])
    strata = task_type_of("multilabel").group_strata(
        tags, pd.Series(["g1", "g2", "g3", "g4", "g5"])
    )
    assert strata.to_dict() == {"g1": "a", "g2": "c", "g3": "a", "g4": "", "g5": "b"}
    # regression: the quartile of each group's mean first target
    groups = pd.Series([f"g{i}" for i in range(8)])
    values = pd.Series([f"{v}|99" for v in (8.0, 1.0, 7.0, 2.0, 6.0, 3.0, 5.0, 4.0)])
    strata = task_type_of("regression").group_strata(values, groups)
    assert strata.to_dict() == {
        "g0": "3",
        "g1": "0",
        "g2": "3",
        "g3": "0",
        "g4": "2",
        "g5": "1",
        "g6": "2",
        "g7": "1",
    }
    # fewer than four distinct means: one stratum
    strata = task_type_of("regression").group_strata(pd.Series(["1.0", "2.0", "1.0"]), groups[:3])
    assert strata.to_dict() == {"g0": "", "g1": "", "g2": ""}


def test_the_clip_stratum_is_the_first_label_except_for_regression():
    assert task_type_of("multiclass").clip_stratum("jazz") == "jazz"
    assert task_type_of("key").clip_stratum("Db minor") == "Db minor"
    assert task_type_of("multilabel").clip_stratum("drums|vocal") == "drums"
    assert task_type_of("regression").clip_stratum("120.0") == ""


# -- no branch on a task type's name outside mirprobe/task_types.py ---------------------

BRANCH_ON_NAME = re.compile(r"task_type\s*(==|!=|not\s+in\b|in\b)")


def test_nothing_outside_the_task_type_module_branches_on_a_task_types_name():
    root = Path(__file__).resolve().parent.parent
    sources = [root / "Snakefile"]
    for folder in ("mirprobe", "scripts", "rules"):
        sources += sorted(p for p in (root / folder).rglob("*") if p.is_file())
    sources = [
        p
        for p in sources
        if p.suffix in (".py", ".smk", "") and p != root / "mirprobe" / "task_types.py"
    ]
    assert root / "mirprobe" / "stages.py" in sources  # the walk reaches the sources
    branches = [
        f"{p.relative_to(root)}:{number}: {line.strip()}"
        for p in sources
        if "__pycache__" not in p.parts
        for number, line in enumerate(p.read_text(errors="replace").splitlines(), 1)
        if BRANCH_ON_NAME.search(line)
    ]
    assert not branches, "branch on a task type's name outside mirprobe/task_types.py:\n" + (
        "\n".join(branches)
    )
