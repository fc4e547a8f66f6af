"""SHAP interaction values of tree ensembles, vectorised over paths and pairs.

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

Interventionally (a background), one reference row ``r`` makes each path the same product
game with ``z_j`` = 1 if ``r`` follows the path at ``j``, else 0, so the formula holds with that
``z``; the values are averaged over the reference rows and sum to ``f(x) - mean_b f(b)``.
"""

# jaxtyping shape strings such as "n M" are not Python expressions:

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core import contract
from xaijax.core.contract import resolve_batch_size
from xaijax.core.explanation import Explanation
from xaijax.core.targets import Targets, resolve_targets
from xaijax.trees.convert import TreeEnsemble, TreePaths, tree_ensemble, tree_paths
from xaijax.trees.kernels import (
    check_background,
    check_rows,
    exclusive_products,
    follows,
    quadrature,
)

__all__ = ["tree_shap_interactions"]


def _path_slots(o, z, nodes, weights):
    """Interaction values ``(L, a, b)`` of each path's product game, per pair of path slots."""
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
    return off + jnp.eye(S, dtype=o.dtype)[None] * (phi - off.sum(2))[:, :, None]


def _beta_table(S: int) -> np.ndarray:
    """``B[p, q] = int_0^1 t^p (1 - t)^q dt = p! q! / (p + q + 1)!`` for ``p, q <= S``."""
    f = [math.factorial(k) for k in range(2 * S + 2)]
    return np.array(
        [[f[p] * f[q] / f[p + q + 1] for q in range(S + 1)] for p in range(S + 1)], np.float32
    )


def _binary_path_slots(o, z, beta):
    """:func:`_path_slots` for ``o, z`` in {0, 1} (one reference row), in closed form.

    Each factor ``o_k t + z_k (1 - t)`` is 1, ``t``, ``1 - t`` or 0, so the integral is the Beta
    integral ``B[p, q]`` of the counts of the ``t`` and ``1 - t`` factors, and a path with a 0
    factor (neither row follows it at some feature) contributes nothing: no quadrature, no
    products, one table look-up per pair.
    """
    S = o.shape[1]
    up, down = o * (1 - z), (1 - o) * z  # factors t and 1 - t
    alive = jnp.all(o + z > 0, axis=1)[:, None]
    p, q = up.sum(1, keepdims=True), down.sum(1, keepdims=True)  # (L, 1)
    d = up - down
    phi = d * beta[(p - up).astype(jnp.int32), (q - down).astype(jnp.int32)]  # (L, S)
    pp = (p[:, :, None] - up[:, :, None] - up[:, None, :]).astype(jnp.int32)
    qq = (q[:, :, None] - down[:, :, None] - down[:, None, :]).astype(jnp.int32)
    eye = jnp.eye(S, dtype=bool)[None]
    # off the diagonal d_a d_b != 0 only where a and b are t or 1 - t factors: pp, qq >= 0
    pair = beta[jnp.clip(pp, 0, S), jnp.clip(qq, 0, S)]
    off = 0.5 * d[:, :, None] * d[:, None, :] * jnp.where(eye, 0.0, pair)
    slot = off + eye * (phi - off.sum(2))[:, :, None]
    return jnp.where(alive[:, :, None], slot, 0.0)


def _row_interactions(x, background, paths: TreePaths, nodes, weights, strict: bool, M: int):
    o = follows(x, paths, strict)  # (L, S)
    if background is None:
        slot = _path_slots(o, paths.cover_fraction, nodes, weights)
    else:
        # interventional: with one reference row z is that row's own o (0 or 1). The slots map
        # to the same features for every reference row, so the per-slot values are averaged
        # first and scattered once: memory stays (L, S, S) per row, not (b, L, S, S).
        L, S = o.shape
        beta = jnp.asarray(_beta_table(S))

        def one(acc, b):
            return acc + _binary_path_slots(o, follows(b, paths, strict), beta), None

        slot, _ = jax.lax.scan(one, jnp.zeros((L, S, S), x.dtype), background)
        slot = slot / background.shape[0]
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
        def run(X, background, paths, nodes, weights):
            def one(x):
                return _row_interactions(x, background, paths, nodes, weights, strict, M)

            return jax.lax.map(one, X, batch_size=batch)

        _compiled[key] = run
    return _compiled[key]


