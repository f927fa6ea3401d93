"""Unpacking the datasets' archives (mirprobe.datasets.remote): crafted tar and
zip archives whose members would write outside the target directory, link out
of it, or keep setuid bits; nothing lands outside, and the error names the
archive and the member."""

import io
import stat
import tarfile
import zipfile

import pytest

from mirprobe.datasets.remote import extract_once, unpack_archive
from mirprobe.errors import DataError


def files_under(root):
    """``{relative path: bytes}`` of the regular files under ``root``; links are listed too."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(root))] = ("link", str(path.readlink()))
        elif path.is_file():
            out[str(path.relative_to(root))] = path.read_bytes()
    return out


@pytest.fixture
def layout(tmp_path):
    """``(dest, outside)``: the target directory and a sibling holding a file to protect."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_bytes(b"keep me")
    return dest, outside


def make_tar(path, members):
    """A .tar.gz of ``members``: ``(TarInfo kwargs, bytes or None)`` pairs."""
    with tarfile.open(path, "w:gz") as tar:
        for spec, data in members:
            info = tarfile.TarInfo(spec.pop("name"))
            for key, value in spec.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def make_zip(path, members):
    """A .zip of ``members``: ``(name, bytes, unix mode or None)``."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            archive.writestr(info, data)
    return path


GOOD = b"good bytes"


def test_a_good_tar_unpacks_with_safe_modes(tmp_path, layout):
    dest, outside = layout
    archive = make_tar(
        tmp_path / "good.tar.gz",
        [
            ({"name": "top", "type": tarfile.DIRTYPE, "mode": 0o755}, None),
            ({"name": "top/a.txt", "mode": 0o644}, b"a"),
            ({"name": "top/sub/b.txt", "mode": 0o644}, b"bb"),
            ({"name": "top/suid", "mode": 0o4755}, b"s"),
            ({"name": "top/world_writable", "mode": 0o666}, b"w"),
            ({"name": "top/inner", "type": tarfile.SYMTYPE, "linkname": "sub/b.txt"}, None),
        ],
    )
    extract_once(archive, dest, checksum="abc")
    assert files_under(dest) == {
        ".extracted": b"abc\n",
        "top/a.txt": b"a",
        "top/inner": ("link", "sub/b.txt"),  # a link inside the archive's directory is fine
        "top/sub/b.txt": b"bb",
        "top/suid": b"s",
        "top/world_writable": b"w",
    }
    # setuid and group/other write bits are dropped (tarfile's "data" filter)
    assert stat.S_IMODE((dest / "top/suid").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "top/world_writable").stat().st_mode) == 0o644
    assert files_under(outside) == {"secret.txt": b"keep me"}


@pytest.mark.parametrize(
    "case, members, bad_member",
    [
        ("dotdot", [({"name": "../outside/evil.txt"}, GOOD)], "../outside/evil.txt"),
        ("absolute", [({"name": "{outside}/evil.txt"}, GOOD)], "{outside}/evil.txt"),
        (
            "symlink_out",
            [
                ({"name": "link", "type": tarfile.SYMTYPE, "linkname": "../outside"}, None),
                ({"name": "link/evil.txt"}, GOOD),
            ],
            "link",
        ),
        (
            "absolute_symlink",
            [
                ({"name": "link", "type": tarfile.SYMTYPE, "linkname": "{outside}"}, None),
                ({"name": "link/evil.txt"}, GOOD),
            ],
            "link",
        ),
        (
            "hardlink_out",
            [
                (
                    {"name": "hard", "type": tarfile.LNKTYPE, "linkname": "../outside/secret.txt"},
                    None,
                )
            ],
            "hard",
        ),
        ("fifo", [({"name": "pipe", "type": tarfile.FIFOTYPE}, None)], "pipe"),
    ],
)
def test_a_tar_member_leaving_the_target_is_refused(tmp_path, layout, case, members, bad_member):
    dest, outside = layout
    members = [
        ({k: v.format(outside=outside) if isinstance(v, str) else v for k, v in spec.items()}, d)
        for spec, d in members
    ]
    bad_member = bad_member.format(outside=outside)
    archive = make_tar(tmp_path / f"{case}.tar.gz", [({"name": "ok.txt"}, b"ok"), *members])
    with pytest.raises(DataError) as error:
        extract_once(archive, dest, checksum="abc")
    message = str(error.value)
    assert str(archive) in message and repr(bad_member) in message
    assert files_under(outside) == {"secret.txt": b"keep me"}
    # the half-done extraction is removed: no marker, no partial tree
    assert not dest.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["outside", archive.name])


def test_a_good_zip_unpacks_without_special_bits(tmp_path, layout):
    dest, outside = layout
    archive = make_zip(
        tmp_path / "good.zip",
        [
            ("top/", b"", stat.S_IFDIR | 0o755),
            ("top/a.txt", b"a", stat.S_IFREG | 0o644),
            ("top/sub/b.txt", b"bb", None),  # no unix mode (written on Windows)
            ("top/suid", b"s", stat.S_IFREG | 0o4755),
        ],
    )
    extract_once(archive, dest, checksum="abc")
    assert files_under(dest) == {
        ".extracted": b"abc\n",
        "top/a.txt": b"a",
        "top/sub/b.txt": b"bb",
        "top/suid": b"s",
    }
    assert not (dest / "top/suid").stat().st_mode & (stat.S_ISUID | stat.S_ISGID)
    assert files_under(outside) == {"secret.txt": b"keep me"}


@pytest.mark.parametrize(
    "case, member, mode",
    [
        ("dotdot", "../outside/evil.txt", None),
        ("dotdot_inner", "top/../../outside/evil.txt", None),
        ("absolute", "{outside}/evil.txt", None),
        ("symlink", "link", stat.S_IFLNK | 0o777),
        ("fifo", "pipe", stat.S_IFIFO | 0o644),
    ],
)
def test_a_zip_member_leaving_the_target_is_refused(tmp_path, layout, case, member, mode):
    dest, outside = layout
    member = member.format(outside=outside)
    payload = str(outside).encode() if case == "symlink" else GOOD  # a link's target
    archive = make_zip(tmp_path / f"{case}.zip", [("ok.txt", b"ok", None), (member, payload, mode)])
    with pytest.raises(DataError) as error:
        extract_once(archive, dest, checksum="abc")
    message = str(error.value)
    assert str(archive) in message and repr(member) in message
    assert files_under(outside) == {"secret.txt": b"keep me"}
    assert not dest.exists()


def test_a_multi_part_zip_is_checked_member_by_member(tmp_path, layout):
    # MagnaTagATune's mp3.zip.001..003: the parts are concatenated, then unpacked
    dest, outside = layout
    whole = make_zip(
        tmp_path / "whole.zip",
        [("a/ok.mp3", b"x" * 5000, None), ("../outside/evil.mp3", GOOD, None)],
    ).read_bytes()
    parts = []
    for i, start in enumerate(range(0, len(whole), 2000), start=1):
        parts.append(tmp_path / f"mp3.zip.{i:03d}")
        parts[-1].write_bytes(whole[start : start + 2000])
    with pytest.raises(DataError) as error:
        extract_once(None, dest, checksum="abc", parts=parts)
    message = str(error.value)
    assert all(str(part) in message for part in parts)
    assert "'../outside/evil.mp3'" in message
    assert files_under(outside) == {"secret.txt": b"keep me"}
    assert not dest.exists() and not (tmp_path / "dest.joined.zip").exists()


def test_a_corrupt_or_unknown_archive_is_a_data_error(tmp_path, layout):
    dest, _ = layout
    (tmp_path / "broken.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"broken\.zip: cannot unpack \(BadZipFile"):
        unpack_archive(tmp_path / "broken.zip", dest)
    (tmp_path / "broken.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(DataError, match=r"broken\.tar\.gz: cannot unpack"):
        unpack_archive(tmp_path / "broken.tar.gz", dest)
    with pytest.raises(DataError, match=r"x\.rar: unknown archive kind"):
        unpack_archive(tmp_path / "x.rar", dest)
