"""Choi et al. 2016's MSD taggers: ``MusicTaggerCNN`` (*Automatic tagging using
deep convolutional neural networks*, ISMIR 2016) and ``MusicTaggerCRNN``
(*Convolutional recurrent neural networks for music classification*, 2016).

Reference: keunwoochoi/music-auto_tagging-keras. The released files
``data/music_tagger_{cnn,crnn}_weights_tensorflow.h5`` (unchanged from
90b2940, where they were added, to a3e105d, the last commit) fit the
architectures of ``music_tagger_cnn.py`` / ``music_tagger_crnn.py`` *at
90b2940* (CNN maps 32-128-128-192-256; ``bn_0_freq`` over the time axis, 1366
or 1440 parameters), not the later files (64-128-128-128-64).

* **Audio and mel spectrogram**, as ``audio_processor.compute_melgram`` with
  librosa 0.4.3: 12 kHz mono; the centre 29.12 s (349,440 samples,
  ``src[(n - fit) // 2:(n + fit) // 2]``), a shorter clip zero-padded at the
  end; STFT n_fft 512, hop 256, periodic Hann, centred with *reflect*
  padding (librosa 0.4; 0.10+ pads zeros); power 2; librosa's Slaney mel
  matrix (96 bands, 0-6 kHz, area-normalised); the mel power is squared
  again (``melgram(...)**2``), then ``logamplitude(ref_power=1.0)``:
  ``10 log10(max(S, 1e-10))``, floored at the clip's maximum - 80 dB.
  1366 frames. Checked against the repository's precomputed
  ``data/bensound-*.npy`` (median |difference| 0.006-0.15 dB, decoder delay
  aligned).
* **Input standardisation** (``standardize: true``): each clip's log-mel
  minus its mean, over its standard deviation. The code never did this at
  inference, but the networks were trained so: the stored running statistics
  of the input BatchNormalization ``bn_0_freq`` are mean 0.03, std 0.98 per
  time frame (the repository's own example clips give -24 and 15.6 dB), and
  the CRNN's zero-padded frames store exactly sqrt(1e-6) = 0.001. Without
  it the CNN's tags saturate (1.000 for one tag, 0.000 for the rest on the
  fixture clips). ``standardize: false`` is the raw input, for comparison.
* **BatchNormalization** as trained, Keras <= 1.0.6 on Theano (the README:
  "use keras == 1.0.6 for MusicTaggerCNN"): the stored ``running_std`` is a
  standard deviation, sqrt(var + 1e-6), and inference computes
  ``(x - running_mean) / (running_std + 1e-6) * gamma + beta`` (Keras 1.0.7+
  read it as a variance; the README's later CRNN output, jazz first for
  all four example clips, is reproduced exactly under that reading with raw
  input, so the forward here is the author's, the reading is not). No batch
  statistics: a clip's features do not depend on its batch-mates.
* **Convolutions**: the ``_tensorflow`` files hold the Theano kernels
  rotated by 180 degrees (checked against the ``_theano`` files), so they
  correlate as ``torch.nn.Conv2d`` does. 3x3, 'same', ELU, max-pooling
  (CNN (2,4) (2,4) (2,4) (3,5) (4,4); CRNN pads 37 frames of zeros on each
  side, pools (2,2) (3,3) (4,4) (4,4), then two GRUs of 32 over the 15
  remaining frames, Keras 1's GRU: hard sigmoid gates, ``h = z h' + (1 - z)
  tanh(x W_h + (r h') U_h + b_h)``). Dropout is inactive at inference.
* **Layers**: each block's output pooled over frequency and time, [mean,
  max] concatenated (a single position as is): CNN ``layer1``..``layer5``
  (``layer5``, 256-d, is the tag head's input); CRNN ``layer1``..``layer4``
  and ``gru`` (the last GRU's final state, 32-d, the head's input); ``tags``:
  the 50 sigmoid scores in the order of :data:`TAGS`. Defaults ``layer5``
  and ``gru``.

Weights (:mod:`mirprobe.extractors.torch_weights`): ``weights`` null means
the released file of ``model`` in :data:`PRETRAINED` (the raw GitHub URL at
a3e105d, with its sha256), found offline by digest. The HDF5 file is read
with h5py (arrays only) and mapped strictly: every array used once, every
shape checked.
"""

import numpy as np

from ..errors import ModelError
from .base import Extractor, mono_float32
from .convnet_layers import LayersByModel, pooled_layers
from .torch_weights import (
    WEIGHTS_PARAMS,
    build_with_weights,
    check_fits,
    check_weights_params,
    with_published,
)

