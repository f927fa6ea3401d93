"""GTZAN genre with Kereliuk et al.'s fault-filtered split (jukemir's ``gtzan_ff``).

Task
    10-way genre classification (``multiclass``) of whole 30 s GTZAN tracks;
    labels in jukemir's order (:data:`GENRES`).

Split
    The "fault-filtered" split of Kereliuk, Sturm & Larsen (2015), from
    ``coreyker/dnn-mgr`` at commit ``bdad579`` (the commit jukemir pins):
    ``{train,valid,test}_filtered.txt``, one ``<genre>/<genre>.000NN.wav`` per
    line, 443 / 197 / 290 tracks (930 of GTZAN's 1000; the rest are
    repetitions, distortions and mislabelings). A track's genre is its folder.

Raw files (registry :data:`REMOTES`, checksums from jukemir's ``assets/gtzan.json``)
    ``genres.tar.gz`` (sha256 ``24347e02…``; the original URL
    opihi.cs.uvic.ca is dead, so give a mirror in ``params.mirrors.GTZAN``
    or place the file by hand) and the three split lists. Instead of the
    tarball, the raw directory may hold GTZAN unpacked (:data:`LAYOUTS`):
    ``gtzan_genre/genres/<genre>/<id>.wav`` (mirdata's layout: every file must
    match the index md5), ``genres/<genre>/<id>.wav|.au`` (the tarball as it
    unpacks) or ``Data/genres_original/<genre>/<id>.wav`` (the widely shared
    copy): in those two, a ``.wav`` is md5-checked where it agrees with the
    index and its mismatch recorded where not, and a ``.au`` (no published
    digest) recorded; every file's sha256 goes into ``checksums.tsv``.

Verification (``params.verify``)
    ``strict`` (default): all 930 clips. ``present`` (data_home only): the
    listed clips found in an unpacked tree (counted when the workflow is
    parsed); the rest are listed in the record, which says
    ``subset (N of 930 clips)``, as does the table.

Audio is located and verified through **mirdata**'s ``gtzan_genre`` loader
(version ``1.0``): every listed track must be in mirdata's index and match
the md5 recorded there. ``params.mirdata_index`` names a local index file
(mirdata 1.0 downloads indexes from Zenodo at first use, which fails
offline); without it mirdata's own copy is used if present, else it is
fetched like the other raw files (md5 pinned by mirdata).

Metadata
    ``clip_id`` = GTZAN id (``jazz.00024``), whole file (offset 0, empty
    duration), ``song_id`` = ``clip_id``, extra ``genre`` and ``jukemir_uid``
    (sha256 of the id, jukemir's uid).
"""

import functools
import hashlib
from pathlib import Path

import pandas as pd

from ..download import Remote, file_checksum
from ..errors import DataError
from .base import SPLITS, write_metadata
from .remote import (
    VerifiedDataset,
    check_decodable,
    extract_once,
    mirdata_dataset,
    subset_label,
    verify_schema,
)

GENRES = "blues classical country disco hiphop jazz metal pop reggae rock".split()
DNN_MGR = "https://raw.githubusercontent.com/coreyker/dnn-mgr/bdad579ea6cb37b665ea6019fe1026a6ce20cbc7/gtzan"
REMOTES = {
    "GTZAN": Remote(
        key="GTZAN",
        path="genres.tar.gz",
        checksum="24347e0223d2ba798e0a558c4c172d9d4a19c00bb7963fe055d183dadb4ef2c6",
        urls=("http://opihi.cs.uvic.ca/sound/genres.tar.gz",),
    ),
    "GTZAN_TRAIN": Remote(
        key="GTZAN_TRAIN",
        path="train_filtered.txt",
        checksum="2b04966cef1486f1a7767b74271533fa23e220388db804a1937835e1fc4fa3fa",
        urls=(f"{DNN_MGR}/train_filtered.txt",),
    ),
    "GTZAN_VALID": Remote(
        key="GTZAN_VALID",
        path="valid_filtered.txt",
        checksum="f8fbee7c52397a0e0f3a91dc54fedecb2e27f5bdc9a9daeab8cb10d077e26956",
        urls=(f"{DNN_MGR}/valid_filtered.txt",),
    ),
    "GTZAN_TEST": Remote(
        key="GTZAN_TEST",
        path="test_filtered.txt",
        checksum="09cafa6a89ce0a27f30ed250d56ecb4d03c22fffb5a693f96c7ae655ee02ac72",
        urls=(f"{DNN_MGR}/test_filtered.txt",),
    ),
}
#: mirdata gtzan_genre 1.0 index (md5 as pinned in mirdata's INDEXES)
MIRDATA_INDEX = Remote(
    key="MIRDATA_GTZAN_GENRE_INDEX",
    path="gtzan_genre_index_1.0.json",
    checksum="533ca050855f22acf2feb283d9957fe3",
    urls=("https://zenodo.org/records/13993311/files/gtzan_genre_index_1.0.json?download=1",),
)
SPLIT_SIZES = {"train": 443, "valid": 197, "test": 290}


