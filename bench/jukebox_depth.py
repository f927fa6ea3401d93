"""Benchmark: the saving from building Jukebox's top prior to layer 36 instead of all 72.

Usage::

    .venv/bin/python bench/jukebox_depth.py [--width W] [--tokens N] [--threads T]
    python bench/jukebox_depth.py --real --device cuda --clips 4   # on a GPU machine

Two parts, both through mirprobe's own ``Jukebox`` extractor (jukebox-infer
model classes):

1. **Real size, counted**: the 5B prior's parameters as a function of the
   built depth. Its 72 blocks are identical, so building it (random weights)
   at depth 1 and depth 2 gives the per-block and the fixed parameter counts
   exactly; the weight memory of 36 and 72 blocks in float16 and float32
   follows. (72 blocks in float32, ~20 GB, do not fit this 24 GiB machine
   beside anything else; nothing is extrapolated but the multiplication by
   the depth.)
2. **Measured**: the real depth (36 and 72 blocks) and the real attention
   layout (8 heads, 64-token blocks) at a reduced width and context
   (``--width``, ``--tokens``; the 5B prior has 4800 and 8192), random
   weights, on this machine's CPU. Each depth runs in its own child process
   so that the peak resident memory is that build's alone: build time, one
   warm-up clip, then the wall time of embedding one clip, and peak RSS.
   The 72-block build asking for layer 72 is the baseline (what jukemirlib
   builds: all 72 blocks, run to the deepest layer asked for); the ratio
   printed is baseline / depth-36 build asking for layer 36.

``--real`` measures the 5B architecture itself (width 4800, 8,192 tokens,
random weights) instead of the reduced one; with ``--device cuda`` the
blocks run in float16 (``dtype: auto``) and each child also reports its
peak GPU memory (``torch.cuda.max_memory_allocated``). ``--clips`` clips
are timed after the warm-up one.

The reduced model is the product's ``tiny`` architecture with its prior
hparams overridden in the child process (``TINY_PRIOR`` and ``DEPTHS``);
everything else (tokenisation, conditioning, the block loop, pooling) is the
code the workflow runs.
"""

import argparse
import datetime
import json
import os
import platform

from children import peak_rss_mib, run_child


