"""``probe.seeds`` (issue 12, item 4): the configuration selected on validation is
retrained with each listed seed and scored on test (rule retrain_seeds); provenance
records each seed's metrics and the table adds their mean ± sd beside each score.

The retrainings are checked against probes trained here, independently of the stage,
and scored with scikit-learn; a seed equal to the run's ``seed`` must give the main
probe's numbers exactly (the serial trainer is deterministic on one machine).
"""

import copy
import csv
import hashlib
import json
import math

import numpy as np
import pytest
from stage_inputs import run_probe_stages, write_feature_shard

from conftest import requires_fluidsynth
from mirprobe.errors import ConfigError, DataError

LABELS = ["c", "a", "b"]
N_FEATURES = 8

#: two configurations, one with a hidden layer and dropout, so that seeds matter
PROBE_CONFIG = {
    "grid": {
        "standardize": [True],
        "hidden_sizes": [[], [16]],
        "batch_size": [16],
        "learning_rate": [0.01],
        "l2": [0.0],
        "dropout": [0.25],
    },
    "eval_every": 4,
    "patience": 4,
    "max_steps": 120,
    "trainer": "serial",
    "seeds": None,
}


def noisy_clips(seed=0):
    """90 train, 45 valid and 60 test clips of three classes with a weak signal, so
    that probes trained with different seeds disagree on some test clips."""
    rng = np.random.default_rng(seed)
    clips = []
    for i in range(195):
        split = "train" if i < 90 else "valid" if i < 135 else "test"
        k = int(rng.integers(3))
        x = rng.standard_normal(N_FEATURES)
        x[k] += 0.8
        clips.append({"clip_id": f"c{i:03d}", "split": split, "label": LABELS[k], "x": x})
    return clips


def write_shard(tmp_path, clips):
    """The stages' inputs: one feature shard of ``clips``, each clip its own song."""
    return write_feature_shard(
        tmp_path / "features.npz",
        task_type="multiclass",
        labels=LABELS,
        clips=[{**c, "song_id": c["clip_id"]} for c in clips],
        layers={"x": np.stack([c["x"] for c in clips]).astype(np.float32)},
    )


def with_seeds(seeds, probe_config=PROBE_CONFIG):
    return {**copy.deepcopy(probe_config), "seeds": seeds}


@pytest.fixture(scope="module")
def cell(tmp_path_factory):
    """A cell trained and evaluated with seed 0, as rules train_probe and evaluate_probe
    make it."""
    tmp_path = tmp_path_factory.mktemp("cell")
    clips = noisy_clips()
    inputs = write_shard(tmp_path, clips)
    # with the per-clip predictions the table's intervals are computed from
    trained, evaluated = run_probe_stages(
        tmp_path, inputs, PROBE_CONFIG, predictions_path=tmp_path / "predictions.npz"
    )
    return {
        "dir": tmp_path,
        "clips": clips,
        "inputs": inputs,
        "trained": trained,
        "evaluated": evaluated,
    }


def retrain(cell, seeds, *, out, seed=0, train_record=None):
    from mirprobe.stages import retrain_seeds

    return retrain_seeds(
        **cell["inputs"],
        probe_config=with_seeds(seeds),
        seed=seed,
        train_record_path=train_record or cell["dir"] / "train.json",
        record_path=out,
    )


def split(clips, name):
    from mirprobe.tasks import encode_labels

    chosen = [c for c in clips if c["split"] == name]
    X = np.stack([c["x"] for c in chosen]).astype(np.float32)
    labels = [c["label"] for c in chosen]
    return X, encode_labels("multiclass", labels, labels=LABELS), labels


def independent_test_accuracy(clips, config):
    """A probe of ``config`` trained here on the train split, early-stopped on valid,
    and its test accuracy from scikit-learn."""
    from sklearn.metrics import accuracy_score

    from mirprobe.probes import ProbeConfig, train_probe

    (X_train, y_train, _), (X_valid, y_valid, _) = split(clips, "train"), split(clips, "valid")
    X_test, _, test_labels = split(clips, "test")
    probe = train_probe(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type="multiclass",
        config=ProbeConfig.from_dict(config),
        labels=LABELS,
    )
    decided = [LABELS[i] for i in probe.predict_scores(X_test).argmax(axis=1)]
    return accuracy_score(test_labels, decided)


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- the stage --------------------------------------------------------------------------


