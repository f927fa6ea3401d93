"""Plug-ins from outside the repository (mirprobe.plugins): a throwaway distribution,
built in a temporary folder as an installed one looks (its package beside a
``.dist-info`` with its entry points), declares an extractor (spectral statistics
with numpy) and a dataset (sine tones in three registers, numpy + soundfile);
the real snakemake CLI runs them through the workflow to a table."""

import hashlib
import json
import os
import sys
import textwrap

import numpy as np
import pytest
import yaml

from conftest import SMALL, requires_fluidsynth, run
from mirprobe.audio import load_audio
from mirprobe.config import validate_config
from mirprobe.errors import ConfigError

DIST, VERSION = "mirprobe-toy-plugins", "0.1.0"

FEATURES = '''
"""Spectral statistics: mean and deviation of log band energies and of the centroid."""

import numpy as np

from mirprobe.extractors.base import Extractor, mono_float32


class SpectralStats(Extractor):
    name = "specstats"
    conda_env = "handcrafted.yaml"
    packages = ("numpy",)
    default_layers = ("stats",)
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "sr": {"type": "integer", "minimum": 8000, "default": 16000},
            "n_fft": {"type": "integer", "minimum": 64, "default": 512},
            "n_bands": {"type": "integer", "minimum": 2, "default": 16},
        },
    }
    min_input_samples = 512

    @classmethod
    def sample_rate_for(cls, params):
        return params.get("sr", 16000)

    def embed(self, batch, *, layers):
        n_fft, n_bands = self.params["n_fft"], self.params["n_bands"]
        freqs = np.fft.rfftfreq(n_fft, 1 / self.sample_rate)
        edges = np.geomspace(50.0, self.sample_rate / 2, n_bands + 1)
        band = np.digitize(freqs, edges) - 1
        rows = []
        for y in batch:
            y = mono_float32(y)
            starts = range(0, len(y) - n_fft + 1, n_fft // 2)
            frames = np.stack([y[s : s + n_fft] for s in starts]) * np.hanning(n_fft)
            power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
            energies = np.stack(
                [power[:, band == b].sum(axis=1) for b in range(n_bands)], axis=1
            )
            log_e = np.log(energies + 1e-10)
            centroid = (power * freqs).sum(axis=1) / (power.sum(axis=1) + 1e-10)
            rows.append(
                np.concatenate([log_e.mean(0), log_e.std(0), [centroid.mean(), centroid.std()]])
            )
        return {"stats": np.asarray(rows, dtype=np.float32)}


class NotAnExtractor:
    name = "not"
'''

DATA = '''
"""Sine tones in three registers (low, mid, high): a multiclass task."""

import numpy as np
import pandas as pd

from mirprobe.datasets.base import Dataset, write_metadata

REGISTERS = {"low": (110.0, 220.0), "mid": (440.0, 880.0), "high": (1760.0, 3520.0)}
SPLITS = ["train"] * 4 + ["valid"] * 2 + ["test"] * 2


class Tones(Dataset):
    kind = "tones"
    task_type = "multiclass"
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {"seed": {"type": "integer", "default": 0}},
    }

    def labels(self):
        return list(REGISTERS)

    def num_clips(self):
        return len(REGISTERS) * len(SPLITS)

    def prepare(self, out_dir, *, threads=1, on_bad_audio="error"):
        import soundfile as sf

        rng = np.random.default_rng(self.params.get("seed", 0))
        (out_dir / "audio").mkdir(parents=True, exist_ok=True)
        rows, sr = [], 22050
        t = np.arange(int(1.5 * sr)) / sr
        for label, (lo, hi) in REGISTERS.items():
            for k, split in enumerate(SPLITS):
                clip_id = f"{label}-{k}"
                f0 = rng.uniform(lo, hi)
                y = 0.3 * np.sin(2 * np.pi * f0 * t) + 0.01 * rng.standard_normal(t.size)
                sf.write(out_dir / "audio" / f"{clip_id}.wav", y.astype(np.float32), sr)
                rows.append([clip_id, f"audio/{clip_id}.wav", 0.0, "", split, label, clip_id])
        columns = ["clip_id", "audio_path", "offset", "duration", "split", "label", "song_id"]
        write_metadata(pd.DataFrame(rows, columns=columns), out_dir / "metadata.csv")
        return {"generator": "toy_plugins.data", "seed": self.params.get("seed", 0)}
'''


