"""Snakemake script: assemble the results table (rule table)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from mirprobe.claims import claim_job  # noqa: E402

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)  # noqa: F821

from mirprobe.plots import report_figures  # noqa: E402
from mirprobe.stages import assemble_table  # noqa: E402

assemble_table(
    datasets=snakemake.params.datasets,  # noqa: F821
    probe_config=snakemake.params.probe_config,  # noqa: F821
    out_paths=list(snakemake.output.tables),  # noqa: F821
    published=snakemake.params.published,  # noqa: F821
    provenance_paths=snakemake.input.provenance,  # noqa: F821
    representation_labels=snakemake.params.labels,  # noqa: F821
    uncertainty=snakemake.params.uncertainty,  # noqa: F821
)
report_figures(
    provenance_paths=snakemake.input.provenance,  # noqa: F821
    task_titles={
        name: entry.get("label") or name
        for name, entry in snakemake.params.datasets.items()  # noqa: F821
    },
    out_dir=snakemake.output.figures,  # noqa: F821
)
