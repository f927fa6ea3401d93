"""Emomusic: static arousal/valence regression (Soleymani et al., "1000 songs").

Task
    ``regression`` of two targets, labels ``arousal`` and ``valence`` (this
    order): the per-song ``mean_arousal`` / ``mean_valence`` of
    ``static_annotations.csv`` (9-point scale), z-scored with the mean and
    (population) standard deviation of the MediaEval 2013 *development* songs
    (train + valid before the valid songs are carved out), as jukemir does.
    ``label`` is ``"<arousal>|<valence>"`` written with 17 significant digits.

Songs and splits
    ``songs_info.csv`` lists 744 songs (the 1000 clips minus duplicates), one
    45 s clip each. Its ``Mediaeval 2013 set`` column: ``evaluation`` ->
    ``test`` (125 songs); the development songs are split by artist: the
    ``Artist`` field lower-cased, reduced to ASCII letters and spaces,
    whitespace collapsed, ``int(sha1(artist), 16) % 10`` -> ``valid`` if
    ``>= 8`` else ``train`` (504 train / 115 valid). Clip ids are the 4-digit
    song ids (``0002``), audio ``clips_45seconds/<song_id>.mp3``, whole file.

Raw files (jukemir's ``assets/emomusic.json``; cvml.unige.ch)
    ``clips_45sec.tar.gz`` and ``annotations.tar.gz`` (sha256). The
    annotation tarball holds the CSVs named above (comma-separated, with a
    header row; values are stripped of whitespace). Emomusic is no mirdata
    dataset; this class follows mirdata's conventions (a pinned remote per
    file, checksums, a verified local copy).

As labs keep it (the raw directory, ``data_home`` or not)
    ``annotations/`` (the annotation tarball unpacked: ``songs_info.csv`` and
    ``static_annotations.csv`` somewhere under it) replaces
    ``annotations.tar.gz``, and ``clips_45seconds/<n>.mp3`` (the clips
    tarball unpacked) replaces ``clips_45sec.tar.gz``; nothing is unpacked
    again. No per-file digest is published: the CSVs' sha256 go into the
    record (``digest_recorded``), each mp3's into ``checksums.tsv``; the
    annotations must still give the paper's 744 songs.

Verification (``params.verify``)
    ``strict`` (default): all 744 clips. ``present`` (data_home only): the
    clips found in an unpacked ``clips_45seconds/`` (counted when the
    workflow is parsed; the annotations must be complete, so labels are
    z-scored as in the full run); the rest are listed in the record, which
    says ``subset (N of 744 clips)``, as does the table.

The annotation CSVs are not among the test fixtures; the tests rebuild them
in their real format from jukemir's metadata, which embeds every CSV row.
"""

import csv
import functools
import hashlib
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from ..download import Remote
from ..errors import DataError
from .base import file_sha256, write_metadata
from .remote import (
    VerifiedDataset,
    check_decodable,
    extract_once,
    subset_label,
    verify_schema,
)

BASE_URL = "http://cvml.unige.ch/databases/emoMusic"
REMOTES = {
    "EMOMUSIC_CLIPS": Remote(
        key="EMOMUSIC_CLIPS",
        path="clips_45sec.tar.gz",
        checksum="3994a5d5fefc27f9540d1a69cd7f1294c68e6cb311ce49765021e2e9c7a1057b",
        urls=(f"{BASE_URL}/clips_45sec.tar.gz",),
    ),
    "EMOMUSIC_ANNOTATIONS": Remote(
        key="EMOMUSIC_ANNOTATIONS",
        path="annotations.tar.gz",
        checksum="e0cb0b06e1b0ce7f04b1572fc410937699b7fad9dae67ddaa745f06cda4b0b33",
        urls=(f"{BASE_URL}/annotations.tar.gz",),
    ),
}
TARGETS = ["arousal", "valence"]
ARTIST_RATIOS = ["train"] * 8 + ["valid"] * 2
SPLIT_SIZES = {"train": 504, "valid": 115, "test": 125}


def parse_minsec(text):
    """``'1.33'`` (min.sec) -> 93.0 s; ``'0.5'`` means 0 min 50 s."""
    minutes, _, seconds = text.partition(".")
    if len(seconds) == 1:
        seconds += "0"
    return float(minutes) * 60 + (float(seconds) if seconds else 0.0)


def artist_split(artist):
    """The development split of an artist (jukemir's hash)."""
    name = "".join(c for c in artist.lower() if ord(c) < 128 and (c.isalpha() or c.isspace()))
    name = " ".join(name.split())
    return ARTIST_RATIOS[int(hashlib.sha1(name.encode("utf-8")).hexdigest(), 16) % 10]


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return [{k: v.strip() for k, v in row.items()} for row in csv.DictReader(handle)]


