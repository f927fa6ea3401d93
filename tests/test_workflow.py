"""End-to-end: the real snakemake CLI runs the workflow on a small synthetic setting."""

import csv
import hashlib
import json
import subprocess
import sys

import pytest

from conftest import SMALL, requires_fluidsynth, run, write_config

pytestmark = [pytest.mark.workflow, requires_fluidsynth]


def test_table_has_a_row_per_representation(finished_run):
    md = (finished_run / "results" / "table.md").read_text()
    assert "| Chroma" in md and "| MFCC" in md
    assert "SynthKey Weighted" in md
    with open(finished_run / "results" / "table.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][0] == "Representation"
    assert [r[0] for r in rows[1:]] == ["Chroma", "MFCC"]
    for row in rows[1:]:
        value = float(row[1])
        assert 0.0 <= value <= 100.0 and row[1] == f"{value:.1f}"
    assert (finished_run / "results" / "table.tex").read_text().startswith("\\begin{tabular}")


def test_every_cell_has_provenance(finished_run):
    for rep in ("chroma", "mfcc"):
        path = finished_run / "results" / "provenance" / "synth_key" / rep / "stats.json"
        record = json.loads(path.read_text())
        assert record["code"]["commit"] is None or len(record["code"]["commit"]) == 40
        assert len(record["config"]["sha256"]) == 64
        assert record["config"]["seed"] == 0
        assert len(record["data"]["metadata_sha256"]) == 64
        assert record["data"]["n_audio_files"] == 96
        assert record["clips"]["excluded"] == []
        assert sum(record["clips"][s] for s in ("train", "valid", "test")) == 96
        assert record["selected_probe"]["config"]["seed"] == 0
        assert record["grid"]["n_configs"] == 2
        assert "weighted_score" in record["test_metrics"]
        assert record["environment"]["train"]["packages"]["torch"]
        for stage in ("prepare", "train", "evaluate"):
            assert record["stages"][stage]["wall_s"] >= 0
        assert len(record["stages"]["extract"]) == 3
    command = [
        sys.executable,
        "-m",
        "mirprobe.provenance",
        "synth_key",
        "chroma",
        "--results",
        str(finished_run / "results"),
    ]
    shown = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "Chroma on synth_key" in shown and "probe:" in shown and "git" in shown


def test_rerun_after_success_does_nothing(finished_run):
    result = run(finished_run, "-n")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_deleting_one_feature_shard_recomputes_only_what_depends_on_it(finished_run):
    features = finished_run / "results" / "features" / "synth_key"
    before = {p: p.stat().st_mtime_ns for p in features.rglob("*.npz")}
    table_before = (finished_run / "results" / "table.csv").read_bytes()
    (features / "mfcc" / "shard-001.npz").unlink()
    result = run(finished_run)
    # the jobs it ran: the run's first "Job stats" table (one run, not a dry run and a run)
    out = result.stdout + result.stderr
    plan = out[out.index("Job stats:") :].split("\n\n", 1)[0]
    counts = {
        line.split()[0]: int(line.split()[1])
        for line in plan.splitlines()
        if len(line.split()) == 2 and line.split()[1].isdigit()
    }
    assert counts == {
        "extract": 1,
        "train_probe": 1,
        "evaluate_probe": 1,
        "provenance": 1,
        "table": 1,
        "all": 1,
        "total": 6,
    }, plan
    after = {p: p.stat().st_mtime_ns for p in features.rglob("*.npz")}
    changed = [p.name for p in after if after[p] != before.get(p)]
    assert changed == ["shard-001.npz"]
    assert (finished_run / "results" / "table.csv").read_bytes() == table_before


def _corrupt_one_clip(workdir):
    run(workdir, "results/datasets/synth_key/metadata.csv")
    victim = workdir / "results" / "datasets" / "synth_key" / "audio" / "synkey-00005.wav"
    assert victim.is_file()
    victim.write_bytes(victim.read_bytes()[:100])
    # as if the file had been corrupt when prepared: resampling checks each source
    # against the digests prepare_dataset recorded, and would stop at a changed file
    checksums = victim.parent.parent / "checksums.tsv"
    digest = hashlib.sha256(victim.read_bytes()).hexdigest()
    lines = checksums.read_text().splitlines()
    fixed = [
        f"audio/{victim.name}\t{digest}" if line.startswith(f"audio/{victim.name}\t") else line
        for line in lines
    ]
    assert fixed != lines
    checksums.write_text("\n".join(fixed) + "\n")
    return victim


#: the least the corrupt-clip check needs: 72 clips, one representation, one probe
ONE_CHEAP_CELL = {
    "datasets": {
        "synth_key": {
            **SMALL["datasets"]["synth_key"],
            "params": {"clips_per_key": 3, "duration": 1.0, "seed": 0},
        }
    },
    "representations": {"chroma": SMALL["representations"]["chroma"]},
    "probe": {
        **SMALL["probe"],
        "grid": {**SMALL["probe"]["grid"], "hidden_sizes": [[]]},
        "max_steps": 16,
    },
}


def test_a_corrupt_clip_stops_the_run_naming_the_file_and_excluding_it_counts_it(tmp_path):
    write_config(tmp_path, **ONE_CHEAP_CELL)
    victim = _corrupt_one_clip(tmp_path)
    result = run(tmp_path, check=False)
    assert result.returncode != 0
    logs = "".join(p.read_text() for p in (tmp_path / "logs" / "resample").rglob("*.log"))
    assert str(victim.name) in logs and ("truncated" in logs or "cannot decode" in logs)
    assert not (tmp_path / "results" / "table.csv").exists()

    # the researcher's next step: exclude bad clips; the changed setting reruns
    # resampling, and the clip is recorded with its reason, never dropped silently
    write_config(tmp_path, **ONE_CHEAP_CELL, audio={"on_bad_audio": "exclude"})
    run(tmp_path)
    record = json.loads(
        (tmp_path / "results" / "provenance" / "synth_key" / "chroma" / "stats.json").read_text()
    )
    excluded = record["clips"]["excluded"]
    assert [e["clip_id"] for e in excluded] == [victim.stem]
    assert excluded[0]["reason"]
    assert sum(record["clips"][s] for s in ("train", "valid", "test")) == 71
    assert "1 excluded" in (tmp_path / "results" / "table.md").read_text()
    with open(tmp_path / "results" / "table.csv") as handle:
        rows = list(csv.reader(handle))
    # the clip counts' column (interval columns follow the existing ones)
    clips = rows[0].index("SynthKey clips (train/valid/test/excluded)")
    assert rows[1][clips].endswith("/1")
