"""Snakemake script: assemble the results table (rule table)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))

from mirprobe.claims import claim_job

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)

from mirprobe.plots import report_figures, report_published
from mirprobe.stages import assemble_table

assemble_table(
    datasets=snakemake.params.datasets,
    probe_config=snakemake.params.probe_config,
    out_paths=list(snakemake.output.tables),
    published=snakemake.params.published,
    provenance_paths=snakemake.input.provenance,
    representation_labels=snakemake.params.labels,
    uncertainty=snakemake.params.uncertainty,
)
task_titles = {
    name: entry.get("label") or name for name, entry in snakemake.params.datasets.items()
}
report_figures(
    provenance_paths=snakemake.input.provenance,
    task_titles=task_titles,
    out_dir=snakemake.output.figures,
)
report_published(
    provenance_paths=snakemake.input.provenance,
    published=snakemake.params.published,
    task_titles=task_titles,
    md_path=snakemake.output.published,
    csv_path=snakemake.output.published_csv,
)
