"""``extractor: hear``: a module with HEAR's API, written by the test, imported by name and
used through that API only. (``hearbaseline`` 2021.0.2 resolves beside requirements.txt
(``pip install --dry-run``) but its ``naive.load_model`` fails with the pinned librosa 0.11:
it passes ``sr`` to ``librosa.filters.mel`` positionally, keyword-only since librosa 0.10.)"""

import hashlib
import importlib
import sys

import numpy as np
import pytest

from mirprobe.errors import ConfigError, ModelError
from mirprobe.extractors import build_extractor

torch = pytest.importorskip("torch")

#: a HEAR 2021 API module: a seeded random 1-d conv net, 8 kHz, 10 ms frames
MODULE = """
import torch

class Model(torch.nn.Module):
    sample_rate = 8000
    scene_embedding_size = 6
    timestamp_embedding_size = 6

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv1d(1, 6, kernel_size=160, stride=80)


def load_model(model_file=""):
    model = Model()
    if model_file:
        model.load_state_dict(torch.load(model_file, weights_only=True))
    return model


def get_timestamp_embeddings(audio, model):
    frames = torch.tanh(model.conv(audio[:, None, :])).transpose(1, 2)
    timestamps = torch.arange(frames.shape[1], dtype=torch.float32) * 10.0
    return frames, timestamps.expand(audio.shape[0], -1)


def get_scene_embeddings(audio, model):
    frames, _ = get_timestamp_embeddings(audio, model)
    return frames.max(1).values
"""


@pytest.fixture
def hear_module(tmp_path, monkeypatch):
    (tmp_path / "tiny_hear.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield importlib.import_module("tiny_hear")
    for name in ("tiny_hear", "not_hear"):
        sys.modules.pop(name, None)


@pytest.fixture
def model_file(tmp_path, hear_module):
    torch.manual_seed(3)
    path = tmp_path / "weights.pt"
    torch.save(hear_module.Model().state_dict(), path)
    return path


def clips(seed=0):
    rng = np.random.default_rng(seed)
    return [0.1 * rng.standard_normal(n).astype(np.float32) for n in (8000, 8000)]


def test_scene_embeddings_are_the_modules_own(hear_module, model_file):
    params = {"module": "tiny_hear", "model_file": str(model_file), "sample_rate": 8000}
    extractor = build_extractor({"extractor": "hear", "params": params})
    out = extractor.embed(clips(), layers=["scene"])["scene"]
    model = hear_module.load_model(str(model_file))
    expected = hear_module.get_scene_embeddings(torch.from_numpy(np.stack(clips())), model)
    np.testing.assert_array_equal(out, expected.detach().numpy())
    assert out.shape == (2, 6)
    source = extractor.source_record()
    assert source["module"] == "tiny_hear" and source["module_file"].endswith("tiny_hear.py")
    assert source["model_file_sha256"] == hashlib.sha256(model_file.read_bytes()).hexdigest()


def test_timestamp_embeddings_are_pooled_over_time(hear_module, model_file):
    params = {
        "module": "tiny_hear",
        "model_file": str(model_file),
        "sample_rate": 8000,
        "embedding": "timestamp",
    }
    extractor = build_extractor({"extractor": "hear", "params": params})
    assert extractor.available_layers(params) == ("timestamp",)
    out = extractor.embed(clips(), layers=["timestamp"])["timestamp"]
    model = hear_module.load_model(str(model_file))
    frames, _ = hear_module.get_timestamp_embeddings(torch.from_numpy(np.stack(clips())), model)
    np.testing.assert_allclose(out, frames.mean(1).detach().numpy(), rtol=1e-6)


def test_bad_modules_and_rates_are_named(hear_module, tmp_path):
    with pytest.raises(ModelError, match="sample_rate is 8000, params.sample_rate says 16000"):
        build_extractor(
            {"extractor": "hear", "params": {"module": "tiny_hear", "sample_rate": 16000}}
        ).load()
    with pytest.raises(ConfigError, match="cannot import module 'no_such_hear_module'"):
        build_extractor(
            {"extractor": "hear", "params": {"module": "no_such_hear_module", "sample_rate": 1}}
        ).load()
    (tmp_path / "not_hear.py").write_text("def load_model():\n    return None\n")
    with pytest.raises(ModelError, match="lacks HEAR's \\['get_scene_embeddings'\\]"):
        build_extractor(
            {"extractor": "hear", "params": {"module": "not_hear", "sample_rate": 1}}
        ).load()
    missing = {"module": "tiny_hear", "sample_rate": 8000, "model_file": str(tmp_path / "x.pt")}
    with pytest.raises(ModelError, match="x.pt' does not exist"):
        build_extractor({"extractor": "hear", "params": missing}).load()
