"""MusiCNN (Pons & Serra 2019) features with the real trained weights of ``musicnn``.

CALM (Castellon et al. 2021) probes ``MSD_musicnn_big`` (512 mid-end filters,
500 back-end units: ``mean_max`` is 4194-d). **That model is not in the PyPI
package** (musicnn 0.1.0 ships ``MTT_musicnn``, ``MSD_musicnn``, ``MTT_vgg``
and ``MSD_vgg``), so:

* ``model: MSD_musicnn_big`` downloads its checkpoint files (``checkpoint``,
  ``.index``, ``.meta``, ``.data-00000-of-00001``) once from the GitHub
  repository jordipons/musicnn at commit 516acb2 (the commit jukemir pins;
  the files are stored in git there, not LFS, so the raw URLs serve them)
  into ``<cache_dir>/MSD_musicnn_big-516acb2a0ff5/``, or reads them from a
  local ``checkpoint_dir`` (nothing is downloaded then). Each is verified
  before use: the small files by size and sha256, the data file (for which
  no sha256 is published) by size and git blob id; a wrong or missing file
  fails naming it. :meth:`MusiCNN.source_record` records the URLs, digests
  and the data file's sha256 computed here. The graph is the package's own
  ``define_model(..., "MSD_musicnn_big")`` (identical to models.py at 516acb2).
* the default is the shipped ``MSD_musicnn`` (same architecture and
  training set, 64 mid-end filters and 200 back-end units; 1506-d): label it
  "MusiCNN (MSD)", not "MSD_musicnn_big".

Before restoring, the graph's variables (names and shapes) are checked against
the checkpoint's ``.index`` (optimizer slots aside), so a checkpoint for
another architecture fails naming the differences instead of loading partly.

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
       ``is_training=False``) is restored from the checkpoint (inside the
       package, or the verified MSD_musicnn_big files) and run on the
       patches; it gives per patch ``mean_pool`` and ``max_pool`` (the
       back-end's temporal mean and max of the mid-end features, 753-d for
       the shipped models, 2097-d for MSD_musicnn_big) and ``penultimate``.
    4. Each is averaged over the clip's patches. Layer ``mean_max`` (the
       default, CALM's representation) is ``[mean(mean_pool), mean(max_pool)]``
       concatenated (1506-d; 4194-d for MSD_musicnn_big); ``mean_pool``, ``max_pool`` and ``penultimate``
       are also available.

Log compression: the package computes ``10000 * mel`` in float16, which
overflows to ``inf`` wherever the mel power exceeds 6.55 (loud, bassy
frames), and its features then contain ``inf``. ``log_compression:
float32`` (default) recomputes just the overflowing values in float32
(``log10(10000 * mel + 1)`` of the float16 mel), so it is identical to the
package wherever the package is finite;
``log_compression: package`` reproduces the overflow bit for bit.

The same features on every CPU: the mel spectrogram is computed in float64 and then
rounded to float16 (the package: float32, then float16). In float32, librosa's mel
projection is an OpenBLAS GEMM whose kernel OpenBLAS picks by CPU, and rounding to float16
turned its last-bit differences into float16 flips (10 of 145k mel values with Sandy
Bridge's kernels instead of this AMD EPYC's Haswell ones). TensorFlow's matrix products and
convolutions end in oneDNN's sgemm (Eigen's contraction kernel, even with
``TF_ENABLE_ONEDNN_OPTS=0``), whose kernel oneDNN picks by CPU ISA at runtime (AVX2, AVX
and SSE4.1 gave different last bits here): :data:`TF_KERNEL_ENVIRONMENT` sets
``ONEDNN_MAX_CPU_ISA=SSE41`` (and oneDNN's graph rewrites off) in the extracting process
before TensorFlow loads, overriding the environment. The features then differ from the
package's by float16 rounding of a few mel values and float32 rounding in TensorFlow
(within 1e-4).

TensorFlow runs on the CPU (``wants_gpu = False``: a 30 s clip takes about
a second). ``TF_USE_LEGACY_KERAS=1`` is set before TensorFlow is imported,
because the package's ``tf.compat.v1.layers`` need ``tf_keras`` under
TensorFlow >= 2.16. Install: ``pip install tensorflow tf_keras`` then
``pip install --no-deps musicnn==0.1.0`` (its metadata pins numpy < 1.17).
"""

import os
from pathlib import Path

import numpy as np

from ..download import Remote, fetch, file_checksum
from ..errors import ConfigError, DataError, ModelError
from .base import Extractor, mono_float32

