"""Cost on the CPU of MusicGen's CPU-independent precision (``dtype: auto``: EnCodec, decoder
and pooling in float64) against the float32 path before it, measured in the same run.

Three extractors of one random-weights architecture, timed interleaved on the same seeded
clips, best of ``rounds``:

- before: everything in float32 (the code before float64 on the CPU);
- float32 decoder: ``dtype: float32`` (EnCodec still in float64, so its codes stay the same);
- auto: ``dtype: auto``, float64 throughout on the CPU.

    .venv/bin/python bench/musicgen_portable.py [architecture] [n_clips] [seconds] [rounds]

``architecture``: tiny (default) or small (musicgen-small's size, 24 blocks of width 1024).
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

import mirprobe.extractors.musicgen as module  # noqa: E402
from mirprobe.extractors.musicgen import MusicGen  # noqa: E402


def build(architecture, dtype, *, before=False):
    base = module._base_dtype
    if before:
        module._base_dtype = lambda device: torch.float32
    try:
        params = {"architecture": architecture, "random_weights": True, "dtype": dtype}
        return MusicGen(params=params).load(device="cpu")
    finally:
        module._base_dtype = base


def main():
    architecture = sys.argv[1] if len(sys.argv) > 1 else "tiny"
    n_clips = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 4.0
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    layer = str(MusicGen.num_decoder_layers({"architecture": architecture, "weights": ""}))
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 32000)) / 32000
    clips = [
        (0.3 * np.sin(2 * np.pi * (220 + 40 * i) * t) + 0.05 * rng.standard_normal(t.size)).astype(
            np.float32
        )
        for i in range(n_clips)
    ]
    paths = {
        "before (float32)": build(architecture, "float32", before=True),
        "float32 decoder": build(architecture, "float32"),
        "auto (float64)": build(architecture, "auto"),
    }
    best = dict.fromkeys(paths, np.inf)
    for extractor in paths.values():
        extractor.embed(clips[:1], layers=[layer])  # warm-up
    for _ in range(rounds):
        for name, extractor in paths.items():
            start = time.perf_counter()
            extractor.embed(clips, layers=[layer])
            best[name] = min(best[name], time.perf_counter() - start)
    print(
        f"MusicGen {architecture} (random weights), layer {layer}, {n_clips} clips of "
        f"{seconds:g} s, {torch.get_num_threads()} threads, best of {rounds}:"
    )
    baseline = best["before (float32)"]
    for name, seconds_taken in best.items():
        print(f"  {name:17s} {seconds_taken:8.3f} s  {seconds_taken / baseline:5.2f}x before")


if __name__ == "__main__":
    main()
