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
        probe_config=config["probe"],
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