def test_each_seed_retrains_the_selected_configuration_and_scores_it_on_test(cell, tmp_path):
    before = {name: sha256_of(cell["dir"] / name) for name in ("probe.pt", "train.json")}
    record = retrain(cell, [0, 1, 2], out=tmp_path / "seeds.json")
    assert json.loads((tmp_path / "seeds.json").read_text()) == json.loads(json.dumps(record))
    selected = cell["trained"]["selected"]["config"]
    assert [run["seed"] for run in record["runs"]] == [0, 1, 2]
    accuracies = []
    for run in record["runs"]:
        # the selected configuration, with the run's seed and nothing else changed
        assert run["config"] == {**selected, "seed": run["seed"]}
        expected = independent_test_accuracy(cell["clips"], run["config"])
        assert run["test_metrics"]["accuracy"] == pytest.approx(expected, abs=1e-12)
        assert run["test_metrics"]["primary"] == run["test_metrics"]["accuracy"]
        accuracies.append(expected)
    # real retrainings: on this noisy task every seed scores differently
    assert len(set(accuracies)) == 3, accuracies
    # the run's own seed is the main probe again, to the bit
    main = record["runs"][0]
    assert main["test_metrics"] == cell["evaluated"]["metrics"]
    assert main["valid_metrics"] == cell["trained"]["selected"]["valid_metrics"]
    assert main["best_step"] == cell["trained"]["selected"]["best_step"]
    spread = record["summary"]["accuracy"]
    assert spread["mean"] == pytest.approx(np.mean(accuracies), abs=1e-12)
    assert spread["sd"] == pytest.approx(np.std(accuracies, ddof=1), abs=1e-12)
    assert spread["n"] == 3
    # the selected probe and its record, which evaluate_probe reads, are untouched
    assert {name: sha256_of(cell["dir"] / name) for name in before} == before
    assert record["selected_uid"] == cell["trained"]["selected"]["uid"]
    assert record["probe_sha256"] == cell["trained"]["probe_sha256"]


@pytest.mark.parametrize("main_seed", [0, 3])
def test_a_seed_equal_to_the_runs_seed_gives_the_main_probes_numbers(tmp_path, main_seed):
    from mirprobe.stages import retrain_seeds

    inputs = write_shard(tmp_path, noisy_clips(seed=1))
    trained, evaluated = run_probe_stages(tmp_path, inputs, with_seeds([main_seed]), seed=main_seed)
    record = retrain_seeds(
        **inputs,
        probe_config=with_seeds([main_seed]),
        seed=main_seed,
        train_record_path=tmp_path / "train.json",
        record_path=tmp_path / "seeds.json",
    )
    [run] = record["runs"]
    assert run["test_metrics"] == evaluated["metrics"]
    assert run["valid_metrics"] == trained["selected"]["valid_metrics"]
    # one seed: a mean, no standard deviation
    assert record["summary"]["accuracy"] == {
        "mean": evaluated["metrics"]["accuracy"],
        "sd": None,
        "n": 1,
    }


def test_listing_seeds_leaves_the_training_identity_of_the_grid_as_it_is(cell, tmp_path):
    from mirprobe.stages import train_probe

    trained = train_probe(
        **cell["inputs"],
        probe_config=with_seeds([1, 2]),
        seed=0,
        probe_path=tmp_path / "probe.pt",
        record_path=tmp_path / "train.json",
    )
    # so a run that adds probe.seeds keeps its probes (rule train_probe's params too)
    assert trained["identity"] == cell["trained"]["identity"]
    assert trained["selected"] == cell["trained"]["selected"]


def test_a_selection_made_for_other_settings_is_not_retrained(cell, tmp_path):
    with pytest.raises(DataError, match=r"train\.json: trained for other probe settings"):
        retrain(cell, [1], seed=1, out=tmp_path / "seeds.json")
    assert not (tmp_path / "seeds.json").exists()


def test_no_seeds_is_a_config_error_not_an_empty_record(cell, tmp_path):
    with pytest.raises(ConfigError, match="probe.seeds"):
        retrain(cell, None, out=tmp_path / "seeds.json")


