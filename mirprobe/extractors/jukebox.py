"""Jukebox (5B) top-level prior activations, as probed by CALM.

Castellon, Donahue & Liang, "Codified audio language modeling learns useful
representations for music information retrieval" (ISMIR 2021), probe the
top-level prior of OpenAI's Jukebox 5B. This module reproduces the
extraction of their code (p-lambda/jukemir ``representations/jukebox/main.py``
and rodrigo-castellon/jukemirlib ``lib.py``):

1. **Audio**: mono at 44.1 kHz, peak-normalised (divided by ``max |y|`` when
   that is positive), then cut to its first ``encode_seconds`` (25 s, as
   jukemir) before encoding, so that the encoder sees the same right
   context as in the original.
2. **Tokens**: the top level of the VQ-VAE (128x downsampling, 2048 codes)
   encodes the audio; the first ``n_ctx`` = 8192 tokens are kept, i.e.
   8192 x 128 = 1,048,576 samples (23.78 s). Only the top-level encoder and
   codebook run (``vqvae.encode`` would also run the two lower levels, whose
   codes are not used).
3. **Conditioning**: the prior is conditioned as jukemir does: artist and
   genre ``unknown`` (id 0), a total length of 62 s
   (``62 * 44100 // 128 * 128`` samples) and offset 0; ``y_cond`` (artist +
   genre) replaces the first (start) position of the shifted token
   embedding, ``x_cond`` (the timing embedding) is added at every position
   with the learned positional embedding. The 5B top prior is a "merged
   decoder", so nothing is added after the blocks.
4. **Layers**: layer ``i`` (1..72) is the output of transformer block ``i``;
   the prior is built with only as many blocks as the deepest requested
   layer (jukemir builds ``prior_depth=36``; jukemirlib builds all 72 and
   stops early), and blocks past it are neither built, loaded nor run. The
   default is layer 36, CALM's choice. Blocks run as jukemirlib runs them
   (``block(x, sample=True)`` with the attention cache cleared before and
   after), which accepts sequences shorter than 8192 and equals the
   full-context ``prior.forward`` of jukemir on 8192 tokens (tested).
5. **Pooling**: each layer's activations are mean-pooled over the tokens
   (4800-d for 5B) in float32.

**Short clips** (``short_clips``; jukemir raises on clips under 8192
tokens): ``shorter`` (default, what jukemirlib does) runs the prior on the
clip's own tokens (``len(y) // 128`` of them) and pools over those;
``pad`` zero-pads the audio to the full context and pools over all 8192
tokens, silence included; ``error`` raises a DataError naming the length.
A clip under 128 samples has no token and always raises.

**Weights** (``architecture: 5b``): ``vqvae.pth.tar`` and
``prior_level_2.pth.tar``, OpenAI's original checkpoints, fetched into
``weights_dir`` with :func:`mirprobe.download.fetch` from ``vqvae_urls`` /
``prior_urls`` (tried in order) and verified against ``vqvae_sha256`` /
``prior_sha256``. The defaults are the published digests (Sheet Sage's
``sheetsage/assets/jukebox.json``, also quoted elsewhere) and every URL
seen in public code: OpenAI's blob storage (older code), jukemirlib's
Google Cloud Storage bucket, then OpenAI's CDN (the latest code; the
azureedge.net CDN was retired, openai/jukebox issue #312, so it is tried
last); put a working mirror in front. The prior's published size
(``PRIOR_SIZE``, 10,288,727,721 bytes) is checked before the 10 GB file is
hashed, so a truncated or foreign file fails at once, naming both sizes.
Setting a digest to ``null`` makes the error give a placed file's actual
sha256. When every URL fails, the ModelError lists each URL tried and its
error.

**Loading** is ``torch.load(weights_only=True)``: OpenAI's checkpoints are
dicts with ``model`` (the state dict), ``step``, and ``hps`` pickled as a
``jukebox.hparams.Hyperparams`` (a dict subclass). That one name is
allow-listed as plain ``dict`` (the hparams are read as a dict), so the
format loads without running pickled code. If a checkpoint still needs
other pickled objects, loading fails naming the file, and only the explicit
``allow_pickle: true`` (off by default; the checksum is always verified
first) falls back to ``weights_only=False``. Keys of blocks past the built
depth are skipped; any other missing or unexpected key is a ModelError.

**Random weights** (``random_weights: true``): the architecture with seeded
random initialisation (a baseline); the VQ-VAE codebook, which Jukebox
leaves at zero until training initialises it, is drawn from the random
encoder's output on a fixed seeded noise signal (as Jukebox's ``init_k``
does with data), so random codes are not all 0. ``architecture: tiny`` is a
test-sized model (4 blocks of width 32, 64-token context, 128x VQ-VAE) for
tests and offline demos.

**Reference check**: :func:`reference_error` reruns Sheet Sage's regression
pair for CALM's recipe (``legacy.wav``, ``legacy_ref.npy``: audio cut to
25 s, the first 8,192 top-level tokens, total length 62 s, 36 blocks, mean
over tokens; accepted at a summed absolute error under 0.01 in float32).

**Precision**: ``dtype: auto`` runs the blocks in float16 on CUDA (the
conv weights are converted as Jukebox's ``fp16_params`` does, activations
cast as jukemirlib's ``fp16=True``) and float32 on the CPU; embeddings,
conditioning and pooling are float32.

**Implementation choice**: the model classes come from ``jukebox-infer``
0.1.2 (MIT, PyPI), OpenAI's Jukebox code ported to PyTorch 2.x without
training code. It installs with our torch 2.13 (needs only ``unidecode``
beyond our stack), builds the real VQ-VAE and prior from hparams with
random weights on the CPU in well under a second at test size, and keeps
the original state-dict keys, so the original checkpoints load unchanged.
jukemirlib itself is not on PyPI and needs OpenAI's ``jukebox`` package
(PyTorch 1.x era, MPI); transformers' ``JukeboxModel`` was removed in
transformers 5 (we pin 5.23) and renames the keys. jukebox-infer's
``prior.forward`` and label conditioner assert CUDA tensors, so this module
computes the conditioning and runs the blocks itself from the same modules
(tests compare both against the library's own code paths).
"""

