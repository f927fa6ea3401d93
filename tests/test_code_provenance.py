"""Every number names the code, data and records that computed it (issue 11, items 2, 3, 12).

- a stage's record holds the code it ran (commit, dirty flag, source digests);
  a code change reruns the stages that run that code, and a cell whose stages
  ran other code than the current one says so, in its record and under the table;
- resampling checks each source file against the digests ``prepare_dataset``
  recorded;
- a missing shard record is an error, not an empty record.
"""

import hashlib
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import REPO, SMALL, requires_fluidsynth, run, write_config
from mirprobe import stages
from mirprobe.datasets.base import write_metadata
from mirprobe.errors import DataError
from mirprobe.provenance import code_account, code_record, rule_sources

HANDCRAFTED = "mirprobe/extractors/handcrafted.py"
EXTRACT_JOB = ("mirprobe.extractors.handcrafted", "mirprobe.datasets.synthetic")


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git(repo, *args):
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True
    ).stdout.strip()


def copy_repository(dest):
    """The repository's tracked files as they are in the working tree, committed in a
    repository of their own (so that a test can change and commit code there)."""
    for name in git(REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split(
        "\0"
    ):
        source = REPO / name
        if name and source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git(dest, "init", "-q")
    git(dest, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    commit(dest, "copy")
    return dest


def commit(repo, message):
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-am", message)
    return git(repo, "rev-parse", "HEAD")


def change(repo, path):
    """A change to a source file (its code digest changes, its behaviour does not)."""
    with open(repo / path, "a") as handle:
        handle.write("# changed by a test\n")


# -- which code a stage runs ------------------------------------------------------------


def test_a_job_depends_on_the_modules_its_stage_imports_and_on_no_other():
    extract = set(rule_sources("extract", EXTRACT_JOB))
    assert {
        "scripts/extract.py",
        HANDCRAFTED,
        "mirprobe/extractors/base.py",
        "mirprobe/features.py",
        "mirprobe/audio.py",
        "mirprobe/stages.py",
        "mirprobe/datasets/synthetic.py",
    } <= extract
    assert not {"mirprobe/tables.py", "mirprobe/extractors/musicgen.py"} & extract
    assert not any(path.startswith("mirprobe/probes/") for path in extract)
    # the trainers are imported lazily, by name: they are still the probe stage's code
    train = set(rule_sources("train_probe"))
    assert {
        "mirprobe/probes/training.py",
        "mirprobe/probes/batched.py",
        "mirprobe/probes/common.py",
        "mirprobe/probes/grid.py",
        "mirprobe/task_types.py",
    } <= train
    assert "mirprobe/probes/quick.py" in train and HANDCRAFTED not in train
    # the table's code is not training code: editing it reruns the table only
    assert "mirprobe/tables.py" not in train
    assert set(rule_sources("table")) == {
        "mirprobe/__init__.py",
        "mirprobe/atomic.py",
        "mirprobe/claims.py",  # every script claims its outputs
        "mirprobe/errors.py",
        "mirprobe/identity.py",  # the table checks each cell's records agree
        # bootstrap intervals: per-clip predictions, checked by digest, rescored
        "mirprobe/bootstrap.py",
        "mirprobe/predictions.py",
        "mirprobe/metrics.py",  # imported by the task types
        "mirprobe/datasets/base.py",
        "mirprobe/plots.py",  # the report's figures are made by the table job
        "mirprobe/published.py",  # and its differences to the published rows
        "mirprobe/provenance.py",
        "mirprobe/stages.py",
        "mirprobe/tables.py",
        "mirprobe/task_types.py",  # a task's default columns come from its task type
        "scripts/table.py",
    }
    # registering an extractor or a dataset is in no job's code
    assert "mirprobe/extractors/__init__.py" not in extract


def test_a_code_record_names_the_commit_and_the_digest_of_every_source(tmp_path):
    repo = copy_repository(tmp_path / "repo")
    record = code_record("extract", EXTRACT_JOB, root=repo)
    assert record["commit"] == git(repo, "rev-parse", "HEAD") and record["dirty"] is False
    assert record["sources"][HANDCRAFTED] == sha256(repo / HANDCRAFTED)
    assert set(record["sources"]) == set(rule_sources("extract", EXTRACT_JOB, root=repo))
    change(repo, HANDCRAFTED)
    changed = code_record("extract", EXTRACT_JOB, root=repo)
    assert changed["commit"] == record["commit"] and changed["dirty"] is True
    assert changed["source_sha256"] != record["source_sha256"]
    # a change to code the stage does not run leaves its digest alone
    change(repo, "mirprobe/tables.py")
    assert (
        code_record("resample", root=repo)["source_sha256"]
        == (code_record("resample", root=REPO)["source_sha256"])
    )


def test_a_stage_run_by_code_changed_since_is_named_with_the_changed_file(tmp_path):
    repo = copy_repository(tmp_path / "repo")
    before = {
        "extract": [code_record("extract", EXTRACT_JOB, root=repo)],
        "train": [code_record("train_probe", root=repo)],
    }
    account = code_account(before, root=repo)
    assert account["consistent"] and account["problems"] == [] and account["notes"] == []
    change(repo, HANDCRAFTED)
    new_commit = commit(repo, "change chroma")
    account = code_account(
        {**before, "provenance": [code_record("provenance", root=repo)]}, root=repo
    )
    assert not account["consistent"]
    assert [entry["changed_since"] for entry in account["stages"]["extract"]] == [[HANDCRAFTED]]
    assert account["stages"]["train"][0]["current"] is True
    assert len(account["problems"]) == 1
    assert (
        account["problems"][0].startswith("extract: 1 job(s) ran code")
        and HANDCRAFTED in (account["problems"][0])
    )
    assert new_commit[:12] in account["notes"][0] and "different commits" in account["notes"][0]
    # a record written before stages recorded their code is not taken for current
    account = code_account({"resample": [None, before["train"][0]]}, root=repo)
    assert not account["consistent"] and "1 of 2 job(s) recorded no code" in account["problems"][0]


# -- the workflow: a code change reruns what runs that code ----------------------------


def snakemake_in(repo, workdir, *args, check=True):
    """The real snakemake CLI on the workflow of ``repo`` (a copy), in ``workdir``."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(repo / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "2",
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {args} failed:\n{result.stdout[-4000:]}{result.stderr[-6000:]}"
        )
    return result


def ran_jobs(result):
    """``{rule: count}`` of the jobs a run planned: its first "Job stats" table."""
    out = result.stdout + result.stderr
    start = out.find("Job stats:")
    assert start >= 0, out[-4000:]
    stats = out[start:].split("\n\n", 1)[0]
    return {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, flags=re.MULTILINE)
        if m.group(1) != "total"
    }


def extract_commits(workdir):
    commits = []
    for path in sorted((workdir / "results" / "features").rglob("*.npz")):
        with np.load(path, allow_pickle=False) as shard:
            commits.append(json.loads(str(shard["profile"]))["code"]["commit"])
    return commits


@pytest.mark.workflow
@requires_fluidsynth
def test_a_code_change_reruns_the_stages_that_run_that_code_and_provenance_says_so(tmp_path):
    repo = copy_repository(tmp_path / "repo")
    workdir = tmp_path / "run"
    # the least the checks need: three shards of one dataset, one representation and
    # one short-trained probe (the code records, not the numbers, are checked)
    write_config(
        workdir,
        datasets={
            "synth_key": {
                **SMALL["datasets"]["synth_key"],
                "shard_size": 24,
                "params": {"clips_per_key": 3, "duration": 1.0, "seed": 0},
            }
        },
        representations={"chroma": {"extractor": "chroma", "label": "Chroma"}},
        probe={
            **SMALL["probe"],
            "grid": {**SMALL["probe"]["grid"], "hidden_sizes": [[]]},
            "max_steps": 16,
        },
    )
    snakemake_in(repo, workdir)
    first = git(repo, "rev-parse", "HEAD")
    table_before = (workdir / "results" / "table.md").read_text()
    cell = workdir / "results" / "provenance" / "synth_key" / "chroma" / "stats.json"

    change(repo, HANDCRAFTED)
    second = commit(repo, "chroma: changed")
    assert ran_jobs(snakemake_in(repo, workdir)) == {
        "all": 1,
        "extract": 3,
        "train_probe": 1,
        "evaluate_probe": 1,
        "provenance": 1,
        "table": 1,
    }
    assert extract_commits(workdir) == [second] * 3
    code = json.loads(cell.read_text())["code"]
    assert code["commit"] == second and code["consistent"] is True and code["problems"] == []
    ran_at = {stage: [e["commit"] for e in entries] for stage, entries in code["stages"].items()}
    assert ran_at == {
        "prepare": [first],
        "resample": [first],  # three shards, one code
        "extract": [second],
        "train": [second],
        "evaluate": [second],
        "provenance": [second],
    }
    assert [e["jobs"] for e in code["stages"]["resample"]] == [3]
    assert code["notes"] == [
        f"stages ran at different commits: {first[:12]} (prepare, resample); "
        f"{second[:12]} (extract, train, evaluate, provenance) "
        "(each stage's sources are the current ones)"
    ]
    # the same features: the same table, with no warning
    assert (workdir / "results" / "table.md").read_text() == table_before

    # code only the table runs: only the table reruns
    change(repo, "mirprobe/tables.py")
    commit(repo, "table: changed")
    assert ran_jobs(snakemake_in(repo, workdir)) == {"all": 1, "table": 1}

    # the case: the code changes, the rerun triggers are switched off and only
    # the cell's record is remade; the record and the table say the numbers are stale
    change(repo, HANDCRAFTED)
    commit(repo, "chroma: changed again")
    cell.unlink()
    snakemake_in(repo, workdir, "--rerun-triggers", "mtime")
    assert extract_commits(workdir) == [second] * 3
    code = json.loads(cell.read_text())["code"]
    assert code["consistent"] is False
    assert [e["changed_since"] for e in code["stages"]["extract"]] == [[HANDCRAFTED]]
    assert len(code["problems"]) == 1 and code["problems"][0].startswith("extract: 3 job(s)")
    table = (workdir / "results" / "table.md").read_text()
    assert table.startswith(table_before)
    assert table[len(table_before) :] == (
        "WARNING: cells not computed by the workflow's current code "
        "(see their provenance, `code.problems`):\n"
        f"- synth_key / chroma/stats: {code['problems'][0]}\n"
    )


# -- resampling checks its sources against the prepared checksums ------------------------


def _prepared_dataset(root):
    (root / "audio").mkdir(parents=True)
    rows = []
    for i in range(3):
        t = np.arange(22050) / 22050
        sf.write(root / "audio" / f"c{i}.wav", 0.5 * np.sin(2 * np.pi * (200 + 50 * i) * t), 22050)
        rows.append(
            {
                "clip_id": f"c{i}",
                "audio_path": f"audio/c{i}.wav",
                "offset": 0.0,
                "duration": 1.0,
                "split": "train",
                "label": "C major",
                "song_id": f"c{i}",
            }
        )
    write_metadata(pd.DataFrame(rows), root / "metadata.csv")
    files = [f"audio/c{i}.wav" for i in range(3)]
    pd.DataFrame({"audio_path": files, "sha256": [sha256(root / f) for f in files]}).to_csv(
        root / "checksums.tsv", sep="\t", index=False
    )
    return root / "metadata.csv"


def _resample(metadata, out_dir):
    return stages.resample(
        metadata_path=metadata,
        out_dir=out_dir,
        shard=0,
        shard_size=10,
        sr=16000,
        on_bad_audio="error",
        expected_clips=3,
    )


def test_resampling_records_the_verified_digest_of_each_source(tmp_path):
    metadata = _prepared_dataset(tmp_path / "data")
    record = _resample(metadata, tmp_path / "shard-000")
    assert record["source_sha256"] == {
        f"audio/c{i}.wav": sha256(tmp_path / "data" / "audio" / f"c{i}.wav") for i in range(3)
    }
    assert json.loads((tmp_path / "shard-000" / "stage.json").read_text()) == record


def test_a_source_replaced_after_prepare_stops_resampling_naming_it_and_both_digests(tmp_path):
    metadata = _prepared_dataset(tmp_path / "data")
    victim = tmp_path / "data" / "audio" / "c1.wav"
    recorded = sha256(victim)
    shutil.copy(tmp_path / "data" / "audio" / "c2.wav", victim)  # decodable, but not c1
    with pytest.raises(DataError) as error:
        _resample(metadata, tmp_path / "shard-000")
    message = str(error.value)
    assert message.startswith(f"{victim}: changed since the dataset was prepared")
    assert sha256(victim) in message and recorded in message and "prepare_dataset" in message
    assert not (tmp_path / "shard-000").exists()
    victim.unlink()
    with pytest.raises(DataError, match=rf"^{re.escape(str(victim))}: missing since"):
        _resample(metadata, tmp_path / "shard-000")


@pytest.mark.workflow
@requires_fluidsynth
def test_the_workflow_stops_at_a_source_replaced_after_prepare(tmp_path):
    write_config(tmp_path)
    run(tmp_path, "results/datasets/synth_key/metadata.csv")
    victim = "results/datasets/synth_key/audio/synkey-00005.wav"
    recorded = sha256(tmp_path / victim)
    shutil.copy(tmp_path / victim.replace("00005", "00006"), tmp_path / victim)
    result = run(tmp_path, "results/audio/synth_key/sr22050/shard-000", check=False)
    assert result.returncode != 0
    log = (tmp_path / "logs" / "resample" / "synth_key" / "sr22050" / "shard-000.log").read_text()
    replaced = sha256(tmp_path / victim)
    assert f"{victim}: changed since the dataset was prepared (sha256 {replaced}" in log
    assert recorded in log
    assert not (tmp_path / "results" / "audio" / "synth_key" / "sr22050" / "shard-000").exists()


# -- a missing record is an error ------------------------------------------------------


@pytest.mark.workflow
@requires_fluidsynth
def test_a_shard_without_its_record_stops_the_extraction_naming_it(finished_run, tmp_path):
    # the feature shards carry the resampling records on to provenance: extraction reads them
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, symlinks=True)  # mtimes kept: all up to date
    record = workdir / "results" / "audio" / "synth_key" / "sr22050" / "shard-001" / "stage.json"
    record.unlink()
    features = workdir / "results" / "features" / "synth_key" / "chroma" / "shard-001.npz"
    features.unlink()
    result = run(workdir, str(features.relative_to(workdir)), check=False)
    assert result.returncode != 0
    log = (workdir / "logs" / "extract" / "synth_key" / "chroma" / "shard-001.log").read_text()
    assert f"DataError: {record.relative_to(workdir)}: resampling record missing" in log
    assert not features.exists()
