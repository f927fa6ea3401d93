"""``mirprobe.probes`` training against answers known in closed form (the serial and
batched trainers agree with each other in tests/test_batched.py; here both must agree
with the mathematics, which a bug they share cannot)."""

import numpy as np
import pytest

from mirprobe.probes import ProbeConfig, fit_grid

WEIGHTS = np.array([1.0, -1.0, 0.5, 2.0])


@pytest.mark.parametrize("trainer", ["serial", "batched"])
def test_input_dropout_shrinks_a_linear_regression_by_the_keep_probability(trainer):
    # Inverted dropout with rate p on independent unit-variance inputs x, target x @ w:
    # the expected loss is E[(x~ @ v - y)^2] with x~ = x * mask / (1 - p), whose minimum is
    # v = (1 - p) * w (the masks add p / (1 - p) to the diagonal of E[x~ x~^T]). A keep
    # scale of (1 - p) instead of 1 / (1 - p) would give v = w / (1 - p).
    p = 0.5
    rng = np.random.default_rng(0)
    X_train = rng.standard_normal((2000, 4)).astype(np.float32)
    X_valid = rng.standard_normal((500, 4)).astype(np.float32)
    config = ProbeConfig(
        standardize=False,
        hidden_sizes=(),
        batch_size=500,
        learning_rate=0.03,
        dropout=p,
        l2=0.0,
        eval_every=25,
        patience=1000,
        max_steps=400,
        seed=0,
    )
    result = fit_grid(
        X_train,
        (X_train @ WEIGHTS)[:, None].astype(np.float32),
        X_valid,
        (X_valid @ WEIGHTS)[:, None].astype(np.float32),
        task_type="regression",
        labels=["y"],
        configs=[config],
        trainer=trainer,
    )
    probe = result.best
    # the fitted slopes, read off the probe's outputs at the unit vectors
    slopes = probe.predict_scores(np.eye(4, dtype=np.float32))[:, 0]
    slopes -= probe.predict_scores(np.zeros((1, 4), dtype=np.float32))[0, 0]
    np.testing.assert_allclose(slopes, (1 - p) * WEIGHTS, atol=0.1)
