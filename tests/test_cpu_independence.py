"""MFCC, MusiCNN and MusicGen features do not depend on the CPU: the default table's MFCC row
once moved with the machine (an Intel AVX-512 CPU picks another OpenBLAS GEMM kernel than this AMD one, and a
CPU without AVX-512 another numpy log10 loop). Here another CPU is simulated on this one:
OpenBLAS is told to use an older kernel and numpy to skip its newer SIMD loops, each in a
fresh interpreter since both are read when the libraries load."""

import json
import os
import platform
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

# one process's features of a few seeded chord-like clips with noise, as JSON
# (argv: extractor, sample rate, seconds, clips, layer[, params as JSON])
CHILD = """
import json, sys
import numpy as np
from numpy._core._multiarray_umath import __cpu_features__
from mirprobe.extractors import build_extractor

name, sr, seconds, n, layer = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
params = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
rng = np.random.default_rng(0)
t = np.arange(int(seconds * sr)) / sr
clips = []
for i in range(n):
    f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
    tones = sum(np.sin(2 * np.pi * f0 * r * t) for r in (1, 1.26, 1.5, 2))
    y = tones + 0.1 * rng.standard_normal(t.size)
    clips.append((0.9 * y / np.abs(y).max() if name == "musicnn" else y).astype(np.float32))
out = build_extractor({"extractor": name, "params": params}).embed(clips, layers=[layer])[layer]
aten = sys.modules["torch"].backends.cpu.get_cpu_capability() if "torch" in sys.modules else None
json.dump({"avx2": bool(__cpu_features__["X86_V3"]), "aten": aten, "features": out.tolist()}, sys.stdout)
"""

# numpy 2.x's dispatch targets above the x86-64 baseline (AVX2 level and up)
NUMPY_SIMD = "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"


def child_record(args, **env):
    """One child's record: whether numpy's AVX2-level (x86-64-v3) loops ran (``avx2``), ATen's
    SIMD level where torch ran (``aten``) and the features."""
    environment = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        # one thread: OpenBLAS splits a GEMM by thread count too
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **env,
    }
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, args)],
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    record = json.loads(out.stdout)
    return record | {"features": np.asarray(record["features"], dtype=np.float32)}


def child_features(args, **env):
    """Whether numpy's AVX2-level loops ran, and the features, of one child."""
    record = child_record(args, **env)
    return record["avx2"], record["features"]


def mfcc_stats(**env):
    return child_features(["mfcc", 22050, 2, 6, "stats"], **env)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="simulates older x86-64 CPUs")
def test_mfcc_is_the_same_with_older_blas_kernels_and_simd_loops():
    has_avx2, native = mfcc_stats()
    if not has_avx2:
        pytest.skip("this CPU has no AVX2: there is no older SIMD level to compare with")
    # Sandy Bridge's OpenBLAS kernels (AVX, no FMA) and numpy's baseline loops only
    v3_loops, older = mfcc_stats(
        OPENBLAS_CORETYPE="Sandybridge", NPY_DISABLE_CPU_FEATURES=NUMPY_SIMD
    )
    assert not v3_loops, "NPY_DISABLE_CPU_FEATURES did not take effect: the test compares nothing"
    assert np.isfinite(native).all() and native.shape == (6, 120)
    differ = np.flatnonzero(native != older)
    assert differ.size == 0, (
        f"MFCC statistics depend on the CPU: {differ.size} of {native.size} values differ "
        f"(max abs {np.abs(native - older).max():.3g})"
    )


def musicnn_features(**env):
    return child_features(["musicnn", 16000, 4, 4, "mean_max"], **env)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="simulates older x86-64 CPUs")
def test_musicnn_is_the_same_with_older_blas_simd_and_onednn_kernels():
    """The float16 mel rounded OpenBLAS's last bits into flips, and TensorFlow's
    contractions run oneDNN's sgemm, whose kernel oneDNN picks by ISA (ONEDNN_MAX_CPU_ISA
    stands in for an older CPU; the extractor sets its own, which must win)."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("musicnn")
    has_avx2, native = musicnn_features()
    if not has_avx2:
        pytest.skip("this CPU has no AVX2: there is no older SIMD level to compare with")
    v3_loops, older = musicnn_features(
        OPENBLAS_CORETYPE="Sandybridge",
        NPY_DISABLE_CPU_FEATURES=NUMPY_SIMD,
        ONEDNN_MAX_CPU_ISA="AVX",
    )
    assert not v3_loops, "NPY_DISABLE_CPU_FEATURES did not take effect: the test compares nothing"
    assert np.isfinite(native).all() and native.shape == (4, 1506)
    differ = np.flatnonzero(native != older)
    assert differ.size == 0, (
        f"MusiCNN features depend on the CPU: {differ.size} of {native.size} values differ "
        f"(max abs {np.abs(native - older).max():.3g})"
    )


def musicgen_features(**env):
    params = {"architecture": "tiny", "random_weights": True}
    return child_record(["musicgen", 32000, 3, 4, "2", json.dumps(params)], **env)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="simulates older x86-64 CPUs")
def test_musicgen_is_the_same_with_older_aten_mkl_and_onednn_kernels():
    """In float32, torch's kernels (ATen's SIMD level, MKL's GEMM, oneDNN's convolutions),
    each picked by CPU, changed last bits, which flipped near-tie EnCodec codes and moved
    the README's MusicGen-tiny rows on another machine. With more threads too: MKL and ATen
    split their work by thread count."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    native = musicgen_features(OMP_NUM_THREADS="2")
    if native["aten"] == "DEFAULT":
        pytest.skip("ATen runs no SIMD kernels here: there is no older level to compare with")
    older = musicgen_features(
        ATEN_CPU_CAPABILITY="default", MKL_CBWR="COMPATIBLE", ONEDNN_MAX_CPU_ISA="SSE41"
    )
    assert older["aten"] == "DEFAULT", "ATEN_CPU_CAPABILITY did not take effect"
    native, older = native["features"], older["features"]
    assert np.isfinite(native).all() and native.shape == (4, 32)
    differ = np.flatnonzero(native != older)
    assert differ.size == 0, (
        f"MusicGen features depend on the CPU: {differ.size} of {native.size} values differ "
        f"(max abs {np.abs(native - older).max():.3g})"
    )
