"""Exact Shapley values by enumerating all ``2^M`` coalitions."""

# jaxtyping shape strings such as "*n m" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import ArrayLike, Float

from xaijax.core import contract
from xaijax.core.batching import check_mesh, map_instances, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.masking import Background, Masker, coalition_values
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets
from xaijax.shapley.coalitions import (
    apply_link,
    finish,
    group_args,
    on_elements,
    output_status,
    prepare,
)

__all__ = ["exact_shapley", "shapley_weights", "MAX_EXACT_FEATURES"]

# 2^20 coalitions times a 50-row background is ~5e7 model rows per instance: seconds for a small
# MLP on a CPU. Beyond that, sampling estimators are the right tool.
MAX_EXACT_FEATURES = 20


def shapley_weights(M: int) -> np.ndarray:
    """``w[s] = s! (M - s - 1)! / M!``: the weight of a coalition of size ``s`` not holding ``i``.

    Example:
        >>> [round(float(w), 4) for w in shapley_weights(3)]
        [0.3333, 0.1667, 0.3333]
    """
    return np.array(
        [math.exp(math.lgamma(s + 1) + math.lgamma(M - s) - math.lgamma(M + 1)) for s in range(M)]
    )


@explainer(kind="additive", inputs="tabular", reference="background")
def exact_shapley(
    f: Callable,
    X: Float[ArrayLike, "*n m"],
    background: Float[ArrayLike, "b m"] | Background | None = None,
    *,
    targets: Targets = None,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    link: str = "identity",
    background_weights: Float[ArrayLike, " b"] | None = None,
    feature_names: Sequence[str] | None = None,
    groups: ArrayLike | None = None,
    masker: Masker | None = None,
) -> Explanation:
    """Exact interventional Shapley values of ``f`` at ``X``, over all ``2^M`` coalitions.

    ``phi_i = sum_{S not containing i} |S|! (M-|S|-1)! / M! * (v(S + i) - v(S))`` with
    ``v(S) = E_b[f(x_S, b_rest)]`` over the (weighted) background. Each difference is taken between
    the two coalitions that differ only in ``i``, so float32 loses nothing to cancellation, and a
    feature that equals every background row gets exactly 0.

    Args:
        f: the model, ``f(X: (n, M)) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX or Equinox module, or a NumPy callable such as
            ``clf.predict_proba`` (run on the host).
        X: one instance ``(M,)`` or a batch ``(n, M)``.
        background: ``(B, M)`` rows that stand in for missing features, or a :class:`Background`
            (e.g. from :func:`xaijax.kmeans`).
        targets: which output to explain: ``None`` (all outputs), an int, ``(n,)`` ints, or
            a callable on the model outputs (see :mod:`xaijax.core.targets`).
        batch_size: most model rows evaluated at once (per device); ``None`` picks a default for
            the backend and the row size.
        mesh: optional :class:`jax.sharding.Mesh` (e.g. :func:`~xaijax.instance_mesh`) to shard
            the instances over; the values equal the one-device call's.
        link: ``"identity"`` or ``"logit"`` (attribute log-odds of a probability output;
            outputs outside ``(0, 1)``, including exactly 0 or 1, raise ``ValueError``).
        background_weights: optional ``(B,)`` non-negative weights of the background rows.
        feature_names: optional names of the ``M`` features (or ``G`` groups).
        groups: optional group ids, one per input element (:func:`~xaijax.core.masking.as_groups`:
            ``(M,)`` column groups, ``(H, W)`` superpixels or patches, ``(L,)`` token spans,
            or one map per instance): the ``G <= 20`` groups are the players. Needed for
            inputs that are not flat rows, e.g. images ``(n, H, W, C)``.
        masker: what hidden features become, instead of ``background``: a
            :mod:`xaijax.maskers` masker (``constant``, ``blur``, ``token``, ``background``).

    Returns:
        An :class:`Explanation` of kind ``"additive"`` with ``values (n, M)`` or ``(n, M, K)`` and
        ``base_values`` ``(n,)`` or ``(n, K)`` (``link(E_b f(b))``);
        ``values.sum(1) + base_values == link(f(X))``. With ``groups``, values are per group
        ``(n, G[, K])``, ``extras["groups"]`` the map and ``extras["element_values"]`` each
        element's group value ``(n, *E[, K])``.

    Raises:
        ValueError: on bad shapes, NaN inputs, a model that returns NaN or inf on any coalition
            (naming the instances), or ``M > 20`` (use :func:`kernel_shap` or
            :func:`permutation_shap` there), or outputs outside ``(0, 1)`` under
            ``link="logit"`` (naming ``link``).

    References:
        Shapley, "A Value for n-Person Games", 1953. Lundberg & Lee, "A Unified Approach to
        Interpreting Model Predictions", NeurIPS 2017.

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> f = lambda X: X[:, 0] * X[:, 1] + X[:, 2]
        >>> exp = exact_shapley(f, np.array([1.0, 2.0, 3.0]), np.zeros((1, 3)))
        >>> [round(float(v), 4) for v in exp.values]
        [1.0, 1.0, 3.0]
    """
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
        max_groups=MAX_EXACT_FEATURES,
        max_groups_why="exact_shapley enumerates 2^G coalitions and supports at most",
    )
    M = problem.num_players
    if M > MAX_EXACT_FEATURES:
        raise ValueError(
            f"X has {M} features; exact_shapley enumerates 2^M coalitions and supports at most "
            f"{MAX_EXACT_FEATURES}. Use kernel_shap or permutation_shap for this many features, "
            "or groups= to make fewer players."
        )
    mesh = check_mesh(mesh)
    instance_ids, shared_ids = group_args(problem)
    values, base, finite = contract.call(
        _exact,
        problem.model,
        problem.params,
        problem.X,
        problem.fill,
        instance_ids,
        shared_ids,
        M=M,
        link=link,
        batch_size=problem.batch_size,
        mesh=mesh,
    )
    return finish(problem, values, base, method="exact_shapley", finite=finite)


