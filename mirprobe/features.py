"""Feature extraction per shard, and loading of extracted features.

A feature shard is one ``.npz`` file holding ``clip_ids`` (the clips embedded,
in manifest order), one ``layer:<name>`` array ``(n_clips, dim)`` per layer,
``profile``, a JSON string (device, clips/s, peak memory, wall time), and
``excluded``, a JSON list of the clips left out at extraction
(``clip_id``, ``source``, ``reason``). Clips the resampling step excluded are
not embedded; they stay listed in the shard manifest with their reason.

A feature shard also carries, as the JSON string ``dataset``, what the stages
after it need of the dataset, so that they read feature shards only
(:func:`shard_dataset`, :func:`load_shard_datasets`): the metadata of every
clip it accounts for (embedded or excluded: ``clips``, with ``split``,
``label``, ``song_id`` and ``row``, the clip's position in metadata.csv), the
clips the resampling excluded (``excluded_at_resampling``, with their reasons),
the records of the audio shards it read (``resample``) and the dataset's
prepare record (``prepare``: task type, labels, checksums, source).

Checks at extraction, under the run's bad-audio policy (``error``: one error
naming every bad clip of the shard, the first ``MAX_LISTED``; ``exclude``: the
clip is left out of the feature shard and listed in ``excluded`` with its
reason, so that training, evaluation and provenance list it):

* before the model loads, a clip shorter than the extractor's
  ``min_input_samples`` (at its sample rate) is bad;
* after embedding, a clip with a non-finite value (NaN or inf) in any layer
  is bad.
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


def shard_dataset(shard_dirs, clip_ids):
    """What a feature shard carries of the dataset (see the module docstring), for the
    clips ``clip_ids`` (embedded or excluded) of the resampled shards ``shard_dirs``."""
    from .audio import read_manifest

    wanted = set(clip_ids)
    prepare, resample, clips, excluded = None, [], [], []
    for shard_dir in map(Path, shard_dirs):
        path = shard_dir / "stage.json"
        if not path.is_file():
            raise DataError(
                f"{path}: resampling record missing (the shard was not written by the "
                f"resample rule, or only partly); remake the shard: "
                f"snakemake --forcerun {shard_dir}"
            )
        with open(path) as handle:
            record = json.load(handle)
        if "prepare" not in record or "clips" not in record:
            raise DataError(
                f"{path}: the resampling record lacks the dataset's metadata or prepare "
                f"record (written by an older mirprobe, or without prepare_record_path); "
                f"remake the shard: snakemake --forcerun {shard_dir}"
            )
        if prepare is not None and record["prepare"] != prepare:
            raise DataError(
                f"{path}: made from another preparation of the dataset than {shard_dirs[0]}"
            )
        prepare = record["prepare"]
        resample.append({k: v for k, v in record.items() if k not in ("prepare", "clips")})
        clips += [c for c in record["clips"] if c["clip_id"] in wanted]
        manifest = read_manifest(shard_dir)
        excluded += [
            {"clip_id": row.clip_id, "source": row.source, "reason": row.reason}
            for row in manifest[manifest["status"] != "ok"].itertuples(index=False)
            if row.clip_id in wanted
        ]
    return {
        "prepare": prepare,
        "resample": resample,
        "clips": clips,
        "excluded_at_resampling": excluded,
    }


class ShardDataset:
    """The dataset as the feature shards of one representation carry it (load_shard_datasets).

    ``prepare``: the prepare record; ``resample``: the audio shards' records, one per
    shard; ``metadata``: a table of ``clip_id``, ``split``, ``label``, ``song_id`` in
    metadata.csv order; ``excluded``: clips excluded at resampling, then at extraction.
    """

    def __init__(self, prepare, resample, metadata, excluded):
        self.prepare, self.resample = prepare, resample
        self.metadata, self.excluded = metadata, excluded


def load_shard_datasets(paths):
    """The dataset the feature shards ``paths`` carry (:class:`ShardDataset`).

    The shards must come from one preparation of the dataset and, together,
    account for each of its clips once: a missing or repeated shard is an error."""
    import pandas as pd

    prepare, resample, clips, at_resampling, at_extraction = None, {}, [], [], []
    for path in paths:
        with np.load(path, allow_pickle=False) as shard:
            if "dataset" not in shard.files:
                raise DataError(
                    f"{path}: the feature shard carries no dataset record (written by an older "
                    f"mirprobe); remake it: snakemake --forcerun {path}"
                )
            carried = json.loads(str(shard["dataset"]))
            at_extraction += json.loads(str(shard["excluded"]))
        if prepare is not None and carried["prepare"] != prepare:
            raise DataError(f"{path}: made from another preparation of the dataset than {paths[0]}")
        prepare = carried["prepare"]
        for record in carried["resample"]:
            # batches spanning the dataset each carry the records of the shards they read
            resample.setdefault(record.get("shard"), record)
        clips += carried["clips"]
        at_resampling += carried["excluded_at_resampling"]
    if prepare is None:
        raise DataError("no feature shards given")
    rows = sorted(c["row"] for c in clips)
    if rows != list(range(prepare["n_clips"])):
        repeated = sorted({r for r in rows if rows.count(r) > 1})
        raise DataError(
            f"feature shards {[str(p) for p in paths]} account for {len(rows)} clips of the "
            f"dataset's {prepare['n_clips']}"
            + (f" (rows {repeated[:5]} more than once)" if repeated else " (a shard is missing?)")
        )
    metadata = pd.DataFrame(
        sorted(clips, key=lambda c: c["row"]), columns=["clip_id", "split", "label", "song_id"]
    )
    return ShardDataset(
        prepare,
        [resample[k] for k in sorted(resample)],
        metadata,
        at_resampling + at_extraction,
    )


def _settle(problems, *, on_bad_audio, what):
    """Raise one DataError naming every ``(clip_id, source, reason)`` under ``error``;
    else print them and return them as exclusion records."""
    from .audio import bad_clips_message

    if problems and on_bad_audio == "error":
        lines = [f"{clip_id} ({source}): {reason}" for clip_id, source, reason in problems]
        raise DataError(bad_clips_message(lines, what=what))
    for clip_id, source, reason in problems:
        print(f"excluded {clip_id} ({source}): {reason}", file=sys.stderr, flush=True)
    return [{"clip_id": c, "source": s, "reason": r} for c, s, r in problems]


def too_short(shard_dir, clips, *, extractor):
    """``(clip_id, source, reason)`` of the ``clips`` (manifest rows) of a resampled shard
    shorter than the extractor's ``min_input_samples``, read from the WAV headers."""
    import soundfile as sf

    minimum, sr = extractor.min_input_samples, extractor.sample_rate
    problems = []
    for row in clips.itertuples(index=False):
        n = sf.info(str(Path(shard_dir) / f"{row.clip_id}.wav")).frames
        if n < minimum:
            problems.append(
                (
                    row.clip_id,
                    row.source,
                    f"too short for {extractor.name}: {n} samples ({n / sr:.3f} s) at {sr} Hz, "
                    f"it accepts at least {minimum} ({minimum / sr:.3f} s)",
                )
            )
    return problems


