"""A folder of the user's own audio with a labels table (``kind: folder``).

Configured in YAML only::

    datasets:
      mine:
        kind: folder
        params:
          root: /data/my-recordings        # paths in the table are relative to it
          labels: /data/my-recordings/labels.csv
          task: multiclass                 # multiclass | key | multilabel | regression

Labels table (CSV, or TSV when the name ends in ``.tsv``/``.tab``)
    ``path``
        the audio file, relative to ``root`` (any format soundfile reads:
        WAV, FLAC, Ogg, MP3, ...).
    ``label``
        ``multiclass``: a class name; ``key``: a key in mir_eval's form
        (``C major``, ``F# minor``), validated with ``mir_eval.key.validate_key``
        and spelt with flats as the 24 key classes are; ``multilabel``: tags
        separated by ``;`` (may be empty). ``regression`` has no ``label``
        column but one numeric column per target, named in ``params.targets``.
    ``split`` (optional)
        ``train``, ``valid`` or ``test`` on every row.
    ``offset``, ``duration`` (optional)
        seconds; the clip is ``path[offset : offset + duration]`` (empty
        duration: to the end of the file).
    ``group`` (optional)
        a song or recording id: clips of one group never straddle splits,
        and key predictions are pooled per group. Default: the file, so the
        clips cut from one file stay together.
    ``clip_id`` (optional)
        the clip's id; default: the path without its suffix, ``/`` -> ``__``,
        other characters outside ``[A-Za-z0-9._-]`` -> ``_``, and ``-NNN``
        appended when one file gives several clips.

Splits
    Without a ``split`` column, splits are drawn: groups are shuffled with
    ``params.seed`` and dealt out by ``params.split_fractions`` within each
    stratum (multiclass/key: the group's most common label; multilabel: its
    rarest tag; regression: the quartile of its mean first target), so no
    group straddles splits. The drawn splits are written into the prepared
    ``metadata.csv`` and the seed and fractions into the prepare record.

Checks
    The table is read when the workflow is parsed (the clip count comes from
    it); a missing column, unknown split, bad key, non-numeric target, a file
    that does not exist or a group straddling the given splits is a DataError
    naming the table, row and value. At prepare time every clip's file is
    opened and its length compared with its offset and duration; clips that
    fail are an error or, under ``audio.on_bad_audio: exclude``, kept in the
    table for the resample stage to exclude with the same reason (listed in
    provenance). The sha256 of every file is recorded in ``checksums.tsv`` by
    the prepare stage, and that of the labels table in the prepare record.
"""

import functools
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import AudioDecodeError, ConfigError, DataError
from ..task_types import TASK_TYPES, task_type_of
from .base import SPLITS, Dataset, file_sha256, write_metadata

TASKS = tuple(TASK_TYPES)
DEFAULT_FRACTIONS = {"train": 0.7, "valid": 0.15, "test": 0.15}
OPTIONAL_COLUMNS = ("split", "offset", "duration", "group", "clip_id")

PARAMS_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "required": ["root", "labels", "task"],
    "properties": {
        "root": {"description": "folder the table's paths are relative to", "type": "string"},
        "labels": {"description": "labels table, CSV or TSV (.tsv/.tab)", "type": "string"},
        "task": {"description": "task type", "enum": list(TASKS)},
        "targets": {
            "description": "regression: the numeric columns, one per target",
            "type": "array",
            "items": {"type": "string"},
            "minItems": 1,
            "uniqueItems": True,
        },
        "split_fractions": {
            "description": "fractions of groups drawn into each split (no split column)",
            "type": "object",
            "additionalProperties": False,
            "required": list(SPLITS),
            "properties": {s: {"type": "number", "exclusiveMinimum": 0} for s in SPLITS},
            "default": DEFAULT_FRACTIONS,
        },
        "seed": {"description": "seed of the drawn splits", "type": "integer", "default": 0},
    },
}


def clip_ids_from_paths(paths):
    """Filesystem-safe clip ids from table paths (``-NNN`` for several clips of a file)."""
    stems = [
        re.sub(r"[^A-Za-z0-9._-]+", "_", str(Path(p).with_suffix("")).replace("/", "__"))
        for p in paths
    ]
    counts, seen, ids = Counter(paths), Counter(), []
    for path, stem in zip(paths, stems, strict=True):
        if counts[path] > 1:
            ids.append(f"{stem}-{seen[path]:03d}")
            seen[path] += 1
        else:
            ids.append(stem)
    return ids


