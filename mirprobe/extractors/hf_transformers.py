"""Any transformers audio encoder by configuration (``extractor: transformers``).

``params: {model: <hub id or local folder>}``; the checkpoint is read with
transformers' Auto classes (``AutoConfig``, ``AutoModel``,
``AutoFeatureExtractor``), weights from safetensors only, remote code only
with an explicit ``trust_remote_code: true`` (recorded in provenance). An
encoder-decoder checkpoint (Whisper) contributes its encoder.

Layers: ``"0"`` .. ``"N"`` are transformers' ``hidden_states`` of the encoder
(``output_hidden_states=True``): ``0`` the input of the first block, ``i``
the output of block ``i`` (``N`` as transformers returns it, after a final
LayerNorm where the architecture applies one there, e.g. Whisper). All of
them when ``layers`` is omitted.

**Truncation**: only blocks ``1..k`` run, ``k`` the deepest requested layer;
the encoder's block list is cut to its first ``k`` blocks for the forward
pass (and restored after). Layer ``k < N`` is read from the output of block
``k`` (a forward hook), so that a final LayerNorm some architectures apply to
the last entry of ``hidden_states`` is not applied to it.

**Sample rate and normalisation** come from the checkpoint's feature
extractor (``preprocessor_config.json``): its ``sampling_rate`` is the rate
the workflow resamples to, and the feature extractor itself turns each window
into the model's input (wav2vec2/HuBERT zero-mean unit-variance
normalisation, AST/Whisper filterbanks). The rate must be known while the
Snakefile parses: it is read from a local folder's
``preprocessor_config.json``, or, for a hub id, from the Hugging Face cache
(offline), or else from ``params.sample_rate``; a declared rate that differs
from the checkpoint's is an error when the model loads. ``do_normalize``
overrides the feature extractor's own (MARBLE's ``processor_normalize``, which
sets it per model); the value used is in the provenance record either way. The number of blocks
is found the same way (``config.json``; ``params.num_layers``).

**Windows**: a clip is cut into consecutive windows of ``window_seconds``
(default: what the feature extractor accepts -- Whisper's 30 s, AST's
``max_length`` frames -- else 30 s); a tail shorter than
``min_tail_seconds`` is dropped unless it is the whole clip. Windows of equal
length are batched together. Each requested hidden state is pooled over time
(``pooling: mean``, or ``max``) within a window; a clip's embedding is the
step-weighted mean over its windows. Whisper pads every window to 30 s: only
the encoder frames covering the audio are pooled. AST's tokens are a
frequency x time patch grid over its padded input and are all pooled.

``random_weights: true`` builds the checkpoint's architecture from its
config with seeded random initialisation (a baseline row). ``dtype: auto`` is
float16 on CUDA, float32 on the CPU; pooling is in float32.
"""

import json
import math
import os
from pathlib import Path

from ..errors import ConfigError, ModelError
from .base import Extractor
from .musicgen import _is_local, _seeded, _torch_dtype, hub_commit
from .windows import embed_windowed

#: attribute paths of an encoder's block list, by architecture family
_BLOCK_LISTS = ("encoder.layers", "encoder.layer", "layers", "layer")


def _read_checkpoint_json(params, filename):
    """``filename`` of the checkpoint as a dict, read without loading a model: from the
    local folder, or from the Hugging Face cache for a hub id; None where absent."""
    model = params["model"]
    if _is_local(model):
        path = Path(os.path.expanduser(model)) / filename
        if not path.is_file():
            return None
    else:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(model, filename, revision=params.get("revision", "main"))
        if not isinstance(path, str):
            return None
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        raise ConfigError(f"transformers model {model!r}: cannot read {path} ({error})") from error


def _num_blocks_of(config):
    """Encoder blocks declared by a config.json mapping."""
    if config.get("is_encoder_decoder") and "encoder_layers" in config:
        return int(config["encoder_layers"])
    for key in ("num_hidden_layers", "encoder_layers", "num_layers"):
        if key in config:
            return int(config[key])
    return None


