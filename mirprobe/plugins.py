"""Finding an extractor or dataset class by name: built-in, installed, or by module path.

Each kind of plug-in has one :class:`Registry` (``EXTRACTORS`` in
``mirprobe/extractors/__init__.py``, ``DATASETS`` in
``mirprobe/datasets/__init__.py``). A config names a class in one of three
ways, resolved in this order by :meth:`Registry.get`:

1. a name in the registry's built-in table (``EXTRACTOR_CLASSES``,
   ``DATASET_CLASSES``): ``extractor: mfcc``;
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


class Registry:
    """The classes of one kind of plug-in, found by the name a config gives.

    ``classes``: the built-in table ``{name: "module:Class"}``; ``group``: the
    entry-point group installed distributions declare them in; ``base``: the
    ``"module:Class"`` every class must subclass (imported at the first lookup, so
    that reading the registry imports no plug-in); ``what``: ``"extractor"`` or
    ``"dataset kind"``, for messages.
    """

    def __init__(self, classes, *, group, base, what):
        self.classes = classes
        self.group = group
        self.base = base
        self.what = what

    def get(self, name, *, where=None):
        """The class ``name`` refers to (see the module docstring); ConfigError otherwise,
        naming ``where`` (the config key path naming it) and the choices."""
        what = self.what
        prefix = f"{where}: " if where else ""
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{prefix}{what} must be a non-empty string, got {name!r}")
        if name in self.classes:
            target = self.classes[name]
        elif ":" in name:
            target = name
        else:
            installed = installed_names(self.group)
            if name not in installed:
                raise ConfigError(
                    f"{prefix}unknown {what} {name!r}; built-in: {sorted(self.classes)}; "
                    f"installed (entry points {self.group!r}): {sorted(installed)}; or a class "
                    "given as 'module:Class'"
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
            raise ConfigError(
                f"{prefix}{what} {name!r}: module {module_name!r} has no {class_name!r}"
            )
        base_module, _, base_name = self.base.partition(":")
        base = getattr(importlib.import_module(base_module), base_name)
        if not (isinstance(cls, type) and issubclass(cls, base)):
            raise ConfigError(
                f"{prefix}{what} {name!r}: {target} is not a subclass of "
                f"{base.__module__}.{base.__qualname__}"
            )
        return cls


class Pluggable:
    """Base of the extractor and dataset classes (which state ``packages``): the
    distributions whose versions a class's jobs record (:meth:`provenance_packages`)."""

    @classmethod
    def provenance_packages(cls):
        """``packages`` and, for a plug-in, the distribution that installed it (when one
        did): the distributions whose versions its jobs (extraction, or a dataset's
        prepare job) record."""
        extra = ()
        if is_plugin_module(cls.__module__):
            dist, _ = distribution_of(cls.__module__)
            extra = () if dist is None else (dist,)
        return tuple(dict.fromkeys((*cls.packages, *extra)))


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
