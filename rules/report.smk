# The report's figures (issue 12): `snakemake --report report.html` shows them
# beside the table and the provenance records.


rule figures:
    input:
        provenance=[
            f"results/provenance/{dataset}/{rep}/{layer}.json"
            for dataset, rep, layer in cells()
        ],
        predictions=[
            f"results/probes/{dataset}/{rep}/{layer}/predictions.npz"
            for dataset, rep, layer in cells()
        ],
    output:
        report(
            directory("results/figures"),
            patterns=["{name}.png"],
            caption="../report/figures.rst",
            category="Figures",
        ),
    log:
        "logs/figures.log",
    localrule: True
    conda:
        "../envs/table.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cells=cells(),
        titles=dict(table_rows()),
        task_titles={
            name: entry.get("label") or name
            for name, entry in config["datasets"].items()
        },
        code=code_sha256("figures"),
    script:
        "../scripts/figures.py"
