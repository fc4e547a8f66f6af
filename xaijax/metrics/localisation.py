"""Localisation: does a saliency map point at the object a ground-truth mask marks?

:func:`pointing_game` and :func:`energy_in_mask` score ``(n, H, W)`` maps; the Quantus family
(:func:`attribution_localisation`, :func:`top_k_intersection`, :func:`relevance_rank_accuracy`,
:func:`relevance_mass_accuracy`, :func:`auc`, :func:`focus`) scores attributions of any shape
``(n, ...)`` against masks of the same shape (or without the trailing channel axis), one score per
instance; an empty mask scores NaN, as in Quantus.
"""

# jaxtyping shape strings such as "n H W" are not Python expressions:

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Bool, Float

from xaijax.core.contract import check_number
from xaijax.core.explanation import Explanation
from xaijax.metrics.attributions import attribution_array

__all__ = [
    "pointing_game",
    "energy_in_mask",
    "attribution_localisation",
    "top_k_intersection",
    "relevance_rank_accuracy",
    "relevance_mass_accuracy",
    "auc",
    "focus",
]


def _check_masks(saliency, masks):
    saliency = attribution_array(saliency, "saliency")
    masks = np.asarray(masks)
    if saliency.ndim != 3:
        raise ValueError(f"saliency must have shape (n, H, W); got shape {saliency.shape}")
    if masks.shape != saliency.shape:
        raise ValueError(
            f"masks must have shape {saliency.shape} like saliency; got shape {masks.shape}"
        )
    return saliency, masks.astype(bool)


def pointing_game(
    saliency: Float[ArrayLike, "n H W"] | Explanation,
    masks: Bool[ArrayLike, "n H W"],
    *,
    tolerance: float = 0.0,
) -> Bool[np.ndarray, " n"]:
    """Whether each map's maximum lies on the object (within ``tolerance`` pixels): ``(n,)`` bool.

    Args:
        saliency: ``(n, H, W)`` maps, or a batched Explanation with such values.
        masks: ``(n, H, W)`` ground-truth object masks.
        tolerance: radius in pixels around the maximum, >= 0 (Zhang et al. use 15 at 224 px).

    Returns:
        ``(n,)`` bool: a hit for each image.

    References:
        Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((1, 4, 4), bool); m[0, 1, 1] = True
        >>> pointing_game(m.astype(float), m).tolist(), pointing_game(1 - m, m).tolist()
        ([True], [False])
    """
    saliency, masks = _check_masks(saliency, masks)
    tolerance = check_number("tolerance", tolerance, minimum=0.0)
    return np.asarray(_pointing(jnp.asarray(saliency), jnp.asarray(masks), tolerance))


@jax.jit
def _pointing(saliency, masks, tolerance):
    n, H, W = saliency.shape
    flat = jnp.argmax(saliency.reshape(n, -1), axis=1)
    py, px = flat // W, flat % W
    yy, xx = jnp.mgrid[0:H, 0:W]
    d2 = (yy[None] - py[:, None, None]) ** 2 + (xx[None] - px[:, None, None]) ** 2
    return jnp.any(masks & (d2 <= tolerance**2), axis=(1, 2))


def energy_in_mask(
    saliency: Float[ArrayLike, "n H W"] | Explanation, masks: Bool[ArrayLike, "n H W"]
) -> Float[np.ndarray, " n"]:
    """Share of each map's positive mass that falls on the object: ``(n,)`` in [0, 1].

    A map with no positive mass scores 0.

    Args:
        saliency: ``(n, H, W)`` maps, or a batched Explanation with such values.
        masks: ``(n, H, W)`` ground-truth object masks.

    Returns:
        ``(n,)`` floats in [0, 1].

    References:
        Wang et al., "Score-CAM", CVPR Workshops 2020 (energy-based pointing game).

    Example:
        >>> import numpy as np
        >>> m = np.zeros((1, 2, 2), bool); m[0, 0] = True
        >>> energy_in_mask(np.ones((1, 2, 2)), m).tolist()
        [0.5]
    """
    saliency, masks = _check_masks(saliency, masks)
    pos = np.maximum(saliency, 0.0)
    total = pos.sum(axis=(1, 2))
    inside = (pos * masks).sum(axis=(1, 2))
    return np.where(total > 0, inside / np.where(total > 0, total, 1.0), 0.0)


