# Helpers shared by the rules: config resolution, shards, rows and targets.
# Only light modules are imported here, so that parsing takes a fraction of a
# second (no torch, librosa or transformers at parse time).
import functools
import re
import sys

# The package holding the workflow's logic sits beside the Snakefile; the
# scripts put it on their path the same way (see scripts/*.py).
sys.path.insert(0, workflow.basedir)

from mirprobe.audio import shard_slices
from mirprobe.config import (
    config_hash,
    resolve_comparisons,
    table_row_title,
    validate_config,
)
from mirprobe.datasets import build_dataset
from mirprobe.extractors import get_extractor_class
from mirprobe.provenance import rule_code_sha256

config.update(validate_config(config))
CONFIG_SHA256 = config_hash(config)
DATASETS = {
    name: build_dataset(name, entry, data_home=config["data_home"])
    for name, entry in config["datasets"].items()
}
EXTRACTORS = {
    name: get_extractor_class(entry["extractor"])
    for name, entry in config["representations"].items()
}
COMPARISONS = {pair["id"]: pair for pair in resolve_comparisons(config)}


# names are identifiers (validate_config); escaped all the same, as they are patterns here
wildcard_constraints:
    dataset="|".join(re.escape(name) for name in DATASETS),
    representation="|".join(re.escape(name) for name in EXTRACTORS),
    shard=r"\d{3}",
    sr=r"\d+",
    layer=r"[^/]+",
    pair="|".join(re.escape(pair) for pair in COMPARISONS) or "(?!)",


@functools.cache
def code_sha256(rule, *job_modules):
    """The sha256 of the sources a job of ``rule`` runs (its script, the package
    modules it imports and ``job_modules``, see mirprobe.provenance.rule_sources):
    a rule's ``params: code``, so that a change to that code reruns the job."""
    return rule_code_sha256(rule, job_modules, root=workflow.basedir)


def dataset_module(dataset):
    return type(DATASETS[dataset]).__module__


def extractor_module(representation):
    return EXTRACTORS[representation].__module__


def layers_of(representation):
    entry = config["representations"][representation]
    layers = entry["layers"]
    if layers is None:
        layers = EXTRACTORS[representation].default_layers_for(entry["params"])
    return [str(layer) for layer in layers]


def shards_of(dataset):
    n_clips = DATASETS[dataset].num_clips()
    n_shards = len(shard_slices(n_clips, config["datasets"][dataset]["shard_size"]))
    return [f"{k:03d}" for k in range(n_shards)]


def sample_rate_of(representation):
    params = config["representations"][representation]["params"]
    return EXTRACTORS[representation].sample_rate_for(params)


def audio_shard_dir(dataset, representation, shard):
    sr = sample_rate_of(representation)
    return f"results/audio/{dataset}/sr{sr}/shard-{shard}"


def extract_audio(wildcards):
    """An extract job's audio: its shard, or every shard for batches spanning the dataset."""
    if batch_size_of(wildcards.representation) is None:
        return audio_shard_dir(
            wildcards.dataset, wildcards.representation, wildcards.shard
        )
    return audio_shard_dirs(wildcards)


def batch_size_of(representation):
    params = config["representations"][representation]["params"]
    return EXTRACTORS[representation].dataset_batch_size(params)


def feature_shard_ids(dataset, representation):
    """One feature shard per audio shard, or per batch where batches span the dataset."""
    size = batch_size_of(representation)
    if size is None:
        return shards_of(dataset)
    return [f"{k:03d}" for k in range(-(-DATASETS[dataset].num_clips() // size))]


def audio_shard_dirs(wildcards):
    return [
        audio_shard_dir(wildcards.dataset, wildcards.representation, shard)
        for shard in shards_of(wildcards.dataset)
    ]


def feature_shards(wildcards):
    return feature_shards_of(wildcards.dataset, wildcards.representation)


def feature_shards_of(dataset, representation):
    return expand(
        "results/features/{dataset}/{representation}/shard-{shard}.npz",
        dataset=dataset,
        representation=representation,
        shard=feature_shard_ids(dataset, representation),
    )


def comparison_outputs():
    if not COMPARISONS:
        return []
    return [
        f"results/compare/{dataset}/{pair}.json"
        for dataset in DATASETS
        for pair in COMPARISONS
    ] + ["results/compare.md"]


def needs_gpu(representation):
    return 1 if EXTRACTORS[representation].wants_gpu else 0


#: probe jobs ask for the GPU only where they train on it (probe.device: cuda)
PROBE_GPUS = 1 if config["probe"]["device"] == "cuda" else 0


#: extractors whose packages are not in torch.yaml get their own pinned environment
EXTRACTOR_ENVS = {"jukebox": "../envs/jukebox.yaml", "musicnn": "../envs/musicnn.yaml"}


def conda_env_of(representation):
    """The pinned environment of an extractor: torch.yaml for the neural ones."""
    if EXTRACTORS[representation].name in EXTRACTOR_ENVS:
        return EXTRACTOR_ENVS[EXTRACTORS[representation].name]
    if EXTRACTORS[representation].wants_gpu:
        return "../envs/torch.yaml"
    return "../envs/handcrafted.yaml"


def row_title(representation, layer):
    return table_row_title(config, representation, layer)


def table_rows():
    return [
        (f"{rep}/{layer}", row_title(rep, layer))
        for rep in config["representations"]
        for layer in layers_of(rep)
    ]


def cells():
    return [
        (dataset, rep, layer)
        for dataset in DATASETS
        for rep in config["representations"]
        for layer in layers_of(rep)
    ]


def table_outputs():
    return [f"results/table.{fmt}" for fmt in config["table"]["formats"]]


def final_outputs():
    provenance = [
        f"results/provenance/{dataset}/{rep}/{layer}.json"
        for dataset, rep, layer in cells()
    ]
    # Feature shards are targets too: they are the costly, reusable product, and
    # Snakemake (>= 7.7) does not remake a deleted intermediate file whose
    # consumers are up to date; as targets, a deleted shard is remade and
    # everything downstream of it reruns.
    features = [
        f"results/features/{dataset}/{rep}/shard-{shard}.npz"
        for dataset in DATASETS
        for rep in config["representations"]
        for shard in feature_shard_ids(dataset, rep)
    ]
    return table_outputs() + provenance + features + comparison_outputs()
