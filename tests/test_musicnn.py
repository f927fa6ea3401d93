"""MusiCNN with the package's real trained weights, against the package's own extractor."""

import os

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
pytest.importorskip("tensorflow")
pytest.importorskip("musicnn")

from conftest import fixture_path  # noqa: E402
from mirprobe.errors import ConfigError  # noqa: E402
from mirprobe.extractors import build_extractor  # noqa: E402
from mirprobe.extractors.musicnn import MusiCNN  # noqa: E402

CLIPS = [
    "Kevin_MacLeod_-_Vibe_Ace.ogg",  # 60 s: 20 patches
    "sorohanro_-_solo-trumpet-06.ogg",  # one patch
]


def package_features(path, model="MSD_musicnn"):
    from musicnn.extractor import extractor

    _, _, features = extractor(str(path), model=model, input_length=3, extract_features=True)
    return features


def load_16k(path):
    import librosa

    return librosa.load(str(path), sr=16000)[0]  # as musicnn.extractor.batch_data does


@pytest.fixture(scope="module")
def musicnn_package_mode():
    return MusiCNN(params={"log_compression": "package"}).load()


@pytest.mark.parametrize("name", CLIPS)
def test_equals_time_mean_of_the_package_extractor(name, musicnn_package_mode):
    path = fixture_path("audio", name)
    expected = package_features(path)
    out = musicnn_package_mode.embed(
        [load_16k(path)], layers=["mean_max", "mean_pool", "max_pool", "penultimate"]
    )
    for layer in ("mean_pool", "max_pool", "penultimate"):
        reference = np.asarray(expected[layer]).reshape(-1, out[layer].shape[1]).mean(axis=0)
        np.testing.assert_allclose(out[layer][0], reference, rtol=1e-4, atol=1e-4)
    assert out["mean_max"].shape == (1, 2 * 753)
    np.testing.assert_array_equal(
        out["mean_max"], np.concatenate([out["mean_pool"], out["max_pool"]], axis=1)
    )


def test_default_mode_is_finite_and_equals_the_package_where_it_does_not_overflow(tmp_path):
    import soundfile as sf

    path = fixture_path("audio", CLIPS[0])
    y = load_16k(path)
    extractor = build_extractor({"extractor": "musicnn"})
    loud = extractor.embed([y], layers=["mean_max"])["mean_max"]
    assert np.isfinite(loud).all()  # where the package gives inf
    # quieter audio does not overflow float16: then both modes equal the package
    quiet = 0.02 * y
    sf.write(tmp_path / "quiet.wav", quiet, 16000, subtype="FLOAT")
    expected = package_features(tmp_path / "quiet.wav")
    assert np.isfinite(expected["mean_pool"]).all()
    reference = np.concatenate([expected["mean_pool"].mean(0), expected["max_pool"].mean(0)])
    out = extractor.embed([quiet, y[: 16000 * 7]], layers=["mean_max"])["mean_max"]
    np.testing.assert_allclose(out[0], reference, rtol=1e-4, atol=1e-4)
    # a clip's embedding does not depend on its batch
    alone = extractor.embed([y[: 16000 * 7]], layers=["mean_max"])["mean_max"]
    np.testing.assert_allclose(out[1], alone[0], rtol=1e-5, atol=1e-5)


def test_short_clips_are_repeat_padded_and_layers_checked():
    extractor = MusiCNN().load()
    rng = np.random.default_rng(0)
    out = extractor.embed([0.1 * rng.standard_normal(8000).astype(np.float32)], layers=["max_pool"])
    assert out["max_pool"].shape == (1, 753) and np.isfinite(out["max_pool"]).all()
    with pytest.raises(ConfigError, match="no layers"):
        extractor.embed([np.zeros(16000, np.float32)], layers=["timbral"])
    assert MusiCNN.sample_rate == 16000 and not MusiCNN.wants_gpu


# --- MSD_musicnn_big: the paper's model, from jordipons/musicnn@516acb2 -----------------------

BIG_FIXTURE = ("weights", "musicnn_big", "MSD_musicnn_big")
SMALL_FILES = ("checkpoint", ".index", ".meta")
DATA_FILE = ".data-00000-of-00001"


