"""The four real datasets: mirdata loaders on the fixtures, split/label tables
built from raw annotation files against jukemir's own metadata, and an offline
prepare run on a local copy laid out like the real GTZAN."""

import csv
import gzip
import hashlib
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import fixture_path, gtzan_lists
from mirprobe.datasets import (
    build_dataset,
    emomusic,
    get_dataset_class,
    giantsteps,
    gtzan,
    magnatagatune,
)
from mirprobe.datasets.base import read_metadata
from mirprobe.datasets.remote import key_label, mirdata_dataset, mirdata_report
from mirprobe.errors import AudioDecodeError, DataError


def jukemir(name):
    with gzip.open(fixture_path("jukemir", "metadata", f"{name}.json.gz"), "rt") as handle:
        return json.load(handle)


# -- mirdata loaders on mirdata's own fixture tracks ---------------------------
MIRDATA_CASES = [
    ("gtzan_genre", "1.0", "gtzan_genre_index_1.0_sample.json"),
    ("giantsteps_key", "+", "giantsteps_key_index_+_sample.json"),
    ("beatport_key", "1.0.0", "beatport_key_index_1.0.0_sample.json"),
]


@pytest.mark.parametrize(("name", "version", "index"), MIRDATA_CASES)
def test_mirdata_fixture_tracks_load_with_local_index(name, version, index):
    loader = mirdata_dataset(
        name,
        data_home=fixture_path("mirdata", name),
        version=version,
        index_path=fixture_path("mirdata_indexes", index),
    )
    track = loader.track(loader.track_ids[0])
    assert track.audio_path.endswith((".wav", ".mp3"))
    if name == "gtzan_genre":
        assert track.genre == "country"
        y, sr = track.audio
        assert sr == 22050 and y.ndim == 1 and len(y) > 0
    elif name == "giantsteps_key":
        # the mirdata fixture track 10089 is GiantSteps key test track 10089
        assert track.key == "D major"
        assert "10089" in track.audio_path
    else:
        assert track.key == ["D minor"] and "100066" in track.audio_path


@pytest.mark.parametrize(("name", "version", "index"), MIRDATA_CASES)
def test_mirdata_truncated_fixture_files_are_reported_not_raised(name, version, index):
    loader = mirdata_dataset(
        name,
        data_home=fixture_path("mirdata", name),
        version=version,
        index_path=fixture_path("mirdata_indexes", index),
    )
    report = mirdata_report(loader)
    if name == "gtzan_genre":
        # the wav matches; the truncated .beats does not; hiphop.00000 has no files
        assert any("hiphop.00000.wav" in m for m in report["missing"])
        assert any("country_00000.beats" in m for m in report["invalid"])
        assert not any(m.endswith(".wav") for m in report["invalid"])
    else:
        # the fixture mp3s are truncated copies
        assert [m for m in report["invalid"] if m.endswith(".mp3")]
        assert "md5 mismatch" in report["message"] and ".mp3" in report["message"]


def test_local_index_path_must_exist(tmp_path):
    with pytest.raises(DataError, match="index"):
        mirdata_dataset(
            "gtzan_genre", data_home=tmp_path, version="1.0", index_path=tmp_path / "no.json"
        )


# -- GiantSteps ---------------------------------------------------------------
def _gs_roots():
    return (
        fixture_path("annotations", "giantsteps_mtg_key", "giantsteps-mtg-key-dataset"),
        fixture_path("annotations", "giantsteps_key", "giantsteps-key-dataset"),
    )


def _jukemir_songs():
    songs = {}
    for clip in jukemir("giantsteps_clips").values():
        songs[clip["clip"]["audio_uid"]] = (
            clip["split"],
            clip["y"],
            clip["clip"]["audio_duration"],
        )
    return songs


def test_giantsteps_key_files_parse_to_jukemir_keys():
    _, key_root = _gs_roots()
    songs = _jukemir_songs()
    rows = giantsteps.key_songs(key_root)
    assert len(rows) == 20
    for row in rows:
        split, label, _ = songs[f"{row['track']:07d}"]
        assert (split, label) == ("test", row["label"])
    # and agree with what mirdata's giantsteps_key loader reads for track 10089
    assert next(r["label"] for r in rows if r["track"] == 10089) == "D major"


