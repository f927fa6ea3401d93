"""Train probes with jukemir's protocol, one config or a whole grid.

See ``mirprobe.probes`` for the protocol; this module implements it and is
the serial reference: ``fit_grid(..., trainer="serial")`` trains the configs
one after another. ``trainer="batched"`` (``mirprobe.probes.batched``) trains
the configs that share a batch size as one stacked model with the same
per-config semantics; ``trainer="sklearn_cv"`` (``mirprobe.probes.quick``)
is the quick cross-validated protocol, not jukemir's.

Random streams
--------------
Each config's initial weights come from ``torch.manual_seed(config.seed)``
followed by building the ``ProbeMLP`` (inside a forked RNG state), exactly as
jukemir. Dropout masks do not use torch's global RNG: every dropout site
(the input, then each hidden layer) has its own ``torch.Generator`` seeded
from ``(config.seed, site)`` (``dropout_generators``); each step draws one
uniform tensor per site, shape (batch rows, width), and keeps the entries
``u >= dropout``, scaled by ``1 / (1 - dropout)`` (``apply_dropout``). Every
mask is still i.i.d. Bernoulli(1 - dropout), as with ``nn.Dropout``, but a
config's masks depend only on its seed, its batch size and its widths, not
on the other configs, which is what lets the batched trainer reproduce every
config of a grid in one pass.
"""

import contextlib
import dataclasses
import math
import random
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from mirprobe.errors import ConfigError, DataError
from mirprobe.metrics import (
    ENSEMBLE_STRATEGIES,
    TASK_TYPES,
    TagExclusionWarning,
    _validate_class_indices,
    _validate_labels,
    _validate_target_matrix,
    compute_metrics,
)
from mirprobe.probes.config import ProbeConfig
from mirprobe.probes.model import (
    FittedProbe,
    ProbeMLP,
    TrainingRecord,
    check_features,
    forward_scaled,
    scale_features,
)

TRAINERS = ("serial", "batched", "sklearn_cv")


@dataclasses.dataclass
class GridResult:
    """The outcome of ``fit_grid``.

    ``best`` is the probe with the highest validation primary metric (ties:
    first in grid order), ``best_config`` its config, ``best_index`` its
    position in the grid and ``records`` one JSON-serialisable dict per
    config, in grid order.
    """

    best: FittedProbe
    best_config: ProbeConfig
    best_index: int
    records: list


def train_probe(
    X_train,
    y_train,
    X_valid,
    y_valid,
    *,
    task_type: str,
    config: ProbeConfig,
    labels,
    valid_groups=None,
    device: str = "cpu",
) -> FittedProbe:
    """Train one probe on ``(X_train, y_train)``, early-stopped on the validation split.

    Parameters
    ----------
    X_train, X_valid : arrays, shape (n, n_features); frozen features
    y_train, y_valid : targets as ``mirprobe.metrics`` expects them
    task_type : one of ``mirprobe.metrics.TASK_TYPES``
    config : ProbeConfig
    labels : sequence of str, one per output
    valid_groups : array, shape (n_valid,), optional; song id per validation
        clip (``key`` only; ``None``: each clip is its own song)
    device : torch device string

    Returns
    -------
    FittedProbe in its best validation state, with ``record`` filled in and,
    for ``key``, ``ensemble``: the song pooling of the restored evaluation (each
    evaluation is scored with its best pooling, see ``_choose_ensemble``).
    """
    data = _validate_inputs(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type=task_type,
        labels=labels,
        valid_groups=valid_groups,
    )
    if not isinstance(config, ProbeConfig):
        raise ConfigError(f"config must be a ProbeConfig, got {type(config).__name__}")
    torch_device = torch.device(device)
    start = time.perf_counter()

    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler(with_mean=config.standardize, with_std=config.standardize)
    scaler.fit(data.X_train.astype(np.float64))
    n_features = data.X_train.shape[1]
    mean = np.zeros(n_features) if scaler.mean_ is None else scaler.mean_
    scale = np.ones(n_features) if scaler.scale_ is None else scaler.scale_
    X_train_scaled = scale_features(data.X_train, mean=mean, scale=scale)
    X_valid_scaled = scale_features(data.X_valid, mean=mean, scale=scale)

    fork_devices = []
    if torch_device.type == "cuda":
        fork_devices = [torch_device.index or torch.cuda.current_device()]
    with torch.random.fork_rng(devices=fork_devices), _deterministic_algorithms():
        torch.manual_seed(config.seed)
        module = ProbeMLP(
            n_features=n_features,
            hidden_sizes=config.hidden_sizes,
            n_outputs=len(data.labels),
            dropout=config.dropout,
        ).to(torch_device)
        loop = _train_loop(
            module,
            X_train_scaled,
            data.y_train,
            X_valid_scaled,
            data.y_valid,
            task_type=task_type,
            config=config,
            labels=data.labels,
            valid_groups=data.valid_groups,
            device=torch_device,
        )

    record = TrainingRecord(
        curve=loop["curve"],
        best_step=loop["best_step"],
        best_score=loop["best_score"],
        n_steps=loop["n_steps"],
        wall_s=time.perf_counter() - start,
        valid_metrics=loop["best_metrics"],
        stopped_by=loop["stopped_by"],
    )
    module.eval()
    return FittedProbe(
        config=config,
        scaler_mean=mean,
        scaler_scale=scale,
        module=module,
        labels=data.labels,
        task_type=task_type,
        record=record,
        ensemble=loop["best_ensemble"],
    )


