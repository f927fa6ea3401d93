"""Probe hyperparameters: one frozen ``ProbeConfig``, grids of them, the paper grid.

This module imports no torch, so the workflow can expand grids and name
output files by config uid at parse time.

``ProbeConfig`` fields (jukemir's ``ProbeExperimentConfig`` names in brackets):

``standardize``     fit a StandardScaler on the training split [data_standardization]
``hidden_sizes``    widths of the hidden layers; ``()`` is a linear probe [hidden_layer_sizes]
``batch_size``      examples drawn per step [batch_size]
``learning_rate``   Adam learning rate [learning_rate]
``dropout``         dropout probability, on the input and after every hidden layer [dropout_p]
``l2``              Adam ``weight_decay`` (coupled L2, not AdamW) [l2_weight_decay]
``eval_every``      steps between validation evaluations [early_stopping_eval_frequency]
``patience``        evaluations without improvement before stopping [early_stopping_boredom]
``max_steps``       optional cap on optimisation steps; ``None`` means none
``seed``            seeds batch sampling, initialisation and dropout [seed]

Values are normalised on construction (floats become ``float``, counts
``int``, ``hidden_sizes`` a tuple), so equal settings give equal configs and
equal ``uid()``s however they were spelled (``0`` or ``0.0``, list or tuple).
``uid()`` is the sha1 of ``json.dumps(to_dict(), sort_keys=True)``: identity
by content, as jukemir's ``ProbeExperimentConfig.uid``.

``expand_grid(grid, **constants)`` turns ``{field: [values, ...]}`` into the
cartesian product of configs. The order is deterministic and independent of
the grid's key order: fields vary in ``ProbeConfig`` field order, the last
field fastest, and values in the order given. ``PAPER_GRID`` is jukemir's
216-config grid (Castellon et al. 2021, section 4).
"""

import dataclasses
import hashlib
import itertools
import json
import math
import numbers
import types

from mirprobe.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class ProbeConfig:
    """Hyperparameters of one probe; see the module docstring."""

    standardize: bool
    hidden_sizes: tuple[int, ...]
    batch_size: int
    learning_rate: float
    dropout: float
    l2: float
    eval_every: int = 8
    patience: int = 256
    max_steps: int | None = None
    seed: int = 0

    def __post_init__(self):
        if not _is_bool(self.standardize):
            raise ConfigError(f"standardize must be true or false, got {self.standardize!r}")
        if isinstance(self.hidden_sizes, (str, bytes)) or not hasattr(
            self.hidden_sizes, "__iter__"
        ):
            raise ConfigError(
                f"hidden_sizes must be a list of layer widths, got {self.hidden_sizes!r}"
            )
        hidden_sizes = tuple(
            _as_int("hidden_sizes entry", width, minimum=1) for width in self.hidden_sizes
        )
        normalised = {
            "standardize": bool(self.standardize),
            "hidden_sizes": hidden_sizes,
            "batch_size": _as_int("batch_size", self.batch_size, minimum=1),
            "learning_rate": _as_float("learning_rate", self.learning_rate),
            "dropout": _as_float("dropout", self.dropout),
            "l2": _as_float("l2", self.l2),
            "eval_every": _as_int("eval_every", self.eval_every, minimum=1),
            "patience": _as_int("patience", self.patience, minimum=1),
            "max_steps": None
            if self.max_steps is None
            else _as_int("max_steps", self.max_steps, minimum=0),
            "seed": _as_int("seed", self.seed, minimum=0),
        }
        if not normalised["learning_rate"] > 0:
            raise ConfigError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not 0 <= normalised["dropout"] < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not normalised["l2"] >= 0:
            raise ConfigError(f"l2 must be >= 0, got {self.l2!r}")
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        """Return the config as a JSON-serialisable dict (``hidden_sizes`` a list)."""
        fields = dataclasses.asdict(self)
        fields["hidden_sizes"] = list(self.hidden_sizes)
        return fields

    @classmethod
    def from_dict(cls, fields: dict) -> "ProbeConfig":
        """Build a config from ``to_dict()`` output; unknown keys raise ``ConfigError``."""
        _check_field_names(fields, where="probe config")
        return cls(**fields)

    def uid(self) -> str:
        """Return the sha1 hex digest of the sorted JSON of ``to_dict()``."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha1(text.encode("utf-8")).hexdigest()


FIELD_NAMES = tuple(field.name for field in dataclasses.fields(ProbeConfig))

PAPER_GRID = types.MappingProxyType(
    {
        "standardize": (False, True),
        "hidden_sizes": ((), (512,)),
        "batch_size": (64, 256),
        "learning_rate": (1e-5, 1e-4, 1e-3),
        "dropout": (0.25, 0.5, 0.75),
        "l2": (0.0, 1e-4, 1e-3),
    }
)


def expand_grid(grid: dict, **constants) -> list[ProbeConfig]:
    """Return one ``ProbeConfig`` per point of the cartesian product of ``grid``.

    Parameters
    ----------
    grid : mapping of field name -> non-empty list of values
    **constants : field values shared by every config (e.g. ``patience=16``)

    Returns
    -------
    list of ProbeConfig, fields varying in ``ProbeConfig`` field order (last
    fastest), values in the order given.
    """
    _check_field_names(grid, where="probe grid")
    _check_field_names(constants, where="probe grid constants")
    both = sorted(set(grid) & set(constants))
    if both:
        raise ConfigError(f"fields {both} are given both as grid axes and as constants")
    axes = []
    for name in FIELD_NAMES:
        if name not in grid:
            continue
        values = grid[name]
        if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
            raise ConfigError(f"probe grid field {name!r} must be a list of values, got {values!r}")
        values = list(values)
        if not values:
            raise ConfigError(f"probe grid field {name!r} has no values")
        axes.append((name, values))
    names = [name for name, _ in axes]
    configs = []
    for point in itertools.product(*(values for _, values in axes)):
        fields = dict(constants)
        fields.update(zip(names, point, strict=True))
        try:
            configs.append(ProbeConfig(**fields))
        except TypeError as error:  # a required field is neither axis nor constant
            raise ConfigError(f"incomplete probe grid: {error}") from None
    return configs


def _check_field_names(fields, *, where):
    unknown = sorted(set(fields) - set(FIELD_NAMES))
    if unknown:
        raise ConfigError(
            f"unknown {where} field(s) {unknown}; expected some of {list(FIELD_NAMES)}"
        )


def _as_int(name, value, *, minimum):
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    if not float(value).is_integer():
        raise ConfigError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value!r}")
    return value


def _as_float(name, value):
    if _is_bool(value) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value!r}")
    return value


def _is_bool(value):
    return type(value).__name__ in ("bool", "bool_")
