"""Load and validate a mirprobe configuration.

The schema is ``schemas/config.schema.yaml`` (JSON schema, draft 2020-12): every key
has a ``description`` and a ``default``, unknown keys are rejected. After the
schema, each dataset's and each representation's ``params`` are validated
against the schema of its class, so a wrong key anywhere fails before any job
runs, with a message naming the key's path.

Datasets and extractors are named by a built-in or installed plug-in's name
(``kind:``, ``extractor:``) or by ``class: module:Class``; the schema lists
none of them (the registries are the one list) and an unknown one is a
ConfigError naming its key and the choices (:func:`entry_class`, and
:mod:`mirprobe.plugins`). Each class must describe itself
(``check_description``).

Validation fills every default in place, so the resolved configuration
(recorded in provenance, hashed into :func:`config_hash`) is explicit.

What the schema cannot say is checked here too, so that nothing fails (or is
silently wrong) after extraction:

- dataset and representation names match :data:`NAME_PATTERN` (they become
  file paths and wildcards) and differ in more than case (macOS file systems);
- the probe grid expands as the training jobs will expand it, every value
  finite, and ``eval_every`` is at most ``max_steps`` (otherwise only the
  untrained probe is ever evaluated); ``probe.seeds`` (distinct non-negative
  integers, by the schema) are recorded as ints;
- every table row title (representation, layer, published row) and every
  column title is unique, and no representation lists a layer twice.

:func:`check_config_files` rereads the YAML or JSON files a configuration came
from and rejects a key given twice in one mapping, which YAML loaders
(Snakemake's included) resolve silently by keeping the last value.
"""

import copy
import hashlib
import json
import math
import re
from pathlib import Path

from .errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"

#: dataset and representation names (the schema's ``propertyNames`` pattern)
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]*$"


def _default_filling_validator():
    import jsonschema

    base = jsonschema.Draft202012Validator

    def fill_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, subschema in properties.items():
                if "default" in subschema and key not in instance:
                    instance[key] = json.loads(json.dumps(subschema["default"]))
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    return jsonschema.validators.extend(base, {"properties": fill_defaults})


def load_schema(path=SCHEMA_PATH):
    import yaml

    with open(path) as handle:
        return yaml.safe_load(handle)


def validate_against(instance, schema, *, where):
    """Validate ``instance`` (filling defaults in place); raise ConfigError naming the key path."""
    validator = _default_filling_validator()(schema)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.path))
    if errors:
        lines = []
        for error in errors:
            path = ".".join(str(p) for p in [where, *error.absolute_path] if p != "")
            lines.append(f"{path or '<top>'}: {error.message}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines))
    return instance


def validate_config(config):
    """Validate a whole configuration in place and return it with defaults filled."""
    from .datasets import get_dataset_class
    from .extractors import get_extractor_class

    config = dict(config)
    check_names(config)
    validate_against(config, load_schema(), where="")
    for name, entry in config["datasets"].items():
        # schema defaults may share one `{}` object between entries: copy first
        entry["params"] = copy.deepcopy(entry["params"])
        cls = entry_class(entry, "kind", get_dataset_class, where=f"datasets.{name}")
        cls.check_description(where=f"datasets.{name}")
        validate_against(entry["params"], cls.params_schema, where=f"datasets.{name}.params")
    for name, entry in config["representations"].items():
        entry["params"] = copy.deepcopy(entry["params"])
        cls = entry_class(entry, "extractor", get_extractor_class, where=f"representations.{name}")
        validate_against(entry["params"], cls.params_schema, where=f"representations.{name}.params")
        cls.check_description(entry["params"], where=f"representations.{name}")
        layers = entry["layers"]
        if layers is None:
            layers = cls.default_layers_for(entry["params"])
        repeated = sorted({str(x) for x in layers if [str(y) for y in layers].count(str(x)) > 1})
        if repeated:
            raise ConfigError(f"representations.{name}.layers: layers {repeated} listed twice")
        unknown = [str(x) for x in layers if str(x) not in cls.available_layers(entry["params"])]
        if unknown:
            raise ConfigError(
                f"representations.{name}.layers: unknown layers {unknown} for extractor "
                f"{entry['extractor']!r}; available: {list(cls.available_layers(entry['params']))}"
            )
        for dataset, dataset_entry in config["datasets"].items():
            cls.check_dataset(
                get_dataset_class(dataset_entry["kind"]), representation=name, dataset=dataset
            )
    resolve_comparisons(config)
    check_published(config)
    check_probe(config)
    check_titles(config)
    return config


def entry_class(entry, key, get_class, *, where):
    """The class of a ``datasets`` (``key="kind"``) or ``representations``
    (``key="extractor"``) entry, which names it by ``key`` (a built-in or installed
    plug-in's name) or by ``class`` (``module:Class``). A ``class`` is moved to
    ``key`` in place, so the resolved config names every class one way."""
    given = [k for k in (key, "class") if k in entry]
    if len(given) != 1:
        raise ConfigError(
            f"{where}: give either {key!r} (a built-in or installed name) or 'class' "
            f"('module:Class'), not {' and '.join(given) if given else 'neither'}"
        )
    if "class" in entry:
        if ":" not in entry["class"]:
            raise ConfigError(f"{where}.class: {entry['class']!r} is not 'module:Class'")
        cls = get_class(entry["class"], where=f"{where}.class")
        entry[key] = entry.pop("class")
        return cls
    return get_class(entry[key], where=f"{where}.{key}")


def check_names(config):
    """ConfigError unless every dataset and representation name is a safe identifier.

    Names become paths (``results/features/<dataset>/<representation>``) and
    Snakemake wildcards, so ``../x`` would write outside ``results/``, ``a/b``
    would match no rule's wildcard, and ``a+b`` would be read as a pattern.
    """
    for section in ("datasets", "representations"):
        entries = config.get(section)
        if not isinstance(entries, dict):
            continue  # the schema names the problem
        folded = {}
        for name in entries:
            if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
                raise ConfigError(
                    f"{section}.{name}: {name!r} is not a valid name; a name becomes file "
                    "paths and wildcards, so it is a letter followed by letters, digits, "
                    f"'_' or '-' ({NAME_PATTERN})"
                )
            other = folded.setdefault(name.lower(), name)
            if other != name:
                raise ConfigError(
                    f"{section}.{other} and {section}.{name}: names differing only in case "
                    "share their files on case-insensitive file systems"
                )


def check_probe(config):
    """ConfigError unless the probe grid expands as the training jobs will expand it."""
    from .probes.config import expand_grid

    probe = config["probe"]
    if probe["max_steps"] is not None and probe["eval_every"] > probe["max_steps"]:
        raise ConfigError(
            f"probe.eval_every ({probe['eval_every']}) > probe.max_steps "
            f"({probe['max_steps']}): only the untrained probe would be evaluated"
        )
    for axis, values in probe["grid"].items():
        for index, value in enumerate(values):
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"probe.grid.{axis}.{index}: {value!r} is not a finite number")
    if probe["seeds"] is not None:
        # the schema takes 2.0 for an integer: recorded as 2, the seed it trains with
        probe["seeds"] = [int(seed) for seed in probe["seeds"]]
    try:  # what the schema cannot say, as the training jobs will say it
        expand_grid(
            probe["grid"],
            eval_every=probe["eval_every"],
            patience=probe["patience"],
            max_steps=probe["max_steps"],
            seed=config["seed"],
        )
    except ConfigError as error:
        raise ConfigError(f"probe: {error}") from None


