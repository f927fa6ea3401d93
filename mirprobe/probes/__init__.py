"""Shallow probes on frozen features, trained with jukemir's protocol.

This reproduces the probing protocol of Castellon, Donahue & Liang (ISMIR
2021), code ``p-lambda/jukemir`` (``jukemir/probe/__init__.py``).

Protocol
--------
Model
    Dropout on the input, then ``Linear -> ReLU -> Dropout`` per hidden
    layer (``hidden_sizes``; ``()`` is a linear probe), then a linear output
    layer; one dropout probability everywhere (``mirprobe.probes.model``).
Scaling
    A StandardScaler fit on the training split only, with
    ``with_mean = with_std = config.standardize``; applied to every split.
Optimisation
    ``torch.optim.Adam(lr=learning_rate, weight_decay=l2)``: coupled L2, not
    AdamW. Loss: cross-entropy (``multiclass``, ``key``), BCE with logits
    (``multilabel``), MSE (``regression``). Every step draws a fresh batch,
    ``random.Random(seed).sample(range(n), min(batch_size, n))``; there are
    no epochs. ``torch`` is seeded with ``config.seed`` inside a forked RNG
    state, so the caller's global RNG is untouched.
Early stopping
    At step 0 and every ``eval_every`` steps the validation primary metric
    (the task type's ``primary_metric``) is computed; a strictly greater
    score is an improvement and snapshots the weights. Training stops when
    ``patience`` evaluations in a row brought no improvement, at
    ``max_steps`` (when set), or if validation outputs become NaN/inf
    (``stopped_by = "diverged"``); the best snapshot is then restored.
Key
    Clips are pooled per song (``valid_groups``). As in jukemir
    (``best_strategy``), every evaluation scores each strategy of
    ``mirprobe.metrics.ENSEMBLE_STRATEGIES`` on the validation split and
    takes the best (ties: the order vote, max_logit, mean_logit,
    mean_prob) as that evaluation's score, so early stopping and restoring
    follow it; the strategy of the restored evaluation is kept as
    ``FittedProbe.ensemble`` and pools the test songs.
Model selection
    ``fit_grid`` trains every config and keeps the highest validation
    primary metric (for ``key``: with the chosen ensemble); ties go to the
    first config in grid order.
Determinism
    Same inputs and config give identical scores on the same machine and
    thread count. torch's deterministic-algorithms flag is switched on
    (warn-only) while training and restored afterwards; thread counts are
    left alone.

Inputs are validated before anything is computed: 2-D finite features of
equal width, non-empty splits, targets matching ``labels`` in shape and
range (``DataError``, naming the split and the number of bad rows); unknown
task types, trainers or config fields raise ``ConfigError``.

API
---
``ProbeConfig``, ``expand_grid(grid, **constants)``, ``PAPER_GRID``
    Hyperparameters (``mirprobe.probes.config``; no torch import).
``train_probe(X_train, y_train, X_valid, y_valid, *, task_type, config,
labels, valid_groups=None, device="cpu") -> FittedProbe``
``fit_grid(X_train, y_train, X_valid, y_valid, *, task_type, labels,
configs, valid_groups=None, device="cpu", trainer="serial") -> GridResult``
    ``trainer``: ``"serial"`` (the reference, one config after another),
    ``"batched"`` (``mirprobe.probes.batched``: configs sharing a batch size
    trained as one stacked model, same per-config results to float
    tolerance) or ``"sklearn_cv"`` (``mirprobe.probes.quick``: a quick
    cross-validated linear protocol, *not* the one above; labelled
    ``protocol: "sklearn_cv"`` in its records).
``FittedProbe.predict_scores(X)``, ``FittedProbe.evaluate(X, y, groups=None)``
``save_probe(probe, path)``, ``load_probe(path, *, device="cpu")``

Modules: ``config`` (hyperparameters), ``model`` (the network and the fitted
probe), ``common`` (what the trainers share: validated inputs, grid records,
dropout), ``training`` (the serial reference), ``batched``, ``quick``, ``grid``
(``fit_grid``, which validates a grid once and dispatches to a trainer), ``io``.
Everything task-specific (targets, loss, metrics, song pooling) comes from the
task type, ``mirprobe.task_types``.

Everything but the config module imports torch on first use, so importing
this package stays cheap at workflow parse time.
"""

import importlib

from mirprobe.probes.config import PAPER_GRID, ProbeConfig, expand_grid

_LAZY = {
    "FittedProbe": "mirprobe.probes.model",
    "ProbeMLP": "mirprobe.probes.model",
    "TrainingRecord": "mirprobe.probes.model",
    "GridResult": "mirprobe.probes.common",
    "TRAINERS": "mirprobe.probes.grid",
    "fit_grid": "mirprobe.probes.grid",
    "train_probe": "mirprobe.probes.training",
    "load_probe": "mirprobe.probes.io",
    "save_probe": "mirprobe.probes.io",
}

__all__ = ["PAPER_GRID", "ProbeConfig", "expand_grid", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
