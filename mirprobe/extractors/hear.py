"""Any installed module with HEAR's API (``extractor: hear``).

``params: {module: hearbaseline, model_file: ...}``: the module is imported by
name and used through the HEAR 2021 common API (Turian et al., *HEAR*):
``load_model(model_file)`` (or ``load_model()`` without a file), the model's
``sample_rate`` and ``scene_embedding_size``, and
``get_scene_embeddings(audio, model)`` on a ``(n_clips, n_samples)`` float32
torch tensor. ``embedding: timestamp`` instead mean-pools (or max-pools)
``get_timestamp_embeddings(audio, model)`` over time. The representation has
one layer, ``scene`` (or ``timestamp``).

The sample rate must be known while the Snakefile parses: ``params.sample_rate``
is required, and checked against the loaded model's ``sample_rate``.
Clips of a batch are zero-padded to the batch's longest (as HEAR's own
evaluation kit does); ``batch_size: 1`` avoids padding altogether.
Provenance records the module, its file, its distribution version and the
model file's sha256.
"""

import hashlib
import importlib
from pathlib import Path

import numpy as np

from ..errors import ConfigError, ModelError
from .base import Extractor, mono_float32


class HearModule(Extractor):
    """Scene (or pooled timestamp) embeddings of a HEAR-API module."""

    name = "hear"
    # the module's own distribution and version are in its source record
    conda_env = "torch.yaml"
    packages = ("torch",)
    wants_gpu = True
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["module", "sample_rate"],
        "properties": {
            "module": {
                "type": "string",
                "pattern": r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",
                "description": "Importable module implementing HEAR's API (e.g. hearbaseline).",
            },
            "model_file": {
                "type": ["string", "null"],
                "default": None,
                "description": "Passed to load_model (weights file); null = load_model().",
            },
            "sample_rate": {
                "type": "integer",
                "minimum": 1,
                "description": "The module's sample_rate (needed while the workflow parses; "
                "checked against the loaded model).",
            },
            "embedding": {
                "type": "string",
                "enum": ["scene", "timestamp"],
                "default": "scene",
                "description": "scene = get_scene_embeddings; timestamp = "
                "get_timestamp_embeddings pooled over time.",
            },
            "pooling": {
                "type": "string",
                "enum": ["mean", "max"],
                "default": "mean",
                "description": "Pooling of timestamp embeddings over time.",
            },
        },
    }

    def __init__(self, *, params=None):
        super().__init__(params=params)
        self.sample_rate = int(self.params["sample_rate"])
        self.module = None
        self.model = None

    @classmethod
    def sample_rate_for(cls, params):
        return int(params["sample_rate"])

    @classmethod
    def available_layers(cls, params):
        return ((params or {}).get("embedding", "scene"),)

    @classmethod
    def default_layers_for(cls, params):
        return cls.available_layers(params)

    def load(self, *, device="cpu", dtype=None):
        self.device = str(device)
        name = self.params["module"]
        try:
            self.module = importlib.import_module(name)
        except ImportError as error:
            raise ConfigError(
                f"extractor 'hear': cannot import module {name!r} ({error})"
            ) from error
        required = ["load_model", "get_scene_embeddings"]
        if self.params["embedding"] == "timestamp":
            required.append("get_timestamp_embeddings")
        missing = [attr for attr in required if not callable(getattr(self.module, attr, None))]
        if missing:
            raise ModelError(f"module {name!r} lacks HEAR's {missing} (not a HEAR module?)")
        model_file = self.params["model_file"]
        if model_file is not None and not Path(model_file).expanduser().is_file():
            raise ModelError(f"HEAR module {name!r}: model_file {model_file!r} does not exist")
        model = self.module.load_model(model_file) if model_file else self.module.load_model()
        rate = getattr(model, "sample_rate", None)
        if rate != self.sample_rate:
            raise ModelError(
                f"HEAR module {name!r}: its model's sample_rate is {rate}, params.sample_rate "
                f"says {self.sample_rate}"
            )
        if hasattr(model, "to"):
            model = model.to(self.device)
        if hasattr(model, "eval"):
            model.eval()
        self.model = model
        return self

    def embed(self, batch, *, layers):
        import torch

        layers = self.check_layers(layers)
        if self.model is None:
            self.load(device=self.device)
        clips = [mono_float32(y) for y in batch]
        audio = np.zeros((len(clips), max(len(y) for y in clips)), dtype=np.float32)
        for row, y in enumerate(clips):
            audio[row, : len(y)] = y
        audio = torch.from_numpy(audio).to(self.device)
        with torch.inference_mode():
            if self.params["embedding"] == "scene":
                out = self.module.get_scene_embeddings(audio, self.model)
                expected = getattr(self.model, "scene_embedding_size", None)
            else:
                frames, _ = self.module.get_timestamp_embeddings(audio, self.model)
                out = frames.amax(1) if self.params["pooling"] == "max" else frames.mean(1)
                expected = getattr(self.model, "timestamp_embedding_size", None)
        out = out.float().cpu().numpy()
        if out.shape[0] != len(clips) or (expected is not None and out.shape[1] != expected):
            raise ModelError(
                f"HEAR module {self.params['module']!r}: embeddings of shape {out.shape}, "
                f"expected ({len(clips)}, {expected})"
            )
        return {layers[0]: out.astype(np.float32)}

    def source_record(self):
        """The module (file, distribution version) and the model file's sha256."""
        from importlib import metadata

        name = self.params["module"]
        top = name.split(".")[0]
        try:
            version = metadata.version(top)
        except metadata.PackageNotFoundError:
            version = None
        model_file = self.params["model_file"]
        digest = None
        if model_file is not None:
            digest = hashlib.sha256(Path(model_file).expanduser().read_bytes()).hexdigest()
        return {
            "module": name,
            "module_file": getattr(self.module, "__file__", None),
            "module_version": version,
            "model_file": model_file,
            "model_file_sha256": digest,
        }
