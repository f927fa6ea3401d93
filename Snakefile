# mirprobe: how much music knowledge does a pre-trained audio model hold?
# Datasets -> resampled audio shards -> features per representation ->
# probes selected on validation -> one table, each cell with its provenance.
import os

from snakemake.utils import min_version, validate

from mirprobe.config import check_config_files, check_names

min_version("9.0")


# A config given on the command line replaces the default one rather than
# being merged into it, so `--configfile configs/paper.yaml` runs the paper
# configuration alone.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config.yaml")


# Before the schema: YAML keeps the last of two equal keys silently, and a name
# that cannot be a path or wildcard is best explained in words.
check_config_files(workflow.configfiles)
check_names(config)
validate(config, "schemas/config.schema.yaml")


report: "report/workflow.rst"


include: "rules/common.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
        # the report's figures (rules/report.smk)
        "results/figures",
    localrule: True


include: "rules/datasets.smk"
include: "rules/audio.smk"
include: "rules/features.smk"
include: "rules/probes.smk"
include: "rules/tables.smk"
include: "rules/compare.smk"
include: "rules/report.smk"
