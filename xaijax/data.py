"""Deprecated alias of :mod:`xaijax.zoo.data`, where this module moved (it goes next release)."""

import importlib
import sys
import warnings

warnings.warn(
    "xaijax.data moved to xaijax.zoo.data; import it from there (this alias goes next release)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("xaijax.zoo.data")
