import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, snakemake
from mirprobe.config import config_hash, load_config, load_schema, validate_config
from mirprobe.datasets import DATASET_CLASSES
from mirprobe.errors import ConfigError
from mirprobe.extractors import EXTRACTOR_CLASSES


@pytest.fixture
def default_config():
    with open(REPO / "config.yaml") as handle:
        return yaml.safe_load(handle)


def test_default_config_validates_and_fills_defaults(default_config):
    config = validate_config(copy.deepcopy(default_config))
    assert config["audio"]["on_bad_audio"] == "error"
    assert config["representations"]["chroma"]["batch_size"] == 8
    assert config["datasets"]["synth_key"]["params"]["clips_per_key"] == 40


def test_misspelt_top_level_key_is_named(default_config):
    default_config["reprsentations"] = default_config.pop("representations")
    with pytest.raises(ConfigError, match="reprsentations"):
        validate_config(default_config)


def test_misspelt_nested_key_is_named(default_config):
    default_config["probe"]["grid"]["learning_rates"] = [0.1]
    with pytest.raises(ConfigError, match=r"probe\.grid.*learning_rates"):
        validate_config(default_config)


def test_unknown_extractor_is_named(default_config):
    default_config["representations"]["jukebocks"] = {"extractor": "jukebocks"}
    with pytest.raises(ConfigError, match="jukebocks"):
        validate_config(default_config)


def test_bad_dataset_param_is_named(default_config):
    default_config["datasets"]["synth_key"]["params"]["clips_per_kee"] = 3
    with pytest.raises(ConfigError, match=r"datasets\.synth_key\.params.*clips_per_kee"):
        validate_config(default_config)


def test_unknown_layer_is_named(default_config):
    default_config["representations"]["chroma"]["layers"] = ["36"]
    with pytest.raises(ConfigError, match="36"):
        validate_config(default_config)


def test_schema_enums_match_registries():
    schema = load_schema()
    dataset_kinds = schema["properties"]["datasets"]["additionalProperties"]["properties"]["kind"]
    extractors = schema["properties"]["representations"]["additionalProperties"]["properties"][
        "extractor"
    ]
    assert sorted(dataset_kinds["enum"]) == sorted(DATASET_CLASSES)
    assert sorted(extractors["enum"]) == sorted(EXTRACTOR_CLASSES)


def test_every_schema_property_is_documented():
    def walk(node, path):
        for key, sub in node.get("properties", {}).items():
            assert "description" in sub, f"{path}.{key} lacks a description"
            walk(sub, f"{path}.{key}")
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            walk(extra, f"{path}.*")

    walk(load_schema(), "")


def test_config_hash_is_stable_and_content_based(default_config):
    a = validate_config(copy.deepcopy(default_config))
    b = validate_config(copy.deepcopy(default_config))
    assert config_hash(a) == config_hash(b)
    b["seed"] = 1
    assert config_hash(a) != config_hash(b)


def test_load_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_snakemake_rejects_misspelt_key_before_any_job(tmp_path, default_config):
    default_config["datasets"]["synth_key"]["shard_sise"] = 10
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(default_config))
    result = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "bad.yaml"), check=False)
    assert result.returncode != 0
    assert "shard_sise" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_snakemake_rejects_unknown_representation(tmp_path, default_config):
    default_config["representations"]["wav2vec"] = {"extractor": "wav2vec"}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(default_config))
    result = snakemake(tmp_path, "-n", "--configfile", str(tmp_path / "bad.yaml"), check=False)
    assert result.returncode != 0
    assert "wav2vec" in result.stdout + result.stderr


def test_dry_run_plans_the_whole_default_dag(tmp_path):
    result = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config.yaml"), "--cores", "2")
    out = result.stdout + result.stderr
    for rule in (
        "prepare_dataset",
        "resample",
        "extract",
        "train_probe",
        "evaluate_probe",
        "provenance",
        "table",
    ):
        assert rule in out, f"{rule} missing from the dry run"


