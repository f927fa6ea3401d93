"""Won et al. 2020's trained taggers (*Evaluation of CNN-based automatic music
tagging models*, SMC 2020): FCN, CRNN and MusiCNN, as the paper ran them.

Reference: minzwon/sota-music-tagging-models at ffcd1f90 (``training/model.py``,
``modules.py``, ``eval.py``); the networks are in
:mod:`mirprobe.extractors.sota_tagging_nets`.

Params ``model`` (``fcn`` | ``crnn`` | ``musicnn``) and ``dataset`` (``msd`` |
``jamendo`` | ``mtat``: the training set, which fixes the 50 tags of the head
and, for MusiCNN on MSD, a wider back end).

* **Audio**: 16 kHz mono (the repository's ``librosa.load(sr=16000)``); the
  mel spectrogram (96 HTK mel bands to 8 kHz, n_fft 512, hop 256, power in
  dB, then a 1-channel BatchNorm) is computed inside the model.
* **Chunks**, as ``eval.py``: the model sees windows of its training input
  length, 29 s (FCN, CRNN) or 3 s (MusiCNN); a clip gives ``n`` windows
  starting at ``i * ((length - input) // n)``; ``eval.py`` uses ``n = 16``
  (``chunks: 16``); by default ``n`` is the number of whole windows the clip
  holds (``length // input``). A clip shorter than one window is tiled
  (repeated) to one (``short_clips: tile``, default) or zero-padded
  (``zero_pad``). Every layer and the tag scores are averaged over a clip's
  windows (``eval.py`` averages the tag scores).
* **Layers**: each block's output pooled over frequency and time, its
  channel-wise mean and max concatenated (``[mean, max]``; a map of a single
  position is taken as is): FCN ``layer1``..``layer5`` (``layer5`` is 64 x 1
  x 1: the input of the tag head); CRNN ``layer1``..``layer4`` and ``gru``
  (the GRU's last step, the head's input); MusiCNN ``frontend`` (the five
  musically motivated filters' 561 channels), ``layer1``..``layer3`` (the
  residual back end), ``pooled`` (the model's own temporal max and mean of
  all of them, 1506-d, 4194-d for MSD) and ``dense1`` (the penultimate
  layer). ``tags`` is the head's 50 sigmoid scores, in the order of
  :data:`TAGS`. Defaults: FCN ``layer5``, CRNN ``gru``, MusiCNN ``pooled``.

Weights: ``weights`` null (default) means the published checkpoint of
(``dataset``, ``model``) in :data:`PRETRAINED` (the raw GitHub URL at its
commit, with its sha256), found offline in a weights folder or the cache
(see :mod:`mirprobe.extractors.torch_weights`). The state dicts load with
``weights_only=True`` and strictly. The MSD and Jamendo checkpoints are
upstream's (ffcd1f90); the MTAT ones are those of the fork
philtgun/music-tagging-benchmark (its commit e8f5b2e6, not verified equal
to upstream's); no MSD MusiCNN checkpoint has a known digest. Tag lists:
MSD ``split/msd/50tagList.txt``; Jamendo: ``TAGS`` of
``data_loader/jamendo_loader.py`` sorted, as its ``LabelBinarizer`` orders
the targets; MTAT: the standard top-50 order (musicnn's ``MTT_LABELS``),
which ``split/mtat/tags.npy`` (binary, unread here) is taken to hold; the
fixture tests check it on real clips.
"""

import numpy as np

from ..errors import ConfigError
from .base import Extractor, mono_float32
from .convnet_layers import LayersByModel, pooled_layers
from .torch_weights import (
    WEIGHTS_PARAMS,
    build_with_weights,
    check_weights_params,
    with_published,
)

SAMPLE_RATE = 16000
INPUT_SECONDS = {"fcn": 29, "crnn": 29, "musicnn": 3}
MODELS = tuple(INPUT_SECONDS)
DATASETS = ("msd", "jamendo", "mtat")

