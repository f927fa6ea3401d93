"""mirprobe: probe pre-trained audio models for music knowledge.

The package holds the logic of the Snakemake workflow: datasets, audio I/O,
feature extractors, probes, metrics, tables and provenance. Every module
imports its heavy dependencies (torch, librosa) lazily, so that Snakemake can
parse the workflow in a fraction of a second.
"""

__version__ = "0.1.0"
