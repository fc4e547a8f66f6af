"""Shapley values estimated from antithetic permutation samples."""

# jaxtyping shape strings such as "*n m" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import ArrayLike, Float, Key, UInt32

from xaijax.core import contract
from xaijax.core.batching import check_mesh, map_instances, over_instances
from xaijax.core.contract import check_int, instance_keys
from xaijax.core.explanation import Explanation
from xaijax.core.masking import Background, Masker, coalition_values
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets
from xaijax.shapley.coalitions import (
    apply_link,
    check_work,
    finish,
    group_args,
    on_elements,
    output_status,
    prepare,
    random_orders,
    ranks_of,
)

__all__ = ["permutation_shap"]


@explainer(kind="additive", inputs="tabular", reference="background", random=True)
def permutation_shap(
    f: Callable,
    X: Float[ArrayLike, "*n m"],
    background: Float[ArrayLike, "b m"] | Background | None = None,
    *,
    targets: Targets = None,
    key: Key[ArrayLike, "*n"] | UInt32[ArrayLike, "*n 2"],
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    num_permutations: int = 10,
    link: str = "identity",
    background_weights: Float[ArrayLike, " b"] | None = None,
    feature_names: Sequence[str] | None = None,
    groups: ArrayLike | None = None,
    masker: Masker | None = None,
) -> Explanation:
    """Shapley values from marginal contributions along random feature orders, forward and reverse.

    For each sampled order the features are switched on one by one (forward) and then switched off
    in the same order, which is the reverse order's forward pass: ``2M + 1`` coalitions per order.
    Each feature's attribution is its mean marginal contribution over the ``2 P`` passes. Every pass
    telescopes to ``v(all) - v(none)``, so local accuracy holds exactly; an order and its reverse
    split each pairwise interaction evenly, so the values are exact for models with at most
    pairwise interactions (e.g. ``a x_1 x_2 + b x_3``) whatever the number of orders.

    Args:
        f: the model, ``f(X: (n, M)) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX or Equinox module, or a NumPy callable.
        X: one instance ``(M,)`` or a batch ``(n, M)``.
        background: ``(B, M)`` rows or a :class:`Background`.
        targets: which output to explain: ``None`` (all outputs), an int, ``(n,)`` ints, or
            a callable on the model outputs (see :mod:`xaijax.core.targets`).
        key: a ``jax.random.key`` or raw ``PRNGKey`` (instance ``i`` uses
            ``jax.random.split(key, n)[i]``), or ``(n,)`` keys, one per instance; the same key
            gives the same values.
        batch_size: most model rows evaluated at once (per device); ``None`` picks a default for
            the backend and the row size.
        mesh: optional :class:`jax.sharding.Mesh` (e.g. :func:`~xaijax.instance_mesh`) to shard
            the instances over; the values equal the one-device call's.
        num_permutations: orders ``P >= 1`` per instance (``P (2M + 1)`` coalitions are scored
            and held per instance; a budget larger than 128 MiB, or than ``batch_size`` rows if
            that is more, is refused up front).
        link: ``"identity"`` or ``"logit"`` (attribute log-odds of a probability output;
            outputs outside ``(0, 1)``, including exactly 0 or 1, raise ``ValueError``).
        background_weights: optional ``(B,)`` weights.
        feature_names: optional names of the ``M`` features (or ``G`` groups).
        groups: optional group ids per input element (as :func:`exact_shapley`'s): the groups
            are the players; values per group, ``extras["element_values"]`` per element.
        masker: what hidden features become, instead of ``background`` (:mod:`xaijax.maskers`).

    Returns:
        An :class:`Explanation` of kind ``"additive"`` like :func:`exact_shapley`'s; extra
        ``num_evaluations`` (coalitions scored per instance).

    Raises:
        TypeError: a non-integer ``num_permutations``, a bad ``key``, ``targets`` or
            ``batch_size``.
        ValueError: bad shapes or NaN inputs, a budget too large to hold, or a model that
            returns NaN or inf on any coalition (naming the instances), or outputs outside
            ``(0, 1)`` under ``link="logit"`` (naming ``link``).

    References:
        Castro, Gómez & Tejada, "Polynomial calculation of the Shapley value based on sampling",
        Computers & Operations Research 2009. Mitchell et al., "Sampling Permutations for Shapley
        Value Estimation", JMLR 2022 (antithetic sampling).

    Example:
        >>> import jax, numpy as np
        >>> f = lambda X: X[:, 0] * X[:, 1] + X[:, 2]
        >>> exp = permutation_shap(f, np.array([1.0, 2.0, 3.0]), np.zeros((1, 3)),
        ...                        key=jax.random.key(0), num_permutations=2)
        >>> [round(float(v), 4) for v in exp.values]
        [1.0, 1.0, 3.0]
    """
    num_permutations = check_int("num_permutations", num_permutations, minimum=1)
    problem = prepare(
        f,
        X,
        background,
        background_weights=background_weights,
        feature_names=feature_names,
        link=link,
        targets=targets,
        batch_size=batch_size,
        masker=masker,
        groups=groups,
    )
    n, M = problem.X.shape[0], problem.num_players
    keys = instance_keys(key, n)
    mesh = check_mesh(mesh)
    itemsize = problem.X.dtype.itemsize
    outputs = max(1, problem.model.num_outputs or 1)
    num_coalitions = num_permutations * (2 * M + 1)
    check_work(
        "num_permutations",
        num_permutations,
        num_coalitions * outputs * itemsize + num_permutations * M * 4,
        problem.batch_size,
        int(np.prod(problem.X.shape[1:])) * itemsize,
        f"{num_coalitions} coalition values and {num_permutations} orders of {M} features",
    )
    values, base, finite = contract.call(
        _permutation,
        problem.model,
        problem.params,
        problem.X,
        problem.fill,
        keys,
        *group_args(problem),
        M=M,
        num_permutations=num_permutations,
        link=link,
        batch_size=problem.batch_size,
        mesh=mesh,
    )
    extras = {"num_evaluations": num_coalitions}
    return finish(problem, values, base, method="permutation_shap", extras=extras, finite=finite)