SAMPLE_RATE = 12000
N_FFT = 512
HOP = 256
N_MELS = 96
#: compute_melgram's DURA * SR: 1366 frames
N_SAMPLES = int(29.12 * SAMPLE_RATE)
N_FRAMES = 1 + N_SAMPLES // HOP
AMIN = 1e-10
TOP_DB = 80.0
#: Keras <= 1.0.6's BatchNormalization default
BN_EPSILON = 1e-6
CRNN_PAD = 37
MODELS = ("cnn", "crnn")

_REPO = (
    "https://raw.githubusercontent.com/keunwoochoi/music-auto_tagging-keras/"
    "a3e105d0c4c529c512cc197ad8770ff1cc52aa32/data"
)
#: model -> (URL, sha256, size in bytes) of the released weights
PRETRAINED = {
    "cnn": (
        f"{_REPO}/music_tagger_cnn_weights_tensorflow.h5",
        "8b61b73a8065cb084a9b56e8b5421ee876f38a1aca109ec2ad336e3a17c7c421",
        3523472,
    ),
    "crnn": (
        f"{_REPO}/music_tagger_crnn_weights_tensorflow.h5",
        "df63638de9f3113780768181670c554f122fbd1297c63c065836d70a251115a8",
        1649464,
    ),
}
#: the 50 MSD tags of the head, in order (the repository's README and example_tagging.py)
TAGS = (
    "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
    "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
    "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s",
    "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
    "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
    "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
    "60s", "rnb", "indie pop", "sad", "House", "happy",
)  # fmt: skip
#: (maps, pool) per convolutional block
BLOCKS = {
    "cnn": ((32, (2, 4)), (128, (2, 4)), (128, (2, 4)), (192, (3, 5)), (256, (4, 4))),
    "crnn": ((64, (2, 2)), (128, (3, 3)), (128, (4, 4)), (128, (4, 4))),
}
GRU_UNITS = 32
LAYERS = {
    "cnn": ("layer1", "layer2", "layer3", "layer4", "layer5", "tags"),
    "crnn": ("layer1", "layer2", "layer3", "layer4", "gru", "tags"),
}
DEFAULT_LAYER = {"cnn": "layer5", "crnn": "gru"}


def center_window(y):
    """compute_melgram's 29.12 s: the centre of a longer clip, a shorter one zero-padded."""
    y = mono_float32(y)
    n = y.size
    if n < N_SAMPLES:
        return np.pad(y, (0, N_SAMPLES - n))
    start = (n - N_SAMPLES) // 2
    return y[start : start + N_SAMPLES]


def slaney_mel_matrix():
    """librosa 0.4's ``filters.mel(12000, 512, n_mels=96)``: Slaney scale, area-normalised."""
    import librosa

    return librosa.filters.mel(
        sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, htk=False, norm="slaney"
    ).astype(np.float32)


