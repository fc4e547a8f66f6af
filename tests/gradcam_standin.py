"""A stand-in for the torchvision names pytorch-grad-cam, zennit and Quantus import at import.

PyPI's torchvision wheels do not match the CPU torch build in this environment, and
pytorch-grad-cam imports ``torchvision.transforms`` (``Compose``, ``Normalize``, ``ToTensor``),
``torchvision.transforms.functional.resize`` and ``torchvision.ops`` at import time although the
CAMs compared in the tests never call them. Issue 18 allows this stand-in: :func:`install` puts
empty modules into ``sys.modules`` (only when torchvision itself cannot be imported) whose
functions raise if ever called, so a test can never silently depend on them. zennit (and
Quantus, which imports zennit) imports ``torchvision.models.resnet``'s ``Bottleneck`` and
``BasicBlock`` for its ResNet canonizer (issues 19 and 20 allow the same stand-in): they are
empty classes here, which no model in the tests is an instance of.
"""

import sys
import types


def _unavailable(*args, **kwargs):
    raise NotImplementedError("torchvision stand-in (tests/gradcam_standin.py): not available")


def install() -> None:
    """Make ``import torchvision`` succeed with the stand-in, unless the real one imports."""
    try:
        import torchvision  # noqa: F401

        return
    except Exception:
        pass
    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    ops = types.ModuleType("torchvision.ops")
    transforms.Compose = transforms.Normalize = transforms.ToTensor = _unavailable
    functional.resize = _unavailable
    ops.box_iou = _unavailable
    transforms.functional, tv.transforms, tv.ops = functional, transforms, ops
    models = types.ModuleType("torchvision.models")
    resnet = types.ModuleType("torchvision.models.resnet")
    resnet.Bottleneck = type("Bottleneck", (), {})
    resnet.BasicBlock = type("BasicBlock", (), {})
    models.resnet, tv.models = resnet, models
    sys.modules.update(
        {
            "torchvision": tv,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
            "torchvision.ops": ops,
            "torchvision.models": models,
            "torchvision.models.resnet": resnet,
        }
    )
