"""Task types: everything that differs between multiclass, key, multilabel and regression.

One class per task type, one instance of each in ``TASK_TYPES`` (the config's
``task_type`` string -> the object); ``task_type_of(name)`` looks one up and
raises ``ConfigError`` naming the choices for an unknown name. Nothing outside
this module branches on a task type's name: a new task type is one class here
and one registry line.

A task type owns

- label encoding (``encode``: metadata label strings -> probe targets, in the
  order of the dataset's ``labels()``, which is the order the metrics name the
  outputs; ``validate_targets`` checks targets given directly);
- the training loss (``loss``, used by the serial trainer through autograd) and
  its gradient with respect to the outputs (``loss_gradient``, used by the
  batched trainer), each a mean over rows (and outputs);
- the metrics (``metrics``, the reference implementation behind
  ``mirprobe.metrics.compute_metrics``), the primary metric's name
  (``primary_metric``) and its vectorised form (``batched_scorer``: the primary
  of a stack of score matrices at once, equal to the reference to float rounding);
- how a validation evaluation is scored (``validation_metrics``; for ``key``
  the best of the four song poolings, as jukemir) and how a held-out split is
  scored with what validation chose (``evaluate``);
- the per-clip decision from raw scores (``decide``) and whether outputs are
  classes (``has_classes``: a confusion matrix is defined);
- song pooling: ``scores_songs`` and ``song_groups`` (which clips form a
  song; only ``key`` pools clips per song);
- the default results-table columns (``table_columns``);
- the quick protocol's cross-validated linear model (``fit_linear_cv``);
- reading the user's raw labels into label strings: the columns of a labels
  table that hold them (``user_label_columns``; ``uses_target_columns``: the
  labels are numeric columns named by ``params.targets``), a table row
  (``label_from_row``, ``kind: folder``: multilabel tags separated by ``;``,
  key labels validated with mir_eval and spelt as the 24 key classes,
  regression targets finite numbers) and a track attribute's value
  (``label_from_value``, ``kind: mirdata``);
- a dataset's label names from its label strings (``label_names``);
- the strata of drawn splits: one per group of clips (``group_strata``,
  ``kind: folder``) or one per clip (``clip_stratum``, ``kind: mirdata``).

Label encodings (see :mod:`mirprobe.datasets.base` for the label strings):

``multiclass``, ``key``
    ``y`` is an int64 vector of indices into the dataset's ``labels()``.
``multilabel``
    ``y`` is a uint8 matrix ``(n, n_labels)``; the label string is ``|``-joined tags.
``regression``
    ``y`` is a float32 matrix ``(n, n_outputs)``; the label string is ``|``-joined floats.

torch and scikit-learn are imported on first use, so the table job (which
only asks for the default columns) stays light.
"""

import math
from collections import Counter

import numpy as np

from mirprobe import metrics as _metrics
from mirprobe.errors import ConfigError, DataError
from mirprobe.metrics import (
    ENSEMBLE_STRATEGIES,
    validate_class_indices,
    validate_labels,
    validate_scores,
    validate_target_matrix,
)

#: separates the tags of a multilabel row in a user's labels table
TAG_SEPARATOR = ";"

#: the 24 key classes, spelt as mir_eval reads them (the synthetic task renders them)
TONICS = ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"]
MODES = ("major", "minor")
#: the 24 labels; key index k has tonic pitch class k % 12 and mode MODES[k // 12]
KEY_LABELS = [f"{tonic} {mode}" for mode in MODES for tonic in TONICS]


def key_class(text, *, where):
    """A key label validated with mir_eval, spelt as one of the 24 key classes."""
    import mir_eval

    try:
        mir_eval.key.validate_key(text)
    except ValueError as error:
        raise DataError(f"{where}: key {text!r} is not in mir_eval's format ({error})") from None
    if text.lower() == "x" or text.split()[1] not in ("major", "minor"):
        raise DataError(
            f"{where}: key {text!r} is valid for mir_eval but not one of the 24 major/minor "
            "keys the key task classifies; remove the row or give its key"
        )
    tonic, mode = text.split()
    return f"{TONICS[mir_eval.key.KEY_TO_SEMITONE[tonic.lower()]]} {mode}"


def _tags(label_string):
    return [t for t in label_string.split("|") if t]


