"""jukemir_precomputed: the CALM paper's published features, fetched (here from
a tarball the test writes, in jukemir's layout), verified, unpacked and probed
through the real workflow on a local GTZAN."""

import copy
import hashlib
import io
import json
import tarfile

import numpy as np
import pytest
import yaml

from conftest import REPO, fixture_path, gtzan_lists, run
from mirprobe.config import validate_config
from mirprobe.datasets import get_dataset_class, gtzan
from mirprobe.errors import ConfigError, DataError
from mirprobe.extractors import build_extractor
from mirprobe.extractors import jukemir_precomputed as jp

GTZAN = get_dataset_class("gtzan_ff")
GIANTSTEPS = get_dataset_class("giantsteps_clips")


def test_registry_is_jukemirs_precomputed_json():
    assets = json.loads(fixture_path("jukemir", "assets", "precomputed.json").read_text())
    want = {}
    for key, entry in assets.items():
        dataset, representation = entry["path_rel"].split("/")[1].removesuffix(".tar.gz").split("-")
        assert key == f"PRECOMPUTED-{dataset}-{representation}".upper()
        assert entry["url"] == jp.REGISTRY_URLS[0] + jp.tarball_name(dataset, representation)
        want[(dataset, representation)] = entry["checksum"]
    assert jp.SHA256 == want
    assert {d for d, _ in want} == set(jp.DATASETS)
    assert {r for _, r in want} == set(jp.REPRESENTATIONS)


def test_dataset_classes_map_clip_ids_to_jukemirs_uids():
    # GTZAN: the sha256 of the id (the other datasets' clip ids are jukemir's
    # keys, checked against its metadata in test_datasets)
    assert GTZAN.jukemir_tag == "gtzan_ff"
    assert GTZAN.jukemir_uid("jazz.00024") == (
        "002b88d74161f517106f69826f31ee1040cddaebb34e6591812610aa14e9e604"
    )
    assert GIANTSTEPS.jukemir_uid("0005061-0") == "0005061-0"
    tags = {get_dataset_class(kind).jukemir_tag for kind in jp.DATASETS}
    assert tags == set(jp.DATASETS)
    assert get_dataset_class("synthetic_key").jukemir_tag is None


def _tarball(path, members):
    """A .tar.gz of ``{name: bytes or ndarray}``, plus a directory entry."""
    with tarfile.open(path, "w:gz") as archive:
        info = tarfile.TarInfo("gtzan_ff/clmr")
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
        for name, value in members.items():
            if isinstance(value, np.ndarray):
                buffer = io.BytesIO()
                np.save(buffer, value)
                value = buffer.getvalue()
            info = tarfile.TarInfo(name)
            info.size = len(value)
            archive.addfile(info, io.BytesIO(value))
    return hashlib.sha256(path.read_bytes()).hexdigest()


CLIPS = ["blues.00001", "jazz.00024", "rock.00099"]


def _vectors():
    rng = np.random.default_rng(0)
    return {clip: rng.standard_normal(7).astype(np.float32) for clip in CLIPS}


@pytest.fixture
def served(tmp_path):
    """A tarball in jukemir's layout, and an extractor reading it by file:// URL."""
    server = tmp_path / "server"
    server.mkdir()
    vectors = _vectors()
    members = {f"gtzan_ff/clmr/{GTZAN.jukemir_uid(c)}.npy": v for c, v in vectors.items()}
    members["gtzan_ff/clmr/README.txt"] = b"not a feature"
    sha256 = _tarball(server / "gtzan_ff-clmr.tar.gz", members)
    params = {
        "representation": "clmr",
        "urls": [f"file://{tmp_path}/dead/", f"file://{server}/"],
        "sha256": sha256,
        "cache_dir": str(tmp_path / "cache"),
    }
    return {"params": params, "vectors": vectors, "server": server, "cache": tmp_path / "cache"}


def _embed(params, clips=CLIPS):
    extractor = build_extractor({"extractor": "jukemir_precomputed", "params": params})
    return extractor, extractor.embed_clips(clips, layers=["features"], dataset=GTZAN)


def test_fetches_verifies_unpacks_and_reads_features_by_uid(served):
    extractor, out = _embed(served["params"], clips=CLIPS[::-1])
    want = np.stack([served["vectors"][c] for c in CLIPS[::-1]])
    np.testing.assert_array_equal(out["features"], want)
    unpacked = served["cache"] / "gtzan_ff" / "clmr"
    assert sorted(p.name for p in unpacked.glob("*.npy")) == sorted(
        f"{GTZAN.jukemir_uid(c)}.npy" for c in CLIPS
    )
    source = extractor.source_record()["sources"]["gtzan_ff"]
    assert source["sha256"] == served["params"]["sha256"]
    assert source["tarball"] == "gtzan_ff-clmr.tar.gz"
    # unpacked once: a later run reads the cache, its URLs serving nothing now
    (served["server"] / "gtzan_ff-clmr.tar.gz").unlink()
    params = served["params"]
    np.testing.assert_array_equal(_embed(params)[1]["features"][0], served["vectors"][CLIPS[0]])


