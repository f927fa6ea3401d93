"""Per-rule conda environments: every rule names one, every file is well formed
and pinned, and every package a rule's job can import is in its env: found
statically from the rule's script through the mirprobe code it can reach (an
import inside a function counts when that function can run, see below), and
seen running for a dataset's prepare job without torch and scikit-learn.

Conda channels are unreachable here, so the envs cannot be created; this is the
static check the issue asks for. CI runs the rules in one virtual environment.
"""

import ast
import collections
import functools
import os
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
#
# What a job can run, found from the source without importing it: a function is
# reached when reached code names it (or imports it); a class's method when the
# class is reached and reached code uses an attribute of that name (on any
# object: dispatch is by name, so ``task.loss(...)`` reaches every reached
# class's ``loss``); dunder methods with their class. Importing a module runs its
# top level; a module imported whole (``from mirprobe import metrics``) lends the
# functions whose names reached code uses as attributes. An import inside a
# function counts only when that function is reached, so torch imported by the
# task types' losses is not asked of the prepare jobs that only read labels.


def _module_path(module, root=REPO):
    folder = root / Path(*module.split("."))
    return folder / "__init__.py" if folder.is_dir() else folder.with_suffix(".py")


def _resolve(module, node, root=REPO):
    if node.level == 0:
        return node.module
    parts = module.split(".")
    # a package's __init__ is the package itself: one level fewer to drop
    drop = node.level - (_module_path(module, root).name == "__init__.py")
    base = parts[: len(parts) - drop] if drop else parts
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


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@functools.cache
def _parse(path, mtime_ns):
    return ast.parse(Path(path).read_text())


def _is_dunder(name):
    return name.startswith("__") and name.endswith("__")


class Reach:
    """The code a job can run from its entry points, and the packages it imports.

    ``origin[package]`` says where the first import of a package was reached
    (``module:function`` or ``module:Class.method``), for the error messages."""

    def __init__(self, root=REPO):
        self.root = root
        self.modules = {}  # module -> (top-level defs, other top-level statements, _LAZY)
        self.origin = {}
        self.attrs = set()  # attribute names that reached code uses
        self.whole = set()  # modules imported as modules
        self.classes = {}  # (module, class) -> {method name: node}
        self.done = set()
        self.todo = []

    # -- entry points
    def add_names(self, module, names):
        """``from module import names`` (None: the module as a plug-in, every class
        with every method, as the workflow calls whichever it needs)."""
        self._need("top", module)
        if names is None:
            self.whole.add(module)
            for name, node in self._info(module)[0].items():
                self._need("def", module, name)
                if isinstance(node, ast.ClassDef):
                    for method in self._methods(node):
                        self._need("method", module, name, method)
        else:
            for name in names:
                self._import_name(module, name)
        return self

    def add_script(self, path):
        tree = _parse(str(path), path.stat().st_mtime_ns)
        self._walk(None, tree.body, f"{path.name}")
        return self

    def packages(self):
        self._run()
        ignored = {"snakemake", "mirprobe"}
        return {e for e in self.origin if e not in sys.stdlib_module_names and e not in ignored}

    # -- the fixpoint
    def _run(self):
        while True:
            while self.todo:
                self._visit(self.todo.pop())
            before = len(self.done)
            for (module, cls), methods in list(self.classes.items()):
                for method in methods:
                    if method in self.attrs:
                        self._need("method", module, cls, method)
            for module in list(self.whole):
                defs, _, lazy = self._info(module)
                for name in self.attrs & (set(defs) | set(lazy)):
                    self._import_name(module, name)
            if not self.todo and len(self.done) == before:
                return

    def _need(self, *unit):
        if unit not in self.done:
            self.done.add(unit)
            self.todo.append(unit)

    def _info(self, module):
        if module not in self.modules:
            path = _module_path(module, self.root)
            tree = _parse(str(path), path.stat().st_mtime_ns) if path.is_file() else ast.Module([])
            defs = {n.name: n for n in tree.body if isinstance(n, _DEFS)}
            rest = [n for n in tree.body if not isinstance(n, _DEFS)]
            lazy = {}
            for node in rest:
                # names a package resolves on first use through `_LAZY = {name: module}`
                if (
                    isinstance(node, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "_LAZY" for t in node.targets)
                    and isinstance(node.value, ast.Dict)
                ):
                    lazy = {
                        k.value: v.value
                        for k, v in zip(node.value.keys, node.value.values, strict=True)
                    }
            self.modules[module] = (defs, rest, lazy)
        return self.modules[module]

    @staticmethod
    def _methods(class_node):
        return {n.name: n for n in class_node.body if isinstance(n, _DEFS)}

    def _is_module(self, module):
        return _module_path(module, self.root).is_file()

    def _import_module(self, module):
        self._need("top", module)
        self.whole.add(module)

    def _import_name(self, module, name):
        defs, _, lazy = self._info(module)
        if self._is_module(f"{module}.{name}"):
            self._import_module(f"{module}.{name}")
        elif name in lazy:
            self._need("top", lazy[name])
            self._import_name(lazy[name], name)
        elif name in defs:
            self._need("def", module, name)
        # else a module-level value: its module's top level is reached already

    def _visit(self, unit):
        kind, module = unit[0], unit[1]
        defs, rest, _ = self._info(module)
        if kind == "top":
            # module-level dunders (``__getattr__``) run on the module's behalf
            for name in defs:
                if _is_dunder(name):
                    self._need("def", module, name)
            self._walk(module, rest, module)
        elif kind == "def":
            node = defs[unit[2]]
            where = f"{module}:{node.name}"
            if isinstance(node, ast.ClassDef):
                methods = self._methods(node)
                self.classes[(module, node.name)] = methods
                body = [n for n in node.body if not isinstance(n, _DEFS)]
                self._walk(
                    module, [*node.bases, *node.keywords, *node.decorator_list, *body], where
                )
                for method in methods:
                    if _is_dunder(method) or method in self.attrs:
                        self._need("method", module, node.name, method)
            else:
                self._walk(module, [node], where)
        else:
            node = self._methods(defs[unit[2]])[unit[3]]
            self._walk(module, [node], f"{module}:{unit[2]}.{unit[3]}")

    def _walk(self, module, nodes, where):
        events = _events(module, tuple(nodes), self.root)
        for external in events.external:
            self.origin.setdefault(external, where)
        for target in events.modules:
            self._import_module(target)
        for target, names in events.names:
            self._need("top", target)
            for name in names:
                self._import_name(target, name)
        for name in events.defs:
            self._need("def", module, name)
        self.attrs |= events.attrs


