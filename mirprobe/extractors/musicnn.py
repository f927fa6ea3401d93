"""MusiCNN (Pons & Serra 2019) features with the real trained weights of ``musicnn`` 0.1.0.

CALM (Castellon et al. 2021) probes ``MSD_musicnn_big``; **that model is not
in the PyPI package** (musicnn 0.1.0 ships ``MTT_musicnn``, ``MSD_musicnn``,
``MTT_vgg`` and ``MSD_vgg``; ``MSD_musicnn_big`` only exists in a source
install of the GitHub repository). The default here is therefore the closest
shipped model, ``MSD_musicnn`` (same architecture and training set, 64
mid-end filters and 200 back-end units instead of 512 and 500): label it
"MusiCNN (MSD)", not "MSD_musicnn_big". ``model: MSD_musicnn_big`` works
where a source install provides its checkpoint.

Pipeline (the package's own ``musicnn.extractor`` machinery, on arrays):
    1. 16 kHz mono audio -> ``librosa.feature.melspectrogram`` (n_fft 512,
       hop 256, 96 mel bands), stored as float16 as the package does, then
       ``log10(10000 * mel + 1)``.
    2. The spectrogram is cut into consecutive non-overlapping patches of
       ``n_frames`` = 188 frames (``input_length`` = 3 s, the training input
       length, as in ``extractor(input_length=3, input_overlap=False)``); a
       tail shorter than a patch is dropped. A clip shorter than one patch
       (where the package fails) is repeat-padded to one patch, as the
       models were trained ("pad_short": "repeat-pad").
    3. The package's TensorFlow graph (``musicnn.models.define_model``,
       ``is_training=False``) is restored from the checkpoint inside the
       package and run on the patches; it gives per patch ``mean_pool`` and
       ``max_pool`` (the back-end's temporal mean and max of the mid-end
       features, 753-d for the shipped models) and ``penultimate``.
    4. Each is averaged over the clip's patches. Layer ``mean_max`` (the
       default, CALM's representation) is ``[mean(mean_pool), mean(max_pool)]``
       concatenated (1506-d); ``mean_pool``, ``max_pool`` and ``penultimate``
       are also available.

Log compression: the package computes ``10000 * mel`` in float16, which
overflows to ``inf`` wherever the mel power exceeds 6.55 (loud, bassy
frames), and its features then contain ``inf``. ``log_compression:
float32`` (default) recomputes just the overflowing values in float32
(``log10(10000 * mel + 1)`` of the float16 mel), so it is identical to the
package wherever the package is finite;
``log_compression: package`` reproduces the overflow bit for bit.

TensorFlow runs on the CPU (``wants_gpu = False``: a 30 s clip takes about
a second). ``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is imported,
because the package's ``tf.compat.v1.layers`` need ``tf_keras`` under
TensorFlow >= 2.16. Install: ``pip install tensorflow tf_keras`` then
``pip install --no-deps musicnn==0.1.0`` (its metadata pins numpy < 1.17).
"""

import os
from pathlib import Path

import numpy as np

from ..errors import ModelError
from .base import Extractor, mono_float32

SAMPLE_RATE = 16000
INPUT_LENGTH_S = 3
MODELS = ("MSD_musicnn", "MTT_musicnn", "MSD_musicnn_big")


