"""The dataset interface shared by every task mirprobe probes.

A dataset is one small class. It knows which files it needs, how to obtain
them (download, or generate for the synthetic tasks) and how to turn them into
one *metadata table*: a CSV with one row per clip and these columns

``clip_id``
    unique, filesystem-safe id of the clip.
``audio_path``
    path of the audio file, relative to the dataset directory.
``offset``, ``duration``
    seconds; the clip is ``audio_path[offset : offset + duration]``
    (``duration`` empty = to the end of the file).
``split``
    ``train``, ``valid`` or ``test``.
``label``
    the target: a class name (``multiclass``), a key name in mir_eval's
    ``"C major"`` / ``"A minor"`` form (``key``), ``|``-joined tag names
    (``multilabel``) or ``|``-joined floats (``regression``).
``song_id``
    the song a clip was cut from; clip predictions are pooled per song where
    the task scores songs (key). Equal to ``clip_id`` for whole-song clips.

Extra columns (instrument, tempo, ...) are kept and ignored by the probes.

A dataset class describes itself by its class attributes (``kind``,
``task_type``, ``params_schema``, ``conda_env``, ``packages``, below); the
registry in ``__init__.py`` only maps a config ``kind`` to it. A class from
outside the package (``class: some_package.module:Name`` in config, or an
installed entry point, see :mod:`mirprobe.plugins`) subclasses
:class:`Dataset` the same way.
"""

import hashlib
from pathlib import Path

import pandas as pd

from ..errors import ConfigError, DataError
from ..plugins import Pluggable
from ..task_types import TASK_TYPES as _TASK_TYPE_OBJECTS
from ..task_types import task_type_of

METADATA_COLUMNS = [
    "clip_id",
    "audio_path",
    "offset",
    "duration",
    "split",
    "label",
    "song_id",
]
SPLITS = ("train", "valid", "test")
#: the task types' names (``mirprobe.task_types.TASK_TYPES``)
TASK_TYPES = tuple(_TASK_TYPE_OBJECTS)


class Dataset(Pluggable):
    """Base class: one subclass per dataset, registered in ``__init__.py``.

    Subclasses set the class attributes and implement :meth:`prepare`.
    ``params`` is the dataset's ``params`` mapping from the config, already
    validated against :attr:`params_schema`.
    """

    #: the config ``kind`` that selects this class
    kind = None
    #: one of TASK_TYPES
    task_type = None
    #: the ``params`` key that chooses the task type, for a class whose task type
    #: the config chooses (``kind: folder``, ``kind: mirdata``); its schema validates it
    task_type_param = None
    #: JSON schema of the ``params`` mapping in the config
    params_schema = {"type": "object", "additionalProperties": False}
    #: environment file of its prepare jobs (a name in envs/)
    conda_env = "audio.yaml"
    #: distributions provenance records for its prepare job (beyond provenance.PACKAGES)
    packages = ()
    #: this dataset's tag in jukemir (the CALM paper's code), None if not one of its
    jukemir_tag = None
    #: True when ``prepare`` decodes audio headers and so applies ``on_bad_audio`` itself
    #: (the workflow then passes the policy to it; otherwise only resampling applies it)
    checks_audio_at_prepare = False

    def __init__(self, *, name, params=None, data_home=None):
        self.name = name
        self.params = dict(params or {})
        self.data_home = None if data_home is None else Path(data_home)

    @classmethod
    def check_description(cls, *, where):
        """ConfigError unless the class describes itself (kind, task type)."""
        problems = []
        if not isinstance(cls.kind, str) or not cls.kind:
            problems.append("no kind")
        if cls.task_type_param is None:
            try:
                task_type_of(cls.task_type)
            except ConfigError as error:
                problems.append(f"task_type: {error}")
        if problems:
            raise ConfigError(
                f"{where}: dataset class {cls.__module__}.{cls.__qualname__}: "
                + "; ".join(problems)
            )

    @classmethod
    def jukemir_uid(cls, clip_id):
        """The key of a clip in jukemir's metadata (and its feature file names)."""
        return clip_id

    def labels(self):
        """The ordered list of class or tag names (output order of the probe)."""
        raise NotImplementedError

    def num_clips(self):
        """Number of clips, known before any data exists (it sizes the shards)."""
        raise NotImplementedError

    def prepare(self, out_dir, *, threads=1, on_bad_audio="error"):
        """Obtain the data into ``out_dir`` and write ``out_dir/metadata.csv``.

        ``on_bad_audio`` (``error`` or ``exclude``) is the run's bad-audio
        policy, for the classes that set :attr:`checks_audio_at_prepare`.
        Returns a JSON-serialisable record for provenance (sources, seeds,
        parameters, checksums).
        """
        raise NotImplementedError


def read_metadata(path):
    """Read and validate a metadata table; raise DataError naming the problem."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: metadata table not found")
    table = pd.read_csv(
        path,
        dtype={"clip_id": str, "song_id": str, "label": str, "split": str},
        keep_default_na=False,
    )
    missing = [c for c in METADATA_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: metadata table lacks columns {missing}")
    duplicated = table["clip_id"][table["clip_id"].duplicated()].tolist()
    if duplicated:
        raise DataError(f"{path}: duplicate clip ids {duplicated[:5]}")
    bad_splits = sorted(set(table["split"]) - set(SPLITS))
    if bad_splits:
        raise DataError(f"{path}: unknown splits {bad_splits}; allowed {SPLITS}")
    return table


def write_metadata(table, path):
    """Write a metadata table atomically, rows sorted by clip id (stable bytes)."""
    from ..atomic import atomic_path

    missing = [c for c in METADATA_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{path}: metadata table lacks columns {missing}")
    extra = [c for c in table.columns if c not in METADATA_COLUMNS]
    table = table[METADATA_COLUMNS + extra].sort_values("clip_id", kind="stable")
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")


def file_sha256(path, *, chunk_size=1 << 20):
    """The sha256 hex digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()
