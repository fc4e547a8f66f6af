"""Deprecated alias of :mod:`xaijax.zoo.data`, where this module moved (it goes next release)."""

import importlib
import warnings


def __getattr__(name):
    module = importlib.import_module("xaijax.zoo.data")
    value = getattr(module, name)  # AttributeError for a name the new module lacks
    warnings.warn(
        f"xaijax.data moved to xaijax.zoo.data; import {name} from there",
        DeprecationWarning,
        stacklevel=2,
    )
    return value