@functools.partial(jax.jit, static_argnames=("model", "M", "link", "batch_size", "mesh"))
def _exact(model, params, X, fill, instance_ids, shared_ids, *, M, link, batch_size, mesh):
    def local(instances, shared):
        return _exact_instances(model, *shared, *instances, M, link, batch_size)

    return over_instances(local, (X, instance_ids), (params, fill, shared_ids), mesh=mesh)


def _exact_instances(model, params, fill, shared_ids, X, instance_ids, M, link, batch_size):
    num = 2**M
    # Bit (M - 1 - j) of a coalition's index says whether player j is in it, so the values
    # reshaped to (2,)*M have player j on axis j.
    shifts = jnp.arange(M - 1, -1, -1, dtype=jnp.int32)

    def masks(idx):
        return ((idx[:, None] >> shifts[None, :]) & 1).astype(bool)

    bits = np.indices((2,) * M).reshape(M, -1)
    sizes = bits.sum(axis=0).reshape((2,) * M)
    w = shapley_weights(M)

    def one(args):
        x, ids = args
        ids = shared_ids if ids is None else ids
        rows, weights = fill(x)
        element_masks = on_elements(masks, ids, x.shape)
        raw = coalition_values(
            model, params, x, rows, weights, element_masks, num, batch_size, fill=fill
        )
        v = apply_link(link, raw)
        out_shape = v.shape[1:]
        grid = v.reshape((2,) * M + out_shape)
        phi = []
        for i in range(M):
            gain = jnp.take(grid, 1, axis=i) - jnp.take(grid, 0, axis=i)
            size_w = jnp.asarray(w[np.take(sizes, 0, axis=i)], v.dtype)
            phi.append(jnp.tensordot(size_w, gain, axes=M - 1, precision="highest"))
        return jnp.stack(phi), v[0], output_status(link, raw)

    return map_instances(one, (X, instance_ids), num * fill.num_rows, batch_size)
