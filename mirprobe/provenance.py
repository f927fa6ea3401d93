"""Provenance: where every number of the table came from.

Each workflow stage writes a small JSON *stage record* beside its output
(:func:`stage_record`: wall time, host, device, Python and package versions).
:func:`build_cell_record` gathers, for one table cell (task x representation x
layer), the records of every stage behind it together with the code (git
commit and dirty flag), the configuration (its sha256 and seed, and the files
it was read from, each by path and sha256), the data (metadata and audio
checksums), the clips used and excluded (with reasons), the selected probe
configuration and its validation and test metrics, and, with ``probe.seeds``,
the test metrics of that configuration retrained with each seed. The record is
written to ``results/provenance/<task>/<representation>/<layer>.json``; what
each digest covers is :data:`mirprobe.lookup.DIGESTS` (``--help``).

Command line::

    python -m mirprobe.provenance <task> <representation> [--layer L] [--json]

prints where a number came from.
"""

import argparse
import ast
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import socket
import subprocess
import sys
from pathlib import Path

#: distributions whose versions every stage records (absent ones are recorded as null);
#: a job also records those its extractor or dataset class names (their
#: ``provenance_packages()``: tensorflow for MusiCNN, a plug-in's own distribution, ...)
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


def environment_record(*, device="cpu", packages=()):
    """Host, platform, Python, package versions and device of this process;
    ``packages``: distributions recorded beyond :data:`PACKAGES`."""
    record = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "packages": package_versions(tuple(dict.fromkeys((*PACKAGES, *packages)))),
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


def stage_record(stage, *, wall_s, device="cpu", code=None, packages=(), **extra):
    """The JSON record a stage writes beside its output.

    ``code`` is the stage's :func:`code_record`, taken when the stage started;
    ``packages`` as for :func:`environment_record`.
    """
    return {
        "stage": stage,
        "wall_s": round(wall_s, 3),
        **environment_record(device=device, packages=packages),
        **({"code": code} if code is not None else {}),
        **extra,
    }


#: the root of the workflow whose package this is (Snakefile, scripts/, mirprobe/)
WORKFLOW_DIR = Path(__file__).resolve().parent.parent

#: the script each rule runs (rules/*.smk); a job's code is what the script imports
RULE_SCRIPTS = {
    rule: f"scripts/{rule}.py"
    for rule in (
        "prepare_dataset",
        "resample",
        "extract",
        "train_probe",
        "evaluate_probe",
        "retrain_seeds",
        "provenance",
        "table",
        "compare_features",
        "compare_summary",
    )
}

#: the module of the stage functions: each job runs one, so a script importing
#: one follows that function's imports (and those of the helpers it calls) only
STAGES_MODULE = "mirprobe.stages"

#: name -> class registries: neither followed nor part of any digest, so that
#: registering a new dataset or extractor reruns nothing; a job's class module is
#: in its digest, so pointing a name at another class changes that digest anyway
#: (mirprobe/plugins.py is the registries' lookup by name, so the same holds for it)
REGISTRIES = {
    "mirprobe/datasets/__init__.py",
    "mirprobe/extractors/__init__.py",
    "mirprobe/plugins.py",
}
_NOT_FOLLOWED = {"mirprobe.datasets", "mirprobe.extractors", "mirprobe.plugins", __name__}
# (this module names modules it describes, and imports none of the package)

#: a string naming a package module, as lazy imports by name spell it
_MODULE_NAME = re.compile(r"mirprobe(\.\w+)*(:\w+)?")


def _module_file(module, root):
    """``(relative path, is_package)`` of a ``mirprobe`` module, or None."""
    parts = module.split(".")
    package = Path(root, *parts, "__init__.py")
    if package.is_file():
        return package.relative_to(root).as_posix(), True
    path = Path(root, *parts[:-1], parts[-1] + ".py")
    if path.is_file():
        return path.relative_to(root).as_posix(), False
    return None


