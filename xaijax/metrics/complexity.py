"""Complexity: how concentrated are the attributions (few features, or many)?"""

# jaxtyping shape strings such as "n ..." are not Python expressions:

from __future__ import annotations

import numpy as np
from jaxtyping import ArrayLike, Float

from xaijax.core.contract import check_number
from xaijax.core.explanation import Explanation
from xaijax.metrics.attributions import attribution_array

__all__ = ["sparseness", "complexity", "effective_complexity"]


def _flat_abs(attributions) -> np.ndarray:
    a = np.abs(attributions.astype(np.float64))
    return a.reshape(a.shape[0], -1) if a.ndim > 1 else a[None]


def sparseness(
    attributions: Float[ArrayLike, "n ..."] | Explanation,
) -> Float[np.ndarray, " n"]:
    """Gini index of ``|attributions|`` per instance: 0 for uniform, ``1 - 1/d`` for one-hot.

    Args:
        attributions: ``(n, ...)`` (flattened per instance; a 1-D array is one instance), or
            an Explanation for one output (index a multi-output one first, ``exp[:, :, k]``).

    Returns:
        ``(n,)`` in ``[0, 1 - 1/d]``; an all-zero row scores 0.

    References:
        Chalasani et al., "Concise Explanations of Neural Networks using Adversarial Training",
        ICML 2020.

    Example:
        >>> sparseness([[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]).tolist()
        [0.75, 0.0]
    """
    a = np.sort(_flat_abs(attribution_array(attributions, "attributions")), axis=1)
    d = a.shape[1]
    i = np.arange(1, d + 1)
    total = a.sum(1)
    gini = ((2 * i - d - 1)[None] * a).sum(1) / (d * np.where(total > 0, total, 1.0))
    return np.where(total > 0, gini, 0.0)


def complexity(
    attributions: Float[ArrayLike, "n ..."] | Explanation,
) -> Float[np.ndarray, " n"]:
    """Entropy of the normalised ``|attributions|`` per instance: 0 for one-hot, ``log d`` uniform.

    Args:
        attributions: ``(n, ...)`` (flattened per instance; a 1-D array is one instance), or
            an Explanation for one output (index a multi-output one first, ``exp[:, :, k]``).

    Returns:
        ``(n,)`` entropies in nats; an all-zero row scores 0.

    References:
        Bhatt, Weller & Moura, "Evaluating and Aggregating Feature-based Model Explanations",
        IJCAI 2020.

    Example:
        >>> [round(v, 4) for v in complexity([[0.0, 1.0], [1.0, 1.0]]).tolist()]
        [0.0, 0.6931]
    """
    a = _flat_abs(attribution_array(attributions, "attributions"))
    total = a.sum(1, keepdims=True)
    p = a / np.where(total > 0, total, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.0 - np.where(p > 0, p * np.log(p), 0.0).sum(1)


def effective_complexity(
    attributions: Float[ArrayLike, "n ..."] | Explanation,
    *,
    eps: float = 1e-5,
    normalise: bool = True,
) -> Float[np.ndarray, " n"]:
    """How many features' ``|attributions|`` exceed ``eps``, per instance.

    With ``normalise=True`` (Quantus's default) each instance's ``|a|`` is divided by its
    maximum first, so ``eps`` is a share of the largest attribution.

    Args:
        attributions: ``(n, ...)`` (flattened per instance; a 1-D array is one instance), or
            an Explanation for one output.
        eps: the threshold, >= 0.
        normalise: divide each instance by its largest ``|a|`` first.

    Returns:
        ``(n,)`` ints in ``[0, d]``.

    References:
        Nguyen & Martínez, "On quantitative aspects of model interpretability", 2020.

    Example:
        >>> effective_complexity([[0.0, 1e-7, 0.5, 1.0]]).tolist()
        [2]
    """
    eps = check_number("eps", eps, minimum=0.0)
    a = _flat_abs(attribution_array(attributions, "attributions"))
    if normalise:
        peak = a.max(1, keepdims=True)
        a = a / np.where(peak > 0, peak, 1.0)
    return (a > eps).sum(1)
