"""CLMR: the SampleCNN encoder of Spijkervet & Burgoyne (2021), contrastive pre-training.

Architecture (Spijkervet/CLMR ``clmr/models/sample_cnn.py``, ``strides =
[3] * 9``): raw 22,050 Hz waveform frames of 3^10 = 59,049 samples ->
``Conv1d(1, 128, 3, stride 3)`` + BatchNorm + ReLU; nine blocks
``Conv1d(k=3, padding 1)`` + BatchNorm + ReLU + ``MaxPool1d(3)`` with
128, 128, 256, 256, 256, 256, 256, 256, 512 channels; then
``Conv1d(512, 512, 3, padding 1)`` + BatchNorm + ReLU, leaving 512 x 1.
CLMR removes the classifier head (``encoder.fc = Identity``): the
representation is that 512-d vector.

Pooling, as CALM extracts CLMR (p-lambda/jukemir
``representations/clmr/main.py``): a clip is cut into consecutive
non-overlapping frames of ``FRAME_LENGTH = 59,409`` samples (2.69 s;
jukemir's constant, 360 samples more than SampleCNN's 3^10 input: the
encoder still ends at 512 x 1, its floor pooling leaving each frame's last
samples out), and the clip embedding is the mean of its frames' 512-d
vectors (layer ``encoder``). Which frames count is ``frame_rule``:

``jukemir`` (``configs/paper.yaml``)
    jukemir's ``torch.split(audio, FRAME_LENGTH)[:-1]``: the last frame is
    always dropped, complete or not, and a clip of one frame or less
    (at most 59,409 samples) is a DataError, as jukemir raises on it.
``complete`` (default)
    only an incomplete last frame is dropped; a clip shorter than one frame
    is zero-padded to one.

Weights (see :mod:`mirprobe.extractors.torch_weights`): a checkpoint in one
of CLMR's formats, read with ``weights_only=True``: a PyTorch Lightning
checkpoint (``state_dict`` with ``model.encoder.*`` keys, as CLMR 2.x
trains), a SimCLR state dict (``encoder.*`` keys, CLMR 1.x), or a bare
SampleCNN state dict. ``fc.*`` and projector keys are ignored. By default
``weights`` is CALM's checkpoint, the zip on CLMR's GitHub release
(``DEFAULT_WEIGHTS``, jukemir's ``clmr.dockerfile``), and ``zip_member``
the file in it (``clmr_magnatagatune_mlp/clmr_epoch=10000.ckpt``), read
from the verified zip. ``sha256`` (of the file ``weights`` names, the zip
by default) stays required: no digest of it is published. Without it,
loading downloads the file into ``cache_dir`` unverified and fails with a
ModelError giving its sha256 and the key to set, to be pinned after
checking the file by other means. ``random_weights: true`` gives the
seeded random-initialisation baseline.
"""

import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from ..errors import ConfigError, DataError, ModelError
from .base import Extractor, mono_float32
from .torch_weights import (
    WEIGHTS_PARAMS,
    build_with_weights,
    load_checkpoint,
    load_into,
    resolve_weights,
)

SAMPLE_RATE = 22050
#: jukemir's frame length (SampleCNN's input is 3^10 = 59,049; see above)
FRAME = 59409
HIDDEN = [128, 128, 256, 256, 256, 256, 256, 256, 512]
#: CALM's checkpoint (jukemir's clmr.dockerfile) and the file inside the zip
DEFAULT_WEIGHTS = (
    "https://github.com/Spijkervet/CLMR/releases/download/2.1/clmr_magnatagatune_mlp.zip"
)
DEFAULT_ZIP_MEMBER = "clmr_magnatagatune_mlp/clmr_epoch=10000.ckpt"
FRAME_RULES = ("complete", "jukemir")