def _imports(nodes, package):
    """The ``mirprobe`` modules (and imported names, as ``module.name``) that the
    statements ``nodes`` import, lazy imports and imports by name included."""
    found = set()
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            # `from . import handcrafted` imports a module, not a name
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # a lazy import by name ("mirprobe.probes.io", "mirprobe.x:Class")
            if _MODULE_NAME.fullmatch(node.value):
                found.add(node.value.partition(":")[0])
    return {name for name in found if name == "mirprobe" or name.startswith("mirprobe.")}


def _stage_imports(tree, names, package):
    """What the stage functions ``names`` of the stages module (and the module-level
    helpers they call) import, with the stages module's own top-level imports."""
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    todo, done = [n for n in names if n in functions], set()
    while todo:
        name = todo.pop()
        if name in done:
            continue
        done.add(name)
        todo.extend(
            n.id
            for n in ast.walk(functions[name])
            if isinstance(n, ast.Name) and n.id in functions and n.id not in done
        )
    return _imports(top_level + [functions[n] for n in done], package)


def _parsed(path):
    """The syntax tree of a source file, parsed once per version of the file: the
    workflow asks for the sources of every rule and job module while it parses."""
    stat = Path(path).stat()
    return _parse_cached(str(path), stat.st_mtime_ns, stat.st_size)


@functools.cache
def _parse_cached(path, mtime_ns, size):
    return ast.parse(Path(path).read_text(), filename=path)


def _file_imports(path, package):
    stat = Path(path).stat()
    return _file_imports_cached(str(path), stat.st_mtime_ns, stat.st_size, package)


@functools.cache
def _file_imports_cached(path, mtime_ns, size, package):
    return tuple(sorted(_imports([_parse_cached(path, mtime_ns, size)], package)))


def rule_sources(rule, job_modules=(), *, root=WORKFLOW_DIR):
    """The source files (relative to the workflow) whose code a job of ``rule`` runs.

    Its script and the ``mirprobe`` modules it imports, followed through their
    import statements (lazy ones included; of the stages module, only those of
    the stage function the script calls), and ``job_modules``: the modules of
    the job's dataset or extractor class, which the registries import by name.
    A job module from outside the package (a plug-in's) counts by its own source
    file, given by its absolute path, and the package modules it imports are
    followed (its imports of other modules of its own package are not).
    """
    root = Path(root)
    script = RULE_SCRIPTS[rule]
    plugins = {m: _plugin_file(m) for m in job_modules if _is_plugin(m)}
    files, seen, todo = (
        {script, *(p for p in plugins.values() if p is not None)},
        set(),
        [*_imports([ast.parse(Path(root, script).read_text())], "")],
    )
    todo += [m for m in job_modules if m not in plugins]
    for module, path in plugins.items():
        if path is not None:
            todo += _imports([ast.parse(Path(path).read_text())], module.rpartition(".")[0])
    stage_functions = {
        name.rpartition(".")[2] for name in todo if name.startswith(STAGES_MODULE + ".")
    }
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        found = _module_file(module, root)
        if found is None:  # a name imported from a module, not a module
            continue
        path, is_package = found
        files.add(path)
        # importing a submodule runs its parent packages' __init__ first
        todo.append(module.rpartition(".")[0] or module)
        if module in _NOT_FOLLOWED:
            continue
        package = module if is_package else module.rpartition(".")[0]
        if module == STAGES_MODULE:
            todo.extend(_stage_imports(_parsed(Path(root, path)), stage_functions, package))
        else:
            todo.extend(_file_imports(Path(root, path), package))
    return tuple(sorted(files - REGISTRIES))


def _is_plugin(module):
    return module != "mirprobe" and not module.startswith("mirprobe.")


