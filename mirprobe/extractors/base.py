"""The extractor interface shared by every representation.

One small class per representation (HEAR's ``load_model`` /
``get_scene_embeddings`` idea). The class describes itself; nothing about it is
written anywhere else (the registry in ``__init__.py`` only maps a config name
to it, and the workflow, the provenance and the tests read these attributes):

``name``
    its config name (``extractor: <name>``).
``conda_env``
    the pinned environment its extraction jobs run in: a file name in ``envs/``
    (``"torch.yaml"``) or, for a plug-in, an absolute path to its own file.
``packages``
    the distributions whose versions provenance records for its jobs, beyond
    the core ones (:data:`mirprobe.provenance.PACKAGES`), e.g. ``("tensorflow",
    "musicnn")``; a plug-in's own distribution is added by itself.
``sample_rate`` / ``sample_rate_for(params)``
    the rate the model expects (the classmethod, where it depends on params;
    an instance's ``sample_rate`` is that of its params); the workflow
    resamples each dataset once per rate.
``available_layers(params)`` / ``default_layers``
    names of the layers the extractor can return, and those probed by default.
``wants_gpu``
    whether the extraction rule requests ``gpu=1``.
``min_input_samples``
    the shortest clip (in samples at ``sample_rate``) the extractor gives
    meaningful, finite features for; extraction rejects or excludes shorter
    clips under the run's bad-audio policy before the model loads.
``load(device=..., dtype=...)``
    builds the model and loads its weights (lazily importing torch & co.).
``embed(batch, layers=...)``
    a list of mono float32 arrays -> ``{layer: (batch, dim) float32 array}``,
    pooled over time as the representation's paper does.

An extractor whose features depend on the other clips of a forward pass
(batch statistics) returns a batch size from ``dataset_batch_size(params)``
and implements ``dataset_batches(clip_ids, dataset=...)`` and ``batch_record()``
(the rule, for the feature profile): the workflow then
embeds the dataset in those batches, one feature shard per batch, whatever
the audio shards.

An extractor that reads stored features instead of audio sets
``reads_audio = False`` and implements ``embed_clips(clip_ids, layers=...,
dataset=<dataset class>)``; ``check_dataset`` rejects, at config time, a
dataset it has nothing for.

Class attributes and ``available_layers`` must not import heavy libraries:
the Snakefile reads them while parsing.
"""

from ..errors import ConfigError, DataError
from ..plugins import Pluggable


class Extractor(Pluggable):
    #: config ``extractor`` name
    name = None
    #: environment file of its jobs: a name in envs/ or an absolute path (see module docstring)
    conda_env = None
    #: distributions provenance records for its jobs (beyond provenance.PACKAGES)
    packages = ()
    sample_rate = None
    wants_gpu = False
    #: shortest clip accepted, in samples at ``sample_rate`` (each extractor sets its own)
    min_input_samples = 1
    #: False for extractors that read stored features by clip id (embed_clips)
    reads_audio = True
    default_layers = ()
    #: JSON schema of the ``params`` mapping in the config
    params_schema = {"type": "object", "additionalProperties": False}

    def __init__(self, *, params=None):
        # the schema's defaults fill what ``params`` leaves out (the config
        # validator does the same; this covers extractors built directly)
        defaults = {
            key: spec["default"]
            for key, spec in self.params_schema.get("properties", {}).items()
            if "default" in spec
        }
        self.params = defaults | dict(params or {})
        self.sample_rate = self.sample_rate_for(self.params)
        self.device = "cpu"

    @classmethod
    def sample_rate_for(cls, params):
        """The sample rate (Hz) the model expects under ``params``."""
        return cls.sample_rate

    @classmethod
    def check_description(cls, params, *, where):
        """ConfigError unless the class describes itself (module docstring) under ``params``."""
        problems = []
        if not isinstance(cls.name, str) or not cls.name:
            problems.append("no name")
        if not isinstance(cls.conda_env, str) or not cls.conda_env.endswith((".yaml", ".yml")):
            problems.append(f"conda_env {cls.conda_env!r} is not an environment file name")
        if not all(isinstance(p, str) and p for p in cls.packages):
            problems.append(f"packages {cls.packages!r} are not distribution names")
        rate = cls.sample_rate_for(params)
        if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
            problems.append(f"sample rate {rate!r} is not a positive integer")
        if not isinstance(cls.min_input_samples, int) or cls.min_input_samples < 1:
            problems.append(
                f"min_input_samples {cls.min_input_samples!r} is not a positive integer"
            )
        if not cls.default_layers_for(params):
            problems.append("no default layers")
        if problems:
            raise ConfigError(
                f"{where}: extractor class {cls.__module__}.{cls.__qualname__}: "
                + "; ".join(problems)
            )

    @classmethod
    def available_layers(cls, params):
        return tuple(str(layer) for layer in cls.default_layers)

    @classmethod
    def default_layers_for(cls, params):
        """The layers probed when the config names none (may depend on params)."""
        return tuple(str(layer) for layer in cls.default_layers)

    @classmethod
    def check_dataset(cls, dataset_cls, *, representation, dataset):
        """ConfigError if this extractor cannot embed the clips of ``dataset_cls``."""

    @classmethod
    def dataset_batch_size(cls, params):
        """Clips per forward pass when a clip's features depend on its batch-mates
        (the feature shards are then :meth:`dataset_batches`); None: they do not."""
        return None

    def source_record(self):
        """What the features were read from, when not only the model (None: nothing more)."""
        return None

    def load(self, *, device="cpu", dtype=None):
        self.device = device
        return self

    def embed(self, batch, *, layers):
        raise NotImplementedError

    def check_layers(self, layers):
        available = self.available_layers(self.params)
        unknown = [layer for layer in layers if str(layer) not in available]
        if unknown:
            raise ConfigError(
                f"extractor {self.name!r} has no layers {unknown}; available: {list(available)}"
            )
        return [str(layer) for layer in layers]


def mono_float32(y, *, allow_empty=False):
    """``y`` as a 1-d float32 array, or a DataError saying what it is instead."""
    import numpy as np

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or (y.size == 0 and not allow_empty):
        kind = "mono audio" if allow_empty else "non-empty mono audio"
        raise DataError(f"expected {kind} (1-d array), got shape {y.shape}")
    return y
