"""GTZAN as labs keep it: partial trees (verify: present), .au trees, the widely shared
``Data/genres_original`` copy with its unreadable jazz.00054, and errors that say what to do."""

import hashlib
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import fixture_path, gtzan_lists
from mirprobe.datasets import build_dataset, gtzan
from mirprobe.errors import AudioDecodeError, ConfigError, DataError
from mirprobe.stages import prepare_dataset


def partial_tree(tmp_path, layout, *, per_split=4, suffix=".wav", index_md5=True):
    """data_home/gtzan with the real split lists and the first ``per_split`` clips of each
    genre in each split, as tiny files in ``layout``; a mirdata-format index for them."""
    root = tmp_path / "data_home" / "gtzan"
    root.mkdir(parents=True)
    for path in gtzan_lists().values():
        shutil.copy(path, root / path.name)
    table = gtzan.read_split_lists(gtzan_lists())
    chosen = table.groupby(["split", "genre"]).head(per_split)
    rng = np.random.default_rng(0)
    folder = root / dict(gtzan.LAYOUTS)[layout]
    tracks = {}
    for clip_id, genre in zip(chosen["clip_id"], chosen["genre"], strict=True):
        path = folder / genre / f"{clip_id}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        y = 0.1 * rng.standard_normal(4000).astype(np.float32)
        sf.write(path, y, 8000, subtype="PCM_16", format="AU" if suffix == ".au" else "WAV")
        md5 = hashlib.md5(path.read_bytes()).hexdigest() if index_md5 else "0" * 32
        tracks[clip_id] = {"audio": [f"gtzan_genre/genres/{genre}/{clip_id}.wav", md5]}
    index = tmp_path / "index.json"
    index.write_text(json.dumps({"version": "1.0", "tracks": tracks}))
    return {"data_home": root.parent, "folder": folder, "index": index, "chosen": chosen}


def config(index, verify="present"):
    return {"kind": "gtzan_ff", "params": {"mirdata_index": str(index), "verify": verify}}


def prepare(tree, out, verify="present", on_bad_audio="error"):
    return prepare_dataset(
        name="gtzan",
        dataset_config=config(tree["index"], verify),
        metadata_path=out / "metadata.csv",
        checksums_path=out / "checksums.tsv",
        record_path=out / "prepare.json",
        data_home=tree["data_home"],
        on_bad_audio=on_bad_audio,
    )


def test_present_runs_on_the_verified_clips_and_says_subset(tmp_path):
    tree = partial_tree(tmp_path, "mirdata")
    n = len(tree["chosen"])
    assert n == 120
    dataset = build_dataset("gtzan", config(tree["index"]), data_home=tree["data_home"])
    assert dataset.num_clips() == n
    record = prepare(tree, tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "metadata.csv", dtype=str)
    assert sorted(table["clip_id"]) == sorted(tree["chosen"]["clip_id"])
    source = record["source"]
    assert source["subset"] == f"subset ({n} of 930 clips)"
    assert source["md5_verified"] == n and source["digest_recorded"] == []
    assert len(source["missing_clips"]) == 930 - n
    assert source["clips_per_split"] == {"train": 40, "valid": 40, "test": 40}


def test_strict_on_a_partial_tree_says_what_to_do(tmp_path):
    tree = partial_tree(tmp_path, "mirdata")
    dataset = build_dataset("gtzan", config(tree["index"], "strict"), data_home=tree["data_home"])
    assert dataset.num_clips() == 930
    with pytest.raises(DataError) as error:
        dataset.prepare(tmp_path / "out")
    message = str(error.value)
    assert f"fails verification ({930 - 120} files)" in message
    assert ".wav (or .au): file not found" in message
    assert "What to do: place the original files there" in message
    assert "set params.verify: present" in message and "fetch it again" not in message


