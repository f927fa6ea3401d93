"""The results table: rows are representations (one per probed layer), column
groups are tasks, cells are test-split metrics of the probe selected on the
validation split, in percent with one decimal as in the CALM and MusicGen
papers' tables.

Written as GitHub markdown (tabulate), CSV and LaTeX (booktabs). The CSV holds
the same rounded numbers plus each task's clip counts, and nothing that varies
between identical runs (no timings, hosts or dates), so rerunning the workflow
from scratch reproduces it byte for byte. Notes under the markdown table say
how many clips each cell used and how many were excluded (see provenance).
"""

import csv
import io

from .atomic import write_text
from .task_types import task_type_of

METRIC_TITLES = {
    "accuracy": "Acc",
    "weighted_score": "Weighted",
    "roc_auc_macro": "ROC-AUC",
    "ap_macro": "AP",
    "r2_mean": "R²",
}


def metric_title(metric):
    if metric in METRIC_TITLES:
        return METRIC_TITLES[metric]
    if metric.startswith("r2_"):
        return f"R² {metric[3:]}"
    return metric


def table_metrics(task_type, configured=None, labels=()):
    """The metrics shown for a task: configured, else the task type's defaults."""
    if configured:
        return list(configured)
    return task_type_of(task_type).table_columns(labels)


def percent(value):
    return "" if value is None else f"{100 * value:.1f}"


def build_table(cells, *, tasks, rows):
    """Header and rows of the table.

    ``tasks``: ordered ``[(task, title, metrics)]``; ``rows``: ordered
    ``[(row_key, title)]``, a row key being ``(representation, layer)``; ``cells``: ``{(row_key, task): test record}``.
    """
    header = ["Representation"] + [
        f"{title} {metric_title(m)}" for _, title, metrics in tasks for m in metrics
    ]
    body = []
    for row_key, row_title in rows:
        line = [row_title]
        for task, _, metrics in tasks:
            record = cells[(row_key, task)]
            for metric in metrics:
                if metric not in record["metrics"]:
                    raise KeyError(
                        f"metric {metric!r} not computed for task {task!r}; have {sorted(record['metrics'])}"
                    )
                line.append(percent(record["metrics"][metric]))
        body.append(line)
    return header, body


def published_rows(published, *, tasks):
    """Table lines of the published numbers (percent, one decimal; blank where none)."""
    body = []
    for row in published or []:
        line = [f"{row['label']} [published]"]
        for task, _, metrics in tasks:
            values = row["values"].get(task, {})
            line += [f"{values[m]:.1f}" if m in values else "" for m in metrics]
        body.append(line)
    return body


def layer_choices(cells, valid_primary, *, tasks, rows, labels):
    """Per multi-layer representation and task, the layer with the best validation
    score (the first in config order on a tie) and that layer's test score."""
    layers_of = {}
    for (representation, layer), _ in rows:
        layers_of.setdefault(representation, []).append(layer)
    lines = []
    for representation, layers in layers_of.items():
        if len(layers) < 2:
            continue
        parts = []
        for task, title, _ in tasks:
            keys = [((representation, layer), task) for layer in layers]
            if any(key not in valid_primary for key in keys):
                continue
            best = max(range(len(layers)), key=lambda i: (valid_primary[keys[i]], -i))
            test = cells[keys[best]]["metrics"]["primary"]
            parts.append(f"{title} L{layers[best]} ({percent(test)})")
        if parts:
            lines.append(f"{labels.get(representation, representation)}: {', '.join(parts)}")
    return lines


def clip_notes(cells, *, tasks, rows):
    notes = []
    for task, title, _ in tasks:
        for row_key, row_title in rows:
            record = cells[(row_key, task)]
            counts = record["clip_counts"]
            excluded = record.get("n_excluded", 0)
            notes.append(
                f"{title} / {row_title}: {counts['train']}/{counts['valid']}/{counts['test']} "
                f"train/valid/test clips"
                + (f", {excluded} excluded (see provenance)" if excluded else "")
            )
    return notes


def seed_spread(spread):
    """``mean ± sd`` of one metric over the seeds, in percent (mean alone for one seed)."""
    if spread["sd"] is None:
        return percent(spread["mean"])
    return f"{percent(spread['mean'])} ± {percent(spread['sd'])}"


def seed_columns(header_titles, *, rows, tasks, summary):
    """CSV header and per-row values of the seeds columns (percent, one decimal; the
    sd blank for a single seed). ``summary``: ``{(row_key, task): {metric: {"mean", "sd"}}}``."""
    header = [f"{t} seeds {stat}" for t in header_titles for stat in ("mean", "sd")]
    values = []
    for row_key, _ in rows:
        line = []
        for task, _, metrics in tasks:
            for metric in metrics:
                spread = summary[(row_key, task)][metric]
                line += [percent(spread["mean"]), percent(spread["sd"])]
        values.append(line)
    return header, values


def with_seed_spread(shown, *, rows, tasks, summary):
    """The table's lines with ``(mean ± sd)`` over the seeds after each computed cell."""
    out = []
    for (row_key, _), line in zip(rows, shown, strict=True):
        cells = [line[0]]
        column = 1
        for task, _, metrics in tasks:
            for metric in metrics:
                cells.append(f"{line[column]} ({seed_spread(summary[(row_key, task)][metric])})")
                column += 1
        out.append(cells)
    return out


