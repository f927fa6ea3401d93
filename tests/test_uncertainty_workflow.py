"""End-to-end: each cell's per-clip predictions are saved, named by digest in its
records, and the table's intervals are computed from them (issue 12)."""

import csv
import hashlib
import json

import numpy as np
import pytest

from conftest import requires_fluidsynth
from mirprobe.bootstrap import cell_intervals
from mirprobe.predictions import read_predictions

pytestmark = [pytest.mark.workflow, requires_fluidsynth]


def test_predictions_are_saved_and_named_by_digest(finished_run):
    results = finished_run / "results"
    for rep in ("chroma", "mfcc"):
        path = results / "probes" / "synth_key" / rep / "stats" / "predictions.npz"
        test = json.loads(path.with_name("test.json").read_text())
        provenance = json.loads(
            (results / "provenance" / "synth_key" / rep / "stats.json").read_text()
        )
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert test["predictions"]["sha256"] == digest
        assert provenance["predictions"]["sha256"] == digest
        p = read_predictions(finished_run / provenance["predictions"]["path"])
        assert len(p.clip_id) == test["clip_counts"]["test"] == len(p.splits["test"])
        assert {k: len(v) for k, v in p.splits.items()} == test["clip_counts"]
        assert p.scores.shape == (len(p.clip_id), 24) and p.task_type == "key"
        assert (p.decision == p.scores.argmax(axis=1)).all()
        # the clips of the three splits are disjoint
        ids = [c for split in p.splits.values() for c in split]
        assert len(ids) == len(set(ids))


def test_the_table_carries_the_intervals_of_the_predictions(finished_run):
    results = finished_run / "results"
    with open(results / "table.csv") as handle:
        rows = list(csv.reader(handle))
    header = rows[0]
    assert header[:4] == [
        "Representation",
        "SynthKey Weighted",
        "SynthKey Acc",
        "SynthKey clips (train/valid/test/excluded)",
    ]
    assert header[4:] == [
        "SynthKey Weighted 95% low",
        "SynthKey Weighted 95% high",
        "SynthKey Acc 95% low",
        "SynthKey Acc 95% high",
    ]
    md = (results / "table.md").read_text()
    for line, rep in zip(rows[1:], ("chroma", "mfcc"), strict=True):
        p = read_predictions(results / "probes" / "synth_key" / rep / "stats" / "predictions.npz")
        # the table's settings: 1,000 resamples, 95 %, seed 0
        want = cell_intervals(
            p, ["weighted_score", "accuracy"], resamples=1000, confidence=0.95, seed=0
        )
        shown = [f"{100 * want[m][end]:.1f}" for m in want for end in ("low", "high")]
        assert line[4:] == shown
        assert float(line[4]) <= float(line[1]) <= float(line[5])
        assert f"| {line[1]} [{line[4]}, {line[5]}]" in md
    assert "Paired differences (same resamples)" in md
    assert np.isfinite(float(rows[1][4]))


def test_the_report_holds_the_table_figures_and_records(finished_run, tmp_path):
    import zipfile

    from conftest import run

    report = tmp_path / "report.zip"
    run(finished_run, "--report", str(report))
    names = zipfile.ZipFile(report).namelist()
    # the zip keeps each file's name, in a folder of its own
    for wanted in ("table.md", "table.csv", "table.tex"):
        assert any(n.endswith(f"/{wanted}") for n in names), wanted
    # one provenance record per cell (chroma/stats.json, mfcc/stats.json)
    assert len([n for n in names if n.endswith("/stats.json")]) == 2
    for rep in ("chroma", "mfcc"):
        figure = f"confusion--synth_key--{rep}--stats.png"
        (found,) = [n for n in names if n.endswith(figure)]
        assert zipfile.ZipFile(report).read(found)[:8] == b"\x89PNG\r\n\x1a\n"
