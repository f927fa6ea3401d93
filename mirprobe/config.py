"""Load and validate a mirprobe configuration.

The schema is ``schemas/config.schema.yaml`` (JSON schema, draft 2020-12): every key
has a ``description`` and a ``default``, unknown keys are rejected. After the
schema, each dataset's and each representation's ``params`` are validated
against the schema of its class, so a wrong key anywhere fails before any job
runs, with a message naming the key's path.

Validation fills every default in place, so the resolved configuration
(recorded in provenance, hashed into :func:`config_hash`) is explicit.
"""

import copy
import hashlib
import json
from pathlib import Path

from .errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"


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
    validate_against(config, load_schema(), where="")
    for name, entry in config["datasets"].items():
        # schema defaults may share one `{}` object between entries: copy first
        entry["params"] = copy.deepcopy(entry["params"])
        cls = get_dataset_class(entry["kind"])
        validate_against(entry["params"], cls.params_schema, where=f"datasets.{name}.params")
    for name, entry in config["representations"].items():
        entry["params"] = copy.deepcopy(entry["params"])
        cls = get_extractor_class(entry["extractor"])
        validate_against(entry["params"], cls.params_schema, where=f"representations.{name}.params")
        layers = entry["layers"]
        if layers is None:
            layers = cls.default_layers_for(entry["params"])
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
    return config


def check_published(config):
    """ConfigError unless every published value names a dataset and one of its table columns."""
    from .datasets import build_dataset
    from .tables import table_metrics

    for index, row in enumerate(config.get("published") or []):
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


def load_config(path):
    """Read a YAML config file and validate it."""
    import yaml

    path = Path(path)
    try:
        with open(path) as handle:
            config = yaml.safe_load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(config).__name__}")
    return validate_config(config)


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config):
    """sha256 of the canonical JSON of a (resolved) configuration."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()
