"""mirprobe.download against a local HTTP server on 127.0.0.1 (Range support,
dead links, wrong bytes, connections dropped mid-body); the server runs in a
thread and stops by itself."""

import hashlib
import http.server
import threading
import time

import pytest

from mirprobe.download import Remote, download, fetch, verify_file
from mirprobe.errors import DataError

PAYLOAD = bytes(range(256)) * 400  # 100 kB
SHA256 = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    files = {}  # path -> bytes
    ignore_range = set()  # paths served whole even when a Range is asked
    slow = set()  # paths answered after a pause (to overlap concurrent fetches)
    drops = {}  # path -> how many more answers break off halfway through the body
    stalls = set()  # paths whose Range answers send headers, then close without a byte
    requests = []  # (path, Range header)
    sent = []  # (path, body bytes written)

    def log_message(self, *args):
        pass

    def do_GET(self):
        type(self).requests.append((self.path, self.headers.get("Range")))
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "not here")
            return
        if self.path in self.slow:
            time.sleep(0.5)
        start = 0
        header = self.headers.get("Range")
        if header and self.path not in self.ignore_range:
            start = int(header.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        chunk = body[start:]
        if self.drops.get(self.path, 0) > 0:
            self.drops[self.path] -= 1
            chunk = chunk[: len(chunk) // 2]
        elif start and self.path in self.stalls:
            chunk = b""
        # recorded before writing: a client given the whole body goes on at once, and the
        # test would otherwise read `sent` before this thread appends to it
        type(self).sent.append((self.path, len(chunk)))
        # the connection closes after this (HTTP/1.0): a short body is a dropped connection
        self.wfile.write(chunk)


@pytest.fixture
def server():
    Handler.files = {
        "/good.bin": PAYLOAD,
        "/bad.bin": b"x" * 1000,
        "/norange.bin": PAYLOAD,
        "/slow.bin": PAYLOAD,
    }
    Handler.ignore_range = {"/norange.bin"}
    Handler.slow = {"/slow.bin"}
    Handler.drops = {}
    Handler.stalls = set()
    Handler.requests = []
    Handler.sent = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.timeout = 5
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def remote(*urls, checksum=SHA256):
    return Remote(key="TEST_FILE", path="sub/file.bin", checksum=checksum, urls=tuple(urls))


def test_download_verifies_and_places_the_file(server, tmp_path):
    dest = download(remote(f"{server}/good.bin"), tmp_path / "file.bin", timeout=5)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "file.bin.part").exists()


def test_download_resumes_a_partial_file_with_range(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:12345])
    download(remote(f"{server}/good.bin"), tmp_path / "file.bin", timeout=5)
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD
    assert Handler.requests == [("/good.bin", "bytes=12345-")]