_Events = collections.namedtuple("_Events", "external modules names defs attrs")
_EVENTS = {}


def _events(module, nodes, root):
    """What statements do that the analysis follows: external packages imported,
    mirprobe modules imported whole, ``from`` imports, names used, attributes used."""
    key = (module, tuple(id(n) for n in nodes))
    if key in _EVENTS:
        return _EVENTS[key][0]
    optional = _optional_imports(nodes)
    external, modules, names, used, attrs = set(), [], [], set(), set()
    for node in nodes:
        for sub in ast.walk(node):
            if id(sub) in optional:
                continue
            if isinstance(sub, ast.Import):
                for alias in sub.names:
                    parts = alias.name.split(".")
                    if parts[0] == "mirprobe":
                        modules += [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
                    else:
                        external.add(parts[0])
            elif isinstance(sub, ast.ImportFrom):
                target = _resolve(module, sub, root)
                if target.split(".")[0] != "mirprobe":
                    external.add(target.split(".")[0])
                elif any(alias.name == "*" for alias in sub.names):
                    modules.append(target)
                else:
                    names.append((target, [alias.name for alias in sub.names]))
            elif isinstance(sub, ast.Name):
                used.add(sub.id)
            elif isinstance(sub, ast.Attribute):
                attrs.add(sub.attr)
            elif (
                isinstance(sub, ast.Call)
                and isinstance(sub.func, ast.Name)
                and sub.func.id in ("getattr", "hasattr")
                and len(sub.args) > 1
                and isinstance(sub.args[1], ast.Constant)
                and isinstance(sub.args[1].value, str)
            ):
                attrs.add(sub.args[1].value)
    defs = set()
    if module is not None:
        path = _module_path(module, root)
        if path.is_file():
            top = _parse(str(path), path.stat().st_mtime_ns).body
            defs = used & {n.name for n in top if isinstance(n, _DEFS)}
    events = _Events(external, modules, names, defs, attrs)
    # the nodes stay referenced, so their ids stay theirs
    _EVENTS[key] = (events, nodes)
    return events


def packages_used(module, names, root=REPO):
    """External packages that ``from module import names`` can run (None = the
    whole module as a plug-in)."""
    return Reach(root).add_names(module, names).packages()


def script_packages(script, root=REPO):
    return Reach(root).add_script(script).packages()


def test_the_analysis_sees_lazy_imports():
    assert "librosa" in packages_used("mirprobe.stages", ["extract"])
    assert "torch" in packages_used("mirprobe.stages", ["train_probe"])
    assert "tabulate" in packages_used("mirprobe.stages", ["assemble_table"])
    # the task types import torch and scikit-learn in the methods that train and
    # fit; reading a user's key labels needs mir_eval only
    folder = packages_used("mirprobe.datasets.folder", None)
    assert "mir_eval" in folder
    assert not {"torch", "sklearn"} & folder
    assert "torch" not in packages_used("mirprobe.stages", ["assemble_table"])


def _insert(path, qualname, statement):
    """``statement`` as the first line of function ``qualname`` (``Class.method``)
    in the file at ``path``, or at its top for ``qualname=None``."""
    lines = path.read_text().split("\n")
    if qualname is None:
        at, indent = 0, ""
    else:
        node = ast.parse(path.read_text())
        for part in qualname.split("."):
            node = next(n for n in node.body if isinstance(n, _DEFS) and n.name == part)
        first = node.body[0]
        at, indent = first.lineno - 1, " " * first.col_offset
    lines.insert(at, indent + statement)
    path.write_text("\n".join(lines))


@pytest.mark.parametrize(
    ("module", "qualname", "caught"),
    [
        ("datasets/folder.py", None, True),
        ("task_types.py", None, True),
        # reached through the dataset's call task.label_from_row(...)
        ("task_types.py", "Key.label_from_row", True),
        # only the probe stages call the losses
        ("task_types.py", "Multiclass.loss", False),
    ],
)
def test_an_import_the_audio_env_lacks_is_caught_where_a_dataset_reaches_it(
    tmp_path, module, qualname, caught
):
    import shutil

    shutil.copytree(
        REPO / "mirprobe", tmp_path / "mirprobe", ignore=shutil.ignore_patterns("__pycache__")
    )
    _insert(tmp_path / "mirprobe" / module, qualname, "import torch")
    problems = dataset_env_problems(tmp_path)
    assert any("imports torch" in p for p in problems) == caught, problems
    assert dataset_env_problems(REPO) == []


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


def dataset_env_problems(root):
    """What the dataset modules under ``root`` import that envs/audio.yaml lacks.

    A dataset's code runs in the jobs of the rules that use envs/audio.yaml
    (prepare_dataset, resample), which load its class by name: each module is
    reached with those rules' scripts, so an inherited method counts when the
    stages or the module call it."""
    from mirprobe.datasets import DATASET_CLASSES

    scripts = [
        (REPO / "rules" / script).resolve()
        for conda, script in rule_blocks().values()
        if script and conda and Path(conda.strip('"')).name == "audio.yaml"
    ]
    assert scripts, "no rule uses envs/audio.yaml"
    provided = env_packages(REPO / "envs" / "audio.yaml")
    problems = []
    for module in _registry_modules(DATASET_CLASSES):
        reach = Reach(root).add_names(module, None)
        for script in scripts:
            reach.add_script(script)
        problems += [
            f"dataset module {module} imports {package} (in {reach.origin[package]})"
            for package in sorted(reach.packages())
            if CONDA_NAME.get(package) not in provided
        ]
    return problems


def test_every_dataset_module_fits_the_audio_env():
    problems = dataset_env_problems(REPO)
    assert not problems, "\n".join(problems)


def test_a_folder_dataset_prepares_where_torch_and_sklearn_cannot_be_imported(tmp_path):
    """What the analysis finds, seen running: the prepare stage of a user's key
    dataset with drawn (stratified, grouped) splits, in a
    process where importing torch or scikit-learn fails, as in envs/audio.yaml."""
    import subprocess
    import textwrap

    code = textwrap.dedent(
        """
        import sys
        from pathlib import Path

        class Absent:
            # as if not installed (scipy looks torch up in sys.modules: no None there)
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "sklearn"):
                    raise ModuleNotFoundError(f"No module named {name!r}")

        sys.meta_path.insert(0, Absent())
        from folder_fixtures import KEYS, build_audio_folder, write_labels
        from mirprobe.stages import prepare_dataset

        out = Path(sys.argv[1])
        clips = build_audio_folder(out / "audio")
        for task, labels in (("key", KEYS),):
            table = write_labels(
                out / f"{task}.csv",
                clips,
                {"path": lambda c: c["path"], "offset": lambda c: c["offset"],
                 "duration": lambda c: c["duration"],
                 "label": lambda c: labels[c["piece"]], "group": lambda c: c["session"]},
            )
            params = {"root": str(out / "audio"), "labels": str(table), "task": task,
                      "split_fractions": {"train": 0.5, "valid": 0.25, "test": 0.25}}
            prepare_dataset(
                name=task, dataset_config={"kind": "folder", "params": params},
                metadata_path=out / task / "metadata.csv",
                checksums_path=out / task / "checksums.tsv",
                record_path=out / task / "prepare.json", on_bad_audio="error",
            )
        print("prepared")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0 and "prepared" in done.stdout, done.stderr[-3000:]
    metadata = (tmp_path / "key" / "metadata.csv").read_text()
    assert "Gb minor" in metadata
