"""The CALM paper's own features: jukemir's published, precomputed representations.

Castellon et al. published the features they probed: every representation of
the paper (``chroma``, ``mfcc``, ``choi``, ``musicnn``, ``clmr``,
``jukebox``) on each of its four datasets (``gtzan_ff``,
``giantsteps_clips``, ``emomusic``, ``magnatagatune``), one
``<dataset>-<representation>.tar.gz`` each, with sha256 digests in jukemir's
registry (``jukemir/assets/precomputed.json``, copied in :data:`SHA256`).
Its host has answered 404 since 2023 (p-lambda/jukemir issues #13, #15), so
a source must be given: ``local_dir`` (a jukemir ``representations``
folder) or ``urls`` (a mirror of the tarballs); with neither the
configuration fails at start-up.
This extractor reads those features instead of computing any, so that:

* the paper's probing half can be rerun on the paper's exact inputs, including
  the representations whose weights cannot be had or converted here
  (Jukebox without verified checkpoint digests, ``MSD_musicnn_big``, Choi et
  al.'s Keras weights);
* features mirprobe computes can be set beside the paper's, row against row,
  in one table.

Layout (jukemir's ``ProbeExperiment.load_data``): one 1-d float array per clip,
``<dataset>/<representation>/<uid>.npy``; ``uid`` is the clip's key in
jukemir's metadata, which each dataset class maps from its clip id
(:meth:`~mirprobe.datasets.base.Dataset.jukemir_uid`: GTZAN's is the sha256
of ``jazz.00024``, the others equal mirprobe's clip ids). The tarball is
fetched once per dataset into ``cache_dir`` (resumable, verified, one
download however many jobs ask; :func:`mirprobe.download.fetch`) and unpacked
once, under a lock, into ``cache_dir/<dataset>/<representation>/``: only
regular ``.npy`` members are read (macOS ``._*`` metadata files aside), each written under its own uid (never
under a path taken from the archive). ``local_dir`` instead points at an
existing jukemir ``representations`` directory; nothing is downloaded then.

The clips come from the dataset's resampled shards like every extractor's
(their manifests say which clips are good and which were excluded, and why);
the audio itself is not read. A clip without its ``.npy``, or with an array
that is not 1-d and finite, is a DataError naming the file. The source
(tarball, sha256, URL or directory) goes into each feature shard's profile.
"""

import re
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DataError
from .base import Extractor

#: jukemir's registry ``assets/precomputed.json`` (p-lambda/jukemir, MIT):
#: ``(dataset, representation) -> sha256`` of ``<dataset>-<representation>.tar.gz``
SHA256 = {
    ("emomusic", "choi"): "17d23d7211bd8513bcc6ed4d62cf819389030a3cc786c39e93c3e37df19fcfdc",
    ("emomusic", "chroma"): "cbe6faaa56309450103888442ab144d0f2fbc43f35fd0a1ed807bf27d6b6df5a",
    ("emomusic", "clmr"): "5b4d19dba824b8fe7f44025657cfd441fabd12c091aab0119d2f9b885f7acc2c",
    ("emomusic", "jukebox"): "bff3a148eb15c60308629e3a1e2593b9d34324bb9404a49f98c44854ea3aeb5e",
    ("emomusic", "mfcc"): "c0d6a45f5d0279e4f296921c2fd64425a1b9bfd9baee751c8809a67a484d5589",
    ("emomusic", "musicnn"): "80e09ec228b5a032f813937a59b7bc99775b92af225e42af428cd395ac9b57c9",
    (
        "giantsteps_clips",
        "choi",
    ): "ad5286f1eedd978720d20ceadff281ec284a030d217a2f5be011ebf7b7265b49",
    ("giantsteps_clips", "chroma"): (
        "2928549df97d4c594a7be14b8b40b68c31120b42eb0c208860ca113ab6d2aae1"
    ),
    (
        "giantsteps_clips",
        "clmr",
    ): "152e7d33c96a531ee606181690010878c386c079901b6484e1d666813d5ed340",
    ("giantsteps_clips", "jukebox"): (
        "ac25a9c900865482ad1cb5b7d8d8208935491c7134690f8bd530dc660898bee2"
    ),
    (
        "giantsteps_clips",
        "mfcc",
    ): "61d6df264266ba03d27517dba0cbae50904a2d093f9b6c7cc675220311734156",
    ("giantsteps_clips", "musicnn"): (
        "a837b0a4030df83fd46ae5ed9f4871f6c4fe3d3cfbed2b951b3225a893b98fe6"
    ),
    ("gtzan_ff", "choi"): "7b6ee4d2cf368a5d5006a4fd1af3f6176bae5d1cf665fac06c8cd0ffb0529d4e",
    ("gtzan_ff", "chroma"): "2a95d7ba03f8b4a500b1a2e38f9449069b449fc68a2ca13a35a94edf2d5f5e8e",
    ("gtzan_ff", "clmr"): "fe4de733f91c94a1fe2900ee989602c0463a29a8ad3276c21b077a1bff32fa81",
    ("gtzan_ff", "jukebox"): "d3d619b907f84069faada1fd81edede6518e11bbb90c3d3f75785b9c48f472c8",
    ("gtzan_ff", "mfcc"): "13d8fe30ae20cec7dc91363a8f2b55a5f6c1b60091d2349eefdf33e217b66169",
    ("gtzan_ff", "musicnn"): "3a72e7dfca03ab4aa5eaa6a875d7962225ea1f61f715a1335cf98aee493ce0ff",
    ("magnatagatune", "choi"): "5c7c72f2ec12ad609e6cc31ecf06872e6f6d82d492a40ec578f44fc6c6ddf078",
    ("magnatagatune", "chroma"): "4725c13fd25b9b3fdbd59f73c0637b882486a340283a80ab8649a9a64d0a3313",
    ("magnatagatune", "clmr"): "a69ad2f3f462915f00519cdc160dde94f46b9cc190f0391525957f2547e04e67",
    (
        "magnatagatune",
        "jukebox",
    ): "2547b4d5c6b85bad1de12c6280c704e1183b6740c07316d0f08325b95f966d40",
    ("magnatagatune", "mfcc"): "3d2f95a221478873be34d5f00ede38ce50b1707d322838831aeff8f0c00800d5",
    (
        "magnatagatune",
        "musicnn",
    ): "3b87e35f5774e30ff6d8932f9a7e41cfe07b8d7542866fddd70660a8869b8643",
}
REPRESENTATIONS = ("chroma", "mfcc", "choi", "musicnn", "clmr", "jukebox")
DATASETS = ("gtzan_ff", "giantsteps_clips", "emomusic", "magnatagatune")
#: the registry's URL prefix (the file name is appended); it has answered 404 since 2023
#: (p-lambda/jukemir issues #13 and #15), so it is not a default: give local_dir or a mirror
REGISTRY_URLS = ["https://nlp.stanford.edu/data/cdonahue/jukemir/precomputed/"]
DEFAULT_CACHE = "~/.cache/mirprobe/jukemir"
LAYER = "features"
#: what a uid may be (it becomes a file name)
_UID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_COMPLETE = ".complete"