def _single_value(value):
    """A track attribute holding one string (or a list of one), stripped; DataError else."""
    if not isinstance(value, str):
        value = list(value)
        if len(value) != 1:
            raise DataError(f"{len(value)} values {value[:3]}, one expected")
        value = str(value[0])
    if not value.strip():
        raise DataError("empty")
    return value.strip()


class TaskType:
    """What one task type does; subclasses fill in the parts marked as such."""

    name = None
    primary_metric = None
    #: clips are pooled per song (``groups``) before scoring
    scores_songs = False
    #: the results table's columns when the config names none
    default_columns = ()
    #: whether outputs are classes (a confusion matrix of decisions is defined)
    has_classes = False

    def __repr__(self):
        return f"<task type {self.name!r}>"

    # -- labels ---------------------------------------------------------------

    def encode(self, label_strings, *, labels) -> np.ndarray:
        """Encode metadata label strings as probe targets (subclass)."""
        raise NotImplementedError

    def validate_targets(self, y, *, n_rows, n_outputs) -> np.ndarray:
        """``y`` as this task's targets for ``n_rows`` rows, or ``DataError`` (subclass)."""
        raise NotImplementedError

    def check_validation_signal(self, y_valid):
        """Raise ``DataError`` where the validation targets cannot drive early stopping."""

    # -- training -------------------------------------------------------------

    def train_targets(self, y, *, device):
        """The training targets as the tensor ``loss`` and ``loss_gradient`` take."""
        import torch

        return torch.from_numpy(y.astype(np.float32)).to(device)

    def loss(self, outputs, targets):
        """The mean training loss of a batch, differentiable (subclass)."""
        raise NotImplementedError

    def loss_gradient(self, logits, targets):
        """d(sum over configs of each config's mean ``loss``) / d ``logits``.

        ``logits`` (k, rows, n_outputs), one slice per config; ``targets`` one
        batch of ``train_targets``, shared by the k configs (subclass).
        """
        raise NotImplementedError

    # -- metrics --------------------------------------------------------------

    def metrics(self, *, y_true, scores, labels, groups=None, ensemble="mean_prob") -> dict:
        """Every metric of this task type, plus ``"primary"`` (``compute_metrics``)."""
        labels = validate_labels(labels)
        scores = validate_scores(scores, n_outputs=len(labels))
        if groups is not None and not self.scores_songs:
            raise ConfigError(
                f"groups are only used by the {_song_task_names()} task type, not {self.name!r}"
            )
        y_true = self._validate_y_true(y_true, scores)
        values = self._metrics(y_true, scores, labels=labels, groups=groups, ensemble=ensemble)
        values["primary"] = values[self.primary_metric]
        return values

    def _validate_y_true(self, y_true, scores):
        return self.validate_targets(y_true, n_rows=scores.shape[0], n_outputs=scores.shape[1])

    def _metrics(self, y_true, scores, *, labels, groups, ensemble):
        raise NotImplementedError

    def unit_values(self, y_true, scores, *, labels, groups=None, ensemble=None) -> dict:
        """The metrics that are ratios of sums over resampling units (clips, or
        songs in sorted id order where ``scores_songs``): ``{metric: (numerator,
        denominator)}``, one value per unit, ``denominator`` ``None`` for a plain
        mean. A resample's metric is then ``numerator[draw].sum() /
        denominator[draw].sum()`` (or ``numerator[draw].mean()``), which the
        bootstrap uses instead of rescoring each resample. Metrics that are not
        (R², ROC-AUC, AP) are left out and rescored."""
        return {}

    def resampled_metrics(self, y_true, scores, *, labels, metrics, draws) -> dict:
        """``{metric: array (resamples,)}`` of those of ``metrics`` computed for
        every bootstrap resample at once (``draws``: resamples x clips of row
        indices); the others are left out and rescored resample by resample."""
        return {}

    def validation_metrics(self, scores, y_valid, *, labels, groups=None):
        """``(ensemble, metrics)`` of one validation evaluation; ``ensemble`` is
        the song pooling it chose (``None`` where the task pools no songs)."""
        return None, self.metrics(y_true=y_valid, scores=scores, labels=labels)

    def validation_metrics_stack(self, score_list, y_valid, *, labels, groups=None):
        """``validation_metrics`` of several configs' outputs: (ensembles, metrics)."""
        pairs = [
            self.validation_metrics(s, y_valid, labels=labels, groups=groups) for s in score_list
        ]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def evaluate(self, *, y_true, scores, labels, groups=None, ensemble=None) -> dict:
        """Metrics of a held-out split, songs pooled with the ``ensemble`` chosen on
        validation (``groups`` and ``ensemble`` are ignored where no songs are pooled)."""
        return self.metrics(y_true=y_true, scores=scores, labels=labels)

    def batched_scorer(self, y_valid, *, labels, groups=None):
        """A callable: CPU tensor of scores (k, n_valid, n_outputs), all finite ->
        the primary metric of each of the k configs, float64 array (subclass)."""
        raise NotImplementedError

    # -- songs and the table ----------------------------------------------------

    def decide(self, scores) -> np.ndarray:
        """The probe's per-clip decision from its raw ``scores`` (the scores
        themselves for regression; subclasses decide classes or tags)."""
        return np.asarray(scores).copy()

    def song_groups(self, groups):
        """The song of each clip where this task scores songs, else ``None``."""
        return groups if self.scores_songs else None

    def table_columns(self, labels) -> list:
        """The results table's default metric columns."""
        return list(self.default_columns)

    # -- the quick protocol -----------------------------------------------------

    def fit_linear_cv(self, X, y, *, n_outputs, folds, seed, c_grid, alpha_grid):
        """``(coef (n_outputs, n_features), intercept (n_outputs,), regularization)`` of
        the quick protocol's cross-validated linear model (subclass)."""
        raise NotImplementedError

    # -- the user's raw labels ---------------------------------------------------

    #: the labels are numeric columns named by the dataset's ``params.targets``
    uses_target_columns = False

    def user_label_columns(self, target_columns):
        """The labels table's columns that hold a clip's label."""
        return ["label"]

    def label_from_row(self, row, *, target_columns, where):
        """The label string of one labels-table row (dict of stripped-or-not strings);
        ``DataError`` starting with ``where`` for a bad label."""
        text = row["label"].strip()
        if not text:
            raise DataError(f"{where}: empty label")
        return text

    def label_from_value(self, value, *, where):
        """The label string of a track attribute's ``value`` (never ``None``);
        ``DataError`` saying why it is unusable (``where`` names the track)."""
        return _single_value(value)

    def label_names(self, label_strings, *, target_columns):
        """The dataset's ordered label names, from its clips' label strings."""
        return sorted(set(label_strings))

    def group_strata(self, label_strings, groups):
        """One stratum per group (a Series indexed by group) for drawing splits:
        the group's most common label (``label_strings``, ``groups``: aligned Series)."""
        return label_strings.groupby(groups).agg(lambda s: Counter(s).most_common(1)[0][0])

    def clip_stratum(self, label_string):
        """The stratum of one clip for drawing splits: its (first) label."""
        return label_string.split("|")[0]


