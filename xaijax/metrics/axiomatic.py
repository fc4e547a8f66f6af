"""Axiomatic properties: do the attributions satisfy what their method promises?"""

# jaxtyping shape strings such as "*n" are not Python expressions:

from __future__ import annotations

import numpy as np
from jaxtyping import ArrayLike, Float

from xaijax.core.contract import as_float_array
from xaijax.core.explanation import Explanation, require_kind

__all__ = ["local_accuracy_gap"]


def local_accuracy_gap(
    exp: Explanation, outputs: Float[ArrayLike, "*n *k"]
) -> Float[np.ndarray, "*n *k"]:
    """``|sum_i values_i + base_value - f(x)|`` per instance (and output): completeness violation.

    The values are summed over all feature axes (``(M,)`` rows, ``(H, W, C)`` images), in
    float64. Local accuracy (Shapley values, Deep SHAP) and completeness (Integrated Gradients)
    say the gap is 0; for a ``"path"`` explanation it is the reported quadrature error.

    Args:
        exp: an Explanation of kind ``"additive"`` or ``"path"``, batched or one instance.
        outputs: the model's outputs on ``exp.data`` after the link, shaped like
            ``exp.base_values``: ``(n,)`` / ``(n, K)``, or ``()`` / ``(K,)`` for one instance.

    Returns:
        The gaps, shaped like ``exp.base_values``.

    Raises:
        TypeError: for maps, surrogate coefficients and prototype evidence, whose values are not
            meant to add up to the output.
        ValueError: if ``outputs`` is not shaped like ``exp.base_values`` or is not finite.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> e = Explanation(np.array([[1.0, 2.0]]), np.array([0.5]), np.zeros((1, 2)))
        >>> local_accuracy_gap(e, np.array([3.5])).tolist()
        [0.0]
    """
    require_kind(exp, ("additive", "path"), "local_accuracy_gap")
    values = np.asarray(exp.values, np.float64)
    lead = 1 if exp.is_batched else 0
    feature_axes = tuple(range(lead, lead + len(exp.feature_shape)))
    total = values.sum(axis=feature_axes) + np.asarray(exp.base_values, np.float64)
    outputs = as_float_array("outputs", outputs, dtype=np.float64)
    if outputs.shape != total.shape:
        raise ValueError(
            f"outputs must have shape {total.shape} like base_values; got shape {outputs.shape}"
        )
    return np.abs(total - outputs)
