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
                "provenance": [f"{_cell(wc)}/train.json", f"{_cell(wc)}/test.json"],
            }[rule]
            assert sorted(inputs) == sorted(expected), rule


def test_the_table_reads_provenance_records_only(planned_inputs):
    [(_, inputs)] = planned_inputs["table"]
    assert inputs == [f"results/provenance/synth_key/{r}/{layer}.json" for r, layer in CELLS]
