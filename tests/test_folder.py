"""``kind: folder``: the user's own audio and labels table, from parse to prepared metadata."""

import hashlib
import json

import pandas as pd
import pytest
from folder_fixtures import KEYS, TAGS, build_audio_folder, split_by_take, write_labels

from mirprobe.datasets import build_dataset
from mirprobe.datasets.folder import draw_splits
from mirprobe.errors import AudioDecodeError, ConfigError, DataError
from mirprobe.stages import prepare_dataset

COLUMNS = {
    "path": lambda c: c["path"],
    "offset": lambda c: c["offset"],
    "duration": lambda c: c["duration"],
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("recordings")
    return root, build_audio_folder(root)


def dataset(root, labels, task="multiclass", **params):
    return build_dataset(
        "mine",
        {
            "kind": "folder",
            "params": {"root": str(root), "labels": str(labels), "task": task, **params},
        },
    )


def prepare(ds, out_dir, on_bad_audio="error"):
    out_dir.mkdir(parents=True, exist_ok=True)
    record = prepare_dataset(
        name="mine",
        dataset_config={"kind": "folder", "params": ds.params},
        metadata_path=out_dir / "metadata.csv",
        checksums_path=out_dir / "checksums.tsv",
        record_path=out_dir / "prepare.json",
        on_bad_audio=on_bad_audio,
    )
    table = pd.read_csv(out_dir / "metadata.csv", dtype=str, keep_default_na=False)
    return record, table


def test_a_table_with_splits_prepares_every_clip_with_its_digest(folder, tmp_path):
    root, clips = folder
    labels = write_labels(
        tmp_path / "labels.tsv",
        clips,
        {**COLUMNS, "label": lambda c: c["piece"], "split": split_by_take},
        sep="\t",
    )
    ds = dataset(root, labels)
    assert ds.num_clips() == 24 and ds.labels() == ["dance", "trumpet", "vibe"]
    record, table = prepare(ds, tmp_path / "out")
    assert record["n_clips"] == 24 and record["split_counts"] == {
        "test": 6,
        "train": 12,
        "valid": 6,
    }
    by_id = table.set_index("clip_id")
    assert by_id.loc["dance__take0-000", "label"] == "dance"
    assert by_id.loc["dance__take0-001", "offset"] == "1.500000"
    assert by_id.loc["vibe__take2-001", "split"] == "valid"
    assert by_id.loc["vibe__take2-001", "song_id"] == "vibe/take2.mp3"
    assert record["source"]["splits"] == {"drawn": False, "from": "the table's split column"}
    assert (
        record["source"]["labels_table"]["sha256"]
        == hashlib.sha256(labels.read_bytes()).hexdigest()
    )
    checksums = pd.read_csv(tmp_path / "out" / "checksums.tsv", sep="\t")
    assert len(checksums) == 12
    for path, digest in zip(checksums["audio_path"], checksums["sha256"], strict=True):
        assert hashlib.sha256(open(path, "rb").read()).hexdigest() == digest


def test_drawn_splits_keep_groups_whole_are_seeded_and_recorded(folder, tmp_path):
    root, clips = folder
    labels = write_labels(
        tmp_path / "labels.csv",
        clips,
        {**COLUMNS, "label": lambda c: KEYS[c["piece"]], "group": lambda c: c["session"]},
    )
    fractions = {"train": 0.5, "valid": 0.25, "test": 0.25}
    ds = dataset(root, labels, task="key", split_fractions=fractions, seed=3)
    record, table = prepare(ds, tmp_path / "a")
    _, again = prepare(
        dataset(root, labels, task="key", split_fractions=fractions, seed=3), tmp_path / "b"
    )
    assert table.equals(again)
    # mir_eval's "F# minor" is spelt as the key class "Gb minor"
    assert set(table["label"]) == {"Gb minor", "C major", "Bb major"}
    splits_of_group = table.groupby("song_id")["split"].nunique()
    assert len(splits_of_group) == 6 and (splits_of_group == 1).all()
    assert set(table["split"]) == {"train", "valid", "test"}
    assert record["source"]["splits"] == {
        "drawn": True,
        "seed": 3,
        "fractions": fractions,
        "grouped_by": "group",
    }


def test_draw_splits_is_stratified_and_changes_with_the_seed():
    groups = [f"g{i:02d}" for i in range(60)]
    strata = [i % 3 for i in range(60)]
    fractions = {"train": 0.7, "valid": 0.15, "test": 0.15}
    first = draw_splits(groups, strata, fractions=fractions, seed=0)
    for stratum in range(3):
        counts = pd.Series(
            [first[g] for g, s in zip(groups, strata, strict=True) if s == stratum]
        ).value_counts()
        assert counts.to_dict() == {"train": 14, "valid": 3, "test": 3}
    assert draw_splits(groups, strata, fractions=fractions, seed=0) == first
    assert draw_splits(groups, strata, fractions=fractions, seed=1) != first


def test_multilabel_and_regression_labels(folder, tmp_path):
    root, clips = folder
    tags = write_labels(
        tmp_path / "tags.csv", clips, {**COLUMNS, "label": lambda c: TAGS[c["piece"]]}
    )
    ds = dataset(root, tags, task="multilabel")
    assert ds.labels() == ["drums", "orchestra", "solo", "strings", "synth", "trumpet"]
    _, table = prepare(ds, tmp_path / "tags")
    assert table.set_index("clip_id").loc["vibe__take1-000", "label"] == "drums|synth"
    values = write_labels(
        tmp_path / "values.csv",
        clips,
        {**COLUMNS, "rms": lambda c: c["rms"], "index": lambda c: c["index"]},
    )
    ds = dataset(root, values, task="regression", targets=["rms", "index"])
    assert ds.labels() == ["rms", "index"]
    _, table = prepare(ds, tmp_path / "values")
    row = table.set_index("clip_id").loc["trumpet__take3-001"]
    assert row["label"] == f"{repr(float(clips[23]['rms']))}|23.0"


# -- every error names the table, row or file and what to do -------------------


def _table(tmp_path, text, name="labels.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_missing_column_is_named(folder, tmp_path):
    root, _ = folder
    labels = _table(tmp_path, "path,genre\ndance/take0.wav,dance\n")
    with pytest.raises(DataError, match=r"labels\.csv: labels table lacks columns \['label'\]"):
        dataset(root, labels).num_clips()


def test_missing_file_names_row_and_path(folder, tmp_path):
    root, _ = folder
    labels = _table(tmp_path, "path,label\ndance/take0.wav,a\ndance/nope.wav,b\n")
    with pytest.raises(DataError, match=r"labels\.csv row 3: .*dance/nope\.wav not found"):
        dataset(root, labels).num_clips()


def test_unknown_split_is_named(folder, tmp_path):
    root, _ = folder
    labels = _table(
        tmp_path, "path,label,split\ndance/take0.wav,a,train\ndance/take1.ogg,a,validation\n"
    )
    with pytest.raises(DataError, match=r"row 3: split 'validation'; allowed"):
        dataset(root, labels).num_clips()


def test_a_group_across_given_splits_is_an_error(folder, tmp_path):
    root, _ = folder
    labels = _table(
        tmp_path,
        "path,label,split,group\ndance/take0.wav,a,train,s1\ndance/take1.ogg,a,test,s1\n",
    )
    with pytest.raises(DataError, match=r"groups \['s1'\] have clips in more than one split"):
        dataset(root, labels).num_clips()


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("H major", r"row 2: key 'H major' is not in mir_eval's format \(Key H is invalid"),
        ("C dorian", r"row 2: key 'C dorian' is not in mir_eval's format \(Mode 'dorian'"),
        ("X", r"row 2: key 'X' is valid for mir_eval but not one of the 24 major/minor keys"),
        ("C other", r"row 2: key 'C other' is valid for mir_eval but not one of the 24"),
    ],
)
def test_key_labels_are_validated_with_mir_eval(folder, tmp_path, key, message):
    root, _ = folder
    labels = _table(tmp_path, f"path,label\ndance/take0.wav,{key}\n")
    with pytest.raises(DataError, match=message):
        dataset(root, labels, task="key").num_clips()


