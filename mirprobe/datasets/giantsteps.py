"""GiantSteps key, cut into 30 s clips (jukemir's ``giantsteps_clips``).

Task
    24-way key estimation (``key``): clips are classified, songs are scored
    by pooling their clips (``song_id``). Labels in mir_eval / jukemir order
    (flat tonics): ``C major, Db major, ..., B major, C minor, ..., B minor``.

Songs and splits (from the raw annotation files, as jukemir builds them)
    * train + valid: the GiantSteps **MTG** key dataset (1486 Beatport
      previews; repo ``giantsteps-mtg-key-dataset`` @ ``fd7b8c5``):
      ``annotations/annotations.txt`` (``ID``, ``MANUAL KEY``, ``C``) keeps
      tracks annotated with confidence ``C == 2`` and a single key (no
      ``/``), as Korzeniowski & Widmer (2018); sharps become flats. The split
      is by artist: each artist of ``beatport_metadata.txt``'s ``ARTIST``
      (comma-separated) gets ``int(sha1(artist.lower()), 16) % 116`` ->
      ``valid`` if ``>= 100`` else ``train``; then, twice over the rows in
      file order, every artist sharing a track with a ``valid`` artist
      becomes ``valid`` (so collaborations never straddle the split).
      923 train / 236 valid songs.
    * test: the GiantSteps key dataset (604 tracks; repo
      ``giantsteps-key-dataset`` @ ``c8cb8aa``), the tracks of ``md5/``,
      key from ``annotations/key/<id>.LOFI.key``.

Clips
    Song ``s`` of duration ``d`` gives clips ``s-0, s-1, ...`` at offsets
    0, 30, 60, ... s, 30 s long; the trailing partial clip is dropped. Song
    ids are zero-padded to 7 digits (``0005061``), clip ids are jukemir's
    (``0005061-0``). Nearly every Beatport preview lasts 120.05 s, right at
    a multiple of 30 s, so a duration that a decoder reports a few ms short
    would lose a clip: a clip is kept when it is at least
    ``30 - DURATION_TOLERANCE_S`` s long (its end then lies within the
    tolerance :mod:`mirprobe.audio` accepts). 3687 / 942 / 2406 clips.
    Under ``on_bad_audio: exclude`` an undecodable song has no duration; its
    clip count comes from the paper's totals (:func:`undecodable_song_clips`),
    and the resample stage excludes those clips with the file's reason.

Raw files
    The two annotation repositories as GitHub archives (sha256 from jukemir's
    ``assets/giantsteps.json``), and one mp3 per song,
    ``audio/<id>.LOFI.mp3``, verified against the md5 that the annotation
    repository itself lists in ``md5/<id>.LOFI.md5`` (the same md5s as
    jukemir's registry), fetched from the JKU backup (jukemir's URLs). In
    the raw directory, an unpacked repository (``giantsteps-key-dataset*/``,
    ``giantsteps-mtg-key-dataset*/`` with ``annotations/``) replaces its zip;
    the sha256 of its file listing is recorded (no digest is published).

Verification (``params.verify``)
    ``strict`` (default): every song's mp3, and the paper's clip counts.
    ``present`` (data_home only): the songs whose mp3 is in ``audio/`` (each
    still md5-checked against its repository's ``md5/`` file; a mismatch is
    an error naming the file); the rest are listed in the record, which says
    ``subset (N of 7035 clips)``, as does the table. The annotation
    repositories must be complete either way. The clip count is read from
    the mp3 headers when the workflow is parsed; an undecodable song (no
    duration, and no paper totals to share among a subset) is one clip,
    which the resample stage excludes with the file's reason.

mirdata's ``giantsteps_key`` (version ``+``) is the 600-track GS+ variant
with corrected keys, and ``beatport_key`` the MTG set in another layout;
neither matches the paper's 604-track test set and original keys, so the
split/label table is built from the raw repositories (tests check that the
annotations agree with what mirdata's loaders read for the fixture tracks).
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
from ..task_types import KEY_LABELS
from .base import write_metadata
from .remote import (
    VerifiedDataset,
    check_decodable,
    extract_once,
    key_label,
    subset_label,
    verify_schema,
)

MTG_COMMIT = "fd7b8c584f7bd6d720d170c325a6d42c9bf75a6b"
KEY_COMMIT = "c8cb8aad2cb53f165be51ea099d0dc75c64a844f"
REMOTES = {
    "GIANTSTEPS_MTG_KEY_ANNOTATIONS": Remote(
        key="GIANTSTEPS_MTG_KEY_ANNOTATIONS",
        path="mtg-key-annotations.zip",
        checksum="c754c3fabbc0bf275d399028e212fa2c9c6680084bd003e3a283ae7b3ea22996",
        urls=(
            f"https://github.com/GiantSteps/giantsteps-mtg-key-dataset/archive/{MTG_COMMIT}.zip",
        ),
    ),
    "GIANTSTEPS_KEY_ANNOTATIONS": Remote(
        key="GIANTSTEPS_KEY_ANNOTATIONS",
        path="key-annotations.zip",
        checksum="7749bee0f919b0f53db2c540fa6707f322b82a5d140e453f10f9af7875ad5bb8",
        urls=(f"https://github.com/GiantSteps/giantsteps-key-dataset/archive/{KEY_COMMIT}.zip",),
    ),
}
AUDIO_URLS = {
    "mtg": "http://www.cp.jku.at/datasets/giantsteps/mtg_key_backup/{id}.LOFI.mp3",
    "key": "http://www.cp.jku.at/datasets/giantsteps/backup/{id}.LOFI.mp3",
}
CLIP_DURATION = 30.0
DURATION_TOLERANCE_S = 0.05
#: jukemir's ratio list: 100 x train, 16 x valid (an 80/20 song split after propagation)
ARTIST_RATIOS = ["train"] * 100 + ["valid"] * 16
SONGS_PER_SPLIT = {"train": 923, "valid": 236, "test": 604}
CLIPS_PER_SPLIT = {"train": 3687, "valid": 942, "test": 2406}


def _read_tsv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _artists(field):
    return [a.strip() for a in field.strip().split(",")]


def artist_splits(beatport_rows):
    """``{artist: split}`` from beatport_metadata.txt rows (file order matters)."""
    split_of = {}
    for row in beatport_rows:
        for artist in _artists(row["ARTIST"]):
            h = int(hashlib.sha1(artist.lower().encode("utf-8")).hexdigest(), 16)
            split_of[artist] = ARTIST_RATIOS[h % len(ARTIST_RATIOS)]
    # every collaborator of a valid artist is valid; twice = two hops
    for _ in range(2):
        for row in beatport_rows:
            artists = _artists(row["ARTIST"])
            if any(split_of[a] == "valid" for a in artists):
                for a in artists:
                    split_of[a] = "valid"
    return split_of


def mtg_songs(root):
    """Train/valid songs of the MTG key repository at ``root``."""
    root = Path(root)
    beatport = _read_tsv(root / "annotations" / "beatport_metadata.txt")
    annotations = _read_tsv(root / "annotations" / "annotations.txt")
    split_of = artist_splits(beatport)
    artists_of = {int(r["ID"]): _artists(r["ARTIST"]) for r in beatport}
    rows = []
    for row in annotations:
        track = int(row["ID"])
        key = row["MANUAL KEY"].strip()
        if int(row["C"]) != 2 or "/" in key:
            continue
        splits = {split_of[a] for a in artists_of[track]}
        if len(splits) != 1:
            raise DataError(f"{root}: track {track} has artists in both splits: {splits}")
        rows.append(
            {"track": track, "split": splits.pop(), "label": key_label(key), "source": "mtg"}
        )
    return rows


def read_key_file(path):
    """The key of a giantsteps-key-dataset ``.key`` file (``'Eb minor'``)."""
    text = Path(path).read_text().strip()
    return key_label(text.split("\t")[0])


def key_songs(root):
    """Test songs of the giantsteps-key-dataset repository at ``root`` (its ``md5/``)."""
    root = Path(root)
    rows = []
    for path in sorted((root / "md5").glob("*.LOFI.md5")):
        track = int(path.name.split(".")[0])
        label = read_key_file(root / "annotations" / "key" / f"{track}.LOFI.key")
        rows.append({"track": track, "split": "test", "label": label, "source": "key"})
    return rows


def song_table(mtg_root, key_root):
    """All songs: ``song_id`` (7 digits), ``track``, ``split``, ``label``, ``source``."""
    rows = mtg_songs(mtg_root) + key_songs(key_root)
    table = pd.DataFrame(rows)
    table.insert(0, "song_id", [f"{t:07d}" for t in table["track"]])
    dup = table["song_id"][table["song_id"].duplicated()].tolist()
    if dup:
        raise DataError(f"GiantSteps songs listed twice: {dup[:5]}")
    return table


def n_clips(duration, *, clip_duration=CLIP_DURATION, tolerance=DURATION_TOLERANCE_S):
    """Whole clips in a song of ``duration`` s (a clip may be ``tolerance`` short)."""
    return int(np.floor((duration + tolerance) / clip_duration))


def clip_table(songs, durations, *, counts=None):
    """Cut songs into clips; ``durations`` maps song_id -> seconds (None: unknown, the
    song's clip count is then ``counts[song_id]``)."""
    rows = []
    for song in songs.itertuples(index=False):
        duration = durations[song.song_id]
        duration = None if duration is None else float(duration)
        count = counts[song.song_id] if duration is None else n_clips(duration)
        for k in range(count):
            rows.append(
                {
                    "clip_id": f"{song.song_id}-{k}",
                    "offset": k * CLIP_DURATION,
                    "duration": CLIP_DURATION,
                    "split": song.split,
                    "label": song.label,
                    "song_id": song.song_id,
                    "track": song.track,
                    "source": song.source,
                    "song_duration": "" if duration is None else duration,
                }
            )
    return pd.DataFrame(rows)


def undecodable_song_clips(songs, durations, bad_songs):
    """``{song_id: n_clips}`` for songs whose duration is unknown (undecodable).

    What the decodable songs leave of the paper's clips per split is shared
    among that split's undecodable songs (all of it to a lone one, the usual
    case; evenly, the first ones one more, among several), so the table keeps
    the paper's clip count and the resample stage excludes each of these clips
    with its file's reason.
    """
    counts = {}
    for split, expected in CLIPS_PER_SPLIT.items():
        in_split = songs[songs["split"] == split]
        bad = [s for s in in_split["song_id"] if s in bad_songs]
        if not bad:
            continue
        known = sum(n_clips(durations[s]) for s in in_split["song_id"] if s not in bad_songs)
        left = expected - known
        if left < len(bad):
            raise DataError(
                f"GiantSteps {split}: the decodable songs give {known} of {expected} clips, "
                f"too many to leave a clip to each of the {len(bad)} undecodable songs {bad[:5]}"
            )
        share, extra = divmod(left, len(bad))
        counts.update({s: share + (i < extra) for i, s in enumerate(bad)})
    return counts


def unpacked_repo(raw, prefix):
    """An unpacked annotation repository ``raw/<prefix>*/`` (holding ``annotations/``),
    or None."""
    matches = [p for p in sorted(Path(raw).glob(f"{prefix}*")) if (p / "annotations").is_dir()]
    if len(matches) > 1:
        raise DataError(f"{raw}: several unpacked {prefix}* repositories {matches}; keep one")
    return matches[0] if matches else None


def tree_sha256(root):
    """The sha256 of a tree's listing: one ``<relative path>\\t<sha256>`` line per file."""
    import hashlib

    from .base import file_sha256

    lines = [
        f"{p.relative_to(root).as_posix()}\t{file_sha256(p)}\n"
        for p in sorted(Path(root).rglob("*"))
        if p.is_file()
    ]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _repo_dir(extracted, prefix):
    matches = sorted(Path(extracted).glob(f"{prefix}*"))
    if len(matches) != 1:
        raise DataError(f"{extracted}: expected one {prefix}* directory, found {matches}")
    return matches[0]


REPOS = {
    "GIANTSTEPS_MTG_KEY_ANNOTATIONS": "giantsteps-mtg-key-dataset",
    "GIANTSTEPS_KEY_ANNOTATIONS": "giantsteps-key-dataset",
}


def song_durations(paths):
    """``{song_id: seconds}`` from the audio headers; None where soundfile cannot read one."""
    import soundfile as sf

    durations = {}
    for song_id, path in paths.items():
        try:
            durations[song_id] = sf.info(str(path)).duration
        except (sf.LibsndfileError, RuntimeError, ValueError):
            durations[song_id] = None
    return durations


class GiantStepsClips(VerifiedDataset):
    """GiantSteps key in 30 s clips; see the module docstring."""

    kind = "giantsteps_clips"
    jukemir_tag = "giantsteps_clips"
    task_type = "key"
    subdir = "giantsteps"
    layout_hint = (
        "Instead of the annotation zips, giantsteps/ may hold the repositories unpacked: "
        "giantsteps-key-dataset*/ and giantsteps-mtg-key-dataset*/ (each with annotations/, "
        "md5/); with params.verify: present, the songs whose mp3 is in audio/ are used (each "
        "still md5-checked) and the table says it is a subset"
    )
    split_sizes = CLIPS_PER_SPLIT
    params_schema = verify_schema("all 1,763 songs' audio")

    def labels(self):
        return list(KEY_LABELS)

    def num_present(self):
        return len(self._present["clips"])

    def audio_remotes(self, songs, *, mtg_root, key_root):
        """One Remote per song; the md5 comes from the repository's own md5/ file."""
        remotes = []
        for song in songs.itertuples(index=False):
            root = mtg_root if song.source == "mtg" else key_root
            md5_path = Path(root) / "md5" / f"{song.track}.LOFI.md5"
            if not md5_path.is_file():
                repo, commit = (
                    ("giantsteps-mtg-key-dataset", MTG_COMMIT)
                    if song.source == "mtg"
                    else ("giantsteps-key-dataset", KEY_COMMIT)
                )
                raise DataError(
                    f"{md5_path}: md5 file of track {song.track} not found; place the complete "
                    f"{repo} repository there (commit {commit[:7]}), its md5/ lists every song"
                )
            prefix = "GIANTSTEPS_MTG_KEY" if song.source == "mtg" else "GIANTSTEPS_KEY"
            remotes.append(
                Remote(
                    key=f"{prefix}_{song.track}",
                    path=f"audio/{song.track}.LOFI.mp3",
                    checksum=md5_path.read_text().split()[0],
                    urls=(AUDIO_URLS[song.source].format(id=song.track),),
                )
            )
        return remotes

    def _songs(self, out_dir):
        """``(songs, audio remotes, zip remotes used, unpacked repositories)`` from the
        annotation repositories (unpacked in the raw directory, else the zips extracted)."""
        out_dir = Path(out_dir)
        raw = self.raw_dir(out_dir)
        # an unpacked repository in the raw directory replaces its zip
        roots = {k: unpacked_repo(raw, prefix) for k, prefix in REPOS.items()}
        wanted = [r for k, r in REMOTES.items() if roots.get(k) is None]
        zips = self.fetch(wanted, out_dir=out_dir)
        unpacked = {}
        for key, prefix in REPOS.items():
            if roots[key] is not None:
                unpacked[key] = roots[key]
                continue
            dest = out_dir / "extracted" / key.lower()
            extract_once(zips[key], dest, checksum=REMOTES[key].checksum)
            roots[key] = _repo_dir(dest, prefix)
        mtg_root = roots["GIANTSTEPS_MTG_KEY_ANNOTATIONS"]
        key_root = roots["GIANTSTEPS_KEY_ANNOTATIONS"]
        songs = song_table(mtg_root, key_root)
        counts = songs["split"].value_counts().to_dict()
        if counts != SONGS_PER_SPLIT:
            raise DataError(
                f"GiantSteps annotations give {counts} songs, expected {SONGS_PER_SPLIT}"
                + (
                    f" (unpacked under {raw}: place the complete repositories at the commits "
                    "of the registry's zips)"
                    if unpacked
                    else ""
                )
            )
        audio = self.audio_remotes(songs, mtg_root=mtg_root, key_root=key_root)
        return songs, audio, wanted, unpacked

    @functools.cached_property
    def _present(self):
        """verify: present: the songs whose mp3 is in data_home and their clips (read when
        the workflow is parsed; zipped annotations are read in a scratch folder)."""
        with tempfile.TemporaryDirectory(prefix="mirprobe-giantsteps-") as scratch:
            songs, audio, _, _ = self._songs(scratch)
        raw = self.raw_dir(None)
        paths = {
            s: raw / r.path
            for s, r in zip(songs["song_id"], audio, strict=True)
            if (raw / r.path).is_file()
        }
        durations = song_durations(paths)
        kept = songs[songs["song_id"].isin(paths)]
        # an undecodable song: one clip, excluded by the resample stage with its reason
        counts = {s: 1 for s, d in durations.items() if d is None}
        return {
            "paths": paths,
            "missing_songs": sorted(set(songs["song_id"]) - set(paths)),
            "clips": clip_table(kept, durations, counts=counts),
        }

    def prepare(self, out_dir, *, threads=1, on_bad_audio="error"):
        out_dir = Path(out_dir)
        songs, audio, wanted, unpacked = self._songs(out_dir)
        present = self.params["verify"] == "present"
        inferred = {}
        if present:
            raw = self.raw_dir(None)
            found = self._present
            # the mp3s present are verified against their md5 like any raw file
            self.verify_local([r for r in audio if (raw / r.path).is_file()])
            song_paths = found["paths"]
            bad_audio = check_decodable(song_paths.values(), on_bad_audio=on_bad_audio)
            table = found["clips"].copy()
            for song_id in found["missing_songs"]:
                print(f"absent, left out (verify: present): song {song_id}", flush=True)
        else:
            paths = self.fetch(audio, out_dir=out_dir)
            song_paths = {s: paths[r.key] for s, r in zip(songs["song_id"], audio, strict=True)}
            bad_audio = check_decodable(song_paths.values(), on_bad_audio=on_bad_audio)
            bad_paths = {entry["path"] for entry in bad_audio}
            bad_songs = {s for s, p in song_paths.items() if str(p) in bad_paths}
            durations = song_durations({s: p for s, p in song_paths.items() if s not in bad_songs})
            durations.update(dict.fromkeys(bad_songs))
            inferred = undecodable_song_clips(songs, durations, bad_songs)
            table = clip_table(songs, durations, counts=inferred)
            counts = table["split"].value_counts().to_dict()
            if counts != CLIPS_PER_SPLIT:
                raise DataError(
                    f"GiantSteps audio gives {counts} clips, the paper has {CLIPS_PER_SPLIT}; "
                    "song durations differ from the paper's (see song_duration in the table)"
                )
        table.insert(1, "audio_path", [str(song_paths[s].resolve()) for s in table["song_id"]])
        write_metadata(table, out_dir / "metadata.csv")
        n_total = sum(CLIPS_PER_SPLIT.values())
        missing_songs = self._present["missing_songs"] if present else []
        return self.provenance(
            [self.remote(r) for r in wanted],
            # no digest is published for an unpacked repository: the sha256 of its listing
            unpacked_annotations={
                key: {"path": str(root), "sha256": tree_sha256(root)}
                for key, root in unpacked.items()
            },
            n_audio_files=len(song_paths),
            audio_checksums="md5/<id>.LOFI.md5 of each annotation repository",
            songs_per_split={s: int((songs["split"] == s).sum()) for s in SONGS_PER_SPLIT},
            clips_per_split={s: int((table["split"] == s).sum()) for s in CLIPS_PER_SPLIT},
            subset=subset_label(len(table), n_total) if present else None,
            missing_songs=missing_songs,
            # of the paper's 7035 clips, how many this run lacks
            n_missing_clips=max(n_total - len(table), 0) if present else 0,
            bad_audio=bad_audio,
            # clips of undecodable songs, counted from the paper's totals (all excluded)
            inferred_clip_counts=inferred,
        )
