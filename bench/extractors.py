"""Benchmark: CPU throughput and peak memory of the neural extractors against chroma.

Usage::

    .venv/bin/python bench/extractors.py [--clips N] [--seconds S] [--threads T]
    python bench/extractors.py --size real --device cuda --batch 8 --seconds 30 --clips 32

Each extractor runs in its own child process (so that the peak resident
memory, VmHWM, is that extractor's alone): it loads, embeds one
warm-up clip (numba/TensorFlow/oneDNN first-call costs), then embeds
``--clips`` clips of ``--seconds`` seconds (seeded noise plus tones, at the
extractor's own sample rate) one batch of 1 at a time; clips/s is over
those clips. The chroma extractor, measured in the same run, is the
baseline of the ``x chroma`` column (extractor clips/s / chroma clips/s).

Models (``--size tiny``, the default): MusicGen, EnCodec and Jukebox are
the built-in *tiny random-weight* architectures (not musicgen-small or
Jukebox-5B; ``bench/jukebox_depth.py`` measures Jukebox at its real depth),
CLMR and Choi use random weights (the real architectures, so their cost is
that of trained ones), MusiCNN is the real ``MSD_musicnn`` of the musicnn
package.

``--size real`` measures the neural extractors at their real sizes with
random weights: MusicGen sized like ``facebook/musicgen-small`` (decoder
24 x 1024, 16 heads, FFN 4096, 4 codebooks of 2048 codes: transformers'
``MusicgenDecoderConfig`` defaults, which its docs give as musicgen-small's;
a t5-base-sized text encoder; the 32 kHz EnCodec below), EnCodec sized like
``facebook/encodec_32khz`` (64 filters, ratios 8-5-4-4, 128-d latents, 2
LSTM layers, 4 codebooks); these configs are written here from those
figures, not read from the hub (nothing can be downloaded here). CLMR and
Choi as above; MusiCNN (TensorFlow, CPU) only with ``--device cpu``.

``--device cuda`` runs the torch extractors on the GPU with their
``dtype: auto`` precision (MusicGen's decoder in float16) and adds each
child's peak GPU memory (``torch.cuda.max_memory_allocated``); chroma
(librosa) stays on the CPU as the baseline. ``--batch`` clips go to each
``embed`` call, as the workflow's ``batch_size`` does.
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


REAL = {
    "chroma": {"extractor": "chroma", "layers": ["stats"]},
    "musicgen (musicgen-small size, random)": {
        "extractor": "musicgen",
        "params": {"random_weights": True, "weights": "<musicgen-small-sized>"},
        "layers": ["6", "12", "18", "24"],
    },
    "encodec (encodec_32khz size, random)": {
        "extractor": "encodec",
        "params": {"random_weights": True, "weights": "<encodec_32khz-sized>"},
        "layers": ["encoder", "quantized"],
    },
    "musicnn (MSD_musicnn, real)": {"extractor": "musicnn", "layers": ["mean_max"]},
    "clmr (random)": {"extractor": "clmr", "params": {"random_weights": True}, "layers": None},
    "choi (random)": {"extractor": "choi", "params": {"random_weights": True}, "layers": None},
}


def encodec_32khz_sized_config():
    from mirprobe.extractors.musicgen import tiny_encodec_config

    # the product's 32 kHz layout at facebook/encodec_32khz's sizes
    return tiny_encodec_config(hidden_size=128, num_filters=64, num_lstm_layers=2)


def musicgen_small_sized_config():
    from transformers import MusicgenConfig, MusicgenDecoderConfig, T5Config

    text = T5Config(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)  # t5-base
    decoder = MusicgenDecoderConfig(
        vocab_size=2048,
        num_hidden_layers=24,
        hidden_size=1024,
        ffn_dim=4096,
        num_attention_heads=16,
        num_codebooks=4,
        max_position_embeddings=2048,
    )
    return MusicgenConfig(
        text_encoder=text, audio_encoder=encodec_32khz_sized_config(), decoder=decoder
    )


def materialise(spec, workdir):
    """Write the real-size configs a spec names to ``workdir`` (random weights only)."""
    configs = {
        "<musicgen-small-sized>": musicgen_small_sized_config,
        "<encodec_32khz-sized>": encodec_32khz_sized_config,
    }
    weights = spec.get("params", {}).get("weights")
    if weights in configs:
        path = os.path.join(workdir, weights.strip("<>"))
        configs[weights]().save_pretrained(path)
        spec = {**spec, "params": {**spec["params"], "weights": path}}
    return spec


def child(spec, *, n_clips, seconds, threads, device, batch):
    """Measure one extractor in this process; print one JSON line."""
    import tempfile
    import time

    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from mirprobe.extractors import build_extractor

    workdir = tempfile.mkdtemp()
    spec = materialise(spec, workdir)
    if spec["extractor"] in ("chroma", "musicnn"):
        device = "cpu"  # librosa / TensorFlow: CPU only
    extractor = build_extractor(spec)
    layers = spec["layers"] or list(extractor.default_layers_for(extractor.params))
    sr = extractor.sample_rate
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sr)) / sr
    clips = [
        (0.2 * np.sin(2 * np.pi * (110 * (k + 2)) * t) + 0.05 * rng.standard_normal(t.size)).astype(
            np.float32
        )
        for k in range(n_clips + batch)
    ]
    started = time.perf_counter()
    extractor.load(device=device)
    load_s = time.perf_counter() - started
    extractor.embed(clips[:batch], layers=layers)  # warm-up
    started = time.perf_counter()
    dims = None
    for start in range(batch, len(clips), batch):
        out = extractor.embed(clips[start : start + batch], layers=layers)
        dims = {layer: int(v.shape[1]) for layer, v in out.items()}
    embed_s = time.perf_counter() - started
    result = {
        "load_s": load_s,
        "embed_s": embed_s,
        "clips_per_s": n_clips / embed_s,
        "peak_mb": peak_rss_mib(),
        "dims": dims,
        "device": device,
    }
    if device.startswith("cuda"):
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--size", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (torch extractors)")
    parser.add_argument("--batch", type=int, default=1, help="clips per embed call")
    parser.add_argument("--only", help="comma-separated extractor names (chroma always runs)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clips % args.batch:
        parser.error("--clips must be a multiple of --batch")
    if args.child:
        child(
            json.loads(args.child),
            n_clips=args.clips,
            seconds=args.seconds,
            threads=args.threads,
            device=args.device,
            batch=args.batch,
        )
        return

    import torch

    specs = REAL if args.size == "real" else EXTRACTORS
    device_name = "cpu"
    if args.device.startswith("cuda"):
        device_name = f"{args.device} ({torch.cuda.get_device_name()})"
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    env["OMP_NUM_THREADS"] = str(args.threads)
    header = [
        f"# extractor benchmark, {datetime.datetime.now().isoformat(timespec='seconds')}",
        f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{args.threads} threads, load average at start {os.getloadavg()[0]:.2f}",
        f"# {args.clips} clips of {args.seconds:g} s each (batch {args.batch}) after one "
        f"warm-up batch; {args.size} sizes; device {device_name}",
    ]
    print("\n".join(header), flush=True)
    results = {}
    for label, spec in specs.items():
        if args.only and spec["extractor"] != "chroma":
            if spec["extractor"] not in args.only.split(","):
                continue
        if spec["extractor"] == "musicnn" and args.device != "cpu":
            continue  # TensorFlow on the CPU: not a GPU figure
        options = {
            "--clips": args.clips,
            "--seconds": args.seconds,
            "--threads": args.threads,
            "--device": args.device,
            "--batch": args.batch,
        }
        results[label] = run_child(__file__, json.dumps(spec), options, env)
        print(f"  {label}: {results[label]}", file=sys.stderr, flush=True)

    base = results["chroma"].get("clips_per_s")
    rows = [
        "| extractor | device | dims | load (s) | clips/s | x chroma | s per 10 s of audio "
        "| peak RSS (MiB) | peak GPU (MiB) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in results.items():
        if "error" in r:
            rows.append(f"| {label} | | failed: {r['error']} | | | | | | |")
            continue
        dims = ", ".join(f"{k}:{v}" for k, v in r["dims"].items())
        gpu = f"{r['gpu_peak_mb']:.0f}" if "gpu_peak_mb" in r else "-"
        rows.append(
            f"| {label} | {r['device']} | {dims} | {r['load_s']:.2f} | {r['clips_per_s']:.2f} | "
            f"{r['clips_per_s'] / base:.2f} | {10 / args.seconds / r['clips_per_s']:.4f} | "
            f"{r['peak_mb']:.0f} | {gpu} |"
        )
    footer = f"# load average at end {os.getloadavg()[0]:.2f}"
    print("\n".join(rows))
    print(footer)


if __name__ == "__main__":
    main()