def find_csv(root, name):
    matches = sorted(Path(root).rglob(name))
    if len(matches) != 1:
        raise DataError(f"{root}: expected one {name}, found {[str(m) for m in matches]}")
    return matches[0]


def song_table(annotations_dir):
    """The metadata table (without audio paths) from the annotation CSVs."""
    info = _read_csv(find_csv(annotations_dir, "songs_info.csv"))
    static = {
        f"{int(r['song_id']):04d}": r
        for r in _read_csv(find_csv(annotations_dir, "static_annotations.csv"))
    }
    rows, seen = [], set()
    for row in info:
        song_id = f"{int(row['song_id']):04d}"
        song = (row["Artist"], row["Song title"])
        if song in seen:
            raise DataError(f"songs_info.csv: song {song} listed twice")
        seen.add(song)
        start = parse_minsec(row["start of the segment (min.sec)"])
        end = parse_minsec(row["end of the segment (min.sec)"])
        if song_id not in static:
            raise DataError(f"static_annotations.csv: no row for song {song_id}")
        development = row["Mediaeval 2013 set"] != "evaluation"
        rows.append(
            {
                "clip_id": song_id,
                "offset": 0.0,
                "duration": "",
                "split": artist_split(row["Artist"]) if development else "test",
                "song_id": song_id,
                "development": development,
                "arousal": float(static[song_id]["mean_arousal"]),
                "valence": float(static[song_id]["mean_valence"]),
                "artist": row["Artist"],
                "title": row["Song title"],
                "segment_start": start,
                "segment_end": end,
            }
        )
    table = pd.DataFrame(rows)
    dev = table[table["development"]]
    stats = {t: (float(np.mean(dev[t])), float(np.std(dev[t]))) for t in TARGETS}
    for t in TARGETS:
        mean, std = stats[t]
        table[f"{t}_z"] = (table[t] - mean) / std
    table["label"] = [
        f"{a:.17g}|{v:.17g}" for a, v in zip(table["arousal_z"], table["valence_z"], strict=True)
    ]
    table = table.drop(columns=["development"])
    table.attrs["zscore"] = {t: {"mean": m, "std": s} for t, (m, s) in stats.items()}
    return table


#: the tarballs unpacked in the raw directory: registry key -> folder replacing it
UNPACKED = {"EMOMUSIC_ANNOTATIONS": "annotations", "EMOMUSIC_CLIPS": "clips_45seconds"}
CSV_NAMES = ("songs_info.csv", "static_annotations.csv")


def clip_path(clips, song_id):
    """A song's mp3 in the clips folder (named by the unpadded song number)."""
    return Path(clips) / f"{int(song_id)}.mp3"


