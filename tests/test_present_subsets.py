"""``verify: present`` for GiantSteps and Emomusic, and Emomusic as labs keep it (the two
tarballs unpacked): runs on the verified clips present, says "subset (N of M clips)" in the
record and the table, and data_home errors that say which file is wrong and what to do."""

import csv
import gzip
import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import fixture_path
from mirprobe.datasets import build_dataset, emomusic, giantsteps
from mirprobe.errors import AudioDecodeError, ConfigError, DataError
from mirprobe.stages import prepare_dataset


def jukemir(name):
    with gzip.open(fixture_path("jukemir", "metadata", f"{name}.json.gz"), "rt") as handle:
        return json.load(handle)


def write_mp3(path, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(8000 * seconds)) / 8000
    sf.write(path, (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000, format="MP3")
    return hashlib.md5(path.read_bytes()).hexdigest()


def prepare(name, config, home, out, on_bad_audio="error"):
    return prepare_dataset(
        name=name,
        dataset_config=config,
        metadata_path=out / "metadata.csv",
        checksums_path=out / "checksums.tsv",
        record_path=out / "prepare.json",
        data_home=home,
        on_bad_audio=on_bad_audio,
    )


# -- GiantSteps -------------------------------------------------------------------
#: audio placed for two songs of each split: (song_id, seconds -> clips)
GS_AUDIO = {"train": (61.0, 31.0), "valid": (91.0, 30.5), "test": (120.05, 45.0)}


@pytest.fixture(scope="module")
def gs_tree(tmp_path_factory):
    """data_home/giantsteps with both annotation repositories unpacked and complete, and
    mp3s for two songs per split.

    The fixtures hold the full MTG annotations.txt and beatport_metadata.txt but only
    subsets of md5/ and key/: md5/ is rebuilt for every song from jukemir's registry
    (the same md5s the repositories list), key/ from jukemir's test labels. The songs
    given audio get tiny stand-in mp3s, and their md5/ file that mp3's md5."""
    home = tmp_path_factory.mktemp("gs") / "data_home"
    root = home / "giantsteps"
    mtg = root / "giantsteps-mtg-key-dataset"
    key = root / "giantsteps-key-dataset-c8cb8aa"
    (mtg / "annotations").mkdir(parents=True)
    source = fixture_path("annotations", "giantsteps_mtg_key", "giantsteps-mtg-key-dataset")
    for name in ("annotations.txt", "beatport_metadata.txt"):
        (mtg / "annotations" / name).symlink_to(source / "annotations" / name)
    assets = json.loads(fixture_path("jukemir", "assets", "giantsteps.json").read_text())
    for asset_key, asset in assets.items():
        track = asset_key.rsplit("_", 1)[1]
        if not track.isdigit():
            continue
        repo = mtg if asset_key.startswith("GIANTSTEPS_MTG_KEY_") else key
        (repo / "md5").mkdir(parents=True, exist_ok=True)
        (repo / "md5" / f"{track}.LOFI.md5").write_text(asset["checksum"] + "\n")
    (key / "annotations" / "key").mkdir(parents=True)
    for clip in jukemir("giantsteps_clips").values():
        if clip["split"] == "test":
            track = int(clip["clip"]["audio_uid"])
            (key / "annotations" / "key" / f"{track}.LOFI.key").write_text(clip["y"])
    songs = giantsteps.song_table(mtg, key)
    chosen = {}
    for split, seconds in GS_AUDIO.items():
        rows = songs[songs["split"] == split].head(len(seconds))
        for row, length in zip(rows.itertuples(index=False), seconds, strict=True):
            repo = mtg if row.source == "mtg" else key
            md5 = write_mp3(root / "audio" / f"{row.track}.LOFI.mp3", length)
            (repo / "md5" / f"{row.track}.LOFI.md5").write_text(md5 + "\n")
            chosen[row.song_id] = (split, giantsteps.n_clips(length), row.track)
    return home, chosen


@pytest.fixture
def gs_home(gs_tree, tmp_path):
    """A copy of :func:`gs_tree` the test may change."""
    import shutil

    home = tmp_path / "data_home"
    shutil.copytree(gs_tree[0], home, symlinks=True)
    root = home / "giantsteps"
    return {
        "home": home,
        "root": root,
        "chosen": gs_tree[1],
        "mtg": root / "giantsteps-mtg-key-dataset",
        "key": root / "giantsteps-key-dataset-c8cb8aa",
    }


def gs_config(verify="present"):
    return {"kind": "giantsteps_clips", "params": {"verify": verify}}


def test_giantsteps_present_runs_on_the_songs_with_audio_and_says_subset(gs_home, tmp_path):
    chosen = gs_home["chosen"]
    n = sum(count for _, count, _ in chosen.values())
    assert n == 2 + 1 + 3 + 1 + 4 + 1
    dataset = build_dataset("gs", gs_config(), data_home=gs_home["home"])
    assert dataset.num_clips() == n
    record = prepare("gs", gs_config(), gs_home["home"], tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "metadata.csv", dtype=str)
    assert sorted(set(table["song_id"])) == sorted(chosen)
    for song_id, (split, count, _) in chosen.items():
        rows = table[table["song_id"] == song_id]
        assert len(rows) == count and set(rows["split"]) == {split}
    source = record["source"]
    assert source["subset"] == f"subset ({n} of 7035 clips)"
    assert source["n_missing_clips"] == 7035 - n
    assert len(source["missing_songs"]) == 1763 - 6
    assert source["clips_per_split"] == {"train": 3, "valid": 4, "test": 5}
    assert source["songs_per_split"] == giantsteps.SONGS_PER_SPLIT
    assert set(source["unpacked_annotations"]) == set(giantsteps.REPOS)
    assert source["raw_files"] == []  # no zip was asked for
    assert len(pd.read_csv(tmp_path / "out" / "checksums.tsv", sep="\t")) == 6


def test_giantsteps_strict_on_a_partial_copy_says_what_to_do(gs_home, tmp_path):
    dataset = build_dataset("gs", gs_config("strict"), data_home=gs_home["home"])
    assert dataset.num_clips() == 7035
    with pytest.raises(DataError) as error:
        dataset.prepare(tmp_path / "out")
    message = str(error.value)
    assert message.startswith(
        f"{1763 - 6} of 1763 files in data_home ({gs_home['root']}) fail verification"
    )
    assert ".LOFI.mp3: not found; place the original there (md5 " in message
    assert "with params.verify: present, the songs whose mp3 is in audio/ are used" in message
    assert "fetch it again" not in message


def test_giantsteps_present_md5_mismatch_names_the_file_and_what_to_do(gs_home, tmp_path):
    song_id, (_, _, track) = next(iter(gs_home["chosen"].items()))
    mp3 = gs_home["root"] / "audio" / f"{track}.LOFI.mp3"
    write_mp3(mp3, 33.0)  # re-encoded: no longer the file md5/ lists
    dataset = build_dataset("gs", gs_config(), data_home=gs_home["home"])
    with pytest.raises(DataError) as error:
        dataset.prepare(tmp_path / "out")
    message = str(error.value)
    assert message.startswith(f"1 of 6 files in data_home ({gs_home['root']})")
    assert f"{mp3}: checksum mismatch: md5 is" in message
    assert "replace it with the original" in message and "fetch it again" not in message


def test_giantsteps_present_excludes_an_undecodable_song_with_its_reason(gs_home, tmp_path):
    song_id, (_, _, track) = list(gs_home["chosen"].items())[-1]
    mp3 = gs_home["root"] / "audio" / f"{track}.LOFI.mp3"
    mp3.write_bytes(b"\x00" * 4096)
    repo = gs_home["key"]  # the last chosen song is a test song
    (repo / "md5" / f"{track}.LOFI.md5").write_text(hashlib.md5(mp3.read_bytes()).hexdigest())
    with pytest.raises(AudioDecodeError, match=rf"{track}\.LOFI\.mp3: cannot decode audio"):
        prepare("gs", gs_config(), gs_home["home"], tmp_path / "a")
    record = prepare("gs", gs_config(), gs_home["home"], tmp_path / "b", on_bad_audio="exclude")
    (entry,) = record["source"]["bad_audio"]
    assert entry["path"] == str(mp3.resolve()) and "cannot decode audio" in entry["reason"]
    table = pd.read_csv(tmp_path / "b" / "metadata.csv", dtype=str)
    # its clip count is unknown: one clip, which the resample stage excludes with the reason
    assert table[table["song_id"] == song_id]["clip_id"].tolist() == [f"{song_id}-0"]
    assert record["n_clips"] == 2 + 1 + 3 + 1 + 4 + 1


def test_giantsteps_an_incomplete_md5_folder_says_to_place_the_whole_repository(gs_home, tmp_path):
    md5 = gs_home["mtg"] / "md5" / "5061.LOFI.md5"  # a train song
    md5.unlink()
    dataset = build_dataset("gs", gs_config(), data_home=gs_home["home"])
    with pytest.raises(DataError) as error:
        dataset.num_clips()
    assert str(error.value) == (
        f"{md5}: md5 file of track 5061 not found; place the complete "
        "giantsteps-mtg-key-dataset repository there (commit fd7b8c5), its md5/ lists every song"
    )


def test_giantsteps_present_needs_a_local_copy():
    with pytest.raises(ConfigError, match=r"verify: present runs on the files of a local copy"):
        build_dataset("gs", gs_config())


# -- Emomusic ---------------------------------------------------------------------
def write_csv(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture
def emo_home(tmp_path):
    """data_home/emomusic with both tarballs unpacked as labs keep them: annotations/ with
    the CSVs (rebuilt from the rows jukemir embeds; the real files are not fixtures) and
    clips_45seconds/ holding tiny mp3s for two songs of each split."""
    meta = jukemir("emomusic")
    home = tmp_path / "data_home"
    root = home / "emomusic"
    for stem in ("songs_info", "static_annotations"):
        write_csv(root / "annotations" / f"{stem}.csv", [v["extra"][stem] for v in meta.values()])
    table = emomusic.song_table(root / "annotations")
    chosen = table.groupby("split").head(2)
    for song_id in chosen["song_id"]:
        write_mp3(root / "clips_45seconds" / f"{int(song_id)}.mp3", 0.5)
    return {"home": home, "root": root, "chosen": chosen, "meta": meta}


def emo_config(verify="present"):
    return {"kind": "emomusic", "params": {"verify": verify}}


def test_emomusic_present_runs_on_the_unpacked_clips_and_says_subset(emo_home, tmp_path):
    dataset = build_dataset("emo", emo_config(), data_home=emo_home["home"])
    assert dataset.num_clips() == 6
    record = prepare("emo", emo_config(), emo_home["home"], tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "metadata.csv", dtype=str)
    assert sorted(table["clip_id"]) == sorted(emo_home["chosen"]["clip_id"])
    # labels are z-scored over all development songs, as in the full run
    for row in table.itertuples(index=False):
        want = emo_home["meta"][row.clip_id]["y"]
        np.testing.assert_allclose([float(x) for x in row.label.split("|")], want, atol=1e-12)
    source = record["source"]
    assert source["subset"] == "subset (6 of 744 clips)"
    assert len(source["missing_clips"]) == 738
    assert source["clips_per_split"] == {"train": 2, "valid": 2, "test": 2}
    assert source["layout"] == {"annotations": "unpacked", "clips": "unpacked"}
    assert source["raw_files"] == []  # neither tarball asked for
    # no per-file digest is published for the CSVs: theirs are recorded
    annotations = emo_home["root"] / "annotations"
    assert source["digest_recorded"] == {
        str(annotations / name): hashlib.sha256((annotations / name).read_bytes()).hexdigest()
        for name in ("songs_info.csv", "static_annotations.csv")
    }
    assert not (tmp_path / "out" / "extracted").exists()  # nothing unpacked again


def test_emomusic_unpacked_in_full_runs_strict_without_unpacking_again(emo_home, tmp_path):
    import os

    clips = emo_home["root"] / "clips_45seconds"
    one = clips / f"{int(emo_home['chosen']['song_id'].iloc[0])}.mp3"
    for song_id in emo_home["meta"]:
        path = clips / f"{int(song_id)}.mp3"
        if not path.exists():
            os.link(one, path)  # one tiny mp3 under every name: no disk per clip
    record = prepare("emo", emo_config("strict"), emo_home["home"], tmp_path / "out")
    assert record["n_clips"] == 744 and record["split_counts"] == emomusic.SPLIT_SIZES
    source = record["source"]
    assert source["subset"] is None and source["missing_clips"] == []
    assert source["layout"] == {"annotations": "unpacked", "clips": "unpacked"}
    table = pd.read_csv(tmp_path / "out" / "metadata.csv", dtype=str)
    assert all(p.startswith(str(clips)) for p in table["audio_path"])
    assert not (tmp_path / "out" / "extracted").exists()


def test_emomusic_strict_on_a_partial_unpacked_copy_says_what_to_do(emo_home, tmp_path):
    dataset = build_dataset("emo", emo_config("strict"), data_home=emo_home["home"])
    assert dataset.num_clips() == 744
    with pytest.raises(DataError) as error:
        dataset.prepare(tmp_path / "out")
    message = str(error.value)
    clips = emo_home["root"] / "clips_45seconds"
    assert message.startswith(f"738 of 744 Emomusic clips not found in {clips}:")
    assert "What to do: place the original clips there (from clips_45sec.tar.gz)" in message
    assert "set params.verify: present" in message and "fetch it again" not in message


def test_emomusic_unpacked_annotations_must_be_complete(emo_home, tmp_path):
    info = emo_home["root"] / "annotations" / "songs_info.csv"
    info.write_text("\n".join(info.read_text().splitlines()[:-10]) + "\n")
    dataset = build_dataset("emo", emo_config("strict"), data_home=emo_home["home"])
    with pytest.raises(DataError) as error:
        dataset.prepare(tmp_path / "out")
    message = str(error.value)
    assert message.startswith("Emomusic annotations give")
    assert f"(unpacked under {emo_home['root'] / 'annotations'}: place the complete CSVs" in message


def test_emomusic_without_annotations_names_both_options(tmp_path):
    (tmp_path / "emomusic" / "clips_45seconds").mkdir(parents=True)
    dataset = build_dataset("emo", emo_config("strict"), data_home=tmp_path)
    with pytest.raises(DataError) as error:
        dataset.prepare(tmp_path / "out")
    message = str(error.value)
    assert f"{tmp_path / 'emomusic' / 'annotations.tar.gz'}: not found; place the original" in (
        message
    )
    assert "emomusic/ may hold the tarballs unpacked: annotations/ (songs_info.csv" in message
    assert "clips_45sec.tar.gz" not in message.split("\n")[1]  # the clips folder replaces it


def test_emomusic_present_needs_an_unpacked_clips_folder(emo_home, tmp_path):
    import shutil

    shutil.rmtree(emo_home["root"] / "clips_45seconds")
    dataset = build_dataset("emo", emo_config(), data_home=emo_home["home"])
    with pytest.raises(DataError, match=r"no unpacked clips folder .*clips_45seconds/<n>\.mp3"):
        dataset.num_clips()


def test_emomusic_present_needs_a_local_copy():
    with pytest.raises(ConfigError, match=r"verify: present runs on the files of a local copy"):
        build_dataset("emo", emo_config())


@pytest.mark.workflow
def test_a_partial_giantsteps_and_emomusic_run_to_a_table_labelled_subset(
    gs_home, emo_home, tmp_path
):
    from workflow_runs import cell_stats, run_mfcc_table, table_header

    home = gs_home["home"]
    assert emo_home["home"] == home  # both fixtures fill tmp_path/data_home
    workdir = run_mfcc_table(
        tmp_path / "run",
        data_home=str(home),
        datasets={
            "gs": {"kind": "giantsteps_clips", "label": "GiantSteps", **gs_config()},
            "emo": {"kind": "emomusic", "label": "Emomusic", **emo_config()},
        },
    )
    header = table_header(workdir)
    assert "GiantSteps [subset (12 of 7035 clips)]" in header
    assert "Emomusic [subset (6 of 744 clips)]" in header
    for name, label in (("gs", "subset (12 of 7035 clips)"), ("emo", "subset (6 of 744 clips)")):
        assert cell_stats(workdir, name)["data"]["source"]["subset"] == label


def test_emomusic_clips_tarball_is_unpacked_once_and_its_gaps_named(
    emo_home, tmp_path, monkeypatch
):
    """The clips as clips_45sec.tar.gz beside the unpacked annotations. The real tarball is
    not a fixture: one is made here and the registry's digest set to it for the test."""
    import dataclasses
    import os
    import tarfile

    root = emo_home["root"]
    clips = root / "clips_45seconds"
    one = next(clips.iterdir())
    for song_id in emo_home["meta"]:
        if not (clips / f"{int(song_id)}.mp3").exists():
            os.link(one, clips / f"{int(song_id)}.mp3")
    gone = sorted(emo_home["meta"])[:2]
    for song_id in gone:  # not in the tarball
        (clips / f"{int(song_id)}.mp3").rename(tmp_path / f"{int(song_id)}.mp3")
    tarball = root / "clips_45sec.tar.gz"
    with tarfile.open(tarball, "w:gz") as archive:
        archive.add(clips, arcname="clips_45seconds")
    (clips).rename(tmp_path / "clips_45seconds")  # only the tarball is left
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    remote = dataclasses.replace(emomusic.REMOTES["EMOMUSIC_CLIPS"], checksum=digest)
    monkeypatch.setitem(emomusic.REMOTES, "EMOMUSIC_CLIPS", remote)
    dataset = build_dataset("emo", emo_config("strict"), data_home=emo_home["home"])
    out = tmp_path / "out"
    with pytest.raises(DataError) as error:
        dataset.prepare(out)
    extracted = out / "extracted"
    assert str(error.value) == (
        f"2 clips missing from the Emomusic clips archive under "
        f"{extracted / 'clips' / 'clips_45seconds'}: songs {gone}; delete {extracted} and "
        "prepare again"
    )


def test_emomusic_present_clips_changed_since_parsing_says_run_again(emo_home, tmp_path):
    dataset = build_dataset("emo", emo_config(), data_home=emo_home["home"])
    assert dataset.num_clips() == 6
    song_id = emo_home["chosen"]["song_id"].iloc[0]
    (emo_home["root"] / "clips_45seconds" / f"{int(song_id)}.mp3").unlink()
    with pytest.raises(DataError) as error:
        dataset.prepare(tmp_path / "out")
    assert str(error.value) == (
        f"Emomusic clips under {emo_home['root'] / 'clips_45seconds'} changed since the "
        "workflow was parsed; run it again"
    )
