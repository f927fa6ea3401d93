"""Tests of mirprobe.atomic and mirprobe.claims: modes, fsync, stable probe bytes, claims."""

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO
from mirprobe.atomic import atomic_path, write_json, write_text


@pytest.fixture(params=[0o022, 0o002], ids=["umask022", "umask002"])
def umask(request):
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def _mode(path):
    return Path(path).stat().st_mode & 0o777


def test_outputs_get_the_umasks_mode_not_0600(umask, tmp_path):
    write_text(tmp_path / "table.md", "| a |\n")
    write_json(tmp_path / "deep" / "train.json", {"a": 1})
    with atomic_path(tmp_path / "shard.npz") as tmp:
        np.savez(tmp, x=np.zeros(3))
    files = ["table.md", "deep/train.json", "shard.npz"]
    assert {f: _mode(tmp_path / f) for f in files} == {f: 0o666 & ~umask for f in files}
    assert _mode(tmp_path / "deep") == 0o777 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "shard.npz", "table.md"]


def test_a_resampled_shard_folder_gets_the_umasks_modes(umask, tmp_path):
    from mirprobe.atomic import replace_dir

    staged = tmp_path / ".shard-000.tmp"
    staged.mkdir()
    (staged / "manifest.tsv").write_text("clip_id\n")
    replace_dir(staged, tmp_path / "shard-000")
    assert _mode(tmp_path / "shard-000") == 0o777 & ~umask
    assert _mode(tmp_path / "shard-000" / "manifest.tsv") == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["shard-000"]


def test_unpacked_feature_cache_gets_the_umasks_mode_not_0700(umask, tmp_path):
    from mirprobe.extractors.jukemir_precomputed import unpack_features

    tarball = tmp_path / "gtzan_ff-chroma.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        buffer = io.BytesIO()
        np.save(buffer, np.arange(4.0))
        member = tarfile.TarInfo("gtzan_ff/chroma/blues.00000.npy")
        member.size = len(buffer.getvalue())
        archive.addfile(member, io.BytesIO(buffer.getvalue()))
    dest = tmp_path / "cache" / "gtzan_ff-chroma"
    unpack_features(tarball, dest, sha256="0" * 64)
    assert _mode(dest) == 0o777 & ~umask
    assert _mode(dest / "blues.00000.npy") == 0o666 & ~umask


