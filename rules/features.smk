rule extract:
    input:
        audio=extract_audio,
    output:
        "results/features/{dataset}/{representation}/shard-{shard}.npz",
    log:
        "logs/extract/{dataset}/{representation}/shard-{shard}.log",
    benchmark:
        "benchmarks/extract/{dataset}/{representation}/shard-{shard}.tsv"
    conda:
        lambda wc: conda_env_of(wc.representation)
    threads: 1
    resources:
        gpu=lambda wc: needs_gpu(wc.representation),
        mem_mb=4000,
        runtime=120,
    params:
        representation_config=lambda wc: config["representations"][wc.representation],
        layers=lambda wc: LAYERS[wc.representation],
        device=config["device"],
        dataset_kind=lambda wc: config["datasets"][wc.dataset]["kind"],
        on_bad_audio=config["audio"]["on_bad_audio"],
        shard=lambda wc: int(wc.shard),
        code=lambda wc: code_sha256(
            "extract", extractor_module(wc.representation), dataset_module(wc.dataset)
        ),
    script:
        "../scripts/extract.py"
