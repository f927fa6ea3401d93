"""The paper datasets as labs keep them: unpacked MagnaTagATune and GiantSteps trees, and
data_home errors that say what is wrong with which file and what to do."""

import csv
import gzip
import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import fixture_path
from mirprobe.datasets import build_dataset, magnatagatune
from mirprobe.errors import ConfigError, DataError


def rebuilt_mtat_csvs(root):
    """clip_info_final.csv and annotations_final.csv in their real format, rebuilt from the
    rows jukemir's metadata embeds (the real files are not fixtures)."""
    with gzip.open(fixture_path("jukemir", "metadata", "magnatagatune.json.gz"), "rt") as handle:
        meta = json.load(handle)
    all_tags = sorted({t for v in meta.values() for t in (v["y_all"] or [])})
    info_fields = "clip_id track_number title artist album url segmentStart segmentEnd".split()
    info_fields += ["original_url", "mp3_path"]
    info, tags = [], []
    for v in meta.values():
        extra = v["extra"]
        info.append({k: extra[k] for k in info_fields})
        if v["y_all"] is not None:
            on = set(v["y_all"])
            tags.append(
                {
                    "clip_id": extra["clip_id"],
                    **{t: "1" if t in on else "0" for t in all_tags},
                    "mp3_path": extra["mp3_path"],
                }
            )
    for name, rows, quote in (
        ("clip_info_final.csv", info, True),
        ("annotations_final.csv", tags, False),
    ):
        with open(root / name, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(
                handle,
                fieldnames=list(rows[0]),
                delimiter="\t",
                quoting=csv.QUOTE_ALL if quote else csv.QUOTE_MINIMAL,
            )
            writer.writeheader()
            writer.writerows(rows)
    return meta


@pytest.fixture(scope="module")
def mtat_home(tmp_path_factory):
    """data_home/magnatagatune with the two CSVs and 6 mp3s unpacked in mp3/<folder>/."""
    home = tmp_path_factory.mktemp("data_home")
    root = home / "magnatagatune"
    root.mkdir()
    meta = rebuilt_mtat_csvs(root)
    table = magnatagatune.clip_table(root / "clip_info_final.csv", root / "annotations_final.csv")
    chosen = table.groupby("split").head(2)
    for rel in chosen["mp3_path"]:
        path = root / "mp3" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, 0.1 * np.ones(8000, np.float32), 16000, format="MP3")
    assert len(meta) > 25000
    return home, chosen


def test_find_mp3_tree_accepts_both_unpacked_layouts(tmp_path):
    assert magnatagatune.find_mp3_tree(tmp_path) is None
    (tmp_path / "c").mkdir()
    assert magnatagatune.find_mp3_tree(tmp_path) == tmp_path
    (tmp_path / "mp3" / "0").mkdir(parents=True)
    assert magnatagatune.find_mp3_tree(tmp_path) == tmp_path / "mp3"


def test_present_counts_the_mp3s_of_the_unpacked_tree(mtat_home):
    home, chosen = mtat_home
    dataset = build_dataset(
        "mtat", {"kind": "magnatagatune", "params": {"verify": "present"}}, data_home=home
    )
    assert dataset.num_clips() == 6 == len(chosen)
    strict = build_dataset("mtat", {"kind": "magnatagatune"}, data_home=home)
    assert strict.num_clips() == 25860


def test_an_unpacked_mtat_needs_no_zip_parts_and_mismatches_say_what_to_do(mtat_home, tmp_path):
    home, _ = mtat_home
    dataset = build_dataset(
        "mtat", {"kind": "magnatagatune", "params": {"verify": "present"}}, data_home=home
    )
    with pytest.raises(DataError) as error:
        dataset.prepare(tmp_path / "out")
    message = str(error.value)
    # only the two CSVs are verified (the tree replaces mp3.zip.001-003): the rebuilt
    # clip_info_final.csv is byte for byte the original, the rebuilt annotations are not
    assert message.startswith(
        f"1 of 2 files in data_home ({home / 'magnatagatune'}) fail verification"
    )
    assert "mp3.zip" not in message.split("\n", 1)[1].split("Instead of")[0]
    assert "annotations_final.csv: checksum mismatch: sha256 is" in message
    assert "replace it with the original" in message and "fetch it again" not in message
    assert "may hold the mp3s unpacked: mp3/0/ ... mp3/f/" in message