def test_download_restarts_when_the_server_ignores_range(server, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(b"garbage" * 10)
    download(remote(f"{server}/norange.bin"), tmp_path / "file.bin", timeout=5)
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD


def test_download_falls_back_to_the_next_mirror(server, tmp_path):
    urls = (f"{server}/dead.bin", f"{server}/bad.bin", f"{server}/good.bin")
    download(remote(*urls), tmp_path / "file.bin", timeout=5)
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD
    assert [p for p, _ in Handler.requests] == ["/dead.bin", "/bad.bin", "/good.bin"]


def test_all_urls_failing_names_each_url_checksum_and_path(server, tmp_path):
    urls = (f"{server}/dead.bin", f"{server}/bad.bin", "http://127.0.0.1:9/refused")
    dest = tmp_path / "file.bin"
    with pytest.raises(DataError) as error:
        download(remote(*urls), dest, timeout=5)
    message = str(error.value)
    for url in urls:
        assert url in message
    assert "404" in message and "checksum mismatch" in message
    assert SHA256 in message and f"place it at {dest}" in message
    assert not dest.exists() and not (tmp_path / "file.bin.part").exists()


def test_fetch_keeps_a_verified_file_and_rejects_a_wrong_one(server, tmp_path):
    target = tmp_path / "sub" / "file.bin"
    target.parent.mkdir()
    target.write_bytes(PAYLOAD)
    assert fetch(remote(f"{server}/good.bin"), root=tmp_path) == target
    assert Handler.requests == []  # already there: no network
    target.write_bytes(PAYLOAD[:-1])
    with pytest.raises(DataError, match=f"{target}: checksum mismatch"):
        fetch(remote(f"{server}/good.bin"), root=tmp_path)


def test_fetch_local_only_never_downloads(server, tmp_path):
    with pytest.raises(DataError, match="not found in data_home") as error:
        fetch(remote(f"{server}/good.bin"), root=tmp_path, local_only=True)
    assert str(tmp_path / "sub" / "file.bin") in str(error.value)
    assert Handler.requests == []


def test_md5_checksums_are_recognised(tmp_path):
    path = tmp_path / "a.mp3"
    path.write_bytes(b"abc")
    verify_file(path, hashlib.md5(b"abc").hexdigest())
    with pytest.raises(DataError, match="md5"):
        verify_file(path, hashlib.md5(b"abd").hexdigest())


def test_mirrors_from_config_come_first():
    base = remote("http://registry/file")
    assert base.with_mirrors(["http://mirror/file"]).urls == (
        "http://mirror/file",
        "http://registry/file",
    )


def test_concurrent_fetches_of_one_file_download_it_once(server, tmp_path):
    # parallel extraction jobs asking for the same checkpoint: without the
    # lock each would download (and append to) the same .part file
    results, errors = [], []

    def fetch_one():
        try:
            results.append(fetch(remote(f"{server}/slow.bin"), root=tmp_path))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=fetch_one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert results == [tmp_path / "sub/file.bin"] * 3
    verify_file(tmp_path / "sub/file.bin", SHA256)
    assert [path for path, _ in Handler.requests] == ["/slow.bin"]


def test_a_dropped_connection_is_resumed_not_taken_as_the_file(server, tmp_path):
    # the server announces 102400 bytes, sends half and closes: before, the
    # half was hashed, reported as "checksum mismatch" and deleted
    Handler.drops = {"/good.bin": 1}
    half = len(PAYLOAD) // 2
    download(remote(f"{server}/good.bin"), tmp_path / "file.bin", timeout=5, backoff=0)
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD
    assert Handler.requests == [("/good.bin", None), ("/good.bin", f"bytes={half}-")]
    # only the missing remainder is downloaded again
    assert Handler.sent == [("/good.bin", half), ("/good.bin", len(PAYLOAD) - half)]


def test_a_dropped_resume_is_resumed_again(server, tmp_path):
    Handler.drops = {"/good.bin": 2}
    (tmp_path / "file.bin.part").write_bytes(PAYLOAD[:40000])
    download(remote(f"{server}/good.bin"), tmp_path / "file.bin", timeout=5, backoff=0)
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD
    rest = len(PAYLOAD) - 40000
    assert Handler.requests == [
        ("/good.bin", "bytes=40000-"),
        ("/good.bin", f"bytes={40000 + rest // 2}-"),
        ("/good.bin", f"bytes={40000 + rest // 2 + (rest - rest // 2) // 2}-"),
    ]
    assert sum(n for _, n in Handler.sent) == rest


def test_resuming_without_progress_gives_up_and_keeps_the_part(server, tmp_path):
    Handler.drops = {"/good.bin": 1}
    Handler.stalls = {"/good.bin"}
    half = len(PAYLOAD) // 2
    dest, part = tmp_path / "file.bin", tmp_path / "file.bin.part"
    with pytest.raises(DataError) as error:
        download(remote(f"{server}/good.bin"), dest, timeout=5, retries=2, backoff=0)
    message = str(error.value)
    assert "interrupted 3 times in a row without new data" in message
    assert f"connection closed after {half} of {len(PAYLOAD)} bytes" in message
    assert f"{half} bytes are kept in {part}" in message
    # the first answer, then retries + 1 resumptions that bring nothing
    assert Handler.requests == [("/good.bin", None)] + [("/good.bin", f"bytes={half}-")] * 3
    assert part.read_bytes() == PAYLOAD[:half] and not dest.exists()
    # a later run (the server healthy again) resumes from the kept bytes
    Handler.stalls, Handler.requests, Handler.sent = set(), [], []
    download(remote(f"{server}/good.bin"), dest, timeout=5, backoff=0)
    assert dest.read_bytes() == PAYLOAD
    assert Handler.sent == [("/good.bin", len(PAYLOAD) - half)]


def test_a_resumed_file_with_a_wrong_checksum_is_downloaded_again_from_zero(server, tmp_path):
    # the .part is from another version of the file: the resumed whole is wrong
    (tmp_path / "file.bin.part").write_bytes(b"stale" * 100)
    download(remote(f"{server}/good.bin"), tmp_path / "file.bin", timeout=5, backoff=0)
    assert (tmp_path / "file.bin").read_bytes() == PAYLOAD
    assert Handler.requests == [("/good.bin", "bytes=500-"), ("/good.bin", None)]


def test_wrong_bytes_are_retried_once_from_zero_then_reported(server, tmp_path):
    Handler.drops = {"/bad.bin": 1}
    dest = tmp_path / "file.bin"
    with pytest.raises(DataError) as error:
        download(remote(f"{server}/bad.bin"), dest, timeout=5, backoff=0)
    bad = hashlib.sha256(b"x" * 1000).hexdigest()
    assert f"{server}/bad.bin: checksum mismatch (sha256 {bad}), also when downloaded " in str(
        error.value
    )
    # dropped at 500, resumed (wrong whole), once more from zero (wrong again): no more
    assert Handler.requests == [("/bad.bin", None), ("/bad.bin", "bytes=500-"), ("/bad.bin", None)]
    assert not dest.exists() and not (tmp_path / "file.bin.part").exists()
