"""Choi et al.'s convnet tagger features ("Transfer learning for music
classification and regression tasks", ISMIR 2017), as CALM extracts them.

Reference code: keunwoochoi/transfer_learning_music (``models_transfer.py``
``raw_vgg`` with ``tf_type='melgram'``, ``n_mels=96``, ``decibel=True``,
``normalize='no'``, ``fmin=0``, ``fmax=6000``, Keras 1.2.2, kapre at a3bde3e)
and p-lambda/jukemir ``representations/choi/main.py`` (CALM's extraction,
Theano backend), which this module follows:

* **Audio**: 12 kHz mono, the clip's first 29 s (348,000 samples), one
  window per clip. A shorter clip is tiled (repeated) and trimmed to 29 s,
  jukemir's ``_load_audio`` default; ``short_clips: zero_pad`` pads with
  zeros instead (Choi's ``easy_feature_extraction.py``).
* **Mel spectrogram** (kapre ``Melspectrogram``): the STFT is a strided
  convolution of the audio with 257 windowed DFT kernels of 512 samples
  (periodic Hann), hop 256, power 2, then the 257 x 96 mel matrix; the
  kernels and the matrix are the ones stored in the weights file. Under
  Theano (``kapre_backend: theano``, jukemir's and the default) Keras'
  'same' convolution pads 256 zeros on each side and *convolves* (flips the
  kernel); under TensorFlow (``tensorflow``) it pads 208 on each side and
  correlates. 1,360 frames either way. Decibels as kapre's
  ``amplitude_to_decibel`` at a3bde3e: ``10 log10(max(power, 1e-10))`` minus
  the maximum over **the whole batch tensor**, floored at -80 dB.
* **Convnet**: five blocks of ``Conv2d(3x3, 32 maps, same)`` +
  ``BatchNormalization(axis=1, mode=2)`` + ELU + ``MaxPool2d`` with
  ``raw_vgg``'s pools for 96 mel bands, (2,4), (3,4), (2,5), (2,4), (4,4):
  96 x 1360 -> 48 x 340 -> 16 x 85 -> 8 x 17 -> 4 x 4 -> 1 x 1. Keras 1's
  ``mode=2`` normalises with the mean and (biased) variance of **the batch
  being predicted**, epsilon 1e-3; the stored running statistics are 0/1.
* **Feature**: each block's output averaged over frequency and time
  (``GlobalAveragePooling2D``; ``Flatten`` of the 1 x 1 map for the last
  block), concatenated: layer ``all`` (160-d, default, CALM's feature);
  ``layer1`` .. ``layer5`` are each block's 32-d part. jukemir runs one
  model per block with ``weights_layer{i}``; those files are prefixes of
  one network (equal tensors), so one pass gives all five.

**Batches.** Because of the batch statistics and the batch maximum, a
clip's features depend on its batch-mates. ``embed(batch)`` treats the list
it is given as one batch (memory is bounded by running the convolutions in
``chunk_clips`` chunks, with the statistics accumulated over the whole
batch). In the workflow the batches are jukemir's (:func:`jukemir_batches`):
every clip of the dataset, named ``<jukemir uid>.wav``, sorted, shuffled by
Python 2's ``random.shuffle`` after ``random.seed(0)`` and cut into batches
of 256 (the last one shorter), whatever the shard size; each batch is one
feature shard (:meth:`Choi.dataset_batch_size`) and its profile records the
rule and the clips. ``batch_statistics: false`` is the batch-independent
variant: stored running statistics and each clip's own maximum.

Weights (see :mod:`mirprobe.extractors.torch_weights`): ``weights`` +
``sha256`` name the original Keras HDF5 file
(keunwoochoi/music-auto_tagging-keras ``compact_cnn/weights_tensorflow.hdf5``,
TensorFlow kernel order, :data:`DEFAULT_WEIGHTS`), read with h5py (arrays
only) and mapped strictly (every tensor used, every shape checked), or a
``torch.save``'d ``state_dict`` of this module. ``random_weights: true`` is
the seeded random-initialisation baseline (with kapre's kernels and
librosa's Slaney mel matrix).
"""

import contextlib
import random

import numpy as np

from ..errors import ModelError
from .base import Extractor, mono_float32
from .torch_weights import WEIGHTS_PARAMS, build_with_weights, check_fits, check_weights_params