# -- the Quantus family: attributions (n, ...) against masks of the same shape --------------------
def _flat_pair(attributions, masks) -> tuple[np.ndarray, np.ndarray]:
    """``(n, d)`` float64 attributions and ``(n, d)`` bool masks, checked."""
    a = attribution_array(attributions, "attributions", dtype=np.float64)
    masks = np.asarray(masks)
    if masks.dtype.kind not in "biuf":
        raise TypeError(f"masks must be boolean (or 0/1 numbers); got dtype {masks.dtype}")
    if a.ndim >= 3 and masks.shape == a.shape[:-1]:  # (n, H, W) masks for (n, H, W, C) maps
        masks = np.broadcast_to(masks[..., None], a.shape)
    if masks.shape != a.shape:
        raise ValueError(
            f"masks must have the attributions' shape {a.shape} (or {a.shape[:-1]} without "
            f"the channel axis); got shape {masks.shape}"
        )
    n = a.shape[0]
    return a.reshape(n, -1), masks.reshape(n, -1).astype(bool)


def _nan_where_empty(scores: np.ndarray, masks: np.ndarray) -> np.ndarray:
    return np.where(masks.any(axis=1), scores, np.nan)


def attribution_localisation(
    attributions: Float[ArrayLike, "n ..."] | Explanation,
    masks: Bool[ArrayLike, "n ..."],
    *,
    weighted: bool = False,
    absolute: bool = True,
) -> Float[np.ndarray, " n"]:
    """Share of the attribution mass that lies inside the mask (Kohlbrenner et al. 2020).

    ``mu = sum_{i in mask} r_i / sum_i r_i`` with ``r = |a|`` (``absolute=True``, Quantus's
    default) or the positive part ``max(a, 0)`` (``absolute=False``, the paper's positive
    relevance). ``weighted=True`` divides by the mask's share of the input, ``mu * d / |mask|``,
    so that a uniform map scores 1 whatever the object's size (the paper's ``mu_w``).

    Differs from Quantus 0.6 only with ``weighted=True``: Quantus multiplies by the mask's share
    instead of dividing, and computes that share over ``x_batch[2:]`` (the batch less its first
    two instances), so its weighted score depends on the batch size.

    Args:
        attributions: ``(n, ...)`` attributions or a batched Explanation for one output.
        masks: ``(n, ...)`` bool ground truth of the same shape (or without the channel axis).
        weighted: divide by the mask's share of the input.
        absolute: score ``|a|`` (True) or the positive part (False).

    Returns:
        ``(n,)`` floats in [0, 1] (unweighted); NaN for an empty mask; 0 for no mass.

    References:
        Kohlbrenner et al., "Towards Best Practice in Explaining Neural Network Decisions with
        LRP", IJCNN 2020.

    Example:
        >>> import numpy as np
        >>> m = np.array([[True, False, False, False]])
        >>> attribution_localisation([[3.0, -1.0, 0.0, 0.0]], m).tolist()
        [0.75]
        >>> attribution_localisation(np.ones((1, 4)), m, weighted=True).tolist()
        [1.0]
    """
    a, m = _flat_pair(attributions, masks)
    r = np.abs(a) if absolute else np.maximum(a, 0.0)
    total = r.sum(1)
    score = (r * m).sum(1) / np.where(total > 0, total, 1.0)
    if weighted:
        score = score * m.shape[1] / np.maximum(m.sum(1), 1)
    return _nan_where_empty(score, m)


def _descending(a: np.ndarray) -> np.ndarray:
    """Feature indices by decreasing attribution, ties in index order (a stable sort)."""
    return np.argsort(-a, axis=1, kind="stable")


