"""Finding an extractor or dataset class by name: built-in, installed, or by module path.

A config names a class in one of three ways, resolved in this order by
:func:`load_class`:

1. a name in the package's registry (``mirprobe/extractors/__init__.py``,
   ``mirprobe/datasets/__init__.py``): ``extractor: mfcc``;
2. the name of an entry point that an installed distribution declares in the
   registry's group (:data:`mirprobe.extractors.ENTRY_POINT_GROUP`,
   :data:`mirprobe.datasets.ENTRY_POINT_GROUP`), e.g. in its ``pyproject.toml``::

       [project.entry-points."mirprobe.extractors"]
       specstats = "specstats_plugin.features:SpectralStats"

3. a ``module:Class`` path (``class: some_package.module:Name`` in config),
   of any module importable by the workflow's Python.

Whatever the way, the class must subclass the registry's base class; anything
else is a ConfigError naming the config key, the name and the choices.

Where a class from outside the package came from (its module, source file, the
file's sha256, its distribution and version) is in each job's code record
(:func:`mirprobe.provenance.plugin_record`), and the file's digest is part of
the job's code digest, so editing a plug-in reruns its jobs.
"""

import importlib
import importlib.metadata

from .errors import ConfigError

#: the package's own modules: classes there are built-ins, not plug-ins
PACKAGE = __name__.partition(".")[0]


def installed_names(group):
    """``{entry-point name: "module:Class"}`` that installed distributions declare in ``group``."""
    return {ep.name: ep.value for ep in importlib.metadata.entry_points(group=group)}


def load_class(name, *, registry, group, base, what, where):
    """The class ``name`` refers to (see the module docstring); ConfigError otherwise.

    ``registry``: ``{name: "module:Class"}``; ``group``: the entry-point group;
    ``base``: the class it must subclass; ``what``: ``"extractor"`` or ``"dataset
    kind"`` (for messages); ``where``: the config key path naming it.
    """
    prefix = f"{where}: " if where else ""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{prefix}{what} must be a non-empty string, got {name!r}")
    if name in registry:
        target = registry[name]
    elif ":" in name:
        target = name
    else:
        installed = installed_names(group)
        if name not in installed:
            raise ConfigError(
                f"{prefix}unknown {what} {name!r}; built-in: {sorted(registry)}; installed "
                f"(entry points {group!r}): {sorted(installed)}; or a class given as "
                "'module:Class'"
            )
        target = installed[name]
    module_name, _, class_name = target.partition(":")
    if not module_name or not class_name:
        raise ConfigError(f"{prefix}{what} {name!r}: {target!r} is not 'module:Class'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(
            f"{prefix}{what} {name!r}: cannot import module {module_name!r} ({error}); "
            "is its package installed or on PYTHONPATH?"
        ) from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConfigError(f"{prefix}{what} {name!r}: module {module_name!r} has no {class_name!r}")
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(
            f"{prefix}{what} {name!r}: {target} is not a subclass of "
            f"{base.__module__}.{base.__qualname__}"
        )
    return cls


def is_plugin_module(module):
    """Whether ``module`` lies outside this package (a plug-in's)."""
    return module != PACKAGE and not module.startswith(PACKAGE + ".")


def distribution_of(module):
    """``(distribution, version)`` that installed ``module``'s top-level package, or Nones."""
    top = module.partition(".")[0]
    names = importlib.metadata.packages_distributions().get(top) or []
    for dist in sorted(names):
        try:
            return dist, importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None, None