def tarball_name(dataset, representation):
    return f"{dataset}-{representation}.tar.gz"


def unpack_features(tarball, dest, *, sha256):
    """Write every ``.npy`` member of ``tarball`` as ``dest/<uid>.npy``, atomically.

    The directory appears complete (with a marker holding ``sha256``) or not at
    all; a second ``.npy`` with the same uid in the archive is a DataError.
    """
    import shutil
    import tarfile

    from ..atomic import make_temp_dir

    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkdtemp: its folders are 0700 whatever the umask
    tmp = make_temp_dir(dest.parent, prefix=f".{dest.name}.")
    try:
        seen = {}
        with tarfile.open(tarball, "r:*") as archive:
            for member in archive:
                name = member.name
                if not (member.isfile() and name.endswith(".npy")):
                    continue
                if Path(name).name.startswith("._"):
                    continue  # macOS AppleDouble metadata beside a file, not a feature
                uid = Path(name).stem
                if not _UID.match(uid):
                    raise DataError(f"{tarball}: member {name!r} is not named <uid>.npy")
                if uid in seen:
                    raise DataError(
                        f"{tarball}: two members for uid {uid}: {seen[uid]!r} and {name!r}"
                    )
                seen[uid] = name
                with archive.extractfile(member) as source, open(tmp / f"{uid}.npy", "wb") as out:
                    shutil.copyfileobj(source, out)
        if not seen:
            raise DataError(f"{tarball}: no .npy member (expected <dataset>/<rep>/<uid>.npy)")
        (tmp / _COMPLETE).write_text(sha256 + "\n")
        if dest.exists():  # an earlier, interrupted or different unpacking
            shutil.rmtree(dest)
        tmp.rename(dest)
    except tarfile.TarError as error:
        raise DataError(f"{tarball}: not a readable tar archive ({error})") from error
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


def _unpacked(directory, sha256):
    marker = Path(directory) / _COMPLETE
    return marker.is_file() and marker.read_text().strip() == sha256


