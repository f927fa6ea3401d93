"""One exception root for everything mirprobe raises on purpose.

``MirprobeError`` is the root; ``ConfigError`` (a bad configuration),
``DataError`` (a bad, missing or corrupt input file) and ``ModelError``
(a model that cannot be built or loaded) sit below it. All are
``ValueError`` subclasses, so callers that guard against bad values keep
working. Messages name the offending file, key or value and what was
expected.
"""


class MirprobeError(ValueError):
    """Root of all errors raised by mirprobe."""


class ConfigError(MirprobeError):
    """The configuration names an unknown key, value or combination."""


class DataError(MirprobeError):
    """An input file is missing, corrupt, empty, truncated or mislabelled."""


class AudioDecodeError(DataError):
    """An audio file cannot be decoded or holds no usable signal."""

    def __init__(self, path, problem):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ModelError(MirprobeError):
    """A model cannot be built, loaded or run as configured."""