def draw_splits(groups, strata, *, fractions, seed):
    """``{group: split}``: groups shuffled with ``seed`` and dealt out stratum by stratum.

    ``groups`` and ``strata`` are aligned lists, one entry per group. Counts are
    rounded cumulatively over the strata, so the totals are the fractions of all
    groups rounded, and small strata still spread over the splits.
    """
    total = sum(fractions[s] for s in SPLITS)
    rng = np.random.default_rng(seed)
    by_stratum = {}
    for group, stratum in zip(groups, strata, strict=True):
        by_stratum.setdefault(stratum, []).append(group)
    assigned, seen, dealt = {}, 0, {"train": 0, "valid": 0}
    for stratum in sorted(by_stratum, key=str):
        members = sorted(by_stratum[stratum], key=str)
        members = [members[i] for i in rng.permutation(len(members))]
        seen += len(members)
        n_train = int(round(seen * fractions["train"] / total)) - dealt["train"]
        n_train = max(0, min(n_train, len(members)))
        n_valid = int(round(seen * (fractions["train"] + fractions["valid"]) / total))
        n_valid = max(
            0, min(n_valid - dealt["train"] - n_train - dealt["valid"], len(members) - n_train)
        )
        dealt["train"] += n_train
        dealt["valid"] += n_valid
        for i, group in enumerate(members):
            assigned[group] = (
                "train" if i < n_train else "valid" if i < n_train + n_valid else "test"
            )
    return assigned


class FolderDataset(Dataset):
    """The user's folder of audio and labels table; see the module docstring."""

    kind = "folder"
    params_schema = PARAMS_SCHEMA
    task_type_param = "task"
    checks_audio_at_prepare = True

    def __init__(self, *, name, params=None, data_home=None):
        super().__init__(name=name, params=params, data_home=data_home)
        import copy

        import jsonschema

        defaults = {
            key: copy.deepcopy(spec["default"])
            for key, spec in PARAMS_SCHEMA["properties"].items()
            if "default" in spec
        }
        self.params = {**defaults, **self.params}
        errors = sorted(
            jsonschema.Draft7Validator(PARAMS_SCHEMA).iter_errors(self.params),
            key=lambda e: [str(x) for x in e.path],
        )
        if errors:
            problems = "; ".join(
                f"params.{'.'.join(map(str, e.path))}: {e.message}"
                if e.path
                else f"params: {e.message}"
                for e in errors
            )
            raise ConfigError(f"dataset {self.name!r} ({self.kind}): {problems}")
        self.task_type = self.params["task"]
        self.task = task_type_of(self.task_type)
        has_targets = "targets" in self.params
        if self.task.uses_target_columns != has_targets:
            raise ConfigError(
                f"dataset {self.name!r} (folder): params.targets "
                + (
                    "names the numeric columns of a regression task"
                    if not has_targets
                    else f"is for task regression only, not {self.task_type}"
                )
            )
        self.root = Path(self.params["root"])
        self.labels_path = Path(self.params["labels"])

    # -- the labels table, read once (at parse time: it gives the clip count) --
    @functools.cached_property
    def table(self):
        """The metadata table without drawn splits, validated row by row."""
        path = self.labels_path
        if not path.is_file():
            raise DataError(f"{path}: labels table not found (params.labels of {self.name!r})")
        if not self.root.is_dir():
            raise DataError(f"{self.root}: audio folder not found (params.root of {self.name!r})")
        sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
        try:
            raw = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, UnicodeDecodeError) as error:
            raise DataError(f"{path}: cannot read the labels table ({error})") from None
        raw.columns = [c.strip() for c in raw.columns]
        needed = ["path"] + self.task.user_label_columns(self.params.get("targets"))
        missing = [c for c in needed if c not in raw.columns]
        if missing:
            raise DataError(
                f"{path}: labels table lacks columns {missing} (it has {list(raw.columns)}; "
                f"task {self.task_type} needs {needed}, optional {list(OPTIONAL_COLUMNS)})"
            )
        if raw.empty:
            raise DataError(f"{path}: labels table has no rows")

        def where(i):
            return f"{path} row {i + 2}"  # row 1 is the header

        rows = []
        for i, rec in enumerate(raw.to_dict("records")):
            rel = rec["path"].strip()
            if not rel:
                raise DataError(f"{where(i)}: empty path")
            audio = self.root / rel
            if not audio.is_file():
                raise DataError(
                    f"{where(i)}: {audio} not found (paths are relative to params.root "
                    f"{self.root}); fix the path or remove the row"
                )
            rows.append(
                {
                    "audio_path": str(audio.resolve()),
                    "path": rel,
                    "offset": self._seconds(rec.get("offset", ""), where(i), "offset", 0.0),
                    "duration": self._seconds(rec.get("duration", ""), where(i), "duration"),
                    "label": self._label(rec, where(i)),
                    "group": rec.get("group", "").strip() or rel,
                    "split": rec.get("split", "").strip(),
                    "clip_id": rec.get("clip_id", "").strip(),
                }
            )
        table = pd.DataFrame(rows)
        if "clip_id" not in raw.columns:
            table["clip_id"] = clip_ids_from_paths(table["path"].tolist())
        empty = [where(i) for i, c in enumerate(table["clip_id"]) if not c]
        if empty:
            raise DataError(f"{empty[0]}: empty clip_id")
        dup = table["clip_id"][table["clip_id"].duplicated()].tolist()
        if dup:
            raise DataError(f"{path}: clip ids {dup[:5]} occur on more than one row")
        if "split" in raw.columns:
            bad = [(where(i), s) for i, s in enumerate(table["split"]) if s not in SPLITS]
            if bad:
                raise DataError(
                    f"{bad[0][0]}: split {bad[0][1]!r}; allowed {list(SPLITS)} "
                    "(or drop the split column to have splits drawn)"
                )
            straddling = table.groupby("group")["split"].nunique()
            straddling = sorted(straddling[straddling > 1].index)
            if straddling:
                raise DataError(
                    f"{path}: groups {straddling[:5]} have clips in more than one split; "
                    "a group (song, recording) must sit in one split"
                )
        return table

    @staticmethod
    def _seconds(text, where, column, default=None):
        text = str(text).strip()
        if not text:
            return default
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"{where}: {column} {text!r} is not a number of seconds") from None
        if not np.isfinite(value) or value < 0 or (column == "duration" and value == 0):
            raise DataError(f"{where}: {column} {text!r} must be a positive number of seconds")
        return value

    def _label(self, rec, where):
        return self.task.label_from_row(rec, target_columns=self.params.get("targets"), where=where)

    # -- the Dataset interface -------------------------------------------------
    def labels(self):
        return self.task.label_names(
            self.table["label"].tolist(), target_columns=self.params.get("targets")
        )

    def num_clips(self):
        return len(self.table)

    def _strata(self, table):
        """One stratum per group (see the module docstring)."""
        return self.task.group_strata(table["label"], table["group"])

    def prepare(self, out_dir, *, threads=1, on_bad_audio="error"):
        from ..audio import BAD_AUDIO_POLICIES

        if on_bad_audio not in BAD_AUDIO_POLICIES:
            raise ConfigError(f"on_bad_audio={on_bad_audio!r}; allowed {BAD_AUDIO_POLICIES}")
        out_dir = Path(out_dir)
        table = self.table.copy()
        bad_audio = check_clips(table, on_bad_audio=on_bad_audio)
        drawn = not (table["split"] != "").all()
        if drawn:
            strata = self._strata(table)
            assigned = draw_splits(
                strata.index.tolist(),
                strata.tolist(),
                fractions=self.params["split_fractions"],
                seed=self.params["seed"],
            )
            table["split"] = table["group"].map(assigned)
        counts = table["split"].value_counts().to_dict()
        empty = [s for s in SPLITS if not counts.get(s)]
        if empty:
            raise DataError(
                f"{self.labels_path}: splits {empty} have no clips ({len(table)} clips in "
                f"{table['group'].nunique()} groups); "
                + (
                    "add clips or change params.split_fractions"
                    if drawn
                    else "give every split some rows"
                )
            )
        metadata = pd.DataFrame(
            {
                "clip_id": table["clip_id"],
                "audio_path": table["audio_path"],
                "offset": table["offset"],
                "duration": table["duration"].map(lambda d: "" if d is None else d),
                "split": table["split"],
                "label": table["label"],
                "song_id": table["group"],
                "source_path": table["path"],
            }
        )
        write_metadata(metadata, out_dir / "metadata.csv")
        return {
            "generator": f"{type(self).__module__}.{type(self).__name__}",
            "kind": self.kind,
            "params": dict(self.params),
            "labels_table": {
                "path": str(self.labels_path),
                "sha256": file_sha256(self.labels_path),
            },
            "root": str(self.root.resolve()),
            "splits": (
                {
                    "drawn": True,
                    "seed": self.params["seed"],
                    "fractions": self.params["split_fractions"],
                    "grouped_by": "group",
                }
                if drawn
                else {"drawn": False, "from": "the table's split column"}
            ),
            "clips_per_split": {s: int(counts[s]) for s in SPLITS},
            "bad_audio": bad_audio,
        }


