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

The annotation CSVs are not among the test fixtures; the tests rebuild them
in their real format from jukemir's metadata, which embeds every CSV row.
"""

import csv
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from ..download import Remote
from ..errors import DataError
from .base import write_metadata
from .remote import RemoteDataset, check_decodable, extract_once, params_schema

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


class Emomusic(RemoteDataset):
    """Emomusic arousal/valence regression; see the module docstring."""

    kind = "emomusic"
    jukemir_tag = "emomusic"
    task_type = "regression"
    subdir = "emomusic"
    params_schema = params_schema({})

    def labels(self):
        return list(TARGETS)

    def num_clips(self):
        return sum(SPLIT_SIZES.values())

    def prepare(self, out_dir, *, threads=1, on_bad_audio="error"):
        out_dir = Path(out_dir)
        paths = self.fetch(list(REMOTES.values()), out_dir=out_dir)
        annotations = extract_once(
            paths["EMOMUSIC_ANNOTATIONS"],
            out_dir / "extracted" / "annotations",
            checksum=REMOTES["EMOMUSIC_ANNOTATIONS"].checksum,
        )
        table = song_table(annotations)
        counts = table["split"].value_counts().to_dict()
        if counts != SPLIT_SIZES:
            raise DataError(f"Emomusic annotations give {counts}, expected {SPLIT_SIZES}")
        clips = extract_once(
            paths["EMOMUSIC_CLIPS"],
            out_dir / "extracted" / "clips",
            checksum=REMOTES["EMOMUSIC_CLIPS"].checksum,
        )
        audio = []
        for song_id in table["song_id"]:
            path = clips / "clips_45seconds" / f"{int(song_id)}.mp3"
            if not path.is_file():
                raise DataError(f"{path}: clip of song {song_id} missing from the clips archive")
            audio.append(str(path.resolve()))
        bad_audio = check_decodable(audio, on_bad_audio=on_bad_audio)
        table.insert(1, "audio_path", audio)
        zscore = table.attrs.pop("zscore")
        write_metadata(table, out_dir / "metadata.csv")
        return self.provenance(
            [self.remote(r) for r in REMOTES.values()],
            zscore=zscore,
            clips_per_split=SPLIT_SIZES,
            bad_audio=bad_audio,
        )
