"""Resumable, checksum-verified downloads of the raw files a dataset needs.

Conventions
    A :class:`Remote` is one file: ``path`` (relative to the dataset's raw
    directory), the ``urls`` it can be fetched from, tried in order (mirrors
    from the config first, then the registry's URL), and its ``checksum``: a
    hex digest whose length names the algorithm (32 = md5, 40 = sha1,
    64 = sha256), as in jukemir's asset registries, where most files carry a
    sha256 and the GiantSteps mp3s the md5 their own dataset publishes; or
    ``git-blob:<40 hex>``, the git blob id (sha1 of ``blob <size>\0`` and the
    content, as ``git hash-object`` computes it), for a file whose repository
    publishes nothing else (MusiCNN's ``MSD_musicnn_big`` weights).

Fetching (:func:`fetch`)
    * ``local_only=True`` (the config's ``data_home`` points at an existing
      copy): nothing is downloaded; the file must be there and match its
      checksum, else :class:`~mirprobe.errors.DataError` names the file.
    * otherwise a file already present and matching is kept (no network); a
      present file that does not match fails naming it (delete it to
      re-download). A missing file is downloaded to ``<path>.part``; an
      interrupted download resumes with an HTTP ``Range`` request (a server
      answering 200 instead of 206 restarts it from zero). A body shorter
      than the server announced (Content-Length, or the total in
      Content-Range: the connection dropped) is never taken as the file: the
      ``.part`` is kept and resumed, a bounded number of times with backoff.
      The finished file is verified before it is renamed into place; a
      resumed file with a wrong checksum is downloaded once more from zero,
      and a wrong checksum then discards it and moves on to the next URL.
    * when every URL fails, the DataError lists each URL with its error, the
      expected checksum and the exact path where the file can be placed by
      hand.
    * concurrent fetches of one file (parallel jobs needing the same
      checkpoint) take turns on an exclusive lock, ``<path>.lock``
      (``fcntl.flock``): the first downloads, the others then find the
      verified file and download nothing.

Only the standard library is used (urllib), so a dataset's ``prepare`` needs
no extra dependency to download.
"""

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import DataError

#: digest length in hex characters -> hashlib algorithm
ALGORITHMS = {32: "md5", 40: "sha1", 64: "sha256"}
GIT_BLOB = "git-blob"
USER_AGENT = "mirprobe (dataset downloader)"


@dataclass(frozen=True)
class Remote:
    """One raw file: where it goes, where it comes from, what it must hash to."""

    #: registry key, e.g. ``GTZAN_TRAIN`` (mirrors in the config are keyed by it)
    key: str
    #: path relative to the dataset's raw directory
    path: str
    #: hex digest; its length selects md5 / sha1 / sha256
    checksum: str
    urls: tuple = field(default_factory=tuple)

    @property
    def algorithm(self):
        return checksum_algorithm(self.checksum)

    def with_mirrors(self, mirrors):
        """A copy whose URLs are ``mirrors`` (tried first), then this one's."""
        urls = [*mirrors, *[u for u in self.urls if u not in mirrors]]
        return Remote(key=self.key, path=self.path, checksum=self.checksum, urls=tuple(urls))


def checksum_algorithm(checksum):
    """The hashlib name of a hex digest, from its length (or ``git-blob`` for a blob id)."""
    if isinstance(checksum, str) and checksum.startswith(GIT_BLOB + ":"):
        if re.fullmatch(r"[0-9a-fA-F]{40}", checksum[len(GIT_BLOB) + 1 :]):
            return GIT_BLOB
    try:
        return ALGORITHMS[len(checksum)]
    except (KeyError, TypeError):
        raise DataError(
            f"checksum {checksum!r}: unknown algorithm (expected 32, 40 or 64 hex characters, "
            "or git-blob:<40 hex>)"
        ) from None


def file_checksum(path, *, algorithm="sha256", chunk_size=1 << 20):
    """Hex digest of a file (``git-blob:<hex>`` for ``algorithm="git-blob"``)."""
    if algorithm == GIT_BLOB:
        digest = hashlib.sha1(b"blob %d\0" % Path(path).stat().st_size)  # noqa: S324
    else:
        digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return f"{GIT_BLOB}:{digest.hexdigest()}" if algorithm == GIT_BLOB else digest.hexdigest()


def verify_file(path, checksum):
    """Raise DataError naming ``path`` unless it exists and hashes to ``checksum``."""
    path = Path(path)
    algorithm = checksum_algorithm(checksum)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected {algorithm} {checksum})")
    got = file_checksum(path, algorithm=algorithm)
    if got != checksum.lower():
        raise DataError(
            f"{path}: checksum mismatch: {algorithm} is {got}, expected {checksum} "
            "(a corrupt, truncated or different version of the file; delete it and "
            "fetch it again)"
        )


def _hand_placement(remote, dest):
    return (
        f"expected {remote.algorithm} {remote.checksum}; obtain the file by other means and "
        f"place it at {dest} (or point the config's data_home at a directory holding it)"
    )