def build_distribution(site):
    """``site/toy_plugins`` and ``site/<dist>.dist-info`` (as pip would install them)."""
    package = site / "toy_plugins"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Toy mirprobe plug-ins."""\n')
    (package / "features.py").write_text(FEATURES.lstrip())
    (package / "data.py").write_text(DATA.lstrip())
    info = site / f"{DIST.replace('-', '_')}-{VERSION}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: {VERSION}\n")
    (info / "top_level.txt").write_text("toy_plugins\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent(
            """\
            [mirprobe.extractors]
            specstats = toy_plugins.features:SpectralStats
            broken = toy_plugins.features:NotAnExtractor

            [mirprobe.datasets]
            tones = toy_plugins.data:Tones
            """
        )
    )
    return package


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The distribution, importable in this process and in snakemake's (PYTHONPATH)."""
    site = tmp_path_factory.mktemp("site")
    build_distribution(site)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(site))
        patch.setenv("PYTHONPATH", os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))
        yield site
    for name in [m for m in sys.modules if m == "toy_plugins" or m.startswith("toy_plugins.")]:
        del sys.modules[name]


def plugin_config():
    config = json.loads(json.dumps(SMALL))
    config["datasets"]["synth_key"]["params"]["clips_per_key"] = 3
    config["datasets"]["tones"] = {"class": "toy_plugins.data:Tones", "label": "Tones"}
    config["representations"] = {
        # by its entry-point name, with a sample rate set by its params
        "spec": {"extractor": "specstats", "label": "SpecStats", "params": {"sr": 12000}},
    }
    return config


def test_plugin_classes_validate_like_built_ins(site):
    config = validate_config(plugin_config())
    assert config["datasets"]["tones"]["kind"] == "toy_plugins.data:Tones"
    assert config["representations"]["spec"]["params"] == {"sr": 12000, "n_fft": 512, "n_bands": 16}
    # the plug-in's own params schema applies
    bad = plugin_config()
    bad["representations"]["spec"]["params"]["n_fftt"] = 256
    with pytest.raises(
        ConfigError, match=r"representations\.spec\.params: Additional prop.*n_fftt"
    ):
        validate_config(bad)
    # an entry point naming a class that is no Extractor
    bad = plugin_config()
    bad["representations"]["spec"] = {"extractor": "broken"}
    with pytest.raises(ConfigError) as error:
        validate_config(bad)
    assert str(error.value) == (
        "representations.spec.extractor: extractor 'broken': toy_plugins.features:NotAnExtractor"
        " is not a subclass of mirprobe.extractors.base.Extractor"
    )
    # the installed names are among the choices an unknown name lists
    bad["representations"]["spec"] = {"extractor": "specstat"}
    with pytest.raises(
        ConfigError,
        match=r"installed \(entry points 'mirprobe.extractors'\): "
        r"\['broken', 'specstats'\]",
    ):
        validate_config(bad)


def test_provenance_records_the_packages_an_extractor_names():
    from mirprobe.extractors.handcrafted import MFCC
    from mirprobe.extractors.musicnn import MusiCNN

    assert "tensorflow" in MusiCNN.provenance_packages()
    assert MFCC.provenance_packages() == ("librosa",)


