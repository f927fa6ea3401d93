"""Running where users run: GPU scheduling, resuming after a kill, and a real
SLURM cluster (single node, started by tests/slurm/cluster.sh).

The SLURM test needs root, Debian's slurm-wlm and munge, and
snakemake-executor-plugin-slurm; it runs when CI=true or MIRPROBE_SLURM_TEST=1
(bin/setup then installs them) and skips, saying why, otherwise.
"""

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, SMALL, requires_fluidsynth, run, write_config

pytestmark = [pytest.mark.workflow, requires_fluidsynth]

TINY_NEURAL = {
    "extractor": "musicgen",
    "label": "MusicGen-tiny (random weights)",
    "params": {"architecture": "tiny", "random_weights": True},
    "layers": [2],
}


def profiles(workdir, representation):
    out = []
    for path in sorted(
        (workdir / "results" / "features" / "synth_key" / representation).glob("*.npz")
    ):
        with np.load(path) as shard:
            out.append(json.loads(str(shard["profile"])))
    return out


def test_gpu_jobs_run_one_at_a_time_beside_cpu_jobs(tmp_path):
    reps = {
        "chroma": {"extractor": "chroma"},
        "mfcc": {"extractor": "mfcc"},
        "neural": TINY_NEURAL,
    }
    # two shards of 48 clips: two GPU jobs to serialise, four CPU jobs beside them
    datasets = json.loads(json.dumps(SMALL["datasets"]))
    datasets["synth_key"]["shard_size"] = 48
    write_config(tmp_path, representations=reps, datasets=datasets)
    # scheduling is what is tested: stop after extraction
    result = run(tmp_path, "--resources", "gpu=1", "--until", "extract")
    neural = [(p["started_at"], p["finished_at"]) for p in profiles(tmp_path, "neural")]
    cpu = [
        (p["started_at"], p["finished_at"])
        for rep in ("chroma", "mfcc")
        for p in profiles(tmp_path, rep)
    ]
    assert len(neural) == 2 and len(cpu) == 4

    def overlap(a, b):
        return min(a[1], b[1]) - max(a[0], b[0]) > 0

    # the extraction interval sits inside its job, so disjoint intervals are
    # necessary (not sufficient) for serial jobs: check the rule's resource too
    assert not any(overlap(a, b) for a, b in itertools.combinations(neural, 2)), neural
    assert any(overlap(a, b) for a in neural for b in cpu), (neural, cpu)
    # each extract job's resources, as the run printed them: gpu=1 for the neural
    # representation's jobs only
    log = result.stdout + result.stderr
    jobs = re.findall(r"rule extract:.*?representation=(\w+),.*?resources: ([^\n]*)", log, re.S)
    assert sorted(rep for rep, _ in jobs) == ["chroma"] * 2 + ["mfcc"] * 2 + ["neural"] * 2, log
    for rep, resources in jobs:
        assert f"gpu={int(rep == 'neural')}" in resources.split(", "), (rep, resources)


def test_probe_jobs_ask_for_the_gpu_only_when_they_train_on_it(tmp_path):
    for device, wanted in (("cpu", "gpu=0"), ("cuda", "gpu=1")):
        write_config(tmp_path, probe={**SMALL["probe"], "device": device})
        plan = run(tmp_path, "-n").stdout
        blocks = [
            block
            for block in re.split(r"\nrule ", plan)
            if re.match(r"(train|evaluate)_probe:", block)
        ]
        assert len(blocks) == 4, plan  # (chroma, mfcc) x (train, evaluate)
        assert all(wanted in block for block in blocks), (device, blocks)


def _shard_paths(workdir):
    return sorted((workdir / "results" / "features").rglob("*.npz"))


