"""Figures for the Snakemake report (issue 12), drawn with matplotlib (Agg).

Each function draws from records the workflow already wrote (per-clip
predictions, provenance records), writes a PNG atomically and returns the
numbers it drew, so a test can check them.
"""

import numpy as np

from .atomic import atomic_path
from .errors import DataError


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            fig.savefig(handle, format="png", dpi=110, bbox_inches="tight")


def confusion(predictions):
    """``(matrix, labels, unit)``: counts of (true, decided) classes, per song for
    key (the song's pooled decision, as its metrics score it), else per clip."""
    from .metrics import ensemble_song_scores
    from .task_types import task_type_of

    p = predictions
    task = task_type_of(p.task_type)
    if not task.has_classes:
        raise DataError(f"no confusion matrix for a {p.task_type} task")
    n = len(p.labels)
    if task.scores_songs:
        songs, decided = ensemble_song_scores(p.scores, p.song_id, strategy=p.ensemble)
        _, song_of_clip = np.unique(p.song_id, return_inverse=True)
        true = np.empty(len(songs), dtype=np.int64)
        true[song_of_clip] = p.target
        unit = "songs"
    else:
        true, decided, unit = p.target, p.decision, "clips"
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (true, decided), 1)
    return matrix, list(p.labels), unit


def confusion_figure(predictions, path, *, title):
    """A confusion matrix of one cell; returns the matrix drawn."""
    matrix, labels, unit = confusion(predictions)
    plt = _pyplot()
    size = max(4.0, 0.28 * len(labels) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xlabel("decided")
    ax.set_ylabel("true")
    ax.set_title(f"{title} ({int(matrix.sum())} test {unit})", fontsize=9)
    _save(fig, path)
    plt.close(fig)
    return matrix


def layer_scores(records):
    """``(layers, valid, test, chosen)`` of one representation on one task from its
    provenance records (one per layer, in config order): primary scores, and the
    layer chosen on validation (the first on a tie, as the table's note)."""
    if len(records) < 2:
        raise DataError("a per-layer curve needs two layers or more")
    layers = [r["cell"]["layer"] for r in records]
    valid = [float(r["valid_metrics"]["primary"]) for r in records]
    test = [float(r["test_metrics"]["primary"]) for r in records]
    chosen = max(range(len(layers)), key=lambda i: (valid[i], -i))
    return layers, valid, test, layers[chosen]


def layer_figure(records, path, *, title):
    """Validation and test primary score against layer, the chosen layer marked;
    returns what :func:`layer_scores` gives."""
    layers, valid, test, chosen = layer_scores(records)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = np.arange(len(layers))
    ax.plot(x, 100 * np.array(valid), marker="o", label="validation")
    ax.plot(x, 100 * np.array(test), marker="s", label="test")
    at = layers.index(chosen)
    ax.axvline(at, color="grey", linestyle="--", label=f"chosen on validation: {chosen}")
    ax.set_xticks(x, layers)
    ax.set_xlabel("layer")
    ax.set_ylabel("primary metric (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)
    return layers, valid, test, chosen


def selected_curve(record):
    """``(steps, scores, best_step, stopped_by)`` of one cell's provenance record:
    the selected probe's validation primary score at every evaluation, the step
    whose weights were kept (early stopping restores them) and why training
    stopped."""
    probe = record["selected_probe"]
    if not probe.get("curve"):
        raise DataError(
            f"the provenance record of {record['cell']['task']} / {record['cell']['row']} "
            "holds no validation curve (made before curves were recorded); remake it: "
            "snakemake --forcerun train_probe"
        )
    steps = [int(step) for step, _ in probe["curve"]]
    scores = [float(score) for _, score in probe["curve"]]
    if probe["best_step"] not in steps:
        raise DataError(f"best step {probe['best_step']} is not an evaluation of the curve")
    return steps, scores, int(probe["best_step"]), probe.get("stopped_by")


def curve_figure(record, path, *, title):
    """The selected probe's validation curve (primary score against training
    step), the kept step marked; returns what :func:`selected_curve` gives."""
    steps, scores, best_step, stopped_by = selected_curve(record)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(steps, 100 * np.array(scores), marker=".", label="validation")
    best = 100 * scores[steps.index(best_step)]
    ax.axvline(best_step, color="grey", linestyle="--", label=f"kept: step {best_step}")
    ax.plot([best_step], [best], marker="*", markersize=12, color="tab:red", linestyle="")
    ax.set_xlabel("training step" + (f" (stopped by {stopped_by})" if stopped_by else ""))
    ax.set_ylabel("validation primary metric (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    _save(fig, path)
    plt.close(fig)
    return steps, scores, best_step, stopped_by


def report_figures(*, provenance_paths, task_titles, out_dir):
    """Every figure of the report into ``out_dir``: per cell, the selected
    probe's validation curve (``curve--<task>--<rep>--<layer>.png``) and, for a
    multiclass or key cell, a confusion matrix
    (``confusion--<task>--<rep>--<layer>.png``); per multi-layer representation
    and task, a per-layer curve (``layers--<task>--<rep>.png``). Each provenance record names its cell and
    row title; ``task_titles`` maps a dataset to its column title. Returns the
    names written."""
    import json
    from pathlib import Path

    from .predictions import read_predictions
    from .task_types import task_type_of

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, by_rep = [], {}
    for path in provenance_paths:
        with open(path) as handle:
            record = json.load(handle)
        cell = record["cell"]
        task, rep, layer = cell["task"], cell["representation"], cell["layer"]
        by_rep.setdefault((task, rep), []).append(record)
        named = record.get("predictions")
        if not named:
            raise DataError(f"{path}: names no per-clip predictions file")
        predictions = read_predictions(named["path"])
        name = f"curve--{task}--{rep}--{layer}.png"
        title = f"{cell['row']} on {task_titles.get(task, task)}: selected probe"
        curve_figure(record, out_dir / name, title=title)
        written.append(name)
        if task_type_of(predictions.task_type).has_classes:
            name = f"confusion--{task}--{rep}--{layer}.png"
            title = f"{cell['row']} on {task_titles.get(task, task)}"
            confusion_figure(predictions, out_dir / name, title=title)
            written.append(name)
    for (task, rep), records in by_rep.items():
        if len(records) > 1:
            name = f"layers--{task}--{rep}.png"
            layer_figure(records, out_dir / name, title=f"{rep} on {task_titles.get(task, task)}")
            written.append(name)
    return written


def report_published(*, provenance_paths, published, task_titles, md_path, csv_path):
    """The report's table of differences to the ``published:`` rows that name a
    computed row (:mod:`mirprobe.published`), from the cells' provenance records."""
    import json

    from .published import published_differences, write_differences

    records = []
    for path in provenance_paths:
        with open(path) as handle:
            records.append(json.load(handle))
    differences = published_differences(records, published, task_titles=task_titles)
    write_differences(differences, md_path=md_path, csv_path=csv_path)
    return differences