class Multiclass(TaskType):
    """One class per clip among the labels; cross-entropy; accuracy."""

    name = "multiclass"
    primary_metric = "accuracy"
    default_columns = ("accuracy",)
    has_classes = True

    def decide(self, scores):
        return np.asarray(scores).argmax(axis=1).astype(np.int64)

    def encode(self, label_strings, *, labels):
        index = {name: i for i, name in enumerate(labels)}
        unknown = sorted({s for s in label_strings if s not in index})
        if unknown:
            raise DataError(f"labels {unknown[:5]} are not among the task's labels {labels}")
        return np.array([index[s] for s in label_strings], dtype=np.int64)

    def validate_targets(self, y, *, n_rows, n_outputs):
        return validate_class_indices(y, n=n_rows, n_classes=n_outputs)

    def train_targets(self, y, *, device):
        import torch

        return torch.from_numpy(y.astype(np.int64)).to(device)

    def loss(self, outputs, targets):
        import torch.nn.functional as F

        return F.cross_entropy(outputs, targets)

    def loss_gradient(self, logits, targets):
        import torch

        rows, n_classes = logits.shape[1], logits.shape[2]
        grad = torch.softmax(logits, dim=-1)
        # minus the one-hot targets; a comparison, not an indexed write, which
        # in deterministic mode costs a device sync per call on CUDA
        classes = torch.arange(n_classes, device=logits.device)
        grad.sub_((targets.unsqueeze(1) == classes).to(grad.dtype))
        return grad.mul_(1.0 / rows)

    def _metrics(self, y_true, scores, *, labels, groups, ensemble):
        return {"accuracy": _metrics.accuracy(y_true, scores.argmax(axis=1))}

    def batched_scorer(self, y_valid, *, labels, groups=None):
        import torch

        y_valid_t = torch.from_numpy(np.asarray(y_valid).astype(np.int64))

        def primary(scores):
            return (scores.argmax(dim=-1) == y_valid_t).double().mean(dim=1).numpy()

        return primary

    def fit_linear_cv(self, X, y, *, n_outputs, folds, seed, c_grid, alpha_grid):
        from sklearn.linear_model import LogisticRegressionCV

        coef = np.zeros((n_outputs, X.shape[1]))
        intercept = np.zeros(n_outputs)
        classes = np.unique(y)
        if len(classes) == 1:
            intercept[:] = -1.0
            intercept[classes[0]] = 1.0
            return coef, intercept, None
        model = LogisticRegressionCV(Cs=list(c_grid), cv=folds, max_iter=500, random_state=seed)
        model.fit(X, y)
        if len(classes) == 2:  # one decision function: class 1 versus class 0
            coef[classes[1]], intercept[classes[1]] = model.coef_[0], model.intercept_[0]
        else:
            coef[classes], intercept[classes] = model.coef_, model.intercept_
        # Classes never seen in train can never be predicted.
        unseen = np.setdiff1d(np.arange(n_outputs), classes)
        intercept[unseen] = intercept[classes].min() - 1e3
        return coef, intercept, {"C": float(model.C_[0])}

    def unit_values(self, y_true, scores, *, labels, groups=None, ensemble=None):
        y_true = self._validate_y_true(y_true, validate_scores(scores, n_outputs=len(labels)))
        # accuracy_score is the mean of these 0/1 values
        return {"accuracy": ((np.asarray(scores).argmax(axis=1) == y_true).astype(float), None)}


