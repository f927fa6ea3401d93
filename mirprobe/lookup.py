"""Find a cell's provenance record by the names a reader has: the table's row
and column titles (``"MFCC"``, ``"SynthKey"``) as well as the configuration's
names (``mfcc``, ``synth_key``), case-insensitively; a miss lists the choices.
"""

import json
from pathlib import Path

#: what each digest of a provenance record covers (printed by ``--digests``)
DIGESTS = {
    "data.metadata_sha256": (
        "sha256 of results/datasets/<dataset>/metadata.csv: every clip's id, song, "
        "label, split and audio path as prepared"
    ),
    "data.audio_sha256": (
        "sha256 of results/datasets/<dataset>/checksums.tsv, which lists the sha256 of "
        "every source audio file: so it covers the audio bytes"
    ),
    "config.sha256": (
        "sha256 of the whole resolved configuration (the config files' and --config "
        "values, every schema default filled in), canonical JSON with sorted keys"
    ),
    "config.files[].sha256": (
        "sha256 of the bytes of each config file the run read (config.files[].path, "
        "in order; --config values are in config.overrides)"
    ),
    "code.stages.*.source_sha256": (
        "sha256 over the sources each stage ran (its script and the mirprobe modules it imports)"
    ),
    "selected_probe / probe_identity.sha256": "sha256 of the selected probe's saved file",
    "predictions.sha256": (
        "sha256 of the cell's predictions.npz: per-clip test targets, scores and "
        "decisions, and the clip ids of each split"
    ),
}


class RecordNotFound(LookupError):
    """No single record matches; the message lists the choices."""


def _cells(results):
    for path in sorted(Path(results, "provenance").glob("*/*/*.json")):
        with open(path) as handle:
            record = json.load(handle)
        cell = record.get("cell") or {}
        datasets = ((record.get("config") or {}).get("resolved") or {}).get("datasets") or {}
        task_label = (datasets.get(cell.get("task")) or {}).get("label") or cell.get("task")
        yield path, cell, task_label


def _matches(wanted, *names):
    return wanted.casefold() in {str(n).casefold() for n in names if n is not None}


def find_record(results, task, representation, layer=None):
    """The path of the one provenance record of ``task`` (dataset name or column
    title) and ``representation`` (config name, table row title, or the row title
    of one layer), at ``layer`` if given."""
    cells = list(_cells(results))
    if not cells:
        raise RecordNotFound(f"{Path(results, 'provenance')}: no provenance records")
    tasks = [c for c in cells if _matches(task, c[1].get("task"), c[2])]
    if not tasks:
        choices = sorted({f"{c[1].get('task')} ({c[2]})" for c in cells})
        raise RecordNotFound(f"no task {task!r}; choose among {choices}")
    rows = [
        c
        for c in tasks
        if _matches(representation, c[1].get("representation"), c[1].get("row"))
        and (layer is None or str(layer) == c[1].get("layer"))
    ]
    if len(rows) != 1:
        choices = sorted(
            {
                f"{c[1].get('representation')} --layer {c[1].get('layer')} ({c[1].get('row')})"
                for c in tasks
            }
        )
        problem = "no" if not rows else "more than one"
        raise RecordNotFound(
            f"{problem} record of {representation!r}"
            + (f" at layer {layer}" if layer is not None else "")
            + f" on {task!r}; choose among {choices}"
        )
    return rows[0][0]
