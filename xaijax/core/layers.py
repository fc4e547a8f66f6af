"""A model seen at one layer: activations ``A`` and the logits computed from them.

Every CAM method (and every layer attribution) needs two things from a model: the activations
``A: (n, h, w, c)`` of a chosen layer, and the logits as a function of (a perturbation of) those
activations. :class:`LayerModel` provides them for two kinds of model:

* explicit functions ``features: X -> A`` and ``head: A -> logits`` (the contract of
  :func:`xaijax.grad_cam`);
* a Flax NNX module and the path of a submodule (``"layer4"``, ``"blocks/2/conv"``): the module is
  split once in eval mode and, inside the traced function, the submodule is swapped for a wrapper
  that records its output and returns ``output + delta``. Nothing in the user's model changes, and
  it works for any architecture (skip connections that bypass the layer included), because the
  rest of the network runs unchanged.

The perturbation ``delta`` is how gradients reach the layer: ``d score / d delta`` at ``delta = 0``
is ``d score / d A``, and one ``jax.vjp`` gives it for a whole batch. Ablation-CAM uses the same
hook with ``delta = -A * e_k``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from xaijax.core.model import is_nnx_module

__all__ = ["LayerModel", "layer_model"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LayerModel:
    """A model cut at one layer; a pytree whose only leaves are the NNX state (if any).

    Functions, the NNX graph definition and the layer path are static metadata, so a jitted
    explainer taking a ``LayerModel`` compiles once per model and input shape.
    """

    state: Any
    features: Callable | None = dataclasses.field(default=None, metadata=dict(static=True))
    head: Callable | None = dataclasses.field(default=None, metadata=dict(static=True))
    graphdef: Any = dataclasses.field(default=None, metadata=dict(static=True))
    path: tuple = dataclasses.field(default=(), metadata=dict(static=True))

    def forward(self, X, delta=None):
        """``(logits, A)``: logits computed from ``A + delta``, and the unperturbed ``A``."""
        if self.graphdef is None:
            A = self.features(X)
            return self.head(A if delta is None else A + delta), A
        return self._run_nnx(X, (lambda a: a) if delta is None else (lambda a: a + delta))

    def logits_from(self, X, A):
        """Logits when the layer outputs ``A`` (``X`` still feeds connections that bypass it)."""
        if self.graphdef is None:
            return self.head(A)
        return self._run_nnx(X, lambda a: A)[0]

    def logits(self, X):
        return self.forward(X)[0]

    def _run_nnx(self, X, replace):
        from flax import nnx

        module = _eval_mode(nnx.merge(self.graphdef, self.state))
        parent = _walk(module, self.path[:-1])
        layer = _child(parent, self.path[-1])
        captured = []

        def hooked(*args, **kwargs):
            out = layer(*args, **kwargs)
            captured.append(out)
            return replace(out)

        _set_child(parent, self.path[-1], _Hook(hooked))
        logits = module(X)
        if len(captured) != 1:
            raise ValueError(
                f"layer {'/'.join(map(str, self.path))!r} was called {len(captured)} times in one "
                "forward pass; choose a layer that runs exactly once"
            )
        return logits, captured[0]


def _eval_mode(module):
    # Flax renamed the eval switch across versions; use whichever this version has.
    if hasattr(module, "eval"):
        module.eval()
    elif hasattr(module, "set_attributes"):  # pragma: no cover - older/newer flax
        module.set_attributes(
            deterministic=True, use_running_average=True, raise_if_not_found=False
        )
    return module


class _Hook:
    """A plain callable that stands in for the target submodule during one traced call."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def _parse_path(layer) -> tuple:
    if isinstance(layer, str):
        parts = layer.replace(".", "/").split("/")
    elif isinstance(layer, (tuple, list)):
        parts = list(layer)
    else:
        raise ValueError(f"layer must be a path like 'block2/conv' or a tuple; got {layer!r}")
    parts = [int(p) if isinstance(p, str) and p.isdigit() else p for p in parts if p != ""]
    if not parts:
        raise ValueError("layer must name a submodule, e.g. 'block2/conv'; got an empty path")
    return tuple(parts)


def _child(obj, key):
    if isinstance(key, int):
        return obj[key]
    return getattr(obj, key)


def _set_child(obj, key, value):
    if isinstance(key, int):
        obj[key] = value
    else:
        # Bypass NNX's attribute checks: the module is a throwaway copy made inside the trace.
        object.__setattr__(obj, key, value)


def _walk(module, path):
    obj = module
    for key in path:
        obj = _child(obj, key)
    return obj


def _module_paths(module) -> list[str]:
    from flax import nnx

    try:
        items = nnx.iter_modules(module) if hasattr(nnx, "iter_modules") else module.iter_modules()
        return sorted("/".join(map(str, p)) for p, _ in items if p)
    except Exception:  # pragma: no cover - listing is only a hint in an error message
        return []


def layer_model(features, head) -> LayerModel:
    """Build a :class:`LayerModel` from ``(features, head)`` functions or ``(module, layer_path)``.

    Raises:
        ValueError: if the functions are not callable or the layer path does not exist.
    """
    if is_nnx_module(features):
        from flax import nnx

        path = _parse_path(head)
        # Split only; eval mode is set on the copy merged inside the trace, which keeps this
        # per-call step cheap (one graph traversal) and leaves the user's module untouched.
        graphdef, state = nnx.split(features)
        try:
            parent = _walk(features, path[:-1])
            target = _child(parent, path[-1])
        except (AttributeError, IndexError, KeyError, TypeError):
            target = None
        if target is None or not callable(target):
            known = ", ".join(_module_paths(features)) or "none found"
            raise ValueError(
                f"layer {head!r} does not name a callable submodule of {type(features).__name__}; "
                f"available layer paths: {known}"
            )
        return LayerModel(state=state, graphdef=graphdef, path=path)
    if not callable(features):
        raise ValueError(f"features must be a function X -> A (n,h,w,c); got {type(features)!r}")
    if not callable(head):
        raise ValueError(
            f"head must be a function A -> logits (n,K) (or a layer path when features is an NNX "
            f"module); got {type(head)!r}"
        )
    return LayerModel(state=None, features=features, head=head)
