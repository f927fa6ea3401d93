"""MusicGen decoder activations and EnCodec latents, through transformers.

Both follow Jayanti, Kim & Donahue ("MusicGen representations for MIR
transfer learning"), who probe MusicGen as CALM/jukemir probes Jukebox:
frozen activations, mean-pooled over time, one probe per layer.

``musicgen`` (:class:`MusicGen`, 32 kHz, ``MusicgenForConditionalGeneration``)
    1. EnCodec (MusicGen's own 32 kHz audio tokenizer) encodes the audio to
       ``K`` = 4 parallel streams of codes at 50 Hz (``audio_encoder.encode``).
    2. The codes are laid out in MusicGen's **delay pattern**, the layout the
       language model was trained on (audiocraft ``DelayedPatternProvider``,
       transformers ``build_delay_pattern_mask``): step 0 holds the start token
       for every codebook and codebook ``k`` at step ``s`` holds code
       ``s - 1 - k`` (the start/pad token where that is out of range), so a
       window of ``T`` frames is a sequence of ``T + K`` steps.
       ``codebook_pattern: flat`` feeds the codes unshifted instead (an
       ablation; it is what ``MusicgenForConditionalGeneration.forward`` does
       with ``input_values``).
    3. The decoder LM runs on that sequence, conditioned on the text ``text``.
       The default empty text is MusicGen's null condition: as in audiocraft
       (an empty description gets a zero mask, and the projected T5 states
       are multiplied by it), the cross-attention input is one all-zero
       vector, so cross-attention adds nothing (its projections have no bias).
       ``empty_text: tokenized`` instead runs T5 on the tokenised empty string
       (just ``</s>``), which is what ``MusicgenProcessor(text="")`` feeds;
       which of the two the MusicGen probing paper used is not stated here.
       A non-empty ``text`` (the text-conditioning ablation) is tokenised with
       the checkpoint's T5 tokenizer and encoded by its T5 encoder.
    4. Layer ``0`` is the decoder input (summed code embeddings + sinusoidal
       positions); layer ``i`` (1..N) is the output of decoder block ``i``;
       layer ``N`` is taken after the final LayerNorm. These are exactly the
       ``decoder_hidden_states`` that transformers returns with
       ``output_hidden_states=True`` (25 for musicgen-small, 49 for medium and
       large). Each is mean-pooled over every step of the sequence.
    5. Only the layers asked for are computed: forward hooks read the blocks'
       outputs, and the hook on the deepest requested block ``k`` stops the
       forward pass (raises), so blocks ``k+1..N`` and the final LayerNorm
       never run; the final LayerNorm is applied only when ``N`` is asked for.

    **Long clips**: MusicGen was trained on 30 s excerpts (1500 frames; the
    positional table allows 2048 steps). A clip is cut into consecutive
    non-overlapping windows of ``window_seconds`` (default 30 s), each run
    independently; a tail shorter than ``min_tail_seconds`` (1 s) is dropped
    unless it is the whole clip. A clip's embedding is the mean over all
    steps of all its windows (each window weighted by its step count), i.e.
    the whole clip is mean-pooled, never more than one window in context.
    Windows of equal length are batched together through the decoder;
    EnCodec codes are computed window by window, so that the (discrete)
    codes of a clip never depend on what else is in its batch.

``encodec`` (:class:`EncodecLatents`, 32 kHz, ``EncodecModel``, default
``facebook/encodec_32khz`` = MusicGen's tokenizer)
    Layer ``encoder``: the continuous encoder output before quantisation
    (128-d at 50 Hz for the 32 kHz model); layer ``quantized``: the sum of the
    selected codebook vectors of the residual VQ (what EnCodec's decoder and,
    up to its embedding tables, MusicGen see). Both mean-pooled over frames,
    with the same windowing as ``musicgen``.

Weights: ``weights`` is a hub id or a local directory; models are read with
``from_pretrained(..., use_safetensors=True)`` and never with remote code.
For a hub id, ``revision`` (default ``main``; a 40-hex commit pins it) is
resolved once to a commit (from the hub, or offline from the Hugging Face
cache's ``refs/``); config, weights and tokenizer are all read at that commit,
and the feature profile's ``source`` (hence the provenance record) holds
``weights``, ``revision`` and ``commit``. ``main`` is the default because no
commit of the official checkpoints could be verified here; the commit actually
loaded is recorded either way. A local directory takes no revision.
``random_weights: true`` builds the same architecture from its config with
seeded random initialisation instead (a baseline; label it "random weights").
Random EnCodec codebooks (all zero in transformers) are drawn from a
Gaussian matched to the random encoder's output (and then to each
residual) on a fixed seeded noise signal, so random codes are not all 0.
``architecture: tiny`` is a built-in test-sized architecture (2 decoder
layers, 4 codebooks) for offline demos and tests; ``small``, ``medium`` and
``large`` are musicgen-small/medium/large at their published sizes, and
``melody`` is musicgen-melody's (the medium decoder, 12 chroma bins, 235
chroma steps) (``REAL_SIZES``; 32 kHz EnCodec, t5-base), for GPU runs and
benchmarks at exact sizes without the hub; all of them only exist with random
weights.

Precision: ``dtype: auto`` runs the decoder in float16 on CUDA and in float64
on the CPU; EnCodec runs in float32 on CUDA and in float64 on the CPU (its
codes must not change with precision). Pooling is done in float64 and features
are stored in float32. Why float64 on the CPU: in float32, the kernels torch
picks by CPU (ATen's SIMD level, MKL's and oneDNN's GEMMs) change last bits, a
last bit flips a near-tie EnCodec code (4 of 2,400 on a test signal) and the
probe then selects another configuration, so the same config gave other table
rows on another machine; float64, rounded to float32 at the end, gives the same
features on every x86-64 CPU (``tests/test_cpu_independence.py``). Random
weights are drawn in float64 for the same reason. ``dtype: float32`` is about
2x faster on the CPU (``bench/musicgen_portable.py``) but CPU-dependent.
"""

