"""Snakemake script: write the provenance record of one table cell (rule provenance)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mirprobe.claims import claim_job

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)

from mirprobe.stages import cell_provenance

cell_provenance(
    task=snakemake.wildcards.dataset,
    representation=snakemake.wildcards.representation,
    layer=snakemake.wildcards.layer,
    row_label=snakemake.params.row_label,
    config=snakemake.params.config,
    config_sha256=snakemake.params.config_sha256,
    workflow_dir=snakemake.params.workflow_dir,
    feature_paths=snakemake.input.features,
    train_record_path=snakemake.input.train,
    test_record_path=snakemake.input.test,
    out_path=snakemake.output[0],
    # one path where probe.seeds is set, else the empty list
    seeds_record_path=snakemake.input.seeds or None,
    config_files=snakemake.params.config_files,
)