class JukemirPrecomputed(Extractor):
    """jukemir's published features of one CALM representation (module docstring)."""

    name = "jukemir_precomputed"
    conda_env = "handcrafted.yaml"
    #: the clip list comes from shards resampled at this rate (shared with
    #: chroma, MFCC and CLMR); the audio is not read
    sample_rate = 22050
    reads_audio = False
    default_layers = (LAYER,)
    params_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["representation"],
        "properties": {
            "representation": {
                "type": "string",
                "enum": list(REPRESENTATIONS),
                "description": "Which of the paper's representations (jukebox = Jukebox 5B "
                "layer 36; musicnn = MSD_musicnn_big; choi, clmr, chroma, mfcc).",
            },
            "urls": {
                "type": "array",
                "items": {"type": "string"},
                "default": [],
                "description": "URL prefixes of a mirror of jukemir's tarballs, tried in order; "
                "<dataset>-<representation>.tar.gz is appended. jukemir's own host "
                "(nlp.stanford.edu/data/cdonahue/jukemir/precomputed/) answers 404 since 2023.",
            },
            "sha256": {
                "type": ["string", "null"],
                "pattern": "^[0-9a-fA-F]{64}$",
                "default": None,
                "description": "sha256 of the tarball; null = jukemir's registry (set it only "
                "for a repacked copy you verified otherwise).",
            },
            "cache_dir": {
                "type": "string",
                "default": DEFAULT_CACHE,
                "description": "Where tarballs are downloaded and unpacked.",
            },
            "local_dir": {
                "type": ["string", "null"],
                "default": None,
                "description": "An existing jukemir representations directory "
                "(<dataset>/<representation>/<uid>.npy); nothing is downloaded.",
            },
            "timeout": {"type": "number", "exclusiveMinimum": 0, "default": 60},
        },
        # a source is needed: without a local jukemir representations folder, a mirror
        "if": {"properties": {"local_dir": {"type": "null"}}},
        "then": {"properties": {"urls": {"minItems": 1}}},
    }

    def __init__(self, *, params=None):
        super().__init__(params=params)
        self._sources = {}

    @classmethod
    def check_dataset(cls, dataset_cls, *, representation, dataset):
        if getattr(dataset_cls, "jukemir_tag", None) not in DATASETS:
            raise ConfigError(
                f"representation {representation!r} ({cls.name}) has features for CALM's "
                f"datasets only ({', '.join(DATASETS)}); dataset {dataset!r} is of kind "
                f"{dataset_cls.kind!r}"
            )

    def features_dir(self, dataset_tag):
        """The directory of ``<uid>.npy`` files for one dataset (fetched/unpacked once)."""
        if dataset_tag in self._sources:
            return Path(self._sources[dataset_tag]["directory"])
        representation = self.params["representation"]
        if self.params["local_dir"]:
            directory = Path(self.params["local_dir"]).expanduser() / dataset_tag / representation
            if not directory.is_dir():
                raise DataError(
                    f"{directory}: no such directory (local_dir must hold jukemir's "
                    "<dataset>/<representation>/<uid>.npy layout)"
                )
            source = {"directory": str(directory)}
        else:
            directory, source = self._fetch_and_unpack(dataset_tag, representation)
        self._sources[dataset_tag] = source
        return directory

    def _fetch_and_unpack(self, dataset_tag, representation):
        from ..download import Remote, exclusive_lock, fetch

        sha256 = (self.params["sha256"] or SHA256[(dataset_tag, representation)]).lower()
        cache = Path(self.params["cache_dir"]).expanduser()
        directory = cache / dataset_tag / representation
        file_name = tarball_name(dataset_tag, representation)
        source = {"directory": str(directory), "tarball": file_name, "sha256": sha256}
        if _unpacked(directory, sha256):
            return directory, source
        remote = Remote(
            key=f"JUKEMIR_PRECOMPUTED_{dataset_tag}_{representation}".upper(),
            path=file_name,
            checksum=sha256,
            urls=tuple(prefix + file_name for prefix in self.params["urls"]),
        )
        tarball = fetch(remote, root=cache, timeout=self.params["timeout"])
        with exclusive_lock(directory.with_name(directory.name + ".unpack.lock")):
            if not _unpacked(directory, sha256):
                unpack_features(tarball, directory, sha256=sha256)
        return directory, source

    def embed_clips(self, clip_ids, *, layers, dataset):
        """``{features: (n, dim)}`` for ``clip_ids`` of a dataset class."""
        self.check_layers(layers)
        directory = self.features_dir(dataset.jukemir_tag)
        rows, missing = [], []
        for clip_id in clip_ids:
            path = directory / f"{dataset.jukemir_uid(clip_id)}.npy"
            if not path.is_file():
                missing.append(f"{clip_id} ({path.name})")
                continue
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as error:
                raise DataError(f"{path}: not a readable .npy file ({error})") from error
            if array.ndim != 1 or not np.all(np.isfinite(array)):
                raise DataError(
                    f"{path}: expected a finite 1-d feature vector, got shape {array.shape}"
                    + ("" if array.ndim != 1 else " with non-finite values")
                )
            if rows and array.shape != rows[0].shape:
                raise DataError(
                    f"{path}: {array.shape[0]}-d, but the clips before it are {rows[0].shape[0]}-d"
                )
            rows.append(array.astype(np.float32))
        if missing:
            raise DataError(
                f"{directory}: no precomputed {self.params['representation']} features for "
                f"{len(missing)} of {len(clip_ids)} clips: {', '.join(missing[:5])}"
                + (", ..." if len(missing) > 5 else "")
            )
        return {LAYER: np.stack(rows) if rows else np.zeros((0, 0), np.float32)}

    def source_record(self):
        """What the features were read from, per dataset (for the shard profile)."""
        return {
            "representation": self.params["representation"],
            "sources": dict(self._sources),
        }