def _plugin_file(module):
    """The absolute path of a plug-in module's source file (None: not importable)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return None
    return str(Path(spec.origin).resolve())


def plugin_record(module):
    """A plug-in module's origin: module, source file, its sha256, distribution, version."""
    path = _plugin_file(module)
    names = importlib.metadata.packages_distributions().get(module.partition(".")[0]) or []
    dist = sorted(names)[0] if names else None
    return {
        "module": module,
        "file": path,
        "sha256": None if path is None else hashlib.sha256(Path(path).read_bytes()).hexdigest(),
        "distribution": dist,
        "version": package_versions([dist])[dist] if dist else None,
    }


def file_digests(paths, *, root=WORKFLOW_DIR):
    """``{relative path: sha256}`` of source files."""
    return {path: hashlib.sha256(Path(root, path).read_bytes()).hexdigest() for path in paths}


def sources_sha256(digests):
    """One sha256 over ``{path: sha256}`` (paths and contents)."""
    text = "".join(f"{path}\t{digest}\n" for path, digest in sorted(digests.items()))
    return hashlib.sha256(text.encode()).hexdigest()


def rule_code_sha256(rule, job_modules=(), *, root=WORKFLOW_DIR):
    """The digest of the sources a job of ``rule`` runs: its Snakemake rerun trigger."""
    root = Path(root)
    return sources_sha256(
        file_digests(rule_sources(rule, tuple(job_modules), root=root), root=root)
    )


def code_record(rule, job_modules=(), *, root=WORKFLOW_DIR):
    """The code a job of ``rule`` runs: git commit and dirty flag of the checkout, and
    the sha256 of each source file it runs and one over them all (the digests hold
    when the working tree differs from the commit)."""
    digests = file_digests(rule_sources(rule, job_modules, root=root), root=root)
    return {
        **git_state(root),
        "rule": rule,
        "job_modules": sorted(job_modules),
        "source_sha256": sources_sha256(digests),
        "sources": digests,
        **(
            {"plugins": [plugin_record(m) for m in sorted(job_modules) if _is_plugin(m)]}
            if any(_is_plugin(m) for m in job_modules)
            else {}
        ),
    }


def checked_code_record(code, *, root=WORKFLOW_DIR):
    """``code`` with ``undeclared_sources``: package files this process imported that
    its digest does not cover (empty when :data:`RULE_CODE` is complete)."""
    covered = set(code["sources"]) | REGISTRIES
    return {**code, "undeclared_sources": [p for p in loaded_sources(root) if p not in covered]}


def loaded_sources(root=WORKFLOW_DIR):
    """The package's source files imported by this process (to check :data:`RULE_CODE`)."""
    root = Path(root).resolve()
    loaded = set()
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if (name == "mirprobe" or name.startswith("mirprobe.")) and path:
            resolved = Path(path).resolve()
            if resolved.is_relative_to(root):
                loaded.add(resolved.relative_to(root).as_posix())
    return sorted(loaded)


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


#: the stages of a cell, in workflow order, and the rule of each
CELL_STAGES = {
    "prepare": "prepare_dataset",
    "resample": "resample",
    "extract": "extract",
    "train": "train_probe",
    "evaluate": "evaluate_probe",
    "provenance": "provenance",
}