class Emomusic(VerifiedDataset):
    """Emomusic arousal/valence regression; see the module docstring."""

    kind = "emomusic"
    jukemir_tag = "emomusic"
    task_type = "regression"
    subdir = "emomusic"
    layout_hint = (
        "Instead of the tarballs, emomusic/ may hold the tarballs unpacked: annotations/ "
        "(songs_info.csv, static_annotations.csv) and clips_45seconds/ (<n>.mp3); with "
        "params.verify: present, the clips present are used and the table says it is a subset"
    )
    split_sizes = SPLIT_SIZES
    params_schema = verify_schema("all 744 clips")

    def labels(self):
        return list(TARGETS)

    def num_present(self):
        return len(self._present["table"])

    def _unpacked(self, out_dir):
        """``{registry key: folder}`` of the tarballs found unpacked in the raw directory."""
        raw = self.raw_dir(out_dir)
        return {k: raw / name for k, name in UNPACKED.items() if (raw / name).is_dir()}

    def _song_table(self, out_dir, unpacked):
        """``(table, annotations folder, tarball remotes used)`` from the annotation CSVs."""
        out_dir = Path(out_dir)
        if "EMOMUSIC_ANNOTATIONS" in unpacked:
            annotations, wanted = unpacked["EMOMUSIC_ANNOTATIONS"], []
        else:
            wanted = [REMOTES["EMOMUSIC_ANNOTATIONS"]]
            archive = self.fetch(wanted, out_dir=out_dir)["EMOMUSIC_ANNOTATIONS"]
            annotations = extract_once(
                archive,
                out_dir / "extracted" / "annotations",
                checksum=REMOTES["EMOMUSIC_ANNOTATIONS"].checksum,
            )
        table = song_table(annotations)
        counts = table["split"].value_counts().to_dict()
        if counts != SPLIT_SIZES:
            raise DataError(
                f"Emomusic annotations give {counts}, expected {SPLIT_SIZES}"
                + (
                    f" (unpacked under {annotations}: place the complete CSVs from "
                    "annotations.tar.gz)"
                    if not wanted
                    else ""
                )
            )
        return table, annotations, wanted

    @functools.cached_property
    def _present(self):
        """verify: present: the annotated songs whose clip is in the unpacked clips folder
        (read when the workflow is parsed; a tarball of annotations in a scratch folder)."""
        unpacked = self._unpacked(None)
        clips = unpacked.get("EMOMUSIC_CLIPS")
        if clips is None:
            raw = self.raw_dir(None)
            raise DataError(
                f"{raw}: no unpacked clips folder (verify: present reads one); expected "
                f"{raw / UNPACKED['EMOMUSIC_CLIPS']}/<n>.mp3, the clips tarball unpacked"
            )
        with tempfile.TemporaryDirectory(prefix="mirprobe-emomusic-") as scratch:
            table = self._song_table(scratch, unpacked)[0]
        found = [clip_path(clips, s).is_file() for s in table["song_id"]]
        return {
            "table": table[found],
            "missing": sorted(table["song_id"][[not f for f in found]]),
        }

    def prepare(self, out_dir, *, threads=1, on_bad_audio="error"):
        out_dir = Path(out_dir)
        unpacked = self._unpacked(out_dir)
        table, annotations, wanted = self._song_table(out_dir, unpacked)
        present = self.params["verify"] == "present"
        if "EMOMUSIC_CLIPS" in unpacked:
            clips, layout = unpacked["EMOMUSIC_CLIPS"], "unpacked"
        else:
            wanted.append(REMOTES["EMOMUSIC_CLIPS"])
            archive = self.fetch([REMOTES["EMOMUSIC_CLIPS"]], out_dir=out_dir)["EMOMUSIC_CLIPS"]
            clips = (
                extract_once(
                    archive,
                    out_dir / "extracted" / "clips",
                    checksum=REMOTES["EMOMUSIC_CLIPS"].checksum,
                )
                / UNPACKED["EMOMUSIC_CLIPS"]
            )
            layout = "archive"
        missing = [s for s in table["song_id"] if not clip_path(clips, s).is_file()]
        if missing and not present:
            if layout == "archive":
                raise DataError(
                    f"{len(missing)} clips missing from the Emomusic clips archive under "
                    f"{clips}: songs {missing[:5]}; delete {out_dir / 'extracted'} and "
                    "prepare again"
                )
            advice = (
                "place the original clips there (from clips_45sec.tar.gz), or set "
                "params.verify: present to run on the clips present (the table then says it "
                "is a subset)"
            )
            raise DataError(
                f"{len(missing)} of {len(table)} Emomusic clips not found in {clips}: "
                f"{[str(clip_path(clips, s)) for s in missing[:5]]}\nWhat to do: {advice}"
            )
        if present:
            if missing != self._present["missing"]:
                raise DataError(
                    f"Emomusic clips under {clips} changed since the workflow was parsed; "
                    "run it again"
                )
            for song_id in missing:
                print(f"absent, left out (verify: present): song {song_id}", flush=True)
            table = table[~table["song_id"].isin(missing)]
        audio = [str(clip_path(clips, s).resolve()) for s in table["song_id"]]
        bad_audio = check_decodable(audio, on_bad_audio=on_bad_audio)
        table.insert(1, "audio_path", audio)
        zscore = table.attrs.pop("zscore")
        write_metadata(table, out_dir / "metadata.csv")
        n_total = sum(SPLIT_SIZES.values())
        recorded = {}
        annotations_layout = "unpacked" if "EMOMUSIC_ANNOTATIONS" in unpacked else "archive"
        if annotations_layout == "unpacked":
            # no per-file digest is published for the CSVs: theirs go into the record
            recorded = {
                str(path): file_sha256(path)
                for path in (find_csv(annotations, name) for name in CSV_NAMES)
            }
        return self.provenance(
            [self.remote(r) for r in wanted],
            zscore=zscore,
            layout={"annotations": annotations_layout, "clips": layout},
            audio_root=str(clips),
            digest_recorded=recorded,
            clips_per_split={s: int((table["split"] == s).sum()) for s in SPLIT_SIZES},
            subset=subset_label(len(table), n_total) if len(table) < n_total else None,
            missing_clips=missing,
            bad_audio=bad_audio,
        )