def test_giantsteps_mtg_key_files_agree_with_annotations_txt():
    mtg_root, _ = _gs_roots()
    table = {
        int(r["ID"]): r for r in giantsteps._read_tsv(mtg_root / "annotations" / "annotations.txt")
    }
    checked = 0
    for path in sorted((mtg_root / "annotations" / "key").glob("*.LOFI.key")):
        track = int(path.name.split(".")[0])
        text, confidence = path.read_text().split("\t")[:2]
        assert confidence == table[track]["C"]
        if text == "-":  # no key (confidence 0): not used
            assert table[track]["MANUAL KEY"] == "-" and confidence == "0"
            continue
        assert key_label(text) == key_label(table[track]["MANUAL KEY"])
        checked += 1
    assert checked == 19


def test_giantsteps_songs_and_clips_equal_jukemir():
    mtg_root, key_root = _gs_roots()
    expected = _jukemir_songs()
    songs = giantsteps.song_table(mtg_root, key_root)
    dev = songs[songs["split"] != "test"]
    # train/valid from the full annotations.txt + beatport_metadata.txt (artist hashing)
    assert dev["split"].value_counts().to_dict() == {"train": 923, "valid": 236}
    want = {s: (sp, y) for s, (sp, y, _) in expected.items() if sp != "test"}
    got = dict(zip(dev["song_id"], zip(dev["split"], dev["label"], strict=True), strict=True))
    assert got == want
    # the fixture holds 20 of the 604 test songs' key files; complete the test
    # set from jukemir's song list to check the clip rule on every song
    test_songs = pd.DataFrame(
        [
            {"song_id": s, "track": int(s), "split": sp, "label": y, "source": "key"}
            for s, (sp, y, _) in expected.items()
            if sp == "test"
        ]
    )
    assert len(test_songs) == 604
    all_songs = pd.concat([dev, test_songs], ignore_index=True)
    clips = giantsteps.clip_table(all_songs, {s: d for s, (_, _, d) in expected.items()})
    assert clips["split"].value_counts().to_dict() == giantsteps.CLIPS_PER_SPLIT
    want = {
        k: (v["split"], v["y"], v["clip"]["clip_offset"])
        for k, v in jukemir("giantsteps_clips").items()
    }
    got = {r.clip_id: (r.split, r.label, r.offset) for r in clips.itertuples(index=False)}
    assert got == want


def test_giantsteps_clip_rule_tolerates_a_short_decode():
    assert giantsteps.n_clips(120.058776) == 4
    assert giantsteps.n_clips(119.97) == 4  # a decoder reporting 30 ms less
    assert giantsteps.n_clips(119.9) == 3
    assert giantsteps.n_clips(44.75) == 1


def test_giantsteps_audio_checksums_come_from_the_repositories():
    mtg_root, key_root = _gs_roots()
    assets = json.loads(fixture_path("jukemir", "assets", "giantsteps.json").read_text())
    songs = pd.DataFrame(
        [
            {"song_id": "0010089", "track": 10089, "source": "key"},
            {"song_id": "0005061", "track": 5061, "source": "mtg"},
        ]
    )
    cls = get_dataset_class("giantsteps_clips")
    remotes = cls(name="gs").audio_remotes(songs, mtg_root=mtg_root, key_root=key_root)
    for remote in remotes:
        assert remote.checksum == assets[remote.key]["checksum"]
        assert remote.urls == (assets[remote.key]["url"],)
        assert remote.algorithm == "md5"


# -- GTZAN ---------------------------------------------------------------------
def test_gtzan_split_table_equals_jukemir():
    table = gtzan.split_table(gtzan_lists())
    assert table["split"].value_counts().to_dict() == gtzan.SPLIT_SIZES
    want = {uid: (v["extra"]["id"], v["split"], v["y"]) for uid, v in jukemir("gtzan_ff").items()}
    got = {r.jukemir_uid: (r.clip_id, r.split, r.label) for r in table.itertuples(index=False)}
    assert got == want


def test_gtzan_split_lists_match_the_registry_checksums():
    from mirprobe.download import verify_file

    for split, path in gtzan_lists().items():
        verify_file(path, gtzan.REMOTES[f"GTZAN_{split.upper()}"].checksum)
    assets = json.loads(fixture_path("jukemir", "assets", "gtzan.json").read_text())
    for key, remote in gtzan.REMOTES.items():
        assert remote.checksum == assets[key]["checksum"] and remote.urls[0] == assets[key]["url"]


# -- Emomusic ------------------------------------------------------------------
def _write_csv(path, rows, *, delimiter=",", quote=False):
    fields = list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(
            handle,
            fieldnames=fields,
            delimiter=delimiter,
            quoting=csv.QUOTE_ALL if quote else csv.QUOTE_MINIMAL,
        )
        writer.writeheader()
        writer.writerows(rows)


