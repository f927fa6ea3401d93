"""Feature extractors: one class per representation behind
:class:`~mirprobe.extractors.base.Extractor`, chosen by config name.

``EXTRACTOR_CLASSES`` is the one list of built-in extractors: adding one is a
module holding its class (which describes itself, see the base module) and one
line here. The config schema does not enumerate them; an unknown name is a
ConfigError listing the choices.

A class from outside the package is named in config by ``class:
some_package.module:Name``, or by the name an installed distribution gives
it in the :data:`ENTRY_POINT_GROUP` entry-point group (see
:mod:`mirprobe.plugins`).
"""

from ..plugins import Registry

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
    "transformers": "mirprobe.extractors.hf_transformers:TransformersEncoder",
    "hear": "mirprobe.extractors.hear:HearModule",
    "choi2016": "mirprobe.extractors.choi2016:Choi2016Tagger",
}

#: entry-point group in which installed distributions declare extractors
ENTRY_POINT_GROUP = "mirprobe.extractors"
EXTRACTORS = Registry(
    EXTRACTOR_CLASSES,
    group=ENTRY_POINT_GROUP,
    base="mirprobe.extractors.base:Extractor",
    what="extractor",
)
#: the extractor class a name refers to: a built-in name, an installed entry point's
#: name or ``module:Class`` (``where``: the config key naming it)
get_extractor_class = EXTRACTORS.get


def build_extractor(representation_config):
    """Instantiate the extractor of one ``representations`` config entry."""
    cls = get_extractor_class(representation_config["extractor"])
    return cls(params=representation_config.get("params", {}))