@pytest.mark.parametrize("trainer", ["batched", "sklearn_cv"])
def test_the_other_trainers_retrain_as_they_trained(tmp_path, trainer):
    from mirprobe.stages import retrain_seeds

    inputs = write_shard(tmp_path, noisy_clips(seed=2))
    probe_config = with_seeds([0, 1], {**PROBE_CONFIG, "trainer": trainer})
    trained, evaluated = run_probe_stages(tmp_path, inputs, probe_config)
    record = retrain_seeds(
        **inputs,
        probe_config=probe_config,
        seed=0,
        train_record_path=tmp_path / "train.json",
        record_path=tmp_path / "seeds.json",
    )
    main, other = record["runs"]
    # batched: the same results as the serial loop to float tolerance (mirprobe.probes)
    assert main["test_metrics"]["accuracy"] == pytest.approx(evaluated["metrics"]["accuracy"])
    assert main["valid_metrics"]["primary"] == pytest.approx(
        trained["selected"]["valid_metrics"]["primary"]
    )
    assert main["config"] == {**trained["selected"]["config"], "seed": 0}
    assert other["config"] == {**trained["selected"]["config"], "seed": 1}


# -- provenance and the table -----------------------------------------------------------


def provenance_of(cell, out, *, seeds, seeds_record_path, row="Rep", representation="rep"):
    from mirprobe.stages import cell_provenance

    return cell_provenance(
        task="toy",
        representation=representation,
        layer="x",
        row_label=row,
        config={
            "seed": 0,
            "probe": with_seeds(seeds),
            "representations": {representation: {}},
        },
        config_sha256="0" * 64,
        workflow_dir=str(cell["dir"]),
        feature_paths=cell["inputs"]["feature_paths"],
        train_record_path=cell["dir"] / "train.json",
        test_record_path=cell["dir"] / "test.json",
        out_path=out,
        seeds_record_path=seeds_record_path,
    )


@pytest.fixture(scope="module")
def seeded(cell, tmp_path_factory):
    out = tmp_path_factory.mktemp("seeded")
    record = retrain(cell, [0, 1, 2], out=out / "seeds.json")
    return {"dir": out, "record": record}


def test_provenance_records_each_seeds_test_metrics(cell, seeded, tmp_path):
    record = provenance_of(
        cell, tmp_path / "p.json", seeds=[0, 1, 2], seeds_record_path=seeded["dir"] / "seeds.json"
    )
    assert json.loads((tmp_path / "p.json").read_text()) == json.loads(json.dumps(record))
    assert record["seeds"]["seeds"] == [0, 1, 2] and record["seeds"]["main_seed"] == 0
    assert [r["test_metrics"] for r in record["seeds"]["runs"]] == [
        r["test_metrics"] for r in seeded["record"]["runs"]
    ]
    assert record["seeds"]["summary"] == seeded["record"]["summary"]
    # the retraining is a stage of the cell, with its code accounted for
    assert "seeds" in record["code"]["stages"] and "seeds" in record["stages"]
    # the main probe's numbers are still the cell's
    assert record["test_metrics"] == cell["evaluated"]["metrics"]
    # and the readable account lists each seed's test score
    from mirprobe.provenance import describe

    runs = seeded["record"]["runs"]
    assert (
        "seeds: [0, 1, 2] (selection with seed 0): test primary "
        + ", ".join(f"{r['seed']}: {r['test_metrics']['primary']:.4f}" for r in runs)
    ) in describe(record)


def test_provenance_refuses_a_missing_or_foreign_seeds_record(cell, seeded, tmp_path):
    with pytest.raises(DataError, match=r"probe.seeds is \[0, 1, 2\], but no seeds record"):
        provenance_of(cell, tmp_path / "a.json", seeds=[0, 1, 2], seeds_record_path=None)
    with pytest.raises(DataError, match=r"seeds\.json: retrained .*snakemake --forcerun"):
        provenance_of(
            cell, tmp_path / "b.json", seeds=[0, 1], seeds_record_path=seeded["dir"] / "seeds.json"
        )
    with pytest.raises(DataError, match="lists no probe.seeds"):
        provenance_of(
            cell, tmp_path / "c.json", seeds=None, seeds_record_path=seeded["dir"] / "seeds.json"
        )
    # without seeds, the record has no seeds section at all
    assert "seeds" not in provenance_of(
        cell, tmp_path / "d.json", seeds=None, seeds_record_path=None
    )