def test_emomusic_table_from_annotation_csvs_equals_jukemir(tmp_path):
    meta = jukemir("emomusic")
    # rebuild the two CSVs from the rows jukemir embeds (the real files are not fixtures)
    for stem in ("songs_info", "static_annotations"):
        _write_csv(tmp_path / f"{stem}.csv", [v["extra"][stem] for v in meta.values()])
    table = emomusic.song_table(tmp_path)
    assert table["split"].value_counts().to_dict() == emomusic.SPLIT_SIZES
    assert sorted(table["clip_id"]) == sorted(meta)
    for row in table.itertuples(index=False):
        want = meta[row.clip_id]
        assert row.split == want["split"]
        got = [float(x) for x in row.label.split("|")]
        np.testing.assert_allclose(got, want["y"], rtol=0, atol=1e-12)
    assert get_dataset_class("emomusic")(name="e").labels() == ["arousal", "valence"]


def test_emomusic_minsec():
    assert emomusic.parse_minsec("1.33") == 93.0
    assert emomusic.parse_minsec("0.5") == 50.0
    assert emomusic.parse_minsec("2") == 120.0


# -- MagnaTagATune -------------------------------------------------------------
def test_magnatagatune_table_from_csvs_equals_jukemir(tmp_path):
    meta = jukemir("magnatagatune")
    info_rows, tag_rows = [], []
    all_tags = sorted({t for v in meta.values() for t in (v["y_all"] or [])})
    assert len(all_tags) == 188
    for v in meta.values():
        extra = v["extra"]
        info_rows.append(
            {
                k: extra[k]
                for k in (
                    "clip_id",
                    "track_number",
                    "title",
                    "artist",
                    "album",
                    "url",
                    "segmentStart",
                    "segmentEnd",
                    "original_url",
                    "mp3_path",
                )
            }
        )
        if v["y_all"] is not None:
            on = set(v["y_all"])
            tag_rows.append(
                {
                    "clip_id": extra["clip_id"],
                    **{t: "1" if t in on else "0" for t in all_tags},
                    "mp3_path": extra["mp3_path"],
                }
            )
    _write_csv(tmp_path / "clip_info_final.csv", info_rows, delimiter="\t", quote=True)
    _write_csv(tmp_path / "annotations_final.csv", tag_rows, delimiter="\t")
    table = magnatagatune.clip_table(
        tmp_path / "clip_info_final.csv", tmp_path / "annotations_final.csv"
    )
    assert table["split"].value_counts().to_dict() == magnatagatune.SPLIT_SIZES
    want = {k: (v["split"], sorted(v["y"])) for k, v in meta.items() if v["split"] is not None}
    got = {
        r.clip_id: (r.split, sorted(r.label.split("|")) if r.label else [])
        for r in table.itertuples(index=False)
    }
    assert got == want
    assert not set(magnatagatune.CORRUPT_CLIPS) & set(table["clip_id"])
    # clips with no top-50 tag are kept
    assert (table["label"] == "").sum() == sum(1 for v in want.values() if not v[1])
    counts = Counter(t for v in meta.values() for t in (v["y_all"] or []))
    assert set(magnatagatune.top_tags(counts)) == set(magnatagatune.TOP50_TAGS)


# -- the registry and num_clips ------------------------------------------------
@pytest.mark.parametrize(
    ("kind", "n", "n_labels"),
    [
        ("gtzan_ff", 930, 10),
        ("giantsteps_clips", 7035, 24),
        ("emomusic", 744, 2),
        ("magnatagatune", 25860, 50),
    ],
)
def test_num_clips_and_labels_known_before_data(kind, n, n_labels):
    dataset = build_dataset("d", {"kind": kind, "params": {}})
    assert dataset.num_clips() == n and len(dataset.labels()) == n_labels


# -- an offline prepare on a local GTZAN laid out like the real one -------------
def _gtzan_config(index):
    return {"kind": "gtzan_ff", "params": {"mirdata_index": str(index)}}


def test_gtzan_prepare_offline_from_local_copy(local_gtzan, tmp_path):
    from mirprobe.stages import prepare_dataset

    out = tmp_path / "results" / "gtzan"
    record = prepare_dataset(
        name="gtzan",
        dataset_config=_gtzan_config(local_gtzan["index"]),
        metadata_path=out / "metadata.csv",
        record_path=out / "prepare.json",
        checksums_path=out / "checksums.tsv",
        data_home=local_gtzan["data_home"],
    )
    table = read_metadata(out / "metadata.csv")
    assert len(table) == 930 and record["split_counts"] == gtzan.SPLIT_SIZES
    assert record["labels"] == gtzan.GENRES and record["task_type"] == "multiclass"
    want = {v["extra"]["id"]: (v["split"], v["y"]) for v in jukemir("gtzan_ff").values()}
    assert {r.clip_id: (r.split, r.label) for r in table.itertuples()} == want
    assert all(p.startswith(str(local_gtzan["root"])) for p in table["audio_path"])
    assert len(pd.read_csv(out / "checksums.tsv", sep="\t")) == 930
    assert not (out / "raw").exists()  # nothing downloaded


