"""Snakemake script: embed one audio shard with one representation (rule extract)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mirprobe.claims import claim_job

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)

from mirprobe.stages import extract

extract(
    shard_dir=snakemake.input.audio,
    out_path=snakemake.output[0],
    representation_config=snakemake.params.representation_config,
    layers=snakemake.params.layers,
    device=snakemake.params.device,
    dataset_kind=snakemake.params.dataset_kind,
    on_bad_audio=snakemake.params.on_bad_audio,
    shard=snakemake.params.shard,
    # where checkpoints are is a runtime setting: read here, not a param (no rerun trigger)
    weights_dir=snakemake.config.get("weights_dir", []),
)
