"""The mechanism every gradient attribution shares: the input gradient of the target score.

Each method is a sum over points ``z(i, s)`` (the input itself, noisy copies, points on a path) of
a contribution computed from ``grad S_i(z)``, the gradient of instance ``i``'s target score:

* :func:`prepare` validates the inputs on the host (before anything compiles) through
  :mod:`xaijax.core.contract` and adapts the model;
* :func:`gradient_sum` evaluates the gradients in chunks of at most ``batch_size`` model rows: a
  chunk holds ``p`` points of ``m`` instances (``p * m <= batch_size``; many points of all
  instances when they fit, else one point of ``batch_size`` instances), one ``jax.vjp`` each, so
  memory is bounded whatever the number of instances and points. The model treats rows
  independently, so the gradient of the summed scores holds each row's own gradient;
* :func:`finish` reports non-finite model outputs or gradients (flags computed inside the
  compiled call over every evaluated row) and packs the
  :class:`~xaijax.core.explanation.Explanation`.

The explained score is the output ``targets`` (``None``: the predicted class at ``X``, fixed for
every point derived from it) or ``fn(outputs) -> (n,)`` for a callable.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from xaijax.core import contract
from xaijax.core.batching import balanced_chunk, check_mesh, map_row_chunks
from xaijax.core.explanation import Explanation
from xaijax.core.model import Model, as_model
from xaijax.core.targets import TargetSpec, check_target_fn, resolve_targets, target_scores

__all__ = [
    "Problem",
    "prepare",
    "finish",
    "score_gradients",
    "gradient_sum",
    "outputs_at",
    "finite_rows",
]


class Problem(NamedTuple):
    """Validated inputs of a gradient explainer (host side, before compilation)."""

    model: Model
    params: Any
    X: np.ndarray  # (n, *input_shape), float
    single: bool  # X was one instance
    targets: TargetSpec
    batch_size: int
    mesh: Mesh | None


def prepare(
    f, X, targets, *, batch_size, mesh, batched=contract.MISSING, stacklevel: int = 3
) -> Problem:
    """Check ``X``, ``targets``, ``batch_size`` and ``mesh``; adapt ``f`` (a JAX model).

    ``X`` is one instance or a batch by :func:`~xaijax.core.contract.split_instances_by_model`;
    the deprecated ``batched`` overrides that rule for one release.
    """
    X = contract.as_float_array("X", X)
    if batched is contract.MISSING:
        X, single, model, params = contract.split_instances_by_model(f, X)
    else:
        warnings.warn(
            "batched= is deprecated and will be removed in the next release: X is one instance "
            "or a batch by the model's input shape; pass X[None] for one instance",
            DeprecationWarning,
            stacklevel=stacklevel,  # the user's call
        )
        if not isinstance(batched, bool | np.bool_):
            raise TypeError(f"batched must be True or False; got {batched!r}")
        single = not bool(batched)
        X = X[None] if single else X
        if X.ndim < 2 or X.shape[0] == 0:
            raise ValueError(f"X must be (n, *input_shape) with n >= 1; got shape {X.shape}")
        model, params = as_model(f, X)
    if model.kind == "host":
        raise TypeError(
            "f must be a differentiable JAX function, (apply_fn, params) pair or NNX module; "
            "gradient methods cannot differentiate a host (NumPy) model"
        )
    spec = resolve_targets(targets, X.shape[0], model.num_outputs)
    if spec.fn is not None:
        check_target_fn(spec.fn, jax.ShapeDtypeStruct((2,) + model.output_shape, X.dtype))
    batch_size = contract.resolve_batch_size(batch_size, X.shape[1:], X.dtype)
    return Problem(model, params, X, single, spec, batch_size, check_mesh(mesh))


def finish(
    problem: Problem,
    values,
    base_values,
    extras,
    outputs_ok,
    grads_ok,
    *,
    method,
    kind,
    gradient_of: str = "f",
) -> Explanation:
    """Raise for non-finite outputs or gradients (naming which: the gradient of
    ``gradient_of``), then pack the Explanation."""
    outputs_ok, grads_ok = np.asarray(outputs_ok), np.asarray(grads_ok)
    what = "f"
    if outputs_ok.all() and not grads_ok.all():
        what = f"the gradient of {gradient_of} (its outputs are finite)"
    return contract.pack(
        values,
        base_values,
        problem.X,
        single=problem.single,
        kind=kind,
        method=method,
        extras=extras,
        finite=outputs_ok & grads_ok,
        what=what,
    )


# -- inside the compiled call --------------------------------------------------------------------
def finite_rows(a) -> jax.Array:
    """``(n,)``: whether every entry of row ``i`` of ``a`` is finite."""
    return jnp.isfinite(a).reshape(a.shape[0], -1).all(axis=1)


def score_gradients(model, params, rows, indices, fn):
    """``(scores (b,), grads like rows, outputs (b, ...), targets (b,))`` for one chunk of rows.

    ``indices=None`` with ``fn=None`` explains each row's own predicted class.
    """

    def scored(x):
        outputs = model.apply(params, x)
        scores, t = target_scores(outputs, indices, fn)
        return scores, (outputs, t)

    scores, vjp, (outputs, t) = jax.vjp(scored, rows, has_aux=True)
    (grads,) = vjp(jnp.ones_like(scores))
    return scores, grads, outputs, t


def outputs_at(model, params, X, batch_size):
    """The model's outputs on ``X`` in balanced chunks of at most ``batch_size`` rows."""
    n = X.shape[0]
    return map_row_chunks(
        lambda rows: model.apply(params, X[rows]), n, balanced_chunk(n, batch_size)
    )


