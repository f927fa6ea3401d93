"""Per-rule conda environments: every rule names one, every file is well formed
and pinned, and every package a rule's script imports (statically, following
the stage function it calls through the mirprobe modules) is in its env.

Conda channels are unreachable here, so the envs cannot be created; this is the
static check the issue asks for. CI runs the rules in one virtual environment.
"""

import ast
import re
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

#: import name -> conda-forge package name
CONDA_NAME = {
    "numpy": "numpy",
    "scipy": "scipy",
    "pandas": "pandas",
    "soundfile": "pysoundfile",
    "librosa": "librosa",
    "torch": "pytorch",
    "sklearn": "scikit-learn",
    "mir_eval": "mir_eval",
    "tabulate": "tabulate",
    "pretty_midi": "pretty_midi",
    "jsonschema": "jsonschema",
    "yaml": "pyyaml",
    "tqdm": "tqdm",
    "matplotlib": "matplotlib-base",
    "mirdata": "mirdata",
    "transformers": "transformers",
    "safetensors": "safetensors",
    "huggingface_hub": "huggingface_hub",
    "jukebox_infer": "jukebox-infer",
    "tensorflow": "tensorflow",
    "h5py": "h5py",
    "musicnn": "musicnn",
}
#: packages that arrive with another listed one
PROVIDED_BY = {"scipy": ("scikit-learn", "librosa"), "numpy": ()}


def extractor_envs():
    """``{extractor: env file}`` as each class states it (conda_env_of in rules/common.smk)."""
    from mirprobe.extractors import EXTRACTOR_CLASSES, get_extractor_class

    return {name: get_extractor_class(name).conda_env for name in EXTRACTOR_CLASSES}


ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


def rule_blocks():
    """``{rule: (conda spec, script path)}`` parsed from rules/*.smk."""
    rules = {}
    for path in sorted((REPO / "rules").glob("*.smk")):
        text = path.read_text()
        for match in re.finditer(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)+)", text, re.M):
            body = match.group(2)
            conda = re.search(r"conda:\n\s+(.+)\n", body)
            script = re.search(r"script:\n\s+\"(.+)\"\n", body)
            rules[match.group(1)] = (
                conda.group(1).strip() if conda else None,
                script.group(1) if script else None,
            )
    return rules


def env_packages(path):
    spec = yaml.safe_load(path.read_text())
    names = set()
    for dep in spec["dependencies"]:
        if isinstance(dep, str):
            names.add(re.split(r"[=<>! ]", dep)[0])
        else:
            names.update(re.split(r"[=<>! ]", p)[0] for p in dep.get("pip", []))
    return names


@pytest.mark.parametrize("path", ENV_FILES, ids=lambda p: p.name)
def test_env_file_is_pinned_with_explicit_channels(path):
    spec = yaml.safe_load(path.read_text())
    assert spec["channels"] == ["conda-forge", "nodefaults"]
    for dep in spec["dependencies"]:
        if isinstance(dep, str):
            assert re.fullmatch(r"[\w.-]+=[\w.*]+", dep), f"{path.name}: {dep} is not pinned"


def test_every_rule_names_an_existing_env():
    rules = rule_blocks()
    assert {"prepare_dataset", "resample", "extract", "train_probe", "table"} <= set(rules)
    for rule, (conda, script) in rules.items():
        if script is None:
            continue
        assert conda, f"rule {rule} has no conda: directive"
        if conda.startswith('"'):
            assert (REPO / "rules" / conda.strip('"')).resolve().is_file(), (rule, conda)


# --- static import analysis -------------------------------------------------


def _module_path(module):
    return (
        REPO / Path(*module.split(".")).with_suffix(".py")
        if not (REPO / Path(*module.split("."))).is_dir()
        else REPO / Path(*module.split(".")) / "__init__.py"
    )


def _resolve(module, node):
    if node.level == 0:
        return node.module
    base = (
        module.split(".")[: -node.level]
        if not _module_path(module).name == "__init__.py"
        else (module.split(".")[: len(module.split(".")) - node.level + 1])
    )
    return ".".join(base + ([node.module] if node.module else []))


def _optional_imports(nodes):
    """Import statements guarded by ``try: ... except ImportError`` (optional)."""
    optional = set()
    for node in nodes:
        for sub in ast.walk(node):
            if isinstance(sub, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                for h in sub.handlers
            ):
                optional |= {id(n) for stmt in sub.body for n in ast.walk(stmt)}
    return optional


def _imports(module, nodes):
    """(external top-level names, [(mirprobe module, imported names)]) of statements."""
    external, internal = set(), []
    optional = _optional_imports(nodes)
    for node in nodes:
        for sub in ast.walk(node):
            if id(sub) in optional:
                continue
            if isinstance(sub, ast.Import):
                for alias in sub.names:
                    top = alias.name.split(".")[0]
                    if top == "mirprobe":
                        internal.append((alias.name, None))
                    else:
                        external.add(top)
            elif isinstance(sub, ast.ImportFrom):
                target = _resolve(module, sub)
                if target.split(".")[0] == "mirprobe":
                    internal.append((target, [a.name for a in sub.names]))
                else:
                    external.add(target.split(".")[0])
    return external, internal