class Key(Multiclass):
    """Musical key per clip, scored per song: MIREX weighted score of pooled clips.

    Clips are pooled per song with one of ``ENSEMBLE_STRATEGIES``; every
    validation evaluation takes the best strategy (ties: their order), as
    jukemir's ``best_strategy``, and the test split uses the one chosen there.
    """

    name = "key"
    primary_metric = "weighted_score"
    scores_songs = True
    default_columns = ("weighted_score", "accuracy")
    ensemble_strategies = ENSEMBLE_STRATEGIES
    #: the pooling of a probe that chose none (quick protocol records, old probes)
    default_ensemble = "mean_prob"

    def _metrics(self, y_true, scores, *, labels, groups, ensemble):
        return _metrics.key_metrics(y_true, scores, labels=labels, groups=groups, ensemble=ensemble)

    def unit_values(self, y_true, scores, *, labels, groups=None, ensemble=None):
        import mir_eval

        labels = validate_labels(labels)
        scores = validate_scores(scores, n_outputs=len(labels))
        y_true = self._validate_y_true(y_true, scores)
        groups = np.arange(len(y_true)) if groups is None else np.asarray(groups)
        # each song's pooled decision scored once (a song's pooling never sees another song)
        song_ids, song_pred = _metrics.ensemble_song_scores(
            scores, groups, strategy=ensemble or self.default_ensemble
        )
        _, song_of_clip = np.unique(groups, return_inverse=True)
        song_true = np.empty(len(song_ids), dtype=np.int64)
        song_true[song_of_clip] = y_true
        if (song_true[song_of_clip] != y_true).any():
            song = groups[song_true[song_of_clip] != y_true][0]
            raise DataError(f"the clips of song {song!r} carry different keys")
        weighted = np.array(
            [
                mir_eval.key.weighted_score(labels[ref], labels[est])
                for ref, est in zip(song_true, song_pred, strict=True)
            ]
        )
        clip_right = (scores.argmax(axis=1) == y_true).astype(float)
        n_songs = len(song_ids)
        return {
            "weighted_score": (weighted, None),
            "accuracy": ((song_true == song_pred).astype(float), None),
            "clip_accuracy": (
                np.bincount(song_of_clip, weights=clip_right, minlength=n_songs),
                np.bincount(song_of_clip, minlength=n_songs).astype(float),
            ),
        }

    def validation_metrics(self, scores, y_valid, *, labels, groups=None):
        best_strategy, best_metrics = None, None
        for strategy in self.ensemble_strategies:
            values = self.metrics(
                y_true=y_valid, scores=scores, labels=labels, groups=groups, ensemble=strategy
            )
            if best_metrics is None or values["primary"] > best_metrics["primary"]:
                best_strategy, best_metrics = strategy, values
        return best_strategy, best_metrics

    def evaluate(self, *, y_true, scores, labels, groups=None, ensemble=None):
        return self.metrics(
            y_true=y_true,
            scores=scores,
            labels=labels,
            groups=groups,
            ensemble=ensemble or self.default_ensemble,
        )

    def batched_scorer(self, y_valid, *, labels, groups=None):
        return KeyScorer(y_valid, labels=labels, groups=groups, strategies=self.ensemble_strategies)

    def label_from_row(self, row, *, target_columns, where):
        return key_class(
            super().label_from_row(row, target_columns=target_columns, where=where), where=where
        )

    def label_from_value(self, value, *, where):
        return key_class(_single_value(value), where=where)

    def label_names(self, label_strings, *, target_columns):
        return list(KEY_LABELS)


