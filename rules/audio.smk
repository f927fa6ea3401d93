rule resample:
    input:
        metadata=rules.prepare_dataset.output.metadata,
        checksums=rules.prepare_dataset.output.checksums,
        # carried on by the shard's record, then the feature shards (mirprobe.features)
        prepared=rules.prepare_dataset.output.record,
    output:
        directory("results/audio/{dataset}/sr{sr}/shard-{shard}"),
    log:
        "logs/resample/{dataset}/sr{sr}/shard-{shard}.log",
    benchmark:
        "benchmarks/resample/{dataset}/sr{sr}/shard-{shard}.tsv"
    conda:
        "../envs/audio.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        shard_size=lambda wc: config["datasets"][wc.dataset]["shard_size"],
        expected_clips=lambda wc: DATASETS[wc.dataset].num_clips(),
        on_bad_audio=config["audio"]["on_bad_audio"],
        code=code_sha256("resample"),
    script:
        "../scripts/resample.py"
