"""Local gradient maps: saliency and gradient x input, one gradient per instance."""

# jaxtyping shape strings such as "m ..." are not Python expressions:
# ruff: noqa: F722, UP037

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, Float

from xaijax.core import contract
from xaijax.core.batching import balanced_chunk, map_row_chunks, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets
from xaijax.gradients.score_gradients import (
    finish,
    finite_rows,
    prepare,
    score_gradients,
)

__all__ = ["saliency", "gradient_x_input"]


@functools.partial(
    jax.jit, static_argnames=("model", "target_fn", "times_input", "batch_size", "mesh")
)
def _local(model, params, X, indices, *, target_fn, times_input, batch_size, mesh):
    def local(sharded, params):
        X, indices = sharded

        def chunk(rows):
            t = None if indices is None else indices[rows]
            scores, grads, outputs, t = score_gradients(model, params, X[rows], t, target_fn)
            ok = finite_rows(outputs), finite_rows(grads)
            return (grads * X[rows] if times_input else jnp.abs(grads)), scores, outputs, t, ok

        n = X.shape[0]
        return map_row_chunks(chunk, n, balanced_chunk(n, batch_size))

    values, scores, outputs, t, ok = over_instances(local, (X, indices), params, mesh=mesh)
    extras = {"targets": t, "scores": scores, "logits": outputs}
    return values, jnp.zeros(X.shape[:1], X.dtype), extras, *ok


def _explain(method, f, X, targets, batch_size, mesh, batched):
    problem = prepare(
        f, X, targets, batch_size=batch_size, mesh=mesh, batched=batched, stacklevel=4
    )
    values, base, extras, outputs_ok, grads_ok = contract.call(
        _local,
        problem.model,
        problem.params,
        problem.X,
        problem.targets.indices,
        target_fn=problem.targets.fn,
        times_input=method == "gradient_x_input",
        batch_size=problem.batch_size,
        mesh=problem.mesh,
    )
    return finish(problem, values, base, extras, outputs_ok, grads_ok, method=method, kind="map")


@explainer(kind="map", needs_jax=True)
def saliency(
    f,
    X: Float[ArrayLike, "..."],
    targets: Targets = None,
    *,
    batch_size: int | None = None,
    mesh=None,
    batched=contract.MISSING,
) -> Explanation:
    """Saliency: ``|d score / d x|``, the absolute input gradient of the target score.

    Args:
        f: the model ``X (n, *input_shape) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX or Equinox module (it is differentiated, so
            not a host NumPy model).
        X: one instance or a batch ``(n, *input_shape)``; which one is decided by the shapes
            the model accepts (a batch when both work).
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints,
            or a callable ``fn(outputs) -> (n,)``.
        batch_size: most rows passed to the model at once; ``None`` picks a default for the
            backend and the row size.
        mesh: optional :class:`jax.sharding.Mesh` to shard the instances over; the values equal
            the one-device call's.
        batched: deprecated; ``X``'s shape decides.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values`` shaped like ``X``,
        ``base_values`` zeros and extras ``targets (n,)`` (-1 for a callable), ``scores (n,)``
        and ``logits`` (the model outputs).

    Raises:
        ValueError: for bad shapes or targets, or when the model's outputs or gradients are NaN
            or inf on these inputs.

    References:
        Simonyan et al. 2014, Deep Inside Convolutional Networks: Visualising Image
        Classification Models and Saliency Maps, ICLR workshop.

    Example:
        >>> import jax.numpy as jnp
        >>> exp = saliency(lambda X: X ** 2 @ jnp.ones((3, 2)), jnp.array([[1.0, -2.0, 3.0]]), 0)
        >>> exp.values.tolist()
        [[2.0, 4.0, 6.0]]
    """
    return _explain("saliency", f, X, targets, batch_size, mesh, batched)


@explainer(kind="map", needs_jax=True)
def gradient_x_input(
    f,
    X: Float[ArrayLike, "..."],
    targets: Targets = None,
    *,
    batch_size: int | None = None,
    mesh=None,
    batched=contract.MISSING,
) -> Explanation:
    """Gradient x input: ``x * d score / d x`` (exact for linear models without intercept).

    Args:
        f: the model ``X (n, *input_shape) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX or Equinox module (not a host NumPy model).
        X: one instance or a batch ``(n, *input_shape)``, decided by the model's input shape.
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints,
            or a callable ``fn(outputs) -> (n,)``.
        batch_size: most rows passed to the model at once; ``None`` picks a default.
        mesh: optional :class:`jax.sharding.Mesh` to shard the instances over.
        batched: deprecated; ``X``'s shape decides.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values`` shaped like ``X``,
        ``base_values`` zeros and extras ``targets``, ``scores``, ``logits``.

    Raises:
        ValueError: for bad shapes or targets, or non-finite outputs or gradients.

    References:
        Shrikumar et al. 2016, Not Just a Black Box: Learning Important Features Through
        Propagating Activation Differences, arXiv:1605.01713.

    Example:
        >>> import jax.numpy as jnp
        >>> exp = gradient_x_input(lambda X: X @ jnp.array([1.0, 2.0]), jnp.array([[3.0, 4.0]]))
        >>> exp.values.tolist()
        [[3.0, 8.0]]
    """
    return _explain("gradient_x_input", f, X, targets, batch_size, mesh, batched)
