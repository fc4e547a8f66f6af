"""Deprecated alias of :mod:`xaijax.cli.chunks`, where this module moved (it goes next release)."""

import importlib
import warnings


def __getattr__(name):
    module = importlib.import_module("xaijax.cli.chunks")
    value = getattr(module, name)  # AttributeError for a name the new module lacks
    warnings.warn(
        f"xaijax.chunks moved to xaijax.cli.chunks; import {name} from there",
        DeprecationWarning,
        stacklevel=2,
    )
    return value