def fit_grid(
    X_train,
    y_train,
    X_valid,
    y_valid,
    *,
    task_type: str,
    labels,
    configs,
    valid_groups=None,
    device: str = "cpu",
    trainer: str = "serial",
) -> GridResult:
    """Train one probe per config and keep the best on the validation split.

    The best probe has the highest validation primary metric (for ``key``:
    with its chosen ensemble); ties go to the first in ``configs`` order.
    ``trainer`` selects how the grid is run: ``"serial"`` (this module, one
    config after another), ``"batched"`` (``mirprobe.probes.batched``: same
    results, configs sharing a batch size trained as one stacked model) or
    ``"sklearn_cv"`` (``mirprobe.probes.quick``: the quick protocol, whose
    regularisation is cross-validated on train; ``configs`` only lend it
    their seed).
    """
    if trainer not in TRAINERS:
        raise ConfigError(f"unknown trainer {trainer!r}; expected one of {list(TRAINERS)}")
    configs = list(configs)
    if not configs:
        raise ConfigError("configs is empty; nothing to train")
    seen = {}
    for index, config in enumerate(configs):
        if not isinstance(config, ProbeConfig):
            raise ConfigError(
                f"configs[{index}] must be a ProbeConfig, got {type(config).__name__}"
            )
        uid = config.uid()
        if uid in seen:
            raise ConfigError(
                f"configs[{index}] repeats configs[{seen[uid]}] (uid {uid}); "
                "every config is trained once"
            )
        seen[uid] = index
    _validate_inputs(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type=task_type,
        labels=labels,
        valid_groups=valid_groups,
    )

    if trainer == "batched":
        from mirprobe.probes.batched import fit_grid_batched

        return fit_grid_batched(
            X_train,
            y_train,
            X_valid,
            y_valid,
            task_type=task_type,
            labels=labels,
            configs=configs,
            valid_groups=valid_groups,
            device=device,
        )
    if trainer == "sklearn_cv":
        from mirprobe.probes.quick import fit_quick

        return fit_quick(
            X_train,
            y_train,
            X_valid,
            y_valid,
            task_type=task_type,
            labels=labels,
            seed=configs[0].seed,
            valid_groups=valid_groups,
        )

    import sys

    from tqdm import tqdm

    best, best_index, records = None, None, []
    # configs done, rate and ETA in the job's log (stderr goes there)
    for index, config in enumerate(
        tqdm(configs, desc="probe grid", unit="config", file=sys.stderr)
    ):
        probe = train_probe(
            X_train,
            y_train,
            X_valid,
            y_valid,
            task_type=task_type,
            config=config,
            labels=labels,
            valid_groups=valid_groups,
            device=device,
        )
        records.append(grid_record(probe))
        score = probe.record.valid_metrics["primary"]
        if best is None or score > best.record.valid_metrics["primary"]:
            best, best_index = probe, index
    return GridResult(best=best, best_config=best.config, best_index=best_index, records=records)


