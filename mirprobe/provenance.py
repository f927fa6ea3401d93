"""Provenance: where every number of the table came from.

Each workflow stage writes a small JSON *stage record* beside its output
(:func:`stage_record`: wall time, host, device, Python and package versions).
:func:`build_cell_record` gathers, for one table cell (task x representation x
layer), the records of every stage behind it together with the code (git
commit and dirty flag), the configuration (its sha256 and seed), the data
(metadata and audio checksums), the clips used and excluded (with reasons),
the selected probe configuration and its validation and test metrics. The
record is written to ``results/provenance/<task>/<representation>/<layer>.json``.

Command line::

    python -m mirprobe.provenance <task> <representation> [--layer L] [--json]

prints where a number came from.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path

#: distributions whose versions are recorded (absent ones are recorded as null)
PACKAGES = (
    "mirprobe",
    "numpy",
    "scipy",
    "pandas",
    "soundfile",
    "librosa",
    "torch",
    "scikit-learn",
    "mir_eval",
    "mirdata",
    "pretty_midi",
    "tabulate",
    "snakemake",
    "transformers",
)


def package_versions(names=PACKAGES):
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment_record(*, device="cpu"):
    """Host, platform, Python, package versions and device of this process."""
    record = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "packages": package_versions(),
        "conda_env": os.environ.get("CONDA_DEFAULT_ENV"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
    if str(device).startswith("cuda"):
        try:  # optional: only environments that run on a GPU have torch
            import torch
        except ImportError:
            torch = None
        if torch is not None:
            record["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return record


def stage_record(stage, *, wall_s, device="cpu", **extra):
    """The JSON record a stage writes beside its output."""
    return {
        "stage": stage,
        "wall_s": round(wall_s, 3),
        **environment_record(device=device),
        **extra,
    }


def git_state(path):
    """``{"commit", "dirty"}`` of the git checkout holding ``path`` (nulls outside git)."""

    def git(*args):
        return subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (subprocess.CalledProcessError, FileNotFoundError) as error:
        return {"commit": None, "dirty": None, "error": str(error).strip()[:200]}
    return {"commit": commit, "dirty": dirty}


def _load_json(path):
    with open(path) as handle:
        return json.load(handle)


def build_cell_record(
    *,
    task,
    representation,
    layer,
    row_label,
    config,
    config_sha256,
    workflow_dir,
    prepare_record,
    resample_records,
    feature_profiles,
    train_record,
    test_record,
):
    """Assemble the provenance record of one table cell from its stage records."""
    summary = lambda r: {  # noqa: E731 - a one-line projection
        k: r.get(k) for k in ("wall_s", "host", "device", "python", "slurm_job_id")
    }
    return {
        "cell": {
            "task": task,
            "representation": representation,
            "layer": str(layer),
            "row": row_label,
        },
        "test_metrics": test_record["metrics"],
        "valid_metrics": train_record["selected"]["valid_metrics"],
        "selected_probe": train_record["selected"],
        "grid": {
            "trainer": train_record["trainer"],
            "n_configs": len(train_record["grid"]),
            "ranking": train_record["ranking"][:10],
        },
        "clips": {
            **test_record["clip_counts"],
            "excluded": train_record["excluded"],
        },
        "data": {
            "dataset": task,
            "kind": prepare_record.get("kind"),
            "metadata_sha256": prepare_record.get("metadata_sha256"),
            "audio_sha256": prepare_record.get("audio_sha256"),
            "n_audio_files": prepare_record.get("n_audio_files"),
            "source": prepare_record.get("source"),
        },
        "code": {**git_state(workflow_dir), "workflow_dir": str(workflow_dir)},
        "config": {"sha256": config_sha256, "seed": config.get("seed"), "resolved": config},
        "representation_config": config["representations"][representation],
        "environment": {
            "prepare": prepare_record.get("environment"),
            "extract": feature_profiles[0].get("environment") if feature_profiles else None,
            "train": train_record.get("environment"),
            "evaluate": test_record.get("environment"),
        },
        "stages": {
            "prepare": summary(prepare_record),
            "resample": [summary(r) for r in resample_records],
            "extract": [
                {
                    "host": (p.get("environment") or {}).get("host"),
                    **{
                        k: p.get(k)
                        for k in (
                            "wall_s",
                            "device",
                            "clips_per_s",
                            "host_peak_mb",
                            "gpu_peak_mb",
                            "n_clips",
                        )
                    },
                    # stored features (jukemir_precomputed): where they came from
                    **({"source": p["source"]} if "source" in p else {}),
                }
                for p in feature_profiles
            ],
            "train": summary(train_record),
            "evaluate": summary(test_record),
        },
    }


def describe(record):
    """A human-readable account of one provenance record."""
    cell, probe, clips = record["cell"], record["selected_probe"], record["clips"]
    lines = [
        f"{cell['row']} on {cell['task']} (representation {cell['representation']}, layer {cell['layer']})",
        "  test:  "
        + ", ".join(
            f"{k}={v:.4f}"
            for k, v in sorted(record["test_metrics"].items())
            if isinstance(v, float)
        ),
        "  valid: "
        + ", ".join(
            f"{k}={v:.4f}"
            for k, v in sorted(record["valid_metrics"].items())
            if isinstance(v, float)
        ),
        f"  probe: {json.dumps(probe['config'], sort_keys=True)} (uid {probe['uid'][:12]}, "
        f"best step {probe.get('best_step')}, chosen among {record['grid']['n_configs']} "
        f"configs by {record['grid']['trainer']} training on validation)",
        f"  clips: train {clips['train']}, valid {clips['valid']}, test {clips['test']}, "
        f"excluded {len(clips['excluded'])}",
    ]
    for item in clips["excluded"]:
        lines.append(f"    excluded {item['clip_id']}: {item['reason']}")
    data, code, cfg = record["data"], record["code"], record["config"]
    lines += [
        f"  data:  {data['dataset']} ({data['kind']}), metadata sha256 {str(data['metadata_sha256'])[:16]}, "
        f"audio sha256 {str(data['audio_sha256'])[:16]} over {data['n_audio_files']} files",
        f"  code:  git {code.get('commit')} (dirty: {code.get('dirty')})",
        f"  config: sha256 {cfg['sha256'][:16]}, seed {cfg['seed']}",
    ]
    # stored features (jukemir_precomputed): the file they were read from
    sources = {
        json.dumps(source, sort_keys=True): source
        for shard in record["stages"].get("extract", [])
        for source in ((shard.get("source") or {}).get("sources") or {}).values()
    }
    for source in sources.values():
        origin = (
            f"{source['tarball']} (sha256 {source['sha256'][:16]})"
            if "tarball" in source
            else "a local folder"
        )
        lines.append(f"  features: read from {origin}, {source['directory']}")
    for stage, info in record["stages"].items():
        infos = info if isinstance(info, list) else [info]
        wall = sum((i.get("wall_s") or 0) for i in infos)
        hosts = sorted({str(i.get("host")) for i in infos if i.get("host")})
        devices = sorted({str(i.get("device")) for i in infos if i.get("device")})
        lines.append(
            f"  stage {stage:<9} {wall:8.2f} s  jobs {len(infos)}  host {','.join(hosts) or '-'}  "
            f"device {','.join(devices) or '-'}"
        )
    env = record["environment"].get("train") or {}
    packages = env.get("packages", {})
    lines.append(
        "  packages (train): " + ", ".join(f"{k} {v}" for k, v in sorted(packages.items()) if v)
    )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m mirprobe.provenance",
        description="Show where a number of the table came from.",
    )
    parser.add_argument("task")
    parser.add_argument("representation")
    parser.add_argument("--layer", default=None, help="layer (default: the only one recorded)")
    parser.add_argument("--results", default="results", help="results directory")
    parser.add_argument("--json", action="store_true", help="print the whole record as JSON")
    args = parser.parse_args(argv)
    folder = Path(args.results, "provenance", args.task, args.representation)
    if args.layer is None:
        candidates = sorted(folder.glob("*.json"))
        if len(candidates) != 1:
            found = [p.stem for p in candidates]
            parser.error(
                f"{folder}: choose a layer with --layer among {found}"
                if found
                else f"{folder}: no provenance records"
            )
        path = candidates[0]
    else:
        path = folder / f"{args.layer}.json"
    if not path.is_file():
        parser.error(f"{path}: no provenance record")
    record = _load_json(path)
    print(json.dumps(record, indent=2, sort_keys=True) if args.json else describe(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