def non_finite(embedded, *, layers):
    """Per clip of a batch, the reason its features are not finite ('' when they are)."""
    reasons = None
    for layer in layers:
        bad = ~np.isfinite(embedded[layer])
        reasons = reasons or [[] for _ in range(bad.shape[0])]
        for row in np.flatnonzero(bad.any(axis=1)):
            reasons[row].append(f"layer {layer}: {int(bad[row].sum())} of {bad.shape[1]}")
    return [
        f"non-finite features (NaN or inf; {', '.join(r)} values)" if r else "" for r in reasons
    ]


def extract_shard(
    shard_dir,
    out_path,
    *,
    extractor,
    layers,
    batch_size=8,
    device="cpu",
    dataset=None,
    on_bad_audio="error",
    code=None,
    carry_dataset=False,
):
    """Embed every good clip of a resampled shard; write the feature shard atomically.

    ``dataset`` (the dataset's class) is needed by extractors that read stored
    features by clip id rather than audio (``reads_audio = False``).
    ``on_bad_audio`` applies to clips too short for the extractor and to
    non-finite features (see the module docstring). ``code``
    (:func:`mirprobe.provenance.code_record`) is the code the job runs. With
    ``carry_dataset`` (the workflow's extract stage), the shard carries the dataset
    read from the resampled shard's record (see the module docstring).
    """
    from tqdm import tqdm

    from .audio import BAD_AUDIO_POLICIES, load_audio, read_manifest

    if on_bad_audio not in BAD_AUDIO_POLICIES:
        raise ConfigError(f"on_bad_audio={on_bad_audio!r}; allowed {BAD_AUDIO_POLICIES}")
    shard_dir = Path(shard_dir)
    manifest = read_manifest(shard_dir)
    carried = shard_dataset([shard_dir], manifest["clip_id"].tolist()) if carry_dataset else None
    good = manifest[manifest["status"] == "ok"]
    layers = extractor.check_layers(layers)
    if not extractor.reads_audio and dataset is None:
        raise ConfigError(f"extractor {extractor.name!r} reads features by clip id: give dataset")
    what = f"{shard_dir} for {extractor.name}"
    excluded = []
    if extractor.reads_audio:
        excluded = _settle(
            too_short(shard_dir, good, extractor=extractor), on_bad_audio=on_bad_audio, what=what
        )
    source_of = dict(zip(good["clip_id"], good["source"], strict=True))
    started_at = time.time()
    started = time.perf_counter()
    extractor.load(device=device)
    load_s = time.perf_counter() - started

    outputs = {layer: [] for layer in layers}
    skipped = {e["clip_id"] for e in excluded}
    to_embed = [c for c in good["clip_id"] if c not in skipped]
    clip_ids, unusable = [], []
    embed_started = time.perf_counter()
    progress = tqdm(total=len(to_embed), desc=shard_dir.name, unit="clip", file=sys.stderr)
    for start in range(0, len(to_embed), batch_size):
        batch_ids = to_embed[start : start + batch_size]
        if extractor.reads_audio:
            batch = [
                load_audio(shard_dir / f"{clip_id}.wav", sr=extractor.sample_rate)
                for clip_id in batch_ids
            ]
            embedded = extractor.embed(batch, layers=layers)
        else:
            embedded = extractor.embed_clips(batch_ids, layers=layers, dataset=dataset)
        arrays = {}
        for layer in layers:
            array = np.asarray(embedded[layer], dtype=np.float32)
            if array.shape[0] != len(batch_ids) or array.ndim != 2:
                raise DataError(
                    f"extractor {extractor.name!r} layer {layer}: got shape {array.shape} "
                    f"for a batch of {len(batch_ids)} clips"
                )
            arrays[layer] = array
        reasons = non_finite(arrays, layers=layers)
        keep = np.array([not r for r in reasons], dtype=bool)
        for clip_id, reason in zip(batch_ids, reasons, strict=True):
            if reason:
                unusable.append((clip_id, source_of.get(clip_id, ""), reason))
        for layer in layers:
            outputs[layer].append(arrays[layer][keep])
        clip_ids += [c for c, k in zip(batch_ids, keep, strict=True) if k]
        progress.update(len(batch_ids))
    progress.close()
    embed_s = time.perf_counter() - embed_started
    excluded += _settle(unusable, on_bad_audio=on_bad_audio, what=what)

    profile = {
        "device": str(device),
        "extractor": extractor.name,
        "wall_s": round(time.perf_counter() - started, 3),
        # wall-clock interval, to check how jobs shared CPUs and GPUs
        "started_at": round(started_at, 3),
        "finished_at": round(time.time(), 3),
        "n_clips": len(clip_ids),
        "n_excluded": int((manifest["status"] != "ok").sum()) + len(excluded),
        "n_excluded_at_extraction": len(excluded),
        "load_s": round(load_s, 3),
        "embed_s": round(embed_s, 3),
        "clips_per_s": round(len(to_embed) / embed_s, 3) if embed_s > 0 else None,
        **{k: round(v, 1) for k, v in peak_memory_mb(device).items()},
    }
    arrays = {
        f"layer:{layer}": (np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32))
        for layer, chunks in outputs.items()
    }
    write_feature_shard(
        out_path,
        clip_ids=clip_ids,
        arrays=arrays,
        excluded=excluded,
        profile=profile,
        extractor=extractor,
        device=device,
        code=code,
        dataset=carried,
    )
    print(json.dumps(profile, sort_keys=True), file=sys.stderr)
    return profile


