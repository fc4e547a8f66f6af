"""Do ProtoPNet's prototypes sit on objects? Purity of prototypes where object masks are known.

A prototype "explains" when the patch it was pushed onto is part of the object its class names
and when the training patches nearest to it come from images of that class. Both can be measured
on data with ground-truth masks (:func:`xaijax.zoo.data.synthetic_shapes`):

* localisation: the fraction of the prototype's high-activation region (the pixels at or above the
  95th percentile of its bicubically upsampled similarity map, the region the paper's figures
  box) that lies on the object mask, on its push source image and averaged over its ``k``
  nearest training images; and the distance from the map's peak to the object (a pointing game:
  a part prototype often peaks on the object's edge, a pixel or two outside its mask, while a
  flat map's top 5% is scattered over the background);
* class purity: the fraction of its ``k`` nearest training images (each image's nearest latent
  patch, all classes competing) that belong to the prototype's class, the quantity the
  paper's pruning step thresholds (:func:`xaijax.protopnet.prune_prototypes`).

The receptive-field box is reported as well, but for a small backbone on small images it can
cover the whole image (38 pixels on 32x32 for the default small CNN), so it says little there.

References:
    Chen et al. "This Looks Like That: Deep Learning for Interpretable Image Recognition."
    NeurIPS 2019, Sec. 2.2 (visualisation by upsampled activation) and the reference code's
    ``find_nearest.py`` and ``prune.py`` (k nearest patches).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xaijax.protopnet.model import ProtoPNet, log_similarity, receptive_field
from xaijax.protopnet.push import PushResult, upsample

__all__ = [
    "PrototypePurity",
    "prototype_purity",
    "nearest_images",
    "fraction_on_mask",
    "peak_distance",
]


class PrototypePurity(NamedTuple):
    """Per-prototype purity (NumPy arrays over ``P`` prototypes); :meth:`summary` averages.

    Attributes:
        on_object: ``(P,)`` fraction of the high-activation pixels on the push source image that
            lie on its object mask.
        box_on_object: ``(P,)`` fraction of the high-activation box (the gallery's box) on the
            object mask.
        rf_on_object: ``(P,)`` fraction of the receptive-field box on the object mask.
        nearest_on_object: ``(P,)`` mean of ``on_object`` over the ``k`` nearest training images.
        peak_distance: ``(P,)`` pixels from the peak of the upsampled similarity map on the
            source image to the nearest object pixel (0 on the object).
        nearest_peak_distance: ``(P, k)`` the same on each of the ``k`` nearest images.
        class_purity: ``(P,)`` fraction of the ``k`` nearest training images of the prototype's
            class.
        nearest_index: ``(P, k)`` those images (indices into the training set), nearest first.
        nearest_classes: ``(P, k)`` their classes.
        classes: ``(P,)`` each prototype's class.
        stride: pixels between neighbouring latent patches (the similarity map's resolution).
        position_peak_distance: ``(N, M)`` on every image, for each of the ``M`` latent positions
            prototypes are matched at (all but the ``border`` ring), the ``peak_distance`` of a
            map that peaks there: a prototype at a random position scores their mean, the
            chance level of ``peak_distance`` (``chance_peak_at_object`` in :meth:`summary`).
    """

    on_object: np.ndarray
    box_on_object: np.ndarray
    rf_on_object: np.ndarray
    nearest_on_object: np.ndarray
    peak_distance: np.ndarray
    nearest_peak_distance: np.ndarray
    class_purity: np.ndarray
    nearest_index: np.ndarray
    nearest_classes: np.ndarray
    classes: np.ndarray
    stride: float
    position_peak_distance: np.ndarray

    def summary(self, threshold: float = 0.5, tolerance: float | None = None) -> dict:
        """Means over prototypes, and the fractions of prototypes on the object and pure.

        A prototype is on the object when at least ``threshold`` of its high-activation pixels
        on its source image are; its peak is at the object when it lies closer than ``tolerance``
        pixels to it (default: one latent stride, the finest the similarity map resolves; on
        the source image, and ``nearest_peak_at_object`` over the nearest images); it is pure
        when at least ``threshold`` of its nearest images are of its class.
        ``chance_peak_at_object`` is what a similarity map peaking at a random matched latent
        position of a random image would score: on small images, where an object covers many
        latent positions, it is far from 0 (0.42 on the 32-pixel shapes).
        """
        tolerance = float(self.stride if tolerance is None else tolerance)
        return {
            "num_prototypes": int(self.classes.shape[0]),
            "on_object": float(np.mean(self.on_object)),
            "nearest_on_object": float(np.mean(self.nearest_on_object)),
            "class_purity": float(np.mean(self.class_purity)),
            "fraction_on_object": float(np.mean(self.on_object >= threshold)),
            "fraction_peak_at_object": float(np.mean(self.peak_distance < tolerance)),
            "nearest_peak_at_object": float(np.mean(self.nearest_peak_distance < tolerance)),
            "fraction_class_pure": float(np.mean(self.class_purity >= threshold)),
            "chance_peak_at_object": float(np.mean(self.position_peak_distance < tolerance)),
            "tolerance": tolerance,
        }


def fraction_on_mask(maps, masks, percentile: float = 95.0) -> np.ndarray:
    """Fraction of each map's pixels at or above its ``percentile`` that lie on its mask.

    Args:
        maps: ``(m, H, W)`` activation maps (upsampled to the image size).
        masks: ``(m, H, W)`` boolean object masks.
        percentile: the high-activation threshold (the paper's 95).

    Returns:
        ``(m,)`` fractions in [0, 1].

    Example:
        >>> import numpy as np
        >>> m = np.zeros((1, 4, 5)); m[0, 0, :] = 1.0  # the top row is the high region
        >>> mask = np.zeros((1, 4, 5), bool); mask[0, 0, :2] = True
        >>> fraction_on_mask(m, mask, percentile=80.0).tolist()
        [0.4]
    """
    maps = np.asarray(maps, np.float64)
    masks = np.asarray(masks, bool)
    m = maps.shape[0]
    threshold = np.percentile(maps.reshape(m, -1), percentile, axis=1)
    high = maps >= threshold[:, None, None]
    return (high & masks).sum(axis=(1, 2)) / np.maximum(high.sum(axis=(1, 2)), 1)


def peak_distance(maps, masks) -> np.ndarray:
    """Pixels from each map's maximum to the nearest pixel of its mask (0 on the mask).

    Args:
        maps: ``(m, H, W)`` activation maps (the first maximum counts on ties).
        masks: ``(m, H, W)`` boolean object masks (an empty mask gives ``inf``).

    Returns:
        ``(m,)`` Euclidean distances in pixels.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((1, 5, 5)); m[0, 0, 4] = 1.0
        >>> mask = np.zeros((1, 5, 5), bool); mask[0, 3:, 4] = True
        >>> peak_distance(m, mask).tolist()
        [3.0]
    """
    from scipy.ndimage import distance_transform_edt

    maps = np.asarray(maps)
    masks = np.asarray(masks, bool)
    out = np.full(maps.shape[0], np.inf)
    for i, (m, mask) in enumerate(zip(maps, masks, strict=True)):
        if mask.any():
            peak = np.unravel_index(np.argmax(m), m.shape)
            out[i] = distance_transform_edt(~mask)[peak]
    return out


def _position_peak_distance(config, masks) -> np.ndarray:
    """``(N, M)``: for each image and each matched latent position, the distance from the object
    to the peak of the upsampled map of a similarity peaked at that position (a one-hot map:
    the upsampling, not the prototype, decides where a latent position's peak lands)."""
    from scipy.ndimage import distance_transform_edt

    n, H = masks.shape[0], masks.shape[1]
    size, b = receptive_field(config).size, int(config.border)
    inner = [(i, j) for i in range(b, size - b) for j in range(b, size - b)]
    one_hot = np.zeros((len(inner), size, size), np.float32)
    for m, (i, j) in enumerate(inner):
        one_hot[m, i, j] = 1.0
    up = np.asarray(upsample(one_hot, H)).reshape(len(inner), -1)
    peaks = np.unravel_index(np.argmax(up, axis=1), (H, masks.shape[2]))
    out = np.full((n, len(inner)), np.inf)
    for k, mask in enumerate(masks):
        if mask.any():
            out[k] = distance_transform_edt(~mask)[peaks]
    return out


def _box_fraction(boxes, masks) -> np.ndarray:
    out = np.zeros(len(boxes))
    for i, ((y0, y1, x0, x1), mask) in enumerate(zip(boxes, masks, strict=True)):
        area = max((y1 - y0) * (x1 - x0), 1)
        out[i] = mask[y0:y1, x0:x1].sum() / area
    return out


@functools.partial(jax.jit, static_argnums=0)
def _min_distances(graphdef, state, x):
    _, min_d, d = nnx.merge(graphdef, state).forward(x)
    return min_d, d


def _distances(model: ProtoPNet, images, batch_size: int):
    """``(min_d (N, P), d (N, h, w, P))`` over the images, in batches of one compiled shape."""
    graphdef, state = nnx.split(model)
    n = images.shape[0]
    b = max(1, min(batch_size, n))
    pad = -n % b
    x = np.concatenate([images, np.zeros((pad,) + images.shape[1:], images.dtype)])
    parts = [_min_distances(graphdef, state, jnp.asarray(x[i : i + b])) for i in range(0, n, b)]
    min_d = np.concatenate([np.asarray(p[0]) for p in parts])[:n]
    d = np.concatenate([np.asarray(p[1]) for p in parts])[:n]
    return min_d, d


def nearest_images(model: ProtoPNet, images, *, k: int = 6, batch_size: int = 64):
    """The ``k`` images nearest to each prototype, by their nearest latent patch.

    As the reference's ``find_k_nearest_patches_to_prototypes``: every image contributes its one
    patch nearest to the prototype, and the ``k`` nearest of those are kept, whatever their class.

    Args:
        model: a :class:`~xaijax.protopnet.ProtoPNet`.
        images: ``(N, H, W, C)``.
        k: how many images per prototype, ``1 <= k <= N``.
        batch_size: images per compiled forward pass.

    Returns:
        ``(index (P, k), distances (P, k), distance_maps (N, h, w, P))``, nearest first.

    Example:
        >>> import jax, numpy as np
        >>> from xaijax.protopnet.model import ProtoPNetConfig
        >>> cfg = ProtoPNetConfig(img_size=24, num_classes=2, num_prototypes=2, channels=(4, 4))
        >>> net = ProtoPNet(cfg, key=jax.random.key(0))
        >>> idx, dist, maps = nearest_images(net, np.zeros((5, 24, 24, 3)), k=3)
        >>> idx.shape, maps.shape
        ((2, 3), (5, 6, 6, 2))
    """
    images = np.asarray(images, np.float32)
    k = int(k)
    if not 1 <= k <= images.shape[0]:
        raise ValueError(f"k must be in [1, {images.shape[0]}] (the number of images); got {k}")
    min_d, d = _distances(model, images, batch_size)
    index = np.argsort(min_d.T, axis=1, kind="stable")[:, :k]
    return index, np.take_along_axis(min_d.T, index, axis=1), d


def prototype_purity(
    model: ProtoPNet,
    push_result: PushResult,
    images,
    masks,
    labels,
    *,
    k: int = 6,
    percentile: float = 95.0,
    batch_size: int = 64,
) -> PrototypePurity:
    """How much each prototype sits on objects of its class, on images with object masks.

    Args:
        model: a :class:`~xaijax.protopnet.ProtoPNet` after push.
        push_result: the :class:`~xaijax.protopnet.PushResult` of its last push (its
            ``image_index`` indexes ``images``).
        images: ``(N, H, W, C)`` the training images the prototypes were pushed onto.
        masks: ``(N, H, W)`` boolean object masks of those images.
        labels: ``(N,)`` their classes.
        k: nearest training images per prototype (the paper's pruning uses 6).
        percentile: high-activation threshold of the upsampled similarity maps (the paper's 95).
        batch_size: images per compiled forward pass.

    Returns:
        :class:`PrototypePurity`; ``.summary()`` gives the means.

    Raises:
        ValueError: naming ``images``, ``masks``, ``labels``, ``push_result`` or ``k`` when
            shapes disagree or ``k`` is out of range.

    References:
        Chen et al. NeurIPS 2019, Sec. 2.2 and Sec. 3 (pruning); reference ``find_nearest.py``.

    Example:
        >>> import jax, numpy as np
        >>> from xaijax.protopnet import ProtoPNet, ProtoPNetConfig, push
        >>> from xaijax.zoo.data import synthetic_shapes
        >>> ds = synthetic_shapes(jax.random.key(0), 12, size=24, num_classes=2)
        >>> cfg = ProtoPNetConfig(img_size=24, num_classes=2, num_prototypes=2, channels=(4, 4))
        >>> net = ProtoPNet(cfg, key=jax.random.key(0))
        >>> res = push(net, ds.images, ds.labels)
        >>> pur = prototype_purity(net, res, ds.images, ds.masks, ds.labels, k=3)
        >>> pur.class_purity.shape, 0.0 <= pur.summary()["on_object"] <= 1.0
        ((2,), True)
    """
    images = np.asarray(images, np.float32)
    masks = np.asarray(masks)
    labels = np.asarray(labels)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, H, W, C); got {images.shape}")
    n, H, W = images.shape[:3]
    if masks.shape != (n, H, W):
        raise ValueError(f"masks must have shape {(n, H, W)} to match images; got {masks.shape}")
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match images; got {labels.shape}")
    masks = masks.astype(bool)
    P = int(model.prototypes[...].shape[0])
    if push_result.image_index.shape != (P,) or int(push_result.image_index.max()) >= n:
        raise ValueError(
            f"push_result must come from the last push of this model ({P} prototypes) onto "
            f"these {n} images; got image_index of shape {push_result.image_index.shape}"
        )
    source = np.asarray(push_result.image_index)
    up = np.asarray(upsample(push_result.activation, H))
    on_object = fraction_on_mask(up, masks[source], percentile)
    box_on_object = _box_fraction(push_result.high_box, masks[source])
    rf_on_object = _box_fraction(push_result.rf_box, masks[source])

    index, _, d = nearest_images(model, images, k=k, batch_size=batch_size)
    k = index.shape[1]
    # The similarity map of prototype j on each of its nearest images: (P, k, h, w).
    maps = np.moveaxis(d, -1, 0)[np.arange(P)[:, None], index]
    h, w = maps.shape[2:]
    up_near = np.asarray(upsample(log_similarity(jnp.asarray(maps.reshape(P * k, h, w))), H))
    near_masks = masks[index.reshape(-1)]
    near = fraction_on_mask(up_near, near_masks, percentile).reshape(P, k)
    near_peak = peak_distance(up_near, near_masks).reshape(P, k)
    classes = np.asarray(push_result.classes)
    nearest_classes = labels[index]
    return PrototypePurity(
        on_object=on_object,
        box_on_object=box_on_object,
        rf_on_object=rf_on_object,
        nearest_on_object=near.mean(axis=1),
        peak_distance=peak_distance(up, masks[source]),
        nearest_peak_distance=near_peak,
        class_purity=(nearest_classes == classes[:, None]).mean(axis=1),
        nearest_index=index,
        nearest_classes=nearest_classes,
        classes=classes,
        stride=float(receptive_field(model.config).jump),
        position_peak_distance=_position_peak_distance(model.config, masks),
    )
