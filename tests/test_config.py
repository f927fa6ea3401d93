import copy
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, SMALL, run, snakemake, write_config
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


def test_bad_dataset_param_is_named(default_config):
    default_config["datasets"]["synth_key"]["params"]["clips_per_kee"] = 3
    with pytest.raises(ConfigError, match=r"datasets\.synth_key\.params.*clips_per_kee"):
        validate_config(default_config)


def test_unknown_layer_is_named(default_config):
    default_config["representations"]["chroma"]["layers"] = ["36"]
    with pytest.raises(ConfigError, match="36"):
        validate_config(default_config)


def test_the_schema_lists_no_dataset_kinds_or_extractors():
    """The registries are the one list (a new class is one file and one line)."""
    schema = load_schema()
    entries = {
        section: schema["properties"][section]["additionalProperties"]["properties"]
        for section in ("datasets", "representations")
    }
    for section, key in (("datasets", "kind"), ("representations", "extractor")):
        assert "enum" not in entries[section][key], f"{section}.*.{key} enumerates classes"
        assert entries[section]["class"]["type"] == "string"


def test_an_unknown_extractor_names_its_key_and_the_choices(default_config):
    default_config["representations"]["jukebocks"] = {"extractor": "jukebocks"}
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    message = str(error.value)
    assert message.startswith(
        "representations.jukebocks.extractor: unknown extractor 'jukebocks'; built-in: "
        f"{sorted(EXTRACTOR_CLASSES)}"
    )
    assert "'mirprobe.extractors'" in message and "'module:Class'" in message


def test_an_unknown_dataset_kind_names_its_key_and_the_choices(default_config):
    default_config["datasets"]["synth_key"]["kind"] = "synthetic_kee"
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    assert str(error.value).startswith(
        "datasets.synth_key.kind: unknown dataset kind 'synthetic_kee'; built-in: "
        f"{sorted(DATASET_CLASSES)}"
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"class": "collections:OrderedDict"},
            "representations.odd.class: extractor 'collections:OrderedDict': "
            "collections:OrderedDict is not a subclass of mirprobe.extractors.base.Extractor",
        ),
        (
            {"class": "no_such_package.features:Thing"},
            "representations.odd.class: extractor 'no_such_package.features:Thing': cannot "
            "import module 'no_such_package.features'",
        ),
        (
            {"class": "mirprobe.extractors.handcrafted:Nothing"},
            "representations.odd.class: extractor 'mirprobe.extractors.handcrafted:Nothing': "
            "module 'mirprobe.extractors.handcrafted' has no 'Nothing'",
        ),
        ({"class": "mirprobe.extractors.handcrafted"}, "representations.odd.class: "),
        (
            {"extractor": "mfcc", "class": "mirprobe.extractors.handcrafted:MFCC"},
            "representations.odd: give either 'extractor' (a built-in or installed name) or "
            "'class' ('module:Class'), not extractor and class",
        ),
        ({}, "representations.odd: give either 'extractor'"),
        (
            # a built-in's private base class: it describes no extractor
            {"class": "mirprobe.extractors.handcrafted:_Handcrafted"},
            "representations.odd: extractor class mirprobe.extractors.handcrafted._Handcrafted:"
            " no name",
        ),
    ],
)
def test_a_bad_class_is_named(default_config, entry, message):
    default_config["representations"]["odd"] = entry
    with pytest.raises(ConfigError) as error:
        validate_config(default_config)
    assert str(error.value).startswith(message)


def test_a_built_in_named_by_class_resolves_to_its_path(default_config):
    default_config["representations"]["mfcc"] = {
        "class": "mirprobe.extractors.handcrafted:MFCC",
        "label": "MFCC2",
    }
    config = validate_config(default_config)
    assert config["representations"]["mfcc"]["extractor"] == "mirprobe.extractors.handcrafted:MFCC"
    assert "class" not in config["representations"]["mfcc"]
    # the resolved config validates again to itself
    assert validate_config(copy.deepcopy(config)) == config


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
    cells = {(("rep", "x"), "key"): record, (("rep", "x"), "genre"): record}
    published = [
        {
            "label": "Model (paper)",
            "source": "Someone 2021, Table 1",
            "values": {"genre": {"accuracy": 79.7}},
        }
    ]
    paths = {fmt: tmp_path / f"table.{fmt}" for fmt in ("md", "csv", "tex")}
    write_tables(cells, tasks=tasks, rows=[(("rep", "x"), "Rep")], paths=paths, published=published)
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
    rows = [(("mg", "0"), "MG L0"), (("mg", "6"), "MG L6"), (("mg", "12"), "MG L12"), (("chroma", "stats"), "C")]
    valid = {(("mg", "0"), "genre"): 0.5, (("mg", "6"), "genre"): 0.7, (("mg", "12"), "genre"): 0.6}
    valid |= {(("mg", "0"), "key"): 0.4, (("mg", "6"), "key"): 0.4, (("mg", "12"), "key"): 0.3}
    valid |= {(("chroma", "stats"), "genre"): 0.9, (("chroma", "stats"), "key"): 0.9}
    # test scores differ from validation: the choice must not look at them
    cells = {
        (row, task): {"metrics": {"primary": {("mg", "12"): 0.99}.get(row, 0.25)}}
        for row, _ in rows
        for task, _, _ in tasks
    }
    lines = layer_choices(cells, valid, tasks=tasks, rows=rows, labels={"mg": "MusicGen"})
    assert lines == ["MusicGen: Genre L6 (25.0), Key L0 (25.0)"]


