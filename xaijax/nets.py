"""Deprecated: models moved to :mod:`xaijax.zoo.nets`, the trainer to :mod:`xaijax.zoo.training`.

This alias goes in the next release.
"""

import warnings

from xaijax.zoo.nets import CNN, MLP, BasicBlock, ResNet, build
from xaijax.zoo.training import accuracy, load, save, train

__all__ = ["MLP", "CNN", "ResNet", "BasicBlock", "build", "train", "accuracy", "save", "load"]

warnings.warn(
    "xaijax.nets moved: models to xaijax.zoo.nets, train/accuracy/save/load to xaijax.zoo.training "
    "(or all of them from xaijax.zoo); this alias goes in the next release",
    DeprecationWarning,
    stacklevel=2,
)
