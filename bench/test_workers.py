"""The test suite's wall time in one process (``-n0``) against pytest-xdist's
``-n auto --dist loadgroup`` (pyproject's addopts), on the same modules in the
same run. Usage: ``.venv/bin/python bench/test_workers.py [test files ...]``
(default: three workflow modules of about a minute each)."""

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT = [
    "tests/test_folder_workflow.py",
    "tests/test_plugins.py",
    "tests/test_present_subsets.py",
]


def wall(files, workers):
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *workers, *files],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise SystemExit(f"pytest {' '.join(workers)} failed:\n{result.stdout[-3000:]}")
    return time.perf_counter() - started


def main():
    files = sys.argv[1:] or DEFAULT
    print(f"{os.cpu_count()} CPUs; modules: {' '.join(files)}")
    serial = wall(files, ["-n0"])
    spread = wall(files, ["-n", "auto", "--dist", "loadgroup"])
    print(
        f"one process: {serial:.0f} s; xdist -n auto: {spread:.0f} s; ratio {serial / spread:.2f}x"
    )


if __name__ == "__main__":
    main()
