"""Snakemake script: resample one shard of a dataset (rule resample)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mirprobe.claims import claim_job

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)

from mirprobe.stages import resample

resample(
    metadata_path=snakemake.input.metadata,
    checksums_path=snakemake.input.checksums,
    prepare_record_path=snakemake.input.prepared,
    out_dir=snakemake.output[0],
    shard=int(snakemake.wildcards.shard),
    sr=int(snakemake.wildcards.sr),
    shard_size=snakemake.params.shard_size,
    on_bad_audio=snakemake.params.on_bad_audio,
    expected_clips=snakemake.params.expected_clips,
)
