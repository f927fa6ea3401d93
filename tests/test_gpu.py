"""CUDA paths: probe trainers and extractors on a GPU, against the same code on the CPU.

Skipped where torch sees no GPU (CI and this project's development machine).
On a GPU machine::

    python -m pytest tests/test_gpu.py

The checks: the batched trainer reproduces the serial one config by config on
the GPU as it does on the CPU; every torch extractor runs on CUDA with its
``dtype: auto`` precision (float16 for the MusicGen decoder and the Jukebox
blocks, float32 elsewhere) and gives the CPU features (float32; MusicGen and EnCodec
computed in float64) to that precision's tolerance; an extraction shard run on CUDA records the device and
the GPU's peak memory in its profile.
"""

import numpy as np
import pandas as pd
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible")

from test_batched import assert_same_grid, fit, problem, small_grid  # noqa: E402
from test_convnet_extractors import clips  # noqa: E402

from mirprobe.audio import write_wav  # noqa: E402
from mirprobe.extractors import build_extractor  # noqa: E402
from mirprobe.features import extract_shard  # noqa: E402


@pytest.mark.parametrize("task_type", ["multiclass", "key", "multilabel", "regression"])
def test_batched_matches_serial_on_the_gpu(task_type):
    data = problem(task_type)
    configs = small_grid()
    serial = fit(data, configs, trainer="serial", device="cuda")
    batched = fit(data, configs, trainer="batched", device="cuda")
    assert_same_grid(serial, batched, data)


def test_without_dropout_gpu_curves_equal_cpu_curves():
    """Dropout masks come from a generator on the training device, and CUDA's
    generator draws other numbers than the CPU's for the same seed: a grid is
    reproducible on one kind of device, not across them. Without dropout
    nothing random is device-dependent (batches are drawn by Python's
    ``random``), so the curves agree to float rounding."""
    data = problem("regression")
    configs = [c for c in small_grid() if c.dropout == 0]
    assert configs
    cpu = fit(data, configs, trainer="batched", device="cpu")
    gpu = fit(data, configs, trainer="batched", device="cuda")
    for c, g in zip(cpu.records, gpu.records, strict=True):
        assert g["n_steps"] == c["n_steps"]
        for key in ("first", "best", "last"):
            assert np.isclose(g["curve"][key], c["curve"][key], rtol=1e-4, atol=1e-5), c["config"]


def test_cuda_availability_is_what_auto_resolves_to():
    from mirprobe.features import resolve_device

    assert resolve_device("auto") == "cuda"


# (spec, relative tolerance of CUDA auto-precision features against CPU float32)
EXTRACTORS = {
    "musicgen": (
        {"extractor": "musicgen", "params": {"architecture": "tiny", "random_weights": True}},
        ["0", "2"],
        5e-2,
    ),
    "encodec": (
        {"extractor": "encodec", "params": {"architecture": "tiny", "random_weights": True}},
        ["encoder"],
        1e-3,
    ),
    "jukebox": (
        {"extractor": "jukebox", "params": {"architecture": "tiny", "random_weights": True}},
        ["2"],
        5e-2,
    ),
    "clmr": ({"extractor": "clmr", "params": {"random_weights": True}}, ["encoder"], 1e-3),
    "choi": ({"extractor": "choi", "params": {"random_weights": True}}, ["all"], 1e-3),
}


@pytest.mark.parametrize("name", sorted(EXTRACTORS))
def test_extractor_on_cuda_matches_cpu(name):
    spec, layers, rtol = EXTRACTORS[name]
    cpu = build_extractor(spec).load(device="cpu")
    gpu = build_extractor(spec).load(device="cuda")
    batch = clips(cpu.sample_rate, seconds=4.0, n=3)
    torch.cuda.reset_peak_memory_stats()
    want = cpu.embed(batch, layers=layers)
    got = gpu.embed(batch, layers=layers)
    assert torch.cuda.max_memory_allocated() > 0, "nothing was allocated on the GPU"
    for layer in layers:
        assert got[layer].dtype == np.float32 and np.isfinite(got[layer]).all()
        error = np.linalg.norm(got[layer] - want[layer]) / np.linalg.norm(want[layer])
        assert error < rtol, f"{name} layer {layer}: relative error {error:.2e}"


def test_musicgen_decoder_runs_in_float16_on_cuda():
    spec = EXTRACTORS["musicgen"][0]
    gpu = build_extractor(spec).load(device="cuda")
    assert gpu.decoder.layer_norm.weight.dtype == torch.float16
    assert next(gpu.model.audio_encoder.parameters()).dtype == torch.float32


def test_extract_shard_on_cuda_records_the_device(tmp_path):
    spec = EXTRACTORS["musicgen"][0]
    shard = tmp_path / "shard-000"
    shard.mkdir()
    rows = []
    for k, y in enumerate(clips(32000, seconds=1.5, n=3)):
        write_wav(shard / f"c{k}.wav", y, sr=32000)
        rows.append({"clip_id": f"c{k}", "source": f"c{k}.wav", "status": "ok", "reason": ""})
        rows[-1]["n_samples"] = y.size
    pd.DataFrame(rows).to_csv(shard / "manifest.tsv", sep="\t", index=False)
    out = tmp_path / "features.npz"
    profile = extract_shard(
        shard, out, extractor=build_extractor(spec), layers=["2"], batch_size=2, device="cuda"
    )
    assert profile["device"] == "cuda" and profile["gpu_peak_mb"] > 0
    with np.load(out) as features:
        assert features["layer:2"].shape == (3, 32)
