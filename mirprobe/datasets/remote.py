"""What the downloaded (real) datasets share: raw files, mirrors, extraction.

Raw directory
    Every real dataset reads its raw files (archives, annotation files, audio)
    from one *raw directory*, laid out like jukemir's ``datasets/<name>/``
    cache: ``<data_home>/<subdir>`` when the config sets ``data_home`` (an
    existing local copy: nothing is downloaded, every file is verified), else
    ``<out_dir>/raw`` (files are downloaded there, resumably, and verified;
    see :mod:`mirprobe.download`). ``subdir`` is the class's
    :attr:`RemoteDataset.subdir` (``gtzan``, ``giantsteps``, ``emomusic``,
    ``magnatagatune``).

Params shared by these classes
    ``mirrors``: ``{registry key: [url, ...]}``, URLs tried before the
    registry's own for that file; ``timeout``: seconds per HTTP request.

Archives are unpacked once into ``<out_dir>/extracted/<name>``; a marker file
holding the archive's checksum makes a later run skip the unpacking.
"""

import copy
import shutil
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from ..errors import ConfigError, DataError
from .base import Dataset

COMMON_PARAMS = {
    "mirrors": {
        "description": "extra URLs per registry key (e.g. GTZAN), tried before the registry's URL",
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
        "default": {},
    },
    "timeout": {
        "description": "seconds before an HTTP request gives up",
        "type": "number",
        "exclusiveMinimum": 0,
        "default": 60,
    },
}

#: sharp spellings -> the flat spellings of mir_eval / jukemir labels
ENHARMONIC = {"C#": "Db", "D#": "Eb", "F#": "Gb", "G#": "Ab", "A#": "Bb"}


def params_schema(properties):
    """A draft-07 params schema with the shared properties added."""
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "type": "object",
        "additionalProperties": False,
        "properties": {**COMMON_PARAMS, **properties},
    }


def key_label(text):
    """``'d# minor'`` / ``'D# minor'`` / ``'Eb minor'`` -> ``'Eb minor'`` (flat tonics)."""
    parts = text.split()
    if len(parts) != 2 or parts[1].lower() not in ("major", "minor"):
        raise DataError(f"key {text!r}: expected '<tonic> major|minor'")
    tonic = parts[0][0].upper() + parts[0][1:].lower()
    return f"{ENHARMONIC.get(tonic, tonic)} {parts[1].lower()}"


