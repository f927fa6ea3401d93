"""Snakemake script: obtain one dataset (rule prepare_dataset)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from mirprobe.claims import claim_job  # noqa: E402

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)  # noqa: F821

from mirprobe.stages import prepare_dataset  # noqa: E402

prepare_dataset(
    name=snakemake.wildcards.dataset,  # noqa: F821
    dataset_config=snakemake.params.dataset_config,  # noqa: F821
    data_home=snakemake.params.data_home,  # noqa: F821
    metadata_path=snakemake.output.metadata,  # noqa: F821
    checksums_path=snakemake.output.checksums,  # noqa: F821
    record_path=snakemake.output.record,  # noqa: F821
    threads=snakemake.threads,  # noqa: F821
    on_bad_audio=snakemake.params.on_bad_audio,  # noqa: F821
)