@functools.partial(
    jax.jit, static_argnames=("model", "M", "num_permutations", "link", "batch_size", "mesh")
)
def _permutation(model, params, X, fill, keys, instance_ids, shared_ids, *, mesh, **options):
    # options: M, num_permutations, link, batch_size (static, passed through).
    def local(instances, shared):
        return _permutation_instances(model, *shared, *instances, **options)

    return over_instances(local, (X, keys, instance_ids), (params, fill, shared_ids), mesh=mesh)


def _permutation_instances(
    model,
    params,
    fill,
    shared_ids,
    X,
    keys,
    instance_ids,
    *,
    M,
    num_permutations,
    link,
    batch_size,
):
    P = num_permutations

    def one(args):
        x, key, ids = args
        ids = shared_ids if ids is None else ids
        # rank[p, i] = position of player i in order p (a uniformly random order).
        rank = ranks_of(random_orders(key, P, M))

        def masks(idx):
            p, t = idx // (2 * M + 1), idx % (2 * M + 1)
            r = rank[p]  # (c, M)
            # steps 0..M switch players on in order; steps M..2M switch them off in order.
            forward = r < t[:, None]
            backward = r >= (t - M)[:, None]
            return jnp.where((t <= M)[:, None], forward, backward)

        rows, weights = fill(x)
        raw = coalition_values(
            model,
            params,
            x,
            rows,
            weights,
            on_elements(masks, ids, x.shape),
            P * (2 * M + 1),
            batch_size,
            fill=fill,
        )
        v = apply_link(link, raw).reshape((P, 2 * M + 1) + raw.shape[1:])
        gains = jnp.diff(v, axis=1)  # gains[:, t] = v[t + 1] - v[t]
        # Player i enters at forward step rank_i and leaves at backward step M + rank_i.
        enter = jnp.take_along_axis(gains, _expand(rank, gains.ndim), axis=1)
        leave = jnp.take_along_axis(gains, _expand(rank + M, gains.ndim), axis=1)
        phi = (enter - leave).sum(axis=0) / (2 * P)
        return phi, v[0, 0], output_status(link, raw)

    return map_instances(one, (X, keys, instance_ids), P * (2 * M + 1) * fill.num_rows, batch_size)


def _expand(index, ndim):
    return index.reshape(index.shape + (1,) * (ndim - index.ndim))
