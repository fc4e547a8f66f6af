"""CAM options that pytorch-grad-cam offers: eigen smoothing, test-time augmentation, several
target layers and per-channel maps.

* ``eigen_smooth``: the map is the first principal component of the weighted activations
  ``w_c * A_c`` (pytorch-grad-cam's ``get_2d_projection``) instead of their channel sum.
* ``aug_smooth``: the images are horizontally flipped or not and multiplied by ``0.9``, ``1.0``
  and ``1.1`` (ttach's ``HorizontalFlip`` and ``Multiply``, pytorch-grad-cam's default
  test-time augmentation); the six maps are flipped back and averaged. The six copies go through
  one call of :func:`xaijax.cam.cam` as one batch of ``6 n`` images (one compilation).
* several layers: one map per layer, ReLU'd, min-max normalised at the layer's resolution,
  upsampled to the image and averaged, then normalised again (``aggregate_multi_layers``; as
  there, the min-max divides by ``max - min + 1e-7``, so a layer with a near-zero map adds
  near zero).
* ``per_channel``: ``channel_maps (n, h, w, c)``, the terms ``w_c * A_c`` of the map.

These functions are called by :func:`xaijax.cam.cam`, which passes itself in (no import cycle).
"""

# jaxtyping shape strings such as "n h w c" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from xaijax.cam.weightings import combine, eigen_cam_weights
from xaijax.core import contract
from xaijax.core.model import is_nnx_module

__all__ = ["AUGMENTATIONS", "weighted_map", "several_layers"]

# (horizontal flip, brightness factor), in ttach's product order.
AUGMENTATIONS = tuple((flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1))
_IDENTITY = AUGMENTATIONS.index((False, 1.0))


def weighted_map(
    weights: Float[Array, "n ..."], activations: Float[Array, "n h w c"], eigen_smooth, per_channel
):
    """``(map (n, h, w), channel_maps (n, h, w, c) or None)`` from the weights of a CAM.

    With ``eigen_smooth`` the map is the first principal component of ``w * A`` (signed to agree
    with the channel mean of ``w * A``, i.e. with the unsmoothed map); a weighting that returned
    the map itself passes through unchanged.

    Example:
        >>> import jax.numpy as jnp
        >>> m, per = weighted_map(jnp.array([[1.0, 2.0]]), jnp.ones((1, 2, 2, 2)), False, True)
        >>> m.shape, per.shape
        ((1, 2, 2), (1, 2, 2, 2))
    """
    if weights.ndim == 3:
        return weights, None
    terms = activations * (weights[:, None, None, :] if weights.ndim == 2 else weights)
    cam_map = eigen_cam_weights(terms) if eigen_smooth else combine(weights, activations)
    return cam_map, (terms if per_channel else None)


# -- test-time augmentation ---------------------------------------------------------------------
def _tile_targets(targets, n):
    if targets is None or callable(targets):
        return targets
    t = np.asarray(targets)
    if t.ndim == 1 and t.shape[0] == n:
        return np.tile(t, len(AUGMENTATIONS))
    return targets


def _augment(X):
    return np.concatenate(
        [
            (X[:, :, ::-1] if flip else X) * np.asarray(factor, X.dtype)
            for flip, factor in AUGMENTATIONS
        ]
    )


def augmentation_smoothing(cam_fn, features, head, X, single, targets, options):
    """pytorch-grad-cam's ``forward_augmentation_smoothing`` on prepared images ``X``."""
    n = X.shape[0]
    exp = cam_fn(features, head, _augment(X), _tile_targets(targets, n), **options)
    maps = np.asarray(exp.values).reshape((len(AUGMENTATIONS), n) + np.shape(exp.values)[1:])
    maps = np.stack(
        [m[:, :, ::-1] if flip else m for m, (flip, _) in zip(maps, AUGMENTATIONS, strict=True)]
    )
    lo, hi = _IDENTITY * n, (_IDENTITY + 1) * n
    extras = {
        k: (v[lo:hi] if np.ndim(v) >= 1 and np.shape(v)[0] == len(AUGMENTATIONS) * n else v)
        for k, v in exp.extras.items()
    }
    return contract.pack(
        maps.mean(axis=0),
        np.zeros((n,), maps.dtype),
        X,
        single=single,
        kind="map",
        method=exp.method,
        extras=extras,
    )


# -- several target layers -----------------------------------------------------------------------
def several_layers(features, head) -> list | None:
    """The layer paths when ``head`` names several layers of an NNX module, else ``None``.

    A list of paths (``["block1", ("blocks", 2)]``) or a tuple whose items are all tuple or list
    paths names several layers; a string or a tuple of names and indices is one path.

    Example:
        >>> several_layers(None, ["a", "b"]) is None  # not an NNX module
        True
    """
    if not is_nnx_module(features) or not isinstance(head, list | tuple):
        return None
    items = list(head)
    is_path = [isinstance(p, str | tuple | list) for p in items]
    if isinstance(head, list) and items and all(is_path):
        pass
    elif isinstance(head, tuple) and items and all(isinstance(p, tuple | list) for p in items):
        pass
    else:
        return None
    return items


@functools.partial(jax.jit, static_argnames=("size", "method", "normalize"))
def _aggregate(raw_maps, *, size, method, normalize):
    def minmax(m):  # pytorch-grad-cam's scale_cam_image: (m - min) / (max - min + 1e-7)
        lo = m.min(axis=(-2, -1), keepdims=True)
        return (m - lo) / (m.max(axis=(-2, -1), keepdims=True) - lo + 1e-7)

    layer_maps = jnp.stack(
        [jax.image.resize(minmax(m), m.shape[:1] + tuple(size), method=method) for m in raw_maps],
        axis=1,
    )
    mean = jax.nn.relu(layer_maps).mean(axis=1)
    return (minmax(mean) if normalize else mean), layer_maps


def aggregate_layers(cam_fn, module, layers, X, single, targets, options):
    """One map per layer (``normalize=False``), combined as ``aggregate_multi_layers``."""
    per_layer = dict(options, normalize=False)
    exps = [cam_fn(module, layer, X, targets, **per_layer) for layer in layers]
    raw = tuple(jnp.asarray(e.extras["raw_maps"]) for e in exps)
    maps, layer_maps = _aggregate(
        raw, size=X.shape[1:3], method=options["resize"], normalize=options["normalize"]
    )
    first = exps[0]
    extras = {k: v for k, v in first.extras.items() if k not in ("raw_maps", "channel_weights")}
    extras["layer_maps"] = np.asarray(layer_maps)
    return contract.pack(
        np.asarray(maps),
        np.zeros((X.shape[0],), np.asarray(maps).dtype),
        X,
        single=single,
        kind="map",
        method=first.method,
        extras=extras,
    )
