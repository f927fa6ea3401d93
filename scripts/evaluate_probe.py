"""Snakemake script: evaluate the selected probe on the test split (rule evaluate_probe)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from mirprobe.claims import claim_job  # noqa: E402

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)  # noqa: F821

import torch  # noqa: E402

from mirprobe.stages import evaluate_probe  # noqa: E402

torch.set_num_threads(snakemake.threads)  # noqa: F821
evaluate_probe(
    feature_paths=snakemake.input.features,  # noqa: F821
    layer=snakemake.wildcards.layer,  # noqa: F821
    probe_path=snakemake.input.probe,  # noqa: F821
    device=snakemake.params.device,  # noqa: F821
    record_path=snakemake.output[0],  # noqa: F821
    predictions_path=snakemake.output.predictions,  # noqa: F821
)