def test_gtzan_checksum_mismatch_names_the_file(local_gtzan, tmp_path):
    split_list = local_gtzan["root"] / "valid_filtered.txt"
    split_list.write_text(split_list.read_text() + "\n")
    dataset = build_dataset(
        "gtzan", _gtzan_config(local_gtzan["index"]), data_home=local_gtzan["data_home"]
    )
    with pytest.raises(DataError, match="valid_filtered.txt: checksum mismatch"):
        dataset.prepare(tmp_path / "out")


def test_gtzan_audio_md5_mismatch_names_the_file(local_gtzan, tmp_path):
    wav = local_gtzan["root"] / "gtzan_genre/genres/jazz/jazz.00024.wav"
    sf.write(wav, np.zeros(800, dtype=np.float32), 8000)
    dataset = build_dataset(
        "gtzan", _gtzan_config(local_gtzan["index"]), data_home=local_gtzan["data_home"]
    )
    with pytest.raises(DataError, match=r"jazz\.00024\.wav: md5 mismatch"):
        dataset.prepare(tmp_path / "out")


def test_gtzan_undecodable_audio_names_the_file(local_gtzan, tmp_path):
    rel = "gtzan_genre/genres/rock/rock.00041.wav"
    (local_gtzan["root"] / rel).write_bytes(b"RIFF not really a wave file" * 10)
    tracks = dict(local_gtzan["tracks"])
    tracks["rock.00041"] = {
        "audio": [rel, hashlib.md5((local_gtzan["root"] / rel).read_bytes()).hexdigest()]
    }
    local_gtzan["index"].write_text(json.dumps({"version": "1.0", "tracks": tracks}))
    dataset = build_dataset(
        "gtzan", _gtzan_config(local_gtzan["index"]), data_home=local_gtzan["data_home"]
    )
    with pytest.raises(AudioDecodeError, match=r"rock\.00041\.wav"):
        dataset.prepare(tmp_path / "out")


def _replace_gtzan_audio(local_gtzan, clip_id, data):
    """Give a GTZAN track other bytes, and its md5 in the mirdata index (so only decoding
    can find the problem)."""
    rel = local_gtzan["tracks"][clip_id]["audio"][0]
    (local_gtzan["root"] / rel).write_bytes(data)
    local_gtzan["tracks"][clip_id] = {"audio": [rel, hashlib.md5(data).hexdigest()]}
    local_gtzan["index"].write_text(json.dumps({"version": "1.0", "tracks": local_gtzan["tracks"]}))
    return local_gtzan["root"] / rel


def test_gtzan_undecodable_audio_is_excluded_by_resampling_under_exclude(local_gtzan, tmp_path):
    from mirprobe.audio import read_manifest, shard_slices
    from mirprobe.stages import prepare_dataset, resample

    bad = _replace_gtzan_audio(local_gtzan, "rock.00041", b"RIFF not really a wave file" * 10)
    out = tmp_path / "results" / "gtzan"
    record = prepare_dataset(
        name="gtzan",
        dataset_config=_gtzan_config(local_gtzan["index"]),
        metadata_path=out / "metadata.csv",
        record_path=out / "prepare.json",
        checksums_path=out / "checksums.tsv",
        data_home=local_gtzan["data_home"],
        on_bad_audio="exclude",
    )
    [entry] = record["source"]["bad_audio"]
    assert entry["path"] == str(bad.resolve()) and entry["reason"].startswith("cannot decode")
    assert record["n_bad_audio_files"] == 1
    table = read_metadata(out / "metadata.csv")
    assert len(table) == 930  # the clip stays listed: resampling excludes it, with the reason
    position = table.index[table["clip_id"] == "rock.00041"][0]
    shard = next(k for k, (a, b) in enumerate(shard_slices(930, 100)) if a <= position < b)
    stage = resample(
        metadata_path=out / "metadata.csv",
        out_dir=tmp_path / "shard",
        shard=shard,
        shard_size=100,
        sr=8000,
        on_bad_audio="exclude",
        expected_clips=930,
    )
    manifest = read_manifest(tmp_path / "shard").set_index("clip_id")
    assert manifest.loc["rock.00041", "status"] == "excluded"
    assert manifest.loc["rock.00041", "reason"] == entry["reason"]
    assert stage["n_excluded"] == 1 and stage["n_ok"] == 99


