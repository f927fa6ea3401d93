"""Seeds: the selected probe configuration retrained with other seeds (issue 12).

The grid is trained and its configuration selected on validation with the
config's ``seed`` (rule train_probe); that probe is the one evaluated on test,
and the table's score. With ``probe.seeds: [s1, s2, ...]`` the selected
configuration is trained again with each listed seed, by the same trainer on
the same train split, early-stopped on validation as in the grid, and scored
once on test (rule retrain_seeds, ``seeds.json``): the grid is not searched
again, so the spread is that of training's randomness (initialisation, batches,
dropout; for ``sklearn_cv``, its cross-validation folds) at a fixed choice.

:func:`seed_summary` gives, per test metric, the mean and the sample standard
deviation (``ddof=1``; null for a single seed) over the seeds, which the table
shows beside each score and its bootstrap interval: the bootstrap says how much
the score moves with the test clips, the seeds how much with the training.

A listed seed equal to ``seed`` retrains the main probe: the serial trainer
gives its numbers bit for bit, the batched one to float tolerance.
"""

import math
import numbers


def seed_configs(selected_config, *, probe_config, seeds):
    """The configuration to train for each of ``seeds``: the selected one with its
    seed replaced (``selected_config``: train.json's ``selected.config``)."""
    from .probes import ProbeConfig, expand_grid

    if probe_config["trainer"] == "sklearn_cv":
        # the quick protocol takes only a seed from the grid's configs (probes.grid)
        return [
            expand_grid(
                probe_config["grid"],
                eval_every=probe_config["eval_every"],
                patience=probe_config["patience"],
                max_steps=probe_config["max_steps"],
                seed=seed,
            )[0]
            for seed in seeds
        ]
    return [ProbeConfig.from_dict({**selected_config, "seed": seed}) for seed in seeds]


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def seed_summary(runs):
    """``{metric: {"mean", "sd", "n"}}`` over the test metrics of ``runs`` (each a
    ``{"seed", "test_metrics"}``), for the metrics every run has as a number."""
    metrics = [m for m, v in runs[0]["test_metrics"].items() if _is_number(v)]
    summary = {}
    for metric in metrics:
        values = [run["test_metrics"].get(metric) for run in runs]
        if not all(_is_number(v) for v in values):
            continue
        mean = math.fsum(values) / len(values)
        sd = (
            math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
            if len(values) > 1
            else None
        )
        summary[metric] = {"mean": mean, "sd": sd, "n": len(values)}
    return summary
