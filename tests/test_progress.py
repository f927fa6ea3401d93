"""The probe grid reports its progress (configs done, rate) on stderr, the job's log."""

import numpy as np

from mirprobe.probes import expand_grid, fit_grid


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    return X, y


def test_the_serial_grid_reports_configs_done(capsys):
    X, y = _data()
    configs = expand_grid(
        {"learning_rate": [1e-3, 1e-2]},
        hidden_sizes=(),
        standardize=True,
        batch_size=32,
        dropout=0.0,
        l2=0.0,
        patience=2,
        max_steps=20,
    )
    fit_grid(
        X[:80], y[:80], X[80:], y[80:], task_type="multiclass", labels=["a", "b"], configs=configs
    )
    log = capsys.readouterr().err
    assert "probe grid: 100%" in log
    assert "2/2" in log and "config/s" in log


def test_the_batched_grid_reports_configs_done_across_its_groups(capsys):
    X, y = _data()
    # two batch sizes: two groups trained one after the other; configs stop at
    # different steps (patience 1 against 3, max_steps 40), each counted once
    configs = expand_grid(
        {"learning_rate": [1e-3, 1e-1], "batch_size": [16, 32], "patience": [1, 3]},
        hidden_sizes=(),
        standardize=True,
        dropout=0.0,
        l2=0.0,
        eval_every=2,
        max_steps=40,
    )
    assert len(configs) == 8
    fit_grid(
        X[:80],
        y[:80],
        X[80:],
        y[80:],
        task_type="multiclass",
        labels=["a", "b"],
        configs=configs,
        trainer="batched",
    )
    log = capsys.readouterr().err
    assert "probe grid (batched): 100%" in log
    assert "8/8" in log and "config/s" in log
    assert "9/8" not in log