import sys
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError, ModelError
from .base import Extractor, mono_float32

SAMPLE_RATE = 44100
#: the original checkpoints' file names (also their names under weights_dir)
VQVAE_FILE = "vqvae.pth.tar"
PRIOR_FILE = "prior_level_2.pth.tar"
DEFAULT_VQVAE_URLS = [
    "https://openaipublic.blob.core.windows.net/jukebox/models/5b/vqvae.pth.tar",
    "https://storage.googleapis.com/jukebox-weights/vqvae.pth.tar",
    "https://openaipublic.azureedge.net/jukebox/models/5b/vqvae.pth.tar",
]
#: published sha256 digests of the checkpoints (see the module docstring)
VQVAE_SHA256 = "69745413a48e887f8a3fe91b972a6f7f434021a1ce911a99187b331eb48c059a"
PRIOR_SHA256 = "89a1dd14f5b2f9b16b3e73b53fa2138cc89fd96bb13249b4267fea471de92672"
#: published size of prior_level_2.pth.tar in bytes
PRIOR_SIZE = 10_288_727_721
#: Sheet Sage's reference check: summed absolute error accepted in float32
REFERENCE_TOLERANCE = 0.01
DEFAULT_PRIOR_URLS = [
    "https://openaipublic.blob.core.windows.net/jukebox/models/5b/prior_level_2.pth.tar",
    "https://storage.googleapis.com/jukebox-weights/prior_level_2.pth.tar",
    "https://openaipublic.azureedge.net/jukebox/models/5b/prior_level_2.pth.tar",
]
#: total length given to the timing conditioner, as jukemir (the 5B prior
#: was trained on 60-600 s songs)
COND_TOTAL_SECONDS = 62
#: blocks of the top-level prior per architecture
DEPTHS = {"5b": 72, "tiny": 4}
#: hparam overrides of the tiny architecture (on top of jukebox-infer's 5B sets)
TINY_VQVAE = {"emb_width": 16, "l_bins": 64, "width": 8, "depth": 1}
TINY_PRIOR = {"n_ctx": 64, "prior_width": 32, "heads": 2, "blocks": 8, "init_scale": 1.0}

_URLS = {"type": "array", "items": {"type": "string"}}


