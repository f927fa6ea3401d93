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
samples out); a tail shorter than a frame is dropped, and the clip
embedding is the mean of its frames' 512-d vectors (layer ``encoder``).
jukemir raises on a clip of one frame or less; here a clip shorter than
one frame is zero-padded to one (it also drops a last frame that happens
to be complete, which real clip lengths almost never hit; here it counts).

Weights (see :mod:`mirprobe.extractors.torch_weights`): ``weights`` +
``sha256`` name a checkpoint in one of CLMR's formats, read with
``weights_only=True``: a PyTorch Lightning checkpoint (``state_dict`` with
``model.encoder.*`` keys, as CLMR 2.x trains), a SimCLR state dict
(``encoder.*`` keys, CLMR 1.x), or a bare SampleCNN state dict. ``fc.*``
and projector keys are ignored. The published checkpoints are on the CLMR
GitHub releases page, zipped: CALM used
``clmr_magnatagatune_mlp/clmr_epoch=10000.ckpt`` from
``https://github.com/Spijkervet/CLMR/releases/download/2.1/clmr_magnatagatune_mlp.zip``
(jukemir's ``clmr.dockerfile``); unzip it and point ``weights`` at that
file with its sha256 (no digest of it is published, so there is no default). ``random_weights: true`` gives the
seeded random-initialisation baseline.
"""

import numpy as np

from .base import Extractor, mono_float32
from .torch_weights import WEIGHTS_PARAMS, build_with_weights, check_weights_params

SAMPLE_RATE = 22050
#: jukemir's frame length (SampleCNN's input is 3^10 = 59,049; see above)
FRAME = 59409
HIDDEN = [128, 128, 256, 256, 256, 256, 256, 256, 512]


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
    sample_rate = SAMPLE_RATE
    min_input_samples = 1  # any clip: a shorter one is zero-padded to one frame (see above)
    wants_gpu = True
    default_layers = ("encoder",)
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **WEIGHTS_PARAMS,
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
        check_weights_params(self.name, self.params)
        self.model = None

    def load(self, *, device="cpu", dtype=None):
        model = build_with_weights(
            name=self.name,
            params=self.params,
            build=build_sample_cnn,
            to_state_dict=encoder_state_dict,
        )
        self.device = str(device)
        self.model = model.eval().to(self.device)
        return self

    def frames(self, y):
        """``(n_frames, FRAME)`` non-overlapping frames of one clip."""
        y = mono_float32(y)
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
