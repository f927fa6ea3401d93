"""``kind: mirdata`` on mirdata's own fixture copies of five datasets, through prepare_dataset."""

import hashlib
import json

import pandas as pd
import pytest

from conftest import fixture_path
from mirprobe.datasets import build_dataset
from mirprobe.errors import ConfigError, DataError
from mirprobe.stages import prepare_dataset

#: name, version, sample index, label attribute, task
CASES = {
    "gtzan_genre": ("1.0", "gtzan_genre_index_1.0_sample.json", "genre", "multiclass"),
    "giantsteps_key": ("+", "giantsteps_key_index_+_sample.json", "key", "key"),
    "beatport_key": ("1.0.0", "beatport_key_index_1.0.0_sample.json", "key", "key"),
    "giantsteps_tempo": (
        "2.0",
        "giantsteps_tempo_index_2.0_sample.json",
        "tempo.tempos",
        "regression",
    ),
    "mtg_jamendo_autotagging_moodtheme": (
        "1.0",
        "mtg_jamendo_autotagging_moodtheme_index_1.0_sample.json",
        "tags",
        "multilabel",
    ),
}


def entry(name, **extra):
    version, index, label, task = CASES[name]
    params = {
        "name": name,
        "version": version,
        "index": str(fixture_path("mirdata_indexes", index)),
        "data_home": str(fixture_path("mirdata", name)),
        "label": label,
        "task": task,
        **extra,
    }
    return {"kind": "mirdata", "params": params}


def prepare(config, out_dir):
    out_dir.mkdir(parents=True, exist_ok=True)
    record = prepare_dataset(
        name="m",
        dataset_config=config,
        metadata_path=out_dir / "metadata.csv",
        checksums_path=out_dir / "checksums.tsv",
        record_path=out_dir / "prepare.json",
    )
    table = pd.read_csv(out_dir / "metadata.csv", dtype=str, keep_default_na=False)
    return record, table


