"""MagnaTagATune top-50 auto-tagging (Law et al. 2009), jukemir's split.

Task
    ``multilabel`` tagging with the 50 most frequent of the 188 tags of
    ``annotations_final.csv`` (counted over every annotated clip), in
    jukemir's label order (:data:`TOP50_TAGS`: by count, descending).
    ``label`` is the ``|``-joined top-50 tags of a clip, in that order;
    clips with none of them are kept (empty label).

Clips and splits
    ``clip_info_final.csv`` (tab-separated, quoted) gives each clip's
    ``clip_id`` and ``mp3_path`` (``<folder>/<name>.mp3``, folders ``0``-``f``).
    Folders ``0``-``b`` -> ``train``, ``c`` -> ``valid``, ``d``-``f`` ->
    ``test``; rows without an mp3 and the three known-corrupt clips
    (:data:`CORRUPT_CLIPS`) are dropped: 18,706 / 1,825 / 5,329 clips.
    Clip ids are the 5-digit clip numbers (``00002``); ``song_id`` =
    ``clip_id`` (clips are scored on their own); extra columns ``track``
    (album URL and track number, the song a clip was cut from), ``artist``,
    ``segment_start``, ``segment_end``, ``all_tags``.

Raw files (jukemir's ``assets/magnatagatune.json``; mi.soi.city.ac.uk)
    ``mp3.zip.001``-``003`` (one split zip archive), ``clip_info_final.csv``
    and ``annotations_final.csv`` (``clip_id``, 188 tag columns of 0/1,
    ``mp3_path``; tab-separated), all sha256-verified. Instead of the zip
    parts, the raw directory may hold the archive unpacked (``mp3/0/`` ...
    ``mp3/f/``, or ``0/`` ... ``f/``); no per-file digest is published, so
    each mp3's sha256 is recorded (``checksums.tsv``). ``verify: present``
    (data_home only) runs on the clips whose mp3 is there, labelled a subset. MagnaTagATune is no
    mirdata dataset; this class follows mirdata's conventions.

Neither CSV is among the test fixtures; the tests rebuild both in their real
format from jukemir's metadata (which embeds each clip_info row and each
clip's full tag list) and check the result row by row.
"""

import csv
from collections import Counter
from pathlib import Path

import pandas as pd

from ..download import Remote
from ..errors import DataError
from .base import write_metadata
from .remote import (
    VerifiedDataset,
    check_decodable,
    extract_once,
    subset_label,
    verify_schema,
)

BASE_URL = "http://mi.soi.city.ac.uk/datasets/magnatagatune"
REMOTES = {
    f"MAGNATAGATUNE_MP3_{i:03d}": Remote(
        key=f"MAGNATAGATUNE_MP3_{i:03d}",
        path=f"mp3.zip.{i:03d}",
        checksum=checksum,
        urls=(f"{BASE_URL}/mp3.zip.{i:03d}",),
    )
    for i, checksum in enumerate(
        [
            "f857fe185968773058cc71662c2ef5d8f2d4b7338e3c122cfd52f82dcb9760b9",
            "fc2e1ec441755556ed1398b1808f1b08b6034372f8bc27394510c0c58cdb52ce",
            "83a689824c17e82f6eb81cdbc4e4ca239a4cfc1fb41f1a5c80b861caec90450f",
        ],
        start=1,
    )
}
REMOTES["MAGNATAGATUNE_CLIP_METADATA"] = Remote(
    key="MAGNATAGATUNE_CLIP_METADATA",
    path="clip_info_final.csv",
    checksum="cb6108a10d3a91f0bfd7d2fbec2382559d15f20c8d28093f14e12162a47a3e78",
    urls=(f"{BASE_URL}/clip_info_final.csv",),
)
REMOTES["MAGNATAGATUNE_ANNOTATIONS"] = Remote(
    key="MAGNATAGATUNE_ANNOTATIONS",
    path="annotations_final.csv",
    checksum="99b94e95825d4fa576386a5367b9c96e0ec636e9f9c240aceb492f4728f68c3c",
    urls=(f"{BASE_URL}/annotations_final.csv",),
)
#: clips whose mp3 is corrupt (jukemir drops them)
CORRUPT_CLIPS = ("35644", "55753", "57881")
TOP50_TAGS = (
    "guitar, classical, slow, techno, strings, drums, electronic, rock, fast, piano, "
    "ambient, beat, violin, vocal, synth, female, indian, opera, male, singing, vocals, "
    "no vocals, harpsichord, loud, quiet, flute, woman, male vocal, no vocal, pop, soft, "
    "sitar, solo, man, classic, choir, voice, new age, dance, male voice, female vocal, "
    "beats, harp, cello, no voice, weird, country, metal, female voice, choral"
).split(", ")
CSV_KEYS = ["MAGNATAGATUNE_CLIP_METADATA", "MAGNATAGATUNE_ANNOTATIONS"]
SPLIT_SIZES = {"train": 18706, "valid": 1825, "test": 5329}
FOLDER_SPLITS = {
    **dict.fromkeys("0123456789ab", "train"),
    "c": "valid",
    **dict.fromkeys("def", "test"),
}


