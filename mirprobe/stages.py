"""The workflow's stages, one function each, called by the thin scripts in
``scripts/`` (one Snakemake rule -> one script -> one function here).

Each stage validates its inputs, does its work through the concern modules
(datasets, audio, features, probes, metrics, tables, provenance), and writes
its outputs atomically, a JSON stage record last.
"""

import json
import time
from pathlib import Path

from .atomic import write_json
from .errors import DataError
from .provenance import checked_code_record, code_record, stage_record


def _read_json(path):
    with open(path) as handle:
        return json.load(handle)


def prepare_dataset(
    *,
    name,
    dataset_config,
    metadata_path,
    record_path,
    checksums_path,
    data_home=None,
    threads=1,
    on_bad_audio=None,
):
    """Obtain (download or generate) a dataset; write its metadata, checksums and record.

    ``on_bad_audio`` is the run's policy, given to datasets that check audio
    at prepare time (None: ``error``)."""
    import pandas as pd

    from .atomic import atomic_path
    from .datasets import build_dataset
    from .datasets.base import file_sha256, read_metadata

    started = time.perf_counter()
    dataset = build_dataset(name, dataset_config, data_home=data_home)
    code = code_record("prepare_dataset", (type(dataset).__module__,))
    out_dir = Path(metadata_path).parent
    source = dataset.prepare(out_dir, threads=threads, on_bad_audio=on_bad_audio or "error")
    table = read_metadata(metadata_path)
    files = sorted(set(table["audio_path"]))
    checksums = pd.DataFrame(
        {"audio_path": files, "sha256": [file_sha256(out_dir / f) for f in files]}
    )
    with atomic_path(checksums_path) as tmp:
        checksums.to_csv(tmp, sep="\t", index=False)
    record = stage_record(
        "prepare",
        wall_s=time.perf_counter() - started,
        code=checked_code_record(code),
        kind=dataset_config["kind"],
        task_type=dataset.task_type,
        labels=list(dataset.labels()),
        n_clips=len(table),
        split_counts={k: int(v) for k, v in table["split"].value_counts().sort_index().items()},
        metadata_sha256=file_sha256(metadata_path),
        audio_sha256=file_sha256(checksums_path),
        n_audio_files=len(files),
        n_bad_audio_files=len(source.get("bad_audio", [])),
        source=source,
    )
    record["environment"] = {k: record[k] for k in ("host", "python", "packages")}
    write_json(record_path, record)
    return record


def resample(
    *,
    metadata_path,
    out_dir,
    shard,
    shard_size,
    sr,
    on_bad_audio,
    expected_clips,
    checksums_path=None,
):
    """Resample one shard of a dataset to mono WAV at ``sr``.

    The shard's source files are first checked against the digests that
    ``prepare_dataset`` recorded (``checksums_path``, by default the
    ``checksums.tsv`` beside the metadata), so a file replaced since is caught.
    """
    import pandas as pd

    from .audio import resample_shard, verify_shard_sources

    started = time.perf_counter()
    code = code_record("resample")
    if checksums_path is None:
        checksums_path = Path(metadata_path).with_name("checksums.tsv")
    sources = verify_shard_sources(
        metadata_path, checksums_path, shard=shard, shard_size=shard_size
    )
    manifest = resample_shard(
        metadata_path,
        out_dir,
        shard=shard,
        shard_size=shard_size,
        sr=sr,
        on_bad_audio=on_bad_audio,
        expected_clips=expected_clips,
    )
    record = stage_record(
        "resample",
        wall_s=time.perf_counter() - started,
        code=checked_code_record(code),
        sr=sr,
        shard=shard,
        n_ok=int((manifest["status"] == "ok").sum()),
        n_excluded=int((manifest["status"] != "ok").sum()),
        # clips whose peak exceeded full scale, scaled by 1/peak (see mirprobe.audio)
        n_rescaled=int((pd.to_numeric(manifest["peak"], errors="coerce") > 1).sum()),
        # the digest of each source file, verified against checksums.tsv
        source_sha256=sources,
    )
    write_json(Path(out_dir) / "stage.json", record)
    return record