def test_a_killed_run_resumes_with_the_remaining_jobs_only(tmp_path, finished_run):
    write_config(tmp_path)
    command = [
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
    ]
    log = open(tmp_path / "first.log", "w")
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.time() + 600
    train_logs = tmp_path / "logs" / "train_probe"
    try:
        # kill once probe training has started: every feature shard written,
        # the probes, their evaluation, provenance and the table not yet
        while time.time() < deadline and not any(train_logs.rglob("*.log")):
            assert process.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
            time.sleep(0.1)
    finally:
        killed_at = time.time()
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.close()
    survivors = {p: p.stat().st_mtime_ns for p in _shard_paths(tmp_path)}
    # a probe starts once its representation's three shards exist, while the
    # other representation's shards may still be running
    assert any(
        len([p for p in survivors if p.parent.name == rep]) == 3 for rep in ("chroma", "mfcc")
    )
    assert not (tmp_path / "results" / "table.csv").exists()
    # nothing truncated: every output that exists is whole
    for path in survivors:
        with np.load(path) as shard:
            assert shard["layer:stats"].shape[0] == len(shard["clip_ids"])
    for path in (tmp_path / "results").rglob("*.json"):
        json.loads(path.read_text())

    # a killed Snakemake leaves its lock behind: --unlock, then run again
    run(tmp_path, "--unlock")
    second = run(tmp_path)
    output = second.stdout + second.stderr
    assert "rule resample:" not in output
    assert "rule train_probe:" in output and "rule table:" in output
    # shards finished well before the kill are kept; one renamed into place in
    # the last instants may still count as an incomplete job and be redone
    settled = [p for p, mtime in survivors.items() if mtime / 1e9 < killed_at - 2]
    assert settled and all(p.stat().st_mtime_ns == survivors[p] for p in settled)
    redone = output.count("rule extract:")
    assert 6 - len(survivors) <= redone <= 6 - len(settled), (redone, survivors)
    # a from-scratch run in another folder, interrupted or not, gives the table
    # byte for byte
    assert (tmp_path / "results" / "table.csv").read_bytes() == (
        finished_run / "results" / "table.csv"
    ).read_bytes()


def slurm_ready():
    if os.environ.get("CI") != "true" and os.environ.get("MIRPROBE_SLURM_TEST") != "1":
        return "set MIRPROBE_SLURM_TEST=1 (or CI=true) to start a single-node SLURM cluster"
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    missing = [b for b in ("slurmctld", "slurmd", "munged", "sbatch") if not shutil.which(b)]
    if missing:
        return f"SLURM binaries missing: {missing} (apt-get install slurm-wlm munge)"
    try:
        import snakemake_executor_plugin_slurm  # noqa: F401
    except ImportError:
        return "snakemake-executor-plugin-slurm is not installed"
    return None


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    reason = slurm_ready()
    if reason:
        pytest.skip(reason)
    state = tmp_path_factory.mktemp("slurm")
    script = REPO / "tests" / "slurm" / "cluster.sh"
    try:
        started = subprocess.run(
            ["bash", str(script), "start", str(state)], capture_output=True, text=True
        )
        assert started.returncode == 0, started.stdout + started.stderr
        yield state
    finally:
        # also after a failed start: no configuration may outlive the daemons
        subprocess.run(["bash", str(script), "stop", str(state)], capture_output=True)


def test_the_workflow_runs_through_slurm_and_gives_the_local_table(
    tmp_path, slurm_cluster, finished_run
):
    # one audio shard instead of three: fewer SLURM jobs (each starts Snakemake) and the
    # same features per clip, so the same table as the local three-shard run
    datasets = json.loads(json.dumps(SMALL["datasets"]))
    datasets["synth_key"]["shard_size"] = 96
    write_config(tmp_path, datasets=datasets)
    result = run(
        tmp_path,
        "--workflow-profile",
        str(REPO / "profiles" / "slurm"),
        # a site's settings: no accounting storage, no accounts, a small node
        "--slurm-status-command",
        "squeue",
        "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--jobs",
        "4",
        "--set-resources",
        "extract:mem_mb=1500",
        "train_probe:mem_mb=1500",
        "--default-resources",
        "mem_mb=1000",
        "runtime=30",
        "slurm_partition=debug",
        # ~2 min here; a cluster that hangs must fail the test, not stall CI
        timeout=480,
    )
    output = result.stdout + result.stderr
    job_ids = re.findall(r"submitted with SLURM jobid (\d+)", output)
    print(f"SLURM job ids submitted: {job_ids}")
    # every job but the local ones (provenance, table, all) went through sbatch:
    # prepare 1, resample 1, extract 2, train 2, evaluate 2
    assert len(job_ids) == 8, output[-3000:]
    assert (tmp_path / "results" / "table.csv").read_bytes() == (
        finished_run / "results" / "table.csv"
    ).read_bytes()
