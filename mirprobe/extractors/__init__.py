"""Feature extractors: one class per representation behind
:class:`~mirprobe.extractors.base.Extractor`, chosen by config name.

Adding a representation is one module and one line in ``EXTRACTOR_CLASSES``
(and its name in the schema's ``extractor`` enum).
"""

import importlib

from ..errors import ConfigError

EXTRACTOR_CLASSES = {
    "chroma": "mirprobe.extractors.handcrafted:Chroma",
    "mfcc": "mirprobe.extractors.handcrafted:MFCC",
    "musicgen": "mirprobe.extractors.musicgen:MusicGen",
    "encodec": "mirprobe.extractors.musicgen:EncodecLatents",
    "jukebox": "mirprobe.extractors.jukebox:Jukebox",
    "musicnn": "mirprobe.extractors.musicnn:MusiCNN",
    "clmr": "mirprobe.extractors.clmr:CLMR",
    "choi": "mirprobe.extractors.choi:Choi",
    "jukemir_precomputed": "mirprobe.extractors.jukemir_precomputed:JukemirPrecomputed",
    "sota_tagger": "mirprobe.extractors.sota_tagging:SotaTagger",
    "choi2016": "mirprobe.extractors.choi2016:Choi2016Tagger",
}


def get_extractor_class(name):
    """The extractor class registered under ``name``."""
    try:
        target = EXTRACTOR_CLASSES[name]
    except KeyError:
        raise ConfigError(
            f"unknown extractor {name!r}; known extractors: {sorted(EXTRACTOR_CLASSES)}"
        ) from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def build_extractor(representation_config):
    """Instantiate the extractor of one ``representations`` config entry."""
    cls = get_extractor_class(representation_config["extractor"])
    return cls(params=representation_config.get("params", {}))