def extract(
    *,
    shard_dir,
    out_path,
    representation_config,
    layers,
    device,
    dataset_kind=None,
    on_bad_audio="error",
    shard=None,
    weights_dir=(),
):
    """Embed one resampled shard (of a dataset of ``dataset_kind``) with one representation;
    for an extractor whose batches span the dataset, ``shard_dir`` lists every audio
    shard and ``shard`` is the index of the batch to embed. Checkpoints are also looked
    for in the ``weights_dir`` folders."""
    from .datasets import get_dataset_class
    from .extractors import build_extractor
    from .extractors.torch_weights import weights_dirs
    from .features import extract_dataset_batch, extract_shard, resolve_device

    extractor = build_extractor(representation_config)
    dataset = None if dataset_kind is None else get_dataset_class(dataset_kind)
    code = code_record(
        "extract", (type(extractor).__module__, *([dataset.__module__] if dataset else []))
    )
    device = resolve_device(device) if extractor.wants_gpu else "cpu"
    with weights_dirs(weights_dir):
        if extractor.dataset_batch_size(extractor.params) is not None:
            return extract_dataset_batch(
                [shard_dir] if isinstance(shard_dir, (str, Path)) else list(shard_dir),
                out_path,
                batch_index=shard,
                extractor=extractor,
                layers=layers,
                device=device,
                dataset=dataset,
                on_bad_audio=on_bad_audio,
                code=code,
            )
        return extract_shard(
            shard_dir,
            out_path,
            extractor=extractor,
            layers=layers,
            batch_size=representation_config["batch_size"],
            device=device,
            dataset=dataset,
            on_bad_audio=on_bad_audio,
            code=code,
        )


def _excluded_clips(shard_dirs, feature_paths=()):
    """Clips excluded by resampling (shard manifests), then at extraction (feature shards)."""
    from .audio import read_manifest
    from .features import feature_shard_exclusions

    excluded = []
    for shard_dir in shard_dirs:
        manifest = read_manifest(shard_dir)
        for row in manifest[manifest["status"] != "ok"].itertuples(index=False):
            excluded.append({"clip_id": row.clip_id, "source": row.source, "reason": row.reason})
    return excluded + feature_shard_exclusions(feature_paths)


def _probe_data(*, metadata_path, prepare_record_path, feature_paths, shard_dirs, layer):
    from .datasets.base import read_metadata
    from .features import load_feature_shards
    from .tasks import split_arrays

    prepared = _read_json(prepare_record_path)
    metadata = read_metadata(metadata_path)
    clip_ids, X, _ = load_feature_shards(feature_paths, layer=layer)
    excluded = _excluded_clips(shard_dirs, feature_paths)
    splits = split_arrays(
        metadata,
        clip_ids,
        X,
        task_type=prepared["task_type"],
        labels=prepared["labels"],
        excluded={e["clip_id"]: e["reason"] for e in excluded},
    )
    return prepared, splits, excluded


def _song_groups(prepared, split):
    """The song of each clip where the task scores songs (key), else None."""
    return split.groups if prepared["task_type"] == "key" else None


def train_probe(
    *,
    metadata_path,
    prepare_record_path,
    feature_paths,
    shard_dirs,
    layer,
    probe_config,
    seed,
    device,
    probe_path,
    record_path,
):
    """Train the probe grid on train, select on valid; save the selected probe."""
    from .features import resolve_device
    from .identity import training_identity
    from .probes import expand_grid, fit_grid, save_probe

    started = time.perf_counter()
    code = code_record("train_probe")
    device = resolve_device(device)
    prepared, splits, excluded = _probe_data(
        metadata_path=metadata_path,
        prepare_record_path=prepare_record_path,
        feature_paths=feature_paths,
        shard_dirs=shard_dirs,
        layer=layer,
    )
    configs = expand_grid(
        probe_config["grid"],
        eval_every=probe_config["eval_every"],
        patience=probe_config["patience"],
        max_steps=probe_config["max_steps"],
        seed=seed,
    )
    train, valid = splits["train"], splits["valid"]
    result = fit_grid(
        train.X,
        train.y,
        valid.X,
        valid.y,
        task_type=prepared["task_type"],
        labels=prepared["labels"],
        configs=configs,
        valid_groups=_song_groups(prepared, valid),
        device=device,
        trainer=probe_config["trainer"],
    )
    identity = training_identity(probe_config, seed)
    probe_sha256 = save_probe(result.best, probe_path, identity=identity)
    from .metrics import PRIMARY_METRIC

    primary = PRIMARY_METRIC[prepared["task_type"]]
    ranking = sorted(
        (
            {"uid": r["uid"], "config": r["config"], "valid_primary": r["valid_metrics"]["primary"]}
            for r in result.records
        ),
        key=lambda r: -r["valid_primary"],
    )
    best = next(r for r in result.records if r["uid"] == result.best_config.uid())
    record = stage_record(
        "train",
        wall_s=time.perf_counter() - started,
        device=device,
        code=checked_code_record(code),
        trainer=probe_config["trainer"],
        primary_metric=primary,
        selected={
            "config": result.best_config.to_dict(),
            "uid": result.best_config.uid(),
            "best_step": best.get("best_step"),
            "steps": best.get("steps"),
            "valid_metrics": best["valid_metrics"],
            "ensemble": getattr(result.best, "ensemble", None),
        },
        ranking=ranking,
        grid=result.records,
        excluded=excluded,
        clip_counts={k: len(v.clip_ids) for k, v in splits.items()},
        identity=identity,
        probe_sha256=probe_sha256,
    )
    record["environment"] = {k: record[k] for k in ("host", "python", "packages", "device")}
    write_json(record_path, record)
    return record


