"""Train probes with jukemir's protocol, one config or a whole grid.

See ``mirprobe.probes`` for the protocol; this module implements it and is
the serial reference: ``fit_grid(..., trainer="serial")``
(``mirprobe.probes.grid``) trains the configs one after another with
``train_validated``. ``trainer="batched"`` (``mirprobe.probes.batched``) trains
the configs that share a batch size as one stacked model with the same
per-config semantics; ``trainer="sklearn_cv"`` (``mirprobe.probes.quick``)
is the quick cross-validated protocol, not jukemir's. What the trainers share
(inputs, records, dropout) is in ``mirprobe.probes.common``.

Random streams
--------------
Each config's initial weights come from ``torch.manual_seed(config.seed)``
followed by building the ``ProbeMLP`` (inside a forked RNG state), exactly as
jukemir. Dropout masks do not use torch's global RNG: every dropout site
(the input, then each hidden layer) has its own ``torch.Generator`` seeded
from ``(config.seed, site)`` (``common.dropout_generators``); each step draws one
uniform tensor per site, shape (batch rows, width), and keeps the entries
``u >= dropout``, scaled by ``1 / (1 - dropout)`` (``common.apply_dropout``). Every
mask is still i.i.d. Bernoulli(1 - dropout), as with ``nn.Dropout``, but a
config's masks depend only on its seed, its batch size and its widths, not
on the other configs, which is what lets the batched trainer reproduce every
config of a grid in one pass.
"""

import math
import random
import time
import warnings

import numpy as np
import torch

from mirprobe.errors import DataError
from mirprobe.metrics import TagExclusionWarning
from mirprobe.probes.common import (
    ProbeInputs,
    apply_dropout,
    check_config,
    deterministic_algorithms,
    dropout_generators,
    fork_devices,
    keep_scale,
    validate_inputs,
)
from mirprobe.probes.config import ProbeConfig
from mirprobe.probes.model import (
    FittedProbe,
    ProbeMLP,
    TrainingRecord,
    forward_scaled,
    scale_features,
)


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
    task_type : a name of ``mirprobe.task_types.TASK_TYPES``
    config : ProbeConfig
    labels : sequence of str, one per output
    valid_groups : array, shape (n_valid,), optional; song id per validation
        clip (``key`` only; ``None``: each clip is its own song)
    device : torch device string

    Returns
    -------
    FittedProbe in its best validation state, with ``record`` filled in and,
    for ``key``, ``ensemble``: the song pooling of the restored evaluation (each
    evaluation is scored with its best pooling, see ``Key.validation_metrics``).
    """
    data = validate_inputs(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type=task_type,
        labels=labels,
        valid_groups=valid_groups,
    )
    check_config(config)
    return train_validated(data, config=config, device=device)


def train_validated(data: ProbeInputs, *, config: ProbeConfig, device="cpu") -> FittedProbe:
    """``train_probe`` on inputs already checked by ``validate_inputs`` (once per grid)."""
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

    with (
        torch.random.fork_rng(devices=fork_devices(torch_device)),
        deterministic_algorithms(),
    ):
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
            task=data.task,
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
        task_type=data.task.name,
        record=record,
        ensemble=loop["best_ensemble"],
    )


# -- internals ----------------------------------------------------------------


def _train_loop(
    module, X_train, y_train, X_valid, y_valid, *, task, config, labels, valid_groups, device
):
    """Jukemir's loop: random batches, evaluate every ``eval_every`` steps, restore best."""
    optimizer = torch.optim.Adam(
        module.parameters(), lr=config.learning_rate, weight_decay=config.l2
    )
    X_train_t = torch.from_numpy(X_train).to(device)
    y_train_t = task.train_targets(y_train, device=device)

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
            # (for key: jukemir scores each evaluation with its best song pooling)
            with warnings.catch_warnings():
                if curve:  # name degenerate tags once, not at every evaluation
                    warnings.simplefilter("ignore", TagExclusionWarning)
                ensemble, metrics = task.validation_metrics(
                    valid_scores, y_valid, labels=labels, groups=valid_groups
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
        loss = task.loss(outputs, y_train_t[batch])
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
