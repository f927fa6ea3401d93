"""Snakemake script: clip-by-clip agreement of two representations (rule compare_features)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from mirprobe.claims import claim_job  # noqa: E402

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)  # noqa: F821

from mirprobe.compare import compare_stage  # noqa: E402

compare_stage(
    a=snakemake.params.a,  # noqa: F821
    b=snakemake.params.b,  # noqa: F821
    a_paths=snakemake.input.a,  # noqa: F821
    b_paths=snakemake.input.b,  # noqa: F821
    dataset=snakemake.wildcards.dataset,  # noqa: F821
    out_path=snakemake.output[0],  # noqa: F821
)
