"""Clip-by-clip agreement of two representations' features on one dataset.

The config's ``compare`` list names pairs (``a``, ``b``: ``representation`` or
``representation/layer``). Its main use is an audit: mirprobe's Jukebox, CLMR,
Choi or chroma features against the CALM paper's own
(:mod:`mirprobe.extractors.jukemir_precomputed`) on the same clips, so that a
reimplementation is checked against the features the paper probed before its
table is trusted.

Per dataset and pair (``b`` is the reference):

``n_common``, ``only_a``, ``only_b``
    clips embedded by both, and those embedded by one only (counted, and the
    first ids listed; clips excluded by the bad-audio policy are missing from
    a representation's shards).
``linear_cka``
    linear centred kernel alignment (Kornblith et al., ICML 2019) of the two
    clip-by-feature matrices, in [0, 1]: 1 for representations equal up to a
    rotation and isotropic scaling; defined for different dimensions too.
Where the dimensions agree, also
``cosine`` (mean, min, median over clips), ``relative_error``
    (``||a - b|| / ||b||`` per clip: median, max), ``max_abs_diff`` and the
    ``worst_clips`` (largest relative error), to find what differs.
"""

import json
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import DataError

#: how many clip ids are listed where a count alone would hide which
LISTED = 5


def linear_cka(X, Y):
    """Linear CKA of ``X`` (n, p) and ``Y`` (n, q), computed in feature space."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    cross = np.linalg.norm(Y.T @ X) ** 2
    norms = np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)
    if norms == 0:
        raise DataError("linear CKA: a representation is constant over the clips compared")
    return float(cross / norms)


def compare_features(ids_a, X_a, ids_b, X_b):
    """The agreement record of two feature matrices keyed by clip id (module docstring)."""
    row_a = {clip: i for i, clip in enumerate(ids_a)}
    row_b = {clip: i for i, clip in enumerate(ids_b)}
    common = sorted(set(row_a) & set(row_b))
    only_a = sorted(set(row_a) - set(row_b))
    only_b = sorted(set(row_b) - set(row_a))
    if len(common) < 2:
        raise DataError(
            f"only {len(common)} clips have features in both representations "
            f"({len(row_a)} and {len(row_b)} clips); nothing to compare"
        )
    A = np.asarray(X_a, dtype=np.float64)[[row_a[c] for c in common]]
    B = np.asarray(X_b, dtype=np.float64)[[row_b[c] for c in common]]
    record = {
        "n_common": len(common),
        "only_a": {"count": len(only_a), "first": only_a[:LISTED]},
        "only_b": {"count": len(only_b), "first": only_b[:LISTED]},
        "dim_a": int(A.shape[1]),
        "dim_b": int(B.shape[1]),
        "linear_cka": linear_cka(A, B),
    }
    if A.shape[1] != B.shape[1]:
        return record
    norm_a = np.linalg.norm(A, axis=1)
    norm_b = np.linalg.norm(B, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.where(norm_a * norm_b > 0, (A * B).sum(axis=1) / (norm_a * norm_b), np.nan)
        relative = np.linalg.norm(A - B, axis=1) / norm_b
    worst = np.argsort(-np.nan_to_num(relative, nan=np.inf))[:LISTED]
    record.update(
        {
            "cosine": {
                "mean": float(np.nanmean(cosine)),
                "min": float(np.nanmin(cosine)),
                "median": float(np.nanmedian(cosine)),
            },
            "relative_error": {
                "median": float(np.nanmedian(relative)),
                "max": float(np.nanmax(relative)),
            },
            "max_abs_diff": float(np.abs(A - B).max()),
            "worst_clips": [
                {"clip_id": common[i], "relative_error": float(relative[i])} for i in worst
            ],
        }
    )
    return record


def compare_stage(*, a, b, a_paths, b_paths, dataset, out_path):
    """Compare the feature shards of ``a`` and ``b`` (``{name, layer}``); write JSON."""
    from .features import load_feature_shards

    ids_a, X_a, _ = load_feature_shards(a_paths, layer=a["layer"])
    ids_b, X_b, _ = load_feature_shards(b_paths, layer=b["layer"])
    try:
        record = compare_features(ids_a, X_a, ids_b, X_b)
    except DataError as error:
        pair = f"{a['name']}/{a['layer']} vs {b['name']}/{b['layer']}"
        raise DataError(f"{dataset}: {pair}: {error}") from error
    record = {"dataset": dataset, "a": a, "b": b, **record}
    with atomic_path(out_path) as tmp:
        Path(tmp).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def write_summary(record_paths, out_path):
    """``results/compare.md``: the summary table of the comparison records."""
    records = [json.loads(Path(p).read_text()) for p in record_paths]
    text = (
        "# Feature agreement\n\n"
        "Clip-by-clip comparison of representations (b is the reference); "
        "see mirprobe/compare.py for the measures.\n\n" + summary_table(records) + "\n"
    )
    with atomic_path(out_path) as tmp:
        Path(tmp).write_text(text)


def summary_table(records):
    """A markdown table of comparison records (one row per dataset and pair)."""
    from tabulate import tabulate

    def fmt(value, digits=4):
        return "" if value is None else f"{value:.{digits}f}"

    rows = [
        [
            r["dataset"],
            f"{r['a']['name']}/{r['a']['layer']}",
            f"{r['b']['name']}/{r['b']['layer']}",
            f"{r['n_common']} (+{r['only_a']['count']}/+{r['only_b']['count']})",
            f"{r['dim_a']}/{r['dim_b']}",
            fmt(r["linear_cka"]),
            fmt((r.get("cosine") or {}).get("mean")),
            fmt((r.get("relative_error") or {}).get("median")),
        ]
        for r in records
    ]
    headers = ["Dataset", "a", "b (reference)", "Clips (only a/only b)", "Dims", "Linear CKA"]
    headers += ["Mean cosine", "Median rel. error"]
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)