SAMPLE_RATE = 16000
INPUT_LENGTH_S = 3
MODELS = ("MSD_musicnn", "MTT_musicnn", "MSD_musicnn_big")
BIG = "MSD_musicnn_big"
#: jordipons/musicnn at the commit jukemir pins (MSD_musicnn_big is in git there, no LFS)
BIG_REPOSITORY = "jordipons/musicnn"
BIG_COMMIT = "516acb2a0ff5ef73f64547898e018e793152c506"
BIG_URL = "https://raw.githubusercontent.com/{repository}/{commit}/musicnn/MSD_musicnn_big/{name}"
#: the files TensorFlow reads: size in bytes and digest (sha256; the data file's git blob id,
#: the only digest its repository gives)
BIG_FILES = {
    "checkpoint": (179, "381905d5f9e07d89c536fac701307c5e0b32d94f38860ce8713167d1aea57d0e"),
    ".index": (5040, "d83b6453d94b455cdabfe627f4abe6007b6bfd5299f70d662be7e917786b99f6"),
    ".meta": (1185999, "77c1ec027b01bd26d9c523e356f0e0c3900fc96da5246750a1afd68e588ddcc1"),
    ".data-00000-of-00001": (95817164, "git-blob:8797b12a184750ac483685d294a715259922b1b4"),
}
DEFAULT_CACHE = "~/.cache/mirprobe/musicnn"
#: set before TensorFlow runs (see "The same features on every CPU" in the module docstring):
#: TensorFlow's Eigen kernels for the graph's ops, and oneDNN (whose sgemm Eigen's
#: contractions call even so) held to its lowest ISA, SSE4.1, which every x86-64 CPU it
#: runs on has, so that it picks the same GEMM kernel everywhere
TF_KERNEL_ENVIRONMENT = {"TF_ENABLE_ONEDNN_OPTS": "0", "ONEDNN_MAX_CPU_ISA": "SSE41"}
#: checkpoint entries that are training state, not part of the inference graph
OPTIMIZER_VARIABLES = ("beta1_power", "beta2_power")


def big_remotes():
    """One :class:`~mirprobe.download.Remote` per MSD_musicnn_big file, at :data:`BIG_COMMIT`."""
    return [
        Remote(
            key=f"{BIG}/{name}",
            path=name,
            checksum=checksum,
            urls=(BIG_URL.format(repository=BIG_REPOSITORY, commit=BIG_COMMIT, name=name),),
        )
        for name, (_, checksum) in BIG_FILES.items()
    ]


def fetch_big_checkpoint(root, *, local_only=False):
    """The verified MSD_musicnn_big files in ``root`` (downloaded unless ``local_only``).

    A present file is checked by size first (cheap, and a clear message), then
    by digest; returns ``{name: path}``. Raises DataError naming the file.
    """
    root = Path(root).expanduser()
    paths = {}
    for remote in big_remotes():
        size = BIG_FILES[remote.path][0]
        path = root / remote.path
        if path.is_file() and path.stat().st_size != size:
            raise DataError(
                f"{path}: {path.stat().st_size} bytes, expected {size} (MSD_musicnn_big "
                f"{remote.path} at {BIG_REPOSITORY}@{BIG_COMMIT[:12]}; delete it to download "
                "it again)"
            )
        if local_only and not path.is_file():
            raise DataError(
                f"{path}: not found (checkpoint_dir {root} must hold MSD_musicnn_big's "
                f"{', '.join(BIG_FILES)}); this one is {size} bytes, {remote.checksum}, at "
                f"{remote.urls[0]}"
            )
        paths[remote.path] = fetch(remote, root=root, local_only=local_only)
    return paths


def build_graph(model, *, n_frames, n_labels):
    """The package's inference graph for ``model``: ``(graph, x, is_training, outputs)``."""
    import tensorflow as tf
    from musicnn import configuration, models

    graph = tf.Graph()
    with graph.as_default():
        try:
            with tf.name_scope("model"):
                x = tf.compat.v1.placeholder(tf.float32, [None, n_frames, configuration.N_MELS])
                is_training = tf.compat.v1.placeholder(tf.bool)
                outputs = models.define_model(x, is_training, model, n_labels)
        except (AttributeError, ImportError, ValueError) as error:
            raise ModelError(
                f"musicnn: cannot build the {model} graph ({error}); TensorFlow >= 2.16 "
                "needs tf_keras and TF_USE_LEGACY_KERAS=1 set before tensorflow is imported"
            ) from error
    return graph, x, is_training, outputs


def graph_variables(graph):
    """``{name: shape}`` of a graph's variables."""
    import tensorflow as tf

    variables = graph.get_collection(tf.compat.v1.GraphKeys.GLOBAL_VARIABLES)
    return {v.op.name: [int(d) for d in v.shape] for v in variables}


def checkpoint_variables(prefix):
    """``{name: shape}`` of a checkpoint's model variables, from its ``.index`` alone
    (the Adam slots and ``beta*_power`` are training state and left out)."""
    import tensorflow as tf

    try:
        reader = tf.compat.v1.train.NewCheckpointReader(str(prefix))
    except (tf.errors.OpError, ValueError, RuntimeError) as error:
        raise ModelError(
            f"{prefix}.index: not a readable TensorFlow checkpoint ({error})"
        ) from error
    return {
        name: [int(d) for d in shape]
        for name, shape in reader.get_variable_to_shape_map().items()
        if name not in OPTIMIZER_VARIABLES and not name.endswith(("/Adam", "/Adam_1"))
    }


