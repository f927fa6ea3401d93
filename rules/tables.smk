rule provenance:
    input:
        prepared="results/datasets/{dataset}/prepare.json",
        audio=audio_shard_dirs,
        features=feature_shards,
        train="results/probes/{dataset}/{representation}/{layer}/train.json",
        test="results/probes/{dataset}/{representation}/{layer}/test.json",
    output:
        report(
            "results/provenance/{dataset}/{representation}/{layer}.json",
            caption="../report/provenance.rst",
            category="Provenance",
            subcategory="{dataset}",
        ),
    log:
        "logs/provenance/{dataset}/{representation}/{layer}.log",
    benchmark:
        "benchmarks/provenance/{dataset}/{representation}/{layer}.tsv"
    # seconds of bookkeeping: not worth a cluster job
    localrule: True
    conda:
        "../envs/table.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        row_label=lambda wc: row_title(wc.representation, wc.layer),
        config=config,
        config_sha256=CONFIG_SHA256,
        workflow_dir=workflow.basedir,
        code=code_sha256("provenance"),
    script:
        "../scripts/provenance.py"


rule table:
    input:
        tests=[
            f"results/probes/{dataset}/{rep}/{layer}/test.json"
            for dataset, rep, layer in cells()
        ],
        provenance=[
            f"results/provenance/{dataset}/{rep}/{layer}.json"
            for dataset, rep, layer in cells()
        ],
        prepared=expand("results/datasets/{dataset}/prepare.json", dataset=DATASETS),
        # per-clip test predictions: the bootstrap intervals' input (issue 12)
        predictions=[
            f"results/probes/{dataset}/{rep}/{layer}/predictions.npz"
            for dataset, rep, layer in cells()
        ],
    output:
        # every format in the report (issue 12)
        [
            report(path, caption="../report/table.rst", category="Results")
            for path in table_outputs()
        ],
    log:
        "logs/table.log",
    benchmark:
        "benchmarks/table.tsv"
    localrule: True
    conda:
        "../envs/table.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        cells=cells(),
        rows=table_rows(),
        datasets=config["datasets"],
        probe_config=config["probe"],
        published=config["published"],
        labels={
            name: entry["label"] or name
            for name, entry in config["representations"].items()
        },
        uncertainty={
            "bootstrap": config["table"]["bootstrap"],
            "comparisons": config["table"]["comparisons"],
        },
        code=code_sha256("table"),
    script:
        "../scripts/table.py"