def top_k_intersection(
    attributions: Float[ArrayLike, "n ..."] | Explanation,
    masks: Bool[ArrayLike, "n ..."],
    *,
    k: int = 1000,
    concept_influence: bool = False,
) -> Float[np.ndarray, " n"]:
    """Fraction of the ``k`` highest-attributed features that lie inside the mask.

    ``concept_influence=True`` divides by the mask's share of the input (the score of a random
    map is then about 1). Features are ranked by their signed attribution.

    Args:
        attributions: ``(n, ...)`` attributions or a batched Explanation for one output.
        masks: ``(n, ...)`` bool ground truth of the same shape (or without the channel axis).
        k: how many top features (Quantus's default 1000; all ``d`` features when ``k > d``).
        concept_influence: divide by ``|mask| / d``.

    Returns:
        ``(n,)`` floats; NaN for an empty mask.

    References:
        Theiner, Müller-Budack & Ewerth, "Interpretable Semantic Photo Geolocation", WACV 2022.

    Example:
        >>> import numpy as np
        >>> m = np.array([[True, True, False, False]])
        >>> top_k_intersection([[0.9, 0.1, 0.5, 0.0]], m, k=2).tolist()
        [0.5]
    """
    a, m = _flat_pair(attributions, masks)
    d = a.shape[1]
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive int; got {k!r}")
    top = np.take_along_axis(m, _descending(a)[:, : min(k, d)], axis=1)
    score = top.mean(1)
    if concept_influence:
        score = score * d / np.maximum(m.sum(1), 1)
    return _nan_where_empty(score, m)


def relevance_rank_accuracy(
    attributions: Float[ArrayLike, "n ..."] | Explanation, masks: Bool[ArrayLike, "n ..."]
) -> Float[np.ndarray, " n"]:
    """Fraction of the ``K = |mask|`` highest-attributed features that lie inside the mask.

    Args:
        attributions: ``(n, ...)`` attributions or a batched Explanation for one output.
        masks: ``(n, ...)`` bool ground truth of the same shape (or without the channel axis).

    Returns:
        ``(n,)`` floats in [0, 1]; NaN for an empty mask.

    References:
        Arras, Osman & Samek, "CLEVR-XAI: A benchmark dataset for the ground truth evaluation of
        neural network explanations", Information Fusion 2022.

    Example:
        >>> import numpy as np
        >>> m = np.array([[True, True, False, False]])
        >>> relevance_rank_accuracy([[0.9, 0.1, 0.5, 0.0]], m).tolist()
        [0.5]
    """
    a, m = _flat_pair(attributions, masks)
    K = m.sum(1, keepdims=True)
    in_mask = np.take_along_axis(m, _descending(a), axis=1)
    first_K = np.arange(a.shape[1])[None] < K
    score = (in_mask & first_K).sum(1) / np.maximum(K[:, 0], 1)
    return _nan_where_empty(score, m)


def relevance_mass_accuracy(
    attributions: Float[ArrayLike, "n ..."] | Explanation,
    masks: Bool[ArrayLike, "n ..."],
    *,
    positive: bool = False,
) -> Float[np.ndarray, " n"]:
    """Share of the total attribution that lies inside the mask: ``R_within / R_total``.

    With ``positive=True`` only the positive part counts (CLEVR-XAI's pixel relevance is
    pooled positive relevance); the default sums the attributions as given, as Quantus does
    (a signed map can then score outside [0, 1]).

    Args:
        attributions: ``(n, ...)`` attributions or a batched Explanation for one output.
        masks: ``(n, ...)`` bool ground truth of the same shape (or without the channel axis).
        positive: keep only the positive part of the attributions.

    Returns:
        ``(n,)`` floats; NaN for an empty mask, or for no mass at all (0 / 0).

    References:
        Arras, Osman & Samek, "CLEVR-XAI", Information Fusion 2022.

    Example:
        >>> import numpy as np
        >>> m = np.array([[True, False, False, False]])
        >>> relevance_mass_accuracy([[3.0, 1.0, 0.0, 0.0]], m).tolist()
        [0.75]
    """
    a, m = _flat_pair(attributions, masks)
    if positive:
        a = np.maximum(a, 0.0)
    total = a.sum(1)
    score = np.where(total != 0, (a * m).sum(1) / np.where(total != 0, total, 1.0), np.nan)
    return _nan_where_empty(score, m)