def tree_shap_interactions(
    model,
    X,
    *,
    background=None,
    targets: Targets = None,
    batch_size: int | None = None,
) -> Explanation:
    """SHAP interaction values of a fitted tree ensemble, path-dependent or interventional.

    Without ``background`` equal to ``shap.TreeExplainer(model).shap_interaction_values(X)``:
    ``values`` ``(n, M, M)`` (``(n, M, M, K)`` for ``K`` outputs), symmetric, half of each
    pair's interaction off the diagonal and the main effect on it; summed over both feature
    axes plus ``base_values`` (the expected value over the training cover) it is the raw
    margin. This is the 2-SII layout of :func:`xaijax.shapley_interactions`
    (``extras["order_1"]``, ``["order_2"]``). With ``background`` the same layout for the
    interventional game ``v(S) = mean_b f(x_S, b_rest)`` (which shap refuses): each reference
    row makes every path the same product game with ``z`` that row's own path indicators, and
    the values are averaged over the rows; ``base_values`` is then ``mean_b f(b)``.

    Args:
        model: a fitted sklearn tree/forest/boosting model, XGBoost or LightGBM model, or a
            :class:`~xaijax.trees.TreeEnsemble`.
        X: ``(n, M)`` rows, or one ``(M,)`` row; NaN follows each split's missing direction.
        background: ``(b, M)`` reference rows (interventional), or ``None`` (path-dependent).
        targets: ``None`` (every output), an int or ``(n,)`` ints picking one output per row,
            giving ``(n, M, M)`` (a callable is refused, as in :func:`~xaijax.tree_shap`).
        batch_size: rows per compiled step; memory per row grows with ``L S^2`` for ``L``
            leaves of at most ``S`` unique features (default: rows for about ``2^25`` values);
            the background rows are a loop inside each row, so they add no memory.

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
        >>> inter = tree_shap_interactions(m, X[:2], background=X[10:20])
        >>> gap = m.predict(X[:2]) - m.predict(X[10:20]).mean()
        >>> bool(np.allclose(inter.values.sum((1, 2)), gap, atol=1e-5))
        True

    References:
        Lundberg et al., "From local explanations to global understanding with explainable AI
        for trees", Nature Machine Intelligence (2020); Fujimoto, Kojadinovic & Marichal,
        "Axiomatic characterizations of probabilistic and cardinal-probabilistic interaction
        indices", Games and Economic Behavior (2006).
    """
    ens = model if isinstance(model, TreeEnsemble) else tree_ensemble(model)
    arr, single = check_rows(X, ens.num_features)
    n, K = len(arr), ens.num_outputs
    spec = resolve_targets(targets, n, K if K > 1 else None, name="targets")
    if spec.fn is not None:
        raise TypeError(
            "targets: a callable is not supported by tree_shap_interactions; pass an int or ints"
        )
    bg = None if background is None else check_background(background, ens.num_features)
    paths = tree_paths(ens)
    nodes, weights = quadrature(paths.feature.shape[1])
    if batch_size is None:  # one row holds (paths, features, features, nodes) values
        L, S = paths.feature.shape
        batch = max(1, 2**25 // (L * S * S * len(nodes)))
    else:
        batch = resolve_batch_size(batch_size)
    fn = _interactions_fn(ens.strict, ens.num_features, int(min(batch, max(1, n))))
    values = fn(
        jnp.asarray(arr),
        None if bg is None else jnp.asarray(bg),
        jax.tree.map(jnp.asarray, paths),
        nodes,
        weights,
    )
    values = np.asarray(values, np.float32)
    if bg is None:
        base = ens.offset + (paths.value * paths.cover_fraction.prod(1)[:, None]).sum(0)
    else:
        base = ens.predict(bg).mean(0)
    base = np.broadcast_to(np.asarray(base, np.float32), (n, K))
    output_names = None
    if spec.indices is not None:
        rows = np.arange(n)
        values, base = values[rows, :, :, np.asarray(spec.indices)], base[rows, spec.indices]
    elif K == 1:
        values, base = values[..., 0], base[:, 0]
    else:
        classes = getattr(model, "classes_", None)
        names = classes if classes is not None and len(classes) == K else None
        output_names = tuple(str(c) for c in (range(K) if names is None else names))
    M = ens.num_features
    diag = np.arange(M)
    order_1 = values[:, diag, diag]  # (n, M[, K])
    order_2 = 2 * values
    order_2[:, diag, diag] = 0.0
    extras = dict(
        order_0=base, order_1=order_1, order_2=order_2, index="k-SII", max_order=2, efficient=True
    )
    feature_names = getattr(model, "feature_names_in_", None)
    return contract.pack(
        values,
        base,
        arr,
        single=single,
        kind="interaction",
        method="tree_shap_interactions",
        feature_names=None if feature_names is None else tuple(str(c) for c in feature_names),
        output_names=output_names,
        extras=extras,
        what="the tree ensemble",
    )