def write_tables(
    cells,
    *,
    tasks,
    rows,
    paths,
    protocol_note="",
    published=(),
    valid_primary=None,
    representation_labels=None,
    code_warnings=(),
    uncertainty=None,
    seeds=None,
):
    """Write the table in every format of ``paths`` (``{"md"|"csv"|"tex": path}``).

    ``published``: rows quoted from papers (config ``published``), appended
    after the computed rows and marked ``[published]``. ``valid_primary``
    (``{(row_key, task): validation primary score}``) adds, under the markdown
    table, the layer of each multi-layer representation chosen on validation.
    ``code_warnings`` (cells whose stages ran code other than the current
    sources, from their provenance) are listed under the markdown table.
    ``uncertainty`` (``{"intervals", "comparisons", "confidence"}``, see
    :func:`mirprobe.bootstrap.table_uncertainty`) shows each cell as
    ``value [low, high]`` in markdown and LaTeX, adds interval columns to the
    CSV and lists the paired comparisons under the markdown table.
    ``seeds`` (``{"seeds", "summary"}``, from the cells' provenance records where
    ``probe.seeds`` is set) adds ``(mean ± sd)`` over the seeds after each cell in
    markdown and LaTeX, and ``<column> seeds mean`` / ``seeds sd`` columns to the CSV,
    after the interval columns; without it nothing of them appears.
    """
    from tabulate import tabulate

    header, body = build_table(cells, tasks=tasks, rows=rows)
    quoted = published_rows(published, tasks=tasks)
    notes = clip_notes(cells, tasks=tasks, rows=rows)
    # -- issue 12: bootstrap intervals and paired comparisons
    shown = body
    if uncertainty:
        from .bootstrap import compact_body, comparison_lines, interval_columns

        shown = compact_body(body, rows=rows, tasks=tasks, intervals=uncertainty["intervals"])
        ci_header, ci_values = interval_columns(
            header[1:],
            rows=rows,
            tasks=tasks,
            intervals=uncertainty["intervals"],
            confidence=uncertainty["confidence"],
        )
    # -- issue 12: the selected configuration retrained with probe.seeds
    seed_header, seed_values = [], [[] for _ in rows]
    if seeds:
        shown = with_seed_spread(shown, rows=rows, tasks=tasks, summary=seeds["summary"])
        seed_header, seed_values = seed_columns(
            header[1:], rows=rows, tasks=tasks, summary=seeds["summary"]
        )
    # --
    if "md" in paths:
        text = tabulate(shown + quoted, headers=header, tablefmt="github", disable_numparse=True)
        text += "\n\nTest-split scores in percent of the probe selected on the validation split"
        text += f"{protocol_note}.\nClips per cell:\n" + "".join(f"- {n}\n" for n in notes)
        if quoted:
            text += "Rows marked [published] are quoted, not computed here:\n" + "".join(
                f"- {row['label']}: {row['source']}\n" for row in published
            )
        choices = layer_choices(
            cells,
            valid_primary or {},
            tasks=tasks,
            rows=rows,
            labels=representation_labels or {},
        )
        if choices:
            text += (
                "Layer chosen on validation per task, with its test score (primary metric):\n"
                + "".join(f"- {line}\n" for line in choices)
            )
        if uncertainty:
            text += (
                f"In brackets: {100 * uncertainty['confidence']:g}% bootstrap interval "
                f"({uncertainty['resamples']} resamples of the test clips, of the songs for "
                f"key; seed {uncertainty['seed']}).\n"
            )
            lines = comparison_lines(
                uncertainty["comparisons"], titles={t: title for t, title, _ in tasks}
            )
            if lines:
                text += "Paired differences (same resamples), with their interval:\n" + "".join(
                    f"- {line}\n" for line in lines
                )
        if seeds:
            text += (
                f"In parentheses: mean ± sd of the test score over seeds "
                f"{', '.join(str(s) for s in seeds['seeds'])} (`probe.seeds`), the "
                "selected configuration retrained with each (sample sd, n − 1).\n"
            )
        if code_warnings:
            text += (
                "WARNING: cells not computed by the workflow's current code "
                "(see their provenance, `code.problems`):\n"
                + "".join(f"- {line}\n" for line in code_warnings)
            )
        write_text(paths["md"], text)
    if "csv" in paths:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        count_header = [f"{title} clips (train/valid/test/excluded)" for _, title, _ in tasks]
        extra_header = (ci_header if uncertainty else []) + seed_header
        writer.writerow(header + count_header + extra_header)
        for index, ((row_key, _), line) in enumerate(zip(rows, body, strict=True)):
            counts = []
            for task, _, _ in tasks:
                record = cells[(row_key, task)]
                c = record["clip_counts"]
                counts.append(
                    f"{c['train']}/{c['valid']}/{c['test']}/{record.get('n_excluded', 0)}"
                )
            writer.writerow(
                line + counts + (ci_values[index] if uncertainty else []) + seed_values[index]
            )
        for line in quoted:
            writer.writerow(line + [""] * (len(tasks) + len(extra_header)))
        write_text(paths["csv"], buffer.getvalue())
    if "tex" in paths:
        text = tabulate(
            shown + quoted, headers=header, tablefmt="latex_booktabs", disable_numparse=True
        )
        write_text(paths["tex"], text + "\n")