def test_a_missing_zip_part_in_data_home_names_the_file_and_the_unpacked_option(tmp_path):
    (tmp_path / "magnatagatune").mkdir()
    dataset = build_dataset("mtat", {"kind": "magnatagatune"}, data_home=tmp_path)
    with pytest.raises(DataError) as error:
        dataset.prepare(tmp_path / "out")
    message = str(error.value)
    assert (
        f"{tmp_path / 'magnatagatune' / 'mp3.zip.002'}: not found; place the original there"
        in message
    )
    assert "may hold the mp3s unpacked" in message


def test_mtat_present_needs_a_local_copy():
    with pytest.raises(ConfigError, match=r"verify: present runs on the files of a local copy"):
        build_dataset("mtat", {"kind": "magnatagatune", "params": {"verify": "present"}})


def test_unpacked_giantsteps_annotation_repositories_replace_the_zips(tmp_path):
    root = tmp_path / "giantsteps"
    root.mkdir()
    # the fixture subsets, as a lab keeps the repositories (links: nothing is copied)
    (root / "giantsteps-key-dataset-c8cb8aa").symlink_to(
        fixture_path("annotations", "giantsteps_key", "giantsteps-key-dataset")
    )
    (root / "giantsteps-mtg-key-dataset").symlink_to(
        fixture_path("annotations", "giantsteps_mtg_key", "giantsteps-mtg-key-dataset")
    )
    dataset = build_dataset("gs", {"kind": "giantsteps_clips"}, data_home=tmp_path)
    with pytest.raises(DataError) as error:
        dataset.prepare(tmp_path / "out")
    message = str(error.value)
    # the trees were read (no zip asked for); the subsets are not the paper's 604 + 1486 songs
    assert "ANNOTATIONS" not in message and ".zip" not in message
    assert f"(unpacked under {root}: place the complete repositories" in message


def test_a_repacked_gtzan_tarball_says_what_to_do(tmp_path):
    from conftest import gtzan_lists

    root = tmp_path / "gtzan"
    root.mkdir()
    for path in gtzan_lists().values():
        (root / path.name).write_bytes(path.read_bytes())
    (root / "genres.tar.gz").write_bytes(b"re-packed, not the original")
    index = fixture_path("mirdata_indexes", "gtzan_genre_index_1.0.json")
    dataset = build_dataset(
        "gtzan", {"kind": "gtzan_ff", "params": {"mirdata_index": str(index)}}, data_home=tmp_path
    )
    with pytest.raises(DataError) as error:
        dataset.prepare(tmp_path / "out")
    message = str(error.value)
    assert "genres.tar.gz: checksum mismatch: sha256 is" in message
    assert "replace it with the original" in message and "fetch it again" not in message
    assert "Data/genres_original/<genre>/" in message and "params.verify: present" in message


def test_mtat_present_without_csvs_or_tree_says_what_is_missing(tmp_path):
    (tmp_path / "magnatagatune").mkdir()
    config = {"kind": "magnatagatune", "params": {"verify": "present"}}
    with pytest.raises(DataError, match=r"MagnaTagATune CSVs not found in data_home: .*clip_info"):
        build_dataset("mtat", config, data_home=tmp_path).num_clips()
    rebuilt_mtat_csvs(tmp_path / "magnatagatune")
    with pytest.raises(DataError, match=r"no unpacked mp3 tree .*mp3/0/ \.\.\. .*mp3/f/"):
        build_dataset("mtat", config, data_home=tmp_path).num_clips()


def test_gtzan_present_without_split_lists_says_where_they_come_from(tmp_path):
    (tmp_path / "gtzan").mkdir()
    index = fixture_path("mirdata_indexes", "gtzan_genre_index_1.0.json")
    config = {"kind": "gtzan_ff", "params": {"mirdata_index": str(index), "verify": "present"}}
    with pytest.raises(
        DataError, match=r"GTZAN split lists not found in data_home: .*from https://"
    ):
        build_dataset("gtzan", config, data_home=tmp_path).num_clips()


