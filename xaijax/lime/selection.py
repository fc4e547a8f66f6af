"""LIME's feature selection: which features each local surrogate may use.

Each selector returns a boolean mask ``(M,)`` of the chosen features, so the number of features
stays static under ``jit``; the surrogate is then fitted on the masked design, whose all-zero
columns get coefficient exactly 0 (see :func:`xaijax.core.lstsq.weighted_lstsq`).

References:
    Ribeiro, Singh & Guestrin, "Why Should I Trust You?": Explaining the Predictions of Any
    Classifier, KDD 2016.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.lstsq import precise, ridge_from_moments, weighted_moments

__all__ = [
    "FEATURE_SELECTION_METHODS",
    "select_features",
    "forward_selection",
    "highest_weights",
    "lasso_path_selection",
]

FEATURE_SELECTION_METHODS = ("auto", "forward_selection", "highest_weights", "lasso_path", "none")


@precise
def forward_selection(features, outputs, weights, num_features: int, moments=None):
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
        moments: their :func:`weighted_moments`, when already at hand.

    Returns:
        Boolean mask ``(M,)``.
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
def highest_weights(features, outputs, weights, num_features: int, moments=None):
    """Select the ``num_features`` largest ``|coef_j * features[0, j]|`` of a Ridge(0.01) fit.

    Row 0 is the explained instance (LIME's convention); ties keep the lower index first.

    Returns:
        Boolean mask ``(M,)``.
    """
    features = jnp.asarray(features)
    if moments is None:
        moments = weighted_moments(features, outputs, weights)
    coef = ridge_from_moments(moments, 0.01)[0]
    order = jnp.argsort(-jnp.abs(coef * features[0]), stable=True)
    return jnp.zeros(features.shape[1], bool).at[order[:num_features]].set(True)


def select_features(features, outputs, weights, num_features: int, method: str, moments=None):
    """LIME's feature selection: a boolean mask ``(M,)`` of the features the surrogate may use.

    Args:
        features: ``(S, M)`` interpretable features, row 0 the explained instance.
        outputs: ``(S,)`` model outputs.
        weights: ``(S,)`` kernel weights.
        num_features: how many features to keep (static).
        method: ``"auto"`` (forward selection when ``num_features <= 6``, else highest weights),
            ``"forward_selection"``, ``"highest_weights"``, ``"lasso_path"`` or ``"none"`` (all).
        moments: the :func:`weighted_moments` of the arrays, when already at hand.

    References:
        Ribeiro, Singh & Guestrin, "Why Should I Trust You?": Explaining the Predictions of Any
        Classifier, KDD 2016.
    """
    M = jnp.shape(features)[1]
    if method == "auto":
        method = "forward_selection" if num_features <= 6 else "highest_weights"
    if method == "none":
        return jnp.ones(M, bool)
    if method == "forward_selection":
        return forward_selection(features, outputs, weights, num_features, moments)
    if method == "highest_weights":
        return highest_weights(features, outputs, weights, num_features, moments)
    if method == "lasso_path":
        return lasso_path_selection(features, outputs, weights, num_features)
    raise ValueError(
        f"feature_selection must be one of {FEATURE_SELECTION_METHODS}; got {method!r}"
    )


@precise
def lasso_path_selection(features, outputs, weights, num_features: int):
    """The features active at the last knot of the weighted lasso (LARS) path with at most
    ``num_features`` of them, as LIME's ``lasso_path`` selection.

    The LARS path is piecewise and data-dependent in length, so it runs on the host (scikit-learn's
    ``lars_path``, the reference's own solver, in float64) through ``jax.pure_callback``; it works
    under ``jit`` and ``vmap`` (one host call per fit).

    Returns:
        Boolean mask ``(M,)``.
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
