"""Deprecated alias of :mod:`xaijax.cli.runs`, where this module moved (it goes next release)."""

import importlib
import sys
import warnings

warnings.warn(
    "xaijax.runs moved to xaijax.cli.runs; import it from there (this alias goes next release)",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = importlib.import_module("xaijax.cli.runs")
