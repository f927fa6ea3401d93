"""Output claims: a job of an earlier, killed run never replaces an output of a later one.

Killing the ``snakemake`` process (not its jobs) leaves its jobs running. Such an
orphan, finishing later, would rename its outputs over those of a run started
since, perhaps with another configuration. Two guards prevent it:

- **Claims.** At start, every job (:func:`claim_job`, called by each script in
  ``scripts/``) writes a fresh token (host, pid, time, random) into a claim file
  beside each of its outputs, ``.<name>.claim``, and keeps the token in the
  environment (``MIRPROBE_JOB_CLAIM``, inherited by the job's own subprocesses).
  Every atomic rename (:mod:`mirprobe.atomic`) onto a claimed output, or into a
  claimed output directory, first takes an exclusive ``flock`` on the claim and
  checks that it still holds this job's token: a later job of the same output
  has re-claimed it, so the earlier one raises :class:`SupersededError` and
  leaves the later output untouched. Claims persist (they are what an orphan
  checks) and are a few bytes each.
- **Jobs die with their run.** A watchdog thread notices that the ``snakemake``
  process that started the job (its nearest ancestor running snakemake, or its
  parent) is gone, refuses every write from then on and stops the job
  (``KeyboardInterrupt`` in the main thread where Python handles SIGINT, which
  Snakemake's jobs ignore; an exit 2 s later). It reads ``/proc``, so it runs on
  Linux only; claims work everywhere ``flock`` does. A job orphaned before it
  started has no run to watch; its claim, older than the later run's, guards.

Code that runs outside a claimed job (tests, notebooks) writes as before.
"""

import contextlib
import json
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path

from .errors import MirprobeError

#: the environment variable holding this job's claim: {"token", "outputs"}
ENV = "MIRPROBE_JOB_CLAIM"
#: seconds between two looks of the watchdog at the job's ancestors
WATCH_INTERVAL_S = 1.0
#: seconds the main thread has to stop cleanly before the watchdog exits hard
GRACE_S = 2.0

_orphaned = threading.Event()


class SupersededError(MirprobeError):
    """This job may no longer write an output: a later job claimed it, or its run is gone."""


def claim_path(output):
    """The claim file of ``output``: ``.<name>.claim`` beside it."""
    output = Path(output)
    return output.with_name(f".{output.name}.claim")


@contextlib.contextmanager
def _locked(path):
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def claim_outputs(outputs):
    """Claim ``outputs`` for this process (and its children); return the token."""
    token = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}:{secrets.token_hex(8)}"
    paths = [os.path.abspath(p) for p in outputs]
    for path in paths:
        with _locked(claim_path(path)) as handle:
            handle.seek(0)
            handle.truncate()
            handle.write(token)
            handle.flush()
            os.fsync(handle.fileno())
    os.environ[ENV] = json.dumps({"token": token, "outputs": paths})
    return token


@contextlib.contextmanager
def guard(target):
    """Hold the claim covering ``target`` for the block; raise if this job lost it.

    A target under no claimed output (a cache file, or no claimed job) passes.
    """
    if _orphaned.is_set():
        raise SupersededError(
            f"{target}: not written, the snakemake run that started this job is gone"
        )
    state = os.environ.get(ENV)
    if not state:
        yield
        return
    state = json.loads(state)
    target = os.path.abspath(target)
    owner = next(
        (
            o
            for o in state["outputs"]
            if target == o or target.startswith(o.rstrip(os.sep) + os.sep)
        ),
        None,
    )
    if owner is None:
        yield
        return
    with _locked(claim_path(owner)) as handle:
        handle.seek(0)
        held = handle.read()
        if held != state["token"]:
            raise SupersededError(
                f"{target}: not written, {claim_path(owner)} now belongs to another job "
                f"({held or 'claim removed'}); this job ({state['token']}) is from an "
                "earlier run and leaves that job's output alone"
            )
        yield


def _stat(pid):
    """(parent pid, start time) of process ``pid``, or None where it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[19])


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def run_ancestors(pid=None):
    """(pid, start time) of the processes between this job and the snakemake that started it.

    The parent up to the nearest ancestor running snakemake (a shell or
    ``conda run`` may sit between); just the parent where no ancestor runs it.
    """
    pid = os.getppid() if pid is None else pid
    chain = []
    while pid > 1 and len(chain) < 16:
        stat = _stat(pid)
        if stat is None:
            break
        chain.append((pid, stat[1]))
        if b"snakemake" in _cmdline(pid):
            return chain
        pid = stat[0]
    return chain[:1]


def _alive(pid, started):
    stat = _stat(pid)
    return stat is not None and stat[1] == started


def watch_run(ancestors=None, *, interval_s=WATCH_INTERVAL_S, grace_s=GRACE_S):
    """Start the watchdog: stop this job when one of ``ancestors`` is gone."""
    import _thread

    ancestors = run_ancestors() if ancestors is None else ancestors
    if not ancestors or not Path("/proc/self/stat").exists():
        return None

    def watch():
        while all(_alive(pid, started) for pid, started in ancestors):
            time.sleep(interval_s)
        _orphaned.set()
        print(
            f"mirprobe: the snakemake run that started this job (pid {ancestors[-1][0]}) "
            "is gone; stopping without writing outputs",
            file=sys.stderr,
            flush=True,
        )
        _thread.interrupt_main()
        time.sleep(grace_s)
        os._exit(1)

    thread = threading.Thread(target=watch, name="mirprobe-run-watchdog", daemon=True)
    thread.start()
    return thread


def claim_job(smk):
    """What every script runs first: claim the job's outputs, die with its run."""
    claim_outputs(list(smk.output))
    watch_run()