import json
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModelError
from .base import Extractor
from .windows import embed_windowed

SAMPLE_RATE = 32000

#: decoder blocks of the official mono checkpoints, so that layer names are
#: known while the Snakefile parses (without downloading a config)
KNOWN_DECODER_LAYERS = {
    "facebook/musicgen-small": 24,
    "facebook/musicgen-medium": 48,
    "facebook/musicgen-large": 48,
    "facebook/musicgen-melody": 48,
}
#: checkpoints of the MusicGen-Melody class (``MusicgenMelodyForConditionalGeneration``)
KNOWN_MELODY = ("facebook/musicgen-melody",)
MELODY_MODEL_TYPE = "musicgen_melody"
TINY_DECODER_LAYERS = 2

#: the hub checkpoints' published decoder sizes (fixtures' weights/SOURCES.md; melody: the
#: musicgen_melody_decoder config.json of fine-tunes of facebook/musicgen-melody), for
#: real-size random-weights builds without the hub: (hidden, blocks, heads, ffn)
REAL_SIZES = {
    "small": (1024, 24, 16, 4096),
    "medium": (1536, 48, 24, 6144),
    "large": (2048, 48, 32, 8192),
    "melody": (1536, 48, 24, 6144),
}
#: the built-in architectures of the MusicGen-Melody class
MELODY_ARCHITECTURES = ("tiny_melody", "melody")

_COMMON_PARAMS = {
    "random_weights": {
        "type": "boolean",
        "default": False,
        "description": "Build the architecture from its config with seeded random weights "
        "(a baseline) instead of loading the trained weights.",
    },
    "architecture": {
        "type": "string",
        "enum": ["from_weights", "tiny", "tiny_melody", "small", "medium", "large", "melody"],
        "default": "from_weights",
        "description": "from_weights = the architecture of `weights`; tiny / tiny_melody = "
        "built-in test-sized MusicGen / MusicGen-Melody architectures; small/medium/large/"
        "melody = musicgen-small/medium/large/melody's published sizes built without the "
        "hub (these need random_weights: true).",
    },
    "revision": {
        "type": "string",
        "minLength": 1,
        "default": "main",
        "description": "Hub revision of `weights` (branch, tag or 40-hex commit; a commit pins "
        "it); the commit it resolves to is recorded in provenance. Only for a hub id.",
    },
    "seed": {
        "type": "integer",
        "default": 0,
        "description": "Seed of the random initialisation (random_weights only).",
    },
    "window_seconds": {
        "type": "number",
        "exclusiveMinimum": 0,
        "default": 30.0,
        "description": "Clips are cut into consecutive windows of this length, each embedded "
        "on its own; the clip embedding is the mean over all windows' steps.",
    },
    "min_tail_seconds": {
        "type": "number",
        "minimum": 0,
        "default": 1.0,
        "description": "A last window shorter than this is dropped (unless it is the whole clip).",
    },
}


def _is_local(weights):
    return os.path.isdir(os.path.expanduser(weights)) or weights.startswith(
        ("/", "./", "../", "~", ".\\")
    )


def _check_weights_dir(weights):
    path = Path(os.path.expanduser(weights))
    if not path.is_dir():
        raise ModelError(f"weights directory {str(path)!r} does not exist")
    if not (path / "config.json").is_file():
        raise ModelError(f"weights directory {str(path)!r} has no config.json")
    return str(path)


def _pretrained(loader, weights, *, commit=None, **kwargs):
    """``loader.from_pretrained(weights)`` (at hub ``commit``) with a ModelError naming what
    failed."""
    if _is_local(weights):
        source, at = _check_weights_dir(weights), ""
    else:
        source, at = weights, f" at commit {commit}"
        kwargs["revision"] = commit
    try:
        return loader.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as error:
        raise ModelError(
            f"cannot load {loader.__name__} from {source!r}{at} ({error}); give a hub id that is "
            "reachable or already in the Hugging Face cache, or a local directory written "
            "by save_pretrained"
        ) from error


