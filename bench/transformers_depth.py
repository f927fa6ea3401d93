"""Benchmark: ``extractor: transformers`` asked for its lowest layer vs all of its layers.

Usage::

    .venv/bin/python bench/transformers_depth.py [--size 95m|330m] [--clips 4] [--seconds 5]
    python bench/transformers_depth.py --device cuda --size 330m --clips 16   # on a GPU

MERT-v1's architecture (HuBERT; sizes from the fixtures' SOURCES.md: 95M = 768 hidden,
12 layers, 12 heads, 3072 ffn; 330M = 1024 / 24 / 16 / 4096, stable LayerNorm), random
weights, saved with save_pretrained to a temporary folder and read back by mirprobe's own
``TransformersEncoder`` (the code the workflow runs). In one run, each setting embeds the
same ``--clips`` clips of ``--seconds`` after one warm-up call: layers ``[1]`` (blocks 2..N
never run) and layers ``0..N`` (every block); the ratio printed is all-layers time / layer-1
time, measured in the same process on the same inputs (``--repeats`` rounds, median).
"""

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SIZES = {
    "95m": dict(
        hidden_size=768,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=3072,
        do_stable_layer_norm=False,
        feat_extract_norm="group",
    ),
    "330m": dict(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    ),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="95m")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    from mirprobe.extractors.hf_transformers import TransformersEncoder

    folder = tempfile.mkdtemp(prefix="mert-random-")
    torch.manual_seed(0)
    HubertModel(HubertConfig(**SIZES[args.size])).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=24000, do_normalize=True).save_pretrained(folder)
    extractor = TransformersEncoder(params={"model": folder}).load(device=args.device)
    n_layers = SIZES[args.size]["num_hidden_layers"]
    rng = np.random.default_rng(0)
    clips = [
        0.1 * rng.standard_normal(int(24000 * args.seconds)).astype(np.float32)
        for _ in range(args.clips)
    ]
    settings = {
        "lowest (layer 1)": ["1"],
        f"all ({n_layers + 1} layers)": [str(i) for i in range(n_layers + 1)],
    }

    def timed(layers):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        extractor.embed(clips, layers=layers)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for layers in settings.values():
        timed(layers)  # warm-up
    walls = {name: [] for name in settings}
    for _ in range(args.repeats):  # interleaved, so that load changes hit both alike
        for name, layers in settings.items():
            walls[name].append(timed(layers))
    print(f"# transformers depth benchmark, {time.strftime('%Y-%m-%dT%H:%M:%S')}")
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}, "
        f"device {args.device}, dtype {next(extractor.model.parameters()).dtype}"
    )
    print(
        f"# MERT-v1-{args.size.upper()} architecture, random weights; {args.clips} clips x "
        f"{args.seconds:g} s at 24 kHz; median of {args.repeats}"
    )
    medians = {name: statistics.median(w) for name, w in walls.items()}
    for name, wall in medians.items():
        print(f"{name:>20}: {wall:.3f} s  ({', '.join(f'{w:.3f}' for w in walls[name])})")
    lowest, full = medians.values()
    print(f"ratio all / lowest: {full / lowest:.2f}x")


if __name__ == "__main__":
    main()
