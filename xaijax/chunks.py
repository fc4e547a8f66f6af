"""Deprecated alias of :mod:`xaijax.cli.chunks`, where this module moved (it goes next release)."""

import importlib
import sys
import warnings

warnings.warn(
    "xaijax.chunks moved to xaijax.cli.chunks; import it from there (this alias goes next release)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("xaijax.cli.chunks")
