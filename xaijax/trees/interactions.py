"""Path-dependent SHAP interaction values of tree ensembles, vectorised over paths and pairs.

On one root-to-leaf path with unique features, leaf value ``v``, ``o_j`` (the row follows the
path at feature ``j``) and ``z_j`` (the share of training cover that does), the value function
is the product game ``v prod_{j in S} o_j prod_{j not in S} z_j``. Its discrete second
derivative in ``i, j`` is ``v (o_i - z_i)(o_j - z_j) prod_{k in S} o_k prod_{k not in S} z_k``
over the other features, and the Shapley interaction weight ``s!(d-s-2)!/(d-1)!`` is the Beta
integral ``int_0^1 t^s (1-t)^(d-2-s) dt``, so the pair's SHAP interaction value is

    Phi_ij = v/2 (o_i - z_i)(o_j - z_j) int_0^1 prod_{k != i, j} (o_k t + z_k (1 - t)) dt,

a polynomial of degree ``< d`` integrated exactly by Gauss-Legendre quadrature (as Linear
TreeSHAP does for the Shapley values). The diagonal is shap's main effect
``Phi_ii = phi_i - sum_{j != i} Phi_ij``, so every entry sums to ``f(x) - E f``.
"""

# jaxtyping shape strings such as "n M" are not Python expressions:

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.contract import resolve_batch_size
from xaijax.core.explanation import Explanation
from xaijax.trees.convert import TreeEnsemble, TreePaths, tree_ensemble, tree_paths
from xaijax.trees.kernels import check_rows, exclusive_products, follows, quadrature

__all__ = ["tree_shap_interactions"]


def _row_interactions(x, paths: TreePaths, nodes, weights, strict: bool, M: int):
    o = follows(x, paths, strict)  # (L, S)
    z = paths.cover_fraction
    S = o.shape[1]
    t = nodes[None, None, :]
    g = o[..., None] * t + z[..., None] * (1 - t)  # (L, S, Q)
    # row a of ga is g with slot a set to 1: its exclusive products leave out a and b
    eye = jnp.eye(S, dtype=bool)[None, :, :, None]
    ga = jnp.where(eye, 1.0, g[:, None, :, :])  # (L, a, k, Q)
    pair = jnp.einsum("labq,q->lab", exclusive_products(ga), weights)  # (L, a, b)
    d = o - z
    phi = d * jnp.diagonal(pair, axis1=1, axis2=2)  # Shapley values per slot
    off = 0.5 * d[:, :, None] * d[:, None, :] * jnp.where(eye[..., 0], 0.0, pair)
    slot = off + jnp.eye(S, dtype=x.dtype)[None] * (phi - off.sum(2))[:, :, None]  # (L, a, b)
    K = paths.value.shape[1]
    contrib = slot[..., None] * paths.value[:, None, None, :]
    rows = jnp.broadcast_to(paths.feature[:, :, None], slot.shape).ravel()
    cols = jnp.broadcast_to(paths.feature[:, None, :], slot.shape).ravel()
    return jnp.zeros((M, M, K), x.dtype).at[rows, cols].add(contrib.reshape(-1, K))


_compiled = {}


def _interactions_fn(strict: bool, M: int, batch: int):
    key = (strict, M, batch)
    if key not in _compiled:

        @jax.jit
        def run(X, paths, nodes, weights):
            def one(x):
                return _row_interactions(x, paths, nodes, weights, strict, M)

            return jax.lax.map(one, X, batch_size=batch)

        _compiled[key] = run
    return _compiled[key]


def tree_shap_interactions(model, X, *, batch_size: int | None = None) -> Explanation:
    """Path-dependent SHAP interaction values of a fitted tree ensemble, in its raw margin.

    Equal to ``shap.TreeExplainer(model).shap_interaction_values(X)``: ``values`` ``(n, M, M)``
    (``(n, M, M, K)`` for ``K`` outputs), symmetric, half of each pair's interaction off the
    diagonal and the main effect on it; summed over both feature axes plus ``base_values``
    (the expected value over the training cover) it is the raw margin. This is the 2-SII
    layout of :func:`xaijax.shapley_interactions` (``extras["order_1"]``, ``["order_2"]``).

    Args:
        model: a fitted sklearn tree/forest/boosting model, XGBoost or LightGBM model, or a
            :class:`~xaijax.trees.TreeEnsemble`.
        X: ``(n, M)`` rows, or one ``(M,)`` row; NaN follows each split's missing direction.
        batch_size: rows per compiled step; memory per row grows with ``L S^2`` for ``L``
            leaves of at most ``S`` unique features (default: rows for about ``2^25`` values).

    Returns:
        An :class:`Explanation` of kind ``"interaction"``.

    Example:
        >>> import numpy as np
        >>> from sklearn.tree import DecisionTreeRegressor
        >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = X[:, 0] * X[:, 1]
        >>> m = DecisionTreeRegressor(max_depth=3).fit(X, y)
        >>> exp = tree_shap_interactions(m, X[:2])
        >>> exp.values.shape, bool(np.allclose(exp.values.sum((1, 2)) + exp.base_values,
        ...     m.predict(X[:2]), atol=1e-5))
        ((2, 3, 3), True)

    References:
        Lundberg et al., "From local explanations to global understanding with explainable AI
        for trees", Nature Machine Intelligence (2020); Fujimoto, Kojadinovic & Marichal,
        "Axiomatic characterizations of probabilistic and cardinal-probabilistic interaction
        indices", Games and Economic Behavior (2006).
    """
    ens = model if isinstance(model, TreeEnsemble) else tree_ensemble(model)
    arr, single = check_rows(X, ens.num_features)
    paths = tree_paths(ens)
    nodes, weights = quadrature(paths.feature.shape[1])
    if batch_size is None:  # one row holds (paths, features, features, nodes) values
        L, S = paths.feature.shape
        batch = max(1, 2**25 // (L * S * S * len(nodes)))
    else:
        batch = resolve_batch_size(batch_size)
    fn = _interactions_fn(ens.strict, ens.num_features, int(min(batch, max(1, len(arr)))))
    values = np.asarray(fn(jnp.asarray(arr), jax.tree.map(jnp.asarray, paths), nodes, weights))
    base = ens.offset + (paths.value * paths.cover_fraction.prod(1)[:, None]).sum(0)
    base = np.broadcast_to(base, (len(arr), ens.num_outputs)).astype(np.float32)
    M = ens.num_features
    diag = np.arange(M)
    order_1 = values[:, diag, diag]  # (n, M, K)
    order_2 = 2 * values
    order_2[:, diag, diag] = 0.0
    if ens.num_outputs == 1:
        values, base, order_1, order_2 = (
            values[..., 0],
            base[:, 0],
            order_1[..., 0],
            order_2[..., 0],
        )
    extras = dict(
        order_0=base, order_1=order_1, order_2=order_2, index="k-SII", max_order=2, efficient=True
    )
    if single:
        values, base, arr = values[0], base[0], arr[0]
        extras.update(order_0=base, order_1=order_1[0], order_2=order_2[0])
    return Explanation(
        values=values,
        base_values=base,
        data=arr,
        method="tree_shap_interactions",
        kind="interaction",
        extras=extras,
    )