def test_non_numeric_target_is_named(folder, tmp_path):
    root, _ = folder
    labels = _table(tmp_path, "path,arousal\ndance/take0.wav,0.5\ndance/take1.ogg,high\n")
    with pytest.raises(DataError, match=r"row 3: target arousal 'high' is not a finite number"):
        dataset(root, labels, task="regression", targets=["arousal"]).num_clips()


def test_targets_only_for_regression(folder, tmp_path):
    root, _ = folder
    labels = _table(tmp_path, "path,label\ndance/take0.wav,a\n")
    with pytest.raises(ConfigError, match=r"params\.targets names the numeric columns"):
        dataset(root, labels, task="regression")
    with pytest.raises(ConfigError, match=r"params\.targets is for task regression only"):
        dataset(root, labels, targets=["a"])


def test_too_few_groups_for_the_splits_says_what_to_do(folder, tmp_path):
    root, _ = folder
    labels = _table(tmp_path, "path,label\ndance/take0.wav,a\ndance/take1.ogg,a\n")
    with pytest.raises(
        DataError, match=r"splits \['test'\] have no clips .*change params\.split_fractions"
    ):
        prepare(dataset(root, labels), tmp_path / "out")


def test_a_clip_past_the_end_stops_or_is_excluded_and_listed(folder, tmp_path):
    root, clips = folder
    rows = [
        f"{c['path']},{c['piece']},{split_by_take(c)},{c['offset']},{c['duration']}" for c in clips
    ]
    # the mp3 is 3 s long: offset 5 s is past its end, 2.5 + 1.5 s runs over it
    rows += ["vibe/take2.mp3,vibe,valid,5,1", "vibe/take2.mp3,vibe,valid,2.5,1.5"]
    labels = _table(tmp_path, "path,label,split,offset,duration\n" + "\n".join(rows) + "\n")
    with pytest.raises(AudioDecodeError) as error:
        prepare(dataset(root, labels), tmp_path / "a")
    message = str(error.value)
    assert "2 bad clip(s) in the dataset's labels table" in message
    assert "take2.mp3: offset 5.000 s is past the end of the file (3.000 s long)" in message
    assert (
        "take2.mp3: too short: the clip ends at 4.000 s (offset 2.500 s + duration 1.500 s)"
        in message
    )
    record, table = prepare(dataset(root, labels), tmp_path / "b", on_bad_audio="exclude")
    assert len(table) == 26
    reasons = {b["clip_id"]: b["reason"] for b in record["source"]["bad_audio"]}
    assert sorted(reasons) == ["vibe__take2-002", "vibe__take2-003"]
    assert reasons["vibe__take2-002"].startswith("offset 5.000 s is past the end")
    assert record["n_bad_audio_files"] == 2