class KeyScorer:
    """The key primary of a stack of configs' outputs: the best of the song poolings,
    through a table of ``mir_eval.key.weighted_score`` over every label pair."""

    def __init__(self, y_valid, *, labels, groups, strategies):
        import mir_eval
        import torch

        y_valid = np.asarray(y_valid)
        groups = np.arange(len(y_valid)) if groups is None else np.asarray(groups)
        _, song_of_clip = np.unique(groups, return_inverse=True)
        self.n_songs = int(song_of_clip.max()) + 1
        self.song_true = np.empty(self.n_songs, dtype=np.int64)
        self.song_true[song_of_clip] = y_valid
        self.song_of_clip = torch.from_numpy(song_of_clip.astype(np.int64))
        self.song_counts = torch.bincount(self.song_of_clip, minlength=self.n_songs).double()
        self.strategies = tuple(strategies)
        self.key_table = np.array(
            [[mir_eval.key.weighted_score(ref, est) for est in labels] for ref in labels]
        )

    def __call__(self, scores):
        # the best value, whichever strategy has it, as ``Key.validation_metrics``
        predicted = self.song_predictions(scores)
        return np.max(
            [self.key_table[self.song_true[None, :], p].mean(axis=1) for p in predicted], axis=0
        )

    def song_predictions(self, scores):
        """Per strategy, the predicted key of every song of every config, (k, n_songs),
        as ``mirprobe.metrics.ensemble_song_scores`` pools them."""
        import torch
        import torch.nn.functional as F

        scores = scores.double()
        k, n_classes = len(scores), scores.shape[-1]
        index = self.song_of_clip[None, :, None].expand(k, -1, n_classes)

        def mean(values):
            pooled = torch.zeros(k, self.n_songs, n_classes, dtype=torch.float64)
            return pooled.index_add_(1, self.song_of_clip, values) / self.song_counts[:, None]

        votes = torch.zeros(k, self.n_songs, n_classes, dtype=torch.float64)
        votes.index_add_(1, self.song_of_clip, F.one_hot(scores.argmax(dim=-1), n_classes).double())
        maxima = torch.full((k, self.n_songs, n_classes), -math.inf, dtype=torch.float64)
        maxima = maxima.scatter_reduce(1, index, scores, reduce="amax")
        pooled = {
            "vote": votes,
            "max_logit": maxima,
            "mean_logit": mean(scores),
            "mean_prob": mean(torch.softmax(scores, dim=-1)),
        }
        return [pooled[strategy].argmax(dim=-1).numpy() for strategy in self.strategies]


