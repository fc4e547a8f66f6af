"""LIME's feature selection: which features each local surrogate may use.

A selector returns a boolean mask ``(M,)`` of the chosen features (``(L, M)`` for ``L`` labels
fitted on one neighbourhood), so the number of features stays static under ``jit``. The
surrogate (:func:`xaijax.lime.explain_with_data`) is then fitted on the chosen columns only.

============================ ====================================================================
method                       chooses
============================ ====================================================================
``"forward_selection"``      greedily, the feature adding the most weighted R² (LIME's default
                             for ``num_features <= 6``)
``"highest_weights"``        the largest ``|coef_j * x_j|`` of one Ridge(0.01) fit on all
                             features (LIME's default above 6)
``"lasso_path"``             the active set of the weighted lasso path at ``num_features``
``"none"``                   every feature
``"auto"``                   forward selection up to 6 features, else highest weights
============================ ====================================================================

All of them read the weighted moments of the neighbourhood
(:func:`xaijax.core.lstsq.weighted_moments`), computed once and shared with the fit.

References:
    Ribeiro, Singh & Guestrin, "Why Should I Trust You?": Explaining the Predictions of Any
    Classifier, KDD 2016.
"""

# jaxtyping shape strings such as "S M" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Bool, Float

from xaijax.core.lstsq import Moments, precise, ridge_from_moments, weighted_moments

__all__ = [
    "FEATURE_SELECTION_METHODS",
    "select_features",
    "forward_selection",
    "highest_weights",
    "lasso_path_selection",
]

FEATURE_SELECTION_METHODS = ("auto", "forward_selection", "highest_weights", "lasso_path", "none")


def select_features(
    features: Float[ArrayLike, "S M"],
    outputs: Float[ArrayLike, " S *L"],
    weights: Float[ArrayLike, " S"],
    num_features: int,
    method: str,
    moments: Moments | None = None,
) -> Bool[Array, " *L M"]:
    """LIME's feature selection: a boolean mask of the features each surrogate may use.

    Args:
        features: ``(S, M)`` interpretable features, row 0 the explained instance.
        outputs: ``(S,)`` model outputs, or ``(S, L)`` for ``L`` labels (one mask each).
        weights: ``(S,)`` kernel weights.
        num_features: how many features to keep (static).
        method: one of :data:`FEATURE_SELECTION_METHODS` (see the module docstring).
        moments: the :func:`~xaijax.core.lstsq.weighted_moments` of the arrays, when already at
            hand.

    Returns:
        ``(M,)``, or ``(L, M)`` for 2-D ``outputs``.

    References:
        Ribeiro, Singh & Guestrin, "Why Should I Trust You?": Explaining the Predictions of Any
        Classifier, KDD 2016.

    Example:
        >>> import jax.numpy as jnp
        >>> Z = jnp.array([[1.0, 1, 1], [0, 1, 1], [1, 0, 1], [1, 1, 0], [0, 0, 1], [0, 1, 0]])
        >>> select_features(Z, Z @ jnp.array([3.0, 0.0, 1.0]), jnp.ones(6), 2, "auto").tolist()
        [True, False, True]
    """
    if method not in FEATURE_SELECTION_METHODS:
        raise ValueError(
            f"feature_selection must be one of {FEATURE_SELECTION_METHODS}; got {method!r}"
        )
    features = jnp.asarray(features)
    outputs = jnp.asarray(outputs, features.dtype)
    M = features.shape[1]
    if method == "auto":
        method = "forward_selection" if num_features <= 6 else "highest_weights"
    if method == "none":
        return jnp.ones(outputs.shape[1:] + (M,), bool)
    if method == "highest_weights":  # one factorisation serves every label
        return highest_weights(features, outputs, weights, num_features, moments)
    if outputs.ndim == 2:
        if moments is None:
            moments = weighted_moments(features, outputs, weights)
        per_label = jax.vmap(
            lambda y, rhs: select_features(
                features, y, weights, num_features, method, moments._replace(rhs=rhs)
            ),
            in_axes=(1, 1),
        )
        return per_label(outputs, moments.rhs)
    if method == "forward_selection":
        return forward_selection(features, outputs, weights, num_features, moments)
    return lasso_path_selection(features, outputs, weights, num_features)