def write_table(cell, provenance_paths, out, *, seeds):
    from mirprobe.stages import assemble_table

    assemble_table(
        datasets={"toy": {"label": "Toy", "metrics": None}},
        probe_config=with_seeds(seeds),
        provenance_paths=provenance_paths,
        out_paths=[out / "table.md", out / "table.csv", out / "table.tex"],
        representation_labels={"rep": "Rep"},
        uncertainty={
            "bootstrap": {"resamples": 50, "confidence": 0.95, "seed": 0},
            "comparisons": [],
        },
    )
    with open(out / "table.csv") as handle:
        return list(csv.reader(handle))


def percent(value):
    return f"{100 * value:.1f}"


def test_the_table_adds_mean_and_sd_over_the_seeds_beside_the_interval(cell, seeded, tmp_path):
    with_seeds_dir, without_dir = tmp_path / "with", tmp_path / "without"
    with_seeds_dir.mkdir(), without_dir.mkdir()
    seeded_record = provenance_of(
        cell, tmp_path / "p.json", seeds=[0, 1, 2], seeds_record_path=seeded["dir"] / "seeds.json"
    )
    rows = write_table(cell, [tmp_path / "p.json"], with_seeds_dir, seeds=[0, 1, 2])
    provenance_of(cell, tmp_path / "q.json", seeds=None, seeds_record_path=None)
    plain = write_table(cell, [tmp_path / "q.json"], without_dir, seeds=None)

    # without seeds: the table of a run without them, none of their columns
    assert not any("seeds" in title for title in plain[0])
    assert "±" not in (without_dir / "table.md").read_text()
    # with them: the same columns first, then the seeds' mean and sd
    assert rows[0] == plain[0] + ["Toy Acc seeds mean", "Toy Acc seeds sd"]
    assert rows[1][: len(plain[1])] == plain[1]
    spread = seeded_record["seeds"]["summary"]["accuracy"]
    accuracies = [r["test_metrics"]["accuracy"] for r in seeded["record"]["runs"]]
    assert rows[1][len(plain[1]) :] == [
        percent(np.mean(accuracies)),
        percent(np.std(accuracies, ddof=1)),
    ]
    assert spread["sd"] > 0
    # markdown and LaTeX: the cell as printed without seeds, then (mean ± sd)
    shown = f"({percent(spread['mean'])} ± {percent(spread['sd'])})"
    plain_cell = [
        c.strip() for c in (without_dir / "table.md").read_text().splitlines()[2].split("|")
    ]
    seeded_cell = [
        c.strip() for c in (with_seeds_dir / "table.md").read_text().splitlines()[2].split("|")
    ]
    assert seeded_cell[2] == f"{plain_cell[2]} {shown}"
    assert "[" in plain_cell[2]  # beside the bootstrap interval
    md = (with_seeds_dir / "table.md").read_text()
    assert "In parentheses: mean ± sd of the test score over seeds 0, 1, 2" in md
    assert f"{plain_cell[2]} {shown}" in (with_seeds_dir / "table.tex").read_text()
    assert math.isfinite(float(rows[1][-1]))


def test_a_table_with_seeds_refuses_a_record_without_them(cell, tmp_path):
    from mirprobe.stages import assemble_table

    provenance_of(cell, tmp_path / "q.json", seeds=None, seeds_record_path=None)
    record = json.loads((tmp_path / "q.json").read_text())
    # a record claiming the configuration's seeds but carrying none
    record["config"]["resolved"]["probe"]["seeds"] = [0, 1]
    (tmp_path / "q.json").write_text(json.dumps(record))
    with pytest.raises(DataError, match=r"q\.json: retrained with seeds None"):
        assemble_table(
            datasets={"toy": {"label": "Toy"}},
            probe_config=with_seeds([0, 1]),
            provenance_paths=[tmp_path / "q.json"],
            out_paths=[tmp_path / "table.csv"],
        )


# -- configuration ----------------------------------------------------------------------


def default_config():
    import yaml

    from conftest import REPO

    return yaml.safe_load((REPO / "config.yaml").read_text())


