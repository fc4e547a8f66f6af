"""Weighted least squares and the surrogate fit shared by Kernel SHAP and LIME.

Kernel SHAP and LIME are one mechanism: fit a weighted linear model of the model outputs on
interpretable (binary) features. :func:`fit_surrogate` is that mechanism; the explainers differ only
in how they sample the features and weight the samples.

Kernel SHAP solves the square-root-weighted system by SVD or QR, never the normal equations: the
Shapley kernel's weights span many orders of magnitude (and are infinite at the empty and full
coalitions, which become huge finite weights when imposed softly), and ``A^T W A`` squares the
condition number, which float32 cannot afford. LIME's designs are well conditioned (features
sampled independently, kernel weights in ``(0, 1]``, a ridge penalty), so LIME solves from the
weighted moments (:func:`weighted_moments`: one product of the data), shared by its feature
selection and its fit (``solver="cholesky"``).

For the same reason every function here traces its matrix products at ``"highest"`` precision:
on GPUs that default to TensorFloat-32 (A100, H100) a float32 product keeps only 10 mantissa bits,
enough to move Kernel SHAP values by 1e-3. The model itself runs at whatever precision the user set.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.linalg

__all__ = [
    "Moments",
    "weighted_moments",
    "Surrogate",
    "weighted_lstsq",
    "fit_surrogate",
    "lars_active_set",
    "precise",
    "ridge_from_moments",
]


def precise(fn):
    """Trace ``fn``'s matrix products at full float32 precision (no TF32 / bf16 passes)."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with jax.default_matmul_precision("highest"):
            return fn(*args, **kwargs)

    return wrapped


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