def evaluate_probe(
    *,
    metadata_path,
    prepare_record_path,
    feature_paths,
    shard_dirs,
    layer,
    probe_path,
    device,
    record_path,
    predictions_path=None,
):
    """Evaluate the selected probe once on the test split; with ``predictions_path``,
    also save its per-clip predictions there (:mod:`mirprobe.predictions`)."""
    from .datasets.base import file_sha256
    from .features import resolve_device
    from .metrics import compute_metrics
    from .probes import load_probe
    from .probes.io import probe_identity

    started = time.perf_counter()
    code = code_record("evaluate_probe")
    device = resolve_device(device)
    prepared, splits, excluded = _probe_data(
        metadata_path=metadata_path,
        prepare_record_path=prepare_record_path,
        feature_paths=feature_paths,
        shard_dirs=shard_dirs,
        layer=layer,
    )
    probe = load_probe(probe_path)
    # which probe file this record scores: provenance checks it is train.json's
    probe_file = {"identity": probe_identity(probe_path), "sha256": file_sha256(probe_path)}
    test = splits["test"]
    scores = probe.predict_scores(test.X)
    metrics = compute_metrics(
        prepared["task_type"],
        y_true=test.y,
        scores=scores,
        labels=prepared["labels"],
        groups=_song_groups(prepared, test),
        ensemble=getattr(probe, "ensemble", None) or "mean_prob",
    )
    # -- per-clip predictions (issue 12): an extra output, named by its digest
    extra = {}
    if predictions_path is not None:
        from .predictions import write_predictions

        write_predictions(
            predictions_path,
            task_type=prepared["task_type"],
            labels=prepared["labels"],
            clip_ids=test.clip_ids,
            song_ids=test.groups,
            target=test.y,
            scores=scores,
            ensemble=getattr(probe, "ensemble", None) or "mean_prob",
            splits={k: v.clip_ids for k, v in splits.items()},
        )
        extra["predictions"] = {
            "path": str(predictions_path),
            "sha256": file_sha256(predictions_path),
        }
    # --
    record = stage_record(
        "evaluate",
        wall_s=time.perf_counter() - started,
        device=device,
        code=checked_code_record(code),
        metrics={k: v for k, v in metrics.items()},
        clip_counts={k: len(v.clip_ids) for k, v in splits.items()},
        n_excluded=len(excluded),
        probe=probe_file,
        **extra,
    )
    record["environment"] = {k: record[k] for k in ("host", "python", "packages", "device")}
    write_json(record_path, record)
    return record


def cell_provenance(
    *,
    task,
    representation,
    layer,
    row_label,
    config,
    config_sha256,
    workflow_dir,
    prepare_record_path,
    shard_dirs,
    feature_paths,
    train_record_path,
    test_record_path,
    out_path,
):
    """Write the provenance record of one table cell."""
    import numpy as np

    from .identity import check_cell
    from .provenance import build_cell_record

    code = code_record("provenance")
    train_record, test_record = _read_json(train_record_path), _read_json(test_record_path)
    check_cell(
        train_record,
        test_record,
        probe_config=config["probe"],
        seed=config.get("seed"),
        train_path=train_record_path,
        test_path=test_record_path,
    )

    resample_records = []
    for shard_dir in shard_dirs:
        path = Path(shard_dir) / "stage.json"
        if not path.is_file():
            raise DataError(
                f"{path}: resampling record missing (the shard was not written by the "
                f"resample rule, or only partly); remake the shard: "
                f"snakemake --forcerun {shard_dir}"
            )
        resample_records.append(_read_json(path))
    profiles = []
    for path in feature_paths:
        with np.load(path, allow_pickle=False) as shard:
            profiles.append(json.loads(str(shard["profile"])))
    record = build_cell_record(
        task=task,
        representation=representation,
        layer=layer,
        row_label=row_label,
        config=config,
        config_sha256=config_sha256,
        workflow_dir=workflow_dir,
        prepare_record=_read_json(prepare_record_path),
        resample_records=resample_records,
        feature_profiles=profiles,
        train_record=train_record,
        test_record=test_record,
        provenance_code=checked_code_record(code),
    )
    record["probe_identity"] = test_record["probe"]
    # issue 12: the per-clip test predictions (and each split's clip ids) by digest
    if "predictions" in test_record:
        record["predictions"] = {
            **test_record["predictions"],
            "covers": "per-clip test targets, scores and decisions; clip ids of each split",
        }
    write_json(out_path, record)
    return record