class Jukebox(Extractor):
    """Jukebox 5B top-prior block outputs, mean-pooled (see the module docstring)."""

    name = "jukebox"
    conda_env = "jukebox.yaml"
    packages = ("torch", "jukebox-infer", "librosa")
    sample_rate = SAMPLE_RATE
    min_input_samples = 128  # one top-level token of Jukebox-5B's VQ-VAE (hop 128)
    wants_gpu = True
    default_layers = ("36",)
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "architecture": {
                "type": "string",
                "enum": ["5b", "tiny"],
                "default": "5b",
                "description": "5b = Jukebox 5B (72 blocks, width 4800); tiny = a test-sized "
                "model (4 blocks).",
            },
            "random_weights": {
                "type": "boolean",
                "default": False,
                "description": "Seeded random weights (a baseline) instead of the checkpoints.",
            },
            "seed": {
                "type": "integer",
                "default": 0,
                "description": "Seed of the random initialisation (random_weights only).",
            },
            "weights_dir": {
                "type": "string",
                "default": "~/.cache/mirprobe/jukebox",
                "description": f"Directory holding (or receiving) {VQVAE_FILE} and {PRIOR_FILE}.",
            },
            "vqvae_urls": {
                **_URLS,
                "default": DEFAULT_VQVAE_URLS,
                "description": f"URLs of {VQVAE_FILE}, tried in order (put mirrors first).",
            },
            "vqvae_sha256": {
                "type": ["string", "null"],
                "default": VQVAE_SHA256,
                "description": f"sha256 of {VQVAE_FILE} (default: the published digest).",
            },
            "prior_urls": {
                **_URLS,
                "default": DEFAULT_PRIOR_URLS,
                "description": f"URLs of the 5B top prior {PRIOR_FILE}, tried in order.",
            },
            "prior_sha256": {
                "type": ["string", "null"],
                "default": PRIOR_SHA256,
                "description": f"sha256 of {PRIOR_FILE} (default: the published digest).",
            },
            "allow_pickle": {
                "type": "boolean",
                "default": False,
                "description": "Fall back to torch.load(weights_only=False) for a verified "
                "checkpoint that needs pickled objects (runs code from the file).",
            },
            "short_clips": {
                "type": "string",
                "enum": ["shorter", "pad", "error"],
                "default": "shorter",
                "description": "Clips under the 8192-token context: shorter = run on the clip's "
                "own tokens (jukemirlib); pad = zero-pad to the full context and pool over it; "
                "error = raise (jukemir).",
            },
            "encode_seconds": {
                "type": "number",
                "exclusiveMinimum": 0,
                "default": 25.0,
                "description": "Audio encoded before the first n_ctx tokens are kept (jukemir: "
                "25 s; at least the context is always encoded).",
            },
            "dtype": {
                "type": "string",
                "enum": ["auto", "float32", "float16"],
                "default": "auto",
                "description": "Block precision; auto = float16 on CUDA, float32 on the CPU.",
            },
        },
    }

    def __init__(self, *, params=None):
        super().__init__(params=params)
        if self.params["architecture"] not in DEPTHS:
            raise ConfigError(
                f"jukebox: unknown architecture {self.params['architecture']!r}; "
                f"known: {sorted(DEPTHS)}"
            )
        self.dtype = self.params["dtype"]
        self.vqvae = None
        self.prior = None
        self.depth = 0

    @classmethod
    def num_layers(cls, params):
        return DEPTHS[(params or {}).get("architecture", "5b")]

    @classmethod
    def available_layers(cls, params):
        return tuple(str(i) for i in range(1, cls.num_layers(params) + 1))

    @classmethod
    def default_layers_for(cls, params):
        """Layer 36 (CALM); the middle block of a smaller architecture."""
        n_layers = cls.num_layers(params)
        return ("36",) if n_layers >= 36 else (str((n_layers + 1) // 2),)

    # --- building and loading ---------------------------------------------------

    def load(self, *, device="cpu", dtype=None, layers=None):
        """Set the device; build now when ``layers`` is given, else at the first embed."""
        self.device = str(device)
        if dtype is not None:
            self.dtype = dtype
        self.vqvae = self.prior = None
        self.depth = 0
        if layers is not None:
            self._build(max(int(layer) for layer in self.check_layers(layers)))
        return self

    def _hparams(self, depth):
        from jukebox_infer.hparams import setup_hparams

        tiny = self.params["architecture"] == "tiny"
        n_ctx = TINY_PRIOR["n_ctx"] if tiny else 8192
        vqvae = setup_hparams(
            "vqvae",
            dict(sample_length=n_ctx * 128, restore_vqvae="", **(TINY_VQVAE if tiny else {})),
        )
        prior = setup_hparams(
            "prior_5b",
            dict(
                restore_prior="",
                prior_depth=depth,
                fp16_params=False,
                **(TINY_PRIOR if tiny else {}),
            ),
        )
        return vqvae, prior

    def _build(self, depth):
        import torch
        from jukebox_infer.make_models import make_prior, make_vqvae

        vqvae_hps, prior_hps = self._hparams(depth)
        paths = None if self.params["random_weights"] else self._checkpoint_paths()
        # jukebox-infer reports on stdout, which the workflow's scripts keep for data
        with redirect_stdout(sys.stderr), _seeded(self.params["seed"]):
            vqvae = make_vqvae(vqvae_hps, "cpu")
            prior = make_prior(prior_hps, vqvae, "cpu")
        if paths is None:
            init_random_codebook(vqvae, seed=self.params["seed"])
        else:
            _load_into(vqvae, self._read(paths["vqvae"]), path=paths["vqvae"])
            _load_into(prior, self._read(paths["prior"]), path=paths["prior"], depth=depth)
        if self._block_dtype() == torch.float16:
            from jukebox_infer.transformer.ops import _convert_conv_weights_to_fp16

            # before the move: the GPU then never holds the float32 blocks (measured on an
            # H100, 36 blocks peaked at 9.6 GiB converted after the move)
            prior.prior.transformer.apply(_convert_conv_weights_to_fp16)
        prior.eval().to(self.device)
        vqvae.eval().to(self.device)
        self.vqvae, self.prior, self.depth = vqvae, prior, depth
        self.y_cond, self.x_cond = label_conditioning(prior)

    def _block_dtype(self):
        import torch

        if self.dtype == "auto":
            return torch.float16 if self.device.startswith("cuda") else torch.float32
        return getattr(torch, self.dtype)

    def _checkpoint_paths(self):
        from ..download import Remote, fetch

        root = Path(self.params["weights_dir"]).expanduser()
        paths, problems = {}, []
        for key, filename in (("vqvae", VQVAE_FILE), ("prior", PRIOR_FILE)):
            checksum = self.params[f"{key}_sha256"]
            dest = root / filename
            if not checksum:
                problems.append(_missing_checksum(key, dest))
                continue
            if key == "prior" and checksum.lower() == PRIOR_SHA256:
                problem = _wrong_size(dest, PRIOR_SIZE)
                if problem:
                    problems.append(f"jukebox {key} checkpoint: {problem}")
                    continue
            remote = Remote(
                key=filename,
                path=filename,
                checksum=checksum,
                urls=tuple(self.params[f"{key}_urls"]),
            )
            try:
                paths[key] = fetch(remote, root=root)
            except DataError as error:
                problems.append(f"jukebox {key} checkpoint: {error}")
        if problems:
            raise ModelError("\n".join(problems))
        return paths

    def _read(self, path):
        return load_checkpoint(path, allow_pickle=self.params["allow_pickle"])

    # --- embedding ----------------------------------------------------------------

    def tokens(self, y):
        """Mono float audio -> ``(1, n)`` top-level VQ-VAE codes, ``n <= n_ctx``."""
        import torch

        n_ctx, hop = self.prior.n_ctx, int(self.prior.raw_to_tokens)
        context = n_ctx * hop
        y = mono_float32(y, allow_empty=True)
        peak = np.abs(y).max() if y.size else 0.0
        if peak > 0:
            y = y / peak
        encode = max(int(round(self.params["encode_seconds"] * self.sample_rate)), context)
        y = y[:encode]
        if len(y) < context:
            mode = self.params["short_clips"]
            if mode == "error":
                raise DataError(
                    f"jukebox: a clip of {len(y)} samples ({len(y) / self.sample_rate:.2f} s) is "
                    f"shorter than the {n_ctx}-token context ({context} samples); "
                    "short_clips: error"
                )
            if mode == "pad":
                y = np.pad(y, (0, encode - len(y)))
            elif len(y) < hop:
                raise DataError(
                    f"jukebox: a clip of {len(y)} samples is shorter than one token ({hop} samples)"
                )
        x = torch.from_numpy(np.ascontiguousarray(y)).to(self.device)[None, :, None]
        vqvae = self.vqvae
        hidden = vqvae.encoders[-1](vqvae.preprocess(x))[-1]
        return vqvae.bottleneck.level_blocks[-1].encode(hidden)[:, :n_ctx]

    def activations(self, z, *, layers):
        """``(N, D)`` tokens -> ``{layer: (N, D, width)}`` block outputs (jukemirlib's loop)."""
        prior = self.prior.prior
        n, length = z.shape
        h = prior.x_emb(z.long())
        h = _roll(h, 1)
        h[:, 0] = self.y_cond.view(1, prior.width).to(h.dtype)
        h = h + prior.pos_emb()[:length] + self.x_cond[:, :length]
        h = h.to(self._block_dtype())
        wanted = {int(layer) for layer in layers}
        out = {}
        for index, block in enumerate(prior.transformer._attn_mods[: max(wanted)], start=1):
            block.attn.del_cache()
            h = block(h, encoder_kv=None, sample=True)
            block.attn.del_cache()
            if index in wanted:
                out[str(index)] = h
        return out

    def embed(self, batch, *, layers):
        import torch

        layers = self.check_layers(layers)
        depth = max(int(layer) for layer in layers)
        if self.prior is None or depth > self.depth:
            self._build(depth)
        pooled = {layer: [None] * len(batch) for layer in layers}
        with torch.inference_mode():
            by_length = {}
            for index, y in enumerate(batch):
                z = self.tokens(y)
                by_length.setdefault(z.shape[1], []).append((index, z))
            for group in by_length.values():
                acts = self.activations(torch.cat([z for _, z in group]), layers=layers)
                for layer in layers:
                    means = acts[layer].float().mean(dim=1).cpu().numpy()
                    for row, (index, _) in enumerate(group):
                        pooled[layer][index] = means[row]
        return {layer: np.stack(rows).astype(np.float32) for layer, rows in pooled.items()}


def _roll(x, n):
    import torch

    return torch.cat((x[:, -n:], x[:, :-n]), dim=1)


@contextmanager
def _seeded(seed):
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def _missing_checksum(key, dest):
    text = f"jukebox {key} checkpoint: no {key}_sha256 configured"
    if dest.is_file():
        from ..download import file_checksum

        text += (
            f"; {dest} exists with sha256 {file_checksum(dest)}: verify it is OpenAI's "
            f"original file, then set {key}_sha256 to it"
        )
    else:
        text += f"; set {key}_sha256 to the sha256 of OpenAI's {dest.name} (placed at {dest})"
    return text


def _wrong_size(path, size):
    """Why ``path`` (when present) cannot be the published file of ``size`` bytes, or None."""
    if not path.is_file() or path.stat().st_size == size:
        return None
    return (
        f"{path} has {path.stat().st_size:,} bytes, but the published file has {size:,}: "
        "a truncated or different file; delete it to download it again"
    )


def reference_error(wav_path, ref_path, *, weights_dir, device="cpu", dtype="float32"):
    """Sheet Sage's Jukebox regression check: summed absolute error against ``ref_path``.

    ``wav_path`` is decoded as Sheet Sage does (mono, resampled to 44.1 kHz
    with resampy's ``kaiser_best`` when resampy is installed, else soxr's
    ``soxr_vhq``), then embedded with CALM's recipe at layer 36 from the
    checkpoints in ``weights_dir``. Returns ``(error, resampler)``; Sheet Sage
    accepts an error under ``REFERENCE_TOLERANCE`` in float32.
    """
    import importlib.util

    import librosa

    audio, rate = librosa.load(wav_path, sr=None, mono=True)
    resampler = "kaiser_best" if importlib.util.find_spec("resampy") else "soxr_vhq"
    if rate != SAMPLE_RATE:
        audio = librosa.resample(audio, orig_sr=rate, target_sr=SAMPLE_RATE, res_type=resampler)
    model = Jukebox(
        params={"weights_dir": str(weights_dir), "dtype": dtype, "short_clips": "error"}
    )
    features = model.load(device=device, layers=["36"]).embed([audio], layers=["36"])["36"][0]
    expected = np.load(ref_path)
    if expected.shape != features.shape:
        raise DataError(f"{ref_path}: shape {expected.shape}, expected {features.shape}")
    return float(np.abs(features.astype(np.float64) - expected).sum()), resampler


def init_random_codebook(vqvae, *, seed):
    """Give a randomly initialised VQ-VAE a non-degenerate top codebook.

    Jukebox leaves the codebook at zero until training initialises it (every
    code would be 0). The codes are drawn from a Gaussian with the
    per-dimension mean and std of the random encoder's output on a fixed
    seeded noise signal, so they depend only on the architecture and ``seed``.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    block = vqvae.bottleneck.level_blocks[-1]
    n_samples = 4 * block.k_bins * int(np.prod(vqvae.downsamples))
    noise = 2 * torch.rand(1, n_samples, 1, generator=generator) - 1
    with torch.no_grad():
        frames = vqvae.encoders[-1](vqvae.preprocess(noise))[-1][0].T  # (T, width)
        mean, std = frames.mean(0), frames.std(0).clamp_min(1e-6)
        block.k.copy_(mean + std * torch.randn(block.k.shape, generator=generator))
    return vqvae


def label_conditioning(top_prior):
    """``(y_cond (1, 1, W), x_cond (1, n_ctx, W))`` of jukemir's labels, on any device.

    What ``top_prior.get_cond(None, top_prior.get_y(labels, 0))`` gives for
    artist/genre ``unknown``, total length 62 s and offset 0 (jukemir's
    ``get_cond``), computed from the same modules without the library's
    CUDA-only type assertions.
    """
    import torch

    raw_to_tokens = int(top_prior.raw_to_tokens)
    total = (COND_TOTAL_SECONDS * SAMPLE_RATE // raw_to_tokens) * raw_to_tokens
    meta = dict(artist="unknown", genre="unknown", total_length=total, offset=0, lyrics="")
    labels = top_prior.labeller.get_batch_labels([meta], "cpu")
    y = top_prior.get_y(labels, 0)
    y = y[:, : y.shape[1] - top_prior.n_tokens]
    cond = top_prior.y_emb
    device = next(cond.parameters()).device
    y = y.to(device)
    total_length, offset, length, artist, genre = (
        y[:, 0:1],
        y[:, 1:2],
        y[:, 2:3],
        y[:, 3:4],
        y[:, 4:],
    )
    with torch.no_grad():
        artist_emb = cond.artist_emb.emb(artist)
        mask = (genre >= 0).float().unsqueeze(2)
        genre_emb = (cond.bow_genre_emb.emb(genre.clamp(0)) * mask).sum(dim=1, keepdim=True)
        start, end = offset.float(), (offset + length).float()
        total_length = total_length.float()
        pos_emb = (
            cond.total_length_emb(total_length)
            + cond.absolute_pos_emb(start, end)
            + cond.relative_pos_emb(start / total_length, end / total_length)
        )
    return genre_emb + artist_emb, pos_emb


def load_checkpoint(path, *, allow_pickle=False):
    """The ``model`` state dict of a Jukebox checkpoint (see the module docstring)."""
    import pickle
    import zipfile

    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint file not found")
    try:
        with torch.serialization.safe_globals([(dict, "jukebox.hparams.Hyperparams")]):
            checkpoint = torch.load(
                path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path)
            )
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        if not allow_pickle:
            raise ModelError(
                f"{path}: cannot be read with torch.load(weights_only=True) ({error}). If this is "
                "a trusted checkpoint (its checksum matched), set allow_pickle: true to load it "
                "with pickle, which runs code stored in the file"
            ) from error
        try:
            with _jukebox_module_alias():
                checkpoint = torch.load(path, map_location="cpu", weights_only=False)
        except Exception as error2:  # any failure of an arbitrary pickle
            raise ModelError(f"{path}: cannot be loaded ({error2})") from error2
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise ModelError(f"{path}: not a Jukebox checkpoint (no 'model' state dict)")
    return {k.removeprefix("module."): v for k, v in checkpoint["model"].items()}


@contextmanager
def _jukebox_module_alias():
    """Resolve the pickled ``jukebox.hparams`` to jukebox-infer's (same Hyperparams)."""
    import types

    import jukebox_infer.hparams

    names = ("jukebox", "jukebox.hparams")
    saved = {name: sys.modules.get(name) for name in names}
    if saved["jukebox.hparams"] is None:
        package = saved["jukebox"] or types.ModuleType("jukebox")
        package.hparams = jukebox_infer.hparams
        sys.modules.update({"jukebox": package, "jukebox.hparams": jukebox_infer.hparams})
    try:
        yield
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _load_into(model, state, *, path, depth=None):
    """Load ``state`` into ``model``, skipping the prior blocks at index >= ``depth``."""
    prefix = "prior.transformer._attn_mods."
    if depth is not None:
        state = {
            k: v
            for k, v in state.items()
            if not (k.startswith(prefix) and int(k[len(prefix) :].split(".")[0]) >= depth)
        }
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ModelError(
            f"{path}: does not fit the {type(model).__name__} architecture: "
            f"missing {result.missing_keys[:5]} ({len(result.missing_keys)}), "
            f"unexpected {result.unexpected_keys[:5]} ({len(result.unexpected_keys)})"
        )
    return model
