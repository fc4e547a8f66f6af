"""Which model output is explained: one ``targets`` argument for every explainer and metric.

``targets`` is one of

* ``None``: the method's documented default (all outputs for Shapley values and LIME, the
  predicted class for gradients and CAMs);
* an int ``k``: output ``k`` for every instance (``0`` is also accepted for a scalar output);
* an ``(n,)`` int array: output ``targets[i]`` for instance ``i``;
* a callable ``fn(outputs (n, K)) -> (n,)``: the explained score is ``fn`` of the model's
  outputs (a difference of logits, a margin, a sum over classes); it must be a JAX function.

:func:`resolve_targets` checks it on the host, before anything compiles; :func:`target_scores`
picks the scores inside a traced function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Targets", "TargetSpec", "resolve_targets", "target_scores", "select_outputs"]

Targets = None | int | Any | Callable  # the documented type of every ``targets`` argument


class TargetSpec(NamedTuple):
    """A checked ``targets``: ``indices (n,)`` int32 or ``None``, and a callable or ``None``."""

    indices: Any
    fn: Callable | None

    @property
    def is_default(self) -> bool:
        return self.indices is None and self.fn is None


def resolve_targets(targets, n: int, num_outputs: int | None, *, name: str = "targets"):
    """Check ``targets`` for ``n`` instances of a model with ``num_outputs`` outputs.

    Args:
        targets: see the module docstring.
        n: number of explained instances.
        num_outputs: ``K`` for a model with ``(n, K)`` outputs, ``None`` for a scalar output.
        name: the argument's name in error messages (``"targets"``, or a deprecated alias).

    Returns:
        A :class:`TargetSpec`.

    Raises:
        TypeError: for a float, string or other non-integer ``targets``.
        ValueError: for targets of the wrong shape or out of range.

    Example:
        >>> resolve_targets(1, 3, 4).indices.tolist()
        [1, 1, 1]
        >>> resolve_targets(None, 3, 4).is_default
        True
    """
    if targets is None:
        return TargetSpec(None, None)
    if callable(targets) and not isinstance(targets, (np.ndarray, jax.Array)):
        return TargetSpec(None, targets)
    if isinstance(targets, bool):
        raise TypeError(f"{name} must be None, an int, ({n},) ints or a callable; got a bool")
    t = np.asarray(targets)
    if not np.issubdtype(t.dtype, np.integer):
        raise TypeError(
            f"{name} must be None, an int, ({n},) ints or a callable on the model outputs; "
            f"got {targets!r} (dtype {t.dtype})"
        )
    if t.ndim == 0:
        t = np.full((n,), int(t))
    if t.shape != (n,):
        raise ValueError(
            f"{name} must be an int or have shape ({n},), one per instance; got {t.shape}"
        )
    K = 1 if num_outputs is None else int(num_outputs)
    if n and (t.min() < 0 or t.max() >= K):
        what = "a scalar output (only 0)" if num_outputs is None else f"{K} outputs"
        raise ValueError(
            f"{name} must lie in [0, {K}) for a model with {what}; got values in "
            f"[{t.min()}, {t.max()}]"
        )
    return TargetSpec(jnp.asarray(t, jnp.int32), None)


def check_target_fn(fn: Callable, output_spec, *, name: str = "targets") -> None:
    """Check on abstract values that ``fn(outputs)`` returns one score per instance."""
    try:
        out = jax.eval_shape(fn, output_spec)
    except Exception as err:
        raise ValueError(
            f"{name} is a callable but failed on model outputs of shape {output_spec.shape}: "
            f"{type(err).__name__}: {err} (it must be a JAX function of the outputs)"
        ) from err
    n = output_spec.shape[0]
    if not hasattr(out, "shape") or tuple(out.shape) not in ((n,), (n, 1)):
        raise ValueError(
            f"{name} must return one score per instance, shape ({n},), for outputs of shape "
            f"{output_spec.shape}; got {getattr(out, 'shape', type(out).__name__)}"
        )


def target_scores(outputs, indices, fn):
    """``(scores (n,), targets (n,))``: the explained score per instance and its output index.

    With a callable the index is reported as -1; with ``indices=None`` it is the argmax of a
    vector output (gradients and CAMs explain the predicted class) and 0 for a scalar output.
    """
    n = outputs.shape[0]
    if fn is not None:
        scores = jnp.asarray(fn(outputs))
        return scores.reshape(n).astype(outputs.dtype), jnp.full((n,), -1, jnp.int32)
    if outputs.ndim == 1:
        return outputs, jnp.zeros((n,), jnp.int32)
    if indices is None:
        indices = jnp.argmax(jax.lax.stop_gradient(outputs), axis=1).astype(jnp.int32)
    scores = jnp.take_along_axis(outputs, indices[:, None], axis=1)[:, 0]
    return scores, indices


def select_outputs(values, indices):
    """Pick output ``indices[i]`` from the last axis of ``values[i]`` (``(n, ..., K)``)."""
    values = jnp.asarray(values)
    idx = jnp.reshape(indices, (-1,) + (1,) * (values.ndim - 1))
    return jnp.take_along_axis(values, idx, axis=-1)[..., 0]