def read_split_lists(paths):
    """``{split: path}`` of the dnn-mgr lists -> DataFrame(clip_id, genre, split)."""
    rows = []
    for split in SPLITS:
        path = Path(paths[split])
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            rel = Path(line)
            if len(rel.parts) != 2 or rel.suffix != ".wav" or rel.parts[0] not in GENRES:
                raise DataError(f"{path}: line {line!r} is not '<genre>/<genre>.NNNNN.wav'")
            rows.append({"clip_id": rel.stem, "genre": rel.parts[0], "split": split})
    table = pd.DataFrame(rows, columns=["clip_id", "genre", "split"])
    dup = table["clip_id"][table["clip_id"].duplicated()].tolist()
    if dup:
        raise DataError(f"GTZAN split lists name tracks in two splits: {dup[:5]}")
    return table


def split_table(paths):
    """The metadata table (without audio paths) built from the split lists."""
    table = read_split_lists(paths)
    return pd.DataFrame(
        {
            "clip_id": table["clip_id"],
            "offset": 0.0,
            "duration": "",
            "split": table["split"],
            "label": table["genre"],
            "song_id": table["clip_id"],
            "genre": table["genre"],
            "jukemir_uid": [GtzanFaultFiltered.jukemir_uid(c) for c in table["clip_id"]],
        }
    )


#: unpacked trees accepted in the raw directory: (name, folder holding <genre>/<id>.<ext>)
LAYOUTS = (
    ("mirdata", "gtzan_genre/genres"),  # mirdata's layout: every file md5-verified
    ("unpacked", "genres"),  # the tarball unpacked as it is (.wav or the older .au)
    ("genres_original", "Data/genres_original"),  # the widely shared copy (Kaggle)
)
AUDIO_SUFFIXES = (".wav", ".au")


def find_layout(raw):
    """``(name, folder)`` of the unpacked GTZAN tree under ``raw``, or None."""
    for name, rel in LAYOUTS:
        if (Path(raw) / rel).is_dir():
            return name, Path(raw) / rel
    return None


def find_track(folder, genre, clip_id):
    """The track's file in an unpacked tree (``.wav`` or ``.au``), or None."""
    for suffix in AUDIO_SUFFIXES:
        path = Path(folder) / genre / f"{clip_id}{suffix}"
        if path.is_file():
            return path
    return None