# --- names become paths and wildcards (issue 11, item 5) ---------------------------------


@pytest.mark.parametrize("section", ["datasets", "representations"])
@pytest.mark.parametrize("name", ["../../x", "a/b", "synth+key", "1st", "a.b", "a b", ""])
def test_a_name_that_is_no_identifier_is_rejected(default_config, section, name):
    entries = default_config[section]
    entries[name] = entries.pop(next(iter(entries)))
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(section)}\.{re.escape(name)}: .* not a valid"
    ):
        validate_config(default_config)


def test_names_differing_only_in_case_are_rejected(default_config):
    default_config["representations"]["Chroma"] = {"extractor": "chroma", "label": "Chroma 2"}
    with pytest.raises(
        ConfigError, match=r"representations\.chroma and representations\.Chroma: .* case"
    ):
        validate_config(default_config)


def test_schema_and_validate_config_share_the_name_pattern():
    from mirprobe.config import NAME_PATTERN

    schema = load_schema()
    for section in ("datasets", "representations"):
        assert schema["properties"][section]["propertyNames"]["pattern"] == NAME_PATTERN


@pytest.mark.parametrize(
    ("section", "name"),
    [("datasets", "../../x"), ("representations", "a/b"), ("datasets", "synth+key")],
)
def test_snakemake_rejects_a_bad_name_before_any_job(tmp_path, section, name):
    entries = copy.deepcopy(SMALL[section])
    entries[name] = entries.pop(next(iter(entries)))
    write_config(tmp_path, **{section: entries})
    result = run(tmp_path, "-n", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{section}.{name}: {name!r} is not a valid name" in out
    assert not (tmp_path / "results").exists()
    assert not (tmp_path.parent / "x").exists()


# --- what the code rejects late is rejected at start-up (issue 11, item 10) --------------


def _set(config, dotted, value):
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("seed", -1, r"^invalid configuration:\n  seed: -1 is less than the minimum of 0"),
        *[
            ("probe.grid." + axis, [], rf"probe\.grid\.{axis}: \[\] should be non-empty")
            for axis in ("standardize", "hidden_sizes", "batch_size", "learning_rate")
            + ("dropout", "l2")
        ],
        ("probe.grid.dropout", [0.5, 1.0], r"probe\.grid\.dropout\.1: 1\.0 is greater than or"),
        ("probe.grid.learning_rate", [1e-3, float("inf")], r"grid\.learning_rate\.1: inf is not a"),
        ("probe.grid.l2", [float("nan")], r"probe\.grid\.l2\.0: nan is not a finite number"),
        ("probe.grid.batch_size", [64, 64], r"probe\.grid\.batch_size: .* non-unique"),
        ("probe.grid.l2", [0, 0.0], r"probe\.grid\.l2: .* non-unique"),
        ("probe.grid.hidden_sizes", [[1], [1.0]], r"probe\.grid\.hidden_sizes: .* non-unique"),
        ("probe.max_steps", 4, r"probe\.eval_every \(8\) > probe\.max_steps \(4\)"),
        ("table.formats", [], r"table\.formats: \[\] should be non-empty"),
    ],
)
def test_a_value_the_code_rejects_fails_at_start_up(default_config, key, value, problem):
    _set(default_config, key, value)
    with pytest.raises(ConfigError, match=problem):
        validate_config(default_config)


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        # validated once, by mirprobe.config.validate_config: its messages name the key path
        ("seed", -1, "invalid configuration:\n  seed: -1 is less than the minimum of 0"),
        ("probe.grid.learning_rate", [], "probe.grid.learning_rate: [] should be non-empty"),
        ("probe.grid.dropout", [1.0], "probe.grid.dropout.0: 1.0 is greater than or equal to"),
        ("probe.max_steps", 4, "probe.eval_every (8) > probe.max_steps (4)"),
    ],
)
def test_snakemake_rejects_a_value_the_code_rejects_before_any_job(tmp_path, key, value, named):
    config = copy.deepcopy(SMALL)
    _set(config, key, value)
    write_config(tmp_path, **config)
    result = run(tmp_path, "-n", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert named in out
    assert "train_probe" not in out
    assert not (tmp_path / "results").exists()


# --- silent ambiguities (issue 11, item 11) -----------------------------------------------


def test_an_empty_layer_list_is_rejected_naming_the_key(default_config):
    default_config["representations"]["mfcc"]["layers"] = []
    with pytest.raises(ConfigError, match=r"representations\.mfcc\.layers: \[\] should be non-"):
        validate_config(default_config)


def test_a_layer_listed_twice_is_rejected(tmp_path):
    config = {
        "datasets": {"d": {"kind": "synthetic_key"}},
        "representations": {
            "tiny": {
                "extractor": "musicgen",
                "params": {"architecture": "tiny", "random_weights": True},
                "layers": [1, "1"],
            }
        },
    }
    with pytest.raises(ConfigError, match=r"representations\.tiny\.layers: layers \['1'\] listed"):
        validate_config(config)


@pytest.mark.parametrize(
    ("edit", "problem"),
    [
        (
            {"representations.mfcc.label": "Chroma"},
            r"representations\.chroma\.label and representations\.mfcc\.label: both titled "
            r"'Chroma'",
        ),
        (
            {"representations.mfcc.label": "chroma", "representations.chroma.label": None},
            r"representations\.chroma \(unlabelled\) and representations\.mfcc\.label: both "
            r"titled 'chroma'",
        ),
        (
            {"datasets.other": {"kind": "synthetic_key", "label": "SynthKey"}},
            r"datasets\.synth_key\.label and datasets\.other\.label: both titled 'SynthKey'",
        ),
        (
            {
                "representations.tiny": {
                    "extractor": "musicgen",
                    "label": "Tiny",
                    "params": {"architecture": "tiny", "random_weights": True},
                    "layers": [1, 2],
                },
                "representations.mfcc.label": "Tiny L2",
            },
            r"representations\.mfcc\.label \(layer stats\) and representations\.tiny\.label "
            r"\(layer 2\): both give the table row 'Tiny L2'",
        ),
        (
            {
                "published": [
                    {"label": "P", "source": "a", "values": {}},
                    {"label": "P", "source": "b", "values": {}},
                ]
            },
            r"published\[0\]\.label and published\[1\]\.label: both give the table row "
            r"'P \[published\]'",
        ),
        (
            {
                "representations.mfcc.label": "P [published]",
                "published": [{"label": "P", "source": "a", "values": {}}],
            },
            r"representations\.mfcc\.label \(layer stats\) and published\[0\]\.label",
        ),
    ],
)
def test_two_rows_or_columns_with_one_title_are_rejected_naming_both(default_config, edit, problem):
    for key, value in edit.items():
        _set(default_config, key, value)
    with pytest.raises(ConfigError, match=problem):
        validate_config(default_config)


DUPLICATED = """\
seed: 0
probe:
  grid:
    dropout: [0.25]
    l2: [0]
    dropout: [0.5]
"""


def test_a_duplicate_yaml_key_is_named_with_its_file_and_lines(tmp_path):
    from mirprobe.config import check_config_files

    path = tmp_path / "dup.yaml"
    path.write_text(DUPLICATED)
    with pytest.raises(
        ConfigError,
        match=rf"^{re.escape(str(path))}:6: key 'probe\.grid\.dropout' given twice "
        r"\(first on line 4\)",
    ):
        check_config_files([REPO / "config.yaml", path])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: {b: 1, b: 2}\n", r":1: key 'a\.b' given twice \(first on line 1\)"),
        ("a:\n  - x: 1\n    x: 1\n", r":3: key 'a\[0\]\.x' given twice"),
        ("1: a\n0x1: b\n", r":2: key '1' given twice"),
        ('{"seed": 0, "probe": {"seed": 1}, "seed": 1}', r"key 'seed' given twice"),
    ],
)
def test_duplicate_keys_are_found_in_flow_style_lists_resolved_keys_and_json(
    tmp_path, text, problem
):
    from mirprobe.config import load_config_file

    path = tmp_path / "dup.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem):
        load_config_file(path)


