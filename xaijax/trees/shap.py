"""Path-dependent and interventional Tree SHAP, vectorised over all root-to-leaf paths.

For a path with unique features ``j``, ``o_j`` (does the row follow the path's constraints on
``j``) and ``z_j`` (fraction of training cover that does), the leaf value ``v`` contributes
``phi_i = v (o_i - z_i) * sum_S |S|!(d-|S|-1)!/d! prod_{j in S} o_j prod_{j not in S} z_j``.
The Shapley weight is the Beta integral ``int_0^1 t^|S| (1-t)^(d-1-|S|) dt``, so the sum is
``int_0^1 prod_{j != i} (o_j t + z_j (1 - t)) dt``: a polynomial of degree < depth, integrated
exactly by Gauss-Legendre quadrature (the idea of Linear TreeSHAP). No division, no recursion:
one fused array program over (paths, features, nodes).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from xaijax.core import contract
from xaijax.core.batching import check_mesh
from xaijax.core.contract import resolve_batch_size
from xaijax.core.explanation import Explanation
from xaijax.core.model import float_dtype
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets, resolve_targets
from xaijax.trees.convert import TreeEnsemble, TreePaths, tree_ensemble, tree_paths
from xaijax.trees.interactions import tree_shap_interactions
from xaijax.trees.kernels import (
    check_background,
    check_rows,
    exclusive_products,
    follows,
    quadrature,
)

__all__ = ["tree_shap"]


def _path_shap(o, z, paths: TreePaths, nodes, weights, M: int):
    """Shapley values ``(M, K)`` of the games ``v prod_{j in S} o_j prod_{j not in S} z_j``."""
    t = nodes[None, None, :]
    g = o[..., None] * t + z[..., None] * (1 - t)
    integral = jnp.einsum("lsq,q->ls", exclusive_products(g), weights)
    c = (o - z) * integral
    contrib = c[..., None] * paths.value[:, None, :]
    K = paths.value.shape[1]
    return jnp.zeros((M, K), o.dtype).at[paths.feature.ravel()].add(contrib.reshape(-1, K))


def _row_shap(x, background, paths: TreePaths, nodes, weights, strict: bool, M: int):
    o = follows(x, paths, strict)
    if background is None:
        # path-dependent: z is the fraction of training cover that follows the path
        return _path_shap(o, paths.cover_fraction, paths, nodes, weights, M)

    # interventional: with one reference row z is that row's own o; average over the rows
    def one(acc, b):
        return acc + _path_shap(o, follows(b, paths, strict), paths, nodes, weights, M), None

    total, _ = jax.lax.scan(one, jnp.zeros((M, paths.value.shape[1]), x.dtype), background)
    return total / background.shape[0]


_compiled = {}


def _shap_fn(strict: bool, M: int, batch: int):
    key = (strict, M, batch)
    if key not in _compiled:

        @jax.jit
        def run(X, background, paths, nodes, weights):
            return jax.lax.map(
                lambda x: _row_shap(x, background, paths, nodes, weights, strict, M),
                X,
                batch_size=batch,
            )

        _compiled[key] = run
    return _compiled[key]


@explainer(kind="additive", inputs="tabular", model_form="tree")
def tree_shap(
    model,
    X,
    *,
    background=None,
    interactions: bool = False,
    targets: Targets = None,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
) -> Explanation:
    """Exact path-dependent or interventional Tree SHAP values of a tree ensemble (raw margin).

    Args:
        model: a fitted sklearn tree/forest/boosting model, XGBoost or LightGBM model, or a
            :class:`~xaijax.trees.TreeEnsemble`.
        X: ``(n, M)`` rows, or one ``(M,)`` row; NaN follows each split's missing direction.
        background: ``(b, M)`` reference rows for interventional Tree SHAP (the values average
            the Shapley values of ``f(x_S, b_rest)`` over the rows), or ``None`` for
            path-dependent Tree SHAP (the training cover stands in for the background).
        interactions: return SHAP interaction values instead, ``(n, M, M[, K])`` (kind
            ``"interaction"``, as :func:`~xaijax.trees.tree_shap_interactions`): path-dependent,
            or interventional with ``background``; ``targets`` picks one output as here.
        targets: ``None`` (every output), an int or ``(n,)`` ints picking one output per row
            (a callable is refused: a score of the raw outputs is not a tree ensemble).
        batch_size: rows per compiled step; each row holds ``paths x depth x nodes`` values
            (default: rows for about ``2^25`` such values, e.g. 8 rows for 500 trees of
            depth 8).
        mesh: accepted and validated for the one signature of every explainer; no effect yet
            (one device computes every row).

    Returns:
        An additive :class:`Explanation`: ``values`` ``(n, M)`` (``(n, M, K)`` for several
        outputs), ``base_values`` the expected value, ``values.sum(1) + base_values`` equals
        the raw margin.

    Example:
        >>> import numpy as np
        >>> from sklearn.tree import DecisionTreeRegressor
        >>> X = np.random.default_rng(0).normal(size=(50, 3)); y = X[:, 0] + X[:, 1] * X[:, 2]
        >>> m = DecisionTreeRegressor(max_depth=3).fit(X, y)
        >>> exp = tree_shap(m, X[:4])
        >>> bool(np.allclose(exp.values.sum(1) + exp.base_values, m.predict(X[:4]), atol=1e-5))
        True

    References:
        Lundberg et al., "From local explanations to global understanding with explainable AI
        for trees", Nature Machine Intelligence (2020); Bifet et al., "Linear TreeShap",
        NeurIPS (2022).
    """
    check_mesh(mesh)
    if interactions:
        return tree_shap_interactions(
            model, X, background=background, targets=targets, batch_size=batch_size
        )
    ens = model if isinstance(model, TreeEnsemble) else tree_ensemble(model)
    arr, single = check_rows(X, ens.num_features)
    spec = resolve_targets(
        targets, len(arr), ens.num_outputs if ens.num_outputs > 1 else None, name="targets"
    )
    if spec.fn is not None:
        raise TypeError("targets: a callable is not supported by tree_shap; pass an int or ints")
    bg = None if background is None else check_background(background, ens.num_features)
    paths = tree_paths(ens)
    nodes, weights = quadrature(paths.feature.shape[1])
    if batch_size is None:  # one row holds (paths, features, nodes) values: ~2^25 per chunk
        L, S = paths.feature.shape
        batch = max(1, 2**25 // (L * S * len(nodes)))
    else:
        batch = resolve_batch_size(batch_size)
    fn = _shap_fn(ens.strict, ens.num_features, int(min(batch, max(1, len(arr)))))
    jpaths = jax.tree.map(jnp.asarray, paths)
    values = fn(
        jnp.asarray(arr), None if background is None else jnp.asarray(bg), jpaths, nodes, weights
    )
    if background is None:
        base = ens.offset + (paths.value * paths.cover_fraction.prod(1)[:, None]).sum(0)
    else:
        base = ens.predict(bg).mean(0)
    n = len(arr)
    base = np.broadcast_to(np.asarray(base, np.float64), (n, ens.num_outputs))
    values = np.asarray(values, np.float64)
    output_names = None
    if spec.indices is not None:
        idx = np.asarray(spec.indices)
        values, base = values[np.arange(n), :, idx], base[np.arange(n), idx]
    elif ens.num_outputs == 1:
        values, base = values[..., 0], base[:, 0]
    else:
        classes = getattr(model, "classes_", None)
        names = classes if classes is not None and len(classes) == ens.num_outputs else None
        output_names = tuple(str(c) for c in (range(ens.num_outputs) if names is None else names))
    feature_names = getattr(model, "feature_names_in_", None)
    dtype = float_dtype()
    return contract.pack(
        values.astype(dtype),
        base.astype(dtype),
        arr.astype(dtype),
        single=single,
        kind="additive",
        method="tree_shap",
        feature_names=None if feature_names is None else tuple(str(c) for c in feature_names),
        output_names=output_names,
        what="the tree ensemble",
    )