@pytest.mark.parametrize(
    "seeds, problem",
    [
        ([], r"probe\.seeds: \[\] should be non-empty"),
        ([0, 1, 0], r"probe\.seeds: \[0, 1, 0\] has non-unique elements"),
        ([1, 1.0], r"probe\.seeds: \[1, 1\.0\] has non-unique elements"),
        ([0, -1], r"probe\.seeds\.1: -1 is less than the minimum of 0"),
        ([0.5], r"probe\.seeds\.0: 0\.5 is not of type 'integer'"),
        ([True], r"probe\.seeds\.0: True is not of type 'integer'"),
        (3, r"probe\.seeds: 3 is not of type 'array', 'null'"),
    ],
)
def test_bad_seeds_are_a_config_error_naming_the_key(seeds, problem):
    from mirprobe.config import validate_config

    config = default_config()
    config["probe"]["seeds"] = seeds
    with pytest.raises(ConfigError, match=problem):
        validate_config(config)


def test_seeds_default_to_none_and_are_recorded_as_integers():
    from mirprobe.config import validate_config
    from mirprobe.identity import training_settings

    config = validate_config(default_config())
    assert config["probe"]["seeds"] is None
    seeded = default_config()
    seeded["probe"]["seeds"] = [2.0, 0]
    resolved = validate_config(seeded)["probe"]
    assert resolved["seeds"] == [2, 0] and all(type(s) is int for s in resolved["seeds"])
    # the grid's settings are the same with or without seeds
    assert training_settings(resolved) == training_settings(config["probe"])
    assert "seeds" not in training_settings(resolved)


# -- the workflow -------------------------------------------------------------------------


@pytest.mark.workflow
@requires_fluidsynth
def test_adding_seeds_to_a_finished_run_retrains_only_the_selected_probes(finished_run, tmp_path):
    """The real snakemake CLI on a copy of the shared run: listing probe.seeds plans no
    grid training or evaluation again, and the table gains the seeds' columns."""
    import re
    import shutil

    import yaml

    from conftest import run

    workdir = tmp_path / "run"
    # copy2 keeps the files' times, so Snakemake sees the copy as up to date
    shutil.copytree(finished_run, workdir, symlinks=True)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["probe"]["seeds"] = [0, 1]
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    planned = run(workdir, "--dry-run").stdout
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", planned.split("Job stats:")[1], flags=re.M))
    assert jobs == {
        "retrain_seeds": "2",
        "provenance": "2",
        "table": "1",
        "all": "1",
        "total": "6",
    }, planned

    run(workdir)
    results = workdir / "results"
    with open(results / "table.csv") as handle:
        rows = list(csv.reader(handle))
    with open(finished_run / "results" / "table.csv") as handle:
        before = list(csv.reader(handle))
    extra = [f"SynthKey {m} seeds {s}" for m in ("Weighted", "Acc") for s in ("mean", "sd")]
    assert rows[0] == before[0] + extra
    for row, old, rep in zip(rows[1:], before[1:], ("chroma", "mfcc"), strict=True):
        assert row[: len(old)] == old  # the main probes' numbers and intervals, unchanged
        seeds = json.loads(
            (results / "probes" / "synth_key" / rep / "stats" / "seeds.json").read_text()
        )
        test = json.loads(
            (results / "probes" / "synth_key" / rep / "stats" / "test.json").read_text()
        )
        assert [r["seed"] for r in seeds["runs"]] == [0, 1]
        assert seeds["runs"][0]["test_metrics"] == test["metrics"]
        values = [r["test_metrics"]["weighted_score"] for r in seeds["runs"]]
        assert row[len(old) : len(old) + 2] == [
            percent(np.mean(values)),
            percent(np.std(values, ddof=1)),
        ]
        provenance = json.loads(
            (results / "provenance" / "synth_key" / rep / "stats.json").read_text()
        )
        assert provenance["seeds"]["runs"][1]["test_metrics"] == seeds["runs"][1]["test_metrics"]
        # the config file this run read, by path and digest
        assert provenance["config"]["files"] == [
            {
                "path": str((workdir / "config.yaml").resolve()),
                "sha256": sha256_of(workdir / "config.yaml"),
            }
        ]
        assert "overrides" not in provenance["config"]
    assert (
        "In parentheses: mean ± sd of the test score over seeds 0, 1"
        in (results / "table.md").read_text()
    )
