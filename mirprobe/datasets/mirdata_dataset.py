"""Any mirdata dataset, by name and version (``kind: mirdata``).

::

    datasets:
      beatport:
        kind: mirdata
        params:
          name: beatport_key            # mirdata.list_datasets()
          version: 1.0.0                # default: mirdata's default version
          label: key                    # track attribute (dotted: tempo.value)
          task: key
          data_home: /data/mir_datasets/beatport_key
          index: /data/indexes/beatport_key_index_1.0.0.json   # offline use

Data
    The files are read from ``params.data_home`` (default
    ``<config data_home>/<name>``, mirdata's own convention); nothing is
    downloaded. mirdata 1.0 ships no index files and fetches them from Zenodo
    at first use; ``params.index`` names a local copy (mirdata's own cached
    copy is used when present).

Verification (``params.verify``)
    ``strict`` (default): every track of the index must have its audio
    present, and mirdata's ``validate()`` must find no missing or md5-mismatched
    file among the present tracks' files. ``present``: the tracks whose audio
    is present are used, those without are counted and listed, and the prepare
    record and the table say "subset (N of M clips)"; a file whose md5 differs
    from the index is kept and listed with its sha256 (the prepare stage
    records every audio file's sha256 in ``checksums.tsv``). Every clip's
    audio is opened up front under ``audio.on_bad_audio``.

Labels (``params.label``, a track attribute; read when the workflow is parsed)
    ``multiclass``: a string; ``key``: a string, or a list holding one key
    (beatport_key), validated with mir_eval; ``multilabel``: a list of tags
    (mtg_jamendo's ``tags``); ``regression``: a number, or the first value of
    a list or array (e.g. ``tempo.tempos``). A track whose label is missing,
    empty or (for ``key``) holds several keys is left out and listed, with its
    reason, in the prepare record.

Splits
    mirdata's ``get_track_splits(**params.split_args)`` where the dataset
    defines splits (its ``validation`` is ``valid``; tracks in none of them
    are left out and listed), else drawn seeded, stratified by label and
    grouped by track as for ``kind: folder`` (``params.split_fractions``,
    ``params.seed``). A split with no clips is listed in the prepare record
    (probing needs clips in all three).
"""

import copy
import functools
import re
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, DataError
from ..task_types import task_type_of
from .base import SPLITS, Dataset, write_metadata
from .folder import DEFAULT_FRACTIONS, TASKS, draw_splits
from .remote import check_decodable, subset_label

#: mirdata split names -> mirprobe's
SPLIT_NAMES = {"train": "train", "validation": "valid", "valid": "valid", "test": "test"}

PARAMS_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "additionalProperties": False,
    "required": ["name", "label", "task"],
    "properties": {
        "name": {"description": "mirdata dataset name", "type": "string"},
        "version": {
            "description": "mirdata dataset version",
            "type": "string",
            "default": "default",
        },
        "label": {
            "description": "track attribute holding the label (dotted path)",
            "type": "string",
        },
        "task": {"description": "task type", "enum": list(TASKS)},
        "data_home": {
            "description": "the dataset's folder (null = <data_home>/<name>)",
            "type": ["string", "null"],
            "default": None,
        },
        "index": {
            "description": "local mirdata index file (null = mirdata's own copy)",
            "type": ["string", "null"],
            "default": None,
        },
        "verify": {"enum": ["strict", "present"], "default": "strict"},
        "split_args": {
            "description": "arguments of mirdata's get_track_splits (e.g. split_number)",
            "type": "object",
            "default": {},
        },
        "split_fractions": {
            "type": "object",
            "additionalProperties": False,
            "required": list(SPLITS),
            "properties": {s: {"type": "number", "exclusiveMinimum": 0} for s in SPLITS},
            "default": DEFAULT_FRACTIONS,
        },
        "seed": {"type": "integer", "default": 0},
    },
}


def attribute(track, dotted):
    value = track
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


