"""``mirprobe.provenance`` as the stages fill it: the data digests of the prepare record
and of a cell's provenance record, recomputed here from the files they describe."""

import hashlib
import json

import pandas as pd
import pytest

from conftest import requires_fluidsynth


def sha256_of(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from mirprobe.stages import prepare_dataset

    out = tmp_path_factory.mktemp("prepared") / "synth_key"
    record = prepare_dataset(
        name="synth_key",
        dataset_config={
            "kind": "synthetic_key",
            "params": {"clips_per_key": 3, "duration": 0.25, "sample_rate": 8000, "seed": 0},
        },
        metadata_path=out / "metadata.csv",
        record_path=out / "prepare.json",
        checksums_path=out / "checksums.tsv",
    )
    return out, record


@requires_fluidsynth
def test_prepare_record_digests_the_audio_and_the_metadata_it_describes(prepared):
    out, record = prepared
    assert record == json.loads((out / "prepare.json").read_text())
    # checksums.tsv holds the digest of every audio file the metadata names, read here
    checksums = pd.read_csv(out / "checksums.tsv", sep="\t")
    metadata = pd.read_csv(out / "metadata.csv", keep_default_na=False)
    assert checksums["audio_path"].tolist() == sorted(set(metadata["audio_path"]))
    for row in checksums.itertuples(index=False):
        assert row.sha256 == sha256_of(out / row.audio_path), row.audio_path
    assert record["n_audio_files"] == len(checksums) == 72
    # the record's audio digest is the digest of that list, so it changes with any audio
    # file; the metadata digest is the metadata file's
    assert record["audio_sha256"] == sha256_of(out / "checksums.tsv")
    assert record["metadata_sha256"] == sha256_of(out / "metadata.csv")
    assert record["audio_sha256"] != record["metadata_sha256"]
    assert record["n_clips"] == len(metadata)
    assert record["split_counts"] == metadata["split"].value_counts().sort_index().to_dict()


@requires_fluidsynth
def test_cell_provenance_carries_the_prepare_digests_and_the_stage_scores(prepared, tmp_path):
    from mirprobe.provenance import build_cell_record

    out, prepare_record = prepared
    train_record = {
        "trainer": "serial",
        "grid": [{}, {}],
        "ranking": [{"uid": "u1", "valid_primary": 0.75}, {"uid": "u0", "valid_primary": 0.5}],
        "selected": {"uid": "u1", "valid_metrics": {"primary": 0.75, "weighted_score": 0.75}},
        "excluded": [{"clip_id": "c7", "source": "c7.wav", "reason": "unreadable"}],
    }
    test_record = {
        "metrics": {"primary": 0.625, "weighted_score": 0.625, "accuracy": 0.5},
        "clip_counts": {"train": 10, "valid": 4, "test": 6},
    }
    record = build_cell_record(
        task="synth_key",
        representation="chroma",
        layer="0",
        row_label="Chroma",
        config={"seed": 0, "probe": {}, "representations": {"chroma": {}}},
        config_sha256="0" * 64,
        workflow_dir=str(tmp_path),
        prepare_record=prepare_record,
        resample_records=[],
        feature_profiles=[],
        train_record=train_record,
        test_record=test_record,
    )
    assert record["data"]["audio_sha256"] == sha256_of(out / "checksums.tsv")
    assert record["data"]["metadata_sha256"] == sha256_of(out / "metadata.csv")
    assert record["data"]["n_audio_files"] == 72
    assert record["test_metrics"] == test_record["metrics"]
    assert record["valid_metrics"] == train_record["selected"]["valid_metrics"]
    assert record["clips"] == {
        "train": 10,
        "valid": 4,
        "test": 6,
        "excluded": train_record["excluded"],
    }


# -- where the configuration came from (issue 12, item 6) --------------------------------


def test_config_sources_name_each_file_by_absolute_path_and_digest(tmp_path, monkeypatch):
    from mirprobe.config import config_sources

    (tmp_path / "base.yaml").write_text("seed: 0\n")
    (tmp_path / "more.yaml").write_text("seed: 1  # a comment is in the file's digest\n")
    monkeypatch.chdir(tmp_path)
    # in the order given (later files override earlier ones), relative paths resolved
    sources = config_sources(["base.yaml", tmp_path / "more.yaml"], overrides={"seed": 2})
    assert sources == {
        "files": [
            {"path": str(tmp_path / "base.yaml"), "sha256": sha256_of(tmp_path / "base.yaml")},
            {"path": str(tmp_path / "more.yaml"), "sha256": sha256_of(tmp_path / "more.yaml")},
        ],
        "overrides": {"seed": 2},
    }
    # no --config values: no overrides key
    assert config_sources(["base.yaml"]) == {"files": sources["files"][:1]}


def test_a_config_file_gone_is_named(tmp_path):
    from mirprobe.config import config_sources
    from mirprobe.errors import ConfigError

    with pytest.raises(ConfigError, match=r"gone\.yaml: config file not found"):
        config_sources([tmp_path / "gone.yaml"])


def test_the_cell_record_and_its_account_name_the_config_files(tmp_path):
    from mirprobe.provenance import build_cell_record, describe

    sources = {
        "files": [{"path": "/runs/a/config.yaml", "sha256": "ab" * 32}],
        "overrides": {"seed": 3},
    }
    record = build_cell_record(
        task="synth_key",
        representation="chroma",
        layer="0",
        row_label="Chroma",
        config={"seed": 3, "probe": {}, "representations": {"chroma": {}}},
        config_sha256="0" * 64,
        workflow_dir=str(tmp_path),
        prepare_record={"kind": "synthetic_key"},
        resample_records=[],
        feature_profiles=[],
        train_record={
            "trainer": "serial",
            "grid": [{}],
            "ranking": [],
            "selected": {"uid": "u" * 40, "config": {}, "valid_metrics": {"primary": 0.5}},
            "excluded": [],
        },
        test_record={
            "metrics": {"primary": 0.25},
            "clip_counts": {"train": 1, "valid": 1, "test": 1},
        },
        config_files=sources,
    )
    assert record["config"]["files"] == sources["files"]
    assert record["config"]["overrides"] == {"seed": 3}
    assert record["config"]["sha256"] == "0" * 64
    shown = describe(record)
    assert f"read from /runs/a/config.yaml (sha256 {'ab' * 8})" in shown
    assert 'and --config {"seed": 3}' in shown
