"""Short workflow runs to a table, for the tests that check what a dataset gives the
table and provenance (test_present_subsets.py, test_gtzan_layouts.py,
test_folder_workflow.py): one MFCC row and a linear probe trained a few steps."""

import json

from conftest import run, write_config

#: the one representation: MFCC, quick and model-free
MFCC_ROW = {"mfcc": {"extractor": "mfcc", "label": "MFCC"}}
#: one linear probe, stopped early: the table, not the scores, is under test
QUICK_PROBE = {
    "grid": {"hidden_sizes": [[]], "learning_rate": [0.01], "l2": [0.0], "dropout": [0.0]},
    "eval_every": 4,
    "patience": 2,
    "max_steps": 16,
}


def run_mfcc_table(workdir, **config):
    """Write ``workdir``'s config (the tests' SMALL one with ``config``, the MFCC row and
    the quick probe) and run the workflow; returns ``workdir``."""
    write_config(workdir, representations=MFCC_ROW, probe=QUICK_PROBE, **config)
    run(workdir)
    return workdir


def table_header(workdir):
    """The first line of the run's results/table.csv."""
    return (workdir / "results" / "table.csv").read_text().splitlines()[0]


def cell_stats(workdir, dataset, representation="mfcc"):
    """The run's provenance stats.json of one table cell."""
    path = workdir / "results" / "provenance" / dataset / representation / "stats.json"
    return json.loads(path.read_text())