def table_row_title(config, name, layer):
    """The table's title of representation ``name`` at ``layer``."""
    title = config["representations"][name]["label"] or name
    return title if len(representation_layers(config, name)) == 1 else f"{title} L{layer}"


def check_titles(config):
    """ConfigError unless the table's row and column titles tell its rows and columns apart."""

    def where(section, name):
        entry = config[section][name]
        return f"{section}.{name}.label" if entry["label"] else f"{section}.{name} (unlabelled)"

    for section in ("datasets", "representations"):
        seen = {}
        for name, entry in config[section].items():
            title = entry["label"] or name
            if title in seen:
                raise ConfigError(
                    f"{where(section, seen[title])} and {where(section, name)}: both titled "
                    f"{title!r} in the table; give them different labels"
                )
            seen[title] = name
    seen = {}
    for name in config["representations"]:
        for layer in representation_layers(config, name):
            title = table_row_title(config, name, layer)
            if title in seen:
                raise ConfigError(
                    f"{seen[title]} and {where('representations', name)} (layer {layer}): "
                    f"both give the table row {title!r}; give them different labels"
                )
            seen[title] = f"{where('representations', name)} (layer {layer})"
    for index, row in enumerate(config.get("published") or []):
        title = f"{row['label']} [published]"
        if title in seen:
            raise ConfigError(
                f"{seen[title]} and published[{index}].label: both give the table row "
                f"{title!r}; give them different labels"
            )
        seen[title] = f"published[{index}].label"


def check_published(config):
    """ConfigError unless every published value names a dataset and one of its table
    columns, and a ``row`` names a representation (or representation/layer)."""
    from .datasets import build_dataset
    from .tables import table_metrics

    for index, row in enumerate(config.get("published") or []):
        name = row.get("row")
        if name is not None:
            rep, _, layer = name.partition("/")
            if rep not in config["representations"] or (
                layer and layer not in representation_layers(config, rep)
            ):
                rows = [
                    f"{r}/{at}"
                    for r in config["representations"]
                    for at in representation_layers(config, r)
                ]
                raise ConfigError(
                    f"published[{index}].row: {name!r} names no computed row; choose a "
                    f"representation ({sorted(config['representations'])}) or one of {rows}"
                )
        for dataset, values in row["values"].items():
            where = f"published[{index}].values.{dataset}"
            if dataset not in config["datasets"]:
                raise ConfigError(f"{where}: unknown dataset; known: {sorted(config['datasets'])}")
            entry = config["datasets"][dataset]
            instance = build_dataset(dataset, entry)
            columns = table_metrics(instance.task_type, entry.get("metrics"), instance.labels())
            unknown = sorted(set(values) - set(columns))
            if unknown:
                raise ConfigError(
                    f"{where}: metrics {unknown} are not columns of this task (columns: {columns})"
                )