def big_dir_with_small_files(tmp_path):
    """A checkpoint folder holding copies of the fixture's small files (no data file)."""
    import shutil

    folder = tmp_path / "MSD_musicnn_big"
    folder.mkdir()
    for name in SMALL_FILES:
        shutil.copyfile(fixture_path(*BIG_FIXTURE, name), folder / name)
    return folder


def test_big_graph_has_exactly_the_variables_of_the_checkpoint_index(tmp_path):
    import tensorflow as tf

    from mirprobe.errors import ModelError
    from mirprobe.extractors.musicnn import build_graph, check_variables

    folder = big_dir_with_small_files(tmp_path)
    prefix = str(folder) + "/"
    reader = tf.compat.v1.train.NewCheckpointReader(prefix)  # reads the .index alone
    stored = {
        name: list(shape)
        for name, shape in reader.get_variable_to_shape_map().items()
        if "Adam" not in name and not name.startswith("beta")
    }
    graph, _, _, outputs = build_graph("MSD_musicnn_big", n_frames=188, n_labels=50)
    variables = graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
    built = {v.op.name: v.shape.as_list() for v in variables}
    assert len(built) == 64 and built == stored
    assert stored["conv2d_5/kernel"] == [7, 561, 1, 512]  # the mid-end's 512 filters
    assert stored["dense/kernel"] == [4194, 500] and stored["dense_1/kernel"] == [500, 50]
    check_variables(graph, prefix, model="MSD_musicnn_big")  # the loader's check passes
    # mean_pool and max_pool: front end 561 + 3 x 512 mid-end channels each, 4194 together
    _, _, _, _, _, _, mean_pool, max_pool, penultimate = outputs
    assert mean_pool.shape.as_list() == max_pool.shape.as_list() == [None, 2097]
    assert penultimate.shape.as_list() == [None, 500]
    # the shipped model's graph does not fit this checkpoint: the loader says where
    small, *_ = build_graph("MSD_musicnn", n_frames=188, n_labels=50)
    with pytest.raises(ModelError, match=r"conv2d_5/kernel: graph \[7, 561, 1, 64\], checkpoint"):
        check_variables(small, prefix, model="MSD_musicnn")


def test_git_blob_id_verifies_a_file_as_git_hash_object_does(tmp_path):
    import subprocess

    from mirprobe.download import file_checksum, verify_file
    from mirprobe.errors import DataError

    path = tmp_path / "blob.bin"
    path.write_bytes(np.random.default_rng(0).bytes(3 << 20) + b"tail")
    git = subprocess.run(
        ["git", "hash-object", str(path)], capture_output=True, text=True, check=True
    )
    blob = git.stdout.strip()
    assert file_checksum(path, algorithm="git-blob") == f"git-blob:{blob}"
    verify_file(path, f"git-blob:{blob}")
    with pytest.raises(DataError, match=r"blob\.bin: checksum mismatch: git-blob is"):
        verify_file(path, "git-blob:" + "0" * 40)
    path.write_bytes(path.read_bytes()[:-1])  # one byte short: the blob id changes
    with pytest.raises(DataError, match="checksum mismatch"):
        verify_file(path, f"git-blob:{blob}")


def test_big_small_files_match_their_published_sha256():
    from mirprobe.download import file_checksum
    from mirprobe.extractors.musicnn import BIG_COMMIT, BIG_FILES, big_remotes

    for name in SMALL_FILES:
        path = fixture_path(*BIG_FIXTURE, name)
        size, sha256 = BIG_FILES[name]
        assert path.stat().st_size == size and file_checksum(path) == sha256, name
    assert BIG_FILES[DATA_FILE] == (95817164, "git-blob:8797b12a184750ac483685d294a715259922b1b4")
    urls = {remote.path: remote.urls for remote in big_remotes()}
    assert urls[DATA_FILE] == (
        f"https://raw.githubusercontent.com/jordipons/musicnn/{BIG_COMMIT}"
        "/musicnn/MSD_musicnn_big/.data-00000-of-00001",
    )
    assert BIG_COMMIT.startswith("516acb2") and len(BIG_COMMIT) == 40