def code_account(stage_codes, *, root=WORKFLOW_DIR):
    """Which code computed each stage of a cell, and whether that is the code now in the tree.

    ``stage_codes``: ``{stage: [code record of each job, None where it recorded none]}``.
    Returns ``{"stages", "consistent", "problems", "notes"}``: per stage the distinct
    (commit, dirty, source_sha256) its jobs ran, with the job count and whether
    those sources are the workflow's current ones. ``consistent`` is false, with a
    plain message in ``problems``, when a stage recorded no code, ran sources that
    have changed since (a stage Snakemake did not rerun after its code changed), or
    imported package files its digest does not cover. ``notes`` say where stages
    ran at different commits or in a working tree with uncommitted changes.
    """
    root = Path(root)
    current, stages, problems = {}, {}, []
    for stage, codes in stage_codes.items():
        entries = {}
        missing = sum(code is None for code in codes)
        if missing:
            problems.append(
                f"{stage}: {missing} of {len(codes)} job(s) recorded no code "
                f"(written by an older mirprobe); rerun them to know what computed them"
            )
        for code in (c for c in codes if c is not None):
            job = (code["rule"], tuple(code.get("job_modules") or ()))
            if job not in current:
                current[job] = file_digests(rule_sources(*job, root=root), root=root)
            now = current[job]
            changed = sorted(
                path
                for path in set(now) | set(code["sources"])
                if now.get(path) != code["sources"].get(path)
            )
            key = (code.get("commit"), code.get("dirty"), code["source_sha256"])
            entry = entries.setdefault(
                key,
                {
                    "commit": code.get("commit"),
                    "dirty": code.get("dirty"),
                    "source_sha256": code["source_sha256"],
                    "current": not changed,
                    "changed_since": changed,
                    "jobs": 0,
                },
            )
            entry["jobs"] += 1
            for path in code.get("undeclared_sources") or ():
                message = (
                    f"{stage}: imported {path}, which its code digest does not cover "
                    f"(a change to it would not rerun the stage: import it with an import "
                    f"statement or name it as 'mirprobe.<module>', which rule_sources follows)"
                )
                if message not in problems:
                    problems.append(message)
        stages[stage] = list(entries.values())
        for entry in entries.values():
            if entry["changed_since"]:
                problems.append(
                    f"{stage}: {entry['jobs']} job(s) ran code (commit "
                    f"{str(entry['commit'])[:12]}) that has changed since in "
                    f"{', '.join(entry['changed_since'])}; their outputs are stale: rerun "
                    f"with Snakemake's default rerun triggers"
                )
    commits = {}
    for stage, entries in stages.items():
        for entry in entries:
            commits.setdefault(str(entry["commit"])[:12], []).append(stage)
    notes = []
    if len(commits) > 1:
        notes.append(
            "stages ran at different commits: "
            + "; ".join(f"{commit} ({', '.join(names)})" for commit, names in commits.items())
            + (" (each stage's sources are the current ones)" if not problems else "")
        )
    dirty = [stage for stage, entries in stages.items() if any(e["dirty"] for e in entries)]
    if dirty:
        notes.append(
            f"{', '.join(dirty)} ran in a working tree with uncommitted changes: "
            f"the source digests, not the commit, identify that code"
        )
    return {"stages": stages, "consistent": not problems, "problems": problems, "notes": notes}


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
    provenance_code=None,
    seeds_record=None,
    config_files=None,
):
    """Assemble the provenance record of one table cell from its stage records.

    ``provenance_code`` is the :func:`code_record` of the provenance job itself;
    ``seeds_record``, the cell's ``seeds.json`` where ``probe.seeds`` is set;
    ``config_files``, the files (and command-line values) the configuration was
    read from, as :func:`mirprobe.config.config_sources` gives them.
    """
    summary = lambda r: {  # noqa: E731 - a one-line projection
        k: r.get(k) for k in ("wall_s", "host", "device", "python", "slurm_job_id")
    }
    # the retraining with probe.seeds is a stage of the cell only where it ran
    seeds_stage = {} if seeds_record is None else {"seeds": seeds_record}
    record = {
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
            # what the table needs of the task: it reads provenance records only
            "task_type": prepare_record.get("task_type"),
            "labels": prepare_record.get("labels"),
            "metadata_sha256": prepare_record.get("metadata_sha256"),
            "audio_sha256": prepare_record.get("audio_sha256"),
            "n_audio_files": prepare_record.get("n_audio_files"),
            "source": prepare_record.get("source"),
        },
        "code": {
            **git_state(workflow_dir),
            "workflow_dir": str(workflow_dir),
            **code_account(
                {
                    "prepare": [prepare_record.get("code")],
                    "resample": [r.get("code") for r in resample_records],
                    "extract": [p.get("code") for p in feature_profiles],
                    "train": [train_record.get("code")],
                    "evaluate": [test_record.get("code")],
                    **{stage: [r.get("code")] for stage, r in seeds_stage.items()},
                    "provenance": [provenance_code],
                },
                # against the sources of the package running now: the workflow's
                root=WORKFLOW_DIR,
            ),
        },
        "config": {
            "sha256": config_sha256,
            "seed": config.get("seed"),
            # the files it was read from, in order, and any `--config` values
            **({} if config_files is None else config_files),
            "resolved": config,
        },
        "representation_config": config["representations"][representation],
        "environment": {
            "prepare": prepare_record.get("environment"),
            "extract": feature_profiles[0].get("environment") if feature_profiles else None,
            "train": train_record.get("environment"),
            "evaluate": test_record.get("environment"),
            **{stage: r.get("environment") for stage, r in seeds_stage.items()},
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
            **{stage: summary(r) for stage, r in seeds_stage.items()},
        },
    }
    if seeds_record is not None:
        record["seeds"] = {
            "seeds": seeds_record["seeds"],
            "main_seed": seeds_record["main_seed"],
            "covers": (
                "the selected configuration retrained with each seed (same trainer, "
                "early-stopped on validation) and scored once on test; sd is the "
                "sample standard deviation (n - 1), null for one seed"
            ),
            "runs": [
                {k: run.get(k) for k in ("seed", "best_step", "test_metrics", "valid_metrics")}
                for run in seeds_record["runs"]
            ],
            "summary": seeds_record["summary"],
        }
    return record


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
    ]
    for stage, entries in (code.get("stages") or {}).items():
        for entry in entries:
            lines.append(
                f"    {stage:<10} git {str(entry['commit'])[:12]} (dirty: {entry['dirty']}), "
                f"sources sha256 {entry['source_sha256'][:16]}, {entry['jobs']} job(s)"
                + ("" if entry["current"] else ", CHANGED SINCE")
            )
    for problem in code.get("problems") or ():
        lines.append(f"    problem: {problem}")
    for note in code.get("notes") or ():
        lines.append(f"    note: {note}")
    lines.append(f"  config: sha256 {cfg['sha256'][:16]}, seed {cfg['seed']}")
    for source in cfg.get("files") or ():
        lines.append(f"    read from {source['path']} (sha256 {str(source['sha256'])[:16]})")
    if cfg.get("overrides"):
        lines.append(f"    and --config {json.dumps(cfg['overrides'], sort_keys=True)}")
    seeds = record.get("seeds")
    if seeds:
        primary = (record["test_metrics"] or {}).get("primary")
        spread = seeds["summary"].get("primary") or {}
        sd = spread.get("sd")
        lines.append(
            f"  seeds: {seeds['seeds']} (selection with seed {seeds['main_seed']}): test primary "
            + ", ".join(f"{r['seed']}: {r['test_metrics']['primary']:.4f}" for r in seeds["runs"])
            + f"; mean {spread.get('mean', float('nan')):.4f}"
            + ("" if sd is None else f", sd {sd:.4f}")
            + ("" if primary is None else f" (main probe {primary:.4f})")
        )
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
    # issue 12: table titles as well as config names (mirprobe.lookup)
    from .lookup import DIGESTS, RecordNotFound, find_record

    parser.epilog = "Digests: " + "; ".join(f"{k}: {v}" for k, v in DIGESTS.items())
    parser.add_argument("task", help="dataset name or the table's column title")
    parser.add_argument("representation", help="representation name or the table's row title")
    parser.add_argument("--layer", default=None, help="layer (default: the only one recorded)")
    parser.add_argument("--results", default="results", help="results directory")
    parser.add_argument("--json", action="store_true", help="print the whole record as JSON")
    args = parser.parse_args(argv)
    try:
        path = find_record(args.results, args.task, args.representation, args.layer)
    except RecordNotFound as error:
        parser.error(str(error))
    record = _load_json(path)
    print(json.dumps(record, indent=2, sort_keys=True) if args.json else describe(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