def _read_tsv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def read_tags(annotations_path):
    """``{clip_id: [tags with value 1]}`` and the tag counts, from annotations_final.csv."""
    tags_of, counts = {}, Counter()
    for row in _read_tsv(annotations_path):
        clip = f"{int(row['clip_id']):05d}"
        tags = [k for k, v in row.items() if k not in ("clip_id", "mp3_path") and v == "1"]
        tags_of[clip] = (tags, row["mp3_path"].strip())
        counts.update(tags)
    return tags_of, counts


def top_tags(counts, n=50):
    """The ``n`` most frequent tags (ties in column order, as jukemir)."""
    return [t for t, _ in sorted(counts.items(), key=lambda x: -x[1])[:n]]


def clip_table(clip_info_path, annotations_path):
    """The metadata table (without audio paths) from the two CSVs."""
    tags_of, counts = read_tags(annotations_path)
    top = top_tags(counts)
    if set(top) != set(TOP50_TAGS):
        raise DataError(
            f"{annotations_path}: top-50 tags differ from the paper's: "
            f"extra {sorted(set(top) - set(TOP50_TAGS))}, missing {sorted(set(TOP50_TAGS) - set(top))}"
        )
    order = {t: i for i, t in enumerate(TOP50_TAGS)}
    rows = []
    for row in _read_tsv(clip_info_path):
        clip = f"{int(row['clip_id']):05d}"
        mp3 = row["mp3_path"].strip()
        if not mp3 or clip in CORRUPT_CLIPS:
            continue
        folder = mp3.split("/")[0]
        if folder not in FOLDER_SPLITS:
            raise DataError(f"{clip_info_path}: clip {clip} has mp3_path {mp3!r} outside 0-f")
        if clip not in tags_of:
            raise DataError(f"{annotations_path}: no tags for clip {clip}")
        tags, annotated_mp3 = tags_of[clip]
        if annotated_mp3 != mp3:
            raise DataError(
                f"clip {clip}: mp3_path {mp3!r} vs {annotated_mp3!r} in the annotations"
            )
        rows.append(
            {
                "clip_id": clip,
                "mp3_path": mp3,
                "offset": 0.0,
                "duration": "",
                "split": FOLDER_SPLITS[folder],
                "label": "|".join(sorted((t for t in tags if t in order), key=order.get)),
                "song_id": clip,
                "track": f"{row['url'].strip()}#{row['track_number'].strip()}",
                "artist": row["artist"],
                "segment_start": row["segmentStart"],
                "segment_end": row["segmentEnd"],
                "all_tags": "|".join(tags),
            }
        )
    return pd.DataFrame(rows)


#: the 16 mp3 folders of the unpacked archive
MP3_FOLDERS = tuple("0123456789abcdef")


def find_mp3_tree(raw):
    """The folder holding the unpacked ``0/``...``f/`` mp3 folders under ``raw``
    (``raw/mp3/`` or ``raw`` itself), or None."""
    for folder in (Path(raw) / "mp3", Path(raw)):
        if any((folder / name).is_dir() for name in MP3_FOLDERS):
            return folder
    return None