class RemoteDataset(Dataset):
    """Base of the downloaded datasets: params defaults, raw dir, fetching."""

    #: directory name under data_home (jukemir's ``datasets/<subdir>``)
    subdir = None
    checks_audio_at_prepare = True

    def __init__(self, *, name, params=None, data_home=None):
        super().__init__(name=name, params=params, data_home=data_home)
        defaults = {
            key: copy.deepcopy(spec["default"])
            for key, spec in self.params_schema["properties"].items()
        }
        self.params = {**defaults, **self.params}
        self._validate()

    def _validate(self):
        import jsonschema

        validator = jsonschema.Draft7Validator(self.params_schema)
        errors = sorted(validator.iter_errors(self.params), key=lambda e: [str(x) for x in e.path])
        if errors:
            problems = "; ".join(
                f"params.{'.'.join(map(str, e.path))}: {e.message}" for e in errors
            )
            raise ConfigError(f"dataset {self.name!r} ({self.kind}): {problems}")

    # -- raw files ---------------------------------------------------------
    @property
    def local_only(self):
        """True when data_home is set: verify an existing copy, never download."""
        return self.data_home is not None

    def raw_dir(self, out_dir):
        if self.data_home is not None:
            return self.data_home / self.subdir
        return Path(out_dir) / "raw"

    def remote(self, base):
        """``base`` (a :class:`~mirprobe.download.Remote`) with the config's mirrors."""
        return base.with_mirrors(self.params["mirrors"].get(base.key, []))

    def fetch(self, bases, *, out_dir):
        """Fetch and verify remotes; return ``{key: path}``."""
        from ..download import fetch_all

        if self.local_only:
            return self.verify_local([self.remote(b) for b in bases])
        return fetch_all(
            [self.remote(b) for b in bases],
            root=self.raw_dir(out_dir),
            local_only=False,
            timeout=self.params["timeout"],
        )

    def verify_local(self, remotes):
        """data_home mode: verify the files placed there; ``{key: path}``, or one DataError
        saying, for each file, what is wrong and what the user can do."""
        from ..download import file_checksum

        root = self.raw_dir(None)
        paths, problems = {}, []
        for remote in remotes:
            dest = root / remote.path
            expected = f"{remote.algorithm} {remote.checksum}"
            if not dest.is_file():
                problems.append(
                    f"{dest}: not found; place the original there ({expected}; known URLs: "
                    f"{', '.join(remote.urls) or 'none'})"
                )
                continue
            got = file_checksum(dest, algorithm=remote.algorithm)
            if got != remote.checksum.lower():
                problems.append(
                    f"{dest}: checksum mismatch: {remote.algorithm} is {got}, the original's is "
                    f"{remote.checksum} (a truncated, re-packed or other version); replace it "
                    "with the original"
                )
                continue
            paths[remote.key] = dest
        if problems:
            raise DataError(
                f"{len(problems)} of {len(remotes)} files in data_home ({root}) fail "
                "verification (nothing is downloaded when data_home is set):\n  "
                + "\n  ".join(problems[:20])
                + ("\n  ..." if len(problems) > 20 else "")
                + (f"\n{self.layout_hint}" if self.layout_hint else "")
            )
        return paths

    #: what else the raw directory may hold instead of the archives (said in data_home errors)
    layout_hint = None

    def provenance(self, remotes, **extra):
        """The JSON record ``prepare`` returns: class, params, raw files."""
        return {
            "generator": f"{type(self).__module__}.{type(self).__name__}",
            "kind": self.kind,
            "params": copy.deepcopy(self.params),
            "data_home": None if self.data_home is None else str(self.data_home),
            "raw_files": [
                {"key": r.key, "path": r.path, r.algorithm: r.checksum, "urls": list(r.urls)}
                for r in remotes
            ],
            **extra,
        }


def extract_once(archive, dest, *, checksum, parts=None):
    """Unpack ``archive`` (or the concatenation of the zip ``parts``) into ``dest`` once.

    A marker ``dest/.extracted`` holding ``checksum`` skips the work on the
    next run; a half-finished extraction (no marker) is redone from scratch,
    and one that fails is removed. Nothing is written outside ``dest``: see
    :func:`unpack_archive`.
    """
    dest = Path(dest)
    marker = dest / ".extracted"
    if marker.is_file() and marker.read_text().strip() == checksum:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    try:
        if parts:
            # beside dest, not in it: a member could have the same name
            joined = dest.with_name(dest.name + ".joined.zip")
            label = " + ".join(str(part) for part in parts)
            try:
                try:
                    with open(joined, "wb") as out:
                        for part in parts:
                            with open(part, "rb") as handle:
                                shutil.copyfileobj(handle, out, 1 << 20)
                except OSError as error:
                    raise DataError(f"{label}: cannot join the parts ({error})") from None
                unpack_archive(joined, dest, label=label)
            finally:
                joined.unlink(missing_ok=True)
        else:
            unpack_archive(archive, dest)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    marker.write_text(checksum + "\n")
    return dest


#: file-name endings -> archive kind (as shutil.unpack_archive names them)
ARCHIVE_KINDS = {
    ".zip": "zip",
    ".tar": "tar",
    ".tar.gz": "tar",
    ".tgz": "tar",
    ".tar.bz2": "tar",
    ".tbz2": "tar",
    ".tar.xz": "tar",
    ".txz": "tar",
}


def archive_kind(path):
    """``'zip'`` or ``'tar'`` from the file name, else a DataError naming it."""
    name = Path(path).name.lower()
    for ending, kind in sorted(ARCHIVE_KINDS.items(), key=lambda item: -len(item[0])):
        if name.endswith(ending):
            return kind
    raise DataError(
        f"{path}: unknown archive kind (expected a name ending in {', '.join(ARCHIVE_KINDS)})"
    )


