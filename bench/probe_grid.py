"""Benchmark: the paper's 216-config probe grid, serial versus batched, against the FLOP floor.

Usage::

    .venv/bin/python bench/probe_grid.py [--quick] [--max-steps N] [--serial-subset N]
                                         [--device cpu|cuda]

With ``--device cuda`` both trainers and the reference matmul run on the
GPU (float32, TF32 as torch's default leaves it: off).

Two synthetic, seeded problems with the sizes of the paper's smallest and
largest probing sets:

``gtzan-like``  multiclass, 10 classes, 4,800-d, 443 / 197 / 290 train / valid / test
``mtt-like``    multilabel, 50 tags, 512-d, 15,000 / 1,500 / 1,500

On each, the batched trainer trains the full ``PAPER_GRID`` (216 configs).
The serial reference is too slow on a small CPU to train all 216 configs in
one sitting, so (and the output says so) it trains a seeded random subset,
stratified over (linear / MLP) x batch size, and its time for the whole grid
is extrapolated per half (linear, MLP) from the mean time per config of that
half. Both trainers use the same ``max_steps`` cap (the paper's patience and
eval_every are kept), so every config does a bounded, equal amount of work.

Before timing, each problem gets a short warm-up fit per trainer (first
calls' one-off costs, several seconds on CUDA). Printed per problem: wall times and speed-ups (overall, linear, MLP; a
batched half's time is the sum of its configs' ``wall_s``, i.e. its groups'
training and final metric pass, and the time outside the groups, scaling and
input checks shared by both halves, is printed apart and, for a conservative
linear figure, also charged wholly to the linear half), whether
serial and batched select the same config among the subset (and the test
metric difference of their choices), the largest difference of the
validation curves over the subset, the grid's floating-point work (steps
taken x 6 x batch x weights, plus 2 x n_valid x weights per evaluation), the
measured FLOP/s of a large fp32 ``torch.mm`` in the same run, the floor
(work / FLOP/s) and batched time / floor.
"""

import argparse
import datetime
import os
import platform
import random
import time

import numpy as np
import torch

from mirprobe.metrics import compute_metrics
from mirprobe.probes import PAPER_GRID, expand_grid, fit_grid


