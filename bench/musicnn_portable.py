"""Cost of the CPU-independent MusiCNN path (float64 mel, oneDNN held to SSE4.1) against the
path before (float32 mel, oneDNN's native ISA), measured in the same run.

oneDNN reads ONEDNN_MAX_CPU_ISA once per process, so each path runs in its own child
processes, interleaved (before, now, before, now, ...); each child embeds the same seeded
four-second clips (the default run's length) ``repeats`` times and reports its best time, for
the mel spectrograms alone and for the whole ``embed``.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/musicnn_portable.py [n_clips] [rounds]
"""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, time
import numpy as np
import mirprobe.extractors.musicnn as module
from mirprobe.extractors.musicnn import MusiCNN

mode, n_clips, repeats = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])


class Before(MusiCNN):
    def spectrogram(self, y):  # the path before (commit bc0665e): librosa's float32 mel
        import librosa

        c = self.config
        mel = librosa.feature.melspectrogram(
            y=y, sr=c.SR, hop_length=c.FFT_HOP, n_fft=c.FFT_SIZE, n_mels=c.N_MELS
        ).T.astype(np.float16)
        with np.errstate(over="ignore"):
            rep = np.log10(10000 * mel + 1)
        overflow = ~np.isfinite(rep)
        rep = rep.astype(np.float32)
        rep[overflow] = np.log10(10000 * mel[overflow].astype(np.float32) + 1)
        return rep


if mode == "before":
    module.TF_KERNEL_ENVIRONMENT = {}  # oneDNN picks its ISA, oneDNN rewrites on (TF's default)
extractor = (Before if mode == "before" else MusiCNN)().load()
rng = np.random.default_rng(0)
t = np.arange(4 * 16000) / 16000
clips = []
for i in range(n_clips):
    f0 = 110 * 2 ** (i % 24 / 12)
    y = sum(np.sin(2 * np.pi * f0 * r * t) for r in (1, 1.26, 1.5, 2))
    y = y + 0.1 * rng.standard_normal(t.size)
    clips.append((0.9 * y / np.abs(y).max()).astype(np.float32))
extractor.embed(clips[:2], layers=["mean_max"])  # warm-up
best = {"mel": np.inf, "embed": np.inf}
for _ in range(repeats):
    start = time.perf_counter()
    for y in clips:
        extractor.spectrogram(y)
    best["mel"] = min(best["mel"], time.perf_counter() - start)
    start = time.perf_counter()
    extractor.embed(clips, layers=["mean_max"])
    best["embed"] = min(best["embed"], time.perf_counter() - start)
json.dump(best, sys.stdout)
"""


def child(mode, n_clips, repeats):
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(n_clips), str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout)


def main(n_clips=48, rounds=2, repeats=3):
    best = {mode: {"mel": float("inf"), "embed": float("inf")} for mode in ("before", "now")}
    for _ in range(rounds):
        for mode in best:
            for part, seconds in child(mode, n_clips, repeats).items():
                best[mode][part] = min(best[mode][part], seconds)
    for mode, parts in best.items():
        print(
            f"{mode}: mel {parts['mel']:.2f} s, embed {parts['embed']:.2f} s for {n_clips} clips "
            f"({n_clips / parts['embed']:.1f} clips/s)"
        )
    for part in ("mel", "embed"):
        ratio = best["now"][part] / best["before"][part]
        print(f"now / before, {part}: {ratio:.2f}x (best of {rounds} x {repeats})")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:4]))
