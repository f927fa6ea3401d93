"""What run settings each probe output was made for, and the checks that its consumers agree.

A cell's numbers pass through four files: ``probe.pt`` and ``train.json``
(rule train_probe), ``test.json`` (evaluate_probe) and the provenance record.
Each carries the *training identity* it was made for, the sha256 of the
configuration's ``probe`` section and ``seed`` (:func:`training_identity`):

- ``train.json``: ``identity`` and ``probe_sha256`` (the bytes of the
  ``probe.pt`` it wrote, which also embeds the identity);
- ``test.json``: ``probe: {identity, sha256}`` of the ``probe.pt`` it evaluated;
- the provenance record: ``probe_identity: {identity, sha256}``.

:func:`check_cell` (rule provenance) and :func:`check_table_cell` (rule table)
raise a :class:`~mirprobe.errors.DataError` naming the files that disagree with
each other or with the configuration, so a record made by another run (a job of
a killed run finishing late, a file copied in by hand) stops the run instead of
becoming a table cell.
"""

import hashlib
import json

from .errors import DataError

#: what a user does about a disagreement
_REMEDY = (
    "a job of another run (a killed one?) wrote it; remake the cell with "
    "`snakemake --forcerun train_probe` (or delete these files and rerun)"
)


def _canonical(obj):
    # JSON text: a tuple and its JSON round trip (a list) compare equal, and so do NaNs
    return json.dumps(obj, sort_keys=True, default=str)


def training_identity(probe_config, seed):
    """sha256 of the settings a probe is trained with (the config's ``probe`` and ``seed``)."""
    return hashlib.sha256(_canonical({"probe": probe_config, "seed": seed}).encode()).hexdigest()


def check_cell(train_record, test_record, *, probe_config, seed, train_path, test_path):
    """Raise unless ``train.json`` was made for this config and ``test.json`` scored its probe."""
    expected = training_identity(probe_config, seed)
    trained_for = train_record.get("identity")
    if trained_for != expected:
        selected = (train_record.get("selected") or {}).get("config")
        raise DataError(
            f"{train_path}: trained for other probe settings (identity {trained_for}, selected "
            f"probe {json.dumps(selected, sort_keys=True)}) than the configuration's "
            f"(identity {expected}, probe {json.dumps(probe_config, sort_keys=True)}, "
            f"seed {seed}): {_REMEDY}"
        )
    tested = test_record.get("probe") or {}
    if (tested.get("identity"), tested.get("sha256")) != (
        trained_for,
        train_record.get("probe_sha256"),
    ):
        raise DataError(
            f"{test_path}: scored the probe file with sha256 {tested.get('sha256')} (identity "
            f"{tested.get('identity')}), but {train_path} describes the one with sha256 "
            f"{train_record.get('probe_sha256')} (identity {trained_for}): {_REMEDY}"
        )


def check_table_cell(provenance, test_record, *, probe_config, provenance_path, test_path):
    """Raise unless a provenance record is of this config and of this test record."""
    resolved = (provenance.get("config") or {}).get("resolved") or {}
    if _canonical(resolved.get("probe")) != _canonical(probe_config):
        raise DataError(
            f"{provenance_path}: made for probe settings {_canonical(resolved.get('probe'))}, "
            f"the configuration has {_canonical(probe_config)}: {_REMEDY}"
        )
    if _canonical([provenance.get("probe_identity"), provenance.get("test_metrics")]) != (
        _canonical([test_record.get("probe"), test_record.get("metrics")])
    ):
        raise DataError(
            f"{provenance_path} and {test_path} describe different probes "
            f"({provenance.get('probe_identity')} and {test_record.get('probe')}): {_REMEDY}"
        )


def training_settings(probe_config):
    """The ``probe`` settings the grid is trained and selected with: all but
    ``seeds``, which only retrain the selected configuration afterwards (rule
    retrain_seeds). So listing seeds reruns no grid, and the probe files and
    their training identity (mirprobe.identity) stay those of a run without."""
    return {key: value for key, value in probe_config.items() if key != "seeds"}
