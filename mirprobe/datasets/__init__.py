"""Datasets: one class per dataset behind :class:`~mirprobe.datasets.base.Dataset`.

:func:`get_dataset_class` maps a config ``kind`` to its class without
importing the heavy modules of the other datasets.
"""

import importlib

from ..errors import ConfigError

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


def get_dataset_class(kind):
    """The dataset class registered under ``kind``."""
    try:
        target = DATASET_CLASSES[kind]
    except KeyError:
        raise ConfigError(
            f"unknown dataset kind {kind!r}; known kinds: {sorted(DATASET_CLASSES)}"
        ) from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_dataset(name, dataset_config, *, data_home=None):
    """Instantiate the dataset ``name`` from its config entry."""
    cls = get_dataset_class(dataset_config["kind"])
    return cls(name=name, params=dataset_config.get("params", {}), data_home=data_home)