SAMPLE_RATE = 12000
N_FFT = 512
HOP = 256
N_FREQS = N_FFT // 2 + 1
N_MELS = 96
WINDOW_SECONDS = 29.0
FMAX = 6000.0
AMIN = 1e-10
TOP_DB = 80.0
#: Keras 1.2's BatchNormalization default
BN_EPSILON = 1e-3
#: raw_vgg's pools for 96 mel bands (frequency, time)
POOLINGS = [(2, 4), (3, 4), (2, 5), (2, 4), (4, 4)]
N_MAPS = 32
#: jukemir's Choi batches: 256 files after random.seed(0)
JUKEMIR_BATCH = 256
JUKEMIR_SEED = 0

#: the whole convnet, TensorFlow kernel order (compact_cnn/ at a3e105d0c4c5)
DEFAULT_WEIGHTS = {
    "weights": "https://raw.githubusercontent.com/keunwoochoi/music-auto_tagging-keras/"
    "a3e105d0c4c529c512cc197ad8770ff1cc52aa32/compact_cnn/weights_tensorflow.hdf5",
    "sha256": "42e791b8c1b41ffe82c74d0501d8216eaee94d0b727b44de39ccc83ef810aed3",
}


def jukemir_batches(names, *, batch_size=JUKEMIR_BATCH, seed=JUKEMIR_SEED):
    """jukemir's batches of ``names``: sorted, then Python 2.7's
    ``random.seed(seed); random.shuffle(...)`` (the Choi container runs
    Python 2; Python 3's ``shuffle`` draws differently), cut every
    ``batch_size``. Python 3's ``random.Random(seed).random()`` is the same
    Mersenne Twister stream as Python 2's."""
    order = sorted(names)
    draw = random.Random(seed).random
    for i in reversed(range(1, len(order))):
        j = int(draw() * (i + 1))
        order[i], order[j] = order[j], order[i]
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


def kapre_dft_kernels():
    """kapre's (a3bde3e) ``get_stft_kernels(512)``: (real, imag), each (512, 257)."""
    n = np.arange(N_FFT)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # periodic Hann (scipy sym=False)
    phase = 2 * np.pi * np.outer(n, np.arange(N_FREQS)) / N_FFT
    return (
        (np.cos(phase) * window[:, None]).astype(np.float32),
        (np.sin(phase) * window[:, None]).astype(np.float32),
    )


