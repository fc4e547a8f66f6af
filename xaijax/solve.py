"""Weighted least squares and the surrogate fit shared by Kernel SHAP and LIME.

Kernel SHAP and LIME are one mechanism: fit a weighted linear model of the model outputs on
interpretable (binary) features. :func:`fit_surrogate` is that mechanism; the explainers differ only
in how they sample the features and weight the samples.

Everything here solves the square-root-weighted system with an SVD-based least squares, never the
normal equations: the Shapley kernel's weights span many orders of magnitude (and are infinite at
the empty and full coalitions, which become huge finite weights when imposed softly), and
``A^T W A`` squares the condition number, which float32 cannot afford.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg

__all__ = ["Surrogate", "weighted_lstsq", "fit_surrogate", "lars_active_set"]


class Surrogate(NamedTuple):
    """A fitted weighted linear surrogate ``y ~ intercept + features @ coef``.

    Attributes:
        coef: ``(M,)`` or ``(M, K)`` for ``K`` outputs.
        intercept: ``()`` or ``(K,)``.
        score: weighted coefficient of determination R², ``()`` or ``(K,)``.
        prediction: ``(S,)`` or ``(S, K)`` surrogate predictions on the fitted samples.
    """

    coef: jax.Array
    intercept: jax.Array
    score: jax.Array
    prediction: jax.Array


def weighted_lstsq(A, y, weights, *, ridge=0.0, constraint=None, method="svd"):
    """Solve ``min_b sum_s w_s (y_s - A_s b)^2 + ridge * |b|^2``, optionally with ``c . b = d``.

    Solved as ordinary least squares on ``sqrt(w) * A`` (SVD, minimum-norm where rank deficient),
    so it stays accurate in float32 with weights spanning ten orders of magnitude. An all-zero
    column gets coefficient 0. The equality constraint is enforced exactly, by eliminating the
    variable with the largest ``|c_j|`` (the approach of the SHAP reference implementation).

    Args:
        A: ``(S, M)`` design matrix.
        y: ``(S,)`` or ``(S, K)`` targets; ``K`` outputs are solved together.
        weights: ``(S,)`` non-negative sample weights.
        ridge: L2 penalty on ``b`` (on the non-eliminated coefficients when constrained).
        constraint: ``None`` or ``(c, d)`` with ``c: (M,)`` and ``d: ()`` or ``(K,)``.
        method: ``"svd"`` (minimum-norm, safe when rank deficient) or ``"qr"`` (several times
            faster; needs full column rank apart from all-zero columns, e.g. ``ridge > 0`` or many
            more samples than features).

    Returns:
        ``b``: ``(M,)`` or ``(M, K)``.

    References:
        Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.

    Example:
        >>> import jax.numpy as jnp
        >>> A = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        >>> b = weighted_lstsq(A, A @ jnp.array([2.0, -1.0]), jnp.ones(3))
        >>> [round(float(v), 4) for v in b]
        [2.0, -1.0]
    """
    A = jnp.asarray(A)
    y = jnp.asarray(y)
    dtype = jnp.result_type(A.dtype, y.dtype, jnp.float32)
    A, y = A.astype(dtype), y.astype(dtype)
    weights = jnp.asarray(weights, dtype)
    if constraint is not None:
        c, d = (jnp.asarray(t, dtype) for t in constraint)
        pivot = jnp.argmax(jnp.abs(c))
        ratio = c / c[pivot]
        a_pivot = A[:, pivot]
        # b_p = (d - sum_{j != p} c_j b_j) / c_p substituted into A b: column p cancels itself.
        A = A - a_pivot[:, None] * ratio[None, :]
        y = y - jnp.multiply.outer(a_pivot, d / c[pivot])
    sw = jnp.sqrt(weights)
    Aw = sw[:, None] * A
    yw = sw.reshape((-1,) + (1,) * (y.ndim - 1)) * y
    M = A.shape[1]
    zero_col = jnp.all(Aw == 0, axis=0)
    if not (isinstance(ridge, (int, float)) and ridge == 0):
        Aw = jnp.concatenate([Aw, jnp.sqrt(jnp.asarray(ridge, dtype)) * jnp.eye(M, dtype=dtype)])
        yw = jnp.concatenate([yw, jnp.zeros((M,) + y.shape[1:], dtype)])
    if method == "qr":
        # An all-zero column would make R singular; a unit row pins its coefficient to 0 instead.
        Aw = jnp.concatenate([Aw, jnp.diag(zero_col.astype(dtype))])
        yw = jnp.concatenate([yw, jnp.zeros((M,) + y.shape[1:], dtype)])
        Q, R = jnp.linalg.qr(Aw)
        b = jax.scipy.linalg.solve_triangular(R, Q.T @ yw, lower=False)
    elif method == "svd":
        b = jnp.linalg.lstsq(Aw, yw)[0]
    else:
        raise ValueError(f"method must be 'svd' or 'qr'; got {method!r}")
    # The minimum-norm solution is 0 on an all-zero column only up to rounding; make it exact, so
    # a dummy feature's attribution is exactly 0 and the constraint absorbs nothing from it.
    b = jnp.where(zero_col.reshape((M,) + (1,) * (b.ndim - 1)), 0.0, b)
    if constraint is not None:
        b = b.at[pivot].set(0.0)
        b = b.at[pivot].set((d - jnp.tensordot(c, b, axes=1)) / c[pivot])
    return b


def fit_surrogate(
    features, outputs, weights, *, ridge=0.0, fit_intercept=True, constraint=None, method=None
) -> Surrogate:
    """Fit the weighted linear surrogate ``outputs ~ intercept + features @ coef``.

    With ``fit_intercept`` the features and outputs are centred by their weighted means first, so
    the intercept is not penalised (as scikit-learn's ``Ridge(sample_weight=...)`` does, which the
    LIME reference uses). The score is the weighted R² of the fit (``Ridge.score``).

    Args:
        features: ``(S, M)`` interpretable features (binary coalitions for Kernel SHAP and LIME).
        outputs: ``(S,)`` or ``(S, K)`` model outputs on the samples.
        weights: ``(S,)`` sample weights (the kernel).
        ridge: L2 penalty (LIME's ``Ridge(alpha=1)``; Kernel SHAP uses 0).
        fit_intercept: fit an unpenalised intercept.
        constraint: ``(c, d)`` linear equality ``c . coef = d`` (Kernel SHAP's efficiency).
        method: the :func:`weighted_lstsq` method; default ``"qr"`` with a ridge (always full
            rank), else ``"svd"``.

    Returns:
        A :class:`Surrogate`.

    Example:
        >>> import jax.numpy as jnp
        >>> Z = jnp.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
        >>> s = fit_surrogate(Z, 3.0 + Z @ jnp.array([1.0, 2.0]), jnp.ones(4))
        >>> round(float(s.intercept), 4), round(float(s.score), 4)
        (3.0, 1.0)
    """
    features = jnp.asarray(features, jnp.result_type(features, jnp.float32))
    outputs = jnp.asarray(outputs, features.dtype)
    weights = jnp.asarray(weights, features.dtype)
    wsum = jnp.sum(weights)
    if method is None:
        method = "qr" if not (isinstance(ridge, (int, float)) and ridge == 0) else "svd"
    if fit_intercept:
        x_mean = weights @ features / wsum
        y_mean = jnp.tensordot(weights, outputs, axes=1) / wsum
        coef = weighted_lstsq(
            features - x_mean[None, :],
            outputs - y_mean[None],
            weights,
            ridge=ridge,
            constraint=constraint,
            method=method,
        )
        intercept = y_mean - jnp.tensordot(x_mean, coef, axes=1)
    else:
        coef = weighted_lstsq(
            features, outputs, weights, ridge=ridge, constraint=constraint, method=method
        )
        intercept = jnp.zeros(outputs.shape[1:], features.dtype)
    prediction = intercept[None] + features @ coef
    y_bar = jnp.tensordot(weights, outputs, axes=1) / wsum
    residual = jnp.tensordot(weights, (outputs - prediction) ** 2, axes=1)
    total = jnp.tensordot(weights, (outputs - y_bar[None]) ** 2, axes=1)
    # A constant target is fitted perfectly; report 1 rather than 0/0.
    score = jnp.where(total > 0, 1.0 - residual / jnp.where(total > 0, total, 1.0), 1.0)
    return Surrogate(coef, intercept, score, prediction)


def lars_active_set(X, y, k: int):
    """The first ``k`` features to enter the least-angle regression (LAR) path of ``y ~ X``.

    Equals the active set of scikit-learn's ``lars_path(X, y, method="lar", max_iter=k)`` (no
    centring or scaling), which the SHAP reference uses for ``l1_reg="num_features(k)"``. Runs a
    fixed ``k`` steps, so it compiles to a static loop.

    Args:
        X: ``(S, M)`` design matrix.
        y: ``(S,)`` target.
        k: number of features to select (static).

    Returns:
        ``(M,)`` boolean mask with ``min(k, M)`` entries set.

    References:
        Efron, Hastie, Johnstone & Tibshirani, "Least Angle Regression", Annals of Statistics 2004.

    Example:
        >>> import jax.numpy as jnp
        >>> X = jnp.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0]])
        >>> lars_active_set(X, X @ jnp.array([3.0, 0.1, -2.0]), 2).tolist()
        [True, False, True]
    """
    X = jnp.asarray(X, jnp.result_type(X, jnp.float32))
    y = jnp.asarray(y, X.dtype)
    M = X.shape[1]
    G = X.T @ X
    tiny = jnp.finfo(X.dtype).tiny

    def step(carry, _):
        active, cov = carry
        j = jnp.argmax(jnp.where(active, -jnp.inf, jnp.abs(cov)))
        active = active.at[j].set(True)
        C = jnp.abs(cov[j])
        sign = jnp.where(active, jnp.sign(cov), 0.0)
        both = active[:, None] & active[None, :]
        G_active = jnp.where(both, G, 0.0) + jnp.diag(jnp.where(active, 0.0, 1.0))
        w = jnp.linalg.solve(G_active, sign)
        norm = 1.0 / jnp.sqrt(jnp.maximum(jnp.dot(w, sign), tiny))
        w = w * norm
        a = G @ w  # correlation of each feature with the equiangular direction
        free = ~active
        up = (C - cov) / jnp.where(norm - a == 0, tiny, norm - a)
        down = (C + cov) / jnp.where(norm + a == 0, tiny, norm + a)
        candidates = jnp.concatenate(
            [
                jnp.where(free & (up > tiny), up, jnp.inf),
                jnp.where(free & (down > tiny), down, jnp.inf),
            ]
        )
        gamma = jnp.minimum(jnp.min(candidates), C / norm)
        return (active, cov - gamma * a), None

    (active, _), _ = jax.lax.scan(step, (jnp.zeros(M, bool), X.T @ y), None, length=min(k, M))
    return active
