"""Checkpoint files of the PyTorch convnet extractors (CLMR, Choi et al., Won et al.).

``weights`` is a local path or an ``http(s)://`` URL; ``sha256`` is its
required checksum, and the checksum is the file's identity. A checkpoint is
looked for, in this order (:func:`resolve_weights`):

1. ``weights`` itself, when it is a local file (verified in place);
2. the content-addressed cache: ``<cache_dir>/sha256/<digest>`` (default
   ``cache_dir``: ``~/.cache/mirprobe/weights``);
3. the *weights folders*: the config's top-level ``weights_dir`` (set for a
   run with :func:`weights_dirs`) and the ``MIRPROBE_WEIGHTS_DIR``
   environment variable (folders separated by ``os.pathsep``), searched
   recursively for a file with that digest, whatever its name or place (a
   file of the wrong size, where the size is known, is not read). Digests of
   the files seen are kept in ``<cache_dir>/weights_dir_index.json`` by path,
   size and mtime, so a folder is hashed once. A file found there is used in
   place, not copied: an offline machine or a cluster node only needs the
   files somewhere under a folder it names;
4. a URL is downloaded with :mod:`mirprobe.download` (resumable, verified,
   under a lock) into ``<cache_dir>/sha256/<digest>``, with a sidecar
   ``<digest>.json`` naming the URL and file name.

The file is read with ``torch.load(..., weights_only=True)`` (tensors and
plain containers only; no code runs from a checkpoint) or, for an extractor
that reads Keras HDF5 files too, by its own reader when the file starts with
the HDF5 signature (:func:`build_with_weights`). Either way the state is mapped
strictly (:func:`check_fits`: every key used, none missing, every shape
checked). Every failure is a :class:`~mirprobe.errors.ModelError` naming the
file, or, when nothing was found, the digest and every place searched.
"""

import contextlib
import contextvars
import json
import os
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ConfigError, DataError, ModelError

DEFAULT_CACHE = "~/.cache/mirprobe/weights"
#: folders (os.pathsep-separated) searched for checkpoints by digest
WEIGHTS_DIR_ENV = "MIRPROBE_WEIGHTS_DIR"
INDEX_NAME = "weights_dir_index.json"
#: the first bytes of every HDF5 file (Keras checkpoints)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: the run's configured weights folders (the config's ``weights_dir``)
_configured_dirs = contextvars.ContextVar("mirprobe_weights_dirs", default=())

WEIGHTS_PARAMS = {
    "weights": {
        "type": ["string", "null"],
        "default": None,
        "description": "Checkpoint: local path or http(s) URL (required unless random_weights).",
    },
    "sha256": {
        "type": ["string", "null"],
        "pattern": "^[0-9a-fA-F]{64}$",
        "default": None,
        "description": "sha256 of the checkpoint file (required with weights).",
    },
    "cache_dir": {
        "type": "string",
        "default": DEFAULT_CACHE,
        "description": "Where downloaded checkpoints are kept (content-addressed: "
        "sha256/<digest>).",
    },
    "random_weights": {
        "type": "boolean",
        "default": False,
        "description": "Seeded random initialisation instead of a checkpoint (a baseline; "
        "label it 'random weights').",
    },
    "seed": {
        "type": "integer",
        "default": 0,
        "description": "Seed of the random initialisation (random_weights only).",
    },
}


def with_published(params, published, key):
    """``(params, size)``: where ``params`` name no ``weights`` (and not
    ``random_weights``), ``params`` with the URL and sha256 of ``published[key]``
    (``(url, sha256, size in bytes)``) filled in, and that size; else ``params`` and None."""
    if params["weights"] is not None or params["random_weights"]:
        return params, None
    url, sha256, size = published[key]
    return {**params, "weights": url, "sha256": sha256}, size


def check_weights_params(name, params):
    """ConfigError unless a checkpoint and its checksum are given (or random weights)."""
    if params["random_weights"]:
        return
    if not params["weights"] or not params["sha256"]:
        raise ConfigError(
            f"extractor {name!r}: give params weights (a checkpoint path or URL) and its "
            "sha256, or set random_weights: true"
        )


@contextlib.contextmanager
def weights_dirs(dirs):
    """Search ``dirs`` (the config's ``weights_dir``) for checkpoints within the block."""
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    token = _configured_dirs.set(tuple(str(d) for d in dirs or ()))
    try:
        yield
    finally:
        _configured_dirs.reset(token)


def search_dirs():
    """The weights folders in effect: the configured ones, then ``MIRPROBE_WEIGHTS_DIR``'s."""
    from_env = [d for d in os.environ.get(WEIGHTS_DIR_ENV, "").split(os.pathsep) if d]
    dirs = []
    for folder in [*_configured_dirs.get(), *from_env]:
        path = Path(os.path.expanduser(folder))
        if path not in dirs:
            dirs.append(path)
    return dirs