def gradient_sum(
    model,
    params,
    point: Callable,
    contribution: Callable,
    indices,
    fn,
    *,
    n: int,
    num_points: int,
    batch_size: int,
):
    """``sum_s contribution(grad S_i(z), aux)`` over ``num_points`` points per instance.

    Args:
        point: ``point(i, s) -> (z, aux)`` for scalar instance and point indices: the point
            ``z`` (one input row) and anything ``contribution`` needs.
        contribution: ``contribution(grad, aux, i, s)`` -> an array shaped like one input row.
        indices: ``(n,)`` explained outputs, fixed for every point (or ``None`` for a scalar
            output or a callable ``fn``).
        n, num_points, batch_size: instances, points per instance, most model rows per call.

    Returns:
        ``(total (n, *row), outputs_ok (n,), grads_ok (n,))``: the sums, and whether every
        score and every gradient of the instance's points was finite.
    """
    m = balanced_chunk(n, batch_size) if batch_size < n else n
    p = balanced_chunk(num_points, max(1, batch_size // n)) if batch_size >= n else 1
    steps = math.ceil(num_points / p)

    def over_points(i):  # i: (m,) instance indices
        ii = jnp.broadcast_to(i[None, :], (p, m))
        t = None if indices is None else indices[ii].reshape(p * m)

        def step(carry, k):
            total, out_ok, grad_ok = carry
            s = k * p + jnp.arange(p)
            valid = s < num_points
            ss = jnp.broadcast_to(jnp.minimum(s, num_points - 1)[:, None], (p, m))
            z, aux = jax.vmap(jax.vmap(point))(ii, ss)
            rows = z.reshape((p * m,) + z.shape[2:])
            scores, grads, _, _ = score_gradients(model, params, rows, t, fn)
            grads = grads.reshape(z.shape)
            c = jax.vmap(jax.vmap(contribution))(grads, aux, ii, ss)
            keep = valid.reshape((p,) + (1,) * (c.ndim - 1))
            total = total + jnp.where(keep, c, jnp.zeros((), c.dtype)).sum(axis=0)
            s_ok = jnp.isfinite(scores).reshape(p, m) | ~valid[:, None]
            g_ok = jax.vmap(finite_rows)(grads) | ~valid[:, None]
            return (total, out_ok & s_ok.all(axis=0), grad_ok & g_ok.all(axis=0)), None

        idx = jax.ShapeDtypeStruct((m,), jnp.int32)
        z0, aux0 = jax.eval_shape(jax.vmap(point), idx, idx)
        c0 = jax.eval_shape(jax.vmap(contribution), z0, aux0, idx, idx)
        init = (
            jnp.zeros(c0.shape, c0.dtype),
            jnp.ones((m,), bool),
            jnp.ones((m,), bool),
        )
        if steps == 1:
            return step(init, 0)[0]
        return jax.lax.scan(step, init, jnp.arange(steps))[0]

    return map_row_chunks(over_points, n, m)
