"""Snakemake script: the summary table of every feature comparison (rule compare_summary)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mirprobe.claims import claim_job

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)

from mirprobe.compare import write_summary

write_summary(snakemake.input, snakemake.output[0])