def test_an_au_tree_is_accepted_with_digests_recorded(tmp_path):
    tree = partial_tree(tmp_path, "unpacked", suffix=".au", per_split=1)
    record = prepare(tree, tmp_path / "out")
    table = pd.read_csv(tmp_path / "out" / "metadata.csv", dtype=str)
    assert len(table) == 30 and all(p.endswith(".au") for p in table["audio_path"])
    assert record["source"]["layout"] == "unpacked"
    assert {r["why"] for r in record["source"]["digest_recorded"]} == {"no per-file md5 published"}
    checksums = pd.read_csv(tmp_path / "out" / "checksums.tsv", sep="\t")
    assert len(checksums) == 30


def test_genres_original_checks_md5_where_they_agree_and_records_the_rest(tmp_path):
    tree = partial_tree(tmp_path, "genres_original", per_split=1)
    index = json.loads(tree["index"].read_text())
    index["tracks"]["blues.00000"]["audio"][1] = "f" * 32  # this copy differs from mirdata's
    tree["index"].write_text(json.dumps(index))
    record = prepare(tree, tmp_path / "out")
    source = record["source"]
    assert source["layout"] == "genres_original" and source["md5_verified"] == 29
    (recorded,) = source["digest_recorded"]
    assert recorded["path"].endswith("Data/genres_original/blues/blues.00000.wav")
    assert recorded["why"] == f"md5 differs from mirdata's {'f' * 32}"


def test_the_unreadable_jazz_00054_is_excluded_with_its_reason(tmp_path):
    tree = partial_tree(tmp_path, "genres_original", per_split=1)
    # as in the shared copy: a file soundfile cannot read, in the train split
    bad = tree["folder"] / "jazz" / "jazz.00054.wav"
    bad.write_bytes(b"\x00" * 2048)
    with pytest.raises(AudioDecodeError, match=r"jazz\.00054\.wav: cannot decode audio"):
        prepare(tree, tmp_path / "a")
    record = prepare(tree, tmp_path / "b", on_bad_audio="exclude")
    (entry,) = record["source"]["bad_audio"]
    assert entry["path"].endswith("jazz.00054.wav") and "cannot decode audio" in entry["reason"]
    assert record["n_clips"] == 31 and record["source"]["subset"] == "subset (31 of 930 clips)"


def test_present_needs_a_local_copy():
    with pytest.raises(ConfigError, match=r"verify: present runs on the files of a local copy"):
        build_dataset(
            "gtzan", config(fixture_path("mirdata_indexes", "gtzan_genre_index_1.0.json"))
        )


def test_present_without_a_tree_names_the_layouts(tmp_path):
    root = tmp_path / "gtzan"
    root.mkdir()
    for path in gtzan_lists().values():
        shutil.copy(path, root / path.name)
    dataset = build_dataset("gtzan", config(tmp_path / "i.json"), data_home=tmp_path)
    with pytest.raises(DataError, match=r"no unpacked GTZAN tree .*Data/genres_original/<genre>"):
        dataset.num_clips()


@pytest.mark.workflow
def test_a_partial_genres_original_tree_runs_to_a_table_labelled_subset(tmp_path):
    from workflow_runs import cell_stats, run_mfcc_table, table_header

    tree = partial_tree(tmp_path, "genres_original", per_split=2)
    (tree["folder"] / "jazz" / "jazz.00054.wav").write_bytes(b"\x00" * 2048)
    workdir = run_mfcc_table(
        tmp_path / "run",
        data_home=str(tree["data_home"]),
        audio={"on_bad_audio": "exclude"},
        datasets={"gtzan": {"kind": "gtzan_ff", "label": "GTZAN", **config(tree["index"])}},
    )
    assert "GTZAN [subset (61 of 930 clips)]" in table_header(workdir)
    cell = cell_stats(workdir, "gtzan")
    assert cell["data"]["source"]["subset"] == "subset (61 of 930 clips)"
    excluded = cell["clips"]["excluded"]
    assert len(excluded) == 1 and "jazz.00054" in json.dumps(excluded)
