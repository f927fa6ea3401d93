"""Snakemake script: resample one shard of a dataset (rule resample)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from mirprobe.claims import claim_job  # noqa: E402

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)  # noqa: F821

from mirprobe.stages import resample  # noqa: E402

resample(
    metadata_path=snakemake.input.metadata,  # noqa: F821
    checksums_path=snakemake.input.checksums,  # noqa: F821
    prepare_record_path=snakemake.input.prepared,  # noqa: F821
    out_dir=snakemake.output[0],  # noqa: F821
    shard=int(snakemake.wildcards.shard),  # noqa: F821
    sr=int(snakemake.wildcards.sr),  # noqa: F821
    shard_size=snakemake.params.shard_size,  # noqa: F821
    on_bad_audio=snakemake.params.on_bad_audio,  # noqa: F821
    expected_clips=snakemake.params.expected_clips,  # noqa: F821
)
