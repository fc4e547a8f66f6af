"""The result type every explainer returns: a frozen dataclass registered as a JAX pytree."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

__all__ = ["Explanation"]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Explanation:
    """Attributions for one instance or a batch, with shap's shape conventions.

    For a batch of ``n`` instances with ``M`` features, ``values`` has shape ``(n, M)`` for a scalar
    model output and ``(n, M, K)`` for ``K`` outputs; ``base_values`` is ``(n,)`` or ``(n, K)``;
    ``data`` is the explained input ``(n, M)``. A single explained instance has no leading axis.
    ``output_names`` is ``None`` exactly when the model output is a scalar, which is how a single
    multi-output explanation ``(M, K)`` is told apart from a scalar batch ``(n, M)``.

    ``extras`` holds method-specific arrays (e.g. Kernel SHAP's sample count, LIME's surrogate
    score); an extra whose leading axis is the instance axis is sliced along with the rest.

    The arrays are pytree leaves and the names are static metadata, so an Explanation can be
    returned from a jitted function or stacked with ``jax.tree.map``.

    Example:
        >>> import numpy as np
        >>> exp = Explanation(values=np.ones((3, 2)), base_values=np.zeros(3),
        ...                   data=np.ones((3, 2)), feature_names=("a", "b"), method="demo")
        >>> exp[1:].values.shape
        (2, 2)
        >>> float(exp[0].values.sum() + exp[0].base_values)
        2.0
    """

    values: Any
    base_values: Any
    data: Any
    feature_names: tuple[str, ...] | None = dataclasses.field(
        default=None, metadata=dict(static=True)
    )
    output_names: tuple[str, ...] | None = dataclasses.field(
        default=None, metadata=dict(static=True)
    )
    method: str = dataclasses.field(default="", metadata=dict(static=True))
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        # Tuples keep the dataclass hashable as pytree metadata; users may pass lists.
        for name in ("feature_names", "output_names"):
            names = getattr(self, name)
            if names is not None and not isinstance(names, tuple):
                object.__setattr__(self, name, tuple(str(s) for s in names))

    # -- shape bookkeeping -------------------------------------------------------------------
    @property
    def is_batched(self) -> bool:
        """Whether the explanation has a leading instance axis."""
        per_instance_ndim = 0 if self.output_names is None else 1
        return np.ndim(self.base_values) > per_instance_ndim

    def __len__(self) -> int:
        if not self.is_batched:
            raise TypeError("a single-instance Explanation has no length")
        return int(np.shape(self.base_values)[0])

    def __getitem__(self, index) -> Explanation:
        """Slice every per-instance field together: ``exp[0]``, ``exp[:10]``, ``exp[mask]``."""
        if not self.is_batched:
            raise IndexError("a single-instance Explanation cannot be indexed by instance")
        n = len(self)

        def take(a):
            return a[index] if np.ndim(a) >= 1 and np.shape(a)[0] == n else a

        return dataclasses.replace(
            self,
            values=self.values[index],
            base_values=self.base_values[index],
            data=self.data[index],
            extras={k: take(v) for k, v in self.extras.items()},
        )

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write ``<path>.npz`` (arrays) and ``<path>.json`` (names, method, scalar extras).

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
            "feature_names": _list_or_none(self.feature_names),
            "output_names": _list_or_none(self.output_names),
            "method": self.method,
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
        with np.load(stem + ".npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
        extras = dict(meta.get("extras", {}))
        extras.update({k[len("extras/") :]: v for k, v in arrays.items() if k.startswith("extras/")})
        names = meta.get("feature_names")
        outputs = meta.get("output_names")
        return cls(
            values=arrays["values"],
            base_values=arrays["base_values"],
            data=arrays["data"],
            feature_names=None if names is None else tuple(names),
            output_names=None if outputs is None else tuple(outputs),
            method=meta.get("method", ""),
            extras=extras,
        )

    # -- interop -----------------------------------------------------------------------------
    def to_shap(self):
        """Return a ``shap.Explanation`` with the same arrays, so shap's plots work on our results.

        Raises:
            ImportError: if shap is not installed.
        """
        try:
            import shap
        except ImportError as err:  # pragma: no cover - exercised only without shap
            raise ImportError("to_shap() needs the `shap` package: pip install shap") from err
        return shap.Explanation(
            values=np.asarray(self.values),
            base_values=np.asarray(self.base_values),
            data=np.asarray(self.data),
            feature_names=_list_or_none(self.feature_names),
            output_names=_list_or_none(self.output_names),
        )


def _stem(path) -> str:
    path = os.fspath(path)
    for suffix in (".npz", ".json"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def _list_or_none(names: Sequence[str] | None):
    return None if names is None else list(names)
