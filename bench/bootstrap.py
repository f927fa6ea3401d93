"""The bootstrap's fast paths against rescoring every resample, same draws, one run:
a key cell of GiantSteps size (604 songs, 1 to 5 clips each; per-unit path), an
Emomusic-size regression cell (125 clips, arousal and valence; vectorised R²) and
a MagnaTagATune-size multilabel cell (4,332 clips, 50 tags; vectorised ROC-AUC/AP).

    .venv/bin/python bench/bootstrap.py [resamples] [multilabel resamples]

(rescoring a multilabel resample takes seconds: that cell gets fewer, 20 by default)
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


def plain_cell(directory, rng, *, task_type, n, labels):
    ids = [f"clip{i:05d}" for i in range(n)]
    if task_type == "regression":
        target = rng.normal(size=(n, len(labels)))
        scores = 0.7 * target + rng.normal(size=target.shape)
    else:
        target = (rng.random((n, len(labels))) < rng.uniform(0.01, 0.2, len(labels))).astype(int)
        scores = (target + rng.normal(scale=1.5, size=target.shape)).astype(np.float32)
    path = Path(directory) / f"{task_type}.npz"
    write_predictions(
        path,
        task_type=task_type,
        labels=labels,
        clip_ids=ids,
        song_ids=[None] * n,
        target=target,
        scores=scores,
        ensemble="mean_prob",
        splits={"train": [], "valid": [], "test": ids},
    )
    return read_predictions(path)


def compare(name, p, metrics, resamples, *, exact):
    times = {}
    for path, rescore_all in (("slow", True), ("fast", False)):
        start = time.perf_counter()
        values = bootstrap_distribution(
            p, metrics, resamples=resamples, seed=0, rescore_all=rescore_all
        )
        times[path] = (time.perf_counter() - start, values)
    slow, fast = times["slow"][1], times["fast"][1]
    if exact:
        agree = f"equal: {all(np.array_equal(slow[m], fast[m]) for m in metrics)}"
    else:
        worst = max(float(np.nanmax(np.abs(slow[m] - fast[m]))) for m in metrics)
        agree = f"max |difference| {worst:.1e}"
    print(
        f"{name}, {resamples} resamples: rescoring {times['slow'][0]:.2f} s, "
        f"fast {times['fast'][0]:.3f} s, ratio {times['slow'][0] / times['fast'][0]:.0f}x, "
        f"{agree}"
    )


def main():
    resamples = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    multilabel_resamples = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as directory:
        compare(
            "key, 604 songs (per-unit)",
            key_cell(directory, rng),
            ["weighted_score", "accuracy"],
            resamples,
            exact=True,
        )
        compare(
            "regression, 125 clips x 2 (vectorised R²)",
            plain_cell(
                directory, rng, task_type="regression", n=125, labels=["arousal", "valence"]
            ),
            ["r2_mean", "r2_arousal", "r2_valence"],
            resamples,
            exact=False,
        )
        compare(
            "multilabel, 4332 clips x 50 tags (vectorised ROC-AUC/AP)",
            plain_cell(
                directory, rng, task_type="multilabel", n=4332, labels=[f"t{i}" for i in range(50)]
            ),
            ["roc_auc_macro", "ap_macro"],
            multilabel_resamples,
            exact=False,
        )


if __name__ == "__main__":
    main()