def packages_used(module, names, seen=None):
    """External packages imported by ``names`` of ``module`` (None = whole module)."""
    seen = set() if seen is None else seen
    tree = ast.parse(_module_path(module).read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    external, internal = _imports(module, top_level)
    # names a package resolves lazily through a `_LAZY = {name: module}` table
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets)
            and isinstance(node.value, ast.Dict)
        ):
            lazy = {
                k.value: v.value for k, v in zip(node.value.keys, node.value.values, strict=True)
            }
            for name in names or lazy:
                if name in lazy:
                    internal.append((lazy[name], [name]))
    todo = list(names) if names is not None else list(functions)
    while todo:
        name = todo.pop()
        if (module, name) in seen or name not in functions:
            continue
        seen.add((module, name))
        more_external, more_internal = _imports(module, [functions[name]])
        external |= more_external
        internal += more_internal
        # functions of the same module that this one refers to
        todo += [
            n.id for n in ast.walk(functions[name]) if isinstance(n, ast.Name) and n.id in functions
        ]
    for target, imported in internal:
        if (REPO / Path(*target.split("."))).is_dir() or _module_path(target).is_file():
            sub_names = None
            if imported is not None:
                # `from .pkg import module` imports whole modules
                modules = [n for n in imported if _module_path(f"{target}.{n}").is_file()]
                for mod in modules:
                    if (f"{target}.{mod}", None) not in seen:
                        seen.add((f"{target}.{mod}", None))
                        external |= packages_used(f"{target}.{mod}", None, seen)
                sub_names = [n for n in imported if n not in modules]
            key = (target, tuple(sub_names) if sub_names is not None else None)
            if key not in seen:
                seen.add(key)
                external |= packages_used(target, sub_names, seen)
    return {e for e in external if e not in sys.stdlib_module_names and e != "snakemake"}


def script_packages(script):
    tree = ast.parse(script.read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mirprobe"):
            used |= packages_used(node.module, [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            used |= {a.name.split(".")[0] for a in node.names}
    return {u for u in used if u not in sys.stdlib_module_names and u != "mirprobe"}


def test_the_analysis_sees_lazy_imports():
    assert "librosa" in packages_used("mirprobe.stages", ["extract"])
    assert "torch" in packages_used("mirprobe.stages", ["train_probe"])
    assert "tabulate" in packages_used("mirprobe.stages", ["assemble_table"])


def test_each_rule_env_provides_what_its_script_imports():
    problems = []
    for rule, (conda, script) in rule_blocks().items():
        if script is None:
            continue
        used = script_packages((REPO / "rules" / script).resolve())
        if conda.startswith("lambda"):
            # see conda_env_of in common.smk
            env_names = sorted(set(extractor_envs().values()))
        else:
            env_names = [Path(conda.strip('"')).name]
        for env_name in env_names:
            provided = env_packages(REPO / "envs" / env_name)
            for package in sorted(used):
                conda_name = CONDA_NAME.get(package)
                if conda_name is None:
                    problems.append(f"{rule}: unknown import {package!r} (add it to CONDA_NAME)")
                elif conda_name not in provided and not any(
                    p in provided for p in PROVIDED_BY.get(package, ())
                ):
                    problems.append(f"{rule} ({env_name}) imports {package} but lacks {conda_name}")
    assert not problems, "\n".join(problems)


def _registry_modules(registry):
    return {target.split(":")[0]: target.split(":")[1] for target in registry.values()}


def test_every_extractor_module_fits_its_env():
    from mirprobe.extractors import EXTRACTOR_CLASSES

    problems = []
    for name, env in extractor_envs().items():
        module = EXTRACTOR_CLASSES[name].split(":")[0]
        provided = env_packages(REPO / "envs" / env)
        for package in packages_used(module, None):
            if CONDA_NAME.get(package) not in provided:
                problems.append(f"extractor {name} ({env}) imports {package}")
    assert not problems, "\n".join(problems)


def test_every_extractor_records_the_packages_its_env_provides():
    """What provenance records for an extractor's jobs (its ``packages``) is installed
    by the environment it names, and the packages its module imports that are not
    core ones are among those it records (so tensorflow is recorded for MusiCNN)."""
    from mirprobe.extractors import EXTRACTOR_CLASSES, get_extractor_class
    from mirprobe.provenance import PACKAGES

    conda_of_dist = {v: v for v in CONDA_NAME.values()} | {
        "torch": "pytorch",
        "jukebox-infer": "jukebox-infer",
        "tf_keras": "tf_keras",
    }
    import_of_dist = {"torch": "torch", "jukebox-infer": "jukebox_infer"}
    problems = []
    for name, target in EXTRACTOR_CLASSES.items():
        cls = get_extractor_class(name)
        provided = env_packages(REPO / "envs" / cls.conda_env)
        for dist in cls.packages:
            if conda_of_dist.get(dist, dist) not in provided:
                problems.append(f"extractor {name} records {dist}, absent from {cls.conda_env}")
        recorded = {import_of_dist.get(d, d) for d in (*PACKAGES, *cls.packages)}
        recorded |= {k for k, v in CONDA_NAME.items() if v in PACKAGES}
        for package in packages_used(target.split(":")[0], None):
            if package not in recorded:
                problems.append(f"extractor {name} imports {package} but does not record it")
    assert not problems, "\n".join(problems)


def test_every_dataset_module_fits_the_audio_env():
    from mirprobe.datasets import DATASET_CLASSES

    provided = env_packages(REPO / "envs" / "audio.yaml")
    problems = [
        f"dataset module {module} imports {package}"
        for module in _registry_modules(DATASET_CLASSES)
        for package in packages_used(module, None)
        if CONDA_NAME.get(package) not in provided
    ]
    assert not problems, "\n".join(problems)