@precise
def weighted_lstsq(A, y, weights, *, ridge=0.0, constraint=None, solver="svd"):
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
        solver: ``"svd"`` (default; minimum-norm, safe when rank deficient), ``"qr"`` (several
            times faster than SVD and as accurate; needs full column rank apart from all-zero
            columns: ``ridge > 0`` or ample samples, as Kernel SHAP uses it), or ``"cholesky"``:
            the ridge-regularised normal equations with one step of iterative refinement,
            about 10x faster for tall systems and as accurate when ``ridge > 0`` and the weights
            are bounded (LIME's kernel is in ``(0, 1]``). Never use ``"cholesky"`` with the
            Shapley kernel's huge weights.

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
    if solver == "cholesky":
        b = _ridge_normal_equations(Aw, yw, jnp.asarray(ridge, dtype))
    elif solver == "svd":
        b = _ridge_svd(Aw, yw, ridge, dtype)
    elif solver == "qr":
        b = _ridge_qr(Aw, yw, ridge, zero_col, dtype)
    else:
        raise ValueError(f"solver must be 'svd', 'qr' or 'cholesky'; got {solver!r}")
    # The minimum-norm solution is 0 on an all-zero column only up to rounding; make it exact, so
    # a dummy feature's attribution is exactly 0 and the constraint absorbs nothing from it.
    b = jnp.where(zero_col.reshape((M,) + (1,) * (b.ndim - 1)), 0.0, b)
    if constraint is not None:
        b = b.at[pivot].set(0.0)
        b = b.at[pivot].set((d - jnp.tensordot(c, b, axes=1)) / c[pivot])
    return b


def _ridge_normal_equations(Aw, yw, ridge):
    M = Aw.shape[1]
    gram = Aw.T @ Aw + ridge * jnp.eye(M, dtype=Aw.dtype)
    factor = jax.scipy.linalg.cho_factor(gram)
    b = jax.scipy.linalg.cho_solve(factor, Aw.T @ yw)
    # Refinement recovers the digits float32 loses to the squared condition number.
    residual = Aw.T @ (yw - Aw @ b) - ridge * b
    return b + jax.scipy.linalg.cho_solve(factor, residual)


def _with_ridge_rows(Aw, yw, ridge, dtype):
    M = Aw.shape[1]
    if isinstance(ridge, (int, float)) and ridge == 0:
        return Aw, yw
    Aw = jnp.concatenate([Aw, jnp.sqrt(jnp.asarray(ridge, dtype)) * jnp.eye(M, dtype=dtype)])
    return Aw, jnp.concatenate([yw, jnp.zeros((M,) + yw.shape[1:], dtype)])


def _ridge_svd(Aw, yw, ridge, dtype):
    return jnp.linalg.lstsq(*_with_ridge_rows(Aw, yw, ridge, dtype))[0]


def _ridge_qr(Aw, yw, ridge, zero_col, dtype):
    M = Aw.shape[1]
    Aw, yw = _with_ridge_rows(Aw, yw, ridge, dtype)
    # An all-zero column would make R singular; a unit row pins its coefficient to 0 instead.
    Aw = jnp.concatenate([Aw, jnp.diag(zero_col.astype(dtype))])
    y2 = yw.reshape(yw.shape[0], -1)
    y2 = jnp.concatenate([y2, jnp.zeros((M, y2.shape[1]), dtype)])
    # The triangular factor of [A | y] holds R in its first M columns and Q^T y beside it: one
    # Householder pass over the targets instead of forming Q (half the time of qr + Q^T y).
    R = jnp.linalg.qr(jnp.concatenate([Aw, y2], axis=1), mode="r")
    b = jax.scipy.linalg.solve_triangular(R[:M, :M], R[:M, M:], lower=False)
    return b.reshape((M,) + yw.shape[1:])


class Moments(NamedTuple):
    """Weighted, centred second moments of a design and its targets: all a ridge fit needs.

    With ``Xc = features - x_mean`` and ``yc = outputs - y_mean`` (weighted means):

    Attributes:
        gram: ``(M, M)`` ``Xc^T W Xc``.
        rhs: ``(M,)`` or ``(M, K)`` ``Xc^T W yc``.
        total: ``()`` or ``(K,)`` ``yc^T W yc``.
        x_mean: ``(M,)``; y_mean: ``()`` or ``(K,)``.
    """

    gram: jax.Array
    rhs: jax.Array
    total: jax.Array
    x_mean: jax.Array
    y_mean: jax.Array

    def masked(self, mask):
        """The moments of ``features * mask`` (unselected columns zeroed)."""
        keep = jnp.asarray(mask, self.gram.dtype)
        return self._replace(
            gram=self.gram * jnp.outer(keep, keep),
            rhs=self.rhs * keep.reshape((-1,) + (1,) * (self.rhs.ndim - 1)),
            x_mean=self.x_mean * keep,
        )


@precise
def weighted_moments(features, outputs, weights) -> Moments:
    """The :class:`Moments` of a weighted design, from one product of the centred data.

    Centring happens on the data (not by subtracting outer products of means afterwards), so a
    nearly constant target keeps its digits in float32.

    Example:
        >>> import jax.numpy as jnp
        >>> m = weighted_moments(jnp.array([[0.0], [1.0], [2.0]]), jnp.array([1.0, 3.0, 5.0]),
        ...                      jnp.ones(3))
        >>> float(m.gram[0, 0]), float(m.rhs[0]), float(m.total)
        (2.0, 4.0, 8.0)
    """
    features = jnp.asarray(features, jnp.result_type(features, jnp.float32))
    outputs = jnp.asarray(outputs, features.dtype)
    weights = jnp.asarray(weights, features.dtype)
    M = features.shape[1]
    y2 = outputs.reshape(outputs.shape[0], -1)
    wsum = jnp.sum(weights)
    x_mean = weights @ features / wsum
    y_mean = weights @ y2 / wsum
    sw = jnp.sqrt(weights)[:, None]
    Aw = sw * jnp.concatenate([features - x_mean[None, :], y2 - y_mean[None, :]], axis=1)
    full = Aw.T @ Aw  # one (M + K)^2 product instead of three
    rhs, total = full[:M, M:], jnp.diagonal(full[M:, M:])
    if outputs.ndim == 1:
        rhs, total, y_mean = rhs[:, 0], total[0], y_mean[0]
    return Moments(full[:M, :M], rhs, total, x_mean, y_mean)


def ridge_from_moments(moments: Moments, ridge):
    """Ridge coefficients from moments by Cholesky, and the factor (for refinement).

    A column with zero centred spread (all-zero or constant) gets coefficient exactly 0.
    """
    gram = moments.gram
    M = gram.shape[0]
    dead = jnp.diagonal(gram) <= 0
    # The dead columns' rows and columns are zero; a unit diagonal keeps the system definite.
    system = gram + jnp.diag(jnp.where(dead, 1.0, 0.0).astype(gram.dtype))
    system = system + ridge * jnp.eye(M, dtype=gram.dtype)
    factor = jax.scipy.linalg.cho_factor(system)
    b = jax.scipy.linalg.cho_solve(factor, moments.rhs)
    live = (~dead).reshape((M,) + (1,) * (b.ndim - 1))
    return jnp.where(live, b, 0.0), factor, live


def _fit_from_moments(features, outputs, weights, moments: Moments, ridge, refine) -> Surrogate:
    """Centred ridge fit from :class:`Moments`, optionally refined once against the data."""
    b, factor, live = ridge_from_moments(moments, ridge)
    gram, rhs, total = moments.gram, moments.rhs, moments.total
    if refine:
        # One step of iterative refinement with the residual computed from the data: recovers
        # the digits float32 loses in forming the moments (the squared condition number).
        Xc = features - moments.x_mean[None, :]
        r = (outputs - moments.y_mean[None, ...]) - Xc @ b
        wr = weights.reshape((-1,) + (1,) * (r.ndim - 1)) * r
        grad = Xc.T @ wr  # Xc^T W r
        delta = jnp.where(live, jax.scipy.linalg.cho_solve(factor, grad - ridge * b), 0.0)
        # rss(b + delta) without another pass over the data.
        rss = jnp.sum(wr * r, axis=0) - 2.0 * jnp.sum(delta * grad, axis=0)
        rss = rss + jnp.sum(delta * (gram @ delta), axis=0)
        coef = b + delta
    else:
        coef = b
        rss = total - 2.0 * jnp.sum(b * rhs, axis=0) + jnp.sum(b * (gram @ b), axis=0)
    score = jnp.where(total > 0, 1.0 - rss / jnp.where(total > 0, total, 1.0), 1.0)
    intercept = moments.y_mean - jnp.tensordot(moments.x_mean, coef, axes=1)
    prediction = intercept[None, ...] + features @ coef
    return Surrogate(coef, intercept, score, prediction)


@precise
def fit_surrogate(
    features,
    outputs,
    weights,
    *,
    ridge=0.0,
    fit_intercept=True,
    constraint=None,
    solver="svd",
    moments: Moments | None = None,
    refine: bool = True,
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
        solver: ``"svd"``, ``"qr"`` or ``"cholesky"``, see :func:`weighted_lstsq`. With an
            intercept and no constraint, ``"cholesky"`` solves from :func:`weighted_moments`
            (one product of the data) and refines once against the data.
        moments: the :func:`weighted_moments` of these arrays when already at hand (only used by
            that ``"cholesky"`` path), e.g. shared with feature selection. Without ``refine``
            that path reads ``features`` only for ``prediction``: pass just the rows to predict
            at (LIME passes the instance's row).
        refine: that path's one step of iterative refinement against the data (two more passes
            over it). Needed only for ill-conditioned designs; LIME's are not (see
            :func:`xaijax.lime.explain_with_data`).

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
    if solver == "cholesky" and fit_intercept and constraint is None:
        if moments is None:
            moments = weighted_moments(features, outputs, weights)
        return _fit_from_moments(features, outputs, weights, moments, ridge, refine)
    wsum = jnp.sum(weights)
    # Explicit leading axes: the suite runs with jax_numpy_rank_promotion="raise".
    if fit_intercept:
        x_mean = weights @ features / wsum
        y_mean = jnp.tensordot(weights, outputs, axes=1) / wsum
        coef = weighted_lstsq(
            features - x_mean[None, :],
            outputs - y_mean[None, ...],
            weights,
            ridge=ridge,
            constraint=constraint,
            solver=solver,
        )
        intercept = y_mean - jnp.tensordot(x_mean, coef, axes=1)
    else:
        coef = weighted_lstsq(
            features, outputs, weights, ridge=ridge, constraint=constraint, solver=solver
        )
        intercept = jnp.zeros(outputs.shape[1:], features.dtype)
    prediction = intercept[None, ...] + features @ coef
    y_bar = jnp.tensordot(weights, outputs, axes=1) / wsum
    residual = jnp.tensordot(weights, (outputs - prediction) ** 2, axes=1)
    total = jnp.tensordot(weights, (outputs - y_bar[None, ...]) ** 2, axes=1)
    # A constant target is fitted perfectly; report 1 rather than 0/0.
    score = jnp.where(total > 0, 1.0 - residual / jnp.where(total > 0, total, 1.0), 1.0)
    return Surrogate(coef, intercept, score, prediction)


@precise
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