def _read_index(path):
    try:
        with open(path) as handle:
            index = json.load(handle)
        return index if isinstance(index, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_index(path, index):
    from ..atomic import write_json

    # a read-only cache only costs re-hashing next time
    with contextlib.suppress(OSError):
        write_json(path, index)


def find_by_digest(sha256, dirs, *, index_path, file_name=None, size=None):
    """A file under one of ``dirs`` (recursively) whose sha256 is ``sha256``, or None.

    Files named ``file_name`` are tried first; where ``size`` is known, files of
    another size are skipped unread. Digests are remembered in ``index_path``
    (keyed by absolute path, valid while size and mtime are unchanged).
    """
    from ..download import file_checksum

    sha256 = sha256.lower()
    candidates = []
    for folder in dirs:
        if not folder.is_dir():
            raise ModelError(
                f"weights folder {folder} (config weights_dir or ${WEIGHTS_DIR_ENV}) does not "
                "exist or is not a folder"
            )
        for root, _, files in os.walk(folder):
            candidates.extend(Path(root) / f for f in sorted(files))
    candidates.sort(key=lambda p: p.name != file_name)  # stable: named files first
    index = _read_index(index_path)
    changed, found = False, None
    for path in candidates:
        try:
            stat = path.stat()
        except OSError:
            continue
        if size is not None and stat.st_size != size:
            continue
        key = str(path.resolve())
        entry = index.get(key)
        if entry and entry[:2] == [stat.st_size, stat.st_mtime_ns]:
            digest = entry[2]
        else:
            try:
                digest = file_checksum(path)
            except OSError:
                continue
            index[key] = [stat.st_size, stat.st_mtime_ns, digest]
            changed = True
        if digest == sha256:
            found = path
            break
    if changed:
        _write_index(index_path, index)
    return found


def resolve_weights(*, name, weights, sha256, cache_dir=DEFAULT_CACHE, size=None):
    """The verified local path of a checkpoint: ``weights`` if it is a local file, else
    the cache, the weights folders, or a download of the URL (module docstring)."""
    from ..download import Remote, fetch, verify_file

    sha256 = sha256.lower()
    is_url = urlparse(weights).scheme in ("http", "https")
    cache = Path(os.path.expanduser(cache_dir))
    cached = cache / "sha256" / sha256
    file_name = Path(urlparse(weights).path if is_url else weights).name or None
    try:
        if not is_url:
            path = Path(os.path.expanduser(weights))
            if path.exists():
                verify_file(path, sha256)
                return path
        if cached.is_file():
            verify_file(cached, sha256)
            return cached
        dirs = search_dirs()
        found = find_by_digest(
            sha256, dirs, index_path=cache / INDEX_NAME, file_name=file_name, size=size
        )
        if found is not None:
            verify_file(found, sha256)  # the index may be stale in ways mtime misses
            return found
        if not is_url:
            searched = ", ".join(str(d) for d in dirs) or "none set"
            raise ModelError(
                f"{name} weights {weights}: file not found, and no file with sha256 {sha256} "
                f"in {cached} or the weights folders ({searched}; config weights_dir, "
                f"${WEIGHTS_DIR_ENV})"
            )
        remote = Remote(
            key=f"{name}_weights", path=f"sha256/{sha256}", checksum=sha256, urls=(weights,)
        )
        path = fetch(remote, root=cache)
        _write_sidecar(cached, url=weights, file_name=file_name)
        return path
    except DataError as error:
        raise ModelError(f"{name} weights: {error}") from error


def _write_sidecar(cached, *, url, file_name):
    from ..atomic import write_json

    sidecar = cached.with_name(cached.name + ".json")
    if not sidecar.exists():
        with contextlib.suppress(OSError):
            write_json(sidecar, {"url": url, "file_name": file_name})


def load_checkpoint(path, *, name):
    """``torch.load(path, weights_only=True)`` with a ModelError naming the file."""
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise ModelError(
            f"{name} weights {path}: not a checkpoint that torch.load(weights_only=True) can "
            f"read ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
            "re-save its state_dict with torch.save"
        ) from error


def check_fits(shapes, found, *, name, path, what):
    """ModelError unless ``found`` (``{key: array}``) holds exactly the keys of
    ``shapes`` (``{key: shape tuple}``), each of its shape; the message names the
    file, ``what`` it is not, and the first few keys missing, unexpected or misshapen."""
    missing = sorted(set(shapes) - set(found))
    unexpected = sorted(set(found) - set(shapes))
    bad_shapes = [
        f"{k}: {tuple(found[k].shape)} != {shape}"
        for k, shape in shapes.items()
        if k in found and tuple(found[k].shape) != shape
    ]
    if missing or unexpected or bad_shapes:
        raise ModelError(
            f"{name} weights {path}: {what}; missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatches {bad_shapes[:5]}"
        )


def load_into(module, state_dict, *, name, path):
    """``module.load_state_dict(strict=True)``, with missing/unexpected keys named."""
    shapes = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    check_fits(shapes, state_dict, name=name, path=path, what="does not fit the architecture")
    module.load_state_dict(state_dict, strict=True)
    return module


def is_hdf5(path):
    """Whether the file at ``path`` starts with the HDF5 signature."""
    with open(path, "rb") as handle:
        return handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE


def build_with_weights(*, name, params, build, to_state_dict=None, size=None, read_hdf5=None):
    """``build()`` seeded with ``params["seed"]``; unless ``params["random_weights"]``,
    the checksum-verified checkpoint ``params["weights"]`` is loaded into it
    (``to_state_dict`` maps a torch checkpoint's layout to the module's keys; ``size``,
    its size in bytes where published, spares reading other files of the weights
    folders). With ``read_hdf5``, an HDF5 file is read by ``read_hdf5(path, model)``
    into the module's state dict instead of by ``torch.load``."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(params["seed"])
        model = build()
    if not params["random_weights"]:
        path = resolve_weights(
            name=name,
            weights=params["weights"],
            sha256=params["sha256"],
            cache_dir=params["cache_dir"],
            size=size,
        )
        if read_hdf5 is not None and is_hdf5(path):
            state = read_hdf5(path, model)
        else:
            state = load_checkpoint(path, name=name)
            if to_state_dict is not None:
                state = to_state_dict(state)
        load_into(model, state, name=name, path=path)
    return model