def build_network(model):
    """The torch network of ``model`` (``cnn`` | ``crnn``); forward(audio (B, 349440))
    returns a dict of each block's map, ``gru`` (CRNN) and ``tags``."""
    import torch
    from torch import nn

    class KerasBatchNorm(nn.Module):
        """Keras <= 1.0.6 (Theano) inference: running_std is a standard deviation."""

        def __init__(self, n):
            super().__init__()
            for key, value in (("gamma", 1), ("beta", 0), ("running_mean", 0), ("running_std", 1)):
                self.register_buffer(key, torch.full((n,), float(value)))

        def forward(self, x, axis):
            shape = [1] * x.ndim
            shape[axis] = -1
            scale = self.gamma / (self.running_std + BN_EPSILON)
            return (x - self.running_mean.view(shape)) * scale.view(shape) + self.beta.view(shape)

    class KerasGRU(nn.Module):
        """Keras 1's GRU (hard-sigmoid gates, reset applied before U_h)."""

        def __init__(self, n_in, n):
            super().__init__()
            for gate in "zrh":
                self.register_parameter(f"W_{gate}", nn.Parameter(0.1 * torch.randn(n_in, n)))
                self.register_parameter(f"U_{gate}", nn.Parameter(0.1 * torch.randn(n, n)))
                self.register_parameter(f"b_{gate}", nn.Parameter(torch.zeros(n)))

        def forward(self, x):
            def hard_sigmoid(v):
                return torch.clamp(0.2 * v + 0.5, 0.0, 1.0)

            h = x.new_zeros(x.shape[0], self.U_z.shape[0])
            states = []
            for t in range(x.shape[1]):
                xt = x[:, t]
                z = hard_sigmoid(xt @ self.W_z + self.b_z + h @ self.U_z)
                r = hard_sigmoid(xt @ self.W_r + self.b_r + h @ self.U_r)
                candidate = torch.tanh(xt @ self.W_h + self.b_h + (r * h) @ self.U_h)
                h = z * h + (1 - z) * candidate
                states.append(h)
            return torch.stack(states, dim=1)

    class Choi2016Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model
            frames = N_FRAMES + (2 * CRNN_PAD if model == "crnn" else 0)
            self.register_buffer("window", torch.hann_window(N_FFT, periodic=True))
            self.register_buffer("mel", torch.from_numpy(slaney_mel_matrix()))
            self.bn_0_freq = KerasBatchNorm(frames)
            channels = [1] + [maps for maps, _ in BLOCKS[model]]
            self.convs = nn.ModuleList(
                nn.Conv2d(channels[i], channels[i + 1], 3, padding=1)
                for i in range(len(BLOCKS[model]))
            )
            self.bns = nn.ModuleList(KerasBatchNorm(maps) for maps, _ in BLOCKS[model])
            if model == "crnn":
                self.gru1 = KerasGRU(channels[-1], GRU_UNITS)
                self.gru2 = KerasGRU(GRU_UNITS, GRU_UNITS)
            self.output = nn.Linear(GRU_UNITS if model == "crnn" else channels[-1], len(TAGS))

        def log_mel(self, audio):
            """compute_melgram: (B, 349440) -> (B, 96, 1366) dB of the squared mel power."""
            spec = torch.stft(
                audio, N_FFT, HOP, window=self.window, center=True, pad_mode="reflect",
                return_complex=True,
            ).abs() ** 2  # fmt: skip
            mel = torch.matmul(self.mel, spec) ** 2
            db = 10.0 * torch.log10(torch.clamp(mel, min=AMIN))
            peak = db.amax(dim=(1, 2), keepdim=True)
            return torch.maximum(db, peak - TOP_DB)

        def forward(self, audio, *, standardize=True):
            x = self.log_mel(audio)
            if standardize:
                mean = x.mean(dim=(1, 2), keepdim=True)
                x = (x - mean) / x.std(dim=(1, 2), keepdim=True, unbiased=False)
            x = x[:, None]  # (B, 1, 96, 1366): Theano's (channels, rows, cols)
            if self.model == "crnn":
                x = nn.functional.pad(x, (CRNN_PAD, CRNN_PAD))
            x = self.bn_0_freq(x, axis=3)  # Keras axis=time_axis: one per frame
            out = {}
            for i, (_, pool) in enumerate(BLOCKS[self.model]):
                x = nn.functional.elu(self.bns[i](self.convs[i](x), axis=1))
                x = nn.functional.max_pool2d(x, pool)
                out[f"layer{i + 1}"] = x
            if self.model == "crnn":
                # Keras Permute((3, 1, 2)) + Reshape((15, 128)): frames x maps
                x = x[:, :, 0].transpose(1, 2)
                x = self.gru2(self.gru1(x))[:, -1]
                out["gru"] = x
            else:
                x = x.flatten(1)
            out["tags"] = torch.sigmoid(self.output(x))
            return out

    return Choi2016Tagger()


