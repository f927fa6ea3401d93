# Helpers shared by the rules: config resolution, shards, rows and targets.
# Only light modules are imported here, so that parsing takes a fraction of a
# second (no torch, librosa or transformers at parse time).
import functools
import os
import re
import sys

# The package holding the workflow's logic sits beside the Snakefile; the
# scripts put it on their path the same way (see scripts/*.py).
sys.path.insert(0, workflow.basedir)

from mirprobe.audio import shard_slices
from mirprobe.config import (
    config_hash,
    representation_layers,
    resolve_comparisons,
    table_row_title,
    validate_config,
)
from mirprobe.datasets import build_dataset
from mirprobe.extractors import get_extractor_class
from mirprobe.provenance import rule_code_sha256

# the one validation of the config: schema, names, plug-in params, defaults filled
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
#: the probed (hence extracted) layers of each representation, as strings
LAYERS = {
    name: representation_layers(config, name) for name in config["representations"]
}


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


def shards_of(dataset):
    n_clips = DATASETS[dataset].num_clips()
    n_shards = len(shard_slices(n_clips, config["datasets"][dataset]["shard_size"]))
    return [f"{k:03d}" for k in range(n_shards)]


def sample_rate_of(representation):
    params = config["representations"][representation]["params"]
    return EXTRACTORS[representation].sample_rate_for(params)


def audio_shard_dir(dataset, representation, shard):
    sr = sample_rate_of(representation)
    return expand(rules.resample.output[0], dataset=dataset, sr=sr, shard=shard)[0]


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
        rules.extract.output[0],
        dataset=dataset,
        representation=representation,
        shard=feature_shard_ids(dataset, representation),
    )


def comparison_outputs():
    if not COMPARISONS:
        return []
    return expand(
        rules.compare_features.output[0], dataset=DATASETS, pair=COMPARISONS
    ) + [rules.compare_summary.output[0]]


def needs_gpu(representation):
    return 1 if EXTRACTORS[representation].wants_gpu else 0


#: probe jobs ask for the GPU only where they train on it (probe.device: cuda)
PROBE_GPUS = 1 if config["probe"]["device"] == "cuda" else 0


def conda_env_of(representation):
    """The pinned environment its extractor class names (Extractor.conda_env): a file
    in envs/, or a plug-in's own file by absolute path."""
    env = EXTRACTORS[representation].conda_env
    return env if os.path.isabs(env) else f"../envs/{env}"


def row_title(representation, layer):
    return table_row_title(config, representation, layer)


def cells():
    return [
        (dataset, rep, layer)
        for dataset in DATASETS
        for rep in config["representations"]
        for layer in LAYERS[rep]
    ]


def cell_outputs(pattern):
    """``pattern`` (a rule's output) for every table cell, in the table's order."""
    datasets, representations, layers = zip(*cells())
    return expand(
        pattern, zip, dataset=datasets, representation=representations, layer=layers
    )


def table_outputs():
    return [f"results/table.{fmt}" for fmt in config["table"]["formats"]]


def final_outputs():
    # Feature shards are targets too: they are the costly, reusable product, and
    # Snakemake (>= 7.7) does not remake a deleted intermediate file whose
    # consumers are up to date; as targets, a deleted shard is remade and
    # everything downstream of it reruns.
    features = [
        path
        for dataset in DATASETS
        for rep in config["representations"]
        for path in feature_shards_of(dataset, rep)
    ]
    return (
        table_outputs()
        + cell_outputs(rules.provenance.output[0])
        + features
        + comparison_outputs()
    )
