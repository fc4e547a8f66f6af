"""LIME for images: superpixels switched on and off, a Ridge surrogate on the on/off masks.

Superpixels come from scikit-image on the host (quickshift, SLIC, felzenszwalb) or from the user.
Everything after that is compiled: random masks, perturbed images built on the device from the
segment map (a gather, no loop over samples), the model in chunks, cosine distances and the
surrogate fits. Images with different numbers of segments share one call: masks are padded to the
largest count with always-off columns, which get coefficient 0 and do not change the distances.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.batching import map_row_chunks
from xaijax.core.contract import instance_keys
from xaijax.core.explanation import Explanation
from xaijax.core.model import as_model
from xaijax.core.registry import explainer
from xaijax.lime.selection import FEATURE_SELECTION_METHODS
from xaijax.lime.surrogate import cosine_distance, explain_with_data

__all__ = [
    "segment_images",
    "fudged_image",
    "perturb_image",
    "lime_image",
]

SEGMENTATIONS = ("quickshift", "slic", "felzenszwalb")
# The reference's default superpixels.
QUICKSHIFT_DEFAULTS = dict(kernel_size=4, max_dist=200, ratio=0.2)


def segment_images(images, method: str = "quickshift", **kwargs) -> np.ndarray:
    """Superpixels ``(n, H, W)`` of ``images: (n, H, W, 3)`` by scikit-image, labelled ``0..m-1``.

    ``quickshift`` defaults to the reference's ``kernel_size=4, max_dist=200, ratio=0.2``.
    """
    from skimage import segmentation

    if method not in SEGMENTATIONS:
        raise ValueError(f"segmentation must be one of {SEGMENTATIONS}; got {method!r}")
    if method == "quickshift":
        kwargs = {**QUICKSHIFT_DEFAULTS, **kwargs}
    fn = getattr(segmentation, method)
    return np.stack([_relabel(fn(np.asarray(img), **kwargs)) for img in images])


def _relabel(segments) -> np.ndarray:
    return np.unique(segments, return_inverse=True)[1].reshape(segments.shape).astype(np.int32)


def fudged_image(image, segments, num_segments: int, hide_color=None, integer: bool = False):
    """The image every hidden superpixel is replaced by: per-segment mean colour or a constant.

    Args:
        image: ``(H, W, C)``.
        segments: ``(H, W)`` int labels in ``0..num_segments-1``.
        num_segments: static upper bound on the labels.
        hide_color: ``None`` (per-segment mean, the reference default) or a constant.
        integer: truncate the means as the reference does when it writes them into an integer image.

    Returns:
        ``(H, W, C)``.
    """
    image = jnp.asarray(image)
    if hide_color is not None:
        return jnp.full_like(image, hide_color)
    H, W, C = image.shape
    flat, ids = image.reshape(H * W, C), segments.reshape(H * W)
    sums = jax.ops.segment_sum(flat, ids, num_segments=num_segments)
    counts = jax.ops.segment_sum(jnp.ones(H * W, image.dtype), ids, num_segments=num_segments)
    means = sums / jnp.maximum(counts, 1.0)[:, None]
    if integer:
        means = jnp.floor(means)
    return means[ids].reshape(H, W, C)


def perturb_image(image, fudged, segments, mask):
    """``image`` with the superpixels whose ``mask`` entry is 0 replaced by ``fudged``.

    Args:
        image, fudged: ``(H, W, C)``.
        segments: ``(H, W)`` int labels.
        mask: ``(m,)`` 0/1 per superpixel.

    Returns:
        ``(H, W, C)``.
    """
    on = jnp.asarray(mask)[segments] > 0
    return jnp.where(on[:, :, None], image, fudged)


def _columns(draw, key, width):
    """``(S, width)`` random columns, column ``j`` drawn from ``fold_in(key, j)``."""
    return jax.vmap(lambda j: draw(jax.random.fold_in(key, j)), out_axes=1)(jnp.arange(width))


@functools.partial(
    jax.jit,
    static_argnames=(
        "model",
        "num_samples",
        "num_segments",
        "num_features",
        "feature_selection",
        "labels",
        "top_labels",
        "kernel_width",
        "hide_color",
        "integer",
        "batch_size",
    ),
)
def _explain(
    model,
    params,
    images,
    segments,
    counts,
    key,
    *,
    num_samples,
    num_segments,
    num_features,
    feature_selection,
    labels,
    top_labels,
    kernel_width,
    hide_color,
    integer,
    batch_size,
):
    n = images.shape[0]
    S, m = num_samples, num_segments
    fudged = jax.vmap(lambda im, sg: fudged_image(im, sg, m, hide_color, integer))(images, segments)
    keys = key
    exists = (jnp.arange(m)[None, :] < counts[:, None]).astype(images.dtype)

    def masks_for(k, real):
        # One key per segment column, so the draws do not depend on the padded width: an image
        # gets the same masks alone as in any batch.
        z = _columns(lambda kj: jax.random.bernoulli(kj, 0.5, (S,)), k, m).astype(images.dtype)
        return z.at[0].set(1.0) * real[None, :]

    masks = jax.vmap(masks_for)(keys, exists)  # (n, S, m)

    def run(rows):
        i, s = rows // S, rows % S
        batch = jax.vmap(perturb_image)(images[i], fudged[i], segments[i], masks[i, s])
        return model.apply(params, batch)

    y = map_row_chunks(run, n * S, batch_size)
    y = y.reshape((n, S) + y.shape[1:])
    if y.ndim == 2:
        y = y[:, :, None]
    if top_labels is not None:
        label_ids = jnp.argsort(y[:, 0, :], axis=1, stable=True)[:, ::-1][:, :top_labels]
    else:
        label_ids = jnp.broadcast_to(jnp.asarray(labels, jnp.int32)[None, :], (n, len(labels)))
    distances = jax.vmap(cosine_distance)(masks)

    def fit_one(Z, Y, d, label):
        return explain_with_data(
            Z,
            Y[:, label],
            d,
            kernel_width=kernel_width,
            num_features=num_features,
            feature_selection=feature_selection,
        )

    fits = jax.vmap(jax.vmap(fit_one, in_axes=(None, None, None, 0)))(
        masks, y, distances, label_ids
    )
    finite = jnp.all(jnp.isfinite(y), axis=(1, 2))
    return fits, label_ids, y[:, 0, :], finite


@explainer(kind="surrogate", inputs="image", random=True)
def lime_image(
    f,
    images,
    *,
    key,
    num_samples: int = 1000,
    segments=None,
    segmentation: str = "quickshift",
    segmentation_kwargs: dict | None = None,
    hide_color: float | None = None,
    labels: Sequence[int] | None = None,
    top_labels: int | None = 5,
    num_features: int = 100000,
    feature_selection: str = "auto",
    kernel_width: float = 0.25,
    batch_size: int = 64,
) -> Explanation:
    """LIME superpixel attributions of an image model, as ``lime``'s ``LimeImageExplainer``.

    Per image: ``num_samples`` random on/off masks over its superpixels (the first all on), hidden
    superpixels painted with their mean colour (or ``hide_color``), the model evaluated in chunks,
    weights ``sqrt(exp(-d²/0.25²))`` of the cosine distance of each mask to all-on, and a
    Ridge(alpha=1) surrogate per label.

    Args:
        f: model ``(n, H, W, C) -> (n, K)`` or ``(n,)``.
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        key: a ``jax.random.key`` (split over the instances), or ``(n,)`` keys, one per
            instance; the same key gives the same explanation.
        num_samples: masks per image.
        segments: ``(n, H, W)`` / ``(H, W)`` integer superpixel map, or ``None`` to compute one.
        segmentation: ``"quickshift"`` (reference default), ``"slic"`` or ``"felzenszwalb"``.
        segmentation_kwargs: keyword arguments for the scikit-image function.
        hide_color: ``None`` for per-segment means, or a constant colour.
        labels: outputs to explain; used when ``top_labels`` is ``None``.
        top_labels: explain the ``top_labels`` highest outputs per image (reference default 5).
        num_features, feature_selection: as in :func:`xaijax.lime.explain_with_data`.
        kernel_width: kernel width on the cosine distance.
        batch_size: perturbed images per model call.

    Returns:
        An :class:`Explanation` with ``values`` ``(n, m, L)`` per-segment weights (``m`` the
        largest segment count; padding segments are 0), ``base_values`` the intercepts and
        ``extras``: ``segments`` ``(n, H, W)``, ``num_segments`` ``(n,)``, ``heatmap``
        ``(n, H, W, L)``, ``intercept``, ``score``, ``local_pred``, ``labels`` ``(n, L)``,
        ``selected`` ``(n, m, L)``, ``prediction``.

    Raises:
        ValueError: on an image or segment map of the wrong shape, a wrong number of channels,
            or NaN model outputs.

    References:
        Ribeiro, Singh & Guestrin, "Why Should I Trust You?": Explaining the Predictions of Any
        Classifier, KDD 2016.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> img = np.random.default_rng(0).random((16, 16, 3))
        >>> seg = np.repeat(np.repeat(np.arange(4).reshape(2, 2), 8, 0), 8, 1)
        >>> f = lambda X: jnp.stack([X[..., 0].mean((1, 2)), X[..., 1].mean((1, 2))], axis=1)
        >>> exp = lime_image(f, img, key=jax.random.key(0), num_samples=50, segments=seg)
        >>> exp.values.shape, exp.extras["heatmap"].shape
        ((4, 2), (16, 16, 2))
    """
    images = np.asarray(images)
    single = images.ndim == 3
    batch = images[None] if single else images
    if batch.ndim != 4:
        raise ValueError(f"images must have shape (n, H, W, C) or (H, W, C); got {images.shape}")
    n, H, W, C = batch.shape
    if not np.all(np.isfinite(batch)):
        raise ValueError("images must be finite (no NaN or inf)")
    key = instance_keys(key, n)
    if segments is None:
        if C != 3:
            raise ValueError(
                f"images must have 3 channels (H, W, 3) for {segmentation} superpixels; got {C}"
                " channels (pass segments= to use another channel count)"
            )
        seg = segment_images(batch, segmentation, **(segmentation_kwargs or {}))
    else:
        seg = np.asarray(segments)
        seg = seg[None] if seg.ndim == 2 else seg
        if seg.shape != (n, H, W):
            raise ValueError(
                f"segments must have shape {(n, H, W)} (or {(H, W)} for one image) to match "
                f"images {images.shape}; got {np.shape(segments)}"
            )
        if not np.issubdtype(seg.dtype, np.integer):
            raise ValueError(f"segments must be an integer label map; got dtype {seg.dtype}")
        seg = np.stack([_relabel(s) for s in seg])
    counts = seg.reshape(n, -1).max(axis=1) + 1
    m = int(counts.max())
    if int(num_samples) < 2:
        raise ValueError(f"num_samples must be >= 2; got {num_samples}")
    if feature_selection not in FEATURE_SELECTION_METHODS:
        raise ValueError(
            f"feature_selection must be one of {FEATURE_SELECTION_METHODS}; "
            f"got {feature_selection!r}"
        )
    model, params = as_model(f, batch[:1].astype(np.float32))
    K = model.num_outputs
    if top_labels is not None and K is not None:
        top, label_tuple = min(int(top_labels), K), None
    else:
        label_tuple = tuple(range(K or 1)) if labels is None else tuple(int(i) for i in labels)
        if not label_tuple or not all(0 <= i < (K or 1) for i in label_tuple):
            raise ValueError(f"labels must be output indices in 0..{(K or 1) - 1}; got {labels}")
        top = None
    dtype = jnp.zeros((), dtype=float).dtype
    fits, label_ids, prediction, finite = _explain(
        model,
        params,
        jnp.asarray(batch, dtype),
        jnp.asarray(seg),
        jnp.asarray(counts),
        key,
        num_samples=int(num_samples),
        num_segments=m,
        num_features=int(num_features),
        feature_selection=feature_selection,
        labels=label_tuple,
        top_labels=top,
        kernel_width=float(kernel_width),
        hide_color=None if hide_color is None else float(hide_color),
        integer=bool(np.issubdtype(batch.dtype, np.integer)),
        batch_size=int(batch_size),
    )
    if not bool(np.all(np.asarray(finite))):
        bad = np.flatnonzero(~np.asarray(finite)).tolist()
        raise ValueError(f"f returned NaN or inf outputs on the perturbations of images {bad}")
    values = jnp.moveaxis(fits.coef, 1, 2)  # (n, m, L)
    heatmap = jax.vmap(lambda v, s: v[s])(values, jnp.asarray(seg))  # (n, H, W, L)
    extras = dict(
        segments=seg,
        num_segments=counts,
        heatmap=heatmap,
        intercept=fits.intercept,
        score=fits.score,
        local_pred=fits.local_pred,
        labels=label_ids,
        selected=jnp.moveaxis(fits.selected, 1, 2),
        prediction=prediction,
    )
    L = values.shape[2]
    output_names = tuple(f"top{i}" for i in range(L)) if top else tuple(map(str, label_tuple))
    exp = Explanation(
        values=values,
        base_values=fits.intercept,
        data=batch,
        feature_names=tuple(f"segment {j}" for j in range(m)),
        output_names=output_names,
        method="lime_image",
        kind="surrogate",
        extras=extras,
    )
    return exp[0] if single else exp
