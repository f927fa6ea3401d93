"""The quick protocol: scikit-learn cross-validated regularisation, for fast iteration.

NOT jukemir's protocol (``mirprobe.probes``): no grid, no early stopping, no
MLP. Selected with ``probe.trainer: sklearn_cv``; every record it writes says
``protocol: "sklearn_cv"`` and the table and provenance name the trainer.

Protocol
--------
Features are standardised (StandardScaler fit on train). A linear model is
fit on train with its regularisation strength chosen by 5-fold
cross-validation on train (folds shuffled with ``seed``):

``multiclass``, ``key``  ``LogisticRegressionCV`` (multinomial, lbfgs), scored by accuracy
``multilabel``           one ``LogisticRegressionCV`` per tag, scored by ROC-AUC; a tag
                         with a single class in train gets a constant score
``regression``           ``RidgeCV`` (efficient leave-one-out), one alpha for all outputs

The valid split is only scored, for the record (for ``key``: with the song
ensemble chosen there, as the main protocol does). Note for ``key``: the CV
folds split clips, not songs (train song ids are not passed to ``fit_grid``).

The fitted model is a ``FittedProbe`` whose network is a linear
``ProbeMLP`` holding the coefficients, so ``predict_scores``, ``evaluate``,
``save_probe`` and ``load_probe`` work unchanged; its ``config`` is a
``QuickConfig`` (``to_dict`` / ``uid`` like ``ProbeConfig``).
"""

import dataclasses
import hashlib
import json
import time
import typing
import warnings

import numpy as np
import torch

from mirprobe.probes.common import GridResult, ProbeInputs, grid_record, validate_inputs
from mirprobe.probes.model import FittedProbe, ProbeMLP, TrainingRecord, scale_features

PROTOCOL = "sklearn_cv"
C_GRID = tuple(float(c) for c in np.logspace(-4, 2, 7))
ALPHA_GRID = tuple(float(a) for a in np.logspace(-3, 4, 8))


@dataclasses.dataclass(frozen=True)
class QuickConfig:
    """Settings of the quick protocol; identity by content, as ``ProbeConfig``."""

    protocol: str = PROTOCOL
    standardize: bool = True
    cv_folds: int = 5
    seed: int = 0
    hidden_sizes: typing.ClassVar[tuple] = ()  # the network is linear
    dropout: typing.ClassVar[float] = 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> "QuickConfig":
        return cls(**fields)

    def uid(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()


def fit_quick(X_train, y_train, X_valid, y_valid, *, task_type, labels, seed=0, valid_groups=None):
    """Fit the quick protocol; return a ``GridResult`` with one record (``fit_grid``'s format)."""
    data = validate_inputs(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type=task_type,
        labels=labels,
        valid_groups=valid_groups,
    )
    return fit_quick_validated(data, seed=seed)


def fit_quick_validated(data: ProbeInputs, *, seed=0) -> GridResult:
    """``fit_quick`` on inputs already checked by ``validate_inputs``."""
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    task = data.task
    start = time.perf_counter()
    config = QuickConfig(seed=int(seed))
    scaler = StandardScaler().fit(data.X_train.astype(np.float64))
    mean, scale = scaler.mean_, scaler.scale_
    X = scale_features(data.X_train, mean=mean, scale=scale)
    folds = KFold(n_splits=config.cv_folds, shuffle=True, random_state=config.seed)
    n_outputs = len(data.labels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and small-fold warnings
        coef, intercept, regularization = task.fit_linear_cv(
            X,
            data.y_train,
            n_outputs=n_outputs,
            folds=folds,
            seed=seed,
            c_grid=C_GRID,
            alpha_grid=ALPHA_GRID,
        )

    module = ProbeMLP(n_features=X.shape[1], hidden_sizes=(), n_outputs=n_outputs, dropout=0.0)
    with torch.no_grad():
        module.output.weight.copy_(torch.from_numpy(coef))
        module.output.bias.copy_(torch.from_numpy(intercept))
    module.eval()
    probe = FittedProbe(
        config=config,
        scaler_mean=mean,
        scaler_scale=scale,
        module=module,
        labels=data.labels,
        task_type=task.name,
    )
    valid_scores = probe.predict_scores(data.X_valid, split="valid")
    # (key: with the song ensemble chosen there, as the main protocol does)
    probe.ensemble, valid_metrics = task.validation_metrics(
        valid_scores, data.y_valid, labels=data.labels, groups=data.valid_groups
    )
    probe.record = TrainingRecord(
        curve=[(0, valid_metrics["primary"])],
        best_step=0,
        best_score=valid_metrics["primary"],
        n_steps=0,
        wall_s=time.perf_counter() - start,
        valid_metrics=valid_metrics,
        stopped_by="converged",
    )
    record = grid_record(probe)
    record["protocol"] = PROTOCOL
    record["regularization"] = regularization
    return GridResult(best=probe, best_config=config, best_index=0, records=[record])