def test_an_unpacked_mtat_prepares_the_same_clips_as_the_zip_parts(tmp_path, monkeypatch):
    """The whole dataset both ways through prepare_dataset: ``0/`` ... ``f/`` as labs keep
    them, and mp3.zip.001-003 holding the same tree; same clips, splits and labels, and the
    unpacked copy is read in place (nothing unpacked, nothing copied).

    The real archives and annotations_final.csv are not fixtures: the zip parts are made
    here and annotations_final.csv is rebuilt from jukemir's metadata (clip_info_final.csv
    rebuilds byte for byte), so their registry digests are set to these files' for the
    test; every other check is the one a real copy goes through."""
    import dataclasses
    import hashlib
    import os
    import shutil
    import zipfile

    from mirprobe.datasets.base import read_metadata
    from mirprobe.stages import prepare_dataset

    homes = {layout: tmp_path / layout for layout in ("unpacked", "zipped")}
    unpacked, zipped = (home / "magnatagatune" for home in homes.values())
    unpacked.mkdir(parents=True)
    zipped.mkdir(parents=True)
    rebuilt_mtat_csvs(unpacked)
    for name in ("clip_info_final.csv", "annotations_final.csv"):
        shutil.copy(unpacked / name, zipped / name)
    table = magnatagatune.clip_table(
        unpacked / "clip_info_final.csv", unpacked / "annotations_final.csv"
    )
    assert len(table) == 25860
    one = tmp_path / "one.mp3"
    sf.write(one, 0.1 * np.ones(400, np.float32), 8000, format="MP3")
    for rel in table["mp3_path"]:
        (unpacked / rel).parent.mkdir(exist_ok=True)
        os.link(one, unpacked / rel)  # one tiny mp3 under every name
    whole = tmp_path / "mp3.zip"
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_STORED) as archive:
        for rel in table["mp3_path"]:
            archive.write(unpacked / rel, rel)
    data = whole.read_bytes()
    cuts = [0, len(data) // 3, 2 * len(data) // 3, len(data)]
    digests = {}
    for i in (1, 2, 3):
        part = data[cuts[i - 1] : cuts[i]]
        (zipped / f"mp3.zip.{i:03d}").write_bytes(part)
        digests[f"MAGNATAGATUNE_MP3_{i:03d}"] = hashlib.sha256(part).hexdigest()
    digests["MAGNATAGATUNE_ANNOTATIONS"] = hashlib.sha256(
        (unpacked / "annotations_final.csv").read_bytes()
    ).hexdigest()
    for key, digest in digests.items():
        remote = dataclasses.replace(magnatagatune.REMOTES[key], checksum=digest)
        monkeypatch.setitem(magnatagatune.REMOTES, key, remote)

    records, tables = {}, {}
    for layout, home in homes.items():
        out = tmp_path / "out" / layout
        records[layout] = prepare_dataset(
            name="mtat",
            dataset_config={"kind": "magnatagatune"},
            metadata_path=out / "metadata.csv",
            checksums_path=out / "checksums.tsv",
            record_path=out / "prepare.json",
            data_home=home,
        )
        tables[layout] = read_metadata(out / "metadata.csv").set_index("clip_id")
    for record in records.values():
        assert record["n_clips"] == 25860 and record["split_counts"] == magnatagatune.SPLIT_SIZES
        assert record["source"]["subset"] is None and record["source"]["missing_clips"] == []
    columns = ["split", "label", "song_id", "track", "all_tags"]
    pd.testing.assert_frame_equal(tables["unpacked"][columns], tables["zipped"][columns])
    assert records["zipped"]["source"]["layout"] == "archive"
    source = records["unpacked"]["source"]
    assert source["layout"] == "unpacked" and source["audio_root"] == str(unpacked)
    # the zip parts are neither needed nor verified when the tree is there
    assert {r["key"] for r in source["raw_files"]} == set(magnatagatune.CSV_KEYS)
    assert all(p.startswith(f"{unpacked}/") for p in tables["unpacked"]["audio_path"])
    out = tmp_path / "out" / "unpacked"
    assert not (out / "extracted").exists() and not list(out.rglob("*.mp3"))
    checksums = pd.read_csv(out / "checksums.tsv", sep="\t")
    assert len(checksums) == 25860  # each mp3's sha256 recorded (none is published)