def test_paper_config_plans_every_representation_on_every_dataset(tmp_path):
    """The paper run's plan: each representation extracted on each dataset, every
    shard, with gpu=1 exactly where the extractor runs a neural network."""
    import re

    from mirprobe.config import load_config
    from mirprobe.extractors import get_extractor_class

    paper = REPO / "configs" / "paper.yaml"
    config = load_config(paper)
    result = snakemake(tmp_path, "-n", "--configfile", str(paper), "--cores", "8")
    plan = result.stdout + result.stderr
    jobs = re.findall(
        r"rule extract:.*?wildcards: dataset=(\S+), representation=(\S+), shard=(\d+)\n"
        r"\s+resources: .*?gpu=(\d)",
        plan,
        flags=re.S,
    )
    planned = {}
    for dataset, representation, _, gpu in jobs:
        planned.setdefault((dataset, representation), set()).add(int(gpu))
    assert set(planned) == {(d, r) for d in config["datasets"] for r in config["representations"]}
    for (_, representation), gpus in planned.items():
        extractor = get_extractor_class(config["representations"][representation]["extractor"])
        assert gpus == {int(extractor.wants_gpu)}, representation
    # one job per audio shard, or per batch where an extractor's batches span the dataset
    from collections import Counter

    from mirprobe.datasets import build_dataset

    counts = Counter((d, r) for d, r, _, _ in jobs)
    for d, entry in config["datasets"].items():
        n_clips = build_dataset(d, entry, data_home=config["data_home"]).num_clips()
        for r, rep in config["representations"].items():
            size = get_extractor_class(rep["extractor"]).dataset_batch_size(rep["params"])
            assert counts[(d, r)] == -(-n_clips // (size or entry["shard_size"])), (d, r)


def test_lint_and_formatting_are_clean():
    result = snakemake(REPO, "--lint", "--configfile", str(REPO / "config.yaml"), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    snakefmt = Path(sys.executable).parent / "snakefmt"
    check = subprocess.run(
        [str(snakefmt), "--check", "Snakefile", "rules"], cwd=REPO, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout + check.stderr


def test_defaulted_params_are_not_shared_between_entries(default_config):
    default_config["datasets"] = {
        "a": {"kind": "synthetic_key"},
        "b": {"kind": "synthetic_key"},
    }
    config = validate_config(default_config)
    assert config["datasets"]["a"]["params"] is not config["datasets"]["b"]["params"]


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"gtzan": {"accuracy": 79.7}}, r"published\[0\]\.values\.gtzan: unknown dataset"),
        ({"synth_key": {"roc_auc_macro": 91.5}}, r"\['roc_auc_macro'\] are not columns"),
        ({"synth_key": {"accuracy": "high"}}, "is not of type 'number'"),
    ],
)
def test_a_wrong_published_number_fails_at_config_time(default_config, values, problem):
    config = copy.deepcopy(default_config)
    config["published"] = [{"label": "Paper", "source": "a paper", "values": values}]
    with pytest.raises(ConfigError, match=problem):
        validate_config(config)


def test_published_rows_follow_the_computed_ones_marked_and_sourced(tmp_path):
    from mirprobe.tables import write_tables

    tasks = [("key", "Key", ["weighted_score", "accuracy"]), ("genre", "Genre", ["accuracy"])]
    record = {
        "metrics": {"weighted_score": 0.5, "accuracy": 0.25},
        "clip_counts": {"train": 3, "valid": 2, "test": 1},
    }
    cells = {("rep/x", "key"): record, ("rep/x", "genre"): record}
    published = [
        {
            "label": "Model (paper)",
            "source": "Someone 2021, Table 1",
            "values": {"genre": {"accuracy": 79.7}},
        }
    ]
    paths = {fmt: tmp_path / f"table.{fmt}" for fmt in ("md", "csv", "tex")}
    write_tables(cells, tasks=tasks, rows=[("rep/x", "Rep")], paths=paths, published=published)
    md = paths["md"].read_text().splitlines()
    assert [c.strip() for c in md[2].strip("|").split("|")] == ["Rep", "50.0", "25.0", "25.0"]
    assert [c.strip() for c in md[3].strip("|").split("|")] == [
        "Model (paper) [published]",
        "",
        "",
        "79.7",
    ]
    assert "- Model (paper): Someone 2021, Table 1" in md
    csv_lines = paths["csv"].read_text().splitlines()
    assert csv_lines[2] == "Model (paper) [published],,,79.7,,"
    assert "Model (paper) [published]" in paths["tex"].read_text()


def test_layer_choice_takes_the_best_validation_score_and_the_first_on_a_tie():
    from mirprobe.tables import layer_choices

    tasks = [("genre", "Genre", ["accuracy"]), ("key", "Key", ["weighted_score"])]
    rows = [("mg/0", "MG L0"), ("mg/6", "MG L6"), ("mg/12", "MG L12"), ("chroma/stats", "C")]
    valid = {("mg/0", "genre"): 0.5, ("mg/6", "genre"): 0.7, ("mg/12", "genre"): 0.6}
    valid |= {("mg/0", "key"): 0.4, ("mg/6", "key"): 0.4, ("mg/12", "key"): 0.3}
    valid |= {("chroma/stats", "genre"): 0.9, ("chroma/stats", "key"): 0.9}
    # test scores differ from validation: the choice must not look at them
    cells = {
        (row, task): {"metrics": {"primary": {"mg/12": 0.99}.get(row, 0.25)}}
        for row, _ in rows
        for task, _, _ in tasks
    }
    lines = layer_choices(cells, valid, tasks=tasks, rows=rows, labels={"mg": "MusicGen"})
    assert lines == ["MusicGen: Genre L6 (25.0), Key L0 (25.0)"]
