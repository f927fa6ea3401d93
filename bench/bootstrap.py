"""Bootstrap of one key cell of GiantSteps size (604 songs, 1 to 5 clips each):
the per-unit path against rescoring every resample, same draws, one run.

    .venv/bin/python bench/bootstrap.py [resamples]
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mirprobe.bootstrap import bootstrap_distribution
from mirprobe.predictions import read_predictions, write_predictions

KEYS = ["C major", "G major", "A minor", "E minor", "F major", "D minor"]


def key_cell(directory, rng, n_songs=604):
    clips = rng.integers(1, 6, size=n_songs)
    song = np.repeat(np.arange(n_songs), clips)
    target = rng.integers(0, len(KEYS), size=n_songs)[song]
    ids = [f"clip{i:05d}" for i in range(len(song))]
    path = Path(directory) / "key.npz"
    write_predictions(
        path,
        task_type="key",
        labels=KEYS,
        clip_ids=ids,
        song_ids=[f"song{s:04d}" for s in song],
        target=target,
        scores=rng.normal(size=(len(song), len(KEYS))),
        ensemble="mean_prob",
        splits={"train": [], "valid": [], "test": ids},
    )
    return read_predictions(path)


def main():
    resamples = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    metrics = ["weighted_score", "accuracy"]
    with tempfile.TemporaryDirectory() as directory:
        p = key_cell(directory, np.random.default_rng(0))
        times = {}
        for name, rescore_all in (("slow", True), ("fast", False)):
            start = time.perf_counter()
            values = bootstrap_distribution(
                p, metrics, resamples=resamples, seed=0, rescore_all=rescore_all
            )
            times[name] = (time.perf_counter() - start, values)
    same = all(np.array_equal(times["slow"][1][m], times["fast"][1][m]) for m in metrics)
    print(
        f"key, 604 songs, {resamples} resamples: rescoring {times['slow'][0]:.2f} s, "
        f"per-unit {times['fast'][0]:.3f} s, ratio {times['slow'][0] / times['fast'][0]:.0f}x, "
        f"equal: {same}"
    )


if __name__ == "__main__":
    main()
