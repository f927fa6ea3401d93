rule compare_features:
    input:
        a=lambda wc: feature_shards_of(wc.dataset, COMPARISONS[wc.pair]["a"]["name"]),
        b=lambda wc: feature_shards_of(wc.dataset, COMPARISONS[wc.pair]["b"]["name"]),
    output:
        "results/compare/{dataset}/{pair}.json",
    log:
        "logs/compare/{dataset}/{pair}.log",
    benchmark:
        "benchmarks/compare/{dataset}/{pair}.tsv"
    conda:
        "../envs/table.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        a=lambda wc: COMPARISONS[wc.pair]["a"],
        b=lambda wc: COMPARISONS[wc.pair]["b"],
        code=code_sha256("compare_features"),
    script:
        "../scripts/compare_features.py"


rule compare_summary:
    input:
        expand(rules.compare_features.output[0], dataset=DATASETS, pair=COMPARISONS),
    output:
        report(
            "results/compare.md", caption="../report/compare.rst", category="Results"
        ),
    log:
        "logs/compare_summary.log",
    benchmark:
        "benchmarks/compare_summary.tsv"
    localrule: True
    conda:
        "../envs/table.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        code=code_sha256("compare_summary"),
    script:
        "../scripts/compare_summary.py"
