"""Localisation: does a saliency map point at the object a ground-truth mask marks?"""

# jaxtyping shape strings such as "n H W" are not Python expressions:

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Bool, Float

from xaijax.core.contract import check_number
from xaijax.core.explanation import Explanation
from xaijax.metrics.attributions import attribution_array

__all__ = ["pointing_game", "energy_in_mask"]


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
