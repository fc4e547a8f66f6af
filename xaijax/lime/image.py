"""LIME for images: superpixels switched on and off, a Ridge surrogate on the on/off masks.

Superpixels come from scikit-image on the host (quickshift, SLIC, felzenszwalb) or from the user.
Everything after that is compiled: random masks, perturbed images built on the device from the
segment map (a gather, no loop over samples), the model in chunks, cosine distances and the
surrogate fits. Images with different numbers of segments share one call: masks are padded to the
largest count with always-off columns, which get coefficient 0 and do not change the distances.
"""

# jaxtyping shape strings such as "n H W C" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from types import MappingProxyType

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, ArrayLike, Float, Int, Key, UInt32

from xaijax.core import contract
from xaijax.core.batching import (
    balanced_chunk,
    check_mesh,
    map_instances,
    map_row_chunks,
    over_instances,
)
from xaijax.core.explanation import Explanation
from xaijax.core.model import float_dtype
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets, check_target_fn
from xaijax.lime.labels import fitted_labels, pack_fits, resolve_labels
from xaijax.lime.selection import FEATURE_SELECTION_METHODS
from xaijax.lime.surrogate import cosine_distance, explain_with_data

__all__ = [
    "segment_images",
    "quickshift_defaults",
    "fudged_image",
    "perturb_image",
    "lime_image",
]

SEGMENTATIONS = ("quickshift", "slic", "felzenszwalb")
# The reference's default superpixels (made for images of 224 pixels and more).
QUICKSHIFT_DEFAULTS = MappingProxyType(dict(kernel_size=4, max_dist=200, ratio=0.2))
# Images at least this large get the reference's quickshift parameters; smaller ones get them
# scaled down (lime's defaults make 1 superpixel of a 32x32 image).
QUICKSHIFT_REFERENCE_SIZE = 224
# Fewer superpixels than this from a default segmentation: warn, the explanation says little.
MIN_SEGMENTS = 8


def quickshift_defaults(height: int, width: int) -> dict:
    """lime's quickshift parameters scaled to an image of ``height x width`` pixels.

    From 224 pixels (the shorter side) up, the reference's ``kernel_size=4, max_dist=200,
    ratio=0.2``. Smaller images get ``kernel_size`` and ``max_dist`` scaled by
    ``side / 224`` (``kernel_size`` at least 1), so a 32x32 image still gets tens of
    superpixels instead of one.

    Example:
        >>> quickshift_defaults(224, 300)
        {'kernel_size': 4, 'max_dist': 200, 'ratio': 0.2}
        >>> quickshift_defaults(32, 32)["kernel_size"]
        1.0
    """
    scale = min(height, width) / QUICKSHIFT_REFERENCE_SIZE
    if scale >= 1:
        return dict(QUICKSHIFT_DEFAULTS)
    return dict(
        kernel_size=max(QUICKSHIFT_DEFAULTS["kernel_size"] * scale, 1.0),
        max_dist=QUICKSHIFT_DEFAULTS["max_dist"] * scale,
        ratio=QUICKSHIFT_DEFAULTS["ratio"],
    )


def segment_images(
    images: Float[ArrayLike, "n H W 3"], method: str = "quickshift", **kwargs
) -> Int[np.ndarray, "n H W"]:
    """Superpixels ``(n, H, W)`` of ``images: (n, H, W, 3)`` by scikit-image, labelled ``0..m-1``.

    ``quickshift`` defaults to the reference's ``kernel_size=4, max_dist=200, ratio=0.2``
    for images of 224 pixels and more, scaled down for smaller ones
    (:func:`quickshift_defaults`); ``kwargs`` override them.

    Example:
        >>> import numpy as np
        >>> img = np.zeros((1, 8, 8, 3)); img[0, :, 4:] = 1.0
        >>> segment_images(img, "felzenszwalb")[0, 0].tolist()
        [0, 0, 0, 0, 1, 1, 1, 1]
    """
    from skimage import segmentation

    contract.check_choice("segmentation", method, SEGMENTATIONS)
    if method == "quickshift":
        H, W = np.shape(images)[1:3]
        kwargs = {**quickshift_defaults(H, W), **kwargs}
    fn = getattr(segmentation, method)
    return np.stack([_relabel(fn(np.asarray(img), **kwargs)) for img in images])


