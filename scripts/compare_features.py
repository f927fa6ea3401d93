"""Snakemake script: clip-by-clip agreement of two representations (rule compare_features)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mirprobe.claims import claim_job

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)

from mirprobe.compare import compare_stage

compare_stage(
    a=snakemake.params.a,
    b=snakemake.params.b,
    a_paths=snakemake.input.a,
    b_paths=snakemake.input.b,
    dataset=snakemake.wildcards.dataset,
    out_path=snakemake.output[0],
)
