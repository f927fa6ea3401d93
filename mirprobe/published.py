"""Differences of computed table rows to their published counterparts (issue 12).

A ``published:`` entry of the config may name, with ``row:``, the computed row
its numbers are the counterpart of: ``representation`` or
``representation/layer``. A representation of several layers stands, per task,
for its layer chosen on validation (best validation primary score, the first in
config order on a tie, as the table's note says). For every value of such an
entry, the difference computed − published in points of percent, the computed
value taken as the table prints it (one decimal), so the three numbers add up.

Written as a markdown table (for the report) and a CSV, one line per
(entry, task, column), in the config's order.
"""

import csv
import io

from .atomic import write_text
from .errors import DataError


def _counterpart(name, records, *, task, where):
    """The record of ``task`` that ``row: name`` stands for."""
    rep, _, layer = name.partition("/")
    cells = [r for r in records if r["cell"]["representation"] == rep and r["cell"]["task"] == task]
    if layer:
        cells = [r for r in cells if r["cell"]["layer"] == layer]
    if not cells:
        known = sorted({r["cell"]["representation"] for r in records})
        raise DataError(f"{where}: row {name!r} names no computed cell of {task}; rows: {known}")
    scores = [float(r["valid_metrics"]["primary"]) for r in cells]
    return cells[max(range(len(cells)), key=lambda i: (scores[i], -i))]


def published_differences(records, published, *, task_titles):
    """One dict per published value whose entry names a computed ``row``:
    ``published`` (the entry's label), ``row`` (the computed row's title),
    ``task``, ``column`` (the table's column title), ``computed``,
    ``published_value`` and ``difference`` (percent, one decimal).

    ``records``: the cells' provenance records (each names its cell and holds its
    test and validation metrics); ``task_titles``: ``{dataset: column title}``.
    """
    from .tables import metric_title

    out = []
    for index, entry in enumerate(published or []):
        if not entry.get("row"):
            continue
        for task, values in entry["values"].items():
            where = f"published[{index}] ({entry['label']})"
            record = _counterpart(entry["row"], records, task=task, where=where)
            for metric, quoted in values.items():
                if metric not in record["test_metrics"]:
                    raise DataError(f"{where}: {task} has no computed {metric!r}")
                computed = round(100 * float(record["test_metrics"][metric]), 1)
                out.append(
                    {
                        "published": entry["label"],
                        "row": record["cell"]["row"],
                        "task": task_titles.get(task, task),
                        "column": f"{task_titles.get(task, task)} {metric_title(metric)}",
                        "computed": computed,
                        "published_value": float(quoted),
                        "difference": round(computed - float(quoted), 1),
                    }
                )
    return out


HEADER = ["Computed row", "Published row", "Column", "Computed", "Published", "Δ"]


def _lines(differences):
    return [
        [
            d["row"],
            f"{d['published']} [published]",
            d["column"],
            f"{d['computed']:.1f}",
            f"{d['published_value']:.1f}",
            f"{d['difference']:+.1f}",
        ]
        for d in differences
    ]


def write_differences(differences, *, md_path, csv_path):
    """The differences as markdown and CSV (written atomically)."""
    from tabulate import tabulate

    if differences:
        text = tabulate(
            _lines(differences), headers=HEADER, tablefmt="github", disable_numparse=True
        )
        text += (
            "\n\nΔ = computed − published, in points of percent (the computed value as the "
            "table prints it). A row named by a representation of several layers is its "
            "layer chosen on validation.\n"
        )
    else:
        text = (
            "No `published:` entry names a computed row (`row:`), so there is nothing to compare.\n"
        )
    write_text(md_path, text)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(_lines(differences))
    write_text(csv_path, buffer.getvalue())