def _relabel(segments) -> np.ndarray:
    return np.unique(segments, return_inverse=True)[1].reshape(segments.shape).astype(np.int32)


def fudged_image(
    image: Float[ArrayLike, "H W C"],
    segments: Int[ArrayLike, "H W"],
    num_segments: int,
    hide_color: float | None = None,
    integer: bool = False,
) -> Float[Array, "H W C"]:
    """The image every hidden superpixel is replaced by: per-segment mean colour or a constant.

    Args:
        image: ``(H, W, C)``.
        segments: ``(H, W)`` int labels in ``0..num_segments-1``.
        num_segments: static upper bound on the labels.
        hide_color: ``None`` (per-segment mean, the reference default) or a constant.
        integer: truncate the means as the reference does when it writes them into an integer image.

    Returns:
        ``(H, W, C)``.

    Example:
        >>> import jax.numpy as jnp
        >>> img = jnp.array([[[0.0], [2.0], [5.0]]])  # one row of three pixels, one channel
        >>> fudged_image(img, jnp.array([[0, 0, 1]]), 2)[0, :, 0].tolist()
        [1.0, 1.0, 5.0]
    """
    image = jnp.asarray(image)
    segments = jnp.asarray(segments)
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


def perturb_image(
    image: Float[ArrayLike, "H W C"],
    fudged: Float[ArrayLike, "H W C"],
    segments: Int[ArrayLike, "H W"],
    mask: Float[ArrayLike, " m"],
) -> Float[Array, "H W C"]:
    """``image`` with the superpixels whose ``mask`` entry is 0 replaced by ``fudged``.

    Args:
        image, fudged: ``(H, W, C)``.
        segments: ``(H, W)`` int labels.
        mask: ``(m,)`` 0/1 per superpixel.

    Returns:
        ``(H, W, C)``.

    Example:
        >>> import jax.numpy as jnp
        >>> img, grey, seg = jnp.ones((1, 3, 1)), jnp.zeros((1, 3, 1)), jnp.array([[0, 0, 1]])
        >>> perturb_image(img, grey, seg, jnp.array([1.0, 0.0]))[0, :, 0].tolist()
        [1.0, 1.0, 0.0]
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
        "top",
        "kernel_width",
        "hide_color",
        "integer",
        "batch_size",
        "mesh",
    ),
)
def _explain(model, params, images, segments, counts, key, ids, *, mesh, **options):
    # options: the static keywords of _explain_images, passed through.
    def local(instances, shared):
        return _explain_images(model, shared, *instances, **options)

    return over_instances(local, (images, segments, counts, key, ids), params, mesh=mesh)


def _explain_images(
    model,
    params,
    images,
    segments,
    counts,
    key,
    ids,
    *,
    num_samples,
    num_segments,
    num_features,
    feature_selection,
    top,
    kernel_width,
    hide_color,
    integer,
    batch_size,
):
    S, m = num_samples, num_segments

    def one(args):
        # One image: its masks, the perturbed images built and evaluated batch_size at a time,
        # and the surrogate fits. Images run a few at a time (map_instances), so at most
        # batch_size perturbed images exist at once, whatever the number of images.
        image, seg, count, k, label_ids = args
        fudged = fudged_image(image, seg, m, hide_color, integer)
        # One key per segment column, so the draws do not depend on the padded width: an image
        # gets the same masks alone as in any batch.
        real = (jnp.arange(m) < count).astype(image.dtype)
        z = _columns(lambda kj: jax.random.bernoulli(kj, 0.5, (S,)), k, m).astype(image.dtype)
        z = z.at[0].set(1.0) * real[None, :]

        def run(rows):
            perturbed = jax.vmap(perturb_image, in_axes=(None, None, None, 0))(
                image, fudged, seg, z[rows]
            )
            return model.apply(params, perturbed)

        y = map_row_chunks(run, S, balanced_chunk(S, batch_size)).reshape(S, -1)
        label_ids = fitted_labels(y[0], label_ids, top)
        fits = explain_with_data(
            z,
            y[:, label_ids],
            cosine_distance(z),
            kernel_width=kernel_width,
            num_features=num_features,
            feature_selection=feature_selection,
        )
        return fits, label_ids, y[0], jnp.all(jnp.isfinite(y))

    return map_instances(one, (images, segments, counts, key, ids), S, batch_size)


@explainer(kind="surrogate", inputs="image", random=True)
def lime_image(
    f: Callable,
    images: Float[ArrayLike, "*n H W C"],
    *,
    targets: Targets = None,
    key: Key[ArrayLike, "*n"] | UInt32[ArrayLike, "*n 2"],
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    num_samples: int = 1000,
    segments: Int[ArrayLike, "*n H W"] | None = None,
    segmentation: str = "quickshift",
    segmentation_kwargs: dict | None = None,
    hide_color: float | None = None,
    labels: Sequence[int] | None = None,
    top_labels: int | None = None,
    num_features: int = 100000,
    feature_selection: str = "auto",
    kernel_width: float = 0.25,
) -> Explanation:
    """LIME superpixel attributions of an image model, as ``lime``'s ``LimeImageExplainer``.

    Per image: ``num_samples`` random on/off masks over its superpixels (the first all on), hidden
    superpixels painted with their mean colour (or ``hide_color``), the model evaluated in chunks,
    weights ``sqrt(exp(-d²/0.25²))`` of the cosine distance of each mask to all-on, and a
    Ridge(alpha=1) surrogate per label. Images with different numbers of superpixels share one
    call: masks are padded to the largest count with always-off columns, which get
    coefficient 0 and do not move the distances.

    Args:
        f: the model, ``f(images: (n, H, W, C)) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX or Equinox module, or a NumPy callable.
        images: one image ``(H, W, C)`` or a batch ``(n, H, W, C)`` (whichever the model takes).
        targets: which output to explain: ``None`` (lime's default, the 5 highest outputs per
            image: ``values (n, m, 5)``), an int, ``(n,)`` ints, or a callable on the model
            outputs (``values (n, m)``); see :mod:`xaijax.lime.labels`.
        key: a ``jax.random.key`` or raw ``PRNGKey`` (image ``i`` uses
            ``jax.random.split(key, n)[i]``), or ``(n,)`` keys, one per image.
        batch_size: most perturbed images evaluated at once (per device); ``None`` picks a
            default for the backend and the image size.
        mesh: optional :class:`jax.sharding.Mesh` (e.g. :func:`~xaijax.instance_mesh`) to shard
            the images over; the values equal the one-device call's.
        num_samples: masks per image, ``>= 2``.
        segments: integer superpixel map, ``(H, W)`` for every image or ``(n, H, W)`` one per
            image, or ``None`` to compute them with ``segmentation``.
        segmentation: ``"quickshift"`` (lime's default; its parameters scaled down for images
            under 224 pixels, :func:`quickshift_defaults`), ``"slic"`` or ``"felzenszwalb"``.
            Fewer than 8 superpixels in an image give a ``UserWarning``.
        segmentation_kwargs: keyword arguments for the scikit-image function.
        hide_color: ``None`` for per-segment means, or a finite constant colour.
        labels: lime's alias: these output indices, one column each.
        top_labels: lime's alias: the ``min(top_labels, K)`` highest outputs per image.
        num_features, feature_selection: as in :func:`xaijax.lime.explain_with_data`.
        kernel_width: kernel width ``> 0`` on the cosine distance.

    Returns:
        An :class:`Explanation` of kind ``"surrogate"``: ``values`` ``(n, m, L)`` per-segment
        weights (``m`` the largest segment count; padding segments are 0; ``(n, m)`` for one
        target), ``base_values`` the intercepts; ``extras``: ``segments`` ``(n, H, W)``,
        ``num_segments`` ``(n,)``, ``heatmap`` ``(n, H, W[, L])``, ``intercept``, ``score``,
        ``local_pred``, ``labels``, ``selected``, ``prediction``.

    Raises:
        TypeError: for arguments of the wrong type, or ``targets`` with ``labels``/
            ``top_labels``.
        ValueError: on images or segment maps of the wrong shape, values out of range (each
            named in the message), or NaN/inf model outputs on an image's perturbations.

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
    dtype = float_dtype()
    raw = np.asarray(images) if not isinstance(images, jax.Array) else images
    X = contract.as_float_array("images", raw, dtype=dtype)
    X, single, model, params = contract.split_instances_by_model(f, X, name="images")
    if X.ndim != 4:
        raise ValueError(
            f"images must be one image (H, W, C) or a batch (n, H, W, C); got shape {np.shape(raw)}"
        )
    n, H, W, C = X.shape
    data = np.asarray(raw).reshape(X.shape)
    num_samples = contract.check_int("num_samples", num_samples, minimum=2)
    num_features = contract.check_int("num_features", num_features, minimum=1)
    contract.check_choice("feature_selection", feature_selection, FEATURE_SELECTION_METHODS)
    width = contract.check_number("kernel_width", kernel_width, minimum=0.0, strict=True)
    if hide_color is not None:
        hide_color = contract.check_number("hide_color", hide_color)
    seg = _segments(segments, data, segmentation, segmentation_kwargs)
    counts = seg.reshape(n, -1).max(axis=1) + 1
    batch_size = contract.resolve_batch_size(batch_size, (H, W, C), dtype)
    mesh = check_mesh(mesh)
    plan = resolve_labels(targets, labels, top_labels, n, model.num_outputs, default_top=5)
    if plan.score is not None:
        check_target_fn(plan.score, jax.ShapeDtypeStruct((2,) + model.output_shape, dtype))
        model = model.scored_by(plan.score)
    key = contract.instance_keys(key, n)  # after every check: splitting keys compiles
    ids = plan.ids if plan.ids is not None else np.zeros((n, 1), np.int32)
    m = int(counts.max())
    fits, label_ids, prediction, finite = contract.call(
        _explain,
        model,
        params,
        jnp.asarray(X),
        jnp.asarray(seg),
        jnp.asarray(counts, jnp.int32),
        key,
        jnp.asarray(ids),
        num_samples=num_samples,
        num_segments=m,
        num_features=num_features,
        feature_selection=feature_selection,
        top=plan.top,
        kernel_width=width,
        hide_color=hide_color,
        integer=bool(np.issubdtype(data.dtype, np.integer)),
        batch_size=batch_size,
        mesh=mesh,
    )
    values = np.asarray(fits.coef)  # (n, L, m)
    heatmap = np.moveaxis(np.stack([v[:, s] for v, s in zip(values, seg, strict=True)]), 1, -1)
    extras = dict(
        segments=seg,
        num_segments=counts,
        heatmap=heatmap if plan.label_axis else heatmap[..., 0],
    )
    return pack_fits(
        fits,
        label_ids,
        prediction,
        finite,
        plan=plan,
        data=data,
        single=single,
        method="lime_image",
        feature_names=tuple(f"segment {j}" for j in range(m)),
        extras=extras,
    )


