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

from mirprobe.metrics import compute_metrics
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
    from sklearn.model_selection import KFold
    from sklearn.preprocessing import StandardScaler

    from mirprobe.probes.training import (
        GridResult,
        _choose_ensemble,
        _validate_inputs,
        grid_record,
    )

    data = _validate_inputs(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type=task_type,
        labels=labels,
        valid_groups=valid_groups,
    )
    start = time.perf_counter()
    config = QuickConfig(seed=int(seed))
    scaler = StandardScaler().fit(data.X_train.astype(np.float64))
    mean, scale = scaler.mean_, scaler.scale_
    X = scale_features(data.X_train, mean=mean, scale=scale)
    folds = KFold(n_splits=config.cv_folds, shuffle=True, random_state=config.seed)
    n_outputs = len(data.labels)
    coef = np.zeros((n_outputs, X.shape[1]))
    intercept = np.zeros(n_outputs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence and small-fold warnings
        if task_type in ("multiclass", "key"):
            regularization = _fit_logistic(X, data.y_train, folds, coef, intercept, n_outputs, seed)
        elif task_type == "multilabel":
            regularization = []
            for tag in range(n_outputs):
                y = data.y_train[:, tag]
                if y.min() == y.max():
                    intercept[tag] = 1.0 if y[0] else -1.0
                    regularization.append(None)
                    continue
                from sklearn.linear_model import LogisticRegressionCV

                model = LogisticRegressionCV(
                    Cs=list(C_GRID), cv=folds, scoring="roc_auc", max_iter=500
                ).fit(X, y)
                coef[tag], intercept[tag] = model.coef_[0], model.intercept_[0]
                regularization.append({"C": float(model.C_[0])})
        else:
            from sklearn.linear_model import RidgeCV

            model = RidgeCV(alphas=list(ALPHA_GRID)).fit(X, data.y_train)
            coef[:], intercept[:] = model.coef_.reshape(n_outputs, -1), model.intercept_
            regularization = {"alpha": float(model.alpha_)}

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
        task_type=task_type,
    )
    valid_scores = probe.predict_scores(data.X_valid, split="valid")
    if task_type == "key":
        probe.ensemble, valid_metrics = _choose_ensemble(
            valid_scores, data.y_valid, labels=data.labels, groups=data.valid_groups
        )
    else:
        valid_metrics = compute_metrics(
            task_type, y_true=data.y_valid, scores=valid_scores, labels=data.labels
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


def _fit_logistic(X, y, folds, coef, intercept, n_outputs, seed):
    from sklearn.linear_model import LogisticRegressionCV

    classes = np.unique(y)
    if len(classes) == 1:
        intercept[:] = -1.0
        intercept[classes[0]] = 1.0
        return None
    model = LogisticRegressionCV(Cs=list(C_GRID), cv=folds, max_iter=500, random_state=seed)
    model.fit(X, y)
    if len(classes) == 2:  # one decision function: class 1 versus class 0
        coef[classes[1]], intercept[classes[1]] = model.coef_[0], model.intercept_[0]
    else:
        coef[classes], intercept[classes] = model.coef_, model.intercept_
    # Classes never seen in train can never be predicted.
    unseen = np.setdiff1d(np.arange(n_outputs), classes)
    intercept[unseen] = intercept[classes].min() - 1e3
    return {"C": float(model.C_[0])}