def check_variables(graph, prefix, *, model):
    """ModelError naming the differences unless ``graph``'s variables are the checkpoint's."""
    built, stored = graph_variables(graph), checkpoint_variables(prefix)
    problems = [f"{name} missing from the checkpoint" for name in sorted(set(built) - set(stored))]
    problems += [f"{name} not in the {model} graph" for name in sorted(set(stored) - set(built))]
    problems += [
        f"{name}: graph {built[name]}, checkpoint {stored[name]}"
        for name in sorted(set(built) & set(stored))
        if built[name] != stored[name]
    ]
    if problems:
        raise ModelError(
            f"{prefix}.index: the checkpoint does not fit the {model} graph "
            f"({len(problems)} differences): " + "; ".join(problems)
        )


class MusiCNN(Extractor):
    """MusiCNN patch features averaged over time (see the module docstring)."""

    name = "musicnn"
    conda_env = "musicnn.yaml"
    packages = ("tensorflow", "tf_keras", "musicnn", "librosa")
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
                "description": "MSD_musicnn / MTT_musicnn: the checkpoints inside the musicnn "
                "package. MSD_musicnn_big (CALM's model, not in the package): downloaded from "
                "jordipons/musicnn@516acb2 and verified.",
            },
            "checkpoint_dir": {
                "type": ["string", "null"],
                "default": None,
                "description": "MSD_musicnn_big only: a local folder holding its checkpoint, "
                ".index, .meta and .data-00000-of-00001 (verified; nothing is downloaded).",
            },
            "cache_dir": {
                "type": "string",
                "default": DEFAULT_CACHE,
                "description": "Where MSD_musicnn_big is downloaded to, once "
                "(<cache_dir>/MSD_musicnn_big-<commit12>/).",
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
        if self.params["checkpoint_dir"] is not None and self.params["model"] != BIG:
            raise ConfigError(
                f"extractor {self.name!r}: checkpoint_dir is for model {BIG} (the other models "
                f"are read from the musicnn package), not {self.params['model']!r}"
            )
        self.session = None
        #: MSD_musicnn_big: {name: path} of the verified files (None: a packaged model)
        self.big_files = None

    def big_dir(self):
        """Where the MSD_musicnn_big files are read from (and downloaded to)."""
        if self.params["checkpoint_dir"] is not None:
            return Path(self.params["checkpoint_dir"]).expanduser()
        return Path(self.params["cache_dir"]).expanduser() / f"{BIG}-{BIG_COMMIT[:12]}"

    def source_record(self):
        """MSD_musicnn_big: the repository, commit, URLs and digests of the files read."""
        if self.big_files is None:
            return None
        files = {}
        for remote in big_remotes():
            size, checksum = BIG_FILES[remote.path]
            entry = {"url": remote.urls[0], "size": size}
            if remote.algorithm == "sha256":
                entry["sha256"] = checksum
            else:  # verified by blob id; its sha256 is recorded as computed here
                entry["git_blob"] = checksum.split(":", 1)[1]
                entry["sha256"] = file_checksum(self.big_files[remote.path])
            files[remote.path] = entry
        return {
            "tensorflow_environment": dict(TF_KERNEL_ENVIRONMENT),
            "repository": BIG_REPOSITORY,
            "commit": BIG_COMMIT,
            "checkpoint_dir": str(self.big_dir().resolve()),
            "files": files,
        }

    @classmethod
    def available_layers(cls, params):
        return ("mean_max", "mean_pool", "max_pool", "penultimate")

    def load(self, *, device="cpu", dtype=None):
        os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        # the same kernels on every CPU (module docstring); read when TensorFlow loads
        # oneDNN and at its first use, so set before either
        os.environ.update(TF_KERNEL_ENVIRONMENT)
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
        if model == BIG:
            self.big_files = fetch_big_checkpoint(
                self.big_dir(), local_only=self.params["checkpoint_dir"] is not None
            )
            checkpoint = self.big_files[".index"].parent
        else:
            checkpoint = Path(models.__file__).parent / model
        if not (checkpoint / ".index").is_file():
            raise ModelError(
                f"musicnn model {model!r}: no checkpoint at {checkpoint}/ (the PyPI package "
                "ships MSD_musicnn, MTT_musicnn and the vgg models)"
            )
        prefix = str(checkpoint) + "/"  # the files are named ".index", ".data-...": no stem
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
        graph, x, is_training, outputs = build_graph(
            model, n_frames=self.n_frames, n_labels=len(self.labels)
        )
        check_variables(graph, prefix, model=model)
        with graph.as_default():
            session = tf.compat.v1.Session(graph=graph)
            saver = tf.compat.v1.train.Saver()
            try:
                saver.restore(session, prefix)
            except tf.errors.OpError as error:
                session.close()
                raise ModelError(
                    f"{prefix}: cannot restore the {model} checkpoint ({error.message})"
                ) from error
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
        # float64, rounded to the package's float16 (module docstring: the same on every CPU)
        mel = librosa.feature.melspectrogram(
            y=np.asarray(y, dtype=np.float64),
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