def download(
    remote, dest, *, timeout=60, chunk_size=1 << 20, progress=None, retries=5, backoff=1.0
):
    """Download ``remote`` to ``dest``, trying each URL in turn; return ``dest``.

    Resumes a partial ``dest.part`` with an HTTP Range request, verifies the
    checksum, then renames into place. A body that ends before its announced
    length (Content-Length, or the total of Content-Range) keeps the
    ``.part`` and is resumed at once; ``retries`` interruptions in a row that
    bring no new byte (waiting ``backoff`` seconds, doubling, between them)
    give up on that URL. A file that was resumed and fails its checksum is
    downloaded once more from zero. Raises DataError listing every URL and why
    it failed (and the bytes kept in ``.part`` for the next run).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = []
    if not remote.urls:
        failures.append("(no URL known for this file)")
    for url in remote.urls:
        why = _download_url(
            url,
            part,
            remote,
            timeout=timeout,
            chunk_size=chunk_size,
            progress=progress,
            retries=retries,
            backoff=backoff,
        )
        if why is None:
            os.replace(part, dest)
            return dest
        failures.append(f"{url}: {why}")
    kept = part.stat().st_size if part.is_file() else 0
    raise DataError(
        f"{dest}: could not download {remote.key}; tried:\n  "
        + "\n  ".join(failures)
        + "\n"
        + (f"{kept} bytes are kept in {part}; running again resumes from them\n" if kept else "")
        + _hand_placement(remote, dest)
    )


class _Interrupted(Exception):
    """The body broke off before its announced end; the ``.part`` keeps what came."""

    def __init__(self, reason, *, have):
        super().__init__(reason)
        self.reason = reason
        #: bytes the ``.part`` holds now
        self.have = have


def _download_url(url, part, remote, *, timeout, chunk_size, progress, retries, backoff):
    """Bring ``part`` to the verified file from ``url``: None, or why it failed."""
    best = part.stat().st_size if part.is_file() else 0  # the most bytes held so far
    resumed = best > 0
    restarted = interrupted = False
    stalls = 0
    while True:
        try:
            _download_one(url, part, timeout=timeout, chunk_size=chunk_size, progress=progress)
        except _Interrupted as error:
            interrupted = resumed = True
            # progress = more bytes than ever held (a server ignoring Range may
            # restart from zero and break off at the same place every time)
            stalls = 0 if error.have > best else stalls + 1
            best = max(best, error.have)
            if stalls > retries:
                return f"interrupted {stalls} times in a row without new data ({error.reason})"
            if stalls:
                time.sleep(backoff * 2 ** (stalls - 1))
            continue
        except urllib.error.HTTPError as error:
            return f"HTTP {error.code} {error.reason}"
        except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as error:
            reason = f"{type(error).__name__}: {getattr(error, 'reason', None) or error}"
            if not interrupted:
                return reason
            # the server went away after a broken body: wait and resume as above
            stalls += 1
            if stalls > retries:
                return f"interrupted, then {stalls} failed attempts to resume (last: {reason})"
            time.sleep(backoff * 2 ** (stalls - 1))
            continue
        got = file_checksum(part, algorithm=remote.algorithm)
        if got == remote.checksum.lower():
            return None
        part.unlink(missing_ok=True)
        if resumed and not restarted:
            # the partial file may be from another version or a bad range: once more from zero
            restarted, resumed, interrupted, stalls, best = True, False, False, 0, 0
            continue
        return f"checksum mismatch ({remote.algorithm} {got})" + (
            ", also when downloaded again from zero after the resumed file's mismatch"
            if restarted
            else ""
        )


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def _download_one(url, part, *, timeout, chunk_size, progress):
    """Fetch ``url`` into ``part``, appending when the server honours the Range asked.

    Raises :class:`_Interrupted` when the body ends short of its announced
    length or the connection breaks while reading it.
    """
    have = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:
            # range not satisfiable: the partial file is already complete (or
            # longer than the file); let the checksum decide
            return
        raise
    with response:
        status = getattr(response, "status", 200)
        total = None
        if status == 206:
            match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
            if match is None or int(match[1]) != have:
                raise ValueError(
                    f"answered bytes {response.headers.get('Content-Range')!r} to a request "
                    f"for bytes {have}-"
                )
            total = None if match[3] == "*" else int(match[3])
        else:
            have = 0  # the whole file (a 200 to a Range request restarts it)
        length = response.headers.get("Content-Length")
        if total is None and length is not None:
            total = have + int(length)
        with open(part, "ab" if have else "wb") as handle:
            while True:
                try:
                    chunk = response.read(chunk_size)
                except (OSError, http.client.HTTPException) as error:
                    raise _Interrupted(
                        f"{type(error).__name__} after {have} bytes: {error}", have=have
                    ) from error
                if not chunk:
                    break
                handle.write(chunk)
                have += len(chunk)
                if progress is not None:
                    progress(url, have)
        if total is not None and have < total:
            raise _Interrupted(f"connection closed after {have} of {total} bytes", have=have)


def fetch(remote, *, root, local_only=False, timeout=60):
    """The verified local path of ``remote`` under ``root``; see the module docstring."""
    dest = Path(root) / remote.path
    if dest.is_file():
        verify_file(dest, remote.checksum)
        return dest
    if local_only:
        raise DataError(
            f"{dest}: file not found in data_home (nothing is downloaded when data_home "
            f"is set); known URLs: {', '.join(remote.urls) or 'none'}; "
            + _hand_placement(remote, dest)
        )
    with exclusive_lock(dest.with_name(dest.name + ".lock")):
        # another process may have finished the download while we waited
        if dest.is_file():
            verify_file(dest, remote.checksum)
            return dest
        return download(remote, dest, timeout=timeout)


@contextmanager
def exclusive_lock(path):
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the block."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch_all(remotes, *, root, local_only=False, timeout=60):
    """Fetch several remotes; the errors of all failing files are reported together."""
    paths, errors = {}, []
    for remote in remotes:
        try:
            paths[remote.key] = fetch(remote, root=root, local_only=local_only, timeout=timeout)
        except DataError as error:
            errors.append(str(error))
    if errors:
        head = f"{len(errors)} of {len(remotes)} files could not be obtained:\n"
        raise DataError(head + "\n".join(errors[:20]) + ("\n..." if len(errors) > 20 else ""))
    return paths
