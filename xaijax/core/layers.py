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
import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from xaijax.core.model import is_nnx_module, nnx_merge, nnx_split
from xaijax.core.registry import register_cache

__all__ = [
    "LayerModel",
    "layer_model",
    "LayersModel",
    "layers_model",
    "TokenGrid",
    "resolve_reshape",
    "module_paths",
]


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
    # A linear view of the layer's output (e.g. :class:`TokenGrid`: ViT tokens -> (n, h, w, d));
    # ``A`` and ``delta`` live in the view, mapped back to the layer by its transpose.
    reshape: Callable | None = dataclasses.field(default=None, metadata=dict(static=True))

    def view(self, out):
        """The layer's output as the explainer sees it (``reshape(out)``, or ``out``)."""
        return out if self.reshape is None else self.reshape(out)

    def _add(self, out, delta):
        """``out`` plus ``delta`` given in view coordinates (the transpose of a linear view)."""
        if delta is None:
            return out
        if self.reshape is None:
            return out + delta
        spec = jax.ShapeDtypeStruct(out.shape, out.dtype)
        (back,) = jax.linear_transpose(self.reshape, spec)(delta.astype(out.dtype))
        return out + back

    def forward(self, X, delta=None):
        """``(logits, A)``: logits computed from ``A + delta``, and the unperturbed ``A``."""
        if self.graphdef is None:
            out = self.features(X)
            return self.head(self._add(out, delta)), self.view(out)
        logits, out = self._run_nnx(X, lambda a: self._add(a, delta))
        return logits, self.view(out)

    def logits_from(self, X, A):
        """Logits when the layer outputs ``A`` (``X`` still feeds connections that bypass it)."""
        if self.graphdef is None:
            if self.reshape is None:
                return self.head(A)
            out = self.features(X)
            return self.head(self._add(out, A - self.view(out)))
        if self.reshape is None:
            return self._run_nnx(X, lambda a: A)[0]
        return self._run_nnx(X, lambda a: self._add(a, A - self.view(a)))[0]

    def logits(self, X):
        return self.forward(X)[0]

    def _run_nnx(self, X, replace):
        module = nnx_merge(self.graphdef, self.state)
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


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LayersModel:
    """An NNX module seen at several layers at once (e.g. every attention matrix of a
    transformer); a pytree whose only leaves are the module's state."""

    state: Any
    graphdef: Any = dataclasses.field(default=None, metadata=dict(static=True))
    paths: tuple = dataclasses.field(default=(), metadata=dict(static=True))

    def forward(self, X, deltas=None):
        """``(logits, outputs)``: logits with ``outputs[i] + deltas[i]`` at layer ``i``, and the
        unperturbed outputs (a tuple, one per path)."""
        module = nnx_merge(self.graphdef, self.state)
        captured = [[] for _ in self.paths]
        for i, path in enumerate(self.paths):
            parent = _walk(module, path[:-1])
            layer = _child(parent, path[-1])

            def hooked(*args, _layer=layer, _i=i, **kwargs):
                out = _layer(*args, **kwargs)
                captured[_i].append(out)
                return out if deltas is None else out + deltas[_i]

            _set_child(parent, path[-1], _Hook(hooked))
        logits = module(X)
        for path, outs in zip(self.paths, captured, strict=True):
            if len(outs) != 1:
                raise ValueError(
                    f"layer {'/'.join(map(str, path))!r} was called {len(outs)} times in one "
                    "forward pass; choose layers that run exactly once"
                )
        return logits, tuple(outs[0] for outs in captured)


def layers_model(module, paths, *, name: str = "layers") -> LayersModel:
    """A :class:`LayersModel` of an NNX module at ``paths`` (each a path like ``"blocks/-1/attn"``).

    Raises:
        ValueError: naming ``name`` if a path does not name a callable submodule.

    Example:
        >>> from flax import nnx
        >>> class Net(nnx.Module):
        ...     def __init__(self):
        ...         self.fc = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
        ...     def __call__(self, x):
        ...         return self.fc(x)
        >>> layers_model(Net(), ["fc"]).paths
        (('fc',),)
    """
    resolved = []
    for layer in paths:
        try:
            path = _resolve_negative(module, _parse_path(layer))
            target = _child(_walk(module, path[:-1]), path[-1])
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            target = None
        if target is None or not callable(target):
            raise ValueError(
                f"{name}: {layer!r} does not name a callable submodule of {type(module).__name__}"
            )
        resolved.append(path)
    graphdef, state = nnx_split(module)
    return LayersModel(state=state, graphdef=graphdef, paths=tuple(resolved))


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
    parts = [
        int(p) if isinstance(p, str) and p.lstrip("-").isdigit() else p for p in parts if p != ""
    ]
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


def _resolve_negative(module, path) -> tuple:
    """``path`` with negative list indices (``"blocks/-1/norm1"``) made non-negative."""
    out, obj = [], module
    for key in path:
        if isinstance(key, int) and key < 0:
            key = len(obj) + key
            if key < 0:
                raise IndexError(key)
        out.append(key)
        obj = _child(obj, key)
    return tuple(out)


