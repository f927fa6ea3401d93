rule provenance:
    input:
        # the dataset's and the resampling's records come with the feature shards
        features=feature_shards,
        train=rules.train_probe.output.record,
        test=rules.evaluate_probe.output[0],
        # named in the record by digest: the table's intervals and figures read it
        predictions=rules.evaluate_probe.output.predictions,
        # only with probe.seeds: the selected configuration retrained with each seed
        seeds=rules.retrain_seeds.output[0] if config["probe"]["seeds"] else [],
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
        config_files=CONFIG_SOURCES,
        workflow_dir=workflow.basedir,
        code=code_sha256("provenance"),
    script:
        "../scripts/provenance.py"


rule table:
    input:
        # the table reads provenance records only, each naming its cell (and the
        # per-clip predictions file its intervals and figures come from, by digest)
        provenance=cell_outputs(rules.provenance.output[0]),
    output:
        # every format in the report
        tables=[
            report(path, caption="../report/table.rst", category="Results")
            for path in table_outputs()
        ],
        # differences of computed rows to the published rows naming them (row:)
        published=report(
            "results/published_delta.md",
            caption="../report/published.rst",
            category="Results",
        ),
        published_csv="results/published_delta.csv",
        # validation curves, confusion matrices and per-layer curves, made here rather than by a rule
        # of their own: the rule graph stays the pipeline (no edges for figures)
        figures=report(
            directory("results/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
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
        uncertainty={
            "bootstrap": config["table"]["bootstrap"],
            "comparisons": config["table"]["comparisons"],
        },
        code=code_sha256("table"),
    script:
        "../scripts/table.py"