_UPSTREAM = (
    "https://raw.githubusercontent.com/minzwon/sota-music-tagging-models/"
    "ffcd1f90b97a1e923a50c6e5283f147cf9dd7dfd/models"
)
_FORK = (
    "https://raw.githubusercontent.com/philtgun/music-tagging-benchmark/"
    "e8f5b2e64b9ef8f255ae574558bb0e45bde9fc39/models"
)
#: (dataset, model) -> (URL, sha256, size in bytes) of the published state dict
PRETRAINED = {
    ("msd", "fcn"): (
        f"{_UPSTREAM}/msd/fcn/best_model.pth",
        "6012aa7eecf864a8081faedca56af054521e8dfb9c5c98659a3dd5d3e1e66f21",
        1902815,
    ),
    ("msd", "crnn"): (
        f"{_UPSTREAM}/msd/crnn/best_model.pth",
        "ebb99855ed0c83f38845db9cfb383dd6fc70938bc58701dcb66e18af9ee7fbea",
        1687711,
    ),
    ("jamendo", "fcn"): (
        f"{_UPSTREAM}/jamendo/fcn/best_model.pth",
        "7bce08a66dbc70d096b0a330f44b4cacd9aa25519b83489fbb98f2164a194e2b",
        1902815,
    ),
    ("jamendo", "crnn"): (
        f"{_UPSTREAM}/jamendo/crnn/best_model.pth",
        "0a558989c0793f488cb677d188464c91f47c007f7c70473230e55537ca598215",
        1687626,
    ),
    ("jamendo", "musicnn"): (
        f"{_UPSTREAM}/jamendo/musicnn/best_model.pth",
        "66280f4859376377c47f64313c7ac889a3201fdb06a01bf6e94ac6e619081bb5",
        3257168,
    ),
    ("mtat", "fcn"): (
        f"{_FORK}/mtat/fcn/best_model.pth",
        "3bfc67e43f3e180194ab5993c947ffbf44b1a23dcdf42c374b1ced9d4d4de72e",
        1902811,
    ),
    ("mtat", "musicnn"): (
        f"{_FORK}/mtat/musicnn/best_model.pth",
        "0a7ac8aa3daab3a1c59cae16a771b0bfa4064ac94502ebc990a5c32a2771e189",
        3257164,
    ),
}

_JAMENDO_TAGS = [
    "genre---downtempo", "genre---ambient", "genre---rock", "instrument---synthesizer",
    "genre---atmospheric", "genre---indie", "instrument---electricpiano", "genre---newage",
    "instrument---strings", "instrument---drums", "instrument---drummachine", "genre---techno",
    "instrument---guitar", "genre---alternative", "genre---easylistening",
    "genre---instrumentalpop", "genre---chillout", "genre---metal", "mood/theme---happy",
    "genre---lounge", "genre---reggae", "genre---popfolk", "genre---orchestral",
    "instrument---acousticguitar", "genre---poprock", "instrument---piano", "genre---trance",
    "genre---dance", "instrument---electricguitar", "genre---soundtrack", "genre---house",
    "genre---hiphop", "genre---classical", "mood/theme---energetic", "genre---electronic",
    "genre---world", "genre---experimental", "instrument---violin", "genre---folk",
    "mood/theme---emotional", "instrument---voice", "instrument---keyboard", "genre---pop",
    "instrument---bass", "instrument---computer", "mood/theme---film", "genre---triphop",
    "genre---jazz", "genre---funk", "mood/theme---relaxing",
]  # fmt: skip
#: the 50 tags of each training set, in the order of the head's outputs
TAGS = {
    "msd": (
        "rock", "pop", "alternative", "indie", "electronic", "female vocalists", "dance", "00s",
        "alternative rock", "jazz", "beautiful", "metal", "chillout", "male vocalists",
        "classic rock", "soul", "indie rock", "Mellow", "electronica", "80s", "folk", "90s",
        "chill", "instrumental", "punk", "oldies", "blues", "hard rock", "ambient", "acoustic",
        "experimental", "female vocalist", "guitar", "Hip-Hop", "70s", "party", "country",
        "easy listening", "sexy", "catchy", "funk", "electro", "heavy metal", "Progressive rock",
        "60s", "rnb", "indie pop", "sad", "House", "happy",
    ),
    "jamendo": tuple(sorted(_JAMENDO_TAGS)),
    "mtat": (
        "guitar", "classical", "slow", "techno", "strings", "drums", "electronic", "rock",
        "fast", "piano", "ambient", "beat", "violin", "vocal", "synth", "female", "indian",
        "opera", "male", "singing", "vocals", "no vocals", "harpsichord", "loud", "quiet",
        "flute", "woman", "male vocal", "no vocal", "pop", "soft", "sitar", "solo", "man",
        "classic", "choir", "voice", "new age", "dance", "male voice", "female vocal", "beats",
        "harp", "cello", "no voice", "weird", "country", "metal", "female voice", "choral",
    ),
}  # fmt: skip