def grid_record(probe: FittedProbe) -> dict:
    """Summarise one trained probe as a JSON-serialisable dict."""
    record = probe.record
    return {
        "config": probe.config.to_dict(),
        "uid": probe.config.uid(),
        "best_step": record.best_step,
        "n_steps": record.n_steps,
        "stopped_by": record.stopped_by,
        "ensemble": probe.ensemble,
        "valid_metrics": record.valid_metrics,
        "curve": {
            "first": record.curve[0][1],
            "best": record.best_score,
            "last": record.curve[-1][1],
            "n_evals": len(record.curve),
        },
        "wall_s": record.wall_s,
    }


# -- internals ----------------------------------------------------------------


@dataclasses.dataclass
class _Inputs:
    X_train: np.ndarray
    y_train: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray
    labels: list
    valid_groups: np.ndarray | None


def _validate_inputs(X_train, y_train, X_valid, y_valid, *, task_type, labels, valid_groups):
    if task_type not in TASK_TYPES:
        raise ConfigError(f"unknown task type {task_type!r}; expected one of {list(TASK_TYPES)}")
    labels = _validate_labels(labels)
    X_train = check_features(X_train, split="train")
    X_valid = check_features(X_valid, split="valid", n_features=X_train.shape[1])
    y_train = _validate_targets(
        y_train, task_type=task_type, n_rows=len(X_train), n_outputs=len(labels), split="train"
    )
    y_valid = _validate_targets(
        y_valid, task_type=task_type, n_rows=len(X_valid), n_outputs=len(labels), split="valid"
    )
    if valid_groups is not None:
        if task_type != "key":
            raise ConfigError(
                f"valid_groups are only used by the 'key' task type, not {task_type!r}"
            )
        valid_groups = np.asarray(valid_groups)
        if valid_groups.shape != (len(X_valid),):
            raise DataError(
                f"valid_groups must give one song id per validation row, shape "
                f"({len(X_valid)},), got {valid_groups.shape}"
            )
    if task_type == "multilabel":
        n_positive = y_valid.sum(axis=0)
        if not ((n_positive > 0) & (n_positive < len(y_valid))).any():
            raise DataError(
                "no tag has both positive and negative examples in the valid split; "
                "ROC-AUC is undefined there, so early stopping has no signal"
            )
    return _Inputs(X_train, y_train, X_valid, y_valid, labels, valid_groups)


def _validate_targets(y, *, task_type, n_rows, n_outputs, split):
    try:
        if task_type in ("multiclass", "key"):
            return _validate_class_indices(y, n=n_rows, n_classes=n_outputs)
        return _validate_target_matrix(
            y, shape=(n_rows, n_outputs), binary=task_type == "multilabel"
        )
    except DataError as error:
        raise DataError(f"{split} targets: {error}") from None


