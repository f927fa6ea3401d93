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
        packages=dataset.provenance_packages(),
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
    prepare_record_path=None,
):
    """Resample one shard of a dataset to mono WAV at ``sr``.

    The shard's source files are first checked against the digests that
    ``prepare_dataset`` recorded (``checksums_path``, by default the
    ``checksums.tsv`` beside the metadata), so a file replaced since is caught.

    The shard's record (``stage.json``) also holds what the stages after
    extraction need of the dataset, which the feature shards carry on (see
    mirprobe.features): the metadata of the shard's clips (``clips``) and the
    dataset's record ``prepare_record_path`` (``prepare``; the workflow always
    gives it, extraction refuses a shard without it).
    """
    import pandas as pd

    from .audio import resample_shard, shard_slices, verify_shard_sources
    from .datasets.base import read_metadata

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
    table = read_metadata(metadata_path)
    start, stop = shard_slices(len(table), shard_size)[shard]
    # ``row``: the clip's position in metadata.csv, whose order the splits keep
    record["clips"] = [
        {"row": row, "clip_id": c, "split": split, "label": label, "song_id": song}
        for row, c, split, label, song in zip(
            range(start, stop),
            *(table[k].iloc[start:stop].tolist() for k in ("clip_id", "split", "label", "song_id")),
            strict=True,
        )
    ]
    if prepare_record_path is not None:
        record["prepare"] = _read_json(prepare_record_path)
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
                carry_dataset=True,
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
            carry_dataset=True,
        )


def _probe_data(*, feature_paths, layer):
    """The dataset's prepare record, the split arrays of ``layer`` and the excluded
    clips, all from the feature shards (which carry the dataset, see mirprobe.features)."""
    from .features import load_feature_shards, load_shard_datasets
    from .tasks import split_arrays

    carried = load_shard_datasets(feature_paths)
    prepared = carried.prepare
    clip_ids, X, _ = load_feature_shards(feature_paths, layer=layer)
    splits = split_arrays(
        carried.metadata,
        clip_ids,
        X,
        task_type=prepared["task_type"],
        labels=prepared["labels"],
        excluded={e["clip_id"]: e["reason"] for e in carried.excluded},
    )
    return prepared, splits, carried.excluded


def _write_probe_record(record_path, stage, *, started, device, code, **fields):
    """Write and return a probe stage's record (train, evaluate, seeds): its wall time
    since ``started``, its code checked unchanged since it started, and ``fields``."""
    record = stage_record(
        stage,
        wall_s=time.perf_counter() - started,
        device=device,
        code=checked_code_record(code),
        **fields,
    )
    record["environment"] = {k: record[k] for k in ("host", "python", "packages", "device")}
    write_json(record_path, record)
    return record


def _fit_configs(configs, *, prepared, splits, device, trainer):
    """Fit ``configs`` on the train split, early-stopped and selected on valid: the
    grid of train_probe and each seed's grid of one in retrain_seeds alike."""
    from .probes import fit_grid
    from .task_types import task_type_of

    train, valid = splits["train"], splits["valid"]
    return fit_grid(
        train.X,
        train.y,
        valid.X,
        valid.y,
        task_type=prepared["task_type"],
        labels=prepared["labels"],
        configs=configs,
        valid_groups=task_type_of(prepared["task_type"]).song_groups(valid.groups),
        device=device,
        trainer=trainer,
    )


