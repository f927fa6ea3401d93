"""What the trainers share: validated inputs, grid records, dropout and determinism.

``validate_inputs`` checks a grid's data once and ``check_configs`` its
configs (``mirprobe.probes.grid.fit_grid`` or a trainer's own public entry
point); ``validate_inputs`` returns ``ProbeInputs``; the trainers' internal
functions take those and do not check again.
"""

import contextlib
import dataclasses

import numpy as np
import torch

from mirprobe.errors import ConfigError, DataError
from mirprobe.metrics import validate_labels
from mirprobe.probes.config import ProbeConfig
from mirprobe.probes.model import FittedProbe, check_features
from mirprobe.task_types import TASK_TYPES, TaskType, task_type_of


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


@dataclasses.dataclass
class ProbeInputs:
    """A grid's data, checked: features as arrays, targets as the task expects."""

    task: TaskType
    X_train: np.ndarray
    y_train: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray
    labels: list
    valid_groups: np.ndarray | None


def validate_inputs(
    X_train, y_train, X_valid, y_valid, *, task_type, labels, valid_groups
) -> ProbeInputs:
    """Check a grid's data once; ``DataError`` naming the split, ``ConfigError``
    for an unknown task type or song groups where the task pools none."""
    task = task_type_of(task_type)
    labels = validate_labels(labels)
    X_train = check_features(X_train, split="train")
    X_valid = check_features(X_valid, split="valid", n_features=X_train.shape[1])
    y_train = _validate_targets(task, y_train, n_rows=len(X_train), labels=labels, split="train")
    y_valid = _validate_targets(task, y_valid, n_rows=len(X_valid), labels=labels, split="valid")
    if valid_groups is not None:
        if not task.scores_songs:
            songs = " / ".join(repr(t.name) for t in TASK_TYPES.values() if t.scores_songs)
            raise ConfigError(
                f"valid_groups are only used by the {songs} task type, not {task.name!r}"
            )
        valid_groups = np.asarray(valid_groups)
        if valid_groups.shape != (len(X_valid),):
            raise DataError(
                f"valid_groups must give one song id per validation row, shape "
                f"({len(X_valid)},), got {valid_groups.shape}"
            )
    task.check_validation_signal(y_valid)
    return ProbeInputs(task, X_train, y_train, X_valid, y_valid, labels, valid_groups)


def _validate_targets(task, y, *, n_rows, labels, split):
    try:
        return task.validate_targets(y, n_rows=n_rows, n_outputs=len(labels))
    except DataError as error:
        raise DataError(f"{split} targets: {error}") from None


def check_config(config, *, where="config"):
    if not isinstance(config, ProbeConfig):
        raise ConfigError(f"{where} must be a ProbeConfig, got {type(config).__name__}")


def check_configs(configs) -> list:
    """``configs`` as a list, checked once per grid: not empty, each a
    ``ProbeConfig``, none repeated (equal ``uid()``)."""
    configs = list(configs)
    if not configs:
        raise ConfigError("configs is empty; nothing to train")
    seen = {}
    for index, config in enumerate(configs):
        check_config(config, where=f"configs[{index}]")
        uid = config.uid()
        if uid in seen:
            raise ConfigError(
                f"configs[{index}] repeats configs[{seen[uid]}] (uid {uid}); "
                "every config is trained once"
            )
        seen[uid] = index
    return configs


# -- dropout ------------------------------------------------------------------


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


# -- determinism --------------------------------------------------------------


@contextlib.contextmanager
def deterministic_algorithms():
    """Ask torch for deterministic kernels (warn only), restoring the caller's setting."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def fork_devices(torch_device) -> list:
    """The CUDA devices whose RNG ``torch.random.fork_rng`` must fork for ``torch_device``."""
    if torch_device.type == "cuda":
        return [torch_device.index or torch.cuda.current_device()]
    return []
