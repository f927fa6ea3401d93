import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

REPO = Path(__file__).resolve().parent.parent
#: third-party fixtures are read in place, never copied into the repository
FIXTURES = Path(os.environ.get("MIRPROBE_FIXTURES", REPO.parent / "shared" / "fixtures"))


def fixture_path(*parts):
    """Path of a shared fixture, or skip the test saying why it is absent."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"fixture {path} absent (set MIRPROBE_FIXTURES to the shared fixtures folder)")
    return path


def fixture_weights_dir(monkeypatch):
    """Point ``MIRPROBE_WEIGHTS_DIR`` at the shared fixture weights (skip when absent)."""
    from mirprobe.extractors.torch_weights import WEIGHTS_DIR_ENV

    path = fixture_path("weights")
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(path))
    return path


def gtzan_lists(root=None):
    """The real fault-filtered GTZAN split lists (coreyker/dnn-mgr), read in place."""
    root = root or fixture_path("annotations", "gtzan", "dnn-mgr", "gtzan")
    return {s: root / f"{s}_filtered.txt" for s in ("train", "valid", "test")}


@pytest.fixture
def local_gtzan(tmp_path, monkeypatch):
    """data_home/gtzan with the real split lists, 930 tiny WAVs named like GTZAN's
    in mirdata's layout, and a mirdata-format index holding their md5s."""
    import urllib.request

    from mirprobe.datasets import gtzan

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    data_home = tmp_path / "data_home"
    root = data_home / "gtzan"
    root.mkdir(parents=True)
    for path in gtzan_lists().values():
        shutil.copy(path, root / path.name)
    table = gtzan.read_split_lists(gtzan_lists())
    rng = np.random.default_rng(0)
    tracks = {}
    for clip_id, genre in zip(table["clip_id"], table["genre"], strict=True):
        rel = f"gtzan_genre/genres/{genre}/{clip_id}.wav"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(
            root / rel, 0.1 * rng.standard_normal(800).astype(np.float32), 8000, subtype="PCM_16"
        )
        md5 = hashlib.md5((root / rel).read_bytes()).hexdigest()
        tracks[clip_id] = {"audio": [rel, md5]}
    index = tmp_path / "gtzan_genre_index_test.json"
    index.write_text(json.dumps({"version": "1.0", "tracks": tracks}))
    return {"data_home": data_home, "root": root, "index": index, "tracks": tracks}


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


#: a small setting of the default workflow, run end to end by the workflow tests
SMALL = {
    "seed": 0,
    "device": "cpu",
    "datasets": {
        "synth_key": {
            "kind": "synthetic_key",
            "label": "SynthKey",
            "shard_size": 40,
            "params": {"clips_per_key": 4, "duration": 2.0, "seed": 0},
        }
    },
    "representations": {
        "chroma": {"extractor": "chroma", "label": "Chroma"},
        "mfcc": {"extractor": "mfcc", "label": "MFCC"},
    },
    "probe": {
        "grid": {
            "hidden_sizes": [[], [32]],
            "learning_rate": [0.001],
            "l2": [0.0],
            "dropout": [0.25],
        },
        "patience": 8,
        "max_steps": 400,
    },
}


def write_config(workdir, **overrides):
    config = json.loads(json.dumps(SMALL))
    for key, value in overrides.items():
        config[key] = value
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run(workdir, *args, check=True, timeout=900):
    return snakemake(
        workdir,
        "--configfile",
        str(workdir / "config.yaml"),
        "--cores",
        "2",
        *args,
        check=check,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """One run of the SMALL config, shared by the tests that only read it (and by
    the deletion test, which restores it): a from-scratch rerun elsewhere must
    give its table byte for byte."""
    workdir = tmp_path_factory.mktemp("run")
    write_config(workdir)
    run(workdir)
    return workdir


#: the modules of the longest runs, started first when pytest-xdist spreads the
#: suite over workers (so that no long run starts last and leaves one worker idle)
LONG_FIRST = ("test_readme.py",)


def pytest_collection_modifyitems(config, items):
    """Group the tests for pytest-xdist (``--dist loadgroup``): a module's tests run on
    one worker, so that its module fixtures (a workflow run, a SLURM cluster) are built
    once; every module whose tests read the shared ``finished_run`` joins one group, so
    that run is made once and its deletion test never races a reader. The long groups go
    first."""
    # xdist collects in its workers, which it gives no numprocesses but a workerinput
    if not (getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput")):
        return  # one process: pytest's own order
    shared = {item.path.name for item in items if "finished_run" in item.fixturenames}
    for item in items:
        group = "finished_run" if item.path.name in shared else item.path.name
        item.add_marker(pytest.mark.xdist_group(group))
        if hasattr(item, "_id"):
            # pytest 9 reads a node id from ``_id``; xdist 3.8 still writes its group suffix
            # to ``_nodeid``, so without this every test is scheduled on its own
            from _pytest.nodeid import coerce_node_id

            item._id = coerce_node_id(f"{item.nodeid}@{group}")

    def rank(item):
        if item.path.name in LONG_FIRST:
            return 0
        return 1 if item.path.name in shared else 2

    items.sort(key=rank)  # stable: the order within a rank is pytest's