def unpack_archive(archive, dest, *, label=None):
    """Unpack a zip or tar ``archive`` into the existing directory ``dest``, safely.

    Tar archives go through tarfile's ``data`` filter (PEP 706): a member
    with an absolute path (which that filter would strip and unpack inside
    ``dest``) or ``..`` leading out of ``dest``, a link pointing
    out of it, or a device/FIFO is refused, and setuid/setgid/sticky bits and
    group/other write bits are dropped. Zip members are written one by one:
    an absolute name, a ``..`` component, a symlink (unix mode ``S_IFLNK``
    in ``external_attr``) or another non-regular file is refused; modes
    stored in the zip are not applied (files get the default permissions).
    A refused member is a DataError naming the archive (``label`` if given)
    and the member; what was written before it stays in ``dest`` for the
    caller to remove.
    """
    archive, dest = Path(archive), Path(dest)
    label = label or str(archive)
    kind = archive_kind(archive)
    try:
        if kind == "tar":
            _unpack_tar(archive, dest, label=label)
        else:
            _unpack_zip(archive, dest, label=label)
    # RuntimeError: an encrypted zip member; NotImplementedError: an unknown compression
    except (OSError, EOFError, RuntimeError, zipfile.BadZipFile, tarfile.TarError) as error:
        raise DataError(f"{label}: cannot unpack ({type(error).__name__}: {error})") from None


def _tar_filter(member, path):
    # the data filter would strip a leading "/" and unpack the member elsewhere
    if member.name.startswith("/"):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, path)


def _unpack_tar(archive, dest, *, label):
    with tarfile.open(archive, "r:*") as tar:
        try:
            tar.extractall(dest, filter=_tar_filter)
        except tarfile.FilterError as error:
            member = error.tarinfo.name
            raise DataError(
                f"{label}: refusing to unpack member {member!r}: {error} "
                "(a member must be a file, directory or link inside the archive's directory)"
            ) from None


def _unpack_zip(archive, dest, *, label):
    root = dest.resolve()
    with zipfile.ZipFile(archive) as zip_file:
        for info in zip_file.infolist():
            name = info.filename

            def refuse(why, name=name):
                return DataError(f"{label}: refusing to unpack member {name!r}: {why}")

            if name.startswith("/"):
                raise refuse("absolute path")
            if ".." in PurePosixPath(name).parts:
                raise refuse("'..' in its path would write outside the archive's directory")
            mode = info.external_attr >> 16
            file_type = stat.S_IFMT(mode)
            if file_type == stat.S_IFLNK:
                raise refuse("symbolic link")
            target = dest / name
            if not target.resolve().is_relative_to(root):
                raise refuse("its path leads outside the archive's directory")
            if info.is_dir() or file_type == stat.S_IFDIR:
                target.mkdir(parents=True, exist_ok=True)
                continue
            if file_type not in (0, stat.S_IFREG):
                raise refuse(f"not a regular file (unix mode {mode:o})")
            target.parent.mkdir(parents=True, exist_ok=True)
            with zip_file.open(info) as source, open(target, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)


def mirdata_dataset(name, *, data_home, version, index_path=None):
    """A mirdata 1.0 loader reading its index from ``index_path`` when given.

    mirdata 1.0 ships no index files and downloads them on first use; a local
    index (e.g. the one pinned by the checksum in mirdata's ``INDEXES``) lets
    it work offline.
    """
    import mirdata

    dataset = mirdata.initialize(name, data_home=str(data_home), version=version)
    if index_path is not None:
        index_path = Path(index_path)
        if not index_path.is_file():
            raise DataError(f"{index_path}: mirdata index for {name} {version} not found")
        # _index is a cached property read lazily from index_path
        dataset.index_path = str(index_path)
    return dataset


