"""``mirprobe.tables``: the results table's numbers, header and clip counts, in every
format, checked against values worked out by hand."""

import csv

import pytest

from mirprobe.tables import build_table, percent, table_metrics, write_tables


@pytest.mark.parametrize(
    "value, shown",
    [
        (0.12345, "12.3"),
        (0.98765, "98.8"),  # rounded, not truncated (98.7)
        (0.6789, "67.9"),
        (0.5, "50.0"),
        (1.0, "100.0"),
        (0.0, "0.0"),
        (-0.0456, "-4.6"),  # R² can be negative
        (None, ""),
    ],
)
def test_percent_rounds_to_one_decimal(value, shown):
    assert percent(value) == shown


def _cells():
    record = lambda metrics, counts, excluded=0: {  # noqa: E731
        "metrics": {**metrics, "primary": next(iter(metrics.values()))},
        "clip_counts": dict(zip(("train", "valid", "test"), counts, strict=True)),
        "n_excluded": excluded,
    }
    return {
        (("mfcc", "0"), "genre"): record({"accuracy": 0.41379}, (443, 197, 290)),
        (("mfcc", "0"), "key"): record(
            {"weighted_score": 0.15667, "accuracy": 0.09879}, (100, 20, 50), 2
        ),
        (("chroma", "0"), "genre"): record({"accuracy": 0.29655}, (443, 197, 290)),
        (("chroma", "0"), "key"): record(
            {"weighted_score": 0.56749, "accuracy": 0.44951}, (100, 20, 50), 2
        ),
    }


TASKS = [
    ("genre", "GTZAN", table_metrics("multiclass")),
    ("key", "GS", table_metrics("key")),
]
ROWS = [(("mfcc", "0"), "MFCC"), (("chroma", "0"), "Chroma")]


def test_build_table_puts_each_rounded_metric_in_its_column():
    header, body = build_table(_cells(), tasks=TASKS, rows=ROWS)
    assert header == ["Representation", "GTZAN Acc", "GS Weighted", "GS Acc"]
    assert body == [["MFCC", "41.4", "15.7", "9.9"], ["Chroma", "29.7", "56.7", "45.0"]]


def test_written_csv_and_markdown_hold_the_rounded_numbers_and_clip_counts(tmp_path):
    paths = {f: tmp_path / f"table.{f}" for f in ("md", "csv", "tex")}
    write_tables(_cells(), tasks=TASKS, rows=ROWS, paths=paths, protocol_note=" (test)")
    with open(paths["csv"], newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines == [
        [
            "Representation",
            "GTZAN Acc",
            "GS Weighted",
            "GS Acc",
            "GTZAN clips (train/valid/test/excluded)",
            "GS clips (train/valid/test/excluded)",
        ],
        ["MFCC", "41.4", "15.7", "9.9", "443/197/290/0", "100/20/50/2"],
        ["Chroma", "29.7", "56.7", "45.0", "443/197/290/0", "100/20/50/2"],
    ]
    md = paths["md"].read_text().splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in md[:4]]
    assert cells[0] == ["Representation", "GTZAN Acc", "GS Weighted", "GS Acc"]
    assert cells[2:] == [["MFCC", "41.4", "15.7", "9.9"], ["Chroma", "29.7", "56.7", "45.0"]]
    assert "- GS / MFCC: 100/20/50 train/valid/test clips, 2 excluded (see provenance)" in md
    tex_rows = [
        [c.strip() for c in line.rstrip("\\ ").split("&")]
        for line in paths["tex"].read_text().splitlines()
        if "&" in line
    ]
    assert tex_rows[1:] == [["MFCC", "41.4", "15.7", "9.9"], ["Chroma", "29.7", "56.7", "45.0"]]


def test_layer_chosen_on_validation_is_noted_with_its_rounded_test_score(tmp_path):
    cells = {
        (("rep", "1"), "key"): {
            "metrics": {"primary": 0.40049, "weighted_score": 0.40049, "accuracy": 0.3},
            "clip_counts": {"train": 1, "valid": 1, "test": 1},
        },
        (("rep", "2"), "key"): {
            "metrics": {"primary": 0.55551, "weighted_score": 0.55551, "accuracy": 0.5},
            "clip_counts": {"train": 1, "valid": 1, "test": 1},
        },
    }
    # layer 1 wins on validation although layer 2 is better on test: the note follows validation
    valid = {(("rep", "1"), "key"): 0.7, (("rep", "2"), "key"): 0.6}
    paths = {"md": tmp_path / "table.md"}
    write_tables(
        cells,
        tasks=[("key", "GS", ["weighted_score"])],
        rows=[(("rep", "1"), "Rep L1"), (("rep", "2"), "Rep L2")],
        paths=paths,
        valid_primary=valid,
        representation_labels={"rep": "Rep"},
    )
    assert "- Rep: GS L1 (40.0)\n" in paths["md"].read_text()
