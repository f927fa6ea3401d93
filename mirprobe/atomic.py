"""Atomic file writes: write to a temporary file beside the target, then rename.

An interrupted job therefore leaves either the old file or no file, never a
truncated one, and Snakemake's rerun of the job starts clean.
"""

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, *, suffix=None):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    ``suffix`` defaults to the target's suffix, so libraries that choose a
    format from the file name (soundfile, numpy) keep working.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix
    )
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def write_json(path, obj):
    """Write ``obj`` as indented, key-sorted JSON, atomically (stable bytes)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
