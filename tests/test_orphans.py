"""A killed run's jobs never replace a later run's outputs (the real snakemake CLI).

The scenario of issue 11: config A (a long probe training) runs; the snakemake
process alone is killed with SIGKILL during train_probe, leaving its jobs
running; config B (a short one) is unlocked and run to completion; whatever the
jobs of A do afterwards, B's probe, records, provenance and table stay B's.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, SMALL, requires_fluidsynth, run, write_config

CELL = Path("results/probes/synth_key/mfcc/stats")


def _children(pid):
    """Pids of the processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(b")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except OSError:
        return False
    return state != b"Z"


def _wait_for(condition, *, deadline_s, what):
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what} after {deadline_s} s")
        time.sleep(0.2)


def _products(workdir):
    paths = [
        CELL / "probe.pt",
        CELL / "train.json",
        CELL / "test.json",
        Path("results/provenance/synth_key/mfcc/stats.json"),
        Path("results/table.md"),
    ]
    return {str(p): (workdir / p).read_bytes() for p in paths}


@requires_fluidsynth
def test_a_killed_runs_orphaned_jobs_never_replace_a_later_runs_outputs(finished_run, tmp_path):
    # the finished small run, its features kept: config A changes the probe only
    shutil.copytree(finished_run, tmp_path, dirs_exist_ok=True)
    long_probe = {**SMALL["probe"], "max_steps": 40000, "patience": 100000}
    short_probe = {**SMALL["probe"], "max_steps": 200}
    write_config(tmp_path, probe=long_probe)
    orphans = []
    # every file this test's runs write gets the umask's mode (0664), not mkstemp's 0600
    umask = os.umask(0o002)
    run_a = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(tmp_path / "config.yaml"),
            "--cores",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def train_jobs():
            orphans[:] = [p for p in _children(run_a.pid) if b"train_probe" in _cmdline(p)]
            return orphans

        _wait_for(train_jobs, deadline_s=600, what="run A's train_probe job")
        # let the job claim its outputs, its first act (code without claims: 30 s)
        claim = tmp_path / CELL / ".probe.pt.claim"
        started = time.monotonic()

        def claimed():
            train_jobs()
            token = claim.read_text().split(":") if claim.exists() else []
            return any(str(p) in token[1:2] for p in orphans) or time.monotonic() - started > 30

        _wait_for(claimed, deadline_s=60, what="the claim")
        os.kill(run_a.pid, signal.SIGKILL)  # snakemake alone, not its jobs
        run_a.wait()

        write_config(tmp_path, probe=short_probe)
        run(tmp_path, "--unlock")
        run(tmp_path)
        finished = _products(tmp_path)
        # whatever the orphans do, they do it by the time they are gone
        _wait_for(lambda: not any(_alive(p) for p in orphans), deadline_s=600, what="the orphans")

        assert _products(tmp_path) == finished
        record = json.loads(finished["results/provenance/synth_key/mfcc/stats.json"])
        assert record["config"]["resolved"]["probe"]["max_steps"] == 200
        assert record["selected_probe"]["config"]["max_steps"] == 200
        assert (
            json.loads(finished[str(CELL / "train.json")])["selected"]["config"]["max_steps"] == 200
        )
        # and the next run finds B's outputs complete and consistent
        run(tmp_path)
        assert _products(tmp_path) == finished
        assert {p: oct((tmp_path / p).stat().st_mode & 0o777) for p in finished} == {
            p: "0o664" for p in finished
        }
    finally:
        os.umask(umask)
        for pid in [run_a.pid, *orphans]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def _cell_inputs(workdir):
    """The arguments of stages.cell_provenance for the MFCC cell of a finished run."""
    provenance = json.loads((workdir / "results/provenance/synth_key/mfcc/stats.json").read_text())
    return {
        "task": "synth_key",
        "representation": "mfcc",
        "layer": "stats",
        "row_label": "MFCC",
        "config": provenance["config"]["resolved"],
        "config_sha256": provenance["config"]["sha256"],
        "workflow_dir": str(REPO),
        "feature_paths": sorted(
            str(p) for p in workdir.glob("results/features/synth_key/mfcc/shard-*.npz")
        ),
        "train_record_path": str(workdir / CELL / "train.json"),
        "test_record_path": str(workdir / CELL / "test.json"),
    }


@requires_fluidsynth
def test_a_train_record_made_for_other_probe_settings_is_an_error_not_a_cell(
    finished_run, tmp_path
):
    from mirprobe.errors import DataError
    from mirprobe.stages import cell_provenance

    inputs = _cell_inputs(finished_run)
    record = cell_provenance(**inputs, out_path=tmp_path / "same.json")
    assert record["selected_probe"]["config"]["max_steps"] == SMALL["probe"]["max_steps"]
    # the configuration now asks for 40000 steps; train.json was made for 400
    config = json.loads(json.dumps(inputs["config"]))
    config["probe"]["max_steps"] = 40000
    with pytest.raises(DataError) as error:
        cell_provenance(**{**inputs, "config": config}, out_path=tmp_path / "other.json")
    assert str(error.value).startswith(f"{inputs['train_record_path']}: trained for other")
    assert not (tmp_path / "other.json").exists()


@requires_fluidsynth
def test_a_test_record_of_another_probe_file_is_an_error_not_a_cell(finished_run, tmp_path):
    from mirprobe.errors import DataError
    from mirprobe.stages import cell_provenance

    inputs = _cell_inputs(finished_run)
    test = json.loads(Path(inputs["test_record_path"]).read_text())
    test["probe"] = {**test.get("probe", {}), "sha256": "0" * 64}
    test_path = tmp_path / "test.json"
    test_path.write_text(json.dumps(test))
    with pytest.raises(DataError) as error:
        cell_provenance(
            **{**inputs, "test_record_path": str(test_path)}, out_path=tmp_path / "cell.json"
        )
    assert str(error.value).startswith(f"{test_path}: scored the probe file with sha256 000")
    assert not (tmp_path / "cell.json").exists()


@requires_fluidsynth
def test_the_table_refuses_a_provenance_record_of_other_probe_settings(
    finished_run, tmp_path, monkeypatch
):
    from mirprobe.errors import DataError
    from mirprobe.stages import assemble_table

    cells = [("synth_key", "chroma", "stats"), ("synth_key", "mfcc", "stats")]
    provenance = [
        finished_run / f"results/provenance/{d}/{r}/{layer}.json" for d, r, layer in cells
    ]
    resolved = json.loads(provenance[0].read_text())["config"]["resolved"]
    # the records name the run's predictions files relative to its working directory
    monkeypatch.chdir(finished_run)
    arguments = {
        "datasets": resolved["datasets"],
        "provenance_paths": provenance,
        # the run's table prints bootstrap intervals (table.bootstrap)
        "uncertainty": {
            "bootstrap": resolved["table"]["bootstrap"],
            "comparisons": resolved["table"]["comparisons"],
        },
    }
    assemble_table(**arguments, probe_config=resolved["probe"], out_paths=[tmp_path / "table.md"])
    assert (tmp_path / "table.md").read_text() == (finished_run / "results/table.md").read_text()
    other = {**resolved["probe"], "max_steps": 200}
    with pytest.raises(DataError) as error:
        assemble_table(**arguments, probe_config=other, out_paths=[tmp_path / "other.md"])
    assert str(error.value).startswith(f"{provenance[0]}: made for probe settings")
    assert not (tmp_path / "other.md").exists()
