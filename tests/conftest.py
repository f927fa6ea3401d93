import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: third-party fixtures are read in place, never copied into the repository
FIXTURES = Path(os.environ.get("MIRPROBE_FIXTURES", REPO.parent / "shared" / "fixtures"))


def fixture_path(*parts):
    """Path of a shared fixture, or skip the test saying why it is absent."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"fixture {path} absent (set MIRPROBE_FIXTURES to the shared fixtures folder)")
    return path


requires_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None,
    reason="Debian's fluidsynth is not installed (bin/setup installs it)",
)


def snakemake(workdir, *args, check=True, timeout=900):
    """Run the real snakemake CLI on this repository's workflow in ``workdir``."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-6000:]}"
        )
    return result