def module_paths(module) -> list[tuple]:
    """Every submodule path of an NNX module, as tuples, in the module's traversal order.

    Example:
        >>> from flax import nnx
        >>> class Net(nnx.Module):
        ...     def __init__(self):
        ...         self.fc = nnx.Linear(2, 2, rngs=nnx.Rngs(0))
        >>> module_paths(Net())
        [('fc',)]
    """
    from flax import nnx

    graph = nnx_split(module)[0]  # remembered per module: the paths are kept per structure
    paths = _PATHS.get(graph)
    if paths is None:
        items = nnx.iter_modules(module) if hasattr(nnx, "iter_modules") else module.iter_modules()
        paths = _PATHS[graph] = tuple(tuple(p) for p, _ in items if p)
        if len(_PATHS) > 64:
            _PATHS.pop(next(iter(_PATHS)))
    return list(paths)


_PATHS: dict = register_cache({})


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
        path = _parse_path(head)
        # Split only (remembered per module); eval mode is set on the copy merged inside the
        # trace, which keeps this per-call step cheap and leaves the user's module untouched.
        graphdef, state = nnx_split(features)
        try:
            path = _resolve_negative(features, path)
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


# -- token grids ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TokenGrid:
    """Tokens ``(n, 1 + h*w, d)`` -> a grid ``(n, h, w, d)``: the first (class) token dropped,
    the rest in row-major patch order (as a ViT lays them out, and pytorch-grad-cam's ViT
    ``reshape_transform``). Linear, so gradients map back to the tokens by its transpose.

    Example:
        >>> import jax.numpy as jnp
        >>> TokenGrid(2, 3)(jnp.zeros((4, 7, 5))).shape
        (4, 2, 3, 5)
    """

    height: int
    width: int

    def __call__(self, tokens):
        n, _, d = tokens.shape
        return tokens[:, 1:].reshape(n, self.height, self.width, d)


def resolve_reshape(reshape, a_shape, *, name: str = "reshape"):
    """The view of a layer's output ``a_shape`` that ``reshape`` asks for, checked: ``None``.

    ``reshape`` is ``None``/``False`` (no view: the layer must already be ``(n, h, w, c)``),
    ``True``/``"auto"`` (tokens ``(n, 1 + h*w, d)``, class token dropped, a square grid),
    an int ``s`` (an ``s x s`` grid), a tuple ``(h, w)`` (a given grid), or a callable
    ``A -> (n, h, w, d)`` (linear in ``A``: gradients and perturbations map back through its
    transpose).

    Raises:
        ValueError: when the layer is not 3-D tokens, the token count is not ``1 + h*w``, or
            the callable does not give ``(n, h, w, d)``; TypeError for anything else.

    Example:
        >>> resolve_reshape("auto", (2, 17, 8))
        TokenGrid(height=4, width=4)
    """
    if reshape is None or reshape is False:
        return None
    a_shape = tuple(a_shape)
    if callable(reshape) and not isinstance(reshape, bool):
        spec = jax.ShapeDtypeStruct(a_shape, np.float32)
        try:
            out = jax.eval_shape(reshape, spec)
        except Exception as err:
            raise ValueError(
                f"{name} failed on the layer's activations of shape {a_shape}: "
                f"{type(err).__name__}: {err}"
            ) from err
        shape = getattr(out, "shape", None)
        if shape is None or len(shape) != 4 or shape[0] != a_shape[0]:
            raise ValueError(
                f"{name} must map the layer's activations {a_shape} to (n, h, w, d) with "
                f"n={a_shape[0]}; got {shape if shape is not None else type(out).__name__}"
            )
        return reshape
    if reshape is True or reshape == "auto":
        grid = None
    elif isinstance(reshape, (int, np.integer)) and not isinstance(reshape, bool):
        grid = (int(reshape), int(reshape))
    elif (
        isinstance(reshape, (tuple, list))
        and len(reshape) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in reshape)
    ):
        grid = (int(reshape[0]), int(reshape[1]))
    else:
        raise TypeError(
            f"{name} must be None, True/'auto', an int or (h, w) grid, or a callable "
            f"A -> (n, h, w, d); got {reshape!r}"
        )
    if grid is not None and min(grid) < 1:
        raise ValueError(f"{name} grid must be positive; got {grid}")
    if len(a_shape) != 3:
        raise ValueError(
            f"{name}={reshape!r} needs token activations (n, 1 + h*w, d) at the layer; got "
            f"shape {a_shape}"
        )
    tokens = a_shape[1] - 1
    if grid is None:
        side = math.isqrt(max(tokens, 0))
        if tokens < 1 or side * side != tokens:
            raise ValueError(
                f"{name}={reshape!r} needs 1 + h*w tokens with a square grid; the layer has "
                f"{a_shape[1]} tokens ({tokens} after the class token). Pass the grid as "
                f"{name}=(h, w)"
            )
        grid = (side, side)
    if grid[0] * grid[1] != tokens:
        raise ValueError(
            f"{name}={reshape!r}: the layer has {a_shape[1]} tokens, not 1 + h*w = "
            f"{1 + grid[0] * grid[1]} for the grid {grid}"
        )
    return TokenGrid(*grid)