LAYERS = {
    "fcn": ("layer1", "layer2", "layer3", "layer4", "layer5", "tags"),
    "crnn": ("layer1", "layer2", "layer3", "layer4", "gru", "tags"),
    "musicnn": ("frontend", "layer1", "layer2", "layer3", "pooled", "dense1", "tags"),
}
DEFAULT_LAYER = {"fcn": "layer5", "crnn": "gru", "musicnn": "pooled"}


class SotaTagger(LayersByModel, Extractor):
    """Won et al. 2020's FCN, CRNN or MusiCNN tagger (see the module docstring)."""

    name = "sota_tagger"
    conda_env = "torch.yaml"
    packages = ("torch",)
    sample_rate = SAMPLE_RATE
    wants_gpu = True
    #: those of the default model (fcn); default_layers_for gives each model's
    default_layers = (DEFAULT_LAYER["fcn"],)
    model_layers = LAYERS
    model_default_layer = DEFAULT_LAYER
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "model": {
                "enum": list(MODELS),
                "default": "fcn",
                "description": "Architecture: fcn, crnn or musicnn.",
            },
            "dataset": {
                "enum": list(DATASETS),
                "default": "msd",
                "description": "Training set of the checkpoint (and of its 50 tags).",
            },
            **WEIGHTS_PARAMS,
            "weights": {
                "type": ["string", "null"],
                "default": None,
                "description": "Checkpoint path or URL; null = the published checkpoint of "
                "(dataset, model).",
            },
            "chunks": {
                "type": ["integer", "null"],
                "minimum": 1,
                "default": None,
                "description": "Windows per clip (eval.py: 16); null = as many whole windows "
                "as the clip holds.",
            },
            "short_clips": {
                "enum": ["tile", "zero_pad"],
                "default": "tile",
                "description": "A clip shorter than one window is repeated (tile) or padded "
                "with zeros (zero_pad).",
            },
            "chunk_batch": {
                "type": "integer",
                "minimum": 1,
                "default": 8,
                "description": "Windows per forward pass.",
            },
        },
    }

    def __init__(self, *, params=None):
        super().__init__(params=params)
        key = (self.params["dataset"], self.params["model"])
        wants_published = self.params["weights"] is None and not self.params["random_weights"]
        if wants_published and key not in PRETRAINED:
            raise ConfigError(
                f"extractor {self.name!r}: no published {key[1]} checkpoint trained on "
                f"{key[0]} is known; give params weights and sha256, set random_weights, "
                f"or pick one of (dataset, model) {sorted(PRETRAINED)}"
            )
        self.params, self.size = with_published(self.params, PRETRAINED, key)
        check_weights_params(self.name, self.params)
        self.model = None

    @property
    def tags(self):
        """Names of the ``tags`` layer's 50 scores."""
        return TAGS[self.params["dataset"]]

    @property
    def input_length(self):
        return INPUT_SECONDS[self.params["model"]] * SAMPLE_RATE

    def load(self, *, device="cpu", dtype=None):
        from .sota_tagging_nets import build_network

        model = build_with_weights(
            name=f"{self.name} ({self.params['dataset']} {self.params['model']})",
            params=self.params,
            build=lambda: build_network(self.params["model"], self.params["dataset"]),
            size=self.size,
        )
        self.device = str(device)
        self.model = model.eval().to(self.device)
        return self

    def windows(self, y):
        """``(n, input_length)`` windows of one clip, placed as ``eval.py`` places them."""
        y = mono_float32(y)
        length = self.input_length
        if y.size < length:
            if self.params["short_clips"] == "zero_pad":
                return np.pad(y, (0, length - y.size))[None]
            return np.tile(y, -(-length // y.size))[:length][None]
        n = self.params["chunks"] or y.size // length
        hop = (y.size - length) // n
        return np.stack([y[i * hop : i * hop + length] for i in range(n)])

    def embed(self, batch, *, layers=None):
        layers = self.check_layers(layers or self.default_layers_for(self.params))
        if self.model is None:
            self.load(device=self.device)
        per_clip = [self.windows(y) for y in batch]
        pooled = pooled_layers(
            self.model,
            np.concatenate(per_clip),
            layers=layers,
            step=self.params["chunk_batch"],
            device=self.device,
        )
        bounds = np.cumsum([0] + [len(w) for w in per_clip])
        out = {}
        for layer, features in pooled.items():
            out[layer] = np.stack(
                [features[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
            ).astype(np.float32)
        return out