def child(depth, layer, *, width, tokens, threads, real, device, n_clips):
    """Build to ``depth`` blocks, embed ``n_clips`` clips at ``layer``; print one JSON line."""
    import time

    import numpy as np
    import torch

    torch.set_num_threads(threads)
    import mirprobe.extractors.jukebox as jukebox

    if real:
        architecture, tokens = "5b", 8192
    else:
        architecture = "tiny"
        jukebox.DEPTHS["tiny"] = depth
        # the 5B attention layout (heads, 64-token blocks) at a smaller width/context
        jukebox.TINY_PRIOR.update(
            n_ctx=tokens, prior_width=width, heads=8, blocks=tokens // 64, init_scale=0.1
        )
    extractor = jukebox.Jukebox(params={"architecture": architecture, "random_weights": True})
    started = time.perf_counter()
    extractor.load(device=device, layers=[str(depth)])
    build_s = time.perf_counter() - started
    sr = extractor.sample_rate
    rng = np.random.default_rng(0)
    samples = tokens * 128
    clips = [(0.3 * rng.standard_normal(samples)).astype(np.float32) for _ in range(n_clips + 1)]
    extractor.embed(clips[:1], layers=[str(layer)])  # warm-up (oneDNN / cuBLAS first calls)
    started = time.perf_counter()
    for y in clips[1:]:
        out = extractor.embed([y], layers=[str(layer)])
    embed_s = (time.perf_counter() - started) / n_clips
    n_params = sum(p.numel() for p in extractor.prior.parameters())
    result = {
        "depth": depth,
        "layer": layer,
        "built_blocks": len(extractor.prior.prior.transformer._attn_mods),
        "prior_params": n_params,
        "build_s": build_s,
        "embed_s": embed_s,
        "peak_mb": peak_rss_mib(),
        "dim": int(out[str(layer)].shape[1]),
        "sample_rate": sr,
    }
    if device.startswith("cuda"):
        result["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(result))


def real_size_counts():
    """Parameters of the 5B top prior: (fixed part, per block), from depth-1 and -2 builds."""
    import torch

    from mirprobe.extractors.jukebox import Jukebox

    torch.set_num_threads(1)
    counts = {}
    for depth in (1, 2):
        extractor = Jukebox(params={"architecture": "5b", "random_weights": True})
        extractor.load(device="cpu", layers=[str(depth)])
        counts[depth] = sum(p.numel() for p in extractor.prior.parameters())
        del extractor
    per_block = counts[2] - counts[1]
    return counts[1] - per_block, per_block


def measure(args, depth, layer, env):
    options = {
        "--width": args.width,
        "--tokens": args.tokens,
        "--threads": args.threads,
        "--device": args.device,
        "--clips": args.clips,
    }
    if args.real:
        options["--real"] = True
    result = run_child(__file__, f"{depth}:{layer}", options, env)
    if "error" in result:
        raise SystemExit(f"child depth {depth}, layer {layer} failed: {result['error']}")
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=1024, help="prior width (5B: 4800)")
    parser.add_argument("--tokens", type=int, default=1024, help="context (5B: 8192)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-real-size", action="store_true")
    parser.add_argument("--real", action="store_true", help="measure the 5B size itself")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--clips", type=int, default=1, help="clips timed after the warm-up")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tokens % 64:
        parser.error("--tokens must be a multiple of 64 (the 5B prior's attention block)")
    if args.child:
        depth, layer = (int(v) for v in args.child.split(":"))
        child(
            depth,
            layer,
            width=args.width,
            tokens=args.tokens,
            threads=args.threads,
            real=args.real,
            device=args.device,
            n_clips=args.clips,
        )
        return

    import torch

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    print(f"# jukebox depth benchmark, {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{args.threads} threads, load average at start {os.getloadavg()[0]:.2f}"
    )
    if not args.skip_real_size:
        fixed, per_block = real_size_counts()
        print("\n## real size (5B top prior, counted from depth-1 and depth-2 builds)")
        print(f"fixed parameters (embeddings, conditioners)  {fixed:,}")
        print(f"parameters per block                         {per_block:,}")
        for depth in (36, 72):
            total = fixed + depth * per_block
            print(
                f"depth {depth}: {total / 1e9:.3f} G parameters = "
                f"{2 * total / 2**30:.1f} GiB float16, {4 * total / 2**30:.1f} GiB float32"
            )
        ratio = (fixed + 72 * per_block) / (fixed + 36 * per_block)
        print(f"weights of 72 / weights of 36                {ratio:.2f}x")

    if args.real:
        shape = "the 5B prior: 8192 tokens, width 4800"
    else:
        shape = f"{args.tokens} tokens, width {args.width}, 8 heads"
    device = args.device
    if device.startswith("cuda"):
        device = f"{device} ({torch.cuda.get_device_name()}, float16 blocks)"
    print(f"\n## measured: {shape}, random weights, {device}")
    baseline = measure(args, 72, 72, env)
    same_layer = measure(args, 72, 36, env)
    built36 = measure(args, 36, 36, env)
    print(
        "| build | layer asked | blocks built | prior params | build (s) | embed 1 clip (s) "
        "| peak RSS (MiB) | peak GPU (MiB) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, r in (
        ("72 blocks (jukemirlib), baseline", baseline),
        ("72 blocks, stop at 36", same_layer),
        ("36 blocks (mirprobe)", built36),
    ):
        gpu = f"{r['gpu_peak_mb']:.0f}" if "gpu_peak_mb" in r else "-"
        print(
            f"| {label} | {r['layer']} | {r['built_blocks']} | {r['prior_params']:,} | "
            f"{r['build_s']:.2f} | {r['embed_s']:.3f} | {r['peak_mb']:.0f} | {gpu} |"
        )
    print(
        f"\nembed time, baseline / 36 blocks            {baseline['embed_s'] / built36['embed_s']:.2f}x"
    )
    print(
        f"build time, baseline / 36 blocks            {baseline['build_s'] / built36['build_s']:.2f}x"
    )
    print(
        f"peak RSS, baseline / 36 blocks              {baseline['peak_mb'] / built36['peak_mb']:.2f}x"
    )
    print(
        "peak RSS, 72 blocks stopping at 36 / 36 blocks "
        f"{same_layer['peak_mb'] / built36['peak_mb']:.2f}x"
    )
    if "gpu_peak_mb" in built36:
        print(
            "peak GPU, baseline / 36 blocks              "
            f"{baseline['gpu_peak_mb'] / built36['gpu_peak_mb']:.2f}x"
        )
    print(f"# load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
