"""Path-dependent Tree SHAP as array programs: every leaf's path is a product game.

For a leaf with value ``v`` and unique path features ``j = 1..d``, the path-dependent value
function (Lundberg et al. 2020) is ``v * prod_{j in S} o_j * prod_{j not in S} z_j``: ``o_j``
is 1 when ``x_j`` lies in the path's interval of feature ``j``, ``z_j`` the share of the
training cover that follows the path at ``j``'s splits. The Shapley value of feature ``i`` in
that product game is

    phi_i = v (o_i - z_i) sum_k c_k k! (d - k - 1)! / d!,

``c_k`` the coefficient of ``t^k`` in ``prod_{j != i} (z_j + o_j t)``. The whole product is one
``D``-step recurrence; dividing out feature ``i``'s factor is a synthetic division (GPUTreeShap's
and Linear TreeSHAP's view of the algorithm): ``O(D^2)`` per leaf and instance, vectorised over
instances and leaves, chunked by ``batch_size`` instances. A tree's Shapley values are the sum
over its leaves; an ensemble's the sum over its trees.
"""

# jaxtyping shape strings such as "n M" are not Python expressions:

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import ArrayLike, Float

from xaijax.core import contract
from xaijax.core.batching import check_mesh, map_row_chunks
from xaijax.core.contract import as_float_array, check_int
from xaijax.core.explanation import Explanation
from xaijax.core.model import float_dtype
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets, resolve_targets
from xaijax.trees.ensemble import TreePaths, tree_paths

__all__ = ["tree_shap"]


def _weights(D: int) -> np.ndarray:
    """``w[d, k] = k! (d - k - 1)! / d!`` for ``d = 0..D``, ``k = 0..D-1`` (0 where ``k >= d``)."""
    w = np.zeros((D + 1, D))
    for d in range(1, D + 1):
        for k in range(d):
            w[d, k] = math.factorial(k) * math.factorial(d - k - 1) / math.factorial(d)
    return w


def _one_hot(x, paths_arrays, strict: bool):
    feature, lower, upper, nan_ok = paths_arrays
    xf = x[feature]  # (L, D)
    inside = (xf >= lower) & (xf < upper) if strict else (xf > lower) & (xf <= upper)
    return jnp.where(jnp.isnan(xf), nan_ok, inside)


@functools.partial(jax.jit, static_argnames=("strict", "num_features", "batch_size"))
def _tree_shap(X, feature, lower, upper, nan_ok, share, valid, value, weights, *, strict,
               num_features, batch_size):  # fmt: skip
    L, D = feature.shape
    d = valid.sum(1)  # (L,) unique features on each path
    w = weights[d]  # (L, D)
    z = jnp.where(valid, share, 1.0)

    def one(x):
        o = jnp.where(valid, _one_hot(x, (feature, lower, upper, nan_ok), strict), 0.0).astype(
            z.dtype
        )
        # P(t) = prod_j (z_j + o_j t): coefficients (L, D + 1), one factor per path slot
        P = jnp.zeros((L, D + 1), z.dtype).at[:, 0].set(1.0)

        def extend(P, j):
            shifted = jnp.concatenate([jnp.zeros((L, 1), P.dtype), P[:, :-1]], axis=1)
            return P * z[:, j, None] + shifted * o[:, j, None], None

        P, _ = jax.lax.scan(extend, P, jnp.arange(D))

        def unwind(i):
            # Q(t) = P(t) / (z_i + o_i t): from the top when o_i = 1, else P / z_i
            zi, oi = z[:, i], o[:, i]

            def step(q_next, k):  # k = D .. 1: q_{k-1} = p_k - z_i q_k
                q = P[:, k] - zi * q_next
                return q, q

            _, qs = jax.lax.scan(step, jnp.zeros((L,), P.dtype), jnp.arange(D, 0, -1))
            q_top = qs[::-1].T  # (L, D): q_0 .. q_{D-1}
            q_plain = P[:, :D] / jnp.where(zi > 0, zi, 1.0)[:, None]
            Q = jnp.where((oi > 0)[:, None], q_top, q_plain)
            return (oi - zi) * jnp.sum(Q * w, axis=1)  # (L,)

        s = jax.vmap(unwind, out_axes=1)(jnp.arange(D))  # (L, D)
        s = jnp.where(valid, s, 0.0)
        contrib = s[:, :, None] * value[:, None, :]  # (L, D, K)
        phi = jnp.zeros((num_features, value.shape[1]), z.dtype).at[feature].add(contrib)
        total = (jnp.prod(jnp.where(valid, o, 1.0), axis=1)[:, None] * value).sum(0)
        return phi, total

    def chunk(rows):
        return jax.vmap(one)(X[rows])

    return map_row_chunks(chunk, X.shape[0], batch_size)