def build_choi_convnet():
    """The five-block convnet with its kapre front end (see the module docstring)."""
    import librosa
    import torch
    from torch import nn
    from torch.nn import functional as F

    real, imag = kapre_dft_kernels()
    mel = librosa.filters.mel(sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=0.0, fmax=FMAX)

    class ChoiConvnet(nn.Module):
        def __init__(self):
            super().__init__()
            # kapre's layer weights, in the file's layout: (512, 257) and (257, 96)
            self.register_buffer("dft_real", torch.from_numpy(real))
            self.register_buffer("dft_imag", torch.from_numpy(imag))
            self.register_buffer("freq2mel", torch.from_numpy(mel.T.copy()))
            channels = [1] + [N_MAPS] * len(POOLINGS)
            self.convs = nn.ModuleList(
                nn.Conv2d(channels[i], N_MAPS, 3, padding=1) for i in range(len(POOLINGS))
            )
            self.bns = nn.ModuleList(
                nn.BatchNorm2d(N_MAPS, eps=BN_EPSILON) for _ in range(len(POOLINGS))
            )

        def log_mel(self, audio, *, backend="theano", batch_max=True, chunk=None):
            """``(B, samples)`` -> ``(B, 1, 96, frames)`` kapre decibels."""
            n_frames = -(-audio.shape[1] // HOP)
            kernels = torch.stack([self.dft_real, self.dft_imag]).transpose(1, 2)  # (2,257,512)
            kernels = kernels.reshape(2 * N_FREQS, 1, N_FFT)
            if backend == "theano":  # T.nnet.conv2d convolves: the kernel runs backwards
                kernels, pad = kernels.flip(-1), (N_FFT // 2, N_FFT // 2)
            else:  # TensorFlow 'SAME': correlation, the padding split evenly
                total = max((n_frames - 1) * HOP + N_FFT - audio.shape[1], 0)
                pad = (total // 2, total - total // 2)
            mels = []
            for start in range(0, audio.shape[0], chunk or audio.shape[0]):
                x = F.pad(audio[start : start + (chunk or audio.shape[0]), None], pad)
                spec = F.conv1d(x, kernels, stride=HOP)[..., :n_frames]
                power = spec[:, :N_FREQS] ** 2 + spec[:, N_FREQS:] ** 2
                mels.append(torch.einsum("bft,fm->bmt", power, self.freq2mel))
            db = 10 * torch.log10(torch.cat(mels).clamp_min(AMIN))
            top = db.amax() if batch_max else db.amax(dim=(1, 2), keepdim=True)
            return (db - top).clamp_min(-TOP_DB)[:, None]

        def block(self, i, x, *, batch_statistics=True, chunk=None):
            conv, bn = self.convs[i], self.bns[i]
            chunk = chunk or x.shape[0]
            whole = conv(x) if chunk >= x.shape[0] else None
            if batch_statistics:
                mean, var = _batch_moments(conv, x, chunk, whole)
            else:
                mean, var = bn.running_mean, bn.running_var
            scale = bn.weight / torch.sqrt(var + bn.eps)
            shift = bn.bias - mean * scale
            outputs = []
            for start in range(0, x.shape[0], chunk):
                y = whole if whole is not None else conv(x[start : start + chunk])
                y = F.elu(y * scale[:, None, None] + shift[:, None, None])
                outputs.append(F.max_pool2d(y, POOLINGS[i]))
            return torch.cat(outputs)

        def forward(self, audio, *, backend="theano", batch_statistics=True, chunk=None):
            """Each block's output for one batch (statistics over all of ``audio``)."""
            x = self.log_mel(audio, backend=backend, batch_max=batch_statistics, chunk=chunk)
            outputs = []
            for i in range(len(POOLINGS)):
                x = self.block(i, x, batch_statistics=batch_statistics, chunk=chunk)
                outputs.append(x)
            return outputs

    def _batch_moments(conv, x, chunk, whole):
        """Per-map mean and biased variance of ``conv(x)`` over the batch, frequency
        and time, accumulated chunk by chunk (Chan et al.'s pairwise update)."""
        count, mean, m2 = 0, 0.0, 0.0
        for start in range(0, x.shape[0], chunk):
            y = whole if whole is not None else conv(x[start : start + chunk])
            var_c, mean_c = torch.var_mean(y, dim=(0, 2, 3), unbiased=False)
            n_c = y.numel() // y.shape[1]
            mean_c, m2_c = mean_c.double(), var_c.double() * n_c
            delta = mean_c - mean
            total = count + n_c
            mean = mean + delta * n_c / total
            m2 = m2 + m2_c + delta**2 * count * n_c / total
            count = total
        return mean.float(), (m2 / count).float()

    return ChoiConvnet()


@contextlib.contextmanager
def _no_tf32():
    """Full float32 on CUDA: cuDNN's default TF32 convolutions round their inputs to
    10-bit mantissas, Keras/Theano ran the DFT and the convnet in float32."""
    import torch

    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def keras_hdf5_state_dict(path, *, name="choi"):
    """The ``state_dict`` of :func:`build_choi_convnet` from Choi's Keras 1 HDF5 file
    (TensorFlow kernel order). Strict: every array of the file is used once and
    every shape is checked; a ModelError names the file and what does not fit."""
    import h5py
    import torch

    expected = {
        "melgram/Variable:0": ("dft_real", (N_FFT, 1, 1, N_FREQS)),
        "melgram/Variable_1:0": ("dft_imag", (N_FFT, 1, 1, N_FREQS)),
        "melgram/Variable_2:0": ("freq2mel", (N_FREQS, N_MELS)),
    }
    for i in range(len(POOLINGS)):
        conv, bn = f"ConvBNEluDr/convolution2d_{i + 1}", f"ConvBNEluDr/batchnormalization_{i + 1}"
        # Keras 1 stores Conv2D kernels as (maps, channels, rows, cols): torch's layout;
        # TensorFlow-order kernels correlate, as torch's Conv2d does
        expected[f"{conv}_W:0"] = (f"convs.{i}.weight", (N_MAPS, 1 if i == 0 else N_MAPS, 3, 3))
        expected[f"{conv}_b:0"] = (f"convs.{i}.bias", (N_MAPS,))
        expected[f"{bn}_gamma:0"] = (f"bns.{i}.weight", (N_MAPS,))
        expected[f"{bn}_beta:0"] = (f"bns.{i}.bias", (N_MAPS,))
        expected[f"{bn}_running_mean:0"] = (f"bns.{i}.running_mean", (N_MAPS,))
        # Keras 1.2's "running_std" holds the running variance
        expected[f"{bn}_running_std:0"] = (f"bns.{i}.running_var", (N_MAPS,))
    try:
        with h5py.File(path, "r") as handle:
            arrays = {}

            def keep(key, obj):
                if isinstance(obj, h5py.Dataset):
                    arrays[key] = obj[()]

            handle.visititems(keep)
    except OSError as error:
        raise ModelError(f"{name} weights {path}: not a readable HDF5 file ({error})") from error
    check_fits(
        {key: shape for key, (_, shape) in expected.items()},
        arrays,
        name=name,
        path=path,
        what="not Choi et al.'s TensorFlow-order convnet (compact_cnn/weights_tensorflow.hdf5)",
    )
    state = {}
    for key, (target, _) in expected.items():
        array = np.asarray(arrays[key], dtype=np.float32)
        if target.startswith("dft_"):
            array = array.reshape(N_FFT, N_FREQS)
        state[target] = torch.from_numpy(np.ascontiguousarray(array))
    for i in range(len(POOLINGS)):
        state[f"bns.{i}.num_batches_tracked"] = torch.tensor(0)
    return state


class Choi(Extractor):
    """Choi et al. 2017 convnet features (see the module docstring)."""

    name = "choi"
    conda_env = "torch.yaml"
    packages = ("torch", "h5py", "librosa")
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
            "batch_statistics": {
                "type": "boolean",
                "default": True,
                "description": "Keras 1 BatchNormalization mode=2 and kapre's batch-maximum "
                "decibels, over jukemir's batches (true, as trained and as CALM ran it); false: "
                "stored running statistics and each clip's own maximum (batch-independent).",
            },
            "batch_clips": {
                "type": "integer",
                "minimum": 1,
                "default": JUKEMIR_BATCH,
                "description": "Clips per batch with batch_statistics (jukemir: 256).",
            },
            "batch_seed": {
                "type": "integer",
                "default": JUKEMIR_SEED,
                "description": "Seed of the Python 2 shuffle that forms the batches (jukemir: 0).",
            },
            "kapre_backend": {
                "enum": ["theano", "tensorflow"],
                "default": "theano",
                "description": "Keras backend whose 'same' STFT convolution to follow: theano "
                "(pads 256 each side, flipped kernel; jukemir's) or tensorflow (pads 208).",
            },
            "chunk_clips": {
                "type": "integer",
                "minimum": 1,
                "default": 16,
                "description": "Clips per convolution pass (memory only; statistics still span "
                "the batch).",
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

    @classmethod
    def dataset_batch_size(cls, params):
        """Clips per batch when features depend on batch-mates (None: they do not)."""
        params = cls(params={**(params or {}), "random_weights": True}).params
        return params["batch_clips"] if params["batch_statistics"] else None

    def dataset_batches(self, clip_ids, *, dataset=None):
        """The batches of a dataset's clips: jukemir's rule on ``<jukemir uid>.wav``."""
        uid = (lambda c: c) if dataset is None else dataset.jukemir_uid
        by_name = {f"{uid(c)}.wav": c for c in clip_ids}
        if len(by_name) != len(clip_ids):
            raise ModelError("choi batches: two clips share a jukemir uid")
        batches = jukemir_batches(
            by_name, batch_size=self.params["batch_clips"], seed=self.params["batch_seed"]
        )
        return [[by_name[n] for n in batch] for batch in batches]

    def batch_record(self):
        """How batches were formed (for the feature profile)."""
        return {
            "rule": "jukemir: sorted '<jukemir uid>.wav', Python 2 random.seed(seed) + "
            "random.shuffle, consecutive batches",
            "batch_clips": self.params["batch_clips"],
            "seed": self.params["batch_seed"],
            "batch_statistics": self.params["batch_statistics"],
        }

    def load(self, *, device="cpu", dtype=None):
        model = build_with_weights(
            name=self.name,
            params=self.params,
            build=build_choi_convnet,
            read_hdf5=lambda path, _: keras_hdf5_state_dict(path, name=self.name),
        )
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
        """Features of ``batch``, one batch (its statistics span all its clips)."""
        import torch

        layers = self.check_layers(layers)
        if self.model is None:
            self.load(device=self.device)
        audio = torch.from_numpy(np.stack([self.window(y) for y in batch])).to(self.device)
        with torch.inference_mode(), _no_tf32():
            maps = self.model(
                audio,
                backend=self.params["kapre_backend"],
                batch_statistics=self.params["batch_statistics"],
                chunk=self.params["chunk_clips"],
            )
            features = torch.cat([m.mean(dim=(2, 3)) for m in maps], dim=1).float().cpu()
        features = features.numpy()
        out = {"all": features}
        for i in range(len(POOLINGS)):
            out[f"layer{i + 1}"] = features[:, i * N_MAPS : (i + 1) * N_MAPS]
        return {layer: np.ascontiguousarray(out[layer]) for layer in layers}