def test_the_file_is_synced_before_its_rename_and_the_folder_after(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return fsync(fd)

    def spy_replace(src, dst):
        events.append(("replace", str(src)))
        return replace(src, dst)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    write_text(tmp_path / "table.md", "x\n")
    monkeypatch.undo()
    (tmp,) = {path for kind, path in events if kind == "replace"}
    assert events == [("fsync", tmp), ("replace", tmp), ("fsync", str(tmp_path))]
    assert Path(tmp).parent == tmp_path and Path(tmp).name.startswith(".table.md.")


def test_a_probe_file_has_the_same_bytes_whatever_its_name(tmp_path):
    from mirprobe.probes import ProbeConfig, save_probe, train_probe

    rng = np.random.default_rng(0)
    X = rng.normal(size=(120, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(int)
    config = ProbeConfig(
        standardize=True,
        hidden_sizes=(),
        batch_size=32,
        learning_rate=1e-2,
        dropout=0.0,
        l2=0.0,
        eval_every=8,
        patience=2,
        max_steps=32,
        seed=0,
    )
    probe = train_probe(
        X[:80], y[:80], X[80:], y[80:], task_type="multiclass", config=config, labels=["a", "b"]
    )
    digests = [
        save_probe(probe, tmp_path / "run1" / "probe.pt"),
        save_probe(probe, tmp_path / "run2" / "other-name.pt"),
    ]
    first = (tmp_path / "run1" / "probe.pt").read_bytes()
    assert (tmp_path / "run2" / "other-name.pt").read_bytes() == first
    assert b"probe.pt" not in first and b"other-name" not in first
    assert digests == [hashlib.sha256(first).hexdigest()] * 2


# -- claims: real processes ----------------------------------------------------


def _python(code, **kwargs):
    """Start a Python process running ``code`` with this checkout's mirprobe."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("MIRPROBE_JOB_CLAIM", None)
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, text=True, **kwargs
    )


def test_a_job_whose_output_was_claimed_again_leaves_the_later_output_alone(tmp_path):
    out_file, out_dir = tmp_path / "probe.pt", tmp_path / "shard-000"
    earlier = _python(
        f"""
        import json, sys
        from pathlib import Path
        from mirprobe.atomic import replace_dir, write_text
        from mirprobe.claims import claim_outputs, SupersededError

        claim_outputs([{str(out_file)!r}, {str(out_dir)!r}])
        print("claimed", flush=True)
        sys.stdin.readline()  # the later job runs meanwhile
        refused = []
        try:
            write_text({str(out_file)!r}, "earlier")
        except SupersededError as error:
            refused.append(str(error))
        staged = Path({str(out_dir)!r}).with_name(".staged-earlier")
        staged.mkdir()
        try:
            replace_dir(staged, {str(out_dir)!r})
        except SupersededError as error:
            refused.append(str(error))
        print(json.dumps(refused), flush=True)
        """,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert earlier.stdout.readline() == "claimed\n"
        later = _python(
            f"""
            from pathlib import Path
            from mirprobe.atomic import replace_dir, write_text
            from mirprobe.claims import claim_outputs

            claim_outputs([{str(out_file)!r}, {str(out_dir)!r}])
            write_text({str(out_file)!r}, "later")
            staged = Path({str(out_dir)!r}).with_name(".staged-later")
            staged.mkdir()
            (staged / "manifest.tsv").write_text("later")
            replace_dir(staged, {str(out_dir)!r})
            """
        )
        assert later.wait(timeout=120) == 0
        out, _ = earlier.communicate("go\n", timeout=120)
    finally:
        earlier.kill()
    refused = json.loads(out)
    assert len(refused) == 2
    assert refused[0].startswith(f"{out_file}: not written, {tmp_path}/.probe.pt.claim now")
    assert refused[1].startswith(f"{out_dir}: not written, {tmp_path}/.shard-000.claim now")
    assert out_file.read_text() == "later"
    assert (out_dir / "manifest.tsv").read_text() == "later"


def _alive(pid):
    """Whether ``pid`` runs (a zombie waiting for its reaper does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat.rsplit(b")", 1)[1].split()[0] != b"Z"


def test_a_job_stops_without_writing_when_the_process_that_started_it_is_killed(tmp_path):
    out, log = tmp_path / "train.json", tmp_path / "job.log"
    # parent (as snakemake) -> job; the job would write its output in 60 s
    parent = _python(
        f"""
        import subprocess, sys, textwrap, time
        job = subprocess.Popen([sys.executable, "-c", textwrap.dedent('''
            import time
            from mirprobe.atomic import write_text
            from mirprobe.claims import claim_outputs, watch_run

            claim_outputs([{str(out)!r}])
            watch_run(interval_s=0.1, grace_s=10)
            print("watching", flush=True)
            end = time.monotonic() + 60
            while time.monotonic() < end:
                time.sleep(0.05)
            write_text({str(out)!r}, "orphan")
        ''')], stdout=sys.stdout, stderr=open({str(log)!r}, "w"))
        print(job.pid, flush=True)
        job.wait(timeout=600)  # a job that fails to start ends the parent too
        """,
        stdout=subprocess.PIPE,
    )
    job = None
    try:
        job = int(parent.stdout.readline())
        assert parent.stdout.readline() == "watching\n"
        parent.kill()
        parent.wait()
        end = time.monotonic() + 120
        while _alive(job) and time.monotonic() < end:
            time.sleep(0.1)
        assert not _alive(job)
    finally:
        parent.kill()
        if job is not None and _alive(job):
            os.kill(job, signal.SIGKILL)
    assert not out.exists()
    assert "the snakemake run that started this job" in log.read_text()
    assert "KeyboardInterrupt" in log.read_text()
