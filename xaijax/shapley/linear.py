"""Linear SHAP: the closed form of interventional Shapley values for a linear model."""

# jaxtyping shape strings such as "*n m" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from jax.sharding import Mesh
from jaxtyping import ArrayLike, Float

from xaijax.core import contract
from xaijax.core.batching import check_mesh
from xaijax.core.explanation import Explanation
from xaijax.core.masking import Background, as_background
from xaijax.core.model import float_dtype
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets, resolve_targets

__all__ = ["linear_shap"]


@explainer(kind="additive", inputs="tabular", reference="background", model_form="coefficients")
def linear_shap(
    coef: Float[ArrayLike, " m"] | Float[ArrayLike, "m k"],
    intercept: float | Float[ArrayLike, ""] | Float[ArrayLike, " k"],
    X: Float[ArrayLike, "*n m"],
    background: Float[ArrayLike, "b m"] | Float[ArrayLike, " m"] | Background,
    *,
    targets: Targets = None,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    background_weights: Float[ArrayLike, " b"] | None = None,
    feature_names: Sequence[str] | None = None,
) -> Explanation:
    """Shapley values of ``f(x) = intercept + x @ coef``: ``phi_i = coef_i (x_i - E[b_i])``.

    With features treated as independent (the interventional value function of the other
    explainers), this is exact; it equals ``shap.LinearExplainer`` with an independent masker.
    Computed in float64 on the host and returned in the explainer dtype
    (:func:`~xaijax.core.model.float_dtype`: float64 under ``jax_enable_x64``, else float32).

    Args:
        coef: ``(M,)`` for a scalar output or ``(M, K)`` for ``K`` outputs (scikit-learn's ``coef_``
            is ``(K, M)``: pass ``coef_.T``).
        intercept: ``()`` or ``(K,)``.
        X: one instance ``(M,)`` or a batch ``(n, M)``.
        background: ``(B, M)`` rows (or a :class:`Background`), or ``(M,)`` feature means.
        targets: which output to explain: ``None`` (all outputs), an int or ``(n,)`` ints
            (picking those columns of ``coef``). A callable is refused: a score of a linear
            model's outputs is not linear, so it has no closed form here.
        batch_size: accepted for the one signature of every explainer and validated; no effect
            (the closed form holds ``n x M x K`` values, no model is evaluated).
        mesh: accepted and validated like ``batch_size``; no effect: the closed form is one
            host product, which sharding would only slow down.
        background_weights: optional ``(B,)`` non-negative weights of the background rows.
        feature_names: optional ``M`` names.

    Returns:
        An :class:`Explanation` of kind ``"additive"`` with ``values (n, M)`` or ``(n, M, K)``
        and ``base_values`` ``intercept + E[b] @ coef``.

    Raises:
        TypeError: non-numeric arrays, a callable ``targets``.
        ValueError: bad shapes, NaN or inf in any array, values too large for the explainer
            dtype, bad ``background_weights``, ``M = 0``.

    References:
        Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017
        (Linear SHAP).

    Example:
        >>> import numpy as np
        >>> exp = linear_shap(np.array([1.0, -2.0]), 0.5, np.array([3.0, 1.0]), np.zeros((2, 2)))
        >>> exp.values.tolist(), float(exp.base_values)
        ([3.0, -2.0], 0.5)
    """
    dtype = np.dtype(float_dtype())
    coef = _as_float64("coef", coef, dtype)
    if coef.ndim not in (1, 2):
        raise ValueError(f"coef must have shape (M,) or (M, K); got shape {coef.shape}")
    M = coef.shape[0]
    intercept = _as_float64("intercept", intercept, dtype)
    if intercept.shape != coef.shape[1:]:
        raise ValueError(
            f"intercept must have shape {coef.shape[1:]} to match coef {coef.shape}; "
            f"got shape {intercept.shape}"
        )
    X = _as_float64("X", X, dtype)
    if coef.ndim == 2 and X.ndim and X.shape[-1] != M and X.shape[-1] == coef.shape[1]:
        raise ValueError(
            f"coef must be (M, K) with M = X's {X.shape[-1]} features; got {coef.shape} "
            "(scikit-learn's coef_ is (K, M): pass coef_.T)"
        )
    if M == 0:
        raise ValueError(
            f"X must have at least one feature; got shape {X.shape} (coef has shape {coef.shape})"
        )
    if not isinstance(background, Background) and np.ndim(background) == 1:
        background = np.asarray(background)[None]  # (M,) feature means: one row
    rows, weights = as_background(background, background_weights, dtype=np.float64)
    contract.as_float_array("background", rows, dtype=dtype)  # fits the explainer dtype
    if rows.ndim != 2 or rows.shape[1] != M:
        raise ValueError(f"background must have shape (B, {M}) or ({M},); got {rows.shape}")
    X2, single = contract.split_instances(X, (M,), reference="background")
    n = X2.shape[0]
    feature_names = contract.check_names("feature_names", feature_names, M)
    K = coef.shape[1] if coef.ndim == 2 else None
    spec = resolve_targets(targets, n, K)
    if spec.fn is not None:
        raise TypeError(
            "targets must be None, an int or (n,) ints for linear_shap: a callable score of a "
            "linear model's outputs is not linear, so it has no closed form; explain "
            "lambda X: score(intercept + X @ coef) with exact_shapley or kernel_shap"
        )
    contract.resolve_batch_size(batch_size, (M,), dtype)
    check_mesh(mesh)

    mean = weights @ rows
    centred = X2 - mean[None, :]
    if K is not None and spec.indices is not None:  # one column of coef per instance
        t = np.asarray(spec.indices)
        values = centred * coef.T[t]
        base = (intercept + mean @ coef)[t]
        output_names = None
    elif K is not None:
        values = centred[:, :, None] * coef[None]
        base = np.broadcast_to(intercept + mean @ coef, (n, K))
        output_names = tuple(str(k) for k in range(K))
    else:
        values = centred * coef[None, :]
        base = np.broadcast_to(intercept + mean @ coef, (n,))
        output_names = None
    top = max(np.abs(values).max(), np.abs(base).max())
    if not top <= np.finfo(dtype).max:
        raise ValueError(
            f"coef and X give attributions too large for {dtype} (up to {top:.3g}); rescale "
            "the data or the coefficients, or enable jax_enable_x64"
        )
    return contract.pack(
        values.astype(dtype),
        base.astype(dtype),
        X2.astype(dtype),
        single=single,
        kind="additive",
        method="linear_shap",
        feature_names=feature_names,
        output_names=output_names,
        what="the linear model",
    )


def _as_float64(name: str, a, dtype) -> np.ndarray:
    """``a`` checked numeric, finite and representable in ``dtype``, as float64."""
    contract.as_float_array(name, a, dtype=dtype)
    return contract.as_float_array(name, a, dtype=np.float64)