def hub_commit(weights, revision):
    """The commit that ``revision`` of hub repo ``weights`` points to now.

    Asked of the hub; offline (``HF_HUB_OFFLINE``, or the hub unreachable)
    read from the Hugging Face cache's ``refs/``; a 40-hex commit is itself.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RevisionResolutionError

    try:
        return HfApi().resolve_revision(weights, revision=revision).resolved
    except (RevisionResolutionError, OSError, ValueError) as error:
        raise ModelError(
            f"weights {weights!r}: cannot resolve revision {revision!r} to a commit ({error}); "
            "give a revision the hub has, or one already in the Hugging Face cache"
        ) from error


def _torch_dtype(name, device):
    import torch

    if name == "auto":
        return torch.float16 if str(device).startswith("cuda") else _base_dtype(device)
    return getattr(torch, name)


def _base_dtype(device):
    """What runs outside the decoder (EnCodec, text encoder, projections): float64 on the CPU,
    whose float32 last bits differ by CPU (see the module docstring), float32 elsewhere."""
    import torch

    return torch.float64 if str(device).startswith("cpu") else torch.float32


def tiny_encodec_config(*, hidden_size=32, num_filters=4, num_lstm_layers=1):
    """A 32 kHz EnCodec with 4 codebooks of 2048 codes at 50 Hz, like MusicGen's; small
    by default (the benchmark passes facebook/encodec_32khz's sizes)."""
    from transformers import EncodecConfig

    # transformers derives the number of quantizers from the last target bandwidth:
    # 1000 * 2.2 // (50 Hz * log2(2048)) = 4, as for facebook/encodec_32khz
    return EncodecConfig(
        sampling_rate=SAMPLE_RATE,
        upsampling_ratios=[8, 5, 4, 4],
        codebook_size=2048,
        target_bandwidths=[2.2],
        hidden_size=hidden_size,
        num_filters=num_filters,
        num_lstm_layers=num_lstm_layers,
        use_causal_conv=False,
        use_conv_shortcut=False,
        normalize=False,
    )


def tiny_musicgen_config():
    """A test-sized MusicGen: tiny 32 kHz EnCodec, 1-layer T5, 2-layer decoder."""
    from transformers import MusicgenConfig, MusicgenDecoderConfig, T5Config

    text = T5Config(vocab_size=128, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
    decoder = MusicgenDecoderConfig(
        vocab_size=2048,
        num_hidden_layers=TINY_DECODER_LAYERS,
        hidden_size=32,
        ffn_dim=64,
        num_attention_heads=2,
        num_codebooks=4,
        max_position_embeddings=2048,
    )
    return MusicgenConfig(text_encoder=text, audio_encoder=tiny_encodec_config(), decoder=decoder)


def tiny_musicgen_melody_config():
    """A test-sized MusicGen-Melody: the tiny MusicGen's parts, conditioning prepended
    (12 chroma bins projected to the decoder, 235 chroma frames as the checkpoint has)."""
    from transformers import MusicgenMelodyConfig, MusicgenMelodyDecoderConfig, T5Config

    text = T5Config(vocab_size=128, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
    decoder = MusicgenMelodyDecoderConfig(
        vocab_size=2048,
        num_hidden_layers=TINY_DECODER_LAYERS,
        hidden_size=32,
        ffn_dim=64,
        num_attention_heads=2,
        num_codebooks=4,
        max_position_embeddings=2048,
    )
    return MusicgenMelodyConfig(
        text_encoder=text.to_dict(),
        audio_encoder=tiny_encodec_config().to_dict(),
        decoder=decoder.to_dict(),
        num_chroma=12,
        chroma_length=235,
    )


#: MusicgenMelodyFeatureExtractor's defaults, which facebook/musicgen-melody's preprocessor uses
CHROMA = {"n_fft": 16384, "hop_length": 4096, "chunk_length": 30, "num_chroma": 12}


def melody_chroma(audio, *, sampling_rate=SAMPLE_RATE, **settings):
    """``(B, samples)`` float32 tensor -> ``(B, frames, num_chroma)`` one-hot chroma, computed as
    transformers' ``MusicgenMelodyFeatureExtractor`` (what MusicgenMelodyProcessor feeds)
    computes it from non-Demucs audio: each clip cut to ``chunk_length`` s (a shorter one is
    not padded: the extractor pads only to the longest clip of its batch, and the windows
    batched here have equal lengths; the model then repeats the frames to ``chroma_length``),
    zero-padded to ``n_fft`` if shorter, a power spectrogram (torchaudio's
    ``Spectrogram(normalized=True)``: periodic Hann window, centred, reflect padding, divided
    by the window's L2 norm), librosa's chroma filter bank, max-normalised, then the loudest
    bin set to 1 and the others to 0. That class needs torchaudio, which has no release for
    the pinned torch, so its steps are written out here (tests compare the two where
    torchaudio imports)."""
    import torch
    from transformers.audio_utils import chroma_filter_bank

    settings = CHROMA | settings
    n_fft, hop = settings["n_fft"], settings["hop_length"]
    n_samples = settings["chunk_length"] * sampling_rate
    audio = audio[:, :n_samples]
    if audio.shape[1] < n_fft:
        pad = n_fft - audio.shape[1]
        audio = torch.nn.functional.pad(audio, (pad // 2, pad // 2 + pad % 2))
    window = torch.hann_window(n_fft, device=audio.device)
    spec = torch.stft(
        audio,
        n_fft,
        hop_length=hop,
        win_length=n_fft,
        window=window,
        center=True,
        pad_mode="reflect",
        onesided=True,
        return_complex=True,
    )
    spec = (spec / window.pow(2).sum().sqrt()).abs().pow(2)
    filters = torch.from_numpy(
        chroma_filter_bank(
            sampling_rate=sampling_rate,
            num_frequency_bins=n_fft,
            tuning=0,
            num_chroma=settings["num_chroma"],
        )
    ).float()
    raw = torch.einsum("cf,...ft->...ct", filters.to(audio.device), spec)
    norm = torch.nn.functional.normalize(raw, p=float("inf"), dim=-2, eps=1e-6).transpose(1, 2)
    one_hot = torch.zeros_like(norm)
    return one_hot.scatter_(-1, norm.argmax(-1, keepdim=True), 1.0)


def real_size_encodec_config():
    """facebook/encodec_32khz's sizes (MusicGen's tokenizer) in the tiny config's layout."""
    return tiny_encodec_config(hidden_size=128, num_filters=64, num_lstm_layers=2)


def real_size_musicgen_config(size):
    """musicgen-``size`` (small, medium, large, melody) at its published sizes, random
    weights only: the decoder's hidden size, blocks, heads and ffn width, 4 codebooks of
    2048, the 32 kHz EnCodec and a t5-base text encoder; melody in the MusicGen-Melody class
    with 12 chroma bins and 235 chroma steps (transformers' and the preprocessor's 30 s)."""
    from transformers import (
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenMelodyConfig,
        MusicgenMelodyDecoderConfig,
        T5Config,
    )

    hidden, blocks, heads, ffn = REAL_SIZES[size]
    text = T5Config(d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12)  # t5-base
    melody = size in MELODY_ARCHITECTURES
    decoder = (MusicgenMelodyDecoderConfig if melody else MusicgenDecoderConfig)(
        vocab_size=2048,
        num_hidden_layers=blocks,
        hidden_size=hidden,
        ffn_dim=ffn,
        num_attention_heads=heads,
        num_codebooks=4,
        max_position_embeddings=2048,
    )
    if melody:
        return MusicgenMelodyConfig(
            text_encoder=text.to_dict(),
            audio_encoder=real_size_encodec_config().to_dict(),
            decoder=decoder.to_dict(),
            num_chroma=12,
            chroma_length=235,
        )
    return MusicgenConfig(
        text_encoder=text, audio_encoder=real_size_encodec_config(), decoder=decoder
    )


def init_random_codebooks(encodec, *, seed):
    """Give a randomly initialised EnCodec non-degenerate codebooks (transformers leaves them 0).

    Codebook ``q`` is drawn from a Gaussian with the per-dimension mean and
    std of what it quantises (the encoder output, then each residual) on a
    fixed seeded white-noise signal, so the result depends only on the
    architecture and ``seed``.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    weight = next(encodec.parameters())
    noise = 0.1 * torch.randn(
        1, 1, 4 * encodec.config.sampling_rate, generator=generator, dtype=weight.dtype
    )
    with torch.no_grad():
        residual = encodec.encoder(noise.to(weight.device))
        for layer in encodec.quantizer.layers:
            frames = residual.permute(0, 2, 1).reshape(-1, residual.shape[1])
            mean, std = frames.mean(0), frames.std(0).clamp_min(1e-6)
            draw = torch.randn(
                layer.codebook.embed.shape, generator=generator, dtype=layer.codebook.embed.dtype
            )
            layer.codebook.embed.copy_(mean.cpu() + std.cpu() * draw)
            layer.codebook.embed_avg.copy_(layer.codebook.embed)
            residual = residual - layer.decode(layer.encode(residual))
    return encodec


@contextmanager
def _seeded(seed):
    import torch

    # drawn in float64: float32 draws take a vectorised path whose last bits differ by CPU
    default_dtype = torch.get_default_dtype()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_default_dtype(torch.float64)
        try:
            yield
        finally:
            torch.set_default_dtype(default_dtype)


class _WindowedTransformersExtractor(Extractor):
    """Windowing, batching of equal-length windows and frame-weighted pooling
    (:mod:`mirprobe.extractors.windows`)."""

    sample_rate = SAMPLE_RATE
    conda_env = "torch.yaml"
    packages = ("torch", "transformers", "safetensors", "huggingface_hub")
    wants_gpu = True
    min_input_samples = 640  # one EnCodec frame (hop 640 at 32 kHz)

    def __init__(self, *, params=None):
        super().__init__(params=params)
        if self.params["architecture"] != "from_weights" and not self.params["random_weights"]:
            raise ConfigError(
                f"extractor {self.name!r}: architecture {self.params['architecture']!r} has no "
                "trained weights; "
                "set random_weights: true"
            )
        if _is_local(self.params["weights"]) and self.params["revision"] != "main":
            raise ConfigError(
                f"extractor {self.name!r}: revision {self.params['revision']!r} given for the "
                f"local directory {self.params['weights']!r}; a revision selects a hub commit"
            )
        self.model = None
        #: the hub commit the weights were read at (None: tiny, or a local directory)
        self.commit = None

    def _resolve_commit(self):
        """Resolve ``revision`` once (hub weights only); every file is then read at it."""
        if self.params["architecture"] == "from_weights" and not _is_local(self.params["weights"]):
            self.commit = hub_commit(self.params["weights"], self.params["revision"])
        return self.commit

    def source_record(self):
        """The weights read and, for a hub id, the revision asked and the commit loaded."""
        if self.params["architecture"] != "from_weights":
            return None  # built here from code, no file read
        weights = self.params["weights"]
        if _is_local(weights):
            return {
                "weights": str(Path(weights).expanduser().resolve()),
                "revision": None,
                "commit": None,
            }
        return {"weights": weights, "revision": self.params["revision"], "commit": self.commit}

    def load(self, *, device="cpu", dtype=None):
        self.device = str(device)
        self._build(dtype or self.params.get("dtype", "float32"))
        return self

    def _build(self, dtype):
        raise NotImplementedError

    def _embed_windows(self, windows, *, layers):
        """``(n_windows, n_samples)`` float32 tensor -> ``{layer: (sums, n_steps)}``."""
        raise NotImplementedError

    def embed(self, batch, *, layers):
        import torch

        layers = self.check_layers(layers)
        if self.model is None:
            self.load(device=self.device)

        def embed_windows(windows):
            audio = torch.from_numpy(np.stack(windows)).to(self.device)
            return self._embed_windows(audio, layers=layers)

        with torch.inference_mode():
            return embed_windowed(
                batch,
                layers=layers,
                window=int(round(self.params["window_seconds"] * self.sample_rate)),
                min_tail=int(round(self.params["min_tail_seconds"] * self.sample_rate)),
                embed_windows=embed_windows,
            )


class MusicGen(_WindowedTransformersExtractor):
    """MusicGen decoder hidden states, mean-pooled (see the module docstring)."""

    name = "musicgen"
    default_layers = ("0", "1", "2")
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "weights": {
                "type": "string",
                "default": "facebook/musicgen-small",
                "description": "Hub id (facebook/musicgen-small|medium|large|melody) or local "
                "directory "
                "written by save_pretrained; safetensors only, no remote code.",
            },
            **_COMMON_PARAMS,
            "text": {
                "type": "string",
                "default": "",
                "description": "Text condition; empty = no text (see empty_text); non-empty = "
                "the text-conditioning ablation.",
            },
            "conditioning": {
                "type": "string",
                "enum": ["none", "text", "audio"],
                "description": "What conditions the decoder: none (the unconditional path), text "
                "(the prompt `text`), audio (each window's own chroma through MusicGen-Melody's "
                "conditioner; melody weights only). Unset: text if `text` is non-empty, else none.",
            },
            "empty_text": {
                "type": "string",
                "enum": ["null", "tokenized"],
                "default": "null",
                "description": "How an empty text conditions the decoder: null = MusicGen's null "
                "condition (all-zero cross-attention input, as audiocraft does); tokenized = "
                "T5 run on the tokenised empty string (what transformers' processor gives).",
            },
            "codebook_pattern": {
                "type": "string",
                "enum": ["delay", "flat"],
                "default": "delay",
                "description": "delay = MusicGen's training layout of the 4 code streams; "
                "flat = unshifted codes (ablation).",
            },
            "dtype": {
                "type": "string",
                "enum": ["auto", "float32", "float16", "bfloat16"],
                "default": "auto",
                "description": "Decoder precision; auto = float16 on CUDA, float64 on the CPU "
                "(CPU-independent features; float32 is faster but not).",
            },
        },
    }

    def __init__(self, *, params=None):
        super().__init__(params=params)
        conditioning, text = self.conditioning, self.params["text"]
        if conditioning == "text" and not text:
            raise ConfigError("musicgen: conditioning 'text' needs a non-empty params.text")
        if conditioning != "text" and text:
            raise ConfigError(
                f"musicgen: params.text {text!r} given with conditioning {conditioning!r}; "
                "text is the prompt of conditioning: text"
            )
        if conditioning == "audio" and not self.is_melody(self.params):
            raise ConfigError(
                f"musicgen: conditioning 'audio' needs MusicGen-Melody weights "
                f"({', '.join(KNOWN_MELODY)}, a local musicgen_melody directory, or "
                f"architecture: tiny_melody | melody); {self.params['weights']!r} has no chroma "
                "conditioner"
            )

    @property
    def conditioning(self):
        """The effective conditioning: the param, or text/none from ``text``."""
        return self.params.get("conditioning") or ("text" if self.params["text"] else "none")

    @classmethod
    def is_melody(cls, params):
        """Whether the configured model is MusicGen-Melody, read without heavy imports."""
        params = params or {}
        architecture = params.get("architecture", "from_weights")
        if architecture != "from_weights":
            return architecture in MELODY_ARCHITECTURES
        weights = params.get("weights", cls.params_schema["properties"]["weights"]["default"])
        if weights in KNOWN_MELODY:
            return True
        config_path = Path(os.path.expanduser(weights)) / "config.json"
        if config_path.is_file():
            with open(config_path) as handle:
                return json.load(handle).get("model_type") == MELODY_MODEL_TYPE
        return False

    def source_record(self):
        """The weights record, plus the conditioning where it is configured or not none."""
        record = super().source_record()
        if self.params.get("conditioning") is None and self.conditioning == "none":
            return record  # the unconditional default records what it always did
        conditioning = {"conditioning": self.conditioning, "melody": self.is_melody(self.params)}
        if self.conditioning == "text":
            conditioning["text"] = self.params["text"]
        if self.conditioning == "audio":
            conditioning["chroma"] = {"of": "each window itself", **CHROMA}
        return (record or {}) | conditioning

    @classmethod
    def num_decoder_layers(cls, params):
        """Decoder blocks of the configured architecture, read without heavy imports."""
        params = params or {}
        if params.get("architecture") in ("tiny", "tiny_melody"):
            return TINY_DECODER_LAYERS
        if params.get("architecture") in REAL_SIZES:
            return REAL_SIZES[params["architecture"]][1]
        weights = params.get("weights", cls.params_schema["properties"]["weights"]["default"])
        if weights in KNOWN_DECODER_LAYERS:
            return KNOWN_DECODER_LAYERS[weights]
        config_path = Path(os.path.expanduser(weights)) / "config.json"
        if config_path.is_file():
            with open(config_path) as handle:
                return int(json.load(handle)["decoder"]["num_hidden_layers"])
        raise ConfigError(
            f"musicgen weights {weights!r}: number of layers unknown; use one of "
            f"{sorted(KNOWN_DECODER_LAYERS)} or a local directory with a config.json"
        )

    @classmethod
    def available_layers(cls, params):
        return tuple(str(i) for i in range(cls.num_decoder_layers(params) + 1))

    @classmethod
    def default_layers_for(cls, params):
        """Every layer, as the MusicGen probing paper does."""
        return cls.available_layers(params)

    def _build(self, dtype):
        from transformers import (
            MusicgenConfig,
            MusicgenForConditionalGeneration,
            MusicgenMelodyConfig,
            MusicgenMelodyForConditionalGeneration,
        )

        params = self.params
        melody = self.is_melody(params)
        config_class, model_class = (
            (MusicgenMelodyConfig, MusicgenMelodyForConditionalGeneration)
            if melody
            else (MusicgenConfig, MusicgenForConditionalGeneration)
        )
        commit = self._resolve_commit()
        if params["random_weights"]:
            if params["architecture"] == "tiny":
                config = tiny_musicgen_config()
            elif params["architecture"] == "tiny_melody":
                config = tiny_musicgen_melody_config()
            elif params["architecture"] in REAL_SIZES:
                config = real_size_musicgen_config(params["architecture"])
            else:
                config = _pretrained(config_class, params["weights"], commit=commit)
            with _seeded(params["seed"]):
                model = model_class(config)
            init_random_codebooks(model.audio_encoder, seed=params["seed"])
        else:
            model = _pretrained(model_class, params["weights"], commit=commit, use_safetensors=True)
        config = model.config
        if (config.model_type == MELODY_MODEL_TYPE) != melody:
            raise ModelError(
                f"musicgen weights {params['weights']!r} are of model type "
                f"{config.model_type!r}, not the expected "
                f"{MELODY_MODEL_TYPE if melody else 'musicgen'!r}"
            )
        self.melody = melody
        if config.decoder.audio_channels != 1:
            raise ModelError(
                f"musicgen weights {params['weights']!r} are a stereo model; only mono "
                "MusicGen checkpoints are supported"
            )
        if config.audio_encoder.sampling_rate != self.sample_rate:
            raise ModelError(
                f"musicgen weights {params['weights']!r}: EnCodec runs at "
                f"{config.audio_encoder.sampling_rate} Hz, expected {self.sample_rate}"
            )
        n_layers = len(model.decoder.model.decoder.layers)
        if n_layers != self.num_decoder_layers(params):
            raise ModelError(
                f"musicgen weights {params['weights']!r}: {n_layers} decoder layers, "
                f"expected {self.num_decoder_layers(params)}"
            )
        model.eval().to(device=self.device, dtype=_base_dtype(self.device))
        model.decoder.to(_torch_dtype(dtype, self.device))
        self.model = model
        self.decoder = model.decoder.model.decoder  # the MusicgenDecoder stack
        self.text_states = None
        self.text_mask = None
        if self.melody:
            # MusicGen-Melody prepends its conditioning to the decoder input (no cross-attention)
            if self.conditioning == "text":
                self.text_states, _ = self._encode_text(params["text"])
        elif params["text"] or params["empty_text"] == "tokenized":
            self.text_states, self.text_mask = self._encode_text(params["text"])

    def chroma(self, audio):
        """``(B, samples)`` float32 audio -> ``(B, frames, 12)`` one-hot chroma (see
        :func:`melody_chroma`)."""
        return melody_chroma(audio.float()).to(self.device)

    def melody_prefix(self, bsz, *, chroma=None):
        """The states MusicGen-Melody prepends to the decoder input, as its forward builds them:
        the projected chroma (given, or transformers' default one-hot bin 0 when only text
        conditions) repeated/cut to ``chroma_length``, then the text states if any."""
        import torch

        model, config = self.model, self.model.config
        if chroma is None and self.text_states is None:
            return None  # conditioning none: no prefix, as transformers without inputs
        if chroma is None:
            chroma = torch.zeros((bsz, 1, config.num_chroma), device=self.device)
            chroma[:, :, 0] = 1
        states = chroma.to(model.audio_enc_to_dec_proj.weight.dtype)
        if config.num_chroma != config.decoder.hidden_size:
            states = model.audio_enc_to_dec_proj(states)
        if states.shape[1] < config.chroma_length:
            states = states.repeat(1, -(-config.chroma_length // states.shape[1]), 1)
        states = states[:, : config.chroma_length]
        if self.text_states is not None:
            states = torch.cat([states, self.text_states.expand(bsz, -1, -1)], dim=1)
        return states.to(self.decoder.layer_norm.weight.dtype)

    def _encode_text(self, text):
        import torch
        from transformers import AutoTokenizer

        weights = self.params["weights"]
        if self.params["architecture"] != "from_weights":
            raise ConfigError(
                f"musicgen: the built-in {self.params['architecture']!r} architecture has no "
                "tokenizer; text must be ''"
            )
        tokenizer = _pretrained(AutoTokenizer, weights, commit=self.commit)
        inputs = tokenizer([text], return_tensors="pt").to(self.device)
        if inputs["input_ids"].shape[1] == 0:
            raise ModelError(f"musicgen: the tokenizer of {weights!r} gives no tokens for {text!r}")
        with torch.inference_mode():
            states = self.model.text_encoder(**inputs).last_hidden_state
            config = self.model.config
            if config.text_encoder.hidden_size != config.decoder.hidden_size and (
                self.melody or config.decoder.cross_attention_hidden_size is None
            ):
                states = self.model.enc_to_dec_proj(states)
            states = states * inputs["attention_mask"][..., None]
        return states.to(self.decoder.layer_norm.weight.dtype), inputs["attention_mask"]

    def delay_pattern(self, codes):
        """``(B, K, T)`` codes -> ``(B, K, T + K)`` in MusicGen's delay layout."""
        import torch

        decoder_config = self.model.config.decoder
        start = getattr(decoder_config, "bos_token_id", None)
        if start is None:
            start = decoder_config.pad_token_id
        bsz, n_codebooks, n_frames = codes.shape
        out = torch.full(
            (bsz, n_codebooks, n_frames + n_codebooks),
            start,
            dtype=codes.dtype,
            device=codes.device,
        )
        for k in range(n_codebooks):
            out[:, k, k + 1 : k + 1 + n_frames] = codes[:, k]
        return out

    def codes(self, audio):
        """``(B, samples)`` float32 audio -> ``(B, K, T)`` EnCodec codes.

        Each window is encoded on its own: batched convolutions round
        differently with the batch size, and a rounding difference can flip a
        near-tie code, so batching EnCodec would make a clip's codes depend on
        its batch. (EnCodec is a small fraction of the cost.)
        """
        import torch

        codes = []
        for window in audio:
            encoded = self.model.audio_encoder.encode(
                window[None, None, :].to(self.model.audio_encoder.dtype)
            )
            if encoded.audio_codes.shape[0] != 1:
                raise ModelError(
                    f"EnCodec returned {encoded.audio_codes.shape[0]} chunks; expected 1 "
                    "(chunk_length_s must be None)"
                )
            codes.append(encoded.audio_codes[0])
        return torch.cat(codes)

    def _embed_windows(self, audio, *, layers, condition_audio=None):
        """Pooled decoder states of ``audio``'s windows; with audio conditioning, the chroma is
        that of ``condition_audio`` (default: the windows themselves)."""
        import torch

        codes = self.codes(audio)
        if self.params["codebook_pattern"] == "delay":
            codes = self.delay_pattern(codes)
        bsz, n_codebooks, n_steps = codes.shape
        if n_steps > self.decoder.max_target_positions:
            raise ConfigError(
                f"musicgen: a window of {audio.shape[1] / self.sample_rate:.1f} s is {n_steps} "
                f"steps, more than the model's {self.decoder.max_target_positions}; lower "
                "window_seconds"
            )
        depth = max(int(layer) for layer in layers)
        n_layers = len(self.decoder.layers)
        dtype = self.decoder.layer_norm.weight.dtype
        prefix = 0
        if self.melody:
            chroma = None
            if self.conditioning == "audio":
                chroma = self.chroma(audio if condition_audio is None else condition_audio)
            states, mask = self.melody_prefix(bsz, chroma=chroma), None
            prefix = 0 if states is None else states.shape[1]
            if prefix + n_steps > self.decoder.max_target_positions:
                raise ConfigError(
                    f"musicgen: {prefix} conditioning + {n_steps} code steps exceed the model's "
                    f"{self.decoder.max_target_positions} positions; lower window_seconds"
                )
        elif self.text_states is None:
            states = torch.zeros((bsz, 1, self.decoder.d_model), dtype=dtype, device=self.device)
            mask = None
        else:
            states = self.text_states.expand(bsz, -1, -1)
            mask = self.text_mask.expand(bsz, -1)

        hidden = {}
        blocks = self.decoder.layers

        def keep(index):
            def hook(module, args, output):
                hidden[index] = output[0] if isinstance(output, tuple) else output
                if index == depth:
                    raise _StopForward  # blocks beyond `depth` (and the final norm) never run

            return hook

        def keep_input(module, args, kwargs):
            hidden[0] = args[0] if args else kwargs["hidden_states"]
            if depth == 0:
                raise _StopForward

        handles = [blocks[0].register_forward_pre_hook(keep_input, with_kwargs=True)]
        handles += [blocks[i - 1].register_forward_hook(keep(i)) for i in range(1, depth + 1)]
        try:
            self.decoder(
                input_ids=codes.reshape(bsz * n_codebooks, n_steps),
                encoder_hidden_states=states,
                encoder_attention_mask=mask,
                use_cache=False,
            )
        except _StopForward:
            pass
        finally:
            for handle in handles:
                handle.remove()
        if depth == n_layers:
            hidden[n_layers] = self.decoder.layer_norm(hidden[n_layers])
        # MusicGen-Melody's prepended conditioning steps are not pooled: only the code steps
        pooled = {
            layer: hidden[int(layer)][:, prefix:].double().mean(dim=1).cpu().numpy()
            for layer in layers
        }
        return pooled, n_steps


class _StopForward(Exception):
    """Raised by a forward hook once the deepest requested layer is computed."""


class EncodecLatents(_WindowedTransformersExtractor):
    """EnCodec (32 kHz) encoder latents, mean-pooled (see the module docstring)."""

    name = "encodec"
    default_layers = ("encoder",)
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "weights": {
                "type": "string",
                "default": "facebook/encodec_32khz",
                "description": "Hub id or local directory of a 32 kHz EnCodec (MusicGen's "
                "tokenizer); safetensors only, no remote code.",
            },
            **_COMMON_PARAMS,
        },
    }

    @classmethod
    def available_layers(cls, params):
        return ("encoder", "quantized")

    def _build(self, dtype):
        from transformers import EncodecConfig, EncodecModel

        params = self.params
        commit = self._resolve_commit()
        if params["random_weights"]:
            if params["architecture"] == "tiny":
                config = tiny_encodec_config()
            elif params["architecture"] in REAL_SIZES:
                config = real_size_encodec_config()
            else:
                config = _pretrained(EncodecConfig, params["weights"], commit=commit)
            with _seeded(params["seed"]):
                model = EncodecModel(config)
            init_random_codebooks(model, seed=params["seed"])
        else:
            model = _pretrained(
                EncodecModel, params["weights"], commit=commit, use_safetensors=True
            )
        if model.config.sampling_rate != self.sample_rate:
            raise ModelError(
                f"encodec weights {params['weights']!r} run at {model.config.sampling_rate} Hz; "
                f"expected {self.sample_rate} (MusicGen's tokenizer, facebook/encodec_32khz)"
            )
        self.model = model.eval().to(device=self.device, dtype=_base_dtype(self.device))

    def _embed_windows(self, audio, *, layers):
        model = self.model
        latents = model.encoder(audio[:, None, :].to(model.dtype))  # (B, D, T)
        pooled = {"encoder": latents}
        if "quantized" in layers:
            codes = model.quantizer.encode(latents, model.config.target_bandwidths[-1])
            pooled["quantized"] = model.quantizer.decode(codes)
        n_frames = latents.shape[-1]
        return (
            {layer: pooled[layer].double().mean(dim=-1).cpu().numpy() for layer in layers},
            n_frames,
        )