def write_feature_shard(
    out_path, *, clip_ids, arrays, excluded, profile, extractor, device, code, dataset
):
    """Complete ``profile`` (source, environment, code) and write the shard atomically,
    with ``dataset`` (:func:`shard_dataset`; None: none) carried along."""
    from .provenance import checked_code_record, environment_record

    if extractor.source_record() is not None:
        profile["source"] = extractor.source_record()
    profile["environment"] = environment_record(
        device=device, packages=extractor.provenance_packages()
    )
    if code is not None:
        profile["code"] = checked_code_record(code)
    with atomic_path(out_path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                clip_ids=np.array(clip_ids, dtype=str),
                profile=np.array(json.dumps(profile, sort_keys=True)),
                excluded=np.array(json.dumps(excluded, sort_keys=True)),
                **(
                    {}
                    if dataset is None
                    else {"dataset": np.array(json.dumps(dataset, sort_keys=True))}
                ),
                **arrays,
            )


def feature_shard_exclusions(paths):
    """The clips left out at extraction (``clip_id``, ``source``, ``reason``) of feature
    shards; none for shards written before extraction checked clips."""
    excluded = []
    for path in paths:
        with np.load(path, allow_pickle=False) as shard:
            if "excluded" in shard.files:
                excluded.extend(json.loads(str(shard["excluded"])))
    return excluded