def test_a_musicnn_shard_records_tensorflow(tmp_path):
    """The versions of the distributions MusiCNN names reach its shards' environment,
    which each cell's record copies (``environment.extract``, checked on the plug-in's
    own distribution by the workflow run below): no TensorFlow session needed."""
    import importlib.metadata

    pytest.importorskip("musicnn")
    from mirprobe.extractors.musicnn import MusiCNN
    from mirprobe.features import write_feature_shard

    path = tmp_path / "shard-000.npz"
    write_feature_shard(
        path,
        clip_ids=["a"],
        arrays={"layer:mean_max": np.zeros((1, 4), dtype=np.float32)},
        excluded=[],
        profile={},
        extractor=MusiCNN(),
        device="cpu",
        code=None,
        dataset=None,
    )
    with np.load(path) as shard:
        packages = json.loads(str(shard["profile"]))["environment"]["packages"]
    for dist in ("tensorflow", "tf_keras", "musicnn"):
        assert packages[dist] == importlib.metadata.version(dist)


@pytest.fixture(scope="module")
def plugin_run(site, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("plugin_run")
    (workdir / "config.yaml").write_text(yaml.safe_dump(plugin_config()))
    run(workdir)
    return workdir


@pytest.mark.workflow
@requires_fluidsynth
def test_the_workflow_runs_the_plugins_to_a_table(plugin_run, site):
    workdir = plugin_run
    results = workdir / "results"
    table = (results / "table.md").read_text()
    assert "| SpecStats " in table and "Tones" in table and "SynthKey" in table
    # resampled at the rate its params give, and the features are the class's own
    audio = results / "audio" / "tones" / "sr12000" / "shard-000"
    shard = results / "features" / "tones" / "spec" / "shard-000.npz"
    with np.load(shard) as features:
        clip_ids, stats = list(features["clip_ids"]), features["layer:stats"]
        profile = json.loads(str(features["profile"]))
    assert len(clip_ids) == 24 and stats.shape == (24, 34)
    from toy_plugins.features import SpectralStats

    extractor = SpectralStats(params={"sr": 12000})
    batch = [load_audio(audio / f"{clip}.wav", sr=12000) for clip in clip_ids[:3]]
    np.testing.assert_allclose(stats[:3], extractor.embed(batch, layers=["stats"])["stats"])
    # the code record names the plug-ins (the extractor's and the dataset's, whose class
    # the job also runs): module, file, digest, distribution, version
    records = []
    for module in ("data", "features"):
        source = (site / "toy_plugins" / f"{module}.py").resolve()
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        records.append(
            {
                "module": f"toy_plugins.{module}",
                "file": str(source),
                "sha256": digest,
                "distribution": DIST,
                "version": VERSION,
            }
        )
        assert profile["code"]["sources"][str(source)] == digest
    assert profile["code"]["plugins"] == records
    assert profile["environment"]["packages"][DIST] == VERSION
    record = json.loads((results / "provenance" / "tones" / "spec" / "stats.json").read_text())
    assert record["code"]["consistent"], record["code"]["problems"]
    assert record["environment"]["extract"]["packages"][DIST] == VERSION
    assert record["environment"]["prepare"]["packages"][DIST] == VERSION
    assert record["data"]["kind"] == "toy_plugins.data:Tones"
    assert set(record["test_metrics"]) >= {"accuracy"}


@pytest.mark.workflow
@requires_fluidsynth
def test_editing_a_plugin_reruns_its_jobs_only(plugin_run, site):
    workdir = plugin_run
    result = run(workdir, "-n")
    assert "Nothing to be done" in result.stdout + result.stderr
    source = site / "toy_plugins" / "features.py"
    original = source.read_text()
    try:
        source.write_text(original + "\n# an edit\n")
        plan = run(workdir, "-n", "--quiet", "rules")
        text = plan.stdout + plan.stderr
        counts = {
            line.split()[0]: int(line.split()[1])
            for line in text.splitlines()
            if len(line.split()) == 2 and line.split()[1].isdigit()
        }
        # spec's extract jobs (2 synth_key shards + 1 tones shard), then its 2 cells
        assert counts == {
            "extract": 3,
            "train_probe": 2,
            "evaluate_probe": 2,
            "provenance": 2,
            "table": 1,
            "all": 1,
            "total": 11,
        }, text
    finally:
        source.write_text(original)