def make_problem(name, *, scale, seed):
    rng = np.random.default_rng(seed)
    if name == "gtzan-like":
        n_train, n_valid, n_test, dim, n_out = 443, 197, 290, 4800, 10
        n = n_train + n_valid + n_test
        dim = max(16, dim // scale)
        centroids = rng.normal(size=(n_out, dim)) * 0.15
        y = rng.integers(0, n_out, size=n)
        X = centroids[y] + rng.normal(size=(n, dim)) + 0.5
        labels = [f"genre{i}" for i in range(n_out)]
        task_type = "multiclass"
    else:
        n_train, n_valid, n_test, dim, n_out = 15000, 1500, 1500, 512, 50
        n_train, n_valid, n_test = (max(200, m // scale) for m in (n_train, n_valid, n_test))
        n = n_train + n_valid + n_test
        latent = rng.normal(size=(n, 32))
        X = latent @ rng.normal(size=(32, dim)) / 4 + rng.normal(size=(n, dim))
        logits = latent @ rng.normal(size=(32, n_out)) / 3 + rng.normal(size=(n, n_out))
        rates = np.linspace(0.03, 0.3, n_out)
        thresholds = [np.quantile(logits[:, t], 1 - rate) for t, rate in enumerate(rates)]
        y = (logits > np.array(thresholds)).astype(int)
        labels = [f"tag{i}" for i in range(n_out)]
        task_type = "multilabel"
    X = X.astype(np.float32)
    parts = np.split(np.arange(n), [n_train, n_train + n_valid])
    return {
        "task_type": task_type,
        "labels": labels,
        "splits": [(X[p], y[p]) for p in parts],
        "sizes": (n_train, n_valid, n_test, X.shape[1], n_out),
    }


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def matmul_flops(size=4096, repeats=5, device="cpu"):
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    torch.mm(a, b)
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / float(np.median(times))


def grid_flops(records, *, n_features, n_outputs, n_valid):
    total = 0.0
    for record in records:
        widths = [n_features, *record["config"]["hidden_sizes"], n_outputs]
        weights = sum(a * b for a, b in zip(widths[:-1], widths[1:], strict=True))
        total += record["n_steps"] * 6 * record["config"]["batch_size"] * weights
        total += record["curve"]["n_evals"] * 2 * n_valid * weights
    return total


def test_metric(result, problem):
    X_test, y_test = problem["splits"][2]
    scores = result.best.predict_scores(X_test)
    return compute_metrics(
        problem["task_type"], y_true=y_test, scores=scores, labels=problem["labels"]
    )["primary"]


def warm_up(problem, kwargs):
    """A short fit per trainer and half, before anything is timed.

    First calls pay one-off costs (on CUDA: kernel loading, cuBLAS and
    generator set-up, several seconds on the first problem) that belong to
    neither trainer's grid.
    """
    (X_tr, y_tr), (X_va, y_va), _ = problem["splits"]
    short = expand_grid(PAPER_GRID, max_steps=8)
    picks = [next(c for c in short if bool(c.hidden_sizes) == mlp) for mlp in (False, True)]
    for trainer in ("batched", "serial"):
        fit_grid(X_tr, y_tr, X_va, y_va, configs=picks, trainer=trainer, **kwargs)


def run_problem(name, args, flops_per_s):
    problem = make_problem(name, scale=args.scale, seed=0)
    (X_tr, y_tr), (X_va, y_va), _ = problem["splits"]
    n_train, n_valid, n_test, n_features, n_outputs = problem["sizes"]
    configs = expand_grid(PAPER_GRID, max_steps=args.max_steps)
    kwargs = {
        "task_type": problem["task_type"],
        "labels": problem["labels"],
        "device": args.device,
    }
    print(
        f"\n## {name}: {problem['task_type']}, {n_train}/{n_valid}/{n_test} x {n_features}-d, "
        f"{n_outputs} outputs; {len(configs)} configs, max_steps={args.max_steps}, "
        f"eval_every=8, patience=256"
    )
    warm_up(problem, kwargs)

    start = time.perf_counter()
    batched = fit_grid(X_tr, y_tr, X_va, y_va, configs=configs, trainer="batched", **kwargs)
    batched_s = time.perf_counter() - start
    half_of = ["mlp" if c.hidden_sizes else "linear" for c in configs]
    batched_half = {
        half: sum(r["wall_s"] for r, h in zip(batched.records, half_of, strict=True) if h == half)
        for half in ("linear", "mlp")
    }

    rng = random.Random(1)
    subset = []
    for hidden in ((), (512,)):
        for batch_size in (64, 256):
            cell = [
                i
                for i, c in enumerate(configs)
                if c.hidden_sizes == hidden and c.batch_size == batch_size
            ]
            subset += sorted(rng.sample(cell, args.serial_subset // 4))
    subset.sort()
    serial_time = {"linear": [], "mlp": []}
    serial_records = []
    for i in subset:
        start = time.perf_counter()
        result = fit_grid(X_tr, y_tr, X_va, y_va, configs=[configs[i]], trainer="serial", **kwargs)
        serial_time[half_of[i]].append(time.perf_counter() - start)
        serial_records.append((i, result))
    n_half = {half: half_of.count(half) for half in ("linear", "mlp")}
    serial_est = {half: float(np.mean(serial_time[half])) * n_half[half] for half in n_half}

    serial_best_i, serial_best = max(
        serial_records,
        key=lambda ir: (ir[1].records[0]["valid_metrics"]["primary"], -ir[0]),
    )
    batched_sub = [(i, batched.records[i]) for i in subset]
    batched_best_i = max(batched_sub, key=lambda ir: (ir[1]["valid_metrics"]["primary"], -ir[0]))[0]
    curve_diff = max(
        abs(a - b)
        for i, result in serial_records
        for a, b in (
            (result.records[0]["curve"][key], batched.records[i]["curve"][key])
            for key in ("first", "best", "last")
        )
    )
    same_steps = all(
        result.records[0]["best_step"] == batched.records[i]["best_step"]
        and result.records[0]["n_steps"] == batched.records[i]["n_steps"]
        for i, result in serial_records
    )
    # The batched choice among the subset, retrained alone to score it on test.
    batched_sub_best = fit_grid(
        X_tr, y_tr, X_va, y_va, configs=[configs[batched_best_i]], trainer="batched", **kwargs
    )
    test_diff = abs(test_metric(serial_best, problem) - test_metric(batched_sub_best, problem))

    flops = grid_flops(batched.records, n_features=n_features, n_outputs=n_outputs, n_valid=n_valid)
    floor_s = flops / flops_per_s
    serial_total = serial_est["linear"] + serial_est["mlp"]
    rows = [
        ("batched wall, full grid (s)", f"{batched_s:.1f}"),
        ("  linear / MLP share (s)", f"{batched_half['linear']:.1f} / {batched_half['mlp']:.1f}"),
        (
            "  outside the groups (s)",
            f"{batched_s - batched_half['linear'] - batched_half['mlp']:.1f}",
        ),
        (
            f"serial wall, measured on {len(subset)} configs (s)",
            f"{sum(map(sum, serial_time.values())):.1f}",
        ),
        (
            "serial wall, extrapolated to 216 (s)",
            f"{serial_total:.1f} (linear {serial_est['linear']:.1f}, MLP {serial_est['mlp']:.1f})",
        ),
        ("speed-up overall (extrapolated)", f"{serial_total / batched_s:.1f}x"),
        ("speed-up linear", f"{serial_est['linear'] / batched_half['linear']:.1f}x"),
        (
            "speed-up linear, outside time charged to it",
            f"{serial_est['linear'] / (batched_s - batched_half['mlp']):.1f}x",
        ),
        ("speed-up MLP", f"{serial_est['mlp'] / batched_half['mlp']:.1f}x"),
        (
            "same selected config (among the subset)",
            f"{'yes' if serial_best_i == batched_best_i else 'NO'} "
            f"(serial #{serial_best_i}, batched #{batched_best_i}; "
            f"test metric diff {test_diff:.2e})",
        ),
        ("same best_step and n_steps on the subset", "yes" if same_steps else "NO"),
        ("max |valid curve diff| on the subset", f"{curve_diff:.2e}"),
        ("batched choice over all 216 configs", f"#{batched.best_index}"),
        ("grid FLOPs (steps taken x per-step + evals)", f"{flops:.3e}"),
        ("matmul FLOP/s (4096^2 fp32 torch.mm)", f"{flops_per_s:.3e}"),
        ("FLOP floor (s)", f"{floor_s:.1f}"),
        ("batched / floor", f"{batched_s / floor_s:.2f}x"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a fast smoke run")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--serial-subset", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda; both trainers run there")
    parser.add_argument(
        "--problems", default="gtzan-like,mtt-like", help="comma-separated, of the two above"
    )
    args = parser.parse_args()
    args.scale = 8 if args.quick else 1
    if args.max_steps is None:
        args.max_steps = 16 if args.quick else 64
    if args.serial_subset is None:
        args.serial_subset = 8 if args.quick else 24
    print(f"# probe grid benchmark, {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average at start {os.getloadavg()[0]:.2f}"
    )
    if torch.device(args.device).type == "cuda":
        print(
            f"# device {torch.cuda.get_device_name()}, TF32 matmul "
            f"{'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}"
        )
    flops_per_s = matmul_flops(device=args.device)
    print(f"# matmul: {flops_per_s / 1e9:.1f} GFLOP/s")
    for name in args.problems.split(","):
        if name not in ("gtzan-like", "mtt-like"):
            parser.error(f"unknown problem {name!r}")
        run_problem(name, args, flops_per_s)
    after = matmul_flops(device=args.device)
    print(
        f"\n# matmul at the end: {after / 1e9:.1f} GFLOP/s; "
        f"load average at the end {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    main()