def test_the_registry_digest_is_checked_by_default(served):
    params = {k: v for k, v in served["params"].items() if k != "sha256"}
    with pytest.raises(DataError) as error:
        _embed(params)
    message = str(error.value)
    assert "checksum mismatch" in message and jp.SHA256[("gtzan_ff", "clmr")] in message
    assert "dead/gtzan_ff-clmr.tar.gz" in message  # each URL tried is named
    assert not (served["cache"] / "gtzan_ff").exists()


def test_a_missing_clip_is_an_error_naming_it(served):
    with pytest.raises(DataError, match=r"1 of 2 clips: pop.00003 \("):
        _embed(served["params"], clips=["blues.00001", "pop.00003"])


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (np.zeros((2, 3), np.float32), "1-d"),
        (np.array([1.0, np.nan], np.float32), "non-finite"),
        (b"\x93NUMPY garbage", "not a readable .npy"),
    ],
)
def test_a_bad_feature_file_is_an_error_naming_it(tmp_path, value, problem):
    directory = tmp_path / "local" / "gtzan_ff" / "clmr"
    directory.mkdir(parents=True)
    path = directory / f"{GTZAN.jukemir_uid('blues.00001')}.npy"
    if isinstance(value, np.ndarray):
        np.save(path, value)
    else:
        path.write_bytes(value)
    params = {"representation": "clmr", "local_dir": str(tmp_path / "local")}
    with pytest.raises(DataError, match=problem) as error:
        _embed(params, clips=["blues.00001"])
    assert str(path) in str(error.value)


def test_unpacking_writes_only_uid_files_inside_the_cache(tmp_path):
    vector = np.ones(3, np.float32)
    sha = _tarball(
        tmp_path / "a.tar.gz",
        {"../../escape.npy": vector, "x/y/good.npy": vector, "x/y/._good.npy": b"\x00\x05"},
    )
    dest = tmp_path / "cache" / "gtzan_ff" / "clmr"
    jp.unpack_features(tmp_path / "a.tar.gz", dest, sha256=sha)
    assert sorted(p.name for p in dest.iterdir()) == [".complete", "escape.npy", "good.npy"]
    assert not (tmp_path / "escape.npy").exists() and not (tmp_path.parent / "escape.npy").exists()
    _tarball(tmp_path / "dup.tar.gz", {"a/u1.npy": vector, "b/u1.npy": vector})
    with pytest.raises(DataError, match="two members for uid u1"):
        jp.unpack_features(tmp_path / "dup.tar.gz", tmp_path / "d2", sha256=sha)
    assert not (tmp_path / "d2").exists()


def test_a_dataset_jukemir_has_no_features_for_fails_at_config_time():
    config = {
        "datasets": {"synth": {"kind": "synthetic_key"}},
        "representations": {
            "calm_jukebox": {
                "extractor": "jukemir_precomputed",
                "params": {"representation": "jukebox", "local_dir": "/features"},
            }
        },
    }
    with pytest.raises(ConfigError, match=r"'calm_jukebox'.*CALM's datasets.*'synth'"):
        validate_config(config)
    config["representations"]["calm_jukebox"]["params"]["representation"] = "vggish"
    with pytest.raises(ConfigError, match="representation"):
        validate_config(config)


