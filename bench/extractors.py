"""Benchmark: CPU throughput and peak memory of the neural extractors against chroma.

Usage::

    .venv/bin/python bench/extractors.py [--clips N] [--seconds S] [--threads T]

Each extractor runs in its own child process (so that the peak resident
memory, VmHWM, is that extractor's alone): it loads, embeds one
warm-up clip (numba/TensorFlow/oneDNN first-call costs), then embeds
``--clips`` clips of ``--seconds`` seconds (seeded noise plus tones, at the
extractor's own sample rate) one batch of 1 at a time; clips/s is over
those clips. The chroma extractor, measured in the same run, is the
baseline of the ``x chroma`` column (extractor clips/s / chroma clips/s).

Models: MusicGen, EnCodec and Jukebox are the built-in *tiny random-weight*
architectures (not musicgen-small or Jukebox-5B; ``bench/jukebox_depth.py``
measures Jukebox at its real depth), CLMR and Choi use random weights (the
real architectures, so their cost is that of trained ones), MusiCNN is the
real ``MSD_musicnn`` of the musicnn package.
"""

import argparse
import datetime
import json
import os
import platform
import sys

from children import peak_rss_mib, run_child

EXTRACTORS = {
    "chroma": {"extractor": "chroma", "layers": ["stats"]},
    "musicgen (tiny, random)": {
        "extractor": "musicgen",
        "params": {"architecture": "tiny", "random_weights": True},
        "layers": ["0", "1", "2"],
    },
    "encodec (tiny, random)": {
        "extractor": "encodec",
        "params": {"architecture": "tiny", "random_weights": True},
        "layers": ["encoder"],
    },
    "jukebox (tiny, random)": {
        "extractor": "jukebox",
        "params": {"architecture": "tiny", "random_weights": True},
        "layers": ["2"],
    },
    "musicnn (MSD_musicnn, real)": {"extractor": "musicnn", "layers": ["mean_max"]},
    "clmr (random)": {"extractor": "clmr", "params": {"random_weights": True}, "layers": None},
    "choi (random)": {"extractor": "choi", "params": {"random_weights": True}, "layers": None},
}


def child(spec, *, n_clips, seconds, threads):
    """Measure one extractor in this process; print one JSON line."""
    import time

    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from mirprobe.extractors import build_extractor

    extractor = build_extractor(spec)
    layers = spec["layers"] or list(extractor.default_layers_for(extractor.params))
    sr = extractor.sample_rate
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    clips = [
        (0.2 * np.sin(2 * np.pi * (110 * (k + 2)) * t) + 0.05 * rng.standard_normal(t.size)).astype(
            np.float32
        )
        for k in range(n_clips + 1)
    ]
    started = time.perf_counter()
    extractor.load(device="cpu")
    load_s = time.perf_counter() - started
    extractor.embed(clips[:1], layers=layers)  # warm-up
    started = time.perf_counter()
    dims = None
    for y in clips[1:]:
        out = extractor.embed([y], layers=layers)
        dims = {layer: int(v.shape[1]) for layer, v in out.items()}
    embed_s = time.perf_counter() - started
    peak = peak_rss_mib()
    print(
        json.dumps(
            {
                "load_s": load_s,
                "embed_s": embed_s,
                "clips_per_s": n_clips / embed_s,
                "peak_mb": peak,
                "dims": dims,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(
            json.loads(args.child), n_clips=args.clips, seconds=args.seconds, threads=args.threads
        )
        return

    import torch

    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["OMP_NUM_THREADS"] = str(args.threads)
    header = [
        f"# extractor benchmark, {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{args.threads} threads, load average at start {os.getloadavg()[0]:.2f}",
        f"# {args.clips} clips of {args.seconds:g} s each (batch 1) after one warm-up clip",
    ]
    print("\n".join(header), flush=True)
    results = {}
    for label, spec in EXTRACTORS.items():
        options = {"--clips": args.clips, "--seconds": args.seconds, "--threads": args.threads}
        results[label] = run_child(__file__, json.dumps(spec), options, env)
        print(f"  {label}: {results[label]}", file=sys.stderr, flush=True)

    base = results["chroma"].get("clips_per_s")
    rows = [
        "| extractor | dims | load (s) | clips/s | x chroma | s per 10 s clip | peak RSS (MiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        if "error" in r:
            rows.append(f"| {label} | failed: {r['error']} | | | | | |")
            continue
        dims = ", ".join(f"{k}:{v}" for k, v in r["dims"].items())
        rows.append(
            f"| {label} | {dims} | {r['load_s']:.2f} | {r['clips_per_s']:.2f} | "
            f"{r['clips_per_s'] / base:.2f} | {args.seconds / 10 / r['clips_per_s']:.3f} | "
            f"{r['peak_mb']:.0f} |"
        )
    footer = f"# load average at end {os.getloadavg()[0]:.2f}"
    print("\n".join(rows))
    print(footer)


if __name__ == "__main__":
    main()
