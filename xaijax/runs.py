"""Deprecated alias of :mod:`xaijax.cli.runs`, where this module moved (it goes next release)."""

import importlib
import warnings


def __getattr__(name):
    module = importlib.import_module("xaijax.cli.runs")
    value = getattr(module, name)  # AttributeError for a name the new module lacks
    warnings.warn(
        f"xaijax.runs moved to xaijax.cli.runs; import {name} from there",
        DeprecationWarning,
        stacklevel=2,
    )
    return value
