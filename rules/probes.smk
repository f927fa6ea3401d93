# the grid's settings: probe.seeds, which retrain_seeds alone reads, reruns no grid
from mirprobe.identity import training_settings


rule train_probe:
    input:
        # the feature shards carry the clips, splits, labels and exclusions (mirprobe.features)
        features=feature_shards,
    output:
        probe="results/probes/{dataset}/{representation}/{layer}/probe.pt",
        record="results/probes/{dataset}/{representation}/{layer}/train.json",
    log:
        "logs/train_probe/{dataset}/{representation}/{layer}.log",
    benchmark:
        "benchmarks/train_probe/{dataset}/{representation}/{layer}.tsv"
    conda:
        "../envs/probes.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=240,
        gpu=PROBE_GPUS,
    params:
        probe_config=training_settings(config["probe"]),
        seed=config["seed"],
        device=config["probe"]["device"],
        code=code_sha256("train_probe"),
    script:
        "../scripts/train_probe.py"


rule evaluate_probe:
    input:
        features=feature_shards,
        probe=rules.train_probe.output.probe,
    output:
        "results/probes/{dataset}/{representation}/{layer}/test.json",
        # per-clip test predictions (mirprobe.predictions), named in test.json
        predictions="results/probes/{dataset}/{representation}/{layer}/predictions.npz",
    log:
        "logs/evaluate_probe/{dataset}/{representation}/{layer}.log",
    benchmark:
        "benchmarks/evaluate_probe/{dataset}/{representation}/{layer}.tsv"
    conda:
        "../envs/probes.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=PROBE_GPUS,
    params:
        device=config["probe"]["device"],
        code=code_sha256("evaluate_probe"),
    script:
        "../scripts/evaluate_probe.py"


# only with probe.seeds: the selected configuration retrained with each seed
rule retrain_seeds:
    input:
        features=feature_shards,
        # the selection to retrain, and the identity of the settings it was made for
        train=rules.train_probe.output.record,
    output:
        "results/probes/{dataset}/{representation}/{layer}/seeds.json",
    log:
        "logs/retrain_seeds/{dataset}/{representation}/{layer}.log",
    benchmark:
        "benchmarks/retrain_seeds/{dataset}/{representation}/{layer}.tsv"
    conda:
        "../envs/probes.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=PROBE_GPUS,
    params:
        probe_config=config["probe"],
        seed=config["seed"],
        device=config["probe"]["device"],
        code=code_sha256("retrain_seeds"),
    script:
        "../scripts/retrain_seeds.py"