def _install_output_capturing(model):
    """Install transformers' hidden-state recorders on every block now: transformers >= 5
    installs them on a model's first forward pass, on the blocks present then, and a first
    pass on a truncated block list would leave the deeper blocks unrecorded for good."""
    try:
        from transformers.utils.output_capturing import maybe_install_capturing_hooks
    except ImportError:  # older transformers collect hidden states in the forward loop
        return
    maybe_install_capturing_hooks(model)


class TransformersEncoder(Extractor):
    """Hidden states of any transformers audio encoder, pooled (see the module docstring)."""

    name = "transformers"
    conda_env = "torch.yaml"
    packages = ("torch", "transformers", "safetensors", "huggingface_hub")
    wants_gpu = True
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["model"],
        "properties": {
            "model": {
                "type": "string",
                "minLength": 1,
                "description": "Hub id (e.g. facebook/wav2vec2-base) or a local folder written "
                "by save_pretrained (config.json, preprocessor_config.json, safetensors).",
            },
            "revision": {
                "type": "string",
                "minLength": 1,
                "default": "main",
                "description": "Hub revision (branch, tag or 40-hex commit); the commit it "
                "resolves to is recorded in provenance. Only for a hub id.",
            },
            "trust_remote_code": {
                "type": "boolean",
                "default": False,
                "description": "Run the checkpoint's own Python code (off unless opted in; "
                "recorded in provenance with the hub commit).",
            },
            "sample_rate": {
                "type": ["integer", "null"],
                "minimum": 1,
                "default": None,
                "description": "The feature extractor's sampling_rate, needed while the "
                "workflow parses when it cannot be read (a hub id not in the local cache).",
            },
            "num_layers": {
                "type": ["integer", "null"],
                "minimum": 1,
                "default": None,
                "description": "The encoder's number of blocks, when config.json cannot be read "
                "at parse time (a hub id not in the local cache).",
            },
            "do_normalize": {
                "type": ["boolean", "null"],
                "default": None,
                "description": "Override the feature extractor's do_normalize (zero-mean "
                "unit-variance input, wav2vec2/HuBERT); null = the checkpoint's "
                "preprocessor_config.json. The value used is recorded in provenance.",
            },
            "pooling": {
                "type": "string",
                "enum": ["mean", "max"],
                "default": "mean",
                "description": "How each hidden state is pooled over time.",
            },
            "window_seconds": {
                "type": ["number", "null"],
                "exclusiveMinimum": 0,
                "default": None,
                "description": "Window length; null = the feature extractor's input length "
                "(Whisper 30 s, AST max_length frames), else 30 s.",
            },
            "min_tail_seconds": {
                "type": "number",
                "minimum": 0,
                "default": 1.0,
                "description": "A last window shorter than this is dropped (unless it is the "
                "whole clip).",
            },
            "model_class": {
                "type": ["string", "null"],
                "pattern": "^[A-Z][A-Za-z0-9]*Model$",
                "default": None,
                "description": "A transformers class to load the checkpoint with instead of "
                "AutoModel (e.g. HubertModel for MERT, whose config names remote code).",
            },
            "weights_sha256": {
                "type": ["string", "null"],
                "pattern": "^[0-9a-fA-F]{64}$",
                "default": None,
                "description": "sha256 of the checkpoint's weights file; with it a pickle "
                "pytorch_model.bin (read weights_only) is accepted. Without it: safetensors only.",
            },
            "random_weights": {
                "type": "boolean",
                "default": False,
                "description": "The architecture with seeded random weights (a baseline row).",
            },
            "seed": {
                "type": "integer",
                "default": 0,
                "description": "Seed of the random initialisation (random_weights only).",
            },
            "dtype": {
                "type": "string",
                "enum": ["auto", "float32", "float16", "bfloat16"],
                "default": "auto",
                "description": "Encoder precision; auto = float16 on CUDA, float32 on CPU.",
            },
        },
    }

    def __init__(self, *, params=None):
        super().__init__(params=params)
        if _is_local(self.params["model"]) and self.params["revision"] != "main":
            raise ConfigError(
                f"extractor 'transformers': revision {self.params['revision']!r} given for the "
                f"local folder {self.params['model']!r}; a revision selects a hub commit"
            )
        self.sample_rate = self.sample_rate_for(self.params)
        # the shortest wav2vec2-style convolutional front end takes 25 ms
        self.min_input_samples = max(1, self.sample_rate // 40)
        self.model = None
        self.feature_extractor = None
        self.commit = None
        self.weights_file = None

    @classmethod
    def _filled(cls, params):
        defaults = {
            key: spec["default"]
            for key, spec in cls.params_schema["properties"].items()
            if "default" in spec
        }
        return defaults | dict(params or {})

    @classmethod
    def sample_rate_for(cls, params):
        """The checkpoint's feature-extractor sampling rate, known without loading it."""
        params = cls._filled(params)
        preprocessor = _read_checkpoint_json(params, "preprocessor_config.json")
        if preprocessor is not None and "sampling_rate" in preprocessor:
            rate = int(preprocessor["sampling_rate"])
            declared = params["sample_rate"]
            if declared is not None and declared != rate:
                raise ConfigError(
                    f"transformers model {params['model']!r}: params.sample_rate {declared} "
                    f"but its preprocessor_config.json says {rate}"
                )
            return rate
        if params["sample_rate"] is not None:
            return int(params["sample_rate"])
        raise ConfigError(
            f"transformers model {params['model']!r}: sample rate unknown while parsing (no "
            "readable preprocessor_config.json locally or in the Hugging Face cache); declare "
            "params.sample_rate (the feature extractor's sampling_rate)"
        )

    @classmethod
    def num_blocks(cls, params):
        params = cls._filled(params)
        config = _read_checkpoint_json(params, "config.json")
        blocks = _num_blocks_of(config) if config is not None else None
        declared = params["num_layers"]
        if blocks is not None:
            if declared is not None and declared != blocks:
                raise ConfigError(
                    f"transformers model {params['model']!r}: params.num_layers {declared} but "
                    f"its config.json has {blocks} encoder blocks"
                )
            return blocks
        if declared is not None:
            return int(declared)
        raise ConfigError(
            f"transformers model {params['model']!r}: number of layers unknown while parsing "
            "(no readable config.json locally or in the Hugging Face cache); declare "
            "params.num_layers"
        )

    @classmethod
    def available_layers(cls, params):
        return tuple(str(i) for i in range(cls.num_blocks(params) + 1))

    @classmethod
    def default_layers_for(cls, params):
        return cls.available_layers(params)

    def source_record(self):
        """The checkpoint read, the commit loaded, and whether its own code ran."""
        model = self.params["model"]
        local = _is_local(model)
        return {
            "model": str(Path(model).expanduser().resolve()) if local else model,
            "revision": None if local else self.params["revision"],
            "commit": self.commit,
            "trust_remote_code": self.params["trust_remote_code"],
            "random_weights": self.params["random_weights"],
            "model_class": type(self.model).__name__ if self.model is not None else None,
            "weights_sha256": self.params["weights_sha256"],
            # the input normalisation used: the checkpoint's, or params.do_normalize
            "do_normalize": None
            if self.feature_extractor is None
            else getattr(self.feature_extractor, "do_normalize", None),
        }

    def _source_kwargs(self):
        model = self.params["model"]
        if _is_local(model):
            path = Path(os.path.expanduser(model))
            if not (path / "config.json").is_file():
                raise ModelError(f"transformers model folder {str(path)!r} has no config.json")
            return str(path), {}
        if self.commit is None:
            self.commit = hub_commit(model, self.params["revision"])
        return model, {"revision": self.commit}

    def _pretrained(self, loader, **kwargs):
        source, extra = self._source_kwargs()
        try:
            return loader.from_pretrained(
                source, trust_remote_code=self.params["trust_remote_code"], **extra, **kwargs
            )
        except (OSError, ValueError) as error:
            raise ModelError(
                f"cannot load {loader.__name__} from {source!r} ({error}); give a local folder "
                "written by save_pretrained (safetensors) or a hub id reachable or cached"
            ) from error

    def load(self, *, device="cpu", dtype=None):
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        self.device = str(device)
        params = self.params
        self.feature_extractor = self._pretrained(AutoFeatureExtractor)
        if params["do_normalize"] is not None:
            if not hasattr(self.feature_extractor, "do_normalize"):
                raise ConfigError(
                    f"transformers model {params['model']!r}: params.do_normalize given, but "
                    f"its {type(self.feature_extractor).__name__} has no do_normalize"
                )
            self.feature_extractor.do_normalize = params["do_normalize"]
        rate = getattr(self.feature_extractor, "sampling_rate", None)
        if rate != self.sample_rate:
            raise ModelError(
                f"transformers model {params['model']!r}: its feature extractor runs at {rate} "
                f"Hz, the workflow resampled to {self.sample_rate} Hz (params.sample_rate?)"
            )
        model_class = self._model_class()
        if params["random_weights"]:
            if model_class is None:
                config = self._pretrained(AutoConfig)
                with _seeded(params["seed"]):
                    model = AutoModel.from_config(
                        config, trust_remote_code=params["trust_remote_code"]
                    )
            else:
                config = self._pretrained(model_class.config_class)
                with _seeded(params["seed"]):
                    model = model_class(config)
        else:
            # safetensors, or a pickle checkpoint whose published sha256 matches (transformers
            # reads it with torch.load(weights_only=True))
            safe = True if params["weights_sha256"] is None else self._verify_weights()
            if model_class is None:
                model = self._pretrained(AutoModel, use_safetensors=safe)
            else:
                config = self._pretrained(model_class.config_class)
                model = self._pretrained(model_class, config=config, use_safetensors=safe)
        if getattr(model.config, "is_encoder_decoder", False):
            model = model.get_encoder()
        model.eval().to(self.device, dtype=_torch_dtype(dtype or params["dtype"], self.device))
        self.model = model
        _install_output_capturing(model)
        self.blocks_owner, self.blocks_name = self._find_blocks(model)
        n_blocks = len(getattr(self.blocks_owner, self.blocks_name))
        if n_blocks != self.num_blocks(params):
            raise ModelError(
                f"transformers model {params['model']!r}: {n_blocks} encoder blocks, expected "
                f"{self.num_blocks(params)}"
            )
        return self

    def _model_class(self):
        """The transformers class named by ``model_class`` (None: AutoModel)."""
        name = self.params["model_class"]
        if name is None:
            return None
        import transformers

        cls = getattr(transformers, name, None)
        if not (isinstance(cls, type) and issubclass(cls, transformers.PreTrainedModel)):
            raise ConfigError(
                f"transformers model {self.params['model']!r}: model_class {name!r} is not a "
                "transformers model class (e.g. HubertModel)"
            )
        return cls

    def _verify_weights(self):
        """Check the checkpoint's weights file against ``weights_sha256``; True if it is
        safetensors, False for a verified pickle (pytorch_model.bin)."""
        import hashlib

        source, extra = self._source_kwargs()
        found = None
        for filename in ("model.safetensors", "pytorch_model.bin"):
            if _is_local(source):
                path = Path(source) / filename
                found = path if path.is_file() else None
            else:
                from huggingface_hub import hf_hub_download
                from huggingface_hub.errors import EntryNotFoundError

                try:
                    found = Path(hf_hub_download(source, filename, revision=extra["revision"]))
                except EntryNotFoundError:
                    found = None
            if found is not None:
                break
        if found is None:
            raise ModelError(
                f"transformers model {source!r}: no model.safetensors or pytorch_model.bin"
            )
        digest = hashlib.sha256()
        with open(found, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != self.params["weights_sha256"].lower():
            raise ModelError(
                f"transformers model {source!r}: {found} has sha256 {digest.hexdigest()}, "
                f"params.weights_sha256 says {self.params['weights_sha256']}"
            )
        self.weights_file = found.name
        return found.name.endswith(".safetensors")

    def _find_blocks(self, model):
        """(module, attribute) of the encoder's block ``ModuleList``."""
        import torch

        for path in _BLOCK_LISTS:
            owner, *rest = [model, *path.split(".")]
            ok = True
            for name in rest[:-1]:
                owner = getattr(owner, name, None)
                if owner is None:
                    ok = False
                    break
            if ok and isinstance(getattr(owner, rest[-1], None), torch.nn.ModuleList):
                return owner, rest[-1]
        raise ModelError(
            f"transformers model {self.params['model']!r} ({type(model).__name__}): no encoder "
            f"block list found at {list(_BLOCK_LISTS)}"
        )

    def window_samples(self):
        if self.params["window_seconds"] is not None:
            return int(round(self.params["window_seconds"] * self.sample_rate))
        fe = self.feature_extractor
        if getattr(fe, "n_samples", None):  # Whisper: fixed 30 s input
            return int(fe.n_samples)
        if getattr(fe, "max_length", None) and hasattr(fe, "num_mel_bins"):
            # AST: max_length Kaldi frames of 25 ms every 10 ms
            return int((fe.max_length - 1) * self.sample_rate // 100 + self.sample_rate // 40)
        return 30 * self.sample_rate

    def _valid_steps(self, n_samples, n_steps):
        """Output steps covering the audio (Whisper pads each window to ``n_samples``)."""
        padded = getattr(self.feature_extractor, "n_samples", None)
        if padded:
            return max(1, min(n_steps, math.ceil(n_steps * n_samples / padded)))
        return n_steps

    def _forward(self, windows, *, deepest):
        """``(n, samples)`` float32 arrays -> the hidden states 0..deepest, each (n, T, d)."""
        inputs = self.feature_extractor(
            list(windows), sampling_rate=self.sample_rate, return_tensors="pt"
        )
        dtype = next(self.model.parameters()).dtype
        inputs = {
            key: value.to(self.device, dtype=dtype if value.is_floating_point() else None)
            for key, value in inputs.items()
            if key in ("input_values", "input_features")
        }
        blocks = getattr(self.blocks_owner, self.blocks_name)
        # at least one block runs: transformers records hidden state 0 as its input
        kept = max(deepest, 1)
        captured = {}
        handle = None
        if kept < len(blocks):

            def keep_output(module, args, output):
                # block ``kept``'s own output, before any final LayerNorm
                captured["out"] = output[0] if isinstance(output, tuple) else output

            handle = blocks[kept - 1].register_forward_hook(keep_output)
            setattr(self.blocks_owner, self.blocks_name, blocks[:kept])
        try:
            out = self.model(**inputs, output_hidden_states=True)
        finally:
            setattr(self.blocks_owner, self.blocks_name, blocks)
            if handle is not None:
                handle.remove()
        states = list(out.hidden_states[:kept])
        states.append(captured["out"] if "out" in captured else out.hidden_states[kept])
        return states[: deepest + 1]

    def _embed_windows(self, windows, *, layers, deepest):
        """Equal-length windows -> ``({layer: (n, d) pooled}, steps pooled over)``."""
        states = self._forward(windows, deepest=deepest)
        n_steps = self._valid_steps(len(windows[0]), states[0].shape[1])
        pool_max = self.params["pooling"] == "max"
        pooled = {}
        for layer in layers:
            state = states[int(layer)][:, :n_steps].float()
            pooled[layer] = (state.amax(1) if pool_max else state.mean(1)).cpu().numpy()
        return pooled, n_steps

    def embed(self, batch, *, layers):
        import torch

        layers = self.check_layers(layers)
        if self.model is None:
            self.load(device=self.device)
        deepest = max(int(layer) for layer in layers)
        with torch.inference_mode():
            return embed_windowed(
                batch,
                layers=layers,
                window=self.window_samples(),
                min_tail=int(round(self.params["min_tail_seconds"] * self.sample_rate)),
                embed_windows=lambda windows: self._embed_windows(
                    windows, layers=layers, deepest=deepest
                ),
            )
