"""Save and load fitted probes: one file, tensors plus JSON metadata.

The file is a ``torch.save`` of a plain dict holding only tensors, strings
and ints, so ``torch.load(path, weights_only=True)`` reads it without
unpickling arbitrary objects:

``format``        ``"mirprobe-probe"``
``version``       ``1``
``state_dict``    the network's parameters (CPU tensors)
``scaler_mean``   float64 tensor, shape (n_features,)
``scaler_scale``  float64 tensor, shape (n_features,)
``metadata``      a JSON string: config, labels, task type, n_features,
                  ensemble strategy, training record and ``identity`` (the
                  digest of the run settings it was trained for, or null); a
                  config with ``protocol: "sklearn_cv"`` is a ``QuickConfig``
                  (a linear network holding the fitted coefficients)

Files are written atomically and their bytes depend on the probe only: the
archive is built in memory, so no temporary file name ends up in it, and the
same probe gives the same file (and sha256) in every run. A loaded probe
predicts exactly as the saved one.
"""

import hashlib
import io
import json
from pathlib import Path

import torch

from mirprobe.atomic import write_bytes
from mirprobe.errors import DataError, ModelError
from mirprobe.probes.config import ProbeConfig
from mirprobe.probes.model import FittedProbe, ProbeMLP, TrainingRecord

FORMAT = "mirprobe-probe"
VERSION = 1


def save_probe(probe: FittedProbe, path, *, identity=None) -> str:
    """Write ``probe`` to ``path`` atomically; return the file's sha256.

    ``identity`` (a string) is stored in the metadata, where
    :func:`probe_identity` reads it back (see the module docstring for the layout).
    """
    if not isinstance(probe, FittedProbe):
        raise ModelError(f"save_probe needs a FittedProbe, got {type(probe).__name__}")
    metadata = {
        "config": probe.config.to_dict(),
        "labels": probe.labels,
        "task_type": probe.task_type,
        "n_features": probe.n_features,
        "ensemble": probe.ensemble,
        "record": None if probe.record is None else probe.record.to_dict(),
        "identity": identity,
    }
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "state_dict": {
            name: tensor.detach().cpu().clone()
            for name, tensor in probe.module.state_dict().items()
        },
        "scaler_mean": torch.from_numpy(probe.scaler_mean.copy()),
        "scaler_scale": torch.from_numpy(probe.scaler_scale.copy()),
        "metadata": json.dumps(metadata, sort_keys=True),
    }
    buffer = io.BytesIO()
    # to a file object, torch names the archive's records "archive/...", not after the file
    torch.save(payload, buffer)
    data = buffer.getvalue()
    write_bytes(path, data)
    return hashlib.sha256(data).hexdigest()


def _read_payload(path):
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such probe file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelError(f"{path}: not a readable probe file ({error})") from None
    return payload


def probe_identity(path):
    """The ``identity`` a probe file was saved with (None where it has none)."""
    try:
        return json.loads(_read_payload(path)["metadata"]).get("identity")
    except (KeyError, TypeError, ValueError) as error:
        raise ModelError(f"{path}: probe file is inconsistent ({error})") from None


def load_probe(path, *, device: str = "cpu") -> FittedProbe:
    """Read a probe written by ``save_probe``, its network on ``device`` in eval mode."""
    path = Path(path)
    payload = _read_payload(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ModelError(f"{path}: not a {FORMAT} file")
    if payload.get("version") != VERSION:
        raise ModelError(
            f"{path}: probe file version {payload.get('version')!r}, this mirprobe reads {VERSION}"
        )
    try:
        metadata = json.loads(payload["metadata"])
        if metadata["config"].get("protocol") == "sklearn_cv":
            from mirprobe.probes.quick import QuickConfig

            config = QuickConfig.from_dict(metadata["config"])
        else:
            config = ProbeConfig.from_dict(metadata["config"])
        module = ProbeMLP(
            n_features=metadata["n_features"],
            hidden_sizes=config.hidden_sizes,
            n_outputs=len(metadata["labels"]),
            dropout=config.dropout,
        )
        module.load_state_dict(payload["state_dict"], strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ModelError(f"{path}: probe file is inconsistent ({error})") from None
    record = metadata.get("record")
    if record is not None:
        record["curve"] = [(int(step), float(score)) for step, score in record["curve"]]
        record = TrainingRecord(**record)
    module.to(torch.device(device)).eval()
    return FittedProbe(
        config=config,
        scaler_mean=payload["scaler_mean"].numpy(),
        scaler_scale=payload["scaler_scale"].numpy(),
        module=module,
        labels=metadata["labels"],
        task_type=metadata["task_type"],
        record=record,
        ensemble=metadata["ensemble"],
    )