#: what each fixture holds: track id, label string, tracks in the index
EXPECTED = {
    "gtzan_genre": ("country.00000", "country", 2),
    "giantsteps_key": ("3", "D major", 1),
    "beatport_key": ("1", "D minor", 1),
    "giantsteps_tempo": ("113", None, 1),
    "mtg_jamendo_autotagging_moodtheme": ("track_0000948", "background", 3),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_fixture_dataset_prepares(name, tmp_path):
    track_id, label, n_index = EXPECTED[name]
    assert build_dataset("m", entry(name, verify="present")).num_clips() == 1
    record, table = prepare(entry(name, verify="present"), tmp_path)
    assert table["clip_id"].tolist() == [track_id]
    if label is not None:
        assert table["label"].tolist() == [label]
    else:  # mirdata's `tempo` is the v1 jams file's first tempo
        jams = next(fixture_path("mirdata", name).rglob("annotations/jams/*.jams"))
        annotations = json.loads(jams.read_text())["annotations"]
        (annotation,) = [a for a in annotations if a["namespace"] == "tempo"]
        assert float(table["label"][0]) == annotation["data"][0]["value"]
    source = record["source"]
    assert source["mirdata"]["name"] == name
    assert source["subset"] == (None if n_index == 1 else f"subset (1 of {n_index} clips)")
    # every fixture mp3 is a truncated copy: kept under `present`, listed, its digest recorded
    audio = table["audio_path"][0]
    assert (f"{track_id}: {audio}" in source["md5_mismatch"]) == audio.endswith(".mp3")
    checksums = pd.read_csv(tmp_path / "checksums.tsv", sep="\t")
    assert checksums["sha256"].tolist() == [hashlib.sha256(open(audio, "rb").read()).hexdigest()]
    if name == "mtg_jamendo_autotagging_moodtheme":
        # mirdata's own split-0: the one present track is in its train list
        assert source["splits"] == {"drawn": False, "from": "mirdata get_track_splits", "args": {}}
        assert table["split"].tolist() == ["train"]
        assert [m["track_id"] for m in source["missing_tracks"]] == [
            "track_0003346",
            "track_0003524",
        ]
    else:
        assert source["splits"]["drawn"] is True
    json.dumps(record)


def test_jamendo_split_args_pick_another_official_split(tmp_path):
    _, table = prepare(
        entry(
            "mtg_jamendo_autotagging_moodtheme", verify="present", split_args={"split_number": 1}
        ),
        tmp_path,
    )
    splits = fixture_path(
        "mirdata", "mtg_jamendo_autotagging_moodtheme", "data", "splits", "split-1"
    )
    expected = next(
        s
        for s, f in (("train", "train"), ("valid", "validation"), ("test", "test"))
        if "track_0000948" in (splits / f"autotagging_moodtheme-{f}.tsv").read_text()
    )
    assert table["split"].tolist() == [expected]


def test_strict_names_the_tracks_without_audio_and_what_to_do():
    with pytest.raises(DataError) as error:
        build_dataset("m", entry("gtzan_genre")).num_clips()
    message = str(error.value)
    assert "1 of 2 tracks have no audio" in message and "hiphop.00000: " in message
    assert "hiphop/hiphop.00000.wav" in message
    assert "Place the original files there, or set params.verify: present" in message


def test_strict_names_the_md5_mismatch_and_what_to_do(tmp_path):
    with pytest.raises(DataError) as error:
        prepare(entry("giantsteps_key"), tmp_path)
    message = str(error.value)
    assert "md5 mismatch   3: " in message and "Close My Eyes" in message
    assert "Replace the listed files with the originals" in message
    assert "params.verify: present" in message


def test_unknown_dataset_name_is_a_config_error():
    with pytest.raises(ConfigError, match=r"params\.name 'gtzan' is not a mirdata dataset"):
        build_dataset(
            "m",
            {
                "kind": "mirdata",
                "params": {
                    "name": "gtzan",
                    "label": "genre",
                    "task": "multiclass",
                    "data_home": "/",
                },
            },
        ).num_clips()


def test_no_local_index_says_to_set_one():
    config = entry("beatport_key", verify="present")
    config["params"]["index"] = None
    with pytest.raises(DataError, match=r"has no local index .*set params\.index"):
        build_dataset("m", config).num_clips()


def test_no_data_home_says_where_to_set_it():
    config = entry("beatport_key")
    config["params"]["data_home"] = None
    with pytest.raises(ConfigError, match=r"set params\.data_home"):
        build_dataset("m", config).num_clips()
    dataset = build_dataset("m", config, data_home=fixture_path("mirdata"))
    assert dataset.root == fixture_path("mirdata", "beatport_key")


def test_unusable_labels_say_why():
    dataset = build_dataset("m", entry("beatport_key"))
    with pytest.raises(DataError, match=r"2 values \['D minor', 'A minor'\], one expected"):
        dataset._label(["D minor", "A minor"], "1")
    with pytest.raises(DataError, match=r"track 1: key 'H minor' is not in mir_eval's format"):
        dataset._label(["H minor"], "1")
    assert dataset._label(["F# minor"], "1") == "Gb minor"
    # no track with both audio and a usable label: said, not an empty table
    config = entry("giantsteps_key", verify="present", label="genres", task="key")
    with pytest.raises(DataError, match=r"no track has usable audio and label"):
        build_dataset("m", config).num_clips()


def test_a_missing_folder_or_unknown_version_is_named(tmp_path):
    config = entry("beatport_key")
    config["params"]["data_home"] = str(tmp_path / "gone")
    with pytest.raises(DataError, match=r"gone: folder of mirdata beatport_key not found"):
        build_dataset("m", config).num_clips()
    config = entry("beatport_key", version="9.9")
    with pytest.raises(ConfigError, match=r"mirdata beatport_key 9\.9: "):
        build_dataset("m", config).num_clips()