def test_merge_keys_and_equal_keys_in_different_mappings_are_not_duplicates(tmp_path):
    from mirprobe.config import load_config_file

    path = tmp_path / "ok.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  x: 3\nd: {x: 1}\n")
    assert load_config_file(path)["c"] == {"x": 3, "y": 2}
    for shipped in [REPO / "config.yaml", *sorted((REPO / "configs").glob("*.yaml"))]:
        assert load_config_file(shipped) == yaml.safe_load(shipped.read_text())
        if shipped.name == "calm_features.yaml":
            # it needs a source the user names (jukemir's host is gone) before it validates
            with pytest.raises(ConfigError, match=r"calm_jukebox\.params\.urls"):
                load_config(shipped)
            continue
        load_config(shipped)  # their names, grids and titles pass the new checks too


def test_snakemake_rejects_a_duplicate_key_before_any_job(tmp_path):
    config = write_config(tmp_path)
    text = config.read_text().replace("  patience: 8\n", "  patience: 8\n  patience: 16\n")
    assert text.count("patience") == 2
    config.write_text(text)
    result = run(tmp_path, "-n", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{config}:" in out and "key 'probe.patience' given twice" in out
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        ({"layers": []}, "representations.mfcc.layers: [] should be non-empty"),
        ({"label": "Chroma"}, "representations.chroma.label and representations.mfcc.label"),
    ],
)
def test_snakemake_rejects_an_ambiguous_row_before_any_job(tmp_path, edit, named):
    representations = copy.deepcopy(SMALL["representations"])
    representations["mfcc"].update(edit)
    write_config(tmp_path, representations=representations)
    result = run(tmp_path, "-n", check=False)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert named in out
    assert not (tmp_path / "results").exists()
