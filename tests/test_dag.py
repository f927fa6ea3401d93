"""The rule graph is the pipeline (issue 16, item 4), as the real snakemake CLI plans it.

The default config's graph has one edge per data flow: the probe rules read
feature shards only (which carry their clips, splits, labels, exclusions and
the dataset's records, see mirprobe.features), and the table reads provenance
records only.
"""

import re
import subprocess
import sys

import pytest

from conftest import REPO

#: the default config's rule graph: (upstream rule, downstream rule)
EDGES = {
    ("prepare_dataset", "resample"),
    ("resample", "extract"),
    ("extract", "train_probe"),
    ("extract", "evaluate_probe"),
    ("train_probe", "evaluate_probe"),
    ("extract", "provenance"),
    ("train_probe", "provenance"),
    ("evaluate_probe", "provenance"),
    ("provenance", "table"),
    ("table", "all"),
    ("provenance", "all"),
    ("extract", "all"),
}


def _snakemake(workdir, *args):
    """The default config (the Snakefile's own) planned in an empty ``workdir``."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_the_default_rule_graph_has_one_edge_per_data_flow(tmp_path):
    dot = _snakemake(tmp_path, "--rulegraph")
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', dot, flags=re.M))
    edges = {(names[a], names[b]) for a, b in re.findall(r"^\s*(\d+) -> (\d+)", dot, flags=re.M)}
    assert dot.count("->") == len(edges) <= 12
    assert edges == EDGES


@pytest.fixture(scope="module")
def planned_inputs(tmp_path_factory):
    """``{rule: [(wildcards, [input paths])]}`` of the default config's dry run."""
    text = _snakemake(tmp_path_factory.mktemp("plan"), "--dry-run")
    jobs = {}
    for block in re.split(r"^rule ", text, flags=re.M)[1:]:
        rule = block.split(":", 1)[0]
        inputs = re.search(r"^\s+input: (.*)$", block, flags=re.M)
        wildcards = re.search(r"^\s+wildcards: (.*)$", block, flags=re.M)
        jobs.setdefault(rule, []).append(
            (
                dict(w.split("=", 1) for w in wildcards.group(1).split(", ")) if wildcards else {},
                inputs.group(1).split(", ") if inputs else [],
            )
        )
    return jobs


def _features(dataset, representation):
    return [f"results/features/{dataset}/{representation}/shard-{k:03d}.npz" for k in range(4)]


def _cell(wc):
    return f"results/probes/{wc['dataset']}/{wc['representation']}/{wc['layer']}"


CELLS = [("chroma", "stats"), ("mfcc", "stats"), ("musicnn", "mean_max")]


def test_the_probe_rules_read_feature_shards_and_their_cells_records_only(planned_inputs):
    for rule in ("train_probe", "evaluate_probe", "provenance"):
        jobs = planned_inputs[rule]
        assert sorted((wc["representation"], wc["layer"]) for wc, _ in jobs) == CELLS
        for wc, inputs in jobs:
            # the default config's 960 clips, in shards of 240
            expected = _features("synth_key", wc["representation"]) + {
                "train_probe": [],
                "evaluate_probe": [f"{_cell(wc)}/probe.pt"],
                "provenance": [
                    f"{_cell(wc)}/train.json",
                    f"{_cell(wc)}/test.json",
                    # named in the record by digest; the table's intervals read it
                    f"{_cell(wc)}/predictions.npz",
                ],
            }[rule]
            assert sorted(inputs) == sorted(expected), rule


def test_the_table_reads_provenance_records_only(planned_inputs):
    [(_, inputs)] = planned_inputs["table"]
    assert inputs == [f"results/provenance/synth_key/{r}/{layer}.json" for r, layer in CELLS]


# -- what the feature shards carry stands in for metadata.csv and the manifests ----------


def _carrying_shard(path, rows, *, n_clips, excluded=(), prepare_extra=None):
    """A feature shard of the clips ``rows`` (metadata rows with ``row``) of a dataset of
    ``n_clips``, carrying it as mirprobe.features.shard_dataset does; ``excluded``: clip ids
    the resampling excluded (not embedded)."""
    import json

    import numpy as np

    dataset = {
        "prepare": {"task_type": "multiclass", "labels": ["a", "b"], "n_clips": n_clips}
        | (prepare_extra or {}),
        "resample": [{"stage": "resample", "shard": rows[0]["row"] // 2, "wall_s": 0.0}],
        "clips": rows,
        "excluded_at_resampling": [
            {"clip_id": c, "source": f"{c}.wav", "reason": "cannot decode"} for c in excluded
        ],
    }
    embedded = [r["clip_id"] for r in rows if r["clip_id"] not in excluded]
    np.savez(
        path,
        clip_ids=np.array(embedded, dtype=str),
        profile=np.array("{}"),
        excluded=np.array("[]"),
        dataset=np.array(json.dumps(dataset)),
        **{"layer:x": np.arange(len(embedded), dtype=np.float32)[:, None]},
    )
    return path


def _rows(start, stop):
    splits = ["train", "valid", "test"]
    return [
        {"row": i, "clip_id": f"c{i}", "split": splits[i % 3], "label": "ab"[i % 2], "song_id": "s"}
        for i in range(start, stop)
    ]


def test_feature_shards_give_the_datasets_clips_in_metadata_order_and_every_exclusion(tmp_path):
    from mirprobe.features import load_shard_datasets

    # given out of order: the metadata comes back in metadata.csv order all the same
    paths = [
        _carrying_shard(tmp_path / "1.npz", _rows(2, 4), n_clips=4, excluded=["c3"]),
        _carrying_shard(tmp_path / "0.npz", _rows(0, 2), n_clips=4),
    ]
    carried = load_shard_datasets(paths)
    assert carried.metadata.to_dict("records") == [
        {k: r[k] for k in ("clip_id", "split", "label", "song_id")} for r in _rows(0, 4)
    ]
    assert carried.excluded == [{"clip_id": "c3", "source": "c3.wav", "reason": "cannot decode"}]
    assert [r["shard"] for r in carried.resample] == [0, 1]
    assert carried.prepare["labels"] == ["a", "b"]


def test_a_missing_or_repeated_feature_shard_is_an_error_not_fewer_clips(tmp_path):
    from mirprobe.errors import DataError
    from mirprobe.features import load_shard_datasets

    first = _carrying_shard(tmp_path / "0.npz", _rows(0, 2), n_clips=4)
    with pytest.raises(DataError, match=r"account for 2 clips of the dataset's 4 \(a shard is"):
        load_shard_datasets([first])
    second = _carrying_shard(tmp_path / "1.npz", _rows(2, 4), n_clips=4)
    with pytest.raises(DataError, match=r"account for 6 clips .*\(rows \[0, 1\] more than once"):
        load_shard_datasets([first, second, first])
    other = _carrying_shard(tmp_path / "2.npz", _rows(2, 4), n_clips=4, prepare_extra={"x": 1})
    with pytest.raises(DataError, match=r"2.npz: made from another preparation of the dataset"):
        load_shard_datasets([first, other])
