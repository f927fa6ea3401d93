"""Atomic file writes: write to a temporary file beside the target, then rename.

An interrupted job therefore leaves either the old file or no file, never a
truncated one, and Snakemake's rerun of the job starts clean. The temporary
file is flushed to disk (``fsync``) before the rename and the folder after it,
so a crash of the machine cannot leave a renamed but empty file. Files and
folders are created with the modes the umask gives (``0666``/``0777`` masked),
as any other program's, so a shared results folder stays readable. Every
rename onto an output of a claimed job first checks that the job still owns
it (:mod:`mirprobe.claims`).
"""

import contextlib
import json
import os
import secrets
import shutil
from pathlib import Path

from .claims import guard


def _fsync_dir(directory):
    with contextlib.suppress(OSError):  # not every filesystem syncs a folder
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_temp_dir(parent, *, prefix):
    """Create a new, uniquely named folder in ``parent`` (mode from the umask)."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            path.mkdir()
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{parent}: no free temporary name with prefix {prefix!r}")


def _make_temp_file(parent, *, prefix, suffix):
    # unlike tempfile.mkstemp (always 0600), os.open's mode is masked by the umask
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"{parent}: no free temporary name with prefix {prefix!r}")


@contextlib.contextmanager
def atomic_path(path, *, suffix=None):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    ``suffix`` defaults to the target's suffix, so libraries that choose a
    format from the file name (soundfile, numpy) keep working.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _make_temp_file(path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix)
    try:
        yield tmp
        _fsync_file(tmp)
        with guard(path):
            os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def replace_dir(tmp_dir, out_dir):
    """Put the finished folder ``tmp_dir`` in the place of ``out_dir`` (removed first)."""
    tmp_dir, out_dir = Path(tmp_dir), Path(out_dir)
    for child in tmp_dir.iterdir():
        if child.is_file():
            _fsync_file(child)
    with guard(out_dir):
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp_dir, out_dir)
    _fsync_dir(out_dir.parent)


def write_bytes(path, data):
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj):
    """Write ``obj`` as indented, key-sorted JSON, atomically (stable bytes)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