def _segments(segments, images, segmentation, segmentation_kwargs) -> np.ndarray:
    """Superpixel maps ``(n, H, W)`` labelled ``0..m-1``: the user's, checked, or scikit-image's."""
    n, H, W, C = images.shape
    if segments is None:
        contract.check_choice("segmentation", segmentation, SEGMENTATIONS)
        if segmentation_kwargs is not None and not isinstance(segmentation_kwargs, dict):
            raise TypeError(
                f"segmentation_kwargs must be a dict or None; got {type(segmentation_kwargs)}"
            )
        if C != 3:
            raise ValueError(
                f"images must have 3 channels (H, W, 3) for {segmentation} superpixels; got {C}"
                " channels (pass segments= to use another channel count)"
            )
        seg = segment_images(images, segmentation, **(segmentation_kwargs or {}))
        counts = seg.reshape(n, -1).max(axis=1) + 1
        few = np.flatnonzero(counts < MIN_SEGMENTS)
        if few.size:
            warnings.warn(
                f"segmentation={segmentation!r} found only {counts[few].tolist()[:5]} superpixels "
                f"in images {few.tolist()[:5]} (of {H}x{W} pixels): an explanation over so few "
                "segments says little. Pass segmentation_kwargs for finer superpixels (e.g. "
                "segmentation='slic', segmentation_kwargs={'n_segments': 50}) or your own "
                "segments=.",
                UserWarning,
                stacklevel=3,
            )
        return seg
    seg = np.asarray(segments)
    if seg.dtype == bool or not np.issubdtype(seg.dtype, np.integer):
        raise ValueError(
            f"segments must be an integer label map (H, W) or (n, H, W); got dtype {seg.dtype}"
        )
    if seg.shape == (H, W):
        seg = np.broadcast_to(seg, (n, H, W))
    if seg.shape != (n, H, W):
        raise ValueError(
            f"segments must have shape {(H, W)} (one map for every image) or {(n, H, W)} (one "
            f"per image) to match images of shape {images.shape}; got {np.shape(segments)}"
        )
    return np.stack([_relabel(s) for s in seg])
