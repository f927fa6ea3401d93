"""Snakemake script: retrain the selected probe configuration with each of probe.seeds
and score each on test (rule retrain_seeds)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mirprobe.claims import claim_job

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)

import torch

from mirprobe.stages import retrain_seeds

torch.set_num_threads(snakemake.threads)
retrain_seeds(
    feature_paths=snakemake.input.features,
    layer=snakemake.wildcards.layer,
    probe_config=snakemake.params.probe_config,
    seed=snakemake.params.seed,
    device=snakemake.params.device,
    train_record_path=snakemake.input.train,
    record_path=snakemake.output[0],
)
