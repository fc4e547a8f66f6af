"""Features switched off: weighted backgrounds, coalition scoring, and segment masks.

A coalition ``S`` of features is scored by the interventional value function

    v(S) = sum_b w_b f(x_S, b_{not S})

over a (weighted) background ``b``: features in ``S`` keep the explained instance's values, the
others take each background row's (:func:`coalition_values`). Superpixels and other feature
groups switch whole groups of inputs on and off; :func:`get_image_and_mask` reads the groups an
explanation ranks highest back onto the image.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.batching import balanced_chunk, map_row_chunks
from xaijax.core.contract import as_float_array
from xaijax.core.explanation import Explanation
from xaijax.core.model import Model, float_dtype

__all__ = ["Background", "as_background", "coalition_values", "get_image_and_mask"]


class Background(NamedTuple):
    """A weighted background: ``data (B, M)`` rows with ``weights (B,)`` (e.g. cluster sizes)."""

    data: Any
    weights: Any


def as_background(background, background_weights=None, *, dtype=None, name: str = "background"):
    """``(rows (B, *input_shape), weights (B,))``: a background checked, weights normalised.

    ``background`` may be rows or a :class:`Background` (then its weights are used). Weights
    must be finite and non-negative with a positive sum; they are normalised to sum to 1.

    Raises:
        TypeError: non-numeric rows or weights.
        ValueError: NaN/inf, no rows, or weights of the wrong shape or sign.

    Example:
        >>> rows, w = as_background(np.zeros((2, 3)), [1.0, 3.0])
        >>> w.tolist()
        [0.25, 0.75]
    """
    dtype = np.dtype(dtype or float_dtype())
    if isinstance(background, Background):
        if background_weights is not None:
            raise ValueError(
                f"{name} is a Background with its own weights; pass background_weights=None"
            )
        background, background_weights = background.data, background.weights
    rows = as_float_array(name, background, dtype=dtype)
    if rows.ndim == 0 or rows.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one row; got shape {rows.shape}")
    B = rows.shape[0]
    if background_weights is None:
        return rows, np.full(B, 1.0 / B, dtype)
    weights = as_float_array("background_weights", background_weights, dtype=np.float64)
    if weights.shape != (B,):
        raise ValueError(
            f"background_weights must have shape ({B},), one per {name} row; got {weights.shape}"
        )
    if np.any(weights < 0) or not weights.sum() > 0:
        raise ValueError("background_weights must be non-negative with a positive sum")
    return rows, (weights / weights.sum()).astype(dtype)


def coalition_values(
    model: Model,
    params,
    x: jax.Array,
    background: jax.Array,
    weights: jax.Array,
    masks: Callable[[jax.Array], jax.Array],
    num_masks: int,
    batch_size: int,
) -> jax.Array:
    """Score masks for one instance: ``v[s] = sum_b w_b f(where(mask_s, x, background_b))``.

    Args:
        model, params: the adapted model.
        x: ``(M,)`` the explained instance.
        background: ``(B, M)`` background rows; ``weights``: ``(B,)`` summing to 1.
        masks: maps an int array of mask indices ``(c,)`` to boolean masks ``(c, M)`` (True keeps
            ``x``'s value), so that masks can be generated on the fly instead of stored.
        num_masks: how many masks there are.
        batch_size: most rows given to the model at once: whole masks (``B`` rows each) while
            ``B <= batch_size``, else one mask at a time, its rows in chunks of ``batch_size``.

    Returns:
        ``(num_masks, *output_shape)`` coalition values.
    """
    B = background.shape[0]
    if B > batch_size:

        def one_mask(i):
            keep = masks(i[None])[0]  # (M,)

            def rows(b):
                return model.apply(params, jnp.where(keep[None, :], x[None, :], background[b]))

            y = map_row_chunks(rows, B, balanced_chunk(B, batch_size))  # (B, *output_shape)
            return jnp.einsum("b...,b->...", y, weights, precision="highest")

        return jax.lax.map(one_mask, jnp.arange(num_masks))
    # The fewest, most even chunks: the last chunk's padding is model work thrown away (2088
    # masks at 273 per chunk padded to 2184; balanced, 8 chunks of 261).
    masks_per_chunk = balanced_chunk(num_masks, max(1, int(batch_size) // B))

    def chunk(idx):
        keep = masks(idx)  # (c, M)
        rows = jnp.where(keep[:, None, :], x[None, None, :], background[None, :, :])
        y = model.apply(params, rows.reshape((-1,) + x.shape))
        y = y.reshape((idx.shape[0], B) + model.output_shape)
        return jnp.einsum("cb...,b->c...", y, weights, precision="highest")

    return map_row_chunks(chunk, num_masks, masks_per_chunk)


def get_image_and_mask(
    exp: Explanation,
    label: int,
    *,
    positive_only: bool = True,
    negative_only: bool = False,
    hide_rest: bool = False,
    num_features: int = 5,
    min_weight: float = 0.0,
):
    """The reference's ``ImageExplanation.get_image_and_mask`` for one explained image.

    Segments are ranked by ``|weight|`` (ties keep the lower segment first, as the reference's
    stable sort). With ``positive_only`` (or ``negative_only``) the first ``num_features``
    segments of that sign above ``min_weight`` are shown; otherwise the top ``num_features`` by
    magnitude, marked 1 / -1 and tinted in channel 1 / 0.

    Args:
        exp: a single-image explanation from :func:`lime_image` (``exp[i]`` of a batch).
        label: the model output index, one of ``exp.extras["labels"]``.

    Returns:
        ``(image, mask)``: ``(H, W, C)`` and ``(H, W)`` NumPy arrays.
    """
    if positive_only and negative_only:
        raise ValueError("positive_only and negative_only cannot both be True")
    labels, values = np.asarray(exp.extras["labels"]), np.asarray(exp.values)
    selected = np.asarray(exp.extras["selected"])
    if labels.ndim == 0 and values.ndim == 1:  # one target (targets=k): no label axis
        labels, values, selected = labels[None], values[:, None], selected[:, None]
    if labels.ndim != 1:
        raise ValueError("get_image_and_mask takes a single-image explanation: pass exp[i]")
    label_ids = [int(v) for v in labels]
    if label not in label_ids:
        raise ValueError(f"label {label} was not explained; explained labels: {label_ids}")
    weights = values[:, label_ids.index(label)]
    segments = np.asarray(exp.extras["segments"])
    count = int(np.asarray(exp.extras["num_segments"]))
    selected = selected[:count, label_ids.index(label)]
    order = [j for j in np.argsort(-np.abs(weights[:count]), kind="stable") if selected[j]]
    image = np.asarray(exp.data)
    temp = np.zeros(image.shape) if hide_rest else image.copy()
    mask = np.zeros(segments.shape, segments.dtype)
    if positive_only or negative_only:
        sign = 1 if positive_only else -1
        chosen = [j for j in order if sign * weights[j] > 0 and abs(weights[j]) > min_weight]
        for j in chosen[:num_features]:
            temp[segments == j] = image[segments == j]
            mask[segments == j] = 1
        return temp, mask
    for j in order[:num_features]:
        w = weights[j]
        if abs(w) < min_weight:
            continue
        mask[segments == j] = -1 if w < 0 else 1
        temp[segments == j] = image[segments == j]
        temp[segments == j, 0 if w < 0 else 1] = np.max(image)
    return temp, mask