class MirdataDataset(Dataset):
    """One mirdata dataset; see the module docstring."""

    kind = "mirdata"
    params_schema = PARAMS_SCHEMA
    task_type_param = "task"
    checks_audio_at_prepare = True

    def __init__(self, *, name, params=None, data_home=None):
        super().__init__(name=name, params=params, data_home=data_home)
        import jsonschema

        defaults = {
            k: copy.deepcopy(v["default"])
            for k, v in PARAMS_SCHEMA["properties"].items()
            if "default" in v
        }
        self.params = {**defaults, **self.params}
        errors = list(jsonschema.Draft7Validator(PARAMS_SCHEMA).iter_errors(self.params))
        if errors:
            problems = "; ".join(
                f"params.{'.'.join(map(str, e.path)) or ''}: {e.message}" for e in errors
            )
            raise ConfigError(f"dataset {self.name!r} (mirdata): {problems}")
        self.task_type = self.params["task"]
        self.task = task_type_of(self.task_type)

    @property
    def root(self):
        if self.params["data_home"]:
            return Path(self.params["data_home"])
        if self.data_home is None:
            raise ConfigError(
                f"dataset {self.name!r} (mirdata): set params.data_home to the folder holding "
                f"{self.params['name']}, or the config's data_home to its parent"
            )
        return self.data_home / self.params["name"]

    @functools.cached_property
    def loader(self):
        import mirdata

        from .remote import mirdata_dataset

        name, version = self.params["name"], self.params["version"]
        if name not in mirdata.list_datasets():
            raise ConfigError(
                f"dataset {self.name!r}: params.name {name!r} is not a mirdata dataset "
                f"(mirdata {mirdata.__version__}: see mirdata.list_datasets())"
            )
        if not self.root.is_dir():
            raise DataError(f"{self.root}: folder of mirdata {name} not found (params.data_home)")
        try:
            loader = mirdata_dataset(
                name, data_home=self.root, version=version, index_path=self.params["index"]
            )
        except ValueError as error:  # an unknown version
            raise ConfigError(f"dataset {self.name!r}: mirdata {name} {version}: {error}") from None
        if not Path(loader.index_path).is_file():
            raise DataError(
                f"{loader.index_path}: mirdata {name} {version} has no local index (mirdata "
                "1.0 downloads indexes at first use); download it once and set params.index"
            )
        return loader

    @functools.cached_property
    def table(self):
        """``(table, left_out, missing)``: clips with labels, tracks left out, tracks absent."""
        loader = self.loader
        rows, left_out, missing = [], [], []
        for track_id in loader.track_ids:
            track = loader.track(track_id)
            audio = track.audio_path
            if audio is None or not Path(audio).is_file():
                missing.append({"track_id": track_id, "path": str(audio)})
                continue
            try:
                label = self._label(attribute(track, self.params["label"]), track_id)
            except (AttributeError, DataError, FileNotFoundError, TypeError, ValueError) as error:
                left_out.append({"track_id": track_id, "reason": f"label: {error}"})
                continue
            rows.append(
                {
                    # a track id may hold characters a file name cannot
                    "clip_id": re.sub(r"[^A-Za-z0-9._-]+", "_", str(track_id)),
                    "track_id": str(track_id),
                    "audio_path": str(Path(audio).resolve()),
                    "label": label,
                }
            )
        if missing and self.params["verify"] == "strict":
            shown = "\n  ".join(f"{m['track_id']}: {m['path']}" for m in missing[:20])
            raise DataError(
                f"mirdata {loader.name} under {self.root}: {len(missing)} of "
                f"{len(loader.track_ids)} tracks have no audio:\n  {shown}\n"
                "Place the original files there, or set params.verify: present to run on the "
                "tracks present (the table then says it is a subset)"
            )
        if not rows:
            raise DataError(
                f"mirdata {loader.name} under {self.root}: no track has usable audio and label"
            )
        return pd.DataFrame(rows), left_out, missing

    def _label(self, value, track_id):
        if value is None:
            raise DataError("none")
        return self.task.label_from_value(value, where=f"track {track_id}")

    def labels(self):
        return self.task.label_names(
            self.table[0]["label"].tolist(), target_columns=[self.params["label"]]
        )

    def num_clips(self):
        return len(self.table[0])

    def _splits(self, table):
        """``(split per clip, how)``; tracks in no official split get None."""
        try:
            official = self.loader.get_track_splits(**self.params["split_args"])
        except NotImplementedError:
            official = None
        if official is None:
            strata = table["label"].map(self.task.clip_stratum)
            assigned = draw_splits(
                table["clip_id"].tolist(),
                strata.tolist(),
                fractions=self.params["split_fractions"],
                seed=self.params["seed"],
            )
            how = {
                "drawn": True,
                "seed": self.params["seed"],
                "fractions": self.params["split_fractions"],
                "grouped_by": "track",
            }
            return table["clip_id"].map(assigned), how
        unknown = sorted(set(official) - set(SPLIT_NAMES))
        if unknown:
            raise DataError(
                f"mirdata {self.loader.name}'s splits {unknown} have no meaning here; "
                f"known: {sorted(SPLIT_NAMES)}"
            )
        split_of = {str(t): SPLIT_NAMES[s] for s, ids in official.items() for t in ids}
        how = {
            "drawn": False,
            "from": "mirdata get_track_splits",
            "args": self.params["split_args"],
        }
        return table["track_id"].map(split_of), how

    def prepare(self, out_dir, *, threads=1, on_bad_audio="error"):
        from .remote import mirdata_report

        out_dir = Path(out_dir)
        table, left_out, missing = self.table
        table = table.copy()
        split, how = self._splits(table)
        outside = table["track_id"][split.isna()].tolist()
        if outside:
            # the clip count was fixed at parse time: a track outside every split is an error
            raise DataError(
                f"mirdata {self.loader.name}: tracks {outside[:5]} ({len(outside)}) are in none "
                "of its splits; choose params.split_args that cover them"
            )
        table["split"] = split
        report = mirdata_report(self.loader)
        present = set(table["track_id"])
        absent_ids = {m["track_id"] for m in missing}
        # spelt like the metadata's audio paths (resolved), so a file reads the same everywhere
        mismatched = [_resolved_entry(m) for m in report["invalid"] if m.split(":")[0] in present]
        missing_files = [m for m in report["missing"] if m.split(":")[0] not in absent_ids]
        if self.params["verify"] == "strict" and (mismatched or missing_files):
            raise DataError(
                report["message"]
                + "\nReplace the listed files with the originals (the index holds their md5), "
                "or set params.verify: present to run on them, their sha256 recorded"
            )
        bad_audio = check_decodable(table["audio_path"].tolist(), on_bad_audio=on_bad_audio)
        metadata = pd.DataFrame(
            {
                "clip_id": table["clip_id"],
                "audio_path": table["audio_path"],
                "offset": 0.0,
                "duration": "",
                "split": table["split"],
                "label": table["label"],
                "song_id": table["clip_id"],
                "track_id": table["track_id"],
            }
        )
        write_metadata(metadata, out_dir / "metadata.csv")
        counts = metadata["split"].value_counts().to_dict()
        empty = [s for s in SPLITS if not counts.get(s)]
        if empty:
            print(f"warning: splits {empty} have no clips; probing needs clips in all three")
        n_total = len(self.loader.track_ids)
        return {
            "generator": f"{type(self).__module__}.{type(self).__name__}",
            "kind": self.kind,
            "params": copy.deepcopy(self.params),
            "mirdata": {
                "name": self.loader.name,
                "version": self.loader.version,
                "index": str(self.loader.index_path),
                "data_home": str(self.root),
            },
            "splits": how,
            "clips_per_split": {s: int(counts.get(s, 0)) for s in SPLITS},
            "empty_splits": empty,
            "subset": subset_label(len(metadata), n_total) if len(metadata) < n_total else None,
            "missing_tracks": missing,
            "left_out_tracks": left_out,
            "md5_mismatch": mismatched,
            "missing_files": missing_files,
            "bad_audio": bad_audio,
        }


def _resolved_entry(entry):
    """``"<track>: <path>"`` of mirdata's report with the path resolved."""
    track, sep, path = entry.partition(": ")
    return f"{track}: {Path(path).resolve()}" if sep and path else entry