def _expected_value(paths: TreePaths) -> np.ndarray:
    """``sum_leaves v prod_j z_j``: the path-dependent expectation of the ensemble's leaves."""
    z = np.where(paths.valid, paths.cover_share, 1.0).prod(1)
    return (z[:, None] * paths.value).sum(0)


def _leaf_sum_at_zero(paths: TreePaths) -> np.ndarray:
    """The leaves' sum for the all-zeros input, on the host."""
    if paths.strict:
        inside = (paths.lower <= 0) & (0 < paths.upper)
    else:
        inside = (paths.lower < 0) & (0 <= paths.upper)
    reach = np.where(paths.valid, inside, True).all(1)
    return (reach[:, None] * paths.value).sum(0)


def _raw_offset(model, how, paths: TreePaths) -> np.ndarray:
    """What the model adds to its leaves' sum (the initial prediction, base score...), read
    from one prediction of the all-zeros input."""
    if how is None:
        return np.zeros(paths.value.shape[1])
    X = np.zeros((1, paths.num_features))
    if how == "lightgbm":
        import lightgbm

        booster = model.booster_ if isinstance(model, lightgbm.LGBMModel) else model
        raw = booster.predict(X[:1], raw_score=True)
    elif how == "xgboost":
        import xgboost

        booster = model.get_booster() if isinstance(model, xgboost.XGBModel) else model
        raw = booster.predict(xgboost.DMatrix(X[:1]), output_margin=True)
    else:
        raw = getattr(model, how)(X[:1])
    raw = np.asarray(raw, np.float64).reshape(1, -1)
    return (raw - _leaf_sum_at_zero(paths)[None]).reshape(-1)


