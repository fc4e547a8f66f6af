"""Summaries of a background data set: k-means centres weighted by cluster size."""

# jaxtyping shape strings such as "n m" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, Key, UInt32

from xaijax.core.contract import as_float_array, check_int, instance_keys
from xaijax.core.masking import Background

__all__ = ["kmeans"]


def kmeans(
    X: Float[ArrayLike, "n m"],
    k: int,
    *,
    key: Key[ArrayLike, ""] | UInt32[ArrayLike, " 2"],
    round_values: bool = True,
    num_restarts: int = 10,
    num_iters: int = 100,
) -> Background:
    """Summarise ``X`` by ``k`` k-means centres weighted by the number of rows each represents.

    The analogue of ``shap.kmeans``: k-means++ seeding, Lloyd iterations, the best of
    ``num_restarts`` runs by inertia; with ``round_values`` each centre coordinate is replaced by
    the nearest value that feature takes in ``X``, so discrete features keep valid values. The
    result is a :class:`Background` that every Shapley explainer accepts as ``background``.

    Args:
        X: ``(N, M)`` data, finite.
        k: number of centres, ``1 <= k <= N``.
        key: a ``jax.random.key`` or a raw ``PRNGKey``.
        round_values: snap centre coordinates to values present in ``X``.
        num_restarts: independent seedings; the lowest-inertia run is kept.
        num_iters: Lloyd iterations per run.

    Returns:
        ``Background(data=(k, M) centres, weights=(k,) cluster sizes summing to N)``.

    References:
        Arthur & Vassilvitskii, "k-means++: The Advantages of Careful Seeding", SODA 2007.

    Example:
        >>> import jax, numpy as np
        >>> X = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 10.0], [10.0, 11.0]])
        >>> bg = kmeans(X, 2, key=jax.random.key(0))
        >>> sorted(bg.weights.tolist())
        [2.0, 2.0]
    """
    X = as_float_array("X", X)
    if X.ndim != 2 or X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"X must have shape (N, M) with N, M >= 1; got shape {X.shape}")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= X.shape[0]:
        raise ValueError(f"k must be an int in [1, {X.shape[0]}] (rows of X); got {k!r}")
    num_restarts = check_int("num_restarts", num_restarts, minimum=1)
    num_iters = check_int("num_iters", num_iters, minimum=0)
    key = _one_key(key)
    # X goes in as it is: jnp.asarray would be one more program to load in a fresh process.
    centres, labels = _kmeans(X, key, k=k, num_restarts=num_restarts, num_iters=num_iters)
    centres = np.asarray(centres)
    if round_values:
        nearest = np.abs(X[None, :, :] - centres[:, None, :]).argmin(axis=1)  # (k, M)
        centres = np.take_along_axis(X, nearest, axis=0)
    weights = np.bincount(np.asarray(labels), minlength=k).astype(X.dtype)
    return Background(centres, weights)


def _one_key(key):
    """One key, typed or raw, as a typed key: its own stream, not a split of it."""
    if (
        isinstance(key, jax.Array)
        and key.shape == ()
        and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    ):
        return key  # as instance_keys(key[None], 1)[0] would, without two eager programs
    if hasattr(key, "__array__") and not isinstance(key, (numbers.Number, str)):
        key = jnp.asarray(key)[None]
    return instance_keys(key, 1)[0]


@functools.partial(jax.jit, static_argnames=("k", "num_restarts", "num_iters"))
def _kmeans(X, key, *, k, num_restarts, num_iters):
    def sq_dist(C):
        return jnp.sum(X * X, 1)[:, None] - 2 * X @ C.T + jnp.sum(C * C, 1)[None, :]

    def seed(key):
        first_key, key = jax.random.split(key)
        C = (
            jnp.zeros((k, X.shape[1]), X.dtype)
            .at[0]
            .set(X[jax.random.randint(first_key, (), 0, X.shape[0])])
        )

        def add(i, carry):
            C, key = carry
            key, sub = jax.random.split(key)
            d = jnp.min(jnp.where(jnp.arange(k)[None, :] < i, sq_dist(C), jnp.inf), axis=1)
            d = jnp.maximum(d, 0.0)
            p = jnp.where(jnp.sum(d) > 0, d / jnp.sum(d), 1.0 / X.shape[0])
            return C.at[i].set(X[jax.random.choice(sub, X.shape[0], p=p)]), key

        return jax.lax.fori_loop(1, k, add, (C, key))[0]

    def lloyd(C, _):
        labels = jnp.argmin(sq_dist(C), axis=1)
        onehot = jax.nn.one_hot(labels, k, dtype=X.dtype)
        counts = onehot.sum(0)
        sums = onehot.T @ X
        # An emptied cluster keeps its centre rather than collapsing to NaN.
        return jnp.where(counts[:, None] > 0, sums / jnp.maximum(counts, 1.0)[:, None], C), None

    def run(key):
        C, _ = jax.lax.scan(lloyd, seed(key), None, length=num_iters)
        d = sq_dist(C)
        return C, jnp.argmin(d, axis=1), jnp.sum(jnp.maximum(jnp.min(d, axis=1), 0.0))

    C, labels, inertia = jax.vmap(run)(jax.random.split(key, num_restarts))
    best = jnp.argmin(inertia)
    return C[best], labels[best]
