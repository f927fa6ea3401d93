"""Datasets: one class per dataset behind :class:`~mirprobe.datasets.base.Dataset`.

``DATASET_CLASSES`` is the one list of built-in dataset kinds: adding one is a
module holding its class and one line here (the config schema does not
enumerate them). :func:`get_dataset_class` maps a config ``kind`` to its class
without importing the heavy modules of the other datasets; a class from outside
the package is named by ``class: some_package.module:Name`` or by its name in the
:data:`ENTRY_POINT_GROUP` entry-point group (see :mod:`mirprobe.plugins`).
"""

from ..plugins import Registry

#: config ``kind`` -> "module:Class"; adding a dataset is one file and one line
DATASET_CLASSES = {
    "synthetic_key": "mirprobe.datasets.synthetic:SyntheticKey",
    "gtzan_ff": "mirprobe.datasets.gtzan:GtzanFaultFiltered",
    "giantsteps_clips": "mirprobe.datasets.giantsteps:GiantStepsClips",
    "emomusic": "mirprobe.datasets.emomusic:Emomusic",
    "magnatagatune": "mirprobe.datasets.magnatagatune:MagnaTagATune",
    "folder": "mirprobe.datasets.folder:FolderDataset",
    "mirdata": "mirprobe.datasets.mirdata_dataset:MirdataDataset",
}

#: entry-point group in which installed distributions declare datasets
ENTRY_POINT_GROUP = "mirprobe.datasets"
DATASETS = Registry(
    DATASET_CLASSES,
    group=ENTRY_POINT_GROUP,
    base="mirprobe.datasets.base:Dataset",
    what="dataset kind",
)
#: the dataset class a kind refers to: a built-in kind, an installed entry point's
#: name or ``module:Class`` (``where``: the config key naming it)
get_dataset_class = DATASETS.get


def build_dataset(name, dataset_config, *, data_home=None):
    """Instantiate the dataset ``name`` from its config entry."""
    cls = get_dataset_class(dataset_config["kind"])
    return cls(name=name, params=dataset_config.get("params", {}), data_home=data_home)
