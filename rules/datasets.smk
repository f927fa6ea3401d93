rule prepare_dataset:
    output:
        metadata="results/datasets/{dataset}/metadata.csv",
        checksums="results/datasets/{dataset}/checksums.tsv",
        record="results/datasets/{dataset}/prepare.json",
    log:
        "logs/prepare_dataset/{dataset}.log",
    benchmark:
        "benchmarks/prepare_dataset/{dataset}.tsv"
    conda:
        "../envs/audio.yaml"
    threads: 2
    resources:
        mem_mb=2000,
        runtime=120,
        # downloaded datasets hold one unit: `--resources downloads=N` caps parallel downloads
        downloads=lambda wc: int(hasattr(DATASETS[wc.dataset], "fetch")),
    params:
        dataset_config=lambda wc: config["datasets"][wc.dataset],
        data_home=config["data_home"],
        # only for datasets that check audio at prepare time: another policy reruns those only
        on_bad_audio=lambda wc: (
            config["audio"]["on_bad_audio"]
            if DATASETS[wc.dataset].checks_audio_at_prepare
            else None
        ),
        code=lambda wc: code_sha256("prepare_dataset", dataset_module(wc.dataset)),
    script:
        "../scripts/prepare_dataset.py"
