"""Feature extraction per shard, and loading of extracted features.

A feature shard is one ``.npz`` file holding ``clip_ids`` (the clips embedded,
in manifest order), one ``layer:<name>`` array ``(n_clips, dim)`` per layer,
and ``profile``, a JSON string (device, clips/s, peak memory, wall time).
Clips the resampling step excluded are not embedded; they stay listed in the
shard manifest with their reason.
"""

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

from .atomic import atomic_path
from .errors import ConfigError, DataError


def resolve_device(requested="auto"):
    """``auto`` -> ``cuda`` when torch sees a GPU, else ``cpu``; ``cuda`` without a GPU
    is a ``ConfigError`` (rather than torch's error at the first allocation)."""
    if requested == "cpu":
        return requested
    try:
        import torch
    except ImportError:
        torch = None
    available = torch is not None and torch.cuda.is_available()
    if requested == "auto":
        return "cuda" if available else "cpu"
    if str(requested).startswith("cuda") and not available:
        raise ConfigError(
            f"device {requested!r} was asked for, but torch sees no CUDA GPU here "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')!r}); "
            "use cpu or auto"
        )
    return requested


def peak_memory_mb(device):
    """Peak resident memory of this process (and of the GPU, on cuda), in MiB."""
    peak = {"host_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if str(device).startswith("cuda"):
        try:  # a cuda device implies torch, but CPU-only environments lack it
            import torch
        except ImportError:
            return peak
        peak["gpu_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def extract_shard(
    shard_dir, out_path, *, extractor, layers, batch_size=8, device="cpu", dataset=None, code=None
):
    """Embed every good clip of a resampled shard; write the feature shard atomically.

    ``dataset`` (the dataset's class) is needed by extractors that read stored
    features by clip id rather than audio (``reads_audio = False``). ``code``
    (:func:`mirprobe.provenance.code_record`) is the code the job runs.
    """
    from tqdm import tqdm

    from .audio import load_audio, read_manifest

    shard_dir = Path(shard_dir)
    manifest = read_manifest(shard_dir)
    good = manifest[manifest["status"] == "ok"]
    layers = extractor.check_layers(layers)
    if not extractor.reads_audio and dataset is None:
        raise ConfigError(f"extractor {extractor.name!r} reads features by clip id: give dataset")
    started_at = time.time()
    started = time.perf_counter()
    extractor.load(device=device)
    load_s = time.perf_counter() - started

    outputs = {layer: [] for layer in layers}
    clip_ids = list(good["clip_id"])
    embed_started = time.perf_counter()
    progress = tqdm(total=len(clip_ids), desc=shard_dir.name, unit="clip", file=sys.stderr)
    for start in range(0, len(clip_ids), batch_size):
        batch_ids = clip_ids[start : start + batch_size]
        if extractor.reads_audio:
            batch = [
                load_audio(shard_dir / f"{clip_id}.wav", sr=extractor.sample_rate)
                for clip_id in batch_ids
            ]
            embedded = extractor.embed(batch, layers=layers)
        else:
            embedded = extractor.embed_clips(batch_ids, layers=layers, dataset=dataset)
        for layer in layers:
            array = np.asarray(embedded[layer], dtype=np.float32)
            if array.shape[0] != len(batch_ids) or array.ndim != 2:
                raise DataError(
                    f"extractor {extractor.name!r} layer {layer}: got shape {array.shape} "
                    f"for a batch of {len(batch_ids)} clips"
                )
            outputs[layer].append(array)
        progress.update(len(batch_ids))
    progress.close()
    embed_s = time.perf_counter() - embed_started

    from .provenance import checked_code_record, environment_record

    profile = {
        "device": str(device),
        "extractor": extractor.name,
        "wall_s": round(time.perf_counter() - started, 3),
        # wall-clock interval, to check how jobs shared CPUs and GPUs
        "started_at": round(started_at, 3),
        "finished_at": round(time.time(), 3),
        "n_clips": len(clip_ids),
        "n_excluded": int((manifest["status"] != "ok").sum()),
        "load_s": round(load_s, 3),
        "embed_s": round(embed_s, 3),
        "clips_per_s": round(len(clip_ids) / embed_s, 3) if embed_s > 0 else None,
        **{k: round(v, 1) for k, v in peak_memory_mb(device).items()},
    }
    if extractor.source_record() is not None:
        profile["source"] = extractor.source_record()
    profile["environment"] = environment_record(device=device)
    if code is not None:
        profile["code"] = checked_code_record(code)
    arrays = {
        f"layer:{layer}": (np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32))
        for layer, chunks in outputs.items()
    }
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                clip_ids=np.array(clip_ids, dtype=str),
                profile=np.array(json.dumps(profile, sort_keys=True)),
                **arrays,
            )
    print(json.dumps(profile, sort_keys=True), file=sys.stderr)
    return profile


def load_feature_shards(paths, *, layer):
    """Concatenate ``layer`` over feature shards: ``(clip_ids, X, profiles)``."""
    clip_ids, blocks, profiles = [], [], []
    for path in paths:
        with np.load(path, allow_pickle=False) as shard:
            key = f"layer:{layer}"
            if key not in shard.files:
                available = [f.split(":", 1)[1] for f in shard.files if f.startswith("layer:")]
                raise DataError(f"{path}: no layer {layer!r}; layers present: {available}")
            ids = shard["clip_ids"].tolist()
            if ids:
                blocks.append(shard[key])
            clip_ids.extend(ids)
            profiles.append(json.loads(str(shard["profile"])))
    if not blocks:
        raise DataError(f"no clips in feature shards {[str(p) for p in paths]}")
    return clip_ids, np.concatenate(blocks), profiles
