rule provenance:
    input:
        # the dataset's and the resampling's records come with the feature shards
        features=feature_shards,
        train=rules.train_probe.output.record,
        test=rules.evaluate_probe.output[0],
    output:
        "results/provenance/{dataset}/{representation}/{layer}.json",
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
        # the table reads provenance records only, each naming its cell
        provenance=cell_outputs(rules.provenance.output[0]),
    output:
        [
            (
                report(path, caption="../report/table.rst", category="Results")
                if path.endswith(".md")
                else path
            )
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
        datasets=config["datasets"],
        probe_config=config["probe"],
        published=config["published"],
        labels={
            name: entry["label"] or name
            for name, entry in config["representations"].items()
        },
        code=code_sha256("table"),
    script:
        "../scripts/table.py"