def test_giantsteps_undecodable_songs_keep_the_papers_clip_count():
    songs = pd.DataFrame(
        {
            "song_id": ["a", "b", "c", "d", "e"],
            "split": ["train", "train", "train", "valid", "test"],
        }
    )
    songs["label"], songs["track"], songs["source"] = "C major", 0, "mtg"
    counts = dict(giantsteps.CLIPS_PER_SPLIT)
    # train: 3687 clips, 'a' gives 3683 and 'b', 'c' are undecodable; valid and test all good
    durations = {"a": 3683 * 30.0, "b": None, "c": None, "d": counts["valid"] * 30.0}
    durations["e"] = counts["test"] * 30.0 + 29.96  # a clip 40 ms short is kept
    inferred = giantsteps.undecodable_song_clips(songs, durations, {"b", "c"})
    assert inferred == {"b": 2, "c": 2}
    table = giantsteps.clip_table(songs, durations, counts=inferred)
    assert table["split"].value_counts().to_dict() == {**counts, "test": counts["test"] + 1}
    assert table[table["song_id"] == "b"]["clip_id"].tolist() == ["b-0", "b-1"]
    assert (table[table["song_id"] == "b"]["song_duration"] == "").all()
    durations["a"] = 3686 * 30.0  # one clip left for two undecodable songs
    with pytest.raises(DataError, match=r"train: the decodable songs give 3686 of 3687 clips"):
        giantsteps.undecodable_song_clips(songs, durations, {"b", "c"})


def test_gtzan_workflow_excludes_an_undecodable_file_and_a_clip_too_short(local_gtzan, tmp_path):
    """With a GTZAN copy holding an undecodable file and a 0.01 s file: ``error`` stops at
    prepare naming the file; ``exclude`` runs to the table, each clip listed with its reason."""
    from conftest import SMALL, run, write_config

    bad = _replace_gtzan_audio(local_gtzan, "rock.00041", b"RIFF not really a wave file" * 10)
    sf.write(tmp_path / "short.wav", np.full(80, 0.1, np.float32), 8000, subtype="PCM_16")
    _replace_gtzan_audio(local_gtzan, "jazz.00024", (tmp_path / "short.wav").read_bytes())
    settings = {
        "data_home": str(local_gtzan["data_home"]),
        "datasets": {
            "gtzan": {
                "kind": "gtzan_ff",
                "label": "GTZAN",
                "shard_size": 500,
                "params": {"mirdata_index": str(local_gtzan["index"])},
            }
        },
        "representations": {"chroma": SMALL["representations"]["chroma"]},
    }
    work = tmp_path / "work"
    write_config(work, **settings)
    result = run(work, check=False)
    assert result.returncode != 0
    log = (work / "logs" / "prepare_dataset" / "gtzan.log").read_text()
    assert f"{bad}: cannot decode audio" in log
    assert not (work / "results" / "table.csv").exists()

    write_config(work, **settings, audio={"on_bad_audio": "exclude"})
    run(work)
    record = json.loads((work / "results/provenance/gtzan/chroma/stats.json").read_text())
    reasons = {e["clip_id"]: e["reason"] for e in record["clips"]["excluded"]}
    assert sorted(reasons) == ["jazz.00024", "rock.00041"]
    assert reasons["rock.00041"].startswith("cannot decode audio")
    assert reasons["jazz.00024"].startswith("too short for chroma: 221 samples (0.010 s)")
    assert sum(record["clips"][s] for s in ("train", "valid", "test")) == 928
    assert "2 excluded" in (work / "results" / "table.md").read_text()


def test_gtzan_missing_raw_file_says_where_to_put_it(local_gtzan, tmp_path):
    (local_gtzan["root"] / "test_filtered.txt").unlink()
    dataset = build_dataset(
        "gtzan", _gtzan_config(local_gtzan["index"]), data_home=local_gtzan["data_home"]
    )
    with pytest.raises(DataError) as error:
        dataset.prepare(tmp_path / "out")
    message = str(error.value)
    assert str(local_gtzan["root"] / "test_filtered.txt") in message
    assert gtzan.REMOTES["GTZAN_TEST"].checksum in message
    assert gtzan.REMOTES["GTZAN_TEST"].urls[0] in message