def _train_loop(
    module, X_train, y_train, X_valid, y_valid, *, task_type, config, labels, valid_groups, device
):
    """Jukemir's loop: random batches, evaluate every ``eval_every`` steps, restore best."""
    optimizer = torch.optim.Adam(
        module.parameters(), lr=config.learning_rate, weight_decay=config.l2
    )
    X_train_t = torch.from_numpy(X_train).to(device)
    if task_type in ("multiclass", "key"):
        y_train_t = torch.from_numpy(y_train.astype(np.int64)).to(device)
        loss_fn = F.cross_entropy
    else:
        y_train_t = torch.from_numpy(y_train.astype(np.float32)).to(device)
        loss_fn = F.binary_cross_entropy_with_logits if task_type == "multilabel" else F.mse_loss

    rng = random.Random(config.seed)
    generators = dropout_generators(
        config.seed, n_sites=1 + len(config.hidden_sizes), device=device
    )
    n_train = len(X_train)
    batch_rows = min(config.batch_size, n_train)
    step, boredom, curve = 0, 0, []
    best = {"score": -math.inf, "step": None, "state": None, "metrics": None, "ensemble": None}
    stopped_by = None
    module.train()
    while True:
        if step % config.eval_every == 0:
            if boredom >= config.patience:
                stopped_by = "patience"
                break
            valid_scores = forward_scaled(module, X_valid, device=device)
            if not np.isfinite(valid_scores).all():
                stopped_by = "diverged"
                break
            ensemble = None
            if task_type == "key":
                # jukemir scores each evaluation with its best song pooling
                ensemble, metrics = _choose_ensemble(
                    valid_scores, y_valid, labels=labels, groups=valid_groups
                )
            else:
                with warnings.catch_warnings():
                    if curve:  # name degenerate tags once, not at every evaluation
                        warnings.simplefilter("ignore", TagExclusionWarning)
                    metrics = compute_metrics(
                        task_type, y_true=y_valid, scores=valid_scores, labels=labels
                    )
            score = metrics["primary"]
            curve.append((step, score))
            if best["state"] is None or score > best["score"]:
                best = {
                    "score": score,
                    "step": step,
                    "state": {k: v.detach().clone() for k, v in module.state_dict().items()},
                    "metrics": metrics,
                    "ensemble": ensemble,
                }
                boredom = 0
            else:
                boredom += 1
        if config.max_steps is not None and step >= config.max_steps:
            stopped_by = "max_steps"
            break
        batch = torch.tensor(rng.sample(range(n_train), batch_rows), device=device)
        optimizer.zero_grad()
        outputs = _train_forward(
            module, X_train_t[batch], dropout=config.dropout, generators=generators
        )
        loss = loss_fn(outputs, y_train_t[batch])
        loss.backward()
        optimizer.step()
        step += 1

    if best["state"] is None:
        raise DataError(
            "the probe's validation outputs were NaN or inf before training began; "
            "check the feature scale (standardize) of the training split"
        )
    module.load_state_dict(best["state"])
    module.eval()
    return {
        "curve": curve,
        "best_step": best["step"],
        "best_score": best["score"],
        "best_metrics": best["metrics"],
        "best_ensemble": best["ensemble"],
        "n_steps": step,
        "stopped_by": stopped_by,
    }


def dropout_generators(seed: int, *, n_sites: int, device) -> list:
    """Return one ``torch.Generator`` per dropout site, seeded from ``(seed, site)``."""
    generators = []
    for site in range(n_sites):
        state = np.random.SeedSequence([seed, site]).generate_state(1, dtype=np.uint64)[0]
        generator = torch.Generator(device=device)
        generator.manual_seed(int(state))
        generators.append(generator)
    return generators


def apply_dropout(x, uniform, keep_scale, dropout):
    """``x`` times the mask ``(uniform >= dropout) * keep_scale``.

    ``dropout`` and ``keep_scale`` (``1 / (1 - dropout)`` in ``x``'s dtype, see
    ``keep_scale``) are floats or tensors broadcasting against ``uniform``.
    """
    return x * ((uniform >= dropout).to(x.dtype) * keep_scale)


def keep_scale(dropout, *, dtype=torch.float32):
    """``1 / (1 - dropout)`` rounded as a ``dtype`` division, as ``nn.Dropout`` scales."""
    one = torch.ones((), dtype=dtype)
    return one / torch.tensor(1.0 - dropout, dtype=dtype)


def _train_forward(module, x, *, dropout, generators):
    """``module(x)`` in training mode, dropout masks drawn from ``generators``."""
    scale = keep_scale(dropout, dtype=x.dtype).to(x.device)
    uniform = torch.rand(x.shape, generator=generators[0], device=x.device, dtype=x.dtype)
    x = apply_dropout(x, uniform, scale, dropout)
    for layer, generator in zip(module.hidden, generators[1:], strict=True):
        x = torch.relu(layer(x))
        uniform = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = apply_dropout(x, uniform, scale, dropout)
    return module.output(x)


def _choose_ensemble(valid_scores, y_valid, *, labels, groups):
    """Return the ensemble strategy with the best validation weighted score (ties: first)
    and its metrics: jukemir's ``best_strategy``, which sets the score of every
    evaluation (so early stopping and restoring use it) and the pooling used on test."""
    best_strategy, best_metrics = None, None
    for strategy in ENSEMBLE_STRATEGIES:
        metrics = compute_metrics(
            "key",
            y_true=y_valid,
            scores=valid_scores,
            labels=labels,
            groups=groups,
            ensemble=strategy,
        )
        if best_metrics is None or metrics["primary"] > best_metrics["primary"]:
            best_strategy, best_metrics = strategy, metrics
    return best_strategy, best_metrics


@contextlib.contextmanager
def _deterministic_algorithms():
    """Ask torch for deterministic kernels (warn only), restoring the caller's setting."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
