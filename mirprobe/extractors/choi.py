"""Choi et al.'s convnet tagger features ("Transfer learning for music
classification and regression tasks", ISMIR 2017), as CALM extracts them.

Reference code: keunwoochoi/transfer_learning_music (``models_transfer.py``
``raw_vgg`` with ``tf_type='melgram'``, ``n_mels=96``, ``decibel=True``,
``normalize='no'``, ``fmin=0``, ``fmax=6000``) and p-lambda/jukemir
``representations/choi/main.py`` (CALM's extraction), which this module
follows:

* **Audio**: 12 kHz mono, the clip's first 29 s (348,000 samples), one
  window per clip. A shorter clip is tiled (repeated) and trimmed to 29 s,
  jukemir's ``_load_audio`` default; ``short_clips: zero_pad`` pads with
  zeros instead (Choi's ``easy_feature_extraction.py``).
* **Mel spectrogram** (kapre ``Melspectrogram``): STFT with n_fft 512, hop
  256 (Hann, centred here), power 2, 96 mel bands (``librosa.filters.mel``,
  0-6 kHz), a 96 x 1360 map per clip; decibels as kapre's
  ``amplitude_to_decibel``: ``10 log10(max(power, 1e-10))`` minus the clip's
  maximum, floored at -80 dB (that function as kapre 0.1 has it; the kapre
  revision jukemir pins, a3bde3e, could not be read here to confirm it). No
  further normalisation (``normalize='no'``).
* **Convnet**: five blocks of ``Conv2d(3x3, 32 maps, same padding)`` +
  BatchNorm + ELU + ``MaxPool2d`` with the pool sizes that ``raw_vgg`` uses
  for 96 mel bands, (2,4), (3,4), (2,5), (2,4), (4,4) (frequency, time):
  96 x 1360 -> 48 x 340 -> 16 x 85 -> 8 x 17 -> 4 x 4 -> 1 x 1, Keras
  'valid' pooling (floor). (The (4,4), (4,5) pools of earlier versions of
  this module are ``raw_vgg``'s for STFT input or >= 256 mel bands.)
* **Feature**: each block's output averaged over frequency and time
  (``GlobalAveragePooling2D``; ``Flatten`` of the 1 x 1 map for the last
  block), concatenated: layer ``all`` (160-d, default, CALM's feature);
  ``layer1`` .. ``layer5`` are each block's 32-d part. The tagging head is
  not part of the model.

One known difference: the original's ``BatchNormalization(mode=2)``
(Keras 1) normalises with the statistics of the batch being predicted, so
its features depend on which clips share a batch (jukemir shuffles the
files for that reason). Here BatchNorm uses the stored running statistics,
so a clip's feature never depends on its batch. kapre's STFT (a DFT as a
1-d convolution) is replaced by ``torch.stft``.

Weights (see :mod:`mirprobe.extractors.torch_weights`): ``weights`` +
``sha256`` name a ``torch.save``'d ``state_dict`` of this module
(``blocks.<i>.{0,1}.*``). The original weights are Keras/Theano HDF5
files (keunwoochoi/transfer_learning_music ``weights_transfer/``) and need
converting to that layout first (not done here). ``random_weights: true``
is the seeded random-initialisation baseline.
"""

import numpy as np

from .base import Extractor, mono_float32
from .torch_weights import WEIGHTS_PARAMS, build_with_weights, check_weights_params

SAMPLE_RATE = 12000
N_FFT = 512
HOP = 256
N_MELS = 96
WINDOW_SECONDS = 29.0
FMAX = 6000.0
TOP_DB = 80.0
#: raw_vgg's pools for 96 mel bands (frequency, time)
POOLINGS = [(2, 4), (3, 4), (2, 5), (2, 4), (4, 4)]
N_MAPS = 32
#: clips per forward pass
CHUNK = 8


def build_choi_convnet():
    """The five-block convnet; ``forward`` returns each block's output."""
    import librosa
    import torch
    from torch import nn

    mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=0.0, fmax=FMAX)

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
                        nn.MaxPool2d(pool),
                    )
                )
                channels = N_MAPS
            self.blocks = nn.ModuleList(blocks)
            self.register_buffer("mel_basis", torch.from_numpy(mel), persistent=False)
            self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

        def log_mel(self, audio):
            """``(B, samples)`` -> ``(B, 1, 96, frames)`` dB mel, each clip's max at 0 dB."""
            spec = torch.stft(
                audio, N_FFT, HOP, window=self.window, center=True, return_complex=True
            )
            mel = self.mel_basis @ spec.abs().pow(2)
            db = 10 * torch.log10(mel.clamp_min(1e-10))
            db = db - db.amax(dim=(1, 2), keepdim=True)
            return db.clamp_min(-TOP_DB)[:, None]

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
    min_input_samples = N_FFT  # one STFT window of signal; then tiled or padded to 29 s
    wants_gpu = True
    default_layers = ("all",)
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            **WEIGHTS_PARAMS,
            "short_clips": {
                "enum": ["tile", "zero_pad"],
                "default": "tile",
                "description": "A clip shorter than 29 s is repeated and trimmed (tile, jukemir) "
                "or padded with zeros (zero_pad, Choi's easy_feature_extraction).",
            },
        },
    }

    def __init__(self, *, params=None):
        super().__init__(params=params)
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

    def window(self, y):
        """The clip's first 29 s; a shorter clip tiled or zero-padded to 29 s."""
        y = mono_float32(y)
        length = int(WINDOW_SECONDS * SAMPLE_RATE)
        if y.size >= length:
            return y[:length]
        if self.params["short_clips"] == "zero_pad":
            return np.pad(y, (0, length - y.size))
        return np.tile(y, -(-length // y.size))[:length]

    def embed(self, batch, *, layers=("all",)):
        import torch

        layers = self.check_layers(layers)
        if self.model is None:
            self.load(device=self.device)
        parts = []
        with torch.inference_mode():
            # a 29 s clip's first block holds 4 M activations: bound the memory
            for start in range(0, len(batch), CHUNK):
                windows = [self.window(y) for y in batch[start : start + CHUNK]]
                maps = self.model(torch.from_numpy(np.stack(windows)).to(self.device))
                parts.append(torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1).float().cpu())
        features = torch.cat(parts).numpy()
        out = {"all": features}
        for i in range(len(POOLINGS)):
            out[f"layer{i + 1}"] = features[:, i * N_MAPS : (i + 1) * N_MAPS]
        return {layer: np.ascontiguousarray(out[layer]) for layer in layers}