def build_sample_cnn(*, strides=(3,) * 9):
    """The SampleCNN encoder (no classifier head) as ``torch.nn.Sequential``."""
    from torch import nn

    blocks = [nn.Sequential(nn.Conv1d(1, 128, 3, stride=3), nn.BatchNorm1d(128), nn.ReLU())]
    channels = [128, *HIDDEN]
    for stride, h_in, h_out in zip(strides, channels[:-1], channels[1:], strict=True):
        blocks.append(
            nn.Sequential(
                nn.Conv1d(h_in, h_out, stride, stride=1, padding=1),
                nn.BatchNorm1d(h_out),
                nn.ReLU(),
                nn.MaxPool1d(stride, stride=stride),
            )
        )
    blocks.append(nn.Sequential(nn.Conv1d(512, 512, 3, padding=1), nn.BatchNorm1d(512), nn.ReLU()))
    return nn.Sequential(*blocks)


def encoder_state_dict(checkpoint):
    """SampleCNN ``sequential.*`` weights of a CLMR checkpoint (any of its formats)."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else {}
    for prefix in ("model.encoder.", "encoder.", ""):
        picked = {
            k[len(prefix) :]: v
            for k, v in state.items()
            if k.startswith(prefix) and k[len(prefix) :].startswith("sequential.")
        }
        if picked:
            return {k[len("sequential.") :]: v for k, v in picked.items()}
    return {}


class CLMR(Extractor):
    """CLMR SampleCNN encoder, frame-averaged (see the module docstring)."""

    name = "clmr"
    conda_env = "torch.yaml"
    packages = ("torch",)
    sample_rate = SAMPLE_RATE
    min_input_samples = 1  # any clip: a shorter one is zero-padded to one frame (see above)
    wants_gpu = True
    default_layers = ("encoder",)
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **WEIGHTS_PARAMS,
            "weights": {
                **WEIGHTS_PARAMS["weights"],
                "default": DEFAULT_WEIGHTS,
                "description": "Checkpoint (or a zip holding it, see zip_member): local path or "
                "http(s) URL; default CALM's, CLMR's 2.1 release.",
            },
            "sha256": {
                **WEIGHTS_PARAMS["sha256"],
                "description": "sha256 of the file weights names (none is published: without "
                "it, loading fails giving the downloaded file's digest).",
            },
            "zip_member": {
                "type": ["string", "null"],
                "default": DEFAULT_ZIP_MEMBER,
                "description": "The checkpoint's path inside weights when that is a zip "
                "(ignored otherwise).",
            },
            "frame_rule": {
                "type": "string",
                "enum": list(FRAME_RULES),
                "default": "complete",
                "description": "jukemir = always drop the last frame and reject clips of one "
                "frame or less (CALM's code); complete = drop only an incomplete last frame.",
            },
            "frame_batch": {
                "type": "integer",
                "minimum": 1,
                "default": 16,
                "description": "Frames run through the encoder at once.",
            },
        },
    }

    def __init__(self, *, params=None):
        super().__init__(params=params)
        if not self.params["random_weights"] and not self.params["weights"]:
            raise ConfigError(
                "extractor 'clmr': give params weights (a checkpoint path or URL) and its "
                "sha256, or set random_weights: true"
            )
        self.model = None

    def load(self, *, device="cpu", dtype=None):
        params = self.params
        if params["random_weights"] or not _is_zip_name(params["weights"]):
            if not params["random_weights"] and not params["sha256"]:
                raise ModelError(_missing_sha256(params))
            model = build_with_weights(
                name=self.name,
                params=params,
                build=build_sample_cnn,
                to_state_dict=encoder_state_dict,
            )
        else:
            model = self._from_zip()
        self.device = str(device)
        self.model = model.eval().to(self.device)
        return self

    def _from_zip(self):
        """SampleCNN with the encoder of ``zip_member`` inside the verified zip ``weights``."""
        import zipfile

        import torch

        params = self.params
        if not params["sha256"]:
            raise ModelError(_missing_sha256(params))
        archive = resolve_weights(
            name=self.name,
            weights=params["weights"],
            sha256=params["sha256"],
            cache_dir=params["cache_dir"],
        )
        member = params["zip_member"]
        if not member:
            raise ConfigError(f"clmr: {archive} is a zip; set params zip_member to the checkpoint")
        # unpacked once beside the verified zip (the zip's digest vouches for it)
        path = archive.with_name(f"{archive.name}.d") / member
        if not path.is_file():
            from ..atomic import atomic_path

            try:
                with zipfile.ZipFile(archive) as zipped, atomic_path(path) as tmp:
                    tmp.write_bytes(zipped.read(member))
            except KeyError:
                raise ModelError(f"clmr weights {archive}: no member {member!r}") from None
            except zipfile.BadZipFile as error:
                raise ModelError(f"clmr weights {archive}: not a zip ({error})") from error
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(params["seed"])
            model = build_sample_cnn()
        state = encoder_state_dict(load_checkpoint(path, name=self.name))
        return load_into(model, state, name=self.name, path=path)

    def frames(self, y):
        """``(n_frames, FRAME)`` non-overlapping frames of one clip (see ``frame_rule``)."""
        y = mono_float32(y)
        if self.params["frame_rule"] == "jukemir":
            # torch.split(audio, FRAME) without its last piece, complete or not
            if y.size <= FRAME:
                raise DataError(
                    f"clmr: a clip of {y.size} samples is one frame ({FRAME} samples) or less; "
                    "jukemir's frame rule (frame_rule: jukemir) drops the last frame, so it "
                    "needs more"
                )
            n = (y.size - 1) // FRAME
            return y[: n * FRAME].reshape(n, FRAME)
        if y.size < FRAME:
            y = np.pad(y, (0, FRAME - y.size))
        n = y.size // FRAME
        return y[: n * FRAME].reshape(n, FRAME)

    def embed(self, batch, *, layers=("encoder",)):
        import torch

        layers = self.check_layers(layers)
        if self.model is None:
            self.load(device=self.device)
        per_clip = [self.frames(y) for y in batch]
        stacked = np.concatenate(per_clip)
        outputs = []
        step = self.params["frame_batch"]
        with torch.inference_mode():
            for start in range(0, len(stacked), step):
                x = torch.from_numpy(stacked[start : start + step]).to(self.device)
                outputs.append(self.model(x[:, None, :]).flatten(1).float().cpu().numpy())
        features = np.concatenate(outputs)
        bounds = np.cumsum([0] + [len(f) for f in per_clip])
        pooled = np.stack(
            [features[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        )
        return {"encoder": pooled.astype(np.float32)}


def _is_zip_name(weights):
    return Path(urlparse(weights).path if "://" in weights else weights).suffix.lower() == ".zip"


def _missing_sha256(params):
    """The error for weights without sha256: the file's digest (downloading a URL once,
    unverified) and where to set it."""
    weights = params["weights"]
    if urlparse(weights).scheme in ("http", "https"):
        path = _download_unverified(weights, Path(os.path.expanduser(params["cache_dir"])))
    else:
        path = Path(os.path.expanduser(weights))
        if not path.is_file():
            return f"clmr weights {path}: file not found, and no sha256 is set"
    from ..download import file_checksum

    return (
        f"clmr weights: no sha256 is set (none is published for {weights}); {path} has sha256 "
        f"{file_checksum(path)}. Check the file by other means, then set it as this "
        "representation's params: sha256 in the config"
    )


def _download_unverified(url, cache_dir):
    """``url`` into ``cache_dir/unverified-<name>`` (once), to report its digest."""
    import shutil
    import urllib.error
    import urllib.request

    from ..atomic import atomic_path

    path = cache_dir / f"unverified-{Path(urlparse(url).path).name or 'weights'}"
    if not path.is_file():
        try:
            with urllib.request.urlopen(url, timeout=60) as response, atomic_path(path) as tmp:  # noqa: S310
                with open(tmp, "wb") as handle:
                    shutil.copyfileobj(response, handle)
        except (urllib.error.URLError, OSError) as error:
            raise ModelError(
                f"clmr weights: no sha256 is set, and {url} could not be downloaded to give "
                f"its digest ({error})"
            ) from error
    return path
