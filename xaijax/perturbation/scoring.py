"""The mechanism the perturbation methods share: the target score on perturbed copies of x.

Each method builds, for every explained instance ``x``, ``R`` perturbed copies (a window or a
group set to a baseline, a random soft mask multiplied in) and reads the model's score for the
explained output on each, in chunks of at most ``batch_size`` model rows:

* :func:`prepare` validates the inputs on the host, before anything compiles, through
  :mod:`xaijax.core.contract` and adapts the model (JAX or host models alike: nothing is
  differentiated);
* :func:`score_drops` scores the copies: ``f(x) - f(perturbed_r)`` for the target of each
  instance (occlusion and feature ablation), one instance at a time or many vectorised
  (:func:`~xaijax.core.batching.map_instances`), sharded over ``mesh``;
* :func:`explain_drops` (called through :func:`run`) is the one compiled program of occlusion and
  feature ablation: a static, hashable *plan* says how to build copy ``r`` of ``x``
  (``plan.perturb``) and how the drops become a per-element map (``plan.aggregate``). RISE
  accumulates its mask-weighted sum in its own loop instead, so that no mask is stored;
* :func:`finish` reports non-finite model outputs (flags computed inside the compiled call over
  every evaluated row) and packs the :class:`~xaijax.core.explanation.Explanation`.

The explained score is the output ``targets`` (``None``: the predicted class at ``x``, fixed for
every copy of it, as the gradient methods do) or ``fn(outputs) -> (n,)`` for a callable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from xaijax.core import contract
from xaijax.core.batching import (
    balanced_chunk,
    check_mesh,
    map_instances,
    map_row_chunks,
    over_instances,
)
from xaijax.core.explanation import Explanation
from xaijax.core.masking import Masker
from xaijax.core.model import Model
from xaijax.core.targets import TargetSpec, check_target_fn, resolve_targets, target_scores

__all__ = [
    "Problem",
    "prepare",
    "as_baseline",
    "instance_score",
    "row_scores",
    "score_drops",
    "explain_drops",
    "run",
    "finish",
]


class Problem(NamedTuple):
    """Validated inputs of a perturbation explainer (host side, before compilation)."""

    model: Model
    params: Any
    X: np.ndarray  # (n, *input_shape), float
    single: bool  # X was one instance
    targets: TargetSpec
    batch_size: int
    mesh: Mesh | None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.X.shape[1:])

    @property
    def indices(self):
        """``(n,)`` explained outputs (zeros when chosen inside: predicted class, callable)."""
        if self.targets.indices is not None:
            return self.targets.indices
        return jnp.zeros((self.X.shape[0],), jnp.int32)


def prepare(f, X, targets, *, batch_size, mesh) -> Problem:
    """Check ``X``, ``targets``, ``batch_size`` and ``mesh``; adapt ``f`` (any model).

    ``X`` is one instance or a batch by :func:`~xaijax.core.contract.split_instances_by_model`.
    """
    X = contract.as_float_array("X", X)
    X, single, model, params = contract.split_instances_by_model(f, X)
    spec = resolve_targets(targets, X.shape[0], model.num_outputs)
    if spec.fn is not None:
        check_target_fn(spec.fn, jax.ShapeDtypeStruct((2,) + model.output_shape, X.dtype))
    batch_size = contract.resolve_batch_size(batch_size, X.shape[1:], X.dtype)
    return Problem(model, params, X, single, spec, batch_size, check_mesh(mesh))


def finish(problem: Problem, values, extras, finite, *, method: str) -> Explanation:
    """Raise for non-finite model outputs, then pack a ``"map"`` Explanation of ``values``."""
    n = problem.X.shape[0]
    return contract.pack(
        values,
        jnp.zeros((n,), problem.X.dtype),
        problem.X,
        single=problem.single,
        kind="map",
        method=method,
        extras=extras,
        finite=finite,
    )


# -- inside the compiled call --------------------------------------------------------------------
def _finite(y) -> jax.Array:
    return jnp.all(jnp.isfinite(y))


def instance_score(model, params, x, index, fn, fixed: bool):
    """``(score, target, finite)`` of one instance ``x``: the explained output at ``x``.

    ``fixed``: ``index`` is the user's target; otherwise the predicted class (or ``fn``) decides.
    """
    y = model.apply(params, x[None])
    scores, t = target_scores(y, index[None] if fixed else None, fn)
    return scores[0], t[0], _finite(y)


def row_scores(model, params, rows, target, fn):
    """``(scores (c,), finite (c,))``: the target score of each perturbed row."""
    y = model.apply(params, rows)
    c = rows.shape[0]
    scores, _ = target_scores(y, None if fn is not None else jnp.full((c,), target), fn)
    return scores, jnp.isfinite(y).reshape(c, -1).all(axis=1)


def score_drops(
    model,
    params,
    X,
    fill,
    indices,
    aux,
    *,
    perturb: Callable,
    num_rows: int,
    fn,
    fixed: bool,
    batch_size: int,
    mesh,
):
    """``f(x) - f(perturbed_r)`` for the target of every instance and ``r < num_rows``.

    Args:
        X, fill: ``(n, *input_shape)`` instances and their baselines.
        indices: ``(n,)`` explained outputs (used when ``fixed``).
        aux: a pytree of per-instance arrays (leading axis ``n``) ``perturb`` needs.
        perturb: ``perturb(x, fill, aux, rows (c,)) -> (c, *input_shape)`` perturbed copies.
        num_rows: ``R``, the copies per instance.

    Returns:
        ``(drops (n, R), scores (n,), targets (n,), finite (n,))``.
    """
    chunk = balanced_chunk(num_rows, batch_size)

    def local(sharded, params):
        def per_instance(args):
            x, b, index, a = args
            s0, t, ok0 = instance_score(model, params, x, index, fn, fixed)

            def rows(r):
                return row_scores(model, params, perturb(x, b, a, r), t, fn)

            s, ok = map_row_chunks(rows, num_rows, chunk)
            return s0 - s, s0, t, ok0 & ok.all()

        return map_instances(per_instance, sharded, num_rows + 1, batch_size)

    return over_instances(local, (X, fill, indices, aux), params, mesh=mesh)


@functools.partial(
    jax.jit, static_argnames=("model", "plan", "target_fn", "fixed", "batch_size", "mesh")
)
def explain_drops(
    model, params, X, fill, indices, aux, *, plan, target_fn, fixed, batch_size, mesh
):
    """One compiled call: :func:`score_drops` for ``plan``'s copies, then ``plan.aggregate``.

    ``plan`` is a hashable description of the copies (static): ``plan.num_rows``,
    ``plan.perturb(x, fill, aux, rows)`` and ``plan.aggregate(drops (n, R), aux) -> (values,
    extras)``.
    """
    drops, scores, targets, finite = score_drops(
        model,
        params,
        X,
        fill,
        indices,
        aux,
        perturb=plan.perturb,
        num_rows=plan.num_rows,
        fn=target_fn,
        fixed=fixed,
        batch_size=batch_size,
        mesh=mesh,
    )
    values, extras = plan.aggregate(drops, aux)
    return values, {**extras, "targets": targets, "scores": scores}, finite


def run(problem: Problem, fill, aux, plan):
    """:func:`explain_drops` on ``problem`` through :func:`~xaijax.core.contract.call`."""
    return contract.call(
        explain_drops,
        problem.model,
        problem.params,
        problem.X,
        fill,
        problem.indices,
        aux,
        plan=plan,
        target_fn=problem.targets.fn,
        fixed=problem.targets.indices is not None,
        batch_size=problem.batch_size,
        mesh=problem.mesh,
    )


def as_baseline(baseline, X: np.ndarray) -> np.ndarray:
    """``baseline`` (a number or an array broadcastable to ``X``) as ``(n, *input_shape)``.

    A masker (:mod:`xaijax.maskers`) is refused: occlusion and feature ablation set elements to
    a fixed baseline; mask-dependent fills (inpainting) are for the Shapley explainers.

    Raises:
        TypeError: a non-numeric baseline.
        ValueError: NaN/inf, a shape that does not broadcast to ``X``'s, or a masker.
    """
    if isinstance(baseline, Masker):
        raise ValueError(
            "baseline must be a number or an array; maskers (e.g. xaijax.maskers.inpaint) are "
            "taken by the Shapley explainers (exact_shapley, kernel_shap, permutation_shap, "
            "partition_shap), not by occlusion or feature_ablation"
        )
    b = contract.as_float_array("baseline", baseline, dtype=X.dtype)
    try:
        return np.ascontiguousarray(np.broadcast_to(b, X.shape))
    except ValueError:
        raise ValueError(
            f"baseline must be a number or an array broadcastable to one input "
            f"{X.shape[1:]} or to the batch {X.shape}; got shape {b.shape}"
        ) from None
