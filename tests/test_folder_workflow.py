"""End-to-end: the real snakemake CLI probes four ``kind: folder`` datasets, one per task
type, built from the fixture audio in WAV, Ogg, MP3 and FLAC, with and without a split
column, in one run."""

import csv
import hashlib
import json

import pandas as pd
import pytest
from folder_fixtures import KEYS, TAGS, build_audio_folder, split_by_take, write_labels
from workflow_runs import run_mfcc_table

pytestmark = [pytest.mark.workflow]

CLIP = {
    "path": lambda c: c["path"],
    "offset": lambda c: c["offset"],
    "duration": lambda c: c["duration"],
}


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("recordings")
    clips = build_audio_folder(root)
    tables = {
        # multiclass, the table's own splits, TSV
        "genre": write_labels(
            root / "genre.tsv",
            clips,
            {**CLIP, "label": lambda c: c["piece"], "split": split_by_take},
            sep="\t",
        ),
        # key, drawn splits grouped by session (two files each)
        "key": write_labels(
            root / "key.csv",
            clips,
            {**CLIP, "label": lambda c: KEYS[c["piece"]], "group": lambda c: c["session"]},
        ),
        # multilabel, the table's own splits
        "tags": write_labels(
            root / "tags.csv",
            clips,
            {**CLIP, "label": lambda c: TAGS[c["piece"]], "split": split_by_take},
        ),
        # regression, drawn splits grouped by file (the default)
        "level": write_labels(
            root / "level.csv",
            clips,
            {**CLIP, "rms": lambda c: c["rms"], "pos": lambda c: c["index"]},
        ),
    }
    tasks = {"genre": "multiclass", "key": "key", "tags": "multilabel", "level": "regression"}
    datasets = {}
    for name, table in tables.items():
        params = {"root": str(root), "labels": str(table), "task": tasks[name]}
        if name == "level":
            params["targets"] = ["rms", "pos"]
        if name == "key":
            params["split_fractions"] = {"train": 0.5, "valid": 0.25, "test": 0.25}
        datasets[name] = {"kind": "folder", "label": f"My {name}", "params": params}
    return run_mfcc_table(tmp_path_factory.mktemp("run"), datasets=datasets), clips


def test_every_task_type_gets_its_column(folder_run):
    workdir, _ = folder_run
    with open(workdir / "results" / "table.csv") as handle:
        rows = list(csv.reader(handle))
    header = " ".join(rows[0])
    for name in ("genre", "key", "tags", "level"):
        assert f"My {name}" in header
    assert [r[0] for r in rows[1:]] == ["MFCC"]
    assert all(cell for cell in rows[1][1:])


def test_every_format_decoded_to_the_clip_length(folder_run):
    workdir, clips = folder_run
    for name in ("genre", "key", "tags", "level"):
        manifests = list((workdir / "results" / "audio" / name).rglob("manifest.tsv"))
        manifest = pd.concat(pd.read_csv(p, sep="\t") for p in manifests)
        assert len(manifest) == 24 and (manifest["status"] == "ok").all()
        # 1.5 s at 22050 Hz, whichever format and rate the file had
        assert set(manifest["n_samples"]) == {33075}
        assert {s.rsplit(".", 1)[1] for s in manifest["source"]} == {"wav", "ogg", "mp3", "flac"}


def test_splits_from_the_table_and_drawn_grouped(folder_run):
    workdir, clips = folder_run
    meta = {
        name: pd.read_csv(
            workdir / "results" / "datasets" / name / "metadata.csv",
            dtype=str,
            keep_default_na=False,
        )
        for name in ("genre", "key", "level")
    }
    expected = {c["path"]: split_by_take(c) for c in clips}
    assert (meta["genre"]["source_path"].map(expected) == meta["genre"]["split"]).all()
    for name, groups in (("key", 6), ("level", 12)):
        per_group = meta[name].groupby("song_id")["split"].nunique()
        assert len(per_group) == groups and (per_group == 1).all()
        assert set(meta[name]["split"]) == {"train", "valid", "test"}
    session = {c["path"]: c["session"] for c in clips}
    assert (meta["key"]["source_path"].map(session) == meta["key"]["song_id"]).all()


def test_provenance_records_digests_and_drawn_splits(folder_run):
    workdir, _ = folder_run
    prepared = json.loads((workdir / "results" / "datasets" / "key" / "prepare.json").read_text())
    assert (
        prepared["source"]["splits"]["drawn"] is True and prepared["source"]["splits"]["seed"] == 0
    )
    assert prepared["n_audio_files"] == 12
    checksums = pd.read_csv(workdir / "results" / "datasets" / "key" / "checksums.tsv", sep="\t")
    for path, digest in zip(checksums["audio_path"], checksums["sha256"], strict=True):
        assert hashlib.sha256(open(path, "rb").read()).hexdigest() == digest
    cell = json.loads(
        (workdir / "results" / "provenance" / "level" / "mfcc" / "stats.json").read_text()
    )
    assert cell["data"]["n_audio_files"] == 12
    assert sum(cell["clips"][s] for s in ("train", "valid", "test")) == 24
