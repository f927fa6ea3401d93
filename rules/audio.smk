rule resample:
    input:
        metadata="results/datasets/{dataset}/metadata.csv",
        checksums="results/datasets/{dataset}/checksums.tsv",
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