def train_probe(
    *,
    feature_paths,
    layer,
    probe_config,
    seed,
    device,
    probe_path,
    record_path,
):
    """Train the probe grid on train, select on valid; save the selected probe.

    ``probe_config["seeds"]``, if any, is not this stage's (see :func:`retrain_seeds`)."""
    from .features import resolve_device
    from .identity import training_identity, training_settings
    from .probes import expand_grid, save_probe
    from .task_types import task_type_of

    started = time.perf_counter()
    code = code_record("train_probe")
    device = resolve_device(device)
    prepared, splits, excluded = _probe_data(feature_paths=feature_paths, layer=layer)
    configs = expand_grid(
        probe_config["grid"],
        eval_every=probe_config["eval_every"],
        patience=probe_config["patience"],
        max_steps=probe_config["max_steps"],
        seed=seed,
    )
    result = _fit_configs(
        configs, prepared=prepared, splits=splits, device=device, trainer=probe_config["trainer"]
    )
    identity = training_identity(training_settings(probe_config), seed)
    probe_sha256 = save_probe(result.best, probe_path, identity=identity)
    primary = task_type_of(prepared["task_type"]).primary_metric
    ranking = sorted(
        (
            {"uid": r["uid"], "config": r["config"], "valid_primary": r["valid_metrics"]["primary"]}
            for r in result.records
        ),
        key=lambda r: -r["valid_primary"],
    )
    best = next(r for r in result.records if r["uid"] == result.best_config.uid())
    return _write_probe_record(
        record_path,
        "train",
        started=started,
        device=device,
        code=code,
        trainer=probe_config["trainer"],
        primary_metric=primary,
        selected={
            "config": result.best_config.to_dict(),
            "uid": result.best_config.uid(),
            "best_step": best.get("best_step"),
            "steps": best.get("steps"),
            "valid_metrics": best["valid_metrics"],
            "ensemble": getattr(result.best, "ensemble", None),
            # the whole validation curve, for the report's figure (issue 12)
            "curve": result.best.record.to_dict()["curve"],
            "stopped_by": best["stopped_by"],
            "n_steps": best["n_steps"],
        },
        ranking=ranking,
        grid=result.records,
        excluded=excluded,
        clip_counts={k: len(v.clip_ids) for k, v in splits.items()},
        identity=identity,
        probe_sha256=probe_sha256,
    )


def _test_scores(probe, *, prepared, test):
    """A fitted probe's scores on the test split and its test metrics."""
    from .task_types import task_type_of

    scores = probe.predict_scores(test.X)
    metrics = task_type_of(prepared["task_type"]).evaluate(
        y_true=test.y,
        scores=scores,
        labels=prepared["labels"],
        groups=test.groups,
        ensemble=getattr(probe, "ensemble", None),
    )
    return scores, metrics