class Multilabel(TaskType):
    """Any number of tags per clip; BCE with logits; macro ROC-AUC."""

    name = "multilabel"
    primary_metric = "roc_auc_macro"
    default_columns = ("roc_auc_macro", "ap_macro")

    def decide(self, scores):
        return (np.asarray(scores) > 0).astype(np.uint8)

    def resampled_metrics(self, y_true, scores, *, labels, metrics, draws):
        from mirprobe.bootstrap import RANKED_METRICS, ranked_distribution

        wanted = [m for m in metrics if m in RANKED_METRICS]
        return ranked_distribution(y_true, scores, wanted, draws=draws) if wanted else {}

    def encode(self, label_strings, *, labels):
        index = {name: i for i, name in enumerate(labels)}
        y = np.zeros((len(label_strings), len(labels)), dtype=np.uint8)
        for row, tags in enumerate(label_strings):
            for tag in filter(None, tags.split("|")):
                if tag not in index:
                    raise DataError(f"tag {tag!r} is not among the task's tags")
                y[row, index[tag]] = 1
        return y

    def validate_targets(self, y, *, n_rows, n_outputs):
        return validate_target_matrix(y, shape=(n_rows, n_outputs), binary=True)

    def check_validation_signal(self, y_valid):
        n_positive = y_valid.sum(axis=0)
        if not ((n_positive > 0) & (n_positive < len(y_valid))).any():
            raise DataError(
                "no tag has both positive and negative examples in the valid split; "
                "ROC-AUC is undefined there, so early stopping has no signal"
            )

    def loss(self, outputs, targets):
        import torch.nn.functional as F

        return F.binary_cross_entropy_with_logits(outputs, targets)

    def loss_gradient(self, logits, targets):
        import torch

        scale = 1.0 / (logits.shape[1] * logits.shape[2])
        return (torch.sigmoid(logits) - targets).mul_(scale)

    def _metrics(self, y_true, scores, *, labels, groups, ensemble):
        return _metrics.multilabel_metrics(y_true, scores, labels=labels)

    def validation_metrics_stack(self, score_list, y_valid, *, labels, groups=None):
        # all configs at once, from ranks (equal to scikit-learn to float rounding)
        values = _metrics.multilabel_metrics_batched(y_valid, np.stack(score_list), labels=labels)
        return [None] * len(values), values

    def batched_scorer(self, y_valid, *, labels, groups=None):
        import torch

        y_valid = np.asarray(y_valid)
        n_positive = y_valid.sum(axis=0)
        scorable = np.flatnonzero((n_positive > 0) & (n_positive < len(y_valid)))
        positive = y_valid[:, scorable].astype(bool)
        scorable_t = torch.from_numpy(scorable)

        def primary(scores):
            # Ranks of the raw (float32) outputs: the order and ties are those
            # of their float64 copies, so no conversion is needed.
            auc, _ = _metrics.ranked_binary_scores(
                positive, scores[:, :, scorable_t].numpy(), need_ap=False
            )
            return auc.mean(axis=1)

        return primary

    def fit_linear_cv(self, X, y, *, n_outputs, folds, seed, c_grid, alpha_grid):
        from sklearn.linear_model import LogisticRegressionCV

        coef = np.zeros((n_outputs, X.shape[1]))
        intercept = np.zeros(n_outputs)
        regularization = []
        for tag in range(n_outputs):
            column = y[:, tag]
            if column.min() == column.max():
                intercept[tag] = 1.0 if column[0] else -1.0
                regularization.append(None)
                continue
            model = LogisticRegressionCV(
                Cs=list(c_grid), cv=folds, scoring="roc_auc", max_iter=500
            ).fit(X, column)
            coef[tag], intercept[tag] = model.coef_[0], model.intercept_[0]
            regularization.append({"C": float(model.C_[0])})
        return coef, intercept, regularization

    def label_from_row(self, row, *, target_columns, where):
        tags = [t.strip() for t in row["label"].strip().split(TAG_SEPARATOR) if t.strip()]
        bad = [t for t in tags if "|" in t]
        if bad:
            raise DataError(f"{where}: tag {bad[0]!r} contains '|'")
        return "|".join(sorted(set(tags)))

    def label_from_value(self, value, *, where):
        tags = [str(t) for t in value] if not isinstance(value, str) else [value]
        return "|".join(sorted(set(tags)))

    def label_names(self, label_strings, *, target_columns):
        return sorted({t for s in label_strings for t in _tags(s)})

    def group_strata(self, label_strings, groups):
        """The group's rarest tag (ties: the first by name; no tags: ``""``)."""
        freq = Counter(t for s in label_strings for t in _tags(s))

        def rarest(labels):
            tags = {t for s in labels for t in _tags(s)}
            return min(tags, key=lambda t: (freq[t], t)) if tags else ""

        return label_strings.groupby(groups).agg(rarest)


