"""Δ to the published rows (issue 12): each ``published:`` entry naming a computed
``row`` gives computed − published per column, for the report."""

import copy

import pytest
import yaml

from conftest import REPO
from mirprobe.config import validate_config
from mirprobe.errors import ConfigError, DataError
from mirprobe.published import published_differences, write_differences


def _record(task, rep, layer, row, *, test, valid):
    return {
        "cell": {"task": task, "representation": rep, "layer": layer, "row": row},
        "test_metrics": test,
        "valid_metrics": {"primary": valid},
    }


RECORDS = [
    _record("gtzan", "chroma", "stats", "Chroma", test={"accuracy": 0.3456}, valid=0.3),
    _record("key", "chroma", "stats", "Chroma", test={"weighted_score": 0.6}, valid=0.5),
    # two layers: gtzan reads layer 12 (best on validation), key layer 6 (a tie: the first)
    _record("gtzan", "mert", "6", "MERT L6", test={"accuracy": 0.70}, valid=0.6),
    _record("gtzan", "mert", "12", "MERT L12", test={"accuracy": 0.75}, valid=0.7),
    _record("key", "mert", "6", "MERT L6", test={"weighted_score": 0.50}, valid=0.4),
    _record("key", "mert", "12", "MERT L12", test={"weighted_score": 0.90}, valid=0.4),
]
TITLES = {"gtzan": "GTZAN", "key": "GiantSteps key"}


def test_each_published_value_gets_its_difference_to_the_named_row():
    published = [
        {
            "label": "Chroma (poster)",
            "row": "chroma",
            "source": "s",
            "values": {"gtzan": {"accuracy": 32.8}, "key": {"weighted_score": 56.5}},
        },
        {"label": "Unmatched", "source": "s", "values": {"gtzan": {"accuracy": 1.0}}},
        {
            "label": "MERT (paper)",
            "row": "mert",
            "source": "s",
            "values": {"gtzan": {"accuracy": 78.6}, "key": {"weighted_score": 63.5}},
        },
        {
            "label": "MERT L6 (paper)",
            "row": "mert/6",
            "source": "s",
            "values": {"gtzan": {"accuracy": 70.0}},
        },
    ]
    got = published_differences(RECORDS, published, task_titles=TITLES)
    table = [(d["row"], d["published"], d["column"], d["computed"], d["difference"]) for d in got]
    assert table == [
        # the computed value as the table prints it (34.6), then the difference
        ("Chroma", "Chroma (poster)", "GTZAN Acc", 34.6, 1.8),
        ("Chroma", "Chroma (poster)", "GiantSteps key Weighted", 60.0, 3.5),
        ("MERT L12", "MERT (paper)", "GTZAN Acc", 75.0, -3.6),
        ("MERT L6", "MERT (paper)", "GiantSteps key Weighted", 50.0, -13.5),
        ("MERT L6", "MERT L6 (paper)", "GTZAN Acc", 70.0, 0.0),
    ]


def test_the_differences_are_written_as_markdown_and_csv(tmp_path):
    published = [
        {"label": "P", "row": "chroma", "source": "s", "values": {"gtzan": {"accuracy": 32.8}}}
    ]
    got = published_differences(RECORDS, published, task_titles=TITLES)
    md, csv_path = tmp_path / "d.md", tmp_path / "d.csv"
    write_differences(got, md_path=md, csv_path=csv_path)
    lines = md.read_text().splitlines()
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == [
        "Computed row",
        "Published row",
        "Column",
        "Computed",
        "Published",
        "Δ",
    ]
    assert [c.strip() for c in lines[2].split("|")[1:-1]] == [
        "Chroma",
        "P [published]",
        "GTZAN Acc",
        "34.6",
        "32.8",
        "+1.8",
    ]
    assert csv_path.read_text().splitlines()[1] == "Chroma,P [published],GTZAN Acc,34.6,32.8,+1.8"
    write_differences([], md_path=md, csv_path=csv_path)
    assert "nothing to compare" in md.read_text()


def test_a_row_with_no_computed_cell_is_an_error():
    published = [
        {"label": "P", "row": "mert/24", "source": "s", "values": {"gtzan": {"accuracy": 1.0}}}
    ]
    with pytest.raises(DataError, match=r"published\[0\] \(P\): row 'mert/24' names no computed"):
        published_differences(RECORDS, published, task_titles=TITLES)


@pytest.fixture
def default_config():
    with open(REPO / "config.yaml") as handle:
        return yaml.safe_load(handle)


@pytest.mark.parametrize("row", ["chroma", "chroma/stats"])
def test_a_published_row_naming_a_representation_is_accepted(default_config, row):
    config = copy.deepcopy(default_config)
    config["published"] = [{"label": "P", "row": row, "source": "s", "values": {}}]
    assert validate_config(config)["published"][0]["row"] == row


@pytest.mark.parametrize("row", ["chromagram", "chroma/12"])
def test_a_published_row_naming_nothing_fails_at_config_time(default_config, row):
    config = copy.deepcopy(default_config)
    config["published"] = [{"label": "P", "row": row, "source": "s", "values": {}}]
    with pytest.raises(ConfigError, match=rf"published\[0\]\.row: '{row}' names no computed row"):
        validate_config(config)