def evaluate_probe(
    *,
    feature_paths,
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
    from .probes import load_probe
    from .probes.io import probe_identity

    started = time.perf_counter()
    code = code_record("evaluate_probe")
    device = resolve_device(device)
    prepared, splits, excluded = _probe_data(feature_paths=feature_paths, layer=layer)
    probe = load_probe(probe_path)
    # which probe file this record scores: provenance checks it is train.json's
    probe_file = {"identity": probe_identity(probe_path), "sha256": file_sha256(probe_path)}
    test = splits["test"]
    scores, metrics = _test_scores(probe, prepared=prepared, test=test)
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
    return _write_probe_record(
        record_path,
        "evaluate",
        started=started,
        device=device,
        code=code,
        metrics={k: v for k, v in metrics.items()},
        clip_counts={k: len(v.clip_ids) for k, v in splits.items()},
        n_excluded=len(excluded),
        probe=probe_file,
        **extra,
    )


def retrain_seeds(
    *,
    feature_paths,
    layer,
    probe_config,
    seed,
    device,
    train_record_path,
    record_path,
):
    """Retrain the configuration ``train.json`` selected with each of
    ``probe_config["seeds"]`` and score each once on test (:mod:`mirprobe.seeds`);
    the selected probe file and its records are left as they are."""
    from .errors import ConfigError
    from .features import resolve_device
    from .identity import training_identity, training_settings
    from .seeds import seed_configs, seed_summary

    seeds = probe_config.get("seeds")
    if not seeds:
        raise ConfigError("probe.seeds: no seeds listed, nothing to retrain")
    started = time.perf_counter()
    code = code_record("retrain_seeds")
    device = resolve_device(device)
    train_record = _read_json(train_record_path)
    expected = training_identity(training_settings(probe_config), seed)
    if train_record.get("identity") != expected:
        raise DataError(
            f"{train_record_path}: trained for other probe settings (identity "
            f"{train_record.get('identity')}) than the configuration's ({expected}); "
            "remake it with `snakemake --forcerun train_probe`"
        )
    prepared, splits, _ = _probe_data(feature_paths=feature_paths, layer=layer)
    test = splits["test"]
    runs = []
    configs = seed_configs(
        train_record["selected"]["config"], probe_config=probe_config, seeds=seeds
    )
    for run_seed, config in zip(seeds, configs, strict=True):
        # a grid of one: the trainer and the early stopping of the grid's own training
        result = _fit_configs(
            [config],
            prepared=prepared,
            splits=splits,
            device=device,
            trainer=probe_config["trainer"],
        )
        [trained] = result.records
        _, metrics = _test_scores(result.best, prepared=prepared, test=test)
        runs.append(
            {
                "seed": int(run_seed),
                "config": result.best_config.to_dict(),
                "uid": result.best_config.uid(),
                "best_step": trained.get("best_step"),
                "ensemble": getattr(result.best, "ensemble", None),
                "valid_metrics": trained["valid_metrics"],
                "test_metrics": metrics,
            }
        )
    return _write_probe_record(
        record_path,
        "seeds",
        started=started,
        device=device,
        code=code,
        trainer=probe_config["trainer"],
        main_seed=seed,
        seeds=[int(s) for s in seeds],
        # what was retrained: train.json's selection, by its identity and probe file
        identity=train_record["identity"],
        selected_uid=train_record["selected"]["uid"],
        probe_sha256=train_record["probe_sha256"],
        runs=runs,
        summary=seed_summary(runs),
        clip_counts={k: len(v.clip_ids) for k, v in splits.items()},
    )


def _checked_seeds_record(path, *, config, train_record, train_path):
    """The seeds record of a cell (None without ``probe.seeds``), checked to be of
    this configuration and of the selection in ``train_record``."""
    seeds = config["probe"].get("seeds")
    if not seeds and path is None:
        return None
    if path is None:
        raise DataError(f"probe.seeds is {seeds}, but no seeds record of {train_path} was given")
    record = _read_json(path)
    if not seeds:
        raise DataError(f"{path}: a seeds record, but the configuration lists no probe.seeds")
    expected = {
        "seeds": list(seeds),
        "main_seed": config.get("seed"),
        "identity": train_record.get("identity"),
        "selected_uid": (train_record.get("selected") or {}).get("uid"),
        "probe_sha256": train_record.get("probe_sha256"),
    }
    found = {k: record.get(k) for k in expected}
    if found != expected:
        raise DataError(
            f"{path}: retrained {found}, but the configuration and {train_path} give "
            f"{expected}; remake it with `snakemake --forcerun retrain_seeds`"
        )
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
    feature_paths,
    train_record_path,
    test_record_path,
    out_path,
    seeds_record_path=None,
    config_files=None,
):
    """Write the provenance record of one table cell.

    ``seeds_record_path``: the cell's ``seeds.json`` (rule retrain_seeds), given
    exactly when the configuration lists ``probe.seeds``. ``config_files``: where
    the configuration came from (:func:`mirprobe.config.config_sources`)."""
    import numpy as np

    from .features import load_shard_datasets
    from .identity import check_cell, training_settings
    from .provenance import build_cell_record

    code = code_record("provenance")
    train_record, test_record = _read_json(train_record_path), _read_json(test_record_path)
    check_cell(
        train_record,
        test_record,
        probe_config=training_settings(config["probe"]),
        seed=config.get("seed"),
        train_path=train_record_path,
        test_path=test_record_path,
    )
    seeds_record = _checked_seeds_record(
        seeds_record_path, config=config, train_record=train_record, train_path=train_record_path
    )

    # the dataset's records, as the feature shards carry them (see mirprobe.features)
    carried = load_shard_datasets(feature_paths)
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
        prepare_record=carried.prepare,
        resample_records=carried.resample,
        feature_profiles=profiles,
        train_record=train_record,
        test_record=test_record,
        provenance_code=checked_code_record(code),
        seeds_record=seeds_record,
        config_files=config_files,
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
    datasets,
    probe_config,
    provenance_paths,
    out_paths,
    published=(),
    representation_labels=None,
    uncertainty=None,
):
    """Write the results table from the provenance records of its cells.

    A record says which cell it is (``cell``: task, representation, layer, row
    title) and holds the cell's test and validation metrics, clip counts and
    the task's type and labels; rows come in the order of ``provenance_paths``,
    column groups in that of ``datasets`` (the config's entries). From the
    validation scores, the markdown table notes the layer each multi-layer
    representation would be read at.

    ``uncertainty`` (config ``table.bootstrap`` and ``table.comparisons``) adds
    bootstrap intervals and paired comparisons, computed from the per-clip
    predictions that each cell's provenance record names (checked by digest).
    With ``probe_config["seeds"]``, each cell also shows the mean and standard
    deviation of its test scores over those seeds, from its record (``seeds``).
    """
    import math

    from .identity import check_table_cell
    from .tables import table_metrics, write_tables

    records, valid_primary, code_warnings, rows, tasks_of = {}, {}, [], {}, {}
    cell_predictions, seed_spread = {}, {}
    seeds = probe_config.get("seeds")
    for path in provenance_paths:
        provenance = _read_json(path)
        cell = provenance["cell"]
        row, dataset = (cell["representation"], cell["layer"]), cell["task"]
        if (row, dataset) in records:
            raise DataError(f"{path}: a second record of cell {dataset} / {'/'.join(row)}")
        if rows.setdefault(row, cell["row"]) != cell["row"]:
            raise DataError(f"{path}: row title {cell['row']!r}, another cell has {rows[row]!r}")
        # a provenance record of another run is an error, not a cell; its test record
        # was checked against it when it was written (identity.check_cell)
        check_table_cell(
            provenance,
            {"probe": provenance.get("probe_identity"), "metrics": provenance["test_metrics"]},
            probe_config=probe_config,
            provenance_path=path,
            test_path=path,
        )
        clips = provenance["clips"]
        records[(row, dataset)] = {
            "metrics": provenance["test_metrics"],
            "clip_counts": {k: clips[k] for k in ("train", "valid", "test")},
            "n_excluded": len(clips["excluded"]),
        }
        tasks_of.setdefault(dataset, provenance["data"])
        valid_primary[(row, dataset)] = provenance["valid_metrics"]["primary"]
        if uncertainty is not None:
            from .predictions import checked_predictions

            cell_predictions[(row, dataset)] = checked_predictions(
                provenance, records[(row, dataset)], provenance_path=path
            )
        if seeds:
            # (the record's config is this one, checked above; so it has its seeds)
            retrained = provenance.get("seeds") or {}
            if retrained.get("seeds") != list(seeds):
                raise DataError(
                    f"{path}: retrained with seeds {retrained.get('seeds')}, the configuration "
                    f"lists probe.seeds {list(seeds)}"
                )
            seed_spread[(row, dataset)] = retrained["summary"]
        code = provenance.get("code") or {}
        if not code.get("consistent", False):
            problems = code.get("problems") or ["the record has no account of its code"]
            code_warnings += [f"{dataset} / {'/'.join(row)}: {p}" for p in problems]
    missing = [f"{d} / {'/'.join(r)}" for d in datasets for r in rows if (r, d) not in records]
    if missing or set(tasks_of) - set(datasets):
        raise DataError(
            f"provenance records {[str(p) for p in provenance_paths]}: no record of cells "
            f"{missing}, or of datasets not configured {sorted(set(tasks_of) - set(datasets))}"
        )
    tasks = []
    for dataset, entry in datasets.items():
        data = tasks_of[dataset]
        metrics = table_metrics(data["task_type"], entry.get("metrics"), data["labels"])
        label = entry.get("label") or dataset
        # a run on part of a dataset says so in its column (datasets' verify: present)
        subset = (data.get("source") or {}).get("subset")
        tasks.append((dataset, f"{label} [{subset}]" if subset else label, metrics))
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
            rows=list(rows.items()),
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
        rows=list(rows.items()),
        paths=paths,
        protocol_note=note,
        published=published,
        valid_primary=valid_primary,
        representation_labels=representation_labels or {},
        code_warnings=code_warnings,
        uncertainty=shown_uncertainty,
        seeds={"seeds": list(seeds), "summary": seed_spread} if seeds else None,
    )