def assemble_table(
    *,
    cells,
    rows,
    datasets,
    probe_config,
    test_record_paths,
    prepare_record_paths,
    out_paths,
    published=(),
    provenance_paths=(),
    representation_labels=None,
    uncertainty=None,
):
    """Write the results table from the test records of every cell.

    ``uncertainty`` (config ``table.bootstrap`` and ``table.comparisons``) adds
    bootstrap intervals and paired comparisons, computed from the per-clip
    predictions that each cell's provenance record names.

    ``provenance_paths`` (aligned with ``cells``) give each cell's validation
    score, from which the markdown table notes the layer each multi-layer
    representation would be read at, chosen on validation.
    """
    import math

    from .identity import check_table_cell
    from .tables import table_metrics, write_tables

    prepared = {}
    for path in prepare_record_paths:
        prepared[Path(path).parent.name] = _read_json(path)
    records = {}
    for (dataset, representation, layer), path in zip(cells, test_record_paths, strict=True):
        records[(f"{representation}/{layer}", dataset)] = _read_json(path)
    valid_primary, code_warnings, cell_predictions = {}, [], {}
    for (dataset, representation, layer), path, test_path in zip(
        *((cells, provenance_paths, test_record_paths) if provenance_paths else ((), (), ())),
        strict=True,
    ):
        provenance = _read_json(path)
        # a provenance record of another run or of another probe is an error, not a cell
        check_table_cell(
            provenance,
            records[(f"{representation}/{layer}", dataset)],
            probe_config=probe_config,
            provenance_path=path,
            test_path=test_path,
        )
        valid_primary[(f"{representation}/{layer}", dataset)] = provenance["valid_metrics"][
            "primary"
        ]
        if uncertainty is not None:
            from .predictions import checked_predictions

            cell_predictions[(f"{representation}/{layer}", dataset)] = checked_predictions(
                provenance, records[(f"{representation}/{layer}", dataset)], provenance_path=path
            )
        code = provenance.get("code") or {}
        if not code.get("consistent", False):
            problems = code.get("problems") or ["the record has no account of its code"]
            code_warnings += [f"{dataset} / {representation}/{layer}: {p}" for p in problems]
    tasks = []
    for dataset, entry in datasets.items():
        record = prepared[dataset]
        metrics = table_metrics(record["task_type"], entry.get("metrics"), record["labels"])
        tasks.append((dataset, entry.get("label") or dataset, metrics))
    if probe_config["trainer"] == "sklearn_cv":
        note = (
            " (quick protocol: scikit-learn cross-validated regularisation, not the paper's grid)"
        )
    else:
        n_configs = math.prod(len(values) for values in probe_config["grid"].values())
        note = f" ({probe_config['trainer']} training of {n_configs} probe configurations)"
    shown_uncertainty = None
    if uncertainty is not None:
        from .bootstrap import table_uncertainty

        intervals, comparisons = table_uncertainty(
            cell_predictions,
            tasks=tasks,
            rows=[tuple(r) for r in rows],
            settings=uncertainty["bootstrap"],
            pairs=uncertainty.get("comparisons", ()),
        )
        shown_uncertainty = {
            **uncertainty["bootstrap"],
            "intervals": intervals,
            "comparisons": comparisons,
        }
    paths = {Path(p).suffix.lstrip("."): p for p in out_paths}
    write_tables(
        records,
        tasks=tasks,
        rows=[tuple(r) for r in rows],
        paths=paths,
        protocol_note=note,
        published=published,
        valid_primary=valid_primary,
        representation_labels=representation_labels or {},
        code_warnings=code_warnings,
        uncertainty=shown_uncertainty,
    )
