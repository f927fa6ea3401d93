"""Cost of computing MFCC in float64 (CPU-independent features) against librosa's float32
on the same clips, one run, interleaved rounds, one BLAS thread (as extract jobs run):

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/mfcc_float64.py [clips] [rounds]

(4 s clips of tones and noise at 22,050 Hz, like the default run's)
"""

import sys
import time

import librosa
import numpy as np

from mirprobe.extractors.handcrafted import HOP_LENGTH, MFCC, moment_statistics, peak_normalise


def float32_stats(y):
    # the recipe before: librosa on the float32 clip
    return moment_statistics(librosa.feature.mfcc(y=y, sr=22050, hop_length=HOP_LENGTH))


def main(n_clips=48, rounds=3):
    rng = np.random.default_rng(0)
    t = np.arange(4 * 22050) / 22050
    clips = [
        peak_normalise(
            np.sin(2 * np.pi * 220 * 2 ** (i / 12) * t) + 0.1 * rng.standard_normal(t.size)
        ).astype(np.float32)
        for i in range(n_clips)
    ]
    extractor = MFCC()
    best = {"float32": np.inf, "float64": np.inf}
    for _ in range(rounds):
        for name, fn in (
            ("float32", float32_stats),
            ("float64", lambda y: moment_statistics(extractor.frames(y))),
        ):
            start = time.perf_counter()
            for y in clips:
                fn(y)
            best[name] = min(best[name], time.perf_counter() - start)
    for name, seconds in best.items():
        print(f"{name}: {seconds:.2f} s for {n_clips} clips ({n_clips / seconds:.1f} clips/s)")
    print(f"float64 / float32 time: {best['float64'] / best['float32']:.2f}x (best of {rounds})")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
