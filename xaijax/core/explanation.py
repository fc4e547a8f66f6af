"""The result every explainer returns: a frozen dataclass registered as a JAX pytree.

An :class:`Explanation` says what it is through its static ``kind``, and each kind has one
invariant (:data:`KINDS`), which the contract suite checks for every explainer:

=========== ========================================================================== ===========
kind        invariant                                                                  examples
=========== ========================================================================== ===========
additive    ``values`` summed over the feature axes ``+ base_values == link(f(data))``  Shapley
            exactly (local accuracy, up to float rounding)                             explainers,
                                                                                       Deep SHAP
path        the same sum equals ``f(data) - extras["completeness_gap"]``: complete     Integrated
            up to a reported quadrature or Monte-Carlo error                           / Expected
                                                                                       Gradients
map         a relevance map over the input (or its spatial grid); no additivity,       saliency,
            ``base_values`` are 0                                                      CAMs
surrogate   coefficients of a local linear surrogate: ``base_values`` its intercepts,  LIME
            ``extras["score"]`` its weighted R² on the neighbourhood
prototype   similarity evidence for prototypes: ``values`` the similarity of each      ProtoPNet
            prototype, ``base_values`` 0, ``extras`` the logits and locations
interaction ``values`` ``(n, M, M[, K])`` symmetric, shap's layout of interaction     Shapley
            values: order-1 values on the diagonal, half of each pair's value off it;  interaction
            ``extras["order_k"]`` every order ``k``; for an efficient index            indices
            (``extras["efficient"]``) all orders summed ``+ base_values == link(f)``
=========== ========================================================================== ===========

``to_shap()``, the additive plots (waterfall, beeswarm, force, decision) and
:func:`xaijax.metrics.local_accuracy_gap` refuse kinds where they mean nothing.

Shapes follow ``shap.Explanation``: for a batch of ``n`` instances, ``values`` is
``(n, *feature_shape)`` for a scalar model output and ``(n, *feature_shape, K)`` for ``K``
outputs; ``base_values`` ``(n,)`` or ``(n, K)``; one explained instance has no leading axis.
``output_names`` is a tuple exactly when there is an output axis, which is how one multi-output
explanation ``(M, K)`` is told apart from a scalar batch ``(n, M)``. Indexing follows shap too:
``exp[0]`` an instance, ``exp[:, 3]`` a feature, ``exp[:, :, 1]`` an output, each array along its
own axes.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np

__all__ = ["Explanation", "KINDS", "require_kind"]

KINDS = {
    "additive": "values summed over the feature axes plus base_values equal link(f(data))",
    "path": "values summed plus base_values equal f(data) minus extras['completeness_gap']",
    "map": "a relevance map over the input or its spatial grid; no additivity, base_values 0",
    "surrogate": "local linear surrogate coefficients; base_values are its intercepts",
    "prototype": "prototype similarities; base_values 0; logits and locations in extras",
    "interaction": "symmetric (M, M) pairwise matrix (order 1 on the diagonal, half of each "
    "pair's value off it); every order in extras['order_k']; efficient indices sum to link(f)",
}


def require_kind(exp: Explanation, allowed: Sequence[str], what: str) -> None:
    """Raise ``TypeError`` unless ``exp.kind`` is one of ``allowed`` (``what`` names the caller).

    Example:
        >>> import numpy as np
        >>> exp = Explanation(np.ones(2), np.zeros(()), np.ones(2), kind="map")
        >>> require_kind(exp, ("additive",), "waterfall")
        Traceback (most recent call last):
        ...
        TypeError: waterfall needs an Explanation of kind 'additive'; got kind 'map' (a relevance map over the input or its spatial grid; no additivity, base_values 0) from method ''
    """  # noqa: E501
    kinds = " or ".join(repr(k) for k in allowed)
    if not isinstance(exp, Explanation):
        raise TypeError(f"{what} needs an Explanation of kind {kinds}; got {type(exp).__name__}")
    if exp.kind not in allowed:
        raise TypeError(
            f"{what} needs an Explanation of kind {kinds}; got kind {exp.kind!r} "
            f"({KINDS.get(exp.kind, 'unknown kind')}) from method {exp.method!r}"
        )


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Explanation:
    """Attributions for one instance or a batch, with shap's shape conventions.

    ``extras`` holds method-specific arrays (Kernel SHAP's sample count, LIME's surrogate score,
    a CAM's raw maps); an extra whose leading axis is the instance axis is sliced with the rest.
    The arrays are pytree leaves and the names, method and kind static metadata, so an
    Explanation can be returned from a jitted function or stacked with ``jax.tree.map``.

    Attributes:
        values: the attributions, see the module docstring for shapes.
        base_values: ``(n,)`` / ``(n, K)`` (``()`` / ``(K,)`` for one instance).
        data: the explained inputs.
        feature_names: one name per feature (tabular), a single name once indexed down to one
            feature, or ``None``.
        output_names: a tuple of ``K`` names when there is an output axis, one name once
            indexed down to one output, ``None`` for a scalar model output.
        method: the explainer's name, e.g. ``"kernel_shap"``.
        kind: what the values are and which invariant they satisfy (:data:`KINDS`).
        extras: method-specific arrays and numbers.

    Example:
        >>> import numpy as np
        >>> exp = Explanation(values=np.ones((3, 2)), base_values=np.zeros(3),
        ...                   data=np.ones((3, 2)), feature_names=("a", "b"), method="demo")
        >>> exp[1:].values.shape, exp[:, "b"].values.shape
        ((2, 2), (3,))
        >>> float(exp[0].values.sum() + exp[0].base_values)
        2.0
        >>> [e.values.shape for e in exp]
        [(2,), (2,), (2,)]
    """

    values: Any
    base_values: Any
    data: Any
    feature_names: tuple[str, ...] | str | None = dataclasses.field(
        default=None, metadata=dict(static=True)
    )
    output_names: tuple[str, ...] | str | None = dataclasses.field(
        default=None, metadata=dict(static=True)
    )
    method: str = dataclasses.field(default="", metadata=dict(static=True))
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)
    kind: str = dataclasses.field(default="additive", metadata=dict(static=True))

    def __post_init__(self):
        # Tuples keep the dataclass hashable as pytree metadata; users may pass lists.
        for name in ("feature_names", "output_names"):
            names = getattr(self, name)
            if names is not None and not isinstance(names, (tuple, str)):
                object.__setattr__(self, name, tuple(str(s) for s in names))
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {tuple(KINDS)}; got {self.kind!r}")

    # -- shape bookkeeping -------------------------------------------------------------------
    @property
    def has_output_axis(self) -> bool:
        """Whether ``values`` ends in an output axis (``K`` outputs or explained labels)."""
        return isinstance(self.output_names, tuple)

    @property
    def is_batched(self) -> bool:
        """Whether the explanation has a leading instance axis."""
        return np.ndim(self.base_values) > (1 if self.has_output_axis else 0)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        """The shape of one instance's attributions for one output (``(M,)``, ``(H, W)``, ...)."""
        shape = np.shape(self.values)
        start = 1 if self.is_batched else 0
        stop = len(shape) - (1 if self.has_output_axis else 0)
        return tuple(shape[start:stop])

    def __len__(self) -> int:
        if not self.is_batched:
            raise TypeError("a single-instance Explanation has no length")
        return int(np.shape(self.base_values)[0])

    def __iter__(self) -> Iterator[Explanation]:
        """The instances of a batch, one single-instance Explanation each."""
        for i in range(len(self)):
            yield self[i]

    def __getitem__(self, index) -> Explanation:
        """Index as ``shap.Explanation`` does, each array along its own axes.

        The index runs over ``values``' axes: the instance axis (if batched), the feature axes,
        then the output axis (if any). ``base_values`` takes the instance and output parts,
        ``data`` the instance and feature parts, the names their own parts. Integers, slices,
        integer lists/arrays, boolean masks and names (a feature or output name) are accepted;
        each component indexes its axis independently. Out-of-range integers raise
        ``IndexError`` (JAX arrays would silently clamp them).
        """
        if not isinstance(index, tuple):
            index = (index,)
        if any(i is Ellipsis for i in index):
            raise IndexError("Explanation indexing does not support '...'; index every axis")
        roles = (
            (["instance"] if self.is_batched else [])
            + ["feature"] * len(self.feature_shape)
            + (["output"] if self.has_output_axis else [])
        )
        if len(index) > len(roles):
            raise IndexError(
                f"too many indices for an Explanation with axes {roles}: got {len(index)}"
            )
        if not roles:
            raise IndexError("this Explanation has no axes left to index")
        shape = np.shape(self.values)
        parts = []  # (axis of values, role, normalised component)
        for axis, (role, component) in enumerate(zip(roles, index, strict=False)):
            names = None
            if role == "feature":
                names = self.feature_names if len(self.feature_shape) == 1 else None
            elif role == "output":
                names = self.output_names
            parts.append((axis, role, _normalise(component, shape[axis], names, role)))

        values = _index_axes(self.values, [(a, c) for a, _, c in parts])
        base_parts, data_parts = [], []
        base_axis = 0
        # data follows the feature axes only where its shape starts with values' feature shape
        # (tabular rows, image maps); LIME's per-segment values leave the image whole.
        lead = 1 if self.is_batched else 0
        follows = tuple(np.shape(self.data)[lead : lead + len(self.feature_shape)]) == (
            self.feature_shape
        )
        data_axis = 0
        for _, role, c in parts:
            if role == "instance":
                base_parts.append((base_axis, c))
                data_parts.append((data_axis, c))
                base_axis += 1
                data_axis += 1
            elif role == "output":
                base_parts.append((base_axis, c))
            elif role == "feature" and follows:
                data_parts.append((data_axis, c))
                data_axis += 1
        base_values = _index_axes(self.base_values, base_parts)
        data = _index_axes(self.data, data_parts) if data_parts else self.data

        feature_names, output_names = self.feature_names, self.output_names
        extras = dict(self.extras)
        for _, role, c in parts:
            if role == "feature" and isinstance(feature_names, tuple):
                feature_names = _index_names(feature_names, c)
            elif role == "output" and isinstance(output_names, tuple):
                output_names = _index_names(output_names, c)
        n = len(self) if self.is_batched else None
        instance = next((c for _, role, c in parts if role == "instance"), None)
        for k, v in self.extras.items():
            if np.shape(v) == shape and np.ndim(v) > 0:
                extras[k] = _index_axes(v, [(a, c) for a, _, c in parts])
            elif instance is not None and np.ndim(v) >= 1 and np.shape(v)[0] == n:
                extras[k] = _index_axes(v, [(0, instance)])
        return dataclasses.replace(
            self,
            values=values,
            base_values=base_values,
            data=data,
            feature_names=feature_names,
            output_names=output_names,
            extras=extras,
        )

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write ``<path>.npz`` (arrays) and ``<path>.json`` (names, method, kind, scalar extras).

        ``path`` may end in ``.npz``/``.json``; the suffix is replaced by both.
        """
        stem = _stem(path)
        os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
        arrays = {
            "values": np.asarray(self.values),
            "base_values": np.asarray(self.base_values),
            "data": np.asarray(self.data),
        }
        json_extras = {}
        for k, v in self.extras.items():
            if isinstance(v, (str, bool, int, float)) or v is None:
                json_extras[k] = v
            else:
                arrays[f"extras/{k}"] = np.asarray(v)
        meta = {
            "feature_names": _names_to_json(self.feature_names),
            "output_names": _names_to_json(self.output_names),
            "method": self.method,
            "kind": self.kind,
            "extras": json_extras,
            "format": "xaijax.Explanation/1",
        }
        np.savez(stem + ".npz", **arrays)
        with open(stem + ".json", "w") as fh:
            json.dump(meta, fh, indent=2)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Explanation:
        """Read an Explanation written by :meth:`save`."""
        stem = _stem(path)
        with open(stem + ".json") as fh:
            meta = json.load(fh)
        with np.load(stem + ".npz", allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        extras = dict(meta.get("extras", {}))
        extras.update(
            {k[len("extras/") :]: v for k, v in arrays.items() if k.startswith("extras/")}
        )
        return cls(
            values=arrays["values"],
            base_values=arrays["base_values"],
            data=arrays["data"],
            feature_names=_names_from_json(meta.get("feature_names")),
            output_names=_names_from_json(meta.get("output_names")),
            method=meta.get("method", ""),
            kind=meta.get("kind", "additive"),
            extras=extras,
        )

    # -- interop -----------------------------------------------------------------------------
    def to_shap(self):
        """Return a ``shap.Explanation`` with the same arrays, so shap's plots work on our results.

        Only additive and path attributions (whose values add up to the model output) convert.
        ``extras["display_data"]`` (the rows in raw units), when shaped like ``data``, becomes
        shap's ``display_data``.

        Raises:
            TypeError: for maps, surrogate coefficients and prototype evidence.
            ImportError: if shap is not installed.
        """
        require_kind(self, ("additive", "path"), "to_shap()")
        try:
            import shap
        except ImportError as err:  # pragma: no cover - exercised only without shap
            raise ImportError("to_shap() needs the `shap` package: pip install shap") from err
        data = np.asarray(self.data)
        # The rows in the units people read (extras["display_data"], as the plots use it) go to
        # shap's own display_data, which its waterfall and force plots print.
        display = (self.extras or {}).get("display_data")
        if display is not None and np.shape(display) != data.shape:
            display = None
        return shap.Explanation(
            values=np.asarray(self.values),
            base_values=np.asarray(self.base_values),
            data=data,
            display_data=None if display is None else np.asarray(display),
            feature_names=_names_to_json(self.feature_names),
            output_names=_names_to_json(self.output_names),
        )


def _normalise(component, size: int, names, role: str):
    """One index component checked against its axis: an int, a slice or an int array."""
    if isinstance(component, str):
        if not isinstance(names, tuple) or component not in names:
            raise IndexError(f"{component!r} is not one of the {role} names {names}")
        return names.index(component)
    if isinstance(component, slice):
        return component
    positions = np.arange(size)
    if isinstance(component, (list, tuple)) and any(isinstance(c, str) for c in component):
        return [_normalise(c, size, names, role) for c in component]
    comp = np.asarray(component)
    if comp.dtype == bool:
        if comp.shape != (size,):
            raise IndexError(
                f"a boolean mask on the {role} axis must have shape ({size},); got {comp.shape}"
            )
        return positions[comp]
    if not np.issubdtype(comp.dtype, np.integer) or comp.ndim > 1:
        raise IndexError(
            f"Explanation indices must be ints, slices, names, int lists or boolean masks; "
            f"got {component!r} on the {role} axis"
        )
    try:
        picked = positions[comp]  # raises IndexError out of range, like NumPy
    except IndexError as err:
        raise IndexError(
            f"index {component} is out of range for the {role} axis of size {size}"
        ) from err
    return int(picked) if comp.ndim == 0 else picked


def _index_axes(a, parts):
    """``a`` indexed orthogonally by ``parts``, a list of ``(axis, component)``."""
    for axis, component in sorted(parts, key=lambda p: p[0], reverse=True):
        a = a[(slice(None),) * axis + (component,)]
    return a


def _index_names(names: tuple, component):
    if isinstance(component, int):
        return names[component]
    if isinstance(component, slice):
        return names[component]
    return tuple(names[int(i)] for i in np.asarray(component).reshape(-1))


def _stem(path) -> str:
    path = os.fspath(path)
    for suffix in (".npz", ".json"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def _names_to_json(names):
    if names is None or isinstance(names, str):
        return names
    return list(names)


def _names_from_json(names):
    if names is None or isinstance(names, str):
        return names
    return tuple(names)
