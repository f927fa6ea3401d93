"""The grid dispatcher: ``fit_grid`` checks a grid once and hands it to a trainer.

``trainer="serial"`` (``mirprobe.probes.training``, the reference),
``"batched"`` (``mirprobe.probes.batched``) or ``"sklearn_cv"``
(``mirprobe.probes.quick``). The configs and the data are validated here,
once per grid; the trainers' internal entry points take the checked
``ProbeInputs`` and do not check again.
"""

from mirprobe.errors import ConfigError
from mirprobe.probes.batched import train_grid_batched
from mirprobe.probes.common import GridResult, check_configs, grid_record, validate_inputs
from mirprobe.probes.quick import fit_quick_validated
from mirprobe.probes.training import train_validated

TRAINERS = ("serial", "batched", "sklearn_cv")


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
    ``trainer`` selects how the grid is run: ``"serial"`` (one config after
    another), ``"batched"`` (same results, configs sharing a batch size
    trained as one stacked model) or ``"sklearn_cv"`` (the quick protocol,
    whose regularisation is cross-validated on train; ``configs`` only lend
    it their seed).
    """
    if trainer not in TRAINERS:
        raise ConfigError(f"unknown trainer {trainer!r}; expected one of {list(TRAINERS)}")
    configs = check_configs(configs)
    data = validate_inputs(
        X_train,
        y_train,
        X_valid,
        y_valid,
        task_type=task_type,
        labels=labels,
        valid_groups=valid_groups,
    )
    if trainer == "batched":
        return train_grid_batched(data, configs=configs, device=device)
    if trainer == "sklearn_cv":
        return fit_quick_validated(data, seed=configs[0].seed)

    import sys

    from tqdm import tqdm

    best, best_index, records = None, None, []
    # configs done, rate and ETA in the job's log (stderr goes there)
    for index, config in enumerate(
        tqdm(configs, desc="probe grid", unit="config", file=sys.stderr)
    ):
        probe = train_validated(data, config=config, device=device)
        records.append(grid_record(probe))
        score = probe.record.valid_metrics["primary"]
        if best is None or score > best.record.valid_metrics["primary"]:
            best, best_index = probe, index
    return GridResult(best=best, best_config=best.config, best_index=best_index, records=records)
