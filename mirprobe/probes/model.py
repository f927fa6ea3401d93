"""The probe network and the fitted probe that wraps it.

``ProbeMLP`` is jukemir's ``SimpleMLP``: dropout on the input, then for each
hidden width ``Linear -> ReLU -> Dropout``, then a linear output layer; one
dropout probability everywhere. ``hidden_sizes=()`` is a linear probe with
input dropout.

``FittedProbe`` holds everything needed to score new features: the config,
the training-split scaler (``scaler_mean``, ``scaler_scale``; zeros and ones
when the config does not standardise), the torch module, ``n_outputs``,
``labels``, ``task_type``, the ``TrainingRecord`` and, for the ``key`` task,
the song ``ensemble`` strategy chosen on the validation split.
``predict_scores(X)`` returns raw outputs (logits or regression values);
``evaluate(X, y, groups=...)`` scores them with ``mirprobe.metrics``.
"""

import dataclasses
import itertools

import numpy as np
import torch
from torch import nn

from mirprobe.errors import DataError
from mirprobe.probes.config import ProbeConfig
from mirprobe.task_types import task_type_of

PREDICT_CHUNK_ROWS = 4096
"""Rows per forward pass in ``predict_scores``; fixed, so results never depend on it."""


class ProbeMLP(nn.Module):
    """Input dropout, ``Linear -> ReLU -> Dropout`` per hidden width, linear output."""

    def __init__(self, *, n_features: int, hidden_sizes: tuple, n_outputs: int, dropout: float):
        super().__init__()
        widths = [n_features, *hidden_sizes]
        self.hidden = nn.ModuleList(
            nn.Linear(n_in, n_out) for n_in, n_out in itertools.pairwise(widths)
        )
        self.output = nn.Linear(widths[-1], n_outputs)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x):
        x = self.dropout(x)
        for layer in self.hidden:
            x = self.dropout(torch.relu(layer(x)))
        return self.output(x)


@dataclasses.dataclass
class TrainingRecord:
    """What happened while training one probe.

    ``curve`` lists ``(step, validation primary score)`` at every evaluation;
    ``best_step`` / ``best_score`` mark the restored state; ``n_steps`` counts
    optimisation steps taken; ``valid_metrics`` are all validation metrics of
    the restored state (for ``key``: with the chosen ensemble strategy);
    ``stopped_by`` is ``"patience"`` or ``"max_steps"``.
    """

    curve: list
    best_step: int
    best_score: float
    n_steps: int
    wall_s: float
    valid_metrics: dict
    stopped_by: str

    def to_dict(self) -> dict:
        """Return a JSON-serialisable dict (the curve as ``[[step, score], ...]``)."""
        fields = dataclasses.asdict(self)
        fields["curve"] = [[int(step), float(score)] for step, score in self.curve]
        return fields


class FittedProbe:
    """A trained probe: scaler, network and metadata; see the module docstring."""

    def __init__(
        self,
        *,
        config: ProbeConfig,
        scaler_mean: np.ndarray,
        scaler_scale: np.ndarray,
        module: ProbeMLP,
        labels: list,
        task_type: str,
        record: TrainingRecord | None = None,
        ensemble: str | None = None,
    ):
        self.config = config
        self.scaler_mean = np.asarray(scaler_mean, dtype=np.float64)
        self.scaler_scale = np.asarray(scaler_scale, dtype=np.float64)
        self.module = module
        self.labels = list(labels)
        self.task_type = task_type
        self.record = record
        self.ensemble = ensemble

    @property
    def n_features(self) -> int:
        return int(self.scaler_mean.shape[0])

    @property
    def n_outputs(self) -> int:
        return len(self.labels)

    @property
    def device(self):
        return next(self.module.parameters()).device

    def transform(self, X: np.ndarray) -> np.ndarray:
        """Apply the training-split scaler; returns float32."""
        return scale_features(X, mean=self.scaler_mean, scale=self.scaler_scale)

    def predict_scores(self, X, *, split: str = "input") -> np.ndarray:
        """Return raw outputs, shape (n, n_outputs), float32, in eval mode.

        ``split`` only names the input in error messages.
        """
        X = check_features(X, split=split, n_features=self.n_features)
        return forward_scaled(self.module, self.transform(X), device=self.device)

    def evaluate(self, X, y, *, groups=None, split: str = "input") -> dict:
        """Return the task type's metrics of this probe on ``(X, y)``.

        For ``key``, clips are pooled per song (``groups``) with ``self.ensemble``
        (``mean_prob`` where none was chosen); other task types ignore both.
        """
        scores = self.predict_scores(X, split=split)
        return task_type_of(self.task_type).evaluate(
            y_true=y, scores=scores, labels=self.labels, groups=groups, ensemble=self.ensemble
        )

    def __repr__(self):
        return (
            f"FittedProbe(task_type={self.task_type!r}, n_features={self.n_features}, "
            f"n_outputs={self.n_outputs}, uid={self.config.uid()[:12]!r})"
        )


def check_features(X, *, split: str, n_features: int | None = None) -> np.ndarray:
    """Return ``X`` as a 2-D float array, or raise ``DataError`` naming ``split``."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise DataError(
            f"{split} features must be a 2-D (n, n_features) array, got shape {X.shape}"
        )
    if X.shape[0] == 0:
        raise DataError(f"{split} split is empty (0 rows)")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise DataError(f"{split} features must be real numbers, got dtype {X.dtype}")
    if n_features is not None and X.shape[1] != n_features:
        raise DataError(
            f"{split} features have {X.shape[1]} columns, expected {n_features} "
            "(the training features' width)"
        )
    bad_rows = int((~np.isfinite(X)).any(axis=1).sum())
    if bad_rows:
        raise DataError(f"{split} features hold NaN or inf in {bad_rows} of {len(X)} rows")
    return X


def scale_features(X, *, mean, scale) -> np.ndarray:
    """``(X - mean) / scale`` in float64, returned as float32."""
    return ((np.asarray(X, dtype=np.float64) - mean) / scale).astype(np.float32)


def forward_scaled(module, X_scaled, *, device) -> np.ndarray:
    """Run ``module`` in eval mode over already scaled rows, in fixed-size chunks."""
    was_training = module.training
    module.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(X_scaled), PREDICT_CHUNK_ROWS):
            chunk = torch.from_numpy(X_scaled[start : start + PREDICT_CHUNK_ROWS]).to(device)
            outputs.append(module(chunk).cpu().numpy())
    module.train(was_training)
    return np.concatenate(outputs, axis=0)
