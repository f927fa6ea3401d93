"""Snakemake script: embed one audio shard with one representation (rule extract)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from mirprobe.claims import claim_job  # noqa: E402

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)  # noqa: F821

from mirprobe.stages import extract  # noqa: E402

extract(
    shard_dir=snakemake.input.audio,  # noqa: F821
    out_path=snakemake.output[0],  # noqa: F821
    representation_config=snakemake.params.representation_config,  # noqa: F821
    layers=snakemake.params.layers,  # noqa: F821
    device=snakemake.params.device,  # noqa: F821
    dataset_kind=snakemake.params.dataset_kind,  # noqa: F821
    on_bad_audio=snakemake.params.on_bad_audio,  # noqa: F821
    shard=snakemake.params.shard,  # noqa: F821
    # where checkpoints are is a runtime setting: read here, not a param (no rerun trigger)
    weights_dir=snakemake.config.get("weights_dir", []),  # noqa: F821
)