@precise
def forward_selection(
    features: Float[ArrayLike, "S M"],
    outputs: Float[ArrayLike, " S"],
    weights: Float[ArrayLike, " S"],
    num_features: int,
    moments: Moments | None = None,
) -> Bool[Array, " M"]:
    """Greedily add the feature whose unpenalised weighted fit has the highest R² (LIME).

    Ties go to the lowest feature index, as in the LIME reference. A candidate's R² gain is its
    squared partial covariance with the target over its partial variance, given the features
    already chosen; choosing a feature sweeps it out of the weighted, centred Gram matrix (a
    rank-one update, Gram-Schmidt in the weighted inner product). So a step costs ``O(M²)``
    instead of ``M`` least-squares fits. A candidate left with (relatively) no variance of its
    own, such as a constant or a duplicated column, gains nothing.

    Args:
        features: ``(S, M)`` design matrix.
        outputs: ``(S,)`` targets.
        weights: ``(S,)`` sample weights.
        num_features: number of features to select (static).
        moments: their :func:`~xaijax.core.lstsq.weighted_moments`, when already at hand.

    Returns:
        Boolean mask ``(M,)`` with ``min(num_features, M)`` entries set.

    Example:
        >>> import jax.numpy as jnp
        >>> Z = jnp.array([[1.0, 1, 1], [0, 1, 1], [1, 0, 1], [1, 1, 0], [0, 0, 1]])
        >>> forward_selection(Z, Z @ jnp.array([0.0, 2.0, 1.0]), jnp.ones(5), 1).tolist()
        [False, True, False]
    """
    if moments is None:
        moments = weighted_moments(features, outputs, weights)
    gram, rhs = moments.gram, moments.rhs
    M = gram.shape[0]
    # Below this fraction of its own spread a candidate is collinear with the chosen ones.
    floor = jnp.diagonal(gram) * (64 * jnp.finfo(gram.dtype).eps)

    def step(carry, _):
        used, gram, rhs = carry
        var = jnp.diagonal(gram)
        ok = (~used) & (var > floor) & (var > 0)
        gain = jnp.where(ok, rhs * rhs / jnp.where(ok, var, 1.0), 0.0)
        # Every candidate gaining nothing ties; the lowest unused index wins, as in LIME.
        j = jnp.argmax(jnp.where(used, -1.0, gain))
        pivot = jnp.where(ok[j], var[j], 1.0)
        col = jnp.where(ok[j], gram[:, j], 0.0)
        gram = gram - jnp.outer(col, col) / pivot
        rhs = rhs - col * rhs[j] / pivot
        return (used.at[j].set(True), gram, rhs), None

    k = min(num_features, M)
    (used, _, _), _ = jax.lax.scan(step, (jnp.zeros(M, bool), gram, rhs), None, length=k)
    return used


@precise
def highest_weights(
    features: Float[ArrayLike, "S M"],
    outputs: Float[ArrayLike, " S *L"],
    weights: Float[ArrayLike, " S"],
    num_features: int,
    moments: Moments | None = None,
) -> Bool[Array, " *L M"]:
    """Select the ``num_features`` largest ``|coef_j * features[0, j]|`` of a Ridge(0.01) fit.

    Row 0 is the explained instance (LIME's convention); ties keep the lower index first. With
    ``(S, L)`` outputs the ``L`` fits share one Cholesky factorisation.

    Returns:
        Boolean mask ``(M,)``, or ``(L, M)`` for 2-D ``outputs``.

    Example:
        >>> import jax.numpy as jnp
        >>> Z = jnp.array([[1.0, 1, 1], [0, 1, 1], [1, 0, 1], [1, 1, 0], [0, 0, 1]])
        >>> highest_weights(Z, Z @ jnp.array([0.5, -3.0, 1.0]), jnp.ones(5), 2).tolist()
        [False, True, True]
    """
    features = jnp.asarray(features)
    outputs = jnp.asarray(outputs, features.dtype)
    if moments is None:
        moments = weighted_moments(features, outputs, weights)
    coef = ridge_from_moments(moments, 0.01)[0]  # (M,) or (M, L)
    k = min(num_features, features.shape[1])

    def top(c):
        order = jnp.argsort(-jnp.abs(c * features[0]), stable=True)
        return jnp.zeros(c.shape[0], bool).at[order[:k]].set(True)

    return top(coef) if coef.ndim == 1 else jax.vmap(top, in_axes=1)(coef)


@precise
def lasso_path_selection(
    features: Float[ArrayLike, "S M"],
    outputs: Float[ArrayLike, " S"],
    weights: Float[ArrayLike, " S"],
    num_features: int,
) -> Bool[Array, " M"]:
    """The features active at the last knot of the weighted lasso (LARS) path with at most
    ``num_features`` of them, as LIME's ``lasso_path`` selection.

    The LARS path is piecewise and data-dependent in length, so it runs on the host
    (scikit-learn's ``lars_path``, the reference's own solver, in float64) through
    ``jax.pure_callback``; it works under ``jit`` and ``vmap`` (one host call per fit).

    Returns:
        Boolean mask ``(M,)`` with at most ``num_features`` entries set.

    Example:
        >>> import jax.numpy as jnp
        >>> Z = jnp.array([[1.0, 1, 1], [0, 1, 1], [1, 0, 1], [1, 1, 0], [0, 0, 1]])
        >>> lasso_path_selection(Z, Z @ jnp.array([0.0, 2.0, 1.0]), jnp.ones(5), 1).tolist()
        [False, True, False]
    """
    M = jnp.shape(features)[1]

    def host(Z, y, w):
        from sklearn.linear_model import lars_path

        Z, y, w = (np.asarray(a, np.float64) for a in (Z, y, w))
        sw = np.sqrt(w)
        Zw = (Z - np.average(Z, axis=0, weights=w)) * sw[:, None]
        yw = (y - np.average(y, weights=w)) * sw
        coefs = lars_path(Zw, yw, method="lasso", verbose=False)[2]
        chosen = np.arange(M)
        for i in range(coefs.shape[1] - 1, 0, -1):
            chosen = np.flatnonzero(coefs[:, i])
            if len(chosen) <= num_features:
                break
        mask = np.zeros(M, bool)
        mask[chosen] = True
        return mask

    return jax.pure_callback(
        host,
        jax.ShapeDtypeStruct((M,), jnp.bool_),
        features,
        outputs,
        weights,
        vmap_method="sequential",
    )
