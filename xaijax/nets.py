"""Deprecated: models moved to :mod:`xaijax.zoo.nets`, the trainer to :mod:`xaijax.zoo.training`.

This alias goes in the next release.
"""

import importlib
import warnings

_MOVED = {
    **dict.fromkeys(("MLP", "CNN", "ResNet", "BasicBlock", "build"), "xaijax.zoo.nets"),
    **dict.fromkeys(("train", "accuracy", "save", "load"), "xaijax.zoo.training"),
}
__all__ = list(_MOVED)


def __getattr__(name):
    if name not in _MOVED:
        raise AttributeError(f"module 'xaijax.nets' has no attribute {name!r}")
    warnings.warn(
        f"xaijax.nets moved: import {name} from {_MOVED[name]} (or xaijax.zoo); this alias goes "
        "next release",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(_MOVED[name]), name)