@explainer(kind="additive", inputs="tabular", model_form="tree")
def tree_shap(
    model,
    X: Float[ArrayLike, "*n M"],
    *,
    background=None,
    interactions: bool = False,
    targets: Targets = None,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
) -> Explanation:
    """Path-dependent Tree SHAP of a fitted tree ensemble, all instances in one compiled call.

    Equal to ``shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")`` in the
    model's raw output (regression value, class probability of a scikit-learn forest, the
    margin of a boosted model): ``values (n, M)`` (``(n, M, K)`` for ``K`` outputs), and
    ``base_values`` the expected value over the training cover; local accuracy holds exactly.

    Args:
        model: a fitted scikit-learn ``DecisionTree*``, ``RandomForest*``, ``ExtraTrees*``,
            ``(Hist)GradientBoostingRegressor`` or binary ``(Hist)GradientBoostingClassifier``,
            or an XGBoost or LightGBM model of one output (regressor, binary classifier,
            ``Booster``); numerical splits only.
        X: one instance ``(M,)`` or a batch ``(n, M)``; NaN (a missing value) where the model
            says where missing values go (XGBoost, LightGBM, HistGradientBoosting, scikit-learn
            trees >= 1.3), following each split's default direction.
        background: not supported yet (interventional Tree SHAP); must be ``None``.
        interactions: not supported yet; must be False.
        targets: ``None`` (every output), an int or ``(n,)`` ints picking one output.
        batch_size: instances computed at once (memory grows with ``L x D^2`` per instance for
            ``L`` leaves of paths of at most ``D`` features; the default keeps a chunk near
            ``2^25`` such values).
        mesh: accepted and validated for the one signature of every explainer; no effect yet
            (one device computes every instance).

    Returns:
        An Explanation of kind ``"additive"``.

    References:
        Lundberg et al., "From local explanations to global understanding with explainable AI
        for trees", Nature Machine Intelligence 2020; Mitchell, Frank & Holmes, "GPUTreeShap",
        PeerJ Computer Science 2022.

    Example:
        >>> import numpy as np
        >>> from sklearn.tree import DecisionTreeRegressor
        >>> X = np.random.default_rng(0).normal(size=(64, 3)); y = X[:, 0] + 2 * (X[:, 1] > 0)
        >>> exp = tree_shap(DecisionTreeRegressor(max_depth=3).fit(X, y), X[:4])
        >>> exp.values.shape, bool(np.allclose(exp.values.sum(1) + exp.base_values,
        ...     DecisionTreeRegressor(max_depth=3).fit(X, y).predict(X[:4]), atol=1e-5))
        ((4, 3), True)
    """
    if background is not None:
        raise ValueError("background: interventional Tree SHAP is not implemented yet; pass None")
    if interactions:
        raise ValueError("interactions: Tree SHAP interaction values are not implemented yet")
    check_mesh(mesh)
    paths, how = tree_paths(model)
    X = as_float_array("X", X, dtype=np.float64, finite=False)
    if np.isinf(X).any() or (np.isnan(X).any() and not paths.missing):
        what = "NaN" if paths.missing else "NaN or inf"
        raise ValueError(
            f"X must not hold {what}"
            + ("" if paths.missing else " (this model does not say where missing values go)")
        )
    single = X.ndim == 1
    X2 = X[None] if single else X
    M = paths.num_features
    if X2.ndim != 2 or X2.shape[1] != M:
        raise ValueError(f"X must have shape (n, {M}) or ({M},) for this model; got {X.shape}")
    n = X2.shape[0]
    K = paths.value.shape[1]
    spec = resolve_targets(targets, n, K if K > 1 else None)
    if spec.fn is not None:
        raise TypeError("targets: a callable is not supported by tree_shap; pass an int or ints")
    dt = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    L, D = paths.feature.shape
    if batch_size is None:  # about 2^25 values of the (L, D, D) division per chunk
        batch_size = max(1, 2**25 // (L * D * D))
    batch_size = check_int("batch_size", batch_size)
    big = np.finfo(np.float32).max
    phi, totals = _tree_shap(
        jnp.asarray(X2, dt),
        jnp.asarray(paths.feature),
        jnp.asarray(np.clip(paths.lower, -big, big), dt),
        jnp.asarray(np.clip(paths.upper, -big, big), dt),
        jnp.asarray(paths.nan_ok),
        jnp.asarray(paths.cover_share, dt),
        jnp.asarray(paths.valid),
        jnp.asarray(paths.value, dt),
        jnp.asarray(_weights(D), dt),
        strict=paths.strict,
        num_features=M,
        batch_size=min(batch_size, n),
    )
    phi = np.asarray(phi, np.float64)  # (n, M, K)
    totals = np.asarray(totals, np.float64)
    offset = _raw_offset(model, how, paths)
    base = np.broadcast_to(_expected_value(paths) + offset, (n, K)).copy()
    output_names = None
    if spec.indices is not None:
        idx = np.asarray(spec.indices)
        phi = phi[np.arange(n), :, idx]
        base = base[np.arange(n), idx]
    elif K == 1:
        phi, base = phi[..., 0], base[:, 0]
    else:
        classes = getattr(model, "classes_", None)
        names = classes if classes is not None and len(classes) == K else range(K)
        output_names = tuple(str(c) for c in names)
    names = getattr(model, "feature_names_in_", None)
    dtype = float_dtype()
    return contract.pack(
        phi.astype(dtype),
        base.astype(dtype),
        X2.astype(dtype),
        single=single,
        kind="additive",
        method="tree_shap",
        feature_names=None if names is None else tuple(str(c) for c in names),
        output_names=output_names,
        what="the tree ensemble",
    )
