"""Choi et al.'s convnet tagger features ("Transfer learning for music
classification and regression tasks", ISMIR 2017; architecture of the
FCN taggers of Choi, Fazekas & Sandler, ISMIR 2016).

Input: 12 kHz mono audio, 29 s windows -> mel spectrogram (STFT n_fft 512,
hop 256, Hann, centred; 96 mel bands from ``librosa.filters.mel``; power 2)
-> decibels ``10 log10(max(power, 1e-10))`` -> each mel band standardised
over time (the original's kapre ``Normalization2D(str_axis='freq')`` pools
its statistics over the batch too; here they are per window, so a clip's
features never depend on its batch). A 29 s window is 96 x 1360 frames.

Convnet: five blocks of ``Conv2d(3x3, 32 maps, same padding)`` +
BatchNorm + ELU + ``MaxPool2d`` with pool sizes (2,4), (4,4), (4,5), (2,4),
(4,4) (frequency, time), as in the paper; pooling uses ``ceil_mode`` (like
Keras 'same' pooling) so that the last two fit the 3-band map. The feature
of Choi 2017 (and of CALM) is the global average of each block's output,
concatenated: layer ``all`` (160-d, default); ``layer1`` .. ``layer5`` are
each block's 32-d average. The tagging head is not part of the model.

Windows: a clip is cut into consecutive non-overlapping 29 s windows; a
tail shorter than ``min_tail_seconds`` is dropped unless it is the whole
clip; shorter windows run as they are (the convnet is fully convolutional).
The clip's embedding is the mean over its windows.

Weights (see :mod:`mirprobe.extractors.torch_weights`): ``weights`` +
``sha256`` name a ``torch.save``'d ``state_dict`` of this module
(``blocks.<i>.{0,1}.*``). The original weights are Keras/Theano HDF5
files (keunwoochoi/transfer_learning_music) and need converting to that
layout first (not done here). ``random_weights: true`` is the seeded
random-initialisation baseline.
"""

import numpy as np

from ..errors import DataError
from .base import Extractor
from .torch_weights import WEIGHTS_PARAMS, build_with_weights, check_weights_params

SAMPLE_RATE = 12000
N_FFT = 512
HOP = 256
N_MELS = 96
WINDOW_SECONDS = 29.0
POOLINGS = [(2, 4), (4, 4), (4, 5), (2, 4), (4, 4)]
N_MAPS = 32


def build_choi_convnet():
    """The five-block convnet; ``forward`` returns each block's output."""
    import librosa
    import torch
    from torch import nn

    mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS)

    class ChoiConvnet(nn.Module):
        def __init__(self):
            super().__init__()
            blocks, channels = [], 1
            for pool in POOLINGS:
                blocks.append(
                    nn.Sequential(
                        nn.Conv2d(channels, N_MAPS, 3, padding=1),
                        nn.BatchNorm2d(N_MAPS),
                        nn.ELU(),
                        nn.MaxPool2d(pool, ceil_mode=True),
                    )
                )
                channels = N_MAPS
            self.blocks = nn.ModuleList(blocks)
            self.register_buffer("mel_basis", torch.from_numpy(mel), persistent=False)
            self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

        def log_mel(self, audio):
            """``(B, samples)`` -> ``(B, 1, 96, frames)`` standardised dB mel."""
            spec = torch.stft(
                audio, N_FFT, HOP, window=self.window, center=True, return_complex=True
            )
            mel = self.mel_basis @ spec.abs().pow(2)
            db = 10 * torch.log10(mel.clamp_min(1e-10))
            db = (db - db.mean(-1, keepdim=True)) / (db.std(-1, keepdim=True) + 1e-5)
            return db[:, None]

        def forward(self, audio):
            x = self.log_mel(audio)
            outputs = []
            for block in self.blocks:
                x = block(x)
                outputs.append(x)
            return outputs

    return ChoiConvnet()


class Choi(Extractor):
    """Choi et al. 2017 convnet features (see the module docstring)."""

    name = "choi"
    sample_rate = SAMPLE_RATE
    wants_gpu = True
    default_layers = ("all",)
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **WEIGHTS_PARAMS,
            "min_tail_seconds": {
                "type": "number",
                "minimum": 0,
                "default": 1.0,
                "description": "A last window shorter than this is dropped (unless it is the "
                "whole clip).",
            },
        },
    }

    def __init__(self, *, params=None):
        super().__init__(params=params)
        defaults = {k: spec["default"] for k, spec in self.params_schema["properties"].items()}
        self.params = defaults | self.params
        check_weights_params(self.name, self.params)
        self.model = None

    @classmethod
    def available_layers(cls, params):
        return ("all", *(f"layer{i}" for i in range(1, len(POOLINGS) + 1)))

    def load(self, *, device="cpu", dtype=None):
        model = build_with_weights(name=self.name, params=self.params, build=build_choi_convnet)
        self.device = str(device)
        self.model = model.eval().to(self.device)
        return self

    def windows(self, y):
        from .musicgen import window_spans

        y = np.asarray(y, dtype=np.float32)
        if y.ndim != 1 or y.size == 0:
            raise DataError(f"expected non-empty mono audio (1-d array), got shape {y.shape}")
        spans = window_spans(
            y.size,
            window=int(WINDOW_SECONDS * SAMPLE_RATE),
            min_tail=int(self.params["min_tail_seconds"] * SAMPLE_RATE),
        )
        return [y[a:b] for a, b in spans]

    def embed(self, batch, *, layers=("all",)):
        import torch

        layers = self.check_layers(layers)
        if self.model is None:
            self.load(device=self.device)
        pooled = []
        with torch.inference_mode():
            for y in batch:
                per_window = []
                for window in self.windows(y):
                    x = torch.from_numpy(window)[None].to(self.device)
                    maps = self.model(x)
                    per_window.append(torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1))
                pooled.append(torch.cat(per_window).mean(0).float().cpu().numpy())
        features = np.stack(pooled).astype(np.float32)
        out = {"all": features}
        for i in range(len(POOLINGS)):
            out[f"layer{i + 1}"] = features[:, i * N_MAPS : (i + 1) * N_MAPS]
        return {layer: np.ascontiguousarray(out[layer]) for layer in layers}
