"""Prototype push: move each prototype onto the nearest latent patch of an image of its class.

References:
    Chen et al. "This Looks Like That: Deep Learning for Interpretable Image Recognition."
    NeurIPS 2019, Sec. 2.2 ("projection of prototypes"); reference code ``push.py`` and
    ``find_high_activation.py``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xaijax.protopnet.model import ProtoPNet, log_similarity, receptive_field

__all__ = ["PushResult", "nearest_patches", "push", "high_activation_box", "upsample"]


class PushResult(NamedTuple):
    """Where every prototype was pushed to (NumPy arrays, ``P`` prototypes).

    Attributes:
        prototypes: ``(P, D)`` the new prototype vectors (latent patches).
        distances: ``(P,)`` distance from the old prototype to the chosen patch.
        image_index: ``(P,)`` index of the source training image.
        position: ``(P, 2)`` latent ``(row, col)`` of the patch.
        rf_box: ``(P, 4)`` pixel box ``(y0, y1, x0, x1)`` (end exclusive) of its receptive field.
        activation: ``(P, h, w)`` the prototype's similarity map on its source image.
        high_box: ``(P, 4)`` box around the top 5% of the bicubically upsampled similarity map.
        classes: ``(P,)`` class of every prototype.
    """

    prototypes: np.ndarray
    distances: np.ndarray
    image_index: np.ndarray
    position: np.ndarray
    rf_box: np.ndarray
    activation: np.ndarray
    high_box: np.ndarray
    classes: np.ndarray


def upsample(maps, size: int):
    """Bicubic upsampling of ``(n, h, w)`` maps to ``(n, size, size)`` (as cv2 cubic, reference)."""
    maps = jnp.asarray(maps, jnp.float32)
    return jax.image.resize(maps, (maps.shape[0], size, size), "cubic")


def high_activation_box(activation_map: np.ndarray, percentile: float = 95.0):
    """Box ``(y0, y1, x0, x1)`` (end exclusive) around the pixels at or above ``percentile``.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((10, 10)); m[2:4, 5:8] = 1.0
        >>> high_activation_box(m)
        (2, 4, 5, 8)
    """
    m = np.asarray(activation_map)
    mask = m >= np.percentile(m, percentile)
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _check(images, labels, num_classes, img_size, in_channels):
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    if images.ndim != 4 or images.shape[1:] != (img_size, img_size, in_channels):
        raise ValueError(
            f"images must have shape (n, {img_size}, {img_size}, {in_channels}); got {images.shape}"
        )
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must have shape ({images.shape[0]},); got {labels.shape}")
    missing = sorted(set(range(num_classes)) - set(labels.tolist()))
    if missing:
        raise ValueError(
            f"labels has no image of classes {missing}: their prototypes cannot be pushed"
        )
    return images, labels.astype(np.int32)


def nearest_patches(graphdef, state, images, labels, *, batch_size: int = 64):
    """For every prototype, the nearest latent patch among images of its own class.

    A jitted ``lax.scan`` over fixed-size batches keeps the running best per prototype on device.

    Args:
        graphdef, state: ``nnx.split(model)`` of a :class:`ProtoPNet`.
        images: ``(N, H, W, C)`` training images.
        labels: ``(N,)`` integer classes.
        batch_size: images per scanned batch.

    Returns:
        ``(patches (P, D), distances (P,), image_index (P,), flat_position (P,))`` as JAX arrays.
    """
    n = images.shape[0]
    batch_size = max(1, min(batch_size, n))
    nb = -(-n // batch_size)
    pad = nb * batch_size - n
    xs = jnp.pad(jnp.asarray(images), ((0, pad), (0, 0), (0, 0), (0, 0)))
    ys = jnp.pad(jnp.asarray(labels), (0, pad))
    valid = jnp.arange(nb * batch_size) < n
    xs = xs.reshape(nb, batch_size, *images.shape[1:])
    return _scan_jit(graphdef, state, xs, ys.reshape(nb, batch_size), valid.reshape(nb, batch_size))


def _scan_body(graphdef, state, xs, ys, valid):
    model = nnx.merge(graphdef, state)
    protos = model.prototypes[...]
    identity = model.class_identity[...]
    P, D = protos.shape
    B = xs.shape[1]

    def step(carry, batch):
        best_d, best_img, best_pos, best_z = carry
        b, x, y, ok = batch
        z = model.latent(x)
        _, h, w, _ = z.shape
        d = model.distances(z)
        allowed = (identity.T[y] > 0) & ok[:, None]
        d = jnp.where(allowed[:, None, None, :], d, jnp.inf).reshape(B * h * w, P)
        idx = jnp.argmin(d, axis=0)
        val = jnp.min(d, axis=0)
        better = val < best_d
        z_new = z.reshape(B * h * w, D)[idx]
        carry = (
            jnp.where(better, val, best_d),
            jnp.where(better, b * B + idx // (h * w), best_img),
            jnp.where(better, idx % (h * w), best_pos),
            jnp.where(better[:, None], z_new, best_z),
        )
        return carry, None

    init = (
        jnp.full((P,), jnp.inf, jnp.float32),
        jnp.zeros((P,), jnp.int32),
        jnp.zeros((P,), jnp.int32),
        jnp.zeros((P, D), jnp.float32),
    )
    (best_d, best_img, best_pos, best_z), _ = jax.lax.scan(
        step, init, (jnp.arange(xs.shape[0]), xs, ys, valid)
    )
    return best_z, best_d, best_img, best_pos


_scan_jit = jax.jit(_scan_body, static_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def _source_maps(graphdef, state, sources):
    """Similarity map of prototype j on its source image j ``(P, h, w)``, and its upsampling."""
    model = nnx.merge(graphdef, state)
    _, _, d = model.forward(sources)
    P = d.shape[-1]
    # The diagonal of (image j, prototype j).
    act = log_similarity(d[jnp.arange(P), :, :, jnp.arange(P)])
    return act, upsample(act, sources.shape[1])


def push(model: ProtoPNet, images, labels, *, batch_size: int = 64) -> PushResult:
    """Project every prototype onto its nearest training patch of its own class, in place.

    Args:
        model: a :class:`ProtoPNet`; its ``prototypes`` are overwritten.
        images: ``(N, H, W, C)`` training images (every class must occur).
        labels: ``(N,)`` integer classes.
        batch_size: images per scanned batch.

    Returns:
        :class:`PushResult` with the source image, position, receptive-field box and activation map
        of every prototype.

    References:
        Chen et al. NeurIPS 2019, Eq. (2) and the reference ``push.py``.

    Example:
        >>> import jax, numpy as np
        >>> from xaijax.protopnet.model import ProtoPNetConfig
        >>> cfg = ProtoPNetConfig(img_size=24, num_classes=2, num_prototypes=2, channels=(4, 4))
        >>> net = ProtoPNet(cfg, key=jax.random.key(0))
        >>> res = push(net, np.zeros((4, 24, 24, 3)), np.array([0, 1, 0, 1]))
        >>> res.image_index.shape, res.activation.shape
        ((2,), (2, 6, 6))
    """
    cfg = model.config
    images, labels = _check(images, labels, cfg.num_classes, cfg.img_size, cfg.in_channels)
    graphdef, state = nnx.split(model)
    z, dist, img, pos = nearest_patches(graphdef, state, images, labels, batch_size=batch_size)
    model.prototypes[...] = z
    img = np.asarray(img)
    act, up = _source_maps(graphdef, nnx.state(model), jnp.asarray(images[img]))
    act, up = np.asarray(act), np.asarray(up)
    P, h, w = act.shape
    pos = np.asarray(pos)
    rows, cols = pos // w, pos % w
    rf = receptive_field(cfg)
    rf_box = np.array([rf.box(r, c, cfg.img_size) for r, c in zip(rows, cols, strict=True)])
    high = np.array([high_activation_box(m) for m in up])
    return PushResult(
        prototypes=np.asarray(z),
        distances=np.asarray(dist),
        image_index=img,
        position=np.stack([rows, cols], axis=1).astype(np.int32),
        rf_box=rf_box.astype(np.int32),
        activation=act,
        high_box=high.astype(np.int32),
        classes=np.argmax(np.asarray(model.class_identity[...]), axis=1).astype(np.int32),
    )