class MagnaTagATune(VerifiedDataset):
    """MagnaTagATune top-50 tagging; see the module docstring."""

    kind = "magnatagatune"
    jukemir_tag = "magnatagatune"
    task_type = "multilabel"
    subdir = "magnatagatune"
    layout_hint = (
        "Instead of mp3.zip.001-003, magnatagatune/ may hold the mp3s unpacked: mp3/0/ ... "
        "mp3/f/ (or 0/ ... f/); with params.verify: present, the clips present are used"
    )
    split_sizes = SPLIT_SIZES
    params_schema = verify_schema("all 25,860 clips")

    def labels(self):
        return list(TOP50_TAGS)

    def num_present(self):
        raw = self.raw_dir(None)
        csvs = [raw / REMOTES[k].path for k in CSV_KEYS]
        absent = [str(p) for p in csvs if not p.is_file()]
        if absent:
            raise DataError(f"MagnaTagATune CSVs not found in data_home: {absent}")
        tree = find_mp3_tree(raw)
        if tree is None:
            raise DataError(
                f"{raw}: no unpacked mp3 tree (verify: present reads one): expected "
                f"{raw}/mp3/0/ ... {raw}/mp3/f/ (or {raw}/0/ ... {raw}/f/)"
            )
        table = clip_table(*csvs)
        return int(sum((tree / p).is_file() for p in table["mp3_path"]))

    def prepare(self, out_dir, *, threads=1, on_bad_audio="error"):
        out_dir = Path(out_dir)
        tree = find_mp3_tree(self.raw_dir(out_dir))
        # an unpacked tree replaces the three zip parts (no need to keep both on disk)
        keys = CSV_KEYS if tree is not None else list(REMOTES)
        paths = self.fetch([REMOTES[k] for k in keys], out_dir=out_dir)
        table = clip_table(paths["MAGNATAGATUNE_CLIP_METADATA"], paths["MAGNATAGATUNE_ANNOTATIONS"])
        counts = table["split"].value_counts().to_dict()
        if counts != SPLIT_SIZES:
            raise DataError(f"MagnaTagATune CSVs give {counts}, expected {SPLIT_SIZES}")
        if tree is None:
            parts = [paths[f"MAGNATAGATUNE_MP3_{i:03d}"] for i in (1, 2, 3)]
            tree = extract_once(
                None,
                out_dir / "extracted" / "mp3",
                checksum="+".join(
                    REMOTES[f"MAGNATAGATUNE_MP3_{i:03d}"].checksum for i in (1, 2, 3)
                ),
                parts=parts,
            )
            layout = "archive"
        else:
            layout = "unpacked"
        # the tree resolved once, not each of its 25,860 paths (realpath per file is slow)
        root = tree.resolve()
        audio = [str(root / p) for p in table["mp3_path"]]
        missing = [a for a in audio if not Path(a).is_file()]
        present = self.params["verify"] == "present"
        if missing and not present:
            where = "archive" if layout == "archive" else f"unpacked tree {tree}"
            advice = (
                "place the missing files there, or set params.verify: present to run on "
                "the clips present (the table then says it is a subset)"
                if self.local_only
                else "delete the extracted folder and prepare again"
            )
            raise DataError(
                f"{len(missing)} mp3s missing from the MagnaTagATune {where}: "
                f"{missing[:5]}\nWhat to do: {advice}"
            )
        table.insert(1, "audio_path", audio)
        table = table[[Path(a).is_file() for a in audio]]
        if present and len(table) != self.num_clips():
            raise DataError(
                f"MagnaTagATune files under {tree} changed since the workflow was parsed; "
                "run it again"
            )
        bad_audio = check_decodable(table["audio_path"].tolist(), on_bad_audio=on_bad_audio)
        write_metadata(table, out_dir / "metadata.csv")
        n_total = sum(SPLIT_SIZES.values())
        return self.provenance(
            [self.remote(REMOTES[k]) for k in keys],
            layout=layout,
            # no per-file digests are published: each mp3's sha256 is in checksums.tsv
            audio_root=str(tree),
            clips_per_split={s: int((table["split"] == s).sum()) for s in SPLIT_SIZES},
            subset=subset_label(len(table), n_total) if len(table) < n_total else None,
            missing_clips=[Path(a).relative_to(tree).as_posix() for a in missing],
            bad_audio=bad_audio,
        )