def test_big_checkpoint_dir_is_verified_before_tensorflow_reads_it(tmp_path):
    from mirprobe.errors import DataError

    folder = big_dir_with_small_files(tmp_path)
    params = {"model": "MSD_musicnn_big", "checkpoint_dir": str(folder)}
    data = folder / DATA_FILE
    with pytest.raises(DataError, match=rf"{DATA_FILE}: not found .*95817164 bytes"):
        MusiCNN(params=params).load()
    data.write_bytes(b"\0" * 1000)
    with pytest.raises(DataError, match=rf"{DATA_FILE}: 1000 bytes, expected 95817164"):
        MusiCNN(params=params).load()
    with open(data, "r+b") as handle:  # the right size, other content
        handle.truncate(95817164)
    with pytest.raises(DataError, match=rf"{DATA_FILE}: checksum mismatch: git-blob is"):
        MusiCNN(params=params).load()
    (folder / ".meta").write_bytes(b"x")  # a small file is checked too
    with pytest.raises(DataError, match=r"\.meta: 1 bytes, expected 1185999"):
        MusiCNN(params=params).load()
    with pytest.raises(ConfigError, match="checkpoint_dir is for model MSD_musicnn_big"):
        MusiCNN(params={"checkpoint_dir": str(folder)})


def test_big_source_record_names_the_commit_urls_and_the_data_files_sha256(tmp_path, monkeypatch):
    """The record of the files read, with the data file's sha256 computed on the spot
    (here a stand-in data file, registered under its own size and blob id)."""
    import hashlib
    import subprocess

    import mirprobe.extractors.musicnn as module
    from mirprobe.errors import ModelError

    folder = big_dir_with_small_files(tmp_path)
    content = np.random.default_rng(1).bytes(4096)
    (folder / DATA_FILE).write_bytes(content)
    git = subprocess.run(
        ["git", "hash-object", str(folder / DATA_FILE)], capture_output=True, text=True, check=True
    )
    monkeypatch.setitem(
        module.BIG_FILES, DATA_FILE, (len(content), f"git-blob:{git.stdout.strip()}")
    )
    extractor = MusiCNN(params={"model": "MSD_musicnn_big", "checkpoint_dir": str(folder)})
    assert extractor.source_record() is None  # nothing read yet
    # verified, graph checked against the .index; the stand-in bytes are no weights
    with pytest.raises(ModelError, match="cannot restore the MSD_musicnn_big checkpoint"):
        extractor.load()
    record = extractor.source_record()
    assert record["repository"] == "jordipons/musicnn"
    assert record["commit"] == module.BIG_COMMIT
    assert record["checkpoint_dir"] == str(folder.resolve())
    data = record["files"][DATA_FILE]
    assert data["sha256"] == hashlib.sha256(content).hexdigest()
    assert data["git_blob"] == git.stdout.strip() and data["size"] == 4096
    assert data["url"].endswith(f"/{module.BIG_COMMIT}/musicnn/MSD_musicnn_big/{DATA_FILE}")
    assert record["files"][".index"] == {
        "url": f"https://raw.githubusercontent.com/jordipons/musicnn/{module.BIG_COMMIT}"
        "/musicnn/MSD_musicnn_big/.index",
        "size": 5040,
        "sha256": "d83b6453d94b455cdabfe627f4abe6007b6bfd5299f70d662be7e917786b99f6",
    }
    assert sorted(record["files"]) == sorted(module.BIG_FILES)


def test_a_download_is_verified_by_its_git_blob_id(tmp_path):
    """The downloader takes a ``git-blob:`` checksum as any other (served locally here)."""
    import functools
    import http.server
    import subprocess
    import threading

    from mirprobe.download import Remote, fetch
    from mirprobe.errors import DataError

    served = tmp_path / "served"
    served.mkdir()
    (served / DATA_FILE).write_bytes(np.random.default_rng(2).bytes(70000))
    git = subprocess.run(
        ["git", "hash-object", str(served / DATA_FILE)], capture_output=True, text=True, check=True
    )
    blob = f"git-blob:{git.stdout.strip()}"

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{DATA_FILE}"
        got = fetch(Remote("data", DATA_FILE, blob, (url,)), root=tmp_path / "a")
        assert got.read_bytes() == (served / DATA_FILE).read_bytes()
        wrong = Remote("data", DATA_FILE, "git-blob:" + "1" * 40, (url,))
        with pytest.raises(DataError, match=rf"tried:\n  {url}: checksum mismatch \(git-blob"):
            fetch(wrong, root=tmp_path / "b")
        assert not (tmp_path / "b" / DATA_FILE).exists()
    finally:
        server.shutdown()
        server.server_close()