def check_decodable(paths, *, on_bad_audio="error"):
    """Check that soundfile opens every file; ``[{"path", "reason"}]`` of those it cannot.

    ``on_bad_audio="error"`` raises AudioDecodeError naming them (the first
    MAX_LISTED, then a count) before any clip is resampled; ``exclude`` prints
    and returns them: the files stay in the metadata table, so the resample
    stage excludes their clips with the same reason, as for any bad clip, and
    provenance and the table's clip counts list them.
    """
    import soundfile as sf

    from ..audio import BAD_AUDIO_POLICIES, bad_clips_message, decode_problem
    from ..errors import AudioDecodeError

    if on_bad_audio not in BAD_AUDIO_POLICIES:
        raise ConfigError(f"on_bad_audio={on_bad_audio!r}; allowed {BAD_AUDIO_POLICIES}")
    bad = []
    for path in paths:
        try:
            info = sf.info(str(path))
            if info.frames <= 0:
                bad.append(AudioDecodeError(path, "no audio frames"))
        except (sf.LibsndfileError, RuntimeError, ValueError) as error:
            bad.append(AudioDecodeError(path, decode_problem(path, error)))
    if bad and on_bad_audio == "error":
        raise AudioDecodeError(bad[0].path, bad_clips_message(bad, what="the dataset's audio"))
    for error in bad:
        print(f"undecodable, its clips will be excluded: {error}", flush=True)
    return [{"path": error.path, "reason": error.problem} for error in bad]


def mirdata_report(loader):
    """Validate a mirdata loader's local files against its index, without raising.

    Returns ``{"missing": [...], "invalid": [...], "message": str}``: the
    files the index lists that are absent, and those whose md5 differs (e.g.
    truncated copies), each as ``"<track_id>: <path>"``.
    """
    missing, invalid = loader.validate(verbose=False)

    def flatten(found):
        out = []
        for group in found.values():
            for track_id, paths in (group or {}).items():
                out.extend(f"{track_id}: {path}" for path in paths)
        return sorted(out)

    report = {"missing": flatten(missing), "invalid": flatten(invalid)}
    lines = [f"mirdata {loader.name} under {loader.data_home}:"]
    lines += [f"  missing        {m}" for m in report["missing"]]
    lines += [f"  md5 mismatch   {m}" for m in report["invalid"]]
    if len(lines) == 1:
        lines.append("  every indexed file is present and matches its md5")
    report["message"] = "\n".join(lines)
    return report


def verify_param(what):
    """The ``verify`` param of a paper dataset; ``what`` says what ``strict`` needs."""
    return {
        "description": f"strict: {what}, verified; present: the verified clips present "
        "(data_home only), labelled a subset",
        "enum": ["strict", "present"],
        "default": "strict",
    }


def check_present_is_local(dataset):
    """ConfigError when ``verify: present`` is asked for without a local copy."""
    if dataset.params.get("verify") == "present" and dataset.data_home is None:
        raise ConfigError(
            f"dataset {dataset.name!r} ({dataset.kind}): verify: present runs on the files of "
            f"a local copy; set data_home to the folder holding {dataset.subdir}/"
        )


def verify_schema(what, properties=None):
    """The params schema of a paper dataset: ``properties`` and its ``verify`` param
    (:func:`verify_param`)."""
    return params_schema({**(properties or {}), "verify": verify_param(what)})


class VerifiedDataset(RemoteDataset):
    """A paper dataset with the ``verify`` param (:func:`verify_schema`): ``strict``
    gives all of :attr:`split_sizes`; ``present`` the verified clips of a local copy
    (:func:`check_present_is_local`), counted by :meth:`num_present`."""

    #: ``{split: clips}`` of the whole dataset
    split_sizes = None

    def __init__(self, *, name, params=None, data_home=None):
        super().__init__(name=name, params=params, data_home=data_home)
        check_present_is_local(self)

    def num_clips(self):
        if self.params["verify"] == "strict":
            return sum(self.split_sizes.values())
        return self.num_present()

    def num_present(self):
        """The clips ``verify: present`` runs on (read when the workflow is parsed)."""
        raise NotImplementedError


def subset_label(n_clips, n_total):
    """How a run on part of a dataset is labelled in its prepare record, provenance and table."""
    return f"subset ({n_clips} of {n_total} clips)"
