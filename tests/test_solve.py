"""The shared surrogate fit and LIME's feature selection against float64 NumPy closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax.core.lstsq import fit_surrogate, weighted_moments
from xaijax.lime.selection import forward_selection, highest_weights


def _problem(seed=0, S=800, M=6, K=None, binary=False):
    rng = np.random.default_rng(seed)
    Z = (rng.random((S, M)) < 0.4).astype(float) if binary else rng.normal(size=(S, M)) * 3 + 5
    beta = rng.normal(size=(M,) if K is None else (M, K))
    y = 2.0 + Z @ beta + 0.5 * rng.normal(size=(S,) if K is None else (S, K))
    w = rng.uniform(0.05, 1.0, size=S)
    return Z, y, w


def _ridge64(Z, y, w, ridge):
    """Weighted ridge with an unpenalised intercept, and its weighted R², in float64."""
    xm, ym = w @ Z / w.sum(), w @ y / w.sum()
    Zc, yc = Z - xm, y - ym
    coef = np.linalg.solve(
        Zc.T @ (w[:, None] * Zc) + ridge * np.eye(Z.shape[1]), Zc.T @ (w * yc.T).T
    )
    intercept = ym - xm @ coef
    resid = y - intercept - Z @ coef
    score = 1 - (w @ resid**2) / (w @ (y - ym) ** 2)
    return coef, intercept, score


@pytest.mark.parametrize(
    "solver,refine", [("svd", True), ("qr", True), ("cholesky", True), ("cholesky", False)]
)
@pytest.mark.parametrize("K", [None, 3])
def test_fit_surrogate_matches_weighted_ridge(solver, refine, K):
    Z, y, w = _problem(K=K)
    coef, intercept, score = _ridge64(Z, y, w, ridge=1.0)
    fit = fit_surrogate(
        jnp.asarray(Z, jnp.float32),
        jnp.asarray(y, jnp.float32),
        jnp.asarray(w, jnp.float32),
        ridge=1.0,
        solver=solver,
        refine=refine,
    )
    np.testing.assert_allclose(fit.coef, coef, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(fit.intercept, intercept, rtol=2e-5, atol=2e-4)
    np.testing.assert_allclose(fit.score, score, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(fit.prediction, intercept + Z @ coef, rtol=1e-4, atol=2e-4)


@pytest.mark.parametrize("K", [None, 2])
@pytest.mark.parametrize("S", [400, 3])
def test_constrained_qr_matches_float64_kkt(K, S):
    # Kernel SHAP's solve: weights over several orders of magnitude, an all-zero column, the
    # efficiency constraint; S=3 rows leaves [A | y] wider than tall for K=2 outputs.
    from xaijax.core.lstsq import weighted_lstsq

    rng = np.random.default_rng(5)
    M = 5
    A = (rng.random((S, M)) < 0.5).astype(float)
    A[:, 2] = 0.0
    y = rng.normal(size=(S,) if K is None else (S, K))
    w = 10.0 ** rng.uniform(-4, 0, size=S)
    c = np.where(np.arange(M) == 2, 0.0, 1.0)  # as Kernel SHAP: a dummy is out of the constraint
    d = np.arange(1.0, 3.0)[: 1 if K is None else K].reshape(() if K is None else K)
    # Oracle: the minimum-norm solution of the KKT system over the nonzero columns (the zero
    # column's coefficient is 0), in float64.
    live = np.flatnonzero(A.any(axis=0))
    G = A[:, live].T @ (w[:, None] * A[:, live])
    kkt = np.block([[2 * G, c[live, None]], [c[None, live], np.zeros((1, 1))]])
    y2 = y.reshape(S, -1)
    rhs = np.concatenate([2 * A[:, live].T @ (w[:, None] * y2), np.reshape(d, (1, -1))])
    sol = np.linalg.lstsq(kkt, rhs, rcond=None)[0][: len(live)]
    expected = np.zeros((M, sol.shape[1]))
    expected[live] = sol
    b = weighted_lstsq(
        jnp.asarray(A, jnp.float32),
        jnp.asarray(y, jnp.float32),
        jnp.asarray(w, jnp.float32),
        constraint=(jnp.asarray(c, jnp.float32), jnp.asarray(d, jnp.float32)),
        solver="qr" if S > M else "svd",
    )
    assert b.shape == ((M,) if K is None else (M, K))
    assert np.asarray(b)[2].tolist() == ([0.0] * K if K else 0.0)  # exactly
    if S > M:
        assert_close_scaled(np.asarray(b).reshape(M, -1), expected, rtol=1e-5)
    np.testing.assert_allclose(c @ np.asarray(b), d, rtol=1e-5, atol=1e-5)


def assert_close_scaled(actual, expected, rtol=1e-5):
    """Agreement to ``rtol`` of the largest entry: the error float32 makes in a product."""
    expected = np.asarray(expected, np.float64)
    scale = max(float(np.abs(expected).max()), np.finfo(np.float32).tiny)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * scale)


def test_weighted_moments_and_masking():
    Z, y, w = _problem(seed=1, binary=True)
    m = weighted_moments(
        jnp.asarray(Z, jnp.float32), jnp.asarray(y, jnp.float32), jnp.asarray(w, jnp.float32)
    )
    xm, ym = w @ Z / w.sum(), w @ y / w.sum()
    Zc, yc = Z - xm, y - ym
    # Float32 error scales with the whole product, not with one cancelling entry: an off-diagonal
    # entry of 0.23 next to diagonal entries of 105 carries the diagonal's rounding.
    assert_close_scaled(m.gram, Zc.T @ (w[:, None] * Zc))
    assert_close_scaled(m.rhs, Zc.T @ (w * yc))
    assert_close_scaled(m.total, w @ yc**2)
    mask = np.array([True, False, True, True, False, True])
    masked = weighted_moments(
        jnp.asarray(Z * mask, jnp.float32), jnp.asarray(y, jnp.float32), jnp.asarray(w, jnp.float32)
    )
    for a, b in zip(m.masked(mask), masked, strict=True):
        assert_close_scaled(a, b)
    # A constant column (zero spread) gets coefficient exactly 0.
    Z[:, 2] = 1.0
    fit = fit_surrogate(
        jnp.asarray(Z, jnp.float32),
        jnp.asarray(y, jnp.float32),
        jnp.asarray(w, jnp.float32),
        ridge=1.0,
        solver="cholesky",
    )
    assert float(fit.coef[2]) == 0.0


def _greedy64(Z, y, w, k):
    """Forward selection by brute force: refit every candidate set, keep the best R²."""
    chosen = []
    for _ in range(k):
        best, best_j = -np.inf, None
        for j in range(Z.shape[1]):
            if j in chosen:
                continue
            score = _ridge64(Z[:, chosen + [j]], y, w, ridge=0.0)[2]
            if score > best:
                best, best_j = score, j
        chosen.append(best_j)
    return set(chosen)


@pytest.mark.parametrize("seed", range(4))
def test_forward_selection_matches_brute_force(seed):
    Z, y, w = _problem(seed=seed, S=600, M=10, binary=seed % 2 == 0)
    args = (jnp.asarray(Z, jnp.float32), jnp.asarray(y, jnp.float32), jnp.asarray(w, jnp.float32))
    for k in (1, 3, 6):
        mask = np.asarray(jax.jit(forward_selection, static_argnums=3)(*args, k))
        assert set(np.flatnonzero(mask)) == _greedy64(Z, y, w, k)


def test_highest_weights_matches_closed_form():
    Z, y, w = _problem(seed=5, M=8, binary=True)
    coef = _ridge64(Z, y, w, ridge=0.01)[0]
    expected = set(np.argsort(-np.abs(coef * Z[0]), kind="stable")[:4])
    mask = highest_weights(
        jnp.asarray(Z, jnp.float32), jnp.asarray(y, jnp.float32), jnp.asarray(w, jnp.float32), 4
    )
    assert set(np.flatnonzero(np.asarray(mask))) == expected
