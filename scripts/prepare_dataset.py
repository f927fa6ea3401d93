"""Snakemake script: obtain one dataset (rule prepare_dataset)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mirprobe.claims import claim_job

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)

from mirprobe.stages import prepare_dataset

prepare_dataset(
    name=snakemake.wildcards.dataset,
    dataset_config=snakemake.params.dataset_config,
    data_home=snakemake.params.data_home,
    metadata_path=snakemake.output.metadata,
    checksums_path=snakemake.output.checksums,
    record_path=snakemake.output.record,
    threads=snakemake.threads,
    on_bad_audio=snakemake.params.on_bad_audio,
)