def auc(
    attributions: Float[ArrayLike, "n ..."] | Explanation, masks: Bool[ArrayLike, "n ..."]
) -> Float[np.ndarray, " n"]:
    """Area under the ROC curve of the attributions as a detector of the mask's features.

    The Mann-Whitney form ``(sum of the mask features' ranks - P(P+1)/2) / (P N)`` with tied
    attributions sharing their mean rank, which equals the trapezoidal area under scikit-learn's
    ``roc_curve`` (what Quantus computes, one instance at a time).

    Args:
        attributions: ``(n, ...)`` attributions or a batched Explanation for one output.
        masks: ``(n, ...)`` bool ground truth of the same shape (or without the channel axis).

    Returns:
        ``(n,)`` floats in [0, 1] (0.5 for an uninformative map); NaN for an empty mask or a
        mask covering every feature.

    References:
        Fawcett, "An introduction to ROC analysis", Pattern Recognition Letters 2006.

    Example:
        >>> import numpy as np
        >>> m = np.array([[True, True, False, False]])
        >>> auc([[0.9, 0.1, 0.5, 0.0]], m).tolist()
        [0.75]
    """
    a, m = _flat_pair(attributions, masks)
    P = m.sum(1)
    N = m.shape[1] - P
    import scipy.stats  # here, not at import: scipy.stats alone takes ~0.9 s to import

    rank_sum = (scipy.stats.rankdata(a, axis=1) * m).sum(1)  # ties share their mean rank
    with np.errstate(divide="ignore", invalid="ignore"):
        score = (rank_sum - P * (P + 1) / 2.0) / (P * N)
    return np.where((P > 0) & (N > 0), score, np.nan)


def focus(
    attributions: Float[ArrayLike, "n H W"] | Explanation,
    quadrants: Bool[ArrayLike, "n 4"],
) -> Float[np.ndarray, " n"]:
    """Share of the positive attribution on the mosaic's quadrants of the target class.

    A mosaic tiles four images 2 x 2 (two of the target class); ``quadrants[i]`` says which of
    top-left, top-right, bottom-left, bottom-right show the target class. Attributions
    ``(n, H, W)`` or ``(n, H, W, C)``, channels last; odd sizes split at ``H // 2``, ``W // 2``.

    Args:
        attributions: ``(n, H, W[, C])`` maps of the mosaics or a batched Explanation.
        quadrants: ``(n, 4)`` bool, the target class's quadrants.

    Returns:
        ``(n,)`` floats in [0, 1]; 0 for a map with no positive mass.

    References:
        Arias-Duart et al., "Focus! Rating XAI Methods and Finding Biases", FUZZ-IEEE 2022.

    Example:
        >>> import numpy as np
        >>> a = np.zeros((1, 4, 4)); a[0, :2, :2] = 1.0; a[0, 2:, 2:] = 1.0
        >>> focus(a, [[True, False, False, False]]).tolist()
        [0.5]
    """
    a = attribution_array(attributions, "attributions", dtype=np.float64)
    if a.ndim not in (3, 4):
        raise ValueError(f"attributions must have shape (n, H, W[, C]); got shape {a.shape}")
    quadrants = np.asarray(quadrants)
    if quadrants.shape != (a.shape[0], 4):
        raise ValueError(
            f"quadrants must have shape ({a.shape[0]}, 4) (top-left, top-right, bottom-left, "
            f"bottom-right); got shape {quadrants.shape}"
        )
    pos = np.maximum(a, 0.0)  # clipped per element, then summed over channels (as Quantus)
    if pos.ndim == 4:
        pos = pos.sum(-1)
    h, w = a.shape[1] // 2, a.shape[2] // 2
    mass = np.stack(
        [
            pos[:, :h, :w].sum((1, 2)),
            pos[:, :h, w:].sum((1, 2)),
            pos[:, h:, :w].sum((1, 2)),
            pos[:, h:, w:].sum((1, 2)),
        ],
        axis=1,
    )
    total = mass.sum(1)
    return np.where(
        total > 0, (mass * quadrants.astype(bool)).sum(1) / np.where(total > 0, total, 1.0), 0.0
    )