def check_clips(table, *, on_bad_audio):
    """Open every clip's file and check it holds the clip; ``[{"path", "clip_id", "reason"}]``.

    ``error`` raises one AudioDecodeError naming every bad clip (the first
    MAX_LISTED); ``exclude`` prints and returns them, for provenance: the rows
    stay in the table and the resample stage excludes them with the same reason.
    """
    import soundfile as sf

    from ..audio import bad_clips_message, clip_problem, decode_problem

    infos, bad = {}, []
    for row in table.itertuples(index=False):
        path = row.audio_path
        if path not in infos:
            try:
                info = sf.info(path)
                infos[path] = (info.frames, info.samplerate, None)
            except (sf.LibsndfileError, RuntimeError, ValueError) as error:
                infos[path] = (0, 0, decode_problem(path, error))
        frames, samplerate, problem = infos[path]
        if problem is None and frames <= 0:
            problem = "no audio frames"
        if problem is None:
            problem = clip_problem(
                frames=frames, samplerate=samplerate, offset=row.offset, duration=row.duration
            )
        if problem is not None:
            bad.append((row.clip_id, AudioDecodeError(path, problem)))
    if bad and on_bad_audio == "error":
        raise AudioDecodeError(
            bad[0][1].path,
            bad_clips_message([e for _, e in bad], what="the dataset's labels table"),
        )
    for clip_id, error in bad:
        print(f"bad clip {clip_id}, it will be excluded: {error}", flush=True)
    return [{"path": e.path, "clip_id": c, "reason": e.problem} for c, e in bad]