def test_calm_features_are_probed_through_the_workflow(local_gtzan, tmp_path):
    """A GTZAN run whose only representation is a jukemir features directory
    (genre-informative vectors written by the test): extraction reads them by
    uid, the probe learns the genres, provenance names the source."""
    rng = np.random.default_rng(1)
    table = gtzan.read_split_lists(gtzan_lists())
    local = tmp_path / "jukemir_representations" / "gtzan_ff" / "clmr"
    local.mkdir(parents=True)
    # a second copy with 1 % noise, compared against the first (results/compare)
    noisy = tmp_path / "noisy" / "gtzan_ff" / "clmr"
    noisy.mkdir(parents=True)
    vectors, errors = {}, []
    for clip_id, genre in zip(table["clip_id"], table["genre"], strict=True):
        vector = rng.standard_normal(16).astype(np.float32)
        vector[gtzan.GENRES.index(genre)] += 4.0
        vectors[clip_id] = vector
        np.save(local / f"{GTZAN.jukemir_uid(clip_id)}.npy", vector)
        copy = vector + 0.01 * np.linalg.norm(vector) * rng.standard_normal(16) / 4
        errors.append(np.linalg.norm(copy - vector) / np.linalg.norm(vector))
        np.save(noisy / f"{GTZAN.jukemir_uid(clip_id)}.npy", copy.astype(np.float32))
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = {
        "seed": 0,
        "device": "cpu",
        "data_home": str(local_gtzan["data_home"]),
        "datasets": {
            "gtzan": {
                "kind": "gtzan_ff",
                "label": "GTZAN",
                "shard_size": 500,
                "params": {"mirdata_index": str(local_gtzan["index"])},
            }
        },
        "representations": {
            "calm_clmr": {
                "extractor": "jukemir_precomputed",
                "label": "CLMR (CALM's features)",
                "params": {"representation": "clmr", "local_dir": str(local.parent.parent)},
            },
            "noisy_clmr": {
                "extractor": "jukemir_precomputed",
                "params": {"representation": "clmr", "local_dir": str(tmp_path / "noisy")},
            },
        },
        "compare": [{"a": "noisy_clmr", "b": "calm_clmr"}],
        "published": [
            {
                "label": "CLMR (CALM paper)",
                "source": "Castellon et al. 2021, Table 1",
                "values": {"gtzan": {"accuracy": 68.6}},
            }
        ],
        "probe": {
            "grid": {"hidden_sizes": [[]], "learning_rate": [0.01], "l2": [0.0], "dropout": [0.0]},
            "patience": 8,
            "max_steps": 400,
        },
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    run(workdir)

    shards = sorted((workdir / "results" / "features" / "gtzan" / "calm_clmr").glob("*.npz"))
    assert len(shards) == 2
    n_clips = 0
    for path in shards:
        with np.load(path) as shard:
            for clip_id, row in zip(shard["clip_ids"], shard["layer:features"], strict=True):
                np.testing.assert_array_equal(row, vectors[str(clip_id)])
                n_clips += 1
            profile = json.loads(str(shard["profile"]))
        assert profile["source"]["sources"]["gtzan_ff"]["directory"] == str(local)
    assert n_clips == 930
    record = json.loads(
        (workdir / "results" / "provenance" / "gtzan" / "calm_clmr" / "features.json").read_text()
    )
    assert record["test_metrics"]["accuracy"] > 0.8
    sources = [shard["source"]["sources"]["gtzan_ff"] for shard in record["stages"]["extract"]]
    assert sources == [{"directory": str(local)}] * 2
    from mirprobe.provenance import describe

    assert f"features: read from a local folder, {local}" in describe(record)
    table_md = (workdir / "results" / "table.md").read_text()
    assert "CLMR (CALM's features)" in table_md
    assert "| CLMR (CALM paper) [published] | 68.6" in table_md

    compared = json.loads(
        (workdir / "results/compare/gtzan/noisy_clmr.features--calm_clmr.features.json").read_text()
    )
    assert compared["n_common"] == 930 and compared["only_a"]["count"] == 0
    assert compared["relative_error"]["median"] == pytest.approx(np.median(errors), rel=1e-3)
    assert compared["cosine"]["min"] > 0.99 and compared["linear_cka"] > 0.99
    summary = (workdir / "results" / "compare.md").read_text()
    assert "noisy_clmr/features" in summary and "calm_clmr/features" in summary


def test_a_source_is_required_since_jukemirs_host_is_gone():
    # jukemir's host answers 404 (its issues #13 and #15): no default URL, so a row
    # without local_dir or a mirror fails at start-up, naming the key
    config = yaml.safe_load((REPO / "configs" / "calm_features.yaml").read_text())
    with pytest.raises(ConfigError, match=r"representations\.calm_\w+\.params\.urls: \[\]"):
        validate_config(copy.deepcopy(config))
    for entry in config["representations"].values():
        if entry["extractor"] == "jukemir_precomputed":
            entry["params"]["local_dir"] = "~/jukemir/representations"
    validated = validate_config(copy.deepcopy(config))
    calm = {
        entry["params"]["representation"]
        for entry in validated["representations"].values()
        if entry["extractor"] == "jukemir_precomputed"
    }
    assert calm == set(jp.REPRESENTATIONS)
    assert set(validated["datasets"]) == set(jp.DATASETS)
    mirror = {"representation": "clmr", "urls": ["https://mirror.example/jukemir/"]}
    assert build_extractor({"extractor": "jukemir_precomputed", "params": mirror})


def test_the_paper_config_has_only_rows_whose_sources_work():
    text = (REPO / "configs" / "paper.yaml").read_text()
    config = validate_config(yaml.safe_load(text))
    extractors = {entry["extractor"] for entry in config["representations"].values()}
    assert "jukemir_precomputed" not in extractors
    assert "nlp.stanford.edu" not in text
    assert not any("calm_" in f"{pair}" for pair in config.get("compare") or [])
