"""mirprobe.compare: clip-by-clip agreement of two representations, and its
configuration (the workflow run is in test_jukemir_precomputed)."""

import numpy as np
import pytest

from mirprobe.compare import compare_features, linear_cka
from mirprobe.config import validate_config
from mirprobe.errors import ConfigError, DataError


def _hsic_cka(X, Y):
    # the Gram-matrix definition (Kornblith et al. 2019, eq. 4), independent of
    # the feature-space computation under test
    n = len(X)
    H = np.eye(n) - np.ones((n, n)) / n
    K, L = X @ X.T, Y @ Y.T

    def hsic(A, B):
        return np.trace(A @ H @ B @ H)

    return hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L))


def test_linear_cka_equals_the_gram_matrix_definition():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 6))
    Y = X @ rng.standard_normal((6, 9)) + 0.5 * rng.standard_normal((40, 9))
    assert linear_cka(X, Y) == pytest.approx(_hsic_cka(X, Y), rel=1e-10)
    assert 0 < linear_cka(X, Y) < 1
    # invariant to rotation and isotropic scaling, not to an anisotropic one
    Q, _ = np.linalg.qr(rng.standard_normal((6, 6)))
    assert linear_cka(X, 3.0 * X @ Q) == pytest.approx(1.0)
    assert linear_cka(X, X * np.arange(1, 7)) < 0.99
    with pytest.raises(DataError, match="constant"):
        linear_cka(X, np.ones((40, 2)))


def test_compare_aligns_clips_by_id_and_reports_what_differs():
    rng = np.random.default_rng(1)
    ids = [f"c{i}" for i in range(30)]
    B = rng.standard_normal((30, 8)).astype(np.float32)
    A = B.copy()
    A[7] += 0.5  # one clip differs
    # a in another order, missing c0 and with an extra clip
    order = rng.permutation(np.arange(1, 30))
    ids_a = [ids[i] for i in order] + ["extra"]
    X_a = np.vstack([A[order], np.zeros((1, 8), np.float32)])
    record = compare_features(ids_a, X_a, ids, B)
    assert record["n_common"] == 29
    assert record["only_a"] == {"count": 1, "first": ["extra"]}
    assert record["only_b"] == {"count": 1, "first": ["c0"]}
    assert record["dim_a"] == record["dim_b"] == 8
    assert record["worst_clips"][0]["clip_id"] == "c7"
    want = np.linalg.norm(A[7] - B[7]) / np.linalg.norm(B[7])
    assert record["worst_clips"][0]["relative_error"] == pytest.approx(want, rel=1e-6)
    assert record["relative_error"]["max"] == pytest.approx(want, rel=1e-6)
    assert record["relative_error"]["median"] == 0.0
    assert record["cosine"]["median"] == pytest.approx(1.0)
    assert record["cosine"]["min"] < 1.0
    assert record["max_abs_diff"] == pytest.approx(0.5, rel=1e-6)


def test_representations_of_different_sizes_get_cka_only():
    rng = np.random.default_rng(2)
    ids = [f"c{i}" for i in range(20)]
    X = rng.standard_normal((20, 4))
    record = compare_features(ids, X, ids, X @ rng.standard_normal((4, 10)))
    assert (record["dim_a"], record["dim_b"]) == (4, 10)
    assert "cosine" not in record and 0 < record["linear_cka"] <= 1
    with pytest.raises(DataError, match="only 1 clips"):
        compare_features(["x"], X[:1], ["x", "y"], X[:2])


def _config(compare, layers=None):
    return {
        "datasets": {"synth": {"kind": "synthetic_key"}},
        "representations": {
            "chroma": {"extractor": "chroma"},
            "mfcc": {"extractor": "mfcc"},
            "tiny": {
                "extractor": "musicgen",
                "params": {"architecture": "tiny", "random_weights": True},
                "layers": layers or [1, 2],
            },
        },
        "compare": compare,
    }


@pytest.mark.parametrize(
    ("compare", "problem"),
    [
        ([{"a": "chroma", "b": "wav2vec"}], r"compare\[0\]\.b: unknown representation 'wav2vec'"),
        ([{"a": "tiny", "b": "chroma"}], r"compare\[0\]\.a: 'tiny' has probed layers"),
        ([{"a": "tiny/0", "b": "chroma"}], r"layer '0' of 'tiny' is not probed"),
        ([{"a": "chroma", "b": "chroma/stats"}], "both chroma/stats"),
        ([{"a": "chroma", "b": "mfcc"}, {"a": "chroma/stats", "b": "mfcc"}], "listed twice"),
        ([{"a": "chroma", "c": "mfcc"}], "'c' was unexpected"),
    ],
)
def test_a_wrong_comparison_fails_at_config_time(compare, problem):
    with pytest.raises(ConfigError, match=problem):
        validate_config(_config(compare))


def test_comparisons_resolve_default_and_named_layers():
    from mirprobe.config import resolve_comparisons

    config = validate_config(_config([{"a": "tiny/2", "b": "chroma"}]))
    assert resolve_comparisons(config) == [
        {
            "id": "tiny.2--chroma.stats",
            "a": {"name": "tiny", "layer": "2"},
            "b": {"name": "chroma", "layer": "stats"},
        }
    ]
