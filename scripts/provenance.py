"""Snakemake script: write the provenance record of one table cell (rule provenance)."""

import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w", buffering=1)  # noqa: F821
# import the mirprobe package of this workflow, whichever environment runs the job
sys.path.insert(0, str(Path(snakemake.scriptdir).parent))  # noqa: F821

from mirprobe.claims import claim_job  # noqa: E402

# this job alone may write its outputs; it stops when its snakemake run is gone
claim_job(snakemake)  # noqa: F821

from mirprobe.stages import cell_provenance  # noqa: E402

cell_provenance(
    task=snakemake.wildcards.dataset,  # noqa: F821
    representation=snakemake.wildcards.representation,  # noqa: F821
    layer=snakemake.wildcards.layer,  # noqa: F821
    row_label=snakemake.params.row_label,  # noqa: F821
    config=snakemake.params.config,  # noqa: F821
    config_sha256=snakemake.params.config_sha256,  # noqa: F821
    workflow_dir=snakemake.params.workflow_dir,  # noqa: F821
    feature_paths=snakemake.input.features,  # noqa: F821
    train_record_path=snakemake.input.train,  # noqa: F821
    test_record_path=snakemake.input.test,  # noqa: F821
    out_path=snakemake.output[0],  # noqa: F821
)
