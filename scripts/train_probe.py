"""Snakemake script: train the probe grid, select on validation (rule train_probe)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mirprobe.claims import claim_job

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)

import torch

from mirprobe.stages import train_probe

torch.set_num_threads(snakemake.threads)
train_probe(
    feature_paths=snakemake.input.features,
    layer=snakemake.wildcards.layer,
    probe_config=snakemake.params.probe_config,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    probe_path=snakemake.output.probe,
    record_path=snakemake.output.record,
)