class Regression(TaskType):
    """Real-valued outputs per clip; MSE; mean R² over outputs."""

    name = "regression"
    primary_metric = "r2_mean"

    def resampled_metrics(self, y_true, scores, *, labels, metrics, draws):
        from mirprobe.bootstrap import r2_distribution

        wanted = [m for m in metrics if m.startswith("r2_")]
        return r2_distribution(y_true, scores, labels, wanted, draws=draws) if wanted else {}

    def encode(self, label_strings, *, labels):
        try:
            y = np.array([[float(v) for v in s.split("|")] for s in label_strings], np.float32)
        except ValueError as error:
            raise DataError(f"regression labels must be |-joined floats ({error})") from None
        if y.ndim != 2 or y.shape[1] != len(labels):
            raise DataError(
                f"regression labels have shape {y.shape}, {len(labels)} outputs expected"
            )
        return y

    def validate_targets(self, y, *, n_rows, n_outputs):
        return validate_target_matrix(y, shape=(n_rows, n_outputs), binary=False)

    def loss(self, outputs, targets):
        import torch.nn.functional as F

        return F.mse_loss(outputs, targets)

    def loss_gradient(self, logits, targets):
        scale = 1.0 / (logits.shape[1] * logits.shape[2])
        return (logits - targets).mul_(2.0 * scale)

    def _metrics(self, y_true, scores, *, labels, groups, ensemble):
        return _metrics.regression_metrics(y_true, scores, labels=labels)

    def table_columns(self, labels):
        return [f"r2_{label}" for label in labels] + ["r2_mean"]

    def batched_scorer(self, y_valid, *, labels, groups=None):
        import torch

        y64 = np.asarray(y_valid).astype(np.float64)
        y_valid_t = torch.from_numpy(y64)
        ss_tot = ((y64 - y64.mean(axis=0)) ** 2).sum(axis=0)

        def primary(scores):
            scores = scores.double()
            if (ss_tot == 0).any():  # scikit-learn's conventions for constant targets
                return np.array(
                    [
                        self.metrics(y_true=y_valid, scores=row.numpy(), labels=labels)["primary"]
                        for row in scores
                    ]
                )
            ss_res = ((y_valid_t - scores) ** 2).sum(dim=1).numpy()
            return (1 - ss_res / ss_tot).mean(axis=1)

        return primary

    def fit_linear_cv(self, X, y, *, n_outputs, folds, seed, c_grid, alpha_grid):
        from sklearn.linear_model import RidgeCV

        model = RidgeCV(alphas=list(alpha_grid)).fit(X, y)
        coef = model.coef_.reshape(n_outputs, -1).astype(np.float64)
        intercept = np.broadcast_to(model.intercept_, (n_outputs,)).astype(np.float64)
        return coef, intercept, {"alpha": float(model.alpha_)}

    uses_target_columns = True

    def user_label_columns(self, target_columns):
        return list(target_columns)

    def label_from_row(self, row, *, target_columns, where):
        values = []
        for column in target_columns:
            text = row[column].strip()
            try:
                value = float(text)
            except ValueError:
                value = float("nan")
            if not np.isfinite(value):
                raise DataError(f"{where}: target {column} {text!r} is not a finite number")
            values.append(repr(value))
        return "|".join(values)

    def label_from_value(self, value, *, where):
        """A number, or the first value of a list or array."""
        array = np.atleast_1d(np.asarray(value, dtype=float))
        if array.size == 0 or not np.isfinite(array[0]):
            raise DataError(f"{value!r} is not a finite number")
        return repr(float(array[0]))

    def label_names(self, label_strings, *, target_columns):
        return list(target_columns)

    def group_strata(self, label_strings, groups):
        """The quartile of the group's mean first target (one stratum where fewer
        than four distinct means)."""
        import pandas as pd

        first = label_strings.map(lambda s: float(s.split("|")[0]))
        means = first.groupby(groups).mean()
        if means.nunique() < 4:
            return means.map(lambda _: "")
        return pd.qcut(means, 4, labels=False, duplicates="drop").astype(str)

    def clip_stratum(self, label_string):
        """No strata: one stratum of every clip."""
        return ""


TASK_TYPES = {task.name: task for task in (Multiclass(), Key(), Multilabel(), Regression())}
"""The config's ``task_type`` string -> its task-type object."""


def task_type_of(name) -> TaskType:
    """The task-type object named ``name`` (a ``TaskType`` is returned as is)."""
    if isinstance(name, TaskType):
        return name
    try:
        return TASK_TYPES[name]
    except (KeyError, TypeError):
        raise ConfigError(
            f"unknown task type {name!r}; expected one of {list(TASK_TYPES)}"
        ) from None


def _song_task_names():
    return " / ".join(repr(t.name) for t in TASK_TYPES.values() if t.scores_songs)
