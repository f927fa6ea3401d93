# mirprobe: how much music knowledge does a pre-trained audio model hold?
# Datasets -> resampled audio shards -> features per representation ->
# probes selected on validation -> one table, each cell with its provenance.
import os

from snakemake.utils import min_version

from mirprobe.config import check_config_files, config_sources

min_version("9.0")


# A config given on the command line replaces the default one rather than
# being merged into it, so `--configfile configs/paper.yaml` runs the paper
# configuration alone.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config.yaml")


# YAML keeps the last of two equal keys silently: checked in the files, before
# the config is validated, once, in rules/common.smk (mirprobe.config.validate_config).
check_config_files(workflow.configfiles)
# the files (and --config values) this run's config came from, for provenance
CONFIG_SOURCES = config_sources(
    workflow.configfiles, overrides=workflow.config_settings.config
)


report: "report/workflow.rst"


include: "rules/common.smk"
include: "rules/datasets.smk"
include: "rules/audio.smk"
include: "rules/features.smk"
include: "rules/probes.smk"
include: "rules/tables.smk"
include: "rules/compare.smk"


# last: its targets are the other rules' outputs (rules.X.output)
rule all:
    default_target: True
    input:
        final_outputs(),
    localrule: True