def extract_dataset_batch(
    shard_dirs,
    out_path,
    *,
    batch_index,
    extractor,
    layers,
    device="cpu",
    dataset=None,
    on_bad_audio="error",
    code=None,
    carry_dataset=False,
):
    """Embed batch ``batch_index`` of a dataset as one forward pass, for extractors
    whose features depend on their batch-mates; write it as a feature shard.

    The batches are ``extractor.dataset_batches`` of every clip listed in the
    manifests of ``shard_dirs`` (all the dataset's audio shards), so they do not
    depend on the shard size; clips the resampling excluded are left out of
    their batch. The profile's ``batch`` records the rule and the batch's clips.
    ``carry_dataset``: as for :func:`extract_shard`, for the batch's clips.
    """
    from .audio import load_audio, read_manifest

    shard_of, status = {}, {}
    for shard_dir in map(Path, shard_dirs):
        for row in read_manifest(shard_dir).itertuples(index=False):
            shard_of[row.clip_id], status[row.clip_id] = shard_dir, row.status
    batches = extractor.dataset_batches(sorted(shard_of), dataset=dataset)
    if not 0 <= batch_index < len(batches):
        raise DataError(
            f"{extractor.name}: batch {batch_index} asked for, but the {len(shard_of)} clips "
            f"of {len(list(shard_dirs))} audio shards make {len(batches)} batches"
        )
    members = batches[batch_index]
    carried = (
        shard_dataset(sorted({shard_of[c] for c in members}), members) if carry_dataset else None
    )
    clip_ids = [c for c in members if status[c] == "ok"]
    layers = extractor.check_layers(layers)
    # the checks of extract_shard: too short before the model loads, non-finite after
    what = f"batch {batch_index} for {extractor.name}"
    excluded = []
    for shard_dir in sorted({shard_of[c] for c in clip_ids}):
        manifest = read_manifest(shard_dir)
        rows = manifest[manifest["clip_id"].isin(clip_ids)]
        excluded += _settle(
            too_short(shard_dir, rows, extractor=extractor), on_bad_audio=on_bad_audio, what=what
        )
    skipped = {e["clip_id"] for e in excluded}
    clip_ids = [c for c in clip_ids if c not in skipped]
    started_at, started = time.time(), time.perf_counter()
    extractor.load(device=device)
    load_s = time.perf_counter() - started
    embed_started = time.perf_counter()
    audio = [load_audio(shard_of[c] / f"{c}.wav", sr=extractor.sample_rate) for c in clip_ids]
    embedded = extractor.embed(audio, layers=layers) if clip_ids else {}
    arrays = {}
    for layer in layers:
        array = np.asarray(embedded.get(layer, np.zeros((0, 0))), dtype=np.float32)
        if clip_ids and (array.ndim != 2 or array.shape[0] != len(clip_ids)):
            raise DataError(
                f"extractor {extractor.name!r} layer {layer}: got shape {array.shape} "
                f"for a batch of {len(clip_ids)} clips"
            )
        arrays[f"layer:{layer}"] = array
    if clip_ids:
        reasons = non_finite({k.split(":", 1)[1]: v for k, v in arrays.items()}, layers=layers)
        source_of = {
            row.clip_id: row.source
            for shard_dir in {shard_of[c] for c in clip_ids}
            for row in read_manifest(shard_dir).itertuples(index=False)
        }
        unusable = [
            (c, source_of.get(c, ""), r) for c, r in zip(clip_ids, reasons, strict=True) if r
        ]
        excluded += _settle(unusable, on_bad_audio=on_bad_audio, what=what)
        keep = np.array([not r for r in reasons], dtype=bool)
        arrays = {k: v[keep] for k, v in arrays.items()}
        clip_ids = [c for c, k in zip(clip_ids, keep, strict=True) if k]
    embed_s = time.perf_counter() - embed_started

    profile = {
        "device": str(device),
        "extractor": extractor.name,
        "wall_s": round(time.perf_counter() - started, 3),
        "started_at": round(started_at, 3),
        "finished_at": round(time.time(), 3),
        "n_clips": len(clip_ids),
        "n_excluded": len(members) - len(clip_ids),
        "n_excluded_at_extraction": len(excluded),
        "load_s": round(load_s, 3),
        "embed_s": round(embed_s, 3),
        "clips_per_s": round(len(clip_ids) / embed_s, 3) if embed_s > 0 else None,
        "batch": {
            **extractor.batch_record(),
            "index": batch_index,
            "n_batches": len(batches),
            "clip_ids": members,
            "excluded": [c for c in members if status[c] != "ok"],
        },
        **{k: round(v, 1) for k, v in peak_memory_mb(device).items()},
    }
    write_feature_shard(
        out_path,
        clip_ids=clip_ids,
        arrays=arrays,
        excluded=excluded,
        profile=profile,
        extractor=extractor,
        device=device,
        code=code,
        dataset=carried,
    )
    print(json.dumps({k: v for k, v in profile.items() if k != "batch"}), file=sys.stderr)
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
