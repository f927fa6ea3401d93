"""Checkpoint files of the PyTorch convnet extractors (CLMR, Choi et al.).

``weights`` is a local path or an ``http(s)://`` URL; ``sha256`` is its
required checksum. A URL is fetched once with :mod:`mirprobe.download`
(resumable, verified) into ``cache_dir`` (default
``~/.cache/mirprobe/weights``) under ``<sha256[:12]>-<file name>``; a local
file is verified in place. The file is read with
``torch.load(..., weights_only=True)`` (tensors and plain containers only;
no code runs from a checkpoint). Every failure is a
:class:`~mirprobe.errors.ModelError` naming the file.
"""

import os
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ConfigError, DataError, ModelError

DEFAULT_CACHE = "~/.cache/mirprobe/weights"

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
        "description": "Where downloaded checkpoints are kept.",
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


def check_weights_params(name, params):
    """ConfigError unless a checkpoint and its checksum are given (or random weights)."""
    if params["random_weights"]:
        return
    if not params["weights"] or not params["sha256"]:
        raise ConfigError(
            f"extractor {name!r}: give params weights (a checkpoint path or URL) and its "
            "sha256, or set random_weights: true"
        )


def resolve_weights(*, name, weights, sha256, cache_dir=DEFAULT_CACHE):
    """The verified local path of a checkpoint (downloading a URL once)."""
    from ..download import Remote, fetch, verify_file

    try:
        if urlparse(weights).scheme in ("http", "https"):
            file_name = Path(urlparse(weights).path).name or "weights.pt"
            remote = Remote(
                key=f"{name}_weights",
                path=f"{sha256.lower()[:12]}-{file_name}",
                checksum=sha256,
                urls=(weights,),
            )
            return fetch(remote, root=Path(os.path.expanduser(cache_dir)))
        path = Path(os.path.expanduser(weights))
        verify_file(path, sha256)
        return path
    except DataError as error:
        raise ModelError(f"{name} weights: {error}") from error


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


def load_into(module, state_dict, *, name, path):
    """``module.load_state_dict(strict=True)``, with missing/unexpected keys named."""
    missing, unexpected = [], []
    own = module.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    bad_shapes = [
        f"{k}: {tuple(state_dict[k].shape)} != {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or bad_shapes:
        raise ModelError(
            f"{name} weights {path}: does not fit the architecture; missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatches {bad_shapes[:5]}"
        )
    module.load_state_dict(state_dict, strict=True)
    return module


def build_with_weights(*, name, params, build, to_state_dict=None):
    """``build()`` seeded with ``params["seed"]``; unless ``params["random_weights"]``,
    the checksum-verified checkpoint ``params["weights"]`` is loaded into it
    (``to_state_dict`` maps a checkpoint's layout to the module's keys)."""
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
        )
        state = load_checkpoint(path, name=name)
        if to_state_dict is not None:
            state = to_state_dict(state)
        load_into(model, state, name=name, path=path)
    return model