class MusiCNN(Extractor):
    """MusiCNN patch features averaged over time (see the module docstring)."""

    name = "musicnn"
    sample_rate = SAMPLE_RATE
    min_input_samples = 512  # one STFT window (n_fft); then repeat-padded to a patch
    wants_gpu = False
    default_layers = ("mean_max",)
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "model": {
                "type": "string",
                "enum": list(MODELS),
                "default": "MSD_musicnn",
                "description": "Checkpoint inside the musicnn package. CALM used MSD_musicnn_big, "
                "which the PyPI package does not ship; MSD_musicnn is the closest shipped model.",
            },
            "log_compression": {
                "type": "string",
                "enum": ["float32", "package"],
                "default": "float32",
                "description": "float32 = log10(10000 mel + 1) without the package's float16 "
                "overflow; package = bit-for-bit the package (inf on loud frames).",
            },
            "patch_batch": {
                "type": "integer",
                "minimum": 1,
                "default": 32,
                "description": "Patches run through TensorFlow at once.",
            },
        },
    }

    def __init__(self, *, params=None):
        super().__init__(params=params)
        self.session = None

    @classmethod
    def available_layers(cls, params):
        return ("mean_max", "mean_pool", "max_pool", "penultimate")

    def load(self, *, device="cpu", dtype=None):
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            import librosa
            import tensorflow as tf
            from musicnn import configuration, models
        except ImportError as error:
            raise ModelError(
                f"musicnn extractor: {error}; install tensorflow and tf_keras, then "
                "`pip install --no-deps musicnn==0.1.0` (see bin/setup)"
            ) from error

        model = self.params["model"]
        checkpoint = Path(models.__file__).parent / model
        if not (checkpoint / ".index").is_file():
            raise ModelError(
                f"musicnn model {model!r}: no checkpoint at {checkpoint}/ (the PyPI package "
                "ships MSD_musicnn, MTT_musicnn and the vgg models; MSD_musicnn_big needs a "
                "source install)"
            )
        self.config = configuration
        self.labels = configuration.MSD_LABELS if "MSD" in model else configuration.MTT_LABELS
        # as musicnn.extractor.extractor(input_length=3, input_overlap=False)
        self.n_frames = (
            int(
                librosa.time_to_frames(
                    INPUT_LENGTH_S,
                    sr=configuration.SR,
                    n_fft=configuration.FFT_SIZE,
                    hop_length=configuration.FFT_HOP,
                )
            )
            + 1
        )
        graph = tf.Graph()
        with graph.as_default():
            try:
                with tf.name_scope("model"):
                    x = tf.compat.v1.placeholder(
                        tf.float32, [None, self.n_frames, configuration.N_MELS]
                    )
                    is_training = tf.compat.v1.placeholder(tf.bool)
                    outputs = models.define_model(x, is_training, model, len(self.labels))
            except (AttributeError, ImportError, ValueError) as error:
                raise ModelError(
                    f"musicnn: cannot build the {model} graph ({error}); TensorFlow >= 2.16 "
                    "needs tf_keras and TF_USE_LEGACY_KERAS=1 set before tensorflow is imported"
                ) from error
            session = tf.compat.v1.Session(graph=graph)
            saver = tf.compat.v1.train.Saver()
            saver.restore(session, str(checkpoint) + "/")
        _, _, _, _, _, _, mean_pool, max_pool, penultimate = outputs
        self.inputs = (x, is_training)
        self.fetches = {"mean_pool": mean_pool, "max_pool": max_pool, "penultimate": penultimate}
        self.session = session
        self.device = "cpu"
        return self

    def spectrogram(self, y):
        """``(time, 96)`` log-mel spectrogram of 16 kHz audio, as the package computes it."""
        import librosa

        config = self.config
        mel = librosa.feature.melspectrogram(
            y=y,
            sr=config.SR,
            hop_length=config.FFT_HOP,
            n_fft=config.FFT_SIZE,
            n_mels=config.N_MELS,
        ).T
        mel = mel.astype(np.float16)
        with np.errstate(over="ignore"):
            rep = np.log10(10000 * mel + 1)  # float16, as the package computes it
        if self.params["log_compression"] == "float32":
            overflow = ~np.isfinite(rep)
            rep = rep.astype(np.float32)
            rep[overflow] = np.log10(10000 * mel[overflow].astype(np.float32) + 1)
        return rep

    def patches(self, y):
        """``(n_patches, n_frames, 96)`` non-overlapping 3 s patches of one clip."""
        rep = self.spectrogram(y)
        n = self.n_frames
        if rep.shape[0] < n:  # repeat-pad a short clip to one patch
            rep = np.tile(rep, (int(np.ceil(n / rep.shape[0])), 1))[:n]
        starts = range(0, rep.shape[0] - n + 1, n)
        return np.stack([rep[s : s + n] for s in starts])

    def embed(self, batch, *, layers):
        layers = self.check_layers(layers)
        if self.session is None:
            self.load()
        per_clip = []
        for y in batch:
            y = mono_float32(y)
            per_clip.append(self.patches(y))
        counts = [len(p) for p in per_clip]
        stacked = np.concatenate(per_clip)
        wanted = sorted({"mean_pool", "max_pool"} if "mean_max" in layers else set()) + [
            layer for layer in layers if layer != "mean_max"
        ]
        wanted = list(dict.fromkeys(wanted))
        fetches = [self.fetches[name] for name in wanted]
        x, is_training = self.inputs
        chunks = {name: [] for name in wanted}
        step = self.params["patch_batch"]
        for start in range(0, len(stacked), step):
            values = self.session.run(
                fetches, feed_dict={x: stacked[start : start + step], is_training: False}
            )
            for name, value in zip(wanted, values, strict=True):
                chunks[name].append(np.asarray(value).reshape(len(value), -1))
        features = {name: np.concatenate(chunks[name]) for name in wanted}
        bounds = np.cumsum([0, *counts])
        pooled = {
            name: np.stack(
                [
                    features[name][a:b].mean(axis=0)
                    for a, b in zip(bounds[:-1], bounds[1:], strict=True)
                ]
            )
            for name in wanted
        }
        if "mean_max" in layers:
            pooled["mean_max"] = np.concatenate([pooled["mean_pool"], pooled["max_pool"]], axis=1)
        return {layer: pooled[layer].astype(np.float32) for layer in layers}

    def close(self):
        if self.session is not None:
            self.session.close()
            self.session = None