def keras_hdf5_state_dict(path, model, *, name="choi2016"):
    """The state dict of :func:`build_network` from the released Keras 1 HDF5 file.
    Strict: every array of the file is used once, every shape is checked."""
    import h5py
    import torch

    frames = N_FRAMES + (2 * CRNN_PAD if model == "crnn" else 0)
    # "layer/weight" -> (state-dict key, shape); Keras 1 names weights <layer>_<weight>
    expected = {}
    for weight in ("gamma", "beta", "running_mean", "running_std"):
        expected[f"bn_0_freq/{weight}"] = (f"bn_0_freq.{weight}", (frames,))
    channels = [1] + [maps for maps, _ in BLOCKS[model]]
    for i in range(len(BLOCKS[model])):
        # Keras 1 kernels are (maps, channels, rows, cols), torch's layout; the
        # TensorFlow-order file correlates, as Conv2d does
        expected[f"conv{i + 1}/W"] = (
            f"convs.{i}.weight",
            (channels[i + 1], channels[i], 3, 3),
        )
        expected[f"conv{i + 1}/b"] = (f"convs.{i}.bias", (channels[i + 1],))
        for weight in ("gamma", "beta", "running_mean", "running_std"):
            expected[f"bn{i + 1}/{weight}"] = (f"bns.{i}.{weight}", (channels[i + 1],))
    head_in = channels[-1]
    if model == "crnn":
        head_in = GRU_UNITS
        for layer, n_in in (("gru1", channels[-1]), ("gru2", GRU_UNITS)):
            for gate in "zrh":
                expected[f"{layer}/W_{gate}"] = (f"{layer}.W_{gate}", (n_in, GRU_UNITS))
                expected[f"{layer}/U_{gate}"] = (f"{layer}.U_{gate}", (GRU_UNITS, GRU_UNITS))
                expected[f"{layer}/b_{gate}"] = (f"{layer}.b_{gate}", (GRU_UNITS,))
    expected["output/W"] = ("output.weight", (head_in, len(TAGS)))
    expected["output/b"] = ("output.bias", (len(TAGS),))
    try:
        with h5py.File(path, "r") as handle:
            arrays = {}
            for layer in handle:
                for key, dataset in handle[layer].items():
                    # "<layer>_<weight>:0", or "<layer>_<weight>_1:0" in the CRNN file
                    weight = key.split(":")[0][len(layer) + 1 :]
                    weight = weight[:-2] if weight.endswith("_1") else weight
                    arrays[f"{layer}/{weight}"] = np.asarray(dataset[()], dtype=np.float32)
    except (OSError, KeyError, AttributeError) as error:
        raise ModelError(
            f"{name} weights {path}: not a readable Keras HDF5 file ({error})"
        ) from error
    check_fits(
        {key: shape for key, (_, shape) in expected.items()},
        arrays,
        name=name,
        path=path,
        what=f"not the {model} of music-auto_tagging-keras at 90b2940 "
        f"(music_tagger_{model}_weights_tensorflow.h5)",
    )
    state = {}
    for key, (target, _) in expected.items():
        array = arrays[key].T if target == "output.weight" else arrays[key]
        state[target] = torch.from_numpy(np.ascontiguousarray(array))
    return state


class Choi2016Tagger(LayersByModel, Extractor):
    """Choi et al. 2016's MusicTaggerCNN or MusicTaggerCRNN (see the module docstring)."""

    name = "choi2016"
    conda_env = "torch.yaml"
    packages = ("torch", "h5py", "librosa")
    sample_rate = SAMPLE_RATE
    min_input_samples = N_FFT
    wants_gpu = True
    default_layers = (DEFAULT_LAYER["cnn"],)
    model_layers = LAYERS
    model_default_layer = DEFAULT_LAYER
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "model": {
                "enum": list(MODELS),
                "default": "cnn",
                "description": "MusicTaggerCNN (cnn) or MusicTaggerCRNN (crnn).",
            },
            **WEIGHTS_PARAMS,
            "weights": {
                "type": ["string", "null"],
                "default": None,
                "description": "Keras HDF5 weights (or a torch state_dict of this module): "
                "path or URL; null = the released file of the model.",
            },
            "standardize": {
                "type": "boolean",
                "default": True,
                "description": "Standardise each clip's log-mel (zero mean, unit variance), "
                "as the training input was; false = the raw dB the README's code feeds.",
            },
            "batch_clips": {
                "type": "integer",
                "minimum": 1,
                "default": 8,
                "description": "Clips per forward pass (features do not depend on it).",
            },
        },
    }

    def __init__(self, *, params=None):
        super().__init__(params=params)
        self.params, self.size = with_published(self.params, PRETRAINED, self.params["model"])
        check_weights_params(self.name, self.params)
        self.model = None

    @property
    def tags(self):
        return TAGS

    def load(self, *, device="cpu", dtype=None):
        model = self.params["model"]

        def read_hdf5(path, net):
            # the file holds no front end: the network's own window and mel matrix
            state = keras_hdf5_state_dict(path, model, name=self.name)
            return state | {k: v for k, v in net.state_dict().items() if k in ("window", "mel")}

        net = build_with_weights(
            name=self.name,
            params=self.params,
            build=lambda: build_network(model),
            size=self.size,
            read_hdf5=read_hdf5,
        )
        self.device = str(device)
        self.model = net.eval().to(self.device)
        return self

    def embed(self, batch, *, layers=None):
        layers = self.check_layers(layers or self.default_layers_for(self.params))
        if self.model is None:
            self.load(device=self.device)
        return pooled_layers(
            self.model,
            np.stack([center_window(y) for y in batch]),
            layers=layers,
            step=self.params["batch_clips"],
            device=self.device,
            standardize=self.params["standardize"],
        )
