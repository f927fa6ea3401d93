"""Snakemake script: the report's figures (rule figures)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from mirprobe.claims import claim_job  # noqa: E402

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)  # noqa: F821

from mirprobe.plots import report_figures  # noqa: E402

report_figures(
    cells=snakemake.params.cells,  # noqa: F821
    provenance_paths=snakemake.input.provenance,  # noqa: F821
    titles=snakemake.params.titles,  # noqa: F821
    task_titles=snakemake.params.task_titles,  # noqa: F821
    out_dir=snakemake.output[0],  # noqa: F821
)