class GtzanFaultFiltered(VerifiedDataset):
    """GTZAN genre, fault-filtered split; see the module docstring."""

    kind = "gtzan_ff"
    jukemir_tag = "gtzan_ff"
    task_type = "multiclass"
    subdir = "gtzan"
    layout_hint = (
        "Instead of genres.tar.gz, gtzan/ may hold GTZAN unpacked: gtzan_genre/genres/<genre>/, "
        "genres/<genre>/ (.wav or .au) or Data/genres_original/<genre>/; with params.verify: "
        "present, the clips present are used and the table says it is a subset"
    )
    split_sizes = SPLIT_SIZES
    params_schema = verify_schema(
        "all 930 clips",
        {
            "mirdata_index": {
                "description": "local mirdata gtzan_genre 1.0 index file (null = mirdata's "
                "own copy if present, else fetched into the raw directory)",
                "type": ["string", "null"],
                "default": None,
            },
        },
    )

    @classmethod
    def jukemir_uid(cls, clip_id):
        # jukemir keys GTZAN clips by the sha256 of their id
        return hashlib.sha256(clip_id.encode()).hexdigest()

    def labels(self):
        return list(GENRES)

    def num_present(self):
        return len(self._present_table.dropna(subset=["audio_path"]))

    def _list_paths(self):
        raw = self.raw_dir(None)
        return {s: raw / REMOTES[f"GTZAN_{s.upper()}"].path for s in SPLITS}

    @functools.cached_property
    def _present_table(self):
        """verify: present: the listed clips whose file is in the local tree (parse time)."""
        raw = self.raw_dir(None)
        lists = self._list_paths()
        absent = [str(p) for p in lists.values() if not p.is_file()]
        if absent:
            urls = [REMOTES[f"GTZAN_{s.upper()}"].urls[0] for s in SPLITS]
            raise DataError(
                f"GTZAN split lists not found in data_home: {absent}; place them there "
                f"(from {', '.join(urls)})"
            )
        layout = find_layout(raw)
        if layout is None:
            raise DataError(
                f"{raw}: no unpacked GTZAN tree (verify: present reads one); expected one of "
                + ", ".join(f"{raw / rel}/<genre>/<genre>.000NN.wav|.au" for _, rel in LAYOUTS)
            )
        table = split_table(lists)
        paths = [
            find_track(layout[1], g, c)
            for g, c in zip(table["genre"], table["clip_id"], strict=True)
        ]
        table["audio_path"] = [None if p is None else str(p.resolve()) for p in paths]
        return table

    def _index_path(self, out_dir):
        if self.params["mirdata_index"]:
            return Path(self.params["mirdata_index"])
        import mirdata

        own = Path(mirdata.initialize("gtzan_genre", version="1.0").index_path)
        if own.is_file():
            return own
        return self.fetch([MIRDATA_INDEX], out_dir=out_dir)[MIRDATA_INDEX.key]

    def _audio_tree(self, out_dir):
        """``(layout name, folder of <genre>/ folders)``: an unpacked tree in the raw dir,
        else the tarball unpacked in mirdata's layout."""
        raw = self.raw_dir(out_dir)
        layout = find_layout(raw)
        if layout is not None:
            return layout
        tarball = self.fetch([REMOTES["GTZAN"]], out_dir=out_dir)["GTZAN"]
        dest = Path(out_dir) / "extracted" / "gtzan_genre"
        # the tarball holds genres/<genre>/...; mirdata wants gtzan_genre/genres/...
        extract_once(tarball, dest / "gtzan_genre", checksum=REMOTES["GTZAN"].checksum)
        return "mirdata", dest / "gtzan_genre" / "genres"

    def prepare(self, out_dir, *, threads=1, on_bad_audio="error"):
        out_dir = Path(out_dir)
        lists = self.fetch([REMOTES[f"GTZAN_{s.upper()}"] for s in SPLITS], out_dir=out_dir)
        table = split_table({s: lists[f"GTZAN_{s.upper()}"] for s in SPLITS})
        counts = table["split"].value_counts().to_dict()
        if counts != SPLIT_SIZES:
            raise DataError(f"GTZAN split lists give {counts}, expected {SPLIT_SIZES}")

        index_path = self._index_path(out_dir)
        layout, folder = self._audio_tree(out_dir)
        index = mirdata_dataset(
            "gtzan_genre", data_home=folder, version="1.0", index_path=index_path
        )._index["tracks"]
        present = self.params["verify"] == "present"
        audio_paths, problems, missing, verified, recorded = [], [], [], 0, []
        for clip_id, genre in zip(table["clip_id"], table["genre"], strict=True):
            path = find_track(folder, genre, clip_id)
            audio_paths.append("" if path is None else str(path.resolve()))
            if path is None:
                missing.append(clip_id)
                if not present:
                    problems.append(f"{folder / genre / clip_id}.wav (or .au): file not found")
                continue
            md5 = index.get(clip_id, {}).get("audio", [None, None])[1]
            if path.suffix == ".au" or not md5:
                # no published per-file digest for it: its sha256 goes into checksums.tsv
                recorded.append({"path": str(path), "why": "no per-file md5 published"})
            elif file_checksum(path, algorithm="md5") == md5:
                verified += 1
            elif layout == "mirdata":
                problems.append(
                    f"{path}: md5 mismatch with the mirdata index {index_path} (expected {md5})"
                )
            else:
                recorded.append({"path": str(path), "why": f"md5 differs from mirdata's {md5}"})
        if problems:
            advice = (
                "place the original files there (mirdata's gtzan_genre index gives each "
                "one's md5), or set params.verify: present to run on the clips that are "
                "present and verified (the table then says it is a subset)"
                if self.local_only
                else "delete the extracted folder and prepare again"
            )
            raise DataError(
                f"GTZAN audio under {folder} fails verification ({len(problems)} files):\n  "
                + "\n  ".join(problems[:20])
                + ("\n  ..." if len(problems) > 20 else "")
                + f"\nWhat to do: {advice}"
            )
        table.insert(1, "audio_path", audio_paths)
        table = table[table["audio_path"] != ""]
        if present and len(table) != self.num_clips():
            raise DataError(
                f"GTZAN files under {folder} changed since the workflow was parsed "
                f"({len(table)} present now, {self.num_clips()} then); run it again"
            )
        for clip_id in missing:
            print(f"absent, left out (verify: present): {clip_id}", flush=True)
        bad_audio = check_decodable(table["audio_path"].tolist(), on_bad_audio=on_bad_audio)
        write_metadata(table, out_dir / "metadata.csv")
        remotes = [self.remote(r) for r in REMOTES.values()]
        n_total = sum(SPLIT_SIZES.values())
        return self.provenance(
            remotes,
            mirdata_index={
                "path": str(index_path),
                "md5": file_checksum(index_path, algorithm="md5"),
            },
            audio_root=str(folder),
            layout=layout,
            clips_per_split={s: int((table["split"] == s).sum()) for s in SPLITS},
            subset=subset_label(len(table), n_total) if len(table) < n_total else None,
            missing_clips=missing,
            md5_verified=verified,
            digest_recorded=recorded,
            bad_audio=bad_audio,
        )