def representation_layers(config, name):
    """The probed (hence extracted) layers of representation ``name``, as strings."""
    from .extractors import get_extractor_class

    entry = config["representations"][name]
    layers = entry["layers"]
    if layers is None:
        layers = get_extractor_class(entry["extractor"]).default_layers_for(entry["params"])
    return [str(layer) for layer in layers]


def resolve_comparisons(config):
    """The config's ``compare`` pairs as ``[{id, a: {name, layer}, b: {name, layer}}]``."""
    resolved = []
    for index, pair in enumerate(config.get("compare") or []):
        sides = []
        for side in ("a", "b"):
            where = f"compare[{index}].{side}"
            name, _, layer = str(pair[side]).partition("/")
            if name not in config["representations"]:
                raise ConfigError(
                    f"{where}: unknown representation {name!r}; known: "
                    f"{sorted(config['representations'])}"
                )
            layers = representation_layers(config, name)
            if not layer:
                if len(layers) != 1:
                    raise ConfigError(
                        f"{where}: {name!r} has probed layers {layers}; write {name}/<layer>"
                    )
                layer = layers[0]
            elif layer not in layers:
                raise ConfigError(
                    f"{where}: layer {layer!r} of {name!r} is not probed, so not extracted "
                    f"(probed layers: {layers})"
                )
            sides.append({"name": name, "layer": layer})
        a, b = sides
        if a == b:
            raise ConfigError(f"compare[{index}]: a and b are both {a['name']}/{a['layer']}")
        pair_id = f"{a['name']}.{a['layer']}--{b['name']}.{b['layer']}"
        resolved.append({"id": pair_id, "a": a, "b": b})
    ids = [c["id"] for c in resolved]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise ConfigError(f"compare: pairs listed twice: {duplicated}")
    return resolved


def check_config_files(paths):
    """ConfigError if a mapping in any of these YAML or JSON files gives a key twice.

    The error names the file, the key's path, the key and both lines (YAML).
    Merge keys (``<<``) may override legitimately and are not counted.
    """
    for path in paths:
        load_config_file(path)


def config_sources(paths, *, overrides=None):
    """Where a run's configuration came from, for its provenance records:
    ``{"files": [{"path", "sha256"}], "overrides": {...}}``, the files in the
    order they were read (absolute paths; the sha256 of each file's bytes) and
    the values given on the command line (Snakemake's ``--config``), if any.

    ``config.sha256`` covers the configuration these resolve to, defaults
    filled in; a file's sha256 covers that file only (comments included)."""
    files = []
    for path in paths:
        path = Path(path).resolve()
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        files.append({"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    return {"files": files, **({"overrides": dict(overrides)} if overrides else {})}


def load_config_file(path):
    """Read a YAML or JSON config file; ConfigError on a duplicate key (see check_config_files)."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    try:
        # as Snakemake reads config files: JSON first, then YAML
        return json.loads(text, object_pairs_hook=_json_pairs_without_duplicates(path))
    except json.JSONDecodeError:
        pass
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML or JSON: {error}") from None
    _reject_duplicate_keys(root, path=path, where="")
    return yaml.safe_load(text)


def _json_pairs_without_duplicates(path):
    def build(pairs):
        mapping = {}
        for key, value in pairs:
            if key in mapping:
                raise ConfigError(f"{path}: key {key!r} given twice in one mapping")
            mapping[key] = value
        return mapping

    return build


def _reject_duplicate_keys(node, *, path, where):
    import yaml

    if isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _reject_duplicate_keys(item, path=path, where=f"{where}[{index}]")
    if not isinstance(node, yaml.MappingNode):
        return
    constructor = yaml.SafeLoader("")
    lines = {}
    for key_node, value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = constructor.construct_object(key_node, deep=True)
        child = f"{where}.{key}" if where else str(key)
        line = key_node.start_mark.line + 1
        try:
            if key in lines:
                raise ConfigError(
                    f"{path}:{line}: key {child!r} given twice (first on line {lines[key]}); "
                    "YAML keeps only the last value"
                )
            lines[key] = line
        except TypeError:  # an unhashable key: the YAML loader itself rejects it
            pass
        _reject_duplicate_keys(value_node, path=path, where=child)


def load_config(path):
    """Read a YAML or JSON config file (rejecting duplicate keys) and validate it."""
    path = Path(path)
    config = load_config_file(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(config).__name__}")
    return validate_config(config)


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config):
    """sha256 of the canonical JSON of a (resolved) configuration."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()
