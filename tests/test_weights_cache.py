"""The checkpoint cache: content-addressed downloads, and weights folders (config
``weights_dir`` or MIRPROBE_WEIGHTS_DIR) searched by digest, so nothing is downloaded
where the files already are."""

import hashlib
import http.server
import json
import os
import threading
import urllib.request

import pytest

from mirprobe import download
from mirprobe.config import validate_config
from mirprobe.errors import ConfigError, ModelError
from mirprobe.extractors import torch_weights
from mirprobe.extractors.torch_weights import (
    INDEX_NAME,
    WEIGHTS_DIR_ENV,
    resolve_weights,
    weights_dirs,
)

URL = "https://example.org/releases/v1/model.pt"


def digest(data):
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def offline(monkeypatch):
    """Any download attempt fails the test; no weights folder from the environment."""

    def no_network(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)


@pytest.fixture
def hashed(monkeypatch):
    """The files whose sha256 is computed, in order."""
    calls = []
    real = download.file_checksum

    def counting(path, **kwargs):
        calls.append(os.path.basename(path))
        return real(path, **kwargs)

    monkeypatch.setattr(download, "file_checksum", counting)
    return calls


def folder_of_checkpoints(root):
    """A pre-downloaded tree: the wanted file renamed and nested, among others."""
    wanted = b"the checkpoint" * 100
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "other.pt").write_bytes(b"another checkpoint")
    (root / "a" / "b" / "renamed.bin").write_bytes(wanted)
    (root / "model.pt").write_bytes(b"same name, other bytes")
    return wanted


def test_a_url_resolves_offline_from_a_weights_folder_by_digest(tmp_path, offline, hashed):
    wanted = folder_of_checkpoints(tmp_path / "weights")
    cache = tmp_path / "cache"
    with weights_dirs([tmp_path / "weights"]):
        path = resolve_weights(name="m", weights=URL, sha256=digest(wanted), cache_dir=cache)
    assert path == tmp_path / "weights" / "a" / "b" / "renamed.bin"  # used in place
    assert not (cache / "sha256").exists()
    # the file named like the URL's is tried first; every digest seen is indexed
    assert hashed[0] == "model.pt" and hashed[-1] == "renamed.bin"
    index = json.loads((cache / INDEX_NAME).read_text())
    assert index[str(path.resolve())][2] == digest(wanted)
    hashed.clear()
    with weights_dirs([tmp_path / "weights"]):
        again = resolve_weights(name="m", weights=URL, sha256=digest(wanted), cache_dir=cache)
    assert again == path and hashed == ["renamed.bin"]  # index hit; only the final check


def test_the_environment_variable_and_a_known_size(tmp_path, offline, hashed, monkeypatch):
    wanted = folder_of_checkpoints(tmp_path / "weights")
    (tmp_path / "empty").mkdir()
    folders = [str(tmp_path / "empty"), "", str(tmp_path / "weights")]
    monkeypatch.setenv(WEIGHTS_DIR_ENV, os.pathsep.join(folders))
    assert torch_weights.search_dirs() == [tmp_path / "empty", tmp_path / "weights"]
    path = resolve_weights(
        name="m", weights=URL, sha256=digest(wanted), cache_dir=tmp_path / "c", size=len(wanted)
    )
    assert path.name == "renamed.bin"
    assert hashed == ["renamed.bin", "renamed.bin"]  # other sizes are never read


def test_a_missing_local_path_is_found_by_digest_else_every_place_is_named(tmp_path, offline):
    wanted = folder_of_checkpoints(tmp_path / "weights")
    gone = "/nonexistent/cluster/home/model.pt"
    with weights_dirs([str(tmp_path / "weights")]):
        assert resolve_weights(name="m", weights=gone, sha256=digest(wanted), cache_dir=tmp_path)
        with pytest.raises(ModelError) as error:
            resolve_weights(name="m", weights=gone, sha256="0" * 64, cache_dir=tmp_path / "c")
    message = str(error.value)
    assert gone in message and "0" * 64 in message and str(tmp_path / "weights") in message
    with weights_dirs([tmp_path / "nowhere"]), pytest.raises(ModelError, match="nowhere.*exist"):
        resolve_weights(name="m", weights=URL, sha256="0" * 64, cache_dir=tmp_path / "c")


def test_a_local_file_with_the_wrong_digest_fails_naming_it(tmp_path, offline):
    path = tmp_path / "model.pt"
    path.write_bytes(b"x")
    with pytest.raises(ModelError, match=f"{path}: checksum mismatch"):
        resolve_weights(name="m", weights=str(path), sha256="0" * 64, cache_dir=tmp_path)


@pytest.fixture
def server(tmp_path):
    """A real HTTP server on localhost serving ``tmp_path / 'served'``."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_downloads_land_content_addressed_and_are_not_fetched_twice(tmp_path, server, monkeypatch):
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    root, base = server
    data = b"weights bytes" * 1000
    (root / "best_model.pth").write_bytes(data)
    cache = tmp_path / "cache"
    url = f"{base}/best_model.pth"
    path = resolve_weights(name="m", weights=url, sha256=digest(data).upper(), cache_dir=cache)
    assert path == cache / "sha256" / digest(data) and path.read_bytes() == data
    sidecar = json.loads((cache / "sha256" / f"{digest(data)}.json").read_text())
    assert sidecar == {"url": url, "file_name": "best_model.pth"}
    (root / "best_model.pth").unlink()  # the cache answers now
    assert resolve_weights(name="m", weights=url, sha256=digest(data), cache_dir=cache) == path
    with pytest.raises(ModelError, match="404"):
        resolve_weights(name="m", weights=url, sha256="1" * 64, cache_dir=cache)


def test_config_weights_dir_is_a_list_of_folders():
    base = {
        "datasets": {"d": {"kind": "synthetic_key"}},
        "representations": {"c": {"extractor": "chroma"}},
    }
    assert validate_config(json.loads(json.dumps(base)))["weights_dir"] == []
    assert validate_config({**base, "weights_dir": ["/w"]})["weights_dir"] == ["/w"]
    with pytest.raises(ConfigError, match="weights_dir"):
        validate_config({**base, "weights_dir": "/w"})