def test_an_m4a_file_says_which_formats_work_and_how_to_convert(folder, tmp_path):
    root, _ = folder
    m4a = tmp_path / "rec" / "song.m4a"
    m4a.parent.mkdir()
    m4a.write_bytes(b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00M4A mp42isom" + bytes(64))
    labels = _table(tmp_path, "path,label,split\nsong.m4a,a,train\n")
    with pytest.raises(AudioDecodeError) as error:
        prepare(dataset(m4a.parent, labels), tmp_path / "out")
    assert "song.m4a: cannot decode audio" in str(error.value)
    assert "soundfile cannot read m4a files; it reads WAV, FLAC, Ogg" in str(error.value)
    assert "`ffmpeg -i song.m4a song.flac`" in str(error.value)


def test_config_validation_accepts_the_folder_kind(folder, tmp_path):
    from mirprobe.config import validate_config

    root, _ = folder
    labels = _table(tmp_path, "path,label\ndance/take0.wav,a\n")
    config = validate_config(
        {
            "datasets": {
                "mine": {
                    "kind": "folder",
                    "params": {"root": str(root), "labels": str(labels), "task": "key"},
                }
            },
            "representations": {"mfcc": {"extractor": "mfcc"}},
        }
    )
    assert config["datasets"]["mine"]["params"]["task"] == "key"
    with pytest.raises(ConfigError, match=r"datasets\.mine\.params"):
        validate_config(
            {
                "datasets": {
                    "mine": {"kind": "folder", "params": {"root": str(root), "task": "key"}}
                },
                "representations": {"mfcc": {"extractor": "mfcc"}},
            }
        )
    json.dumps(config["datasets"]["mine"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,label\n", r"labels\.csv: labels table has no rows"),
        ("path,label\n ,a\n", r"labels\.csv row 2: empty path"),
        ("path,label\ndance/take0.wav,\n", r"labels\.csv row 2: empty label"),
        (
            "path,label,clip_id\ndance/take0.wav,a,x\ndance/take1.ogg,a,x\n",
            r"clip ids \['x'\] occur on more than one row",
        ),
        ("path,label,clip_id\ndance/take0.wav,a, \n", r"row 2: empty clip_id"),
        ("path,label,offset\ndance/take0.wav,a,soon\n", r"row 2: offset 'soon' is not a number"),
        ("path,label,duration\ndance/take0.wav,a,0\n", r"row 2: duration '0' must be a positive"),
        ("path,label,offset\ndance/take0.wav,a,-1\n", r"row 2: offset '-1' must be a positive"),
    ],
)
def test_table_errors_name_the_row(folder, tmp_path, text, message):
    root, _ = folder
    with pytest.raises(DataError, match=message):
        dataset(root, _table(tmp_path, text)).num_clips()


def test_a_tag_holding_the_metadata_separator_is_refused(folder, tmp_path):
    root, _ = folder
    labels = _table(tmp_path, "path,label\ndance/take0.wav,a|b;c\n")
    with pytest.raises(DataError, match=r"row 2: tag 'a\|b' contains '\|'"):
        dataset(root, labels, task="multilabel").num_clips()


def test_missing_table_or_folder_is_named(folder, tmp_path):
    root, _ = folder
    with pytest.raises(DataError, match=r"nope\.csv: labels table not found \(params\.labels"):
        dataset(root, tmp_path / "nope.csv").num_clips()
    labels = _table(tmp_path, "path,label\ndance/take0.wav,a\n")
    with pytest.raises(DataError, match=r"gone: audio folder not found \(params\.root"):
        dataset(tmp_path / "gone", labels).num_clips()
    binary = tmp_path / "labels.tsv"
    binary.write_bytes(b"path\tlabel\n\xff\xfe\x00bad\ta\n")
    with pytest.raises(DataError, match=r"labels\.tsv: cannot read the labels table"):
        dataset(root, binary).num_clips()
