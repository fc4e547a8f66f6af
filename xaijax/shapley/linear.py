"""Linear SHAP: the closed form of interventional Shapley values for a linear model."""

from __future__ import annotations

import numpy as np

from xaijax.core.explanation import Explanation
from xaijax.core.masking import Background
from xaijax.core.registry import explainer

__all__ = ["linear_shap"]


@explainer(kind="additive", inputs="tabular", reference="background", model_form="coefficients")
def linear_shap(
    coef, intercept, X, background, *, background_weights=None, feature_names=None
) -> Explanation:
    """Shapley values of ``f(x) = intercept + x @ coef``: ``phi_i = coef_i (x_i - E[b_i])``.

    With features treated as independent (the interventional value function of the other
    explainers), this is exact; it equals ``shap.LinearExplainer`` with an independent masker.

    Args:
        coef: ``(M,)`` for a scalar output or ``(M, K)`` for ``K`` outputs (scikit-learn's ``coef_``
            is ``(K, M)``: pass ``coef_.T``).
        intercept: ``()`` or ``(K,)``.
        X: ``(M,)`` or ``(n, M)`` instances.
        background: ``(B, M)`` rows (or a :class:`Background`), or ``(M,)`` feature means.
        background_weights: optional ``(B,)`` weights of the background rows.
        feature_names: optional ``M`` names.

    Returns:
        An :class:`Explanation` with ``values (n, M)`` or ``(n, M, K)`` and ``base_values``
        ``intercept + E[b] @ coef``.

    References:
        Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017
        (Linear SHAP).

    Example:
        >>> import numpy as np
        >>> exp = linear_shap(np.array([1.0, -2.0]), 0.5, np.array([3.0, 1.0]), np.zeros((2, 2)))
        >>> exp.values.tolist(), float(exp.base_values)
        ([3.0, -2.0], 0.5)
    """
    coef = np.asarray(coef, dtype=np.float64)
    if coef.ndim not in (1, 2):
        raise ValueError(f"coef must have shape (M,) or (M, K); got shape {coef.shape}")
    M = coef.shape[0]
    intercept = np.asarray(intercept, dtype=np.float64)
    if intercept.shape != coef.shape[1:]:
        raise ValueError(
            f"intercept must have shape {coef.shape[1:]} to match coef {coef.shape}; "
            f"got shape {intercept.shape}"
        )
    X = np.asarray(X, dtype=np.float64)
    single = X.ndim == 1
    X2 = X[None] if single else X
    if X2.ndim != 2 or X2.shape[1] != M:
        hint = " (scikit-learn's coef_ is (K, M): pass coef_.T)" if coef.ndim == 2 else ""
        raise ValueError(
            f"X must have shape (n, {M}) to match coef {coef.shape}{hint}; got shape {X.shape}"
        )
    if not np.all(np.isfinite(X2)):
        raise ValueError("X contains NaN or inf")
    if isinstance(background, Background):
        background, background_weights = background.data, background.weights
    background = np.asarray(background, dtype=np.float64)
    if background.ndim == 1:
        background = background[None]
    if background.ndim != 2 or background.shape[1] != M or background.shape[0] == 0:
        raise ValueError(f"background must have shape (B, {M}) or ({M},); got {background.shape}")
    if not np.all(np.isfinite(background)):
        raise ValueError("background contains NaN or inf")
    mean = np.average(background, axis=0, weights=background_weights)

    centred = X2 - mean
    values = centred[:, :, None] * coef[None] if coef.ndim == 2 else centred * coef
    base = np.broadcast_to(intercept + mean @ coef, (X2.shape[0],) + coef.shape[1:])
    dtype = np.float32
    values, base = values.astype(dtype), base.astype(dtype)
    output_names = None if coef.ndim == 1 else tuple(str(k) for k in range(coef.shape[1]))
    if single:
        values, base = values[0], base[0]
    return Explanation(
        values=values,
        base_values=base,
        data=X,
        feature_names=None if feature_names is None else tuple(feature_names),
        output_names=output_names,
        method="linear_shap",
    )
