"""The arithmetic Tree SHAP and its interaction values share (Linear TreeSHAP's view).

A path's product game is integrated over ``t`` in [0, 1] by Gauss-Legendre quadrature
(:func:`quadrature`), with the products over all features but one taken without division
(:func:`exclusive_products`), of whether a row follows the path at each feature (:func:`follows`).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from xaijax.trees.convert import TreePaths

__all__ = [
    "check_background",
    "check_rows",
    "exclusive_products",
    "follows",
    "follows_values",
    "quadrature",
]


def check_rows(X, num_features: int) -> tuple[np.ndarray, bool]:
    """``X`` as float32 rows ``(n, M)`` and whether it was one row; NaN (missing) allowed."""
    arr = np.asarray(X)
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"X must be numeric; got dtype {arr.dtype}")
    single = arr.ndim == 1
    arr = np.atleast_2d(arr).astype(np.float32)
    if arr.ndim != 2 or arr.shape[1] != num_features:
        raise ValueError(f"X must have shape (n, {num_features}); got {np.shape(X)}")
    if np.isinf(arr).any():
        raise ValueError("X must not hold inf (NaN is a missing value; inf is not)")
    return arr, single


def check_background(background, num_features: int) -> np.ndarray:
    """``background`` as float32 reference rows ``(b, M)``, ``b >= 1``; NaN (missing) allowed."""
    bg = np.asarray(background)
    if not np.issubdtype(bg.dtype, np.number):
        raise TypeError(f"background must be numeric; got dtype {bg.dtype}")
    bg = np.atleast_2d(bg).astype(np.float32)
    if bg.ndim != 2 or bg.shape[1] != num_features or not len(bg):
        raise ValueError(
            f"background must have shape (b, {num_features}); got {np.shape(background)}"
        )
    return bg


def exclusive_products(g):
    """``prod_{j != i} g_j`` along axis -2 without division (prefix times suffix)."""
    ones = jnp.ones_like(g[..., :1, :])
    prefix = jnp.cumprod(jnp.concatenate([ones, g[..., :-1, :]], axis=-2), axis=-2)
    suffix = jnp.flip(
        jnp.cumprod(jnp.concatenate([ones, jnp.flip(g, -2)[..., :-1, :]], axis=-2), axis=-2), -2
    )
    return prefix * suffix


def follows(x, paths: TreePaths, strict: bool):
    """``o``: whether row ``x`` satisfies each path's constraints on each feature ``(L, S)``."""
    return follows_values(x[paths.feature], paths, strict)


def follows_values(xs, paths: TreePaths, strict: bool):
    """``o`` from the feature values ``xs`` each path constraint reads (any layout that
    broadcasts against ``paths``' bounds; Tree SHAP's rows-minor kernel passes ``(S, L, B)``)."""
    if strict:
        inside = (paths.lower <= xs) & (xs < paths.upper)
    else:
        inside = (paths.lower < xs) & (xs <= paths.upper)
    return jnp.where(jnp.isnan(xs), paths.nan_follows, inside).astype(xs.dtype)


def quadrature(S: int):
    """Gauss-Legendre nodes and weights on [0, 1], exact for the degree ``S - 1`` products."""
    q = max(1, (S + 1) // 2)
    t, w = np.polynomial.legendre.leggauss(q)
    return ((t + 1) / 2).astype(np.float32), (w / 2).astype(np.float32)
