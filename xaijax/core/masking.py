"""Features switched off: feature groups, maskers, coalition scoring, and segment masks.

A coalition ``S`` of features is scored by the interventional value function

    v(S) = sum_b w_b f(x_S, b_{not S})

over a (weighted) background ``b``: features in ``S`` keep the explained instance's values, the
others take each background row's (:func:`coalition_values`).

**Groups** switch whole sets of input elements on and off together: an integer map from each
element to a group id (superpixels, a patch grid, token spans, the columns of one one-hot
variable), shared by the batch or one per instance (:func:`as_groups`, :func:`patch_groups`,
:func:`superpixel_groups`). A coalition over ``G`` groups becomes a mask over the elements by
:func:`expand_groups`.

**Maskers** say what a hidden element becomes (:class:`Masker`, built by the constructors in
:mod:`xaijax.maskers`): background rows (interventional, as tabular Shapley values), a
constant (zero, a mean, a colour), a blurred copy of the input, a mask token, or the input
inpainted from the kept elements (:mod:`xaijax.core.inpainting`). A masker gives, per instance,
fill rows and their weights (:class:`Fill`); a coalition's value is the weighted mean of the
model over ``where(keep, x, row_b)``. An inpainting fill depends on the coalition
(:attr:`Fill.mask_dependent`): its one row is :meth:`Fill.compose` of ``x`` and the mask.
:func:`get_image_and_mask` reads the groups an explanation ranks highest back onto the image.
"""

from __future__ import annotations

import dataclasses
import numbers
import re
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.batching import balanced_chunk, map_row_chunks
from xaijax.core.contract import as_float_array
from xaijax.core.explanation import Explanation
from xaijax.core.hierarchy import check_clustering, image_hierarchy
from xaijax.core.inpainting import INPAINT_METHODS, inpaint
from xaijax.core.model import Model, float_dtype

__all__ = [
    "Background",
    "Fill",
    "Groups",
    "Masker",
    "as_background",
    "as_groups",
    "as_masker",
    "check_clustering",
    "coalition_values",
    "element_values",
    "expand_groups",
    "get_image_and_mask",
    "group_any",
    "image_hierarchy",
    "patch_groups",
    "superpixel_groups",
]


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


# -- feature groups -----------------------------------------------------------------------------


class Groups(NamedTuple):
    """A checked group map (:func:`as_groups`).

    Attributes:
        ids: ``(1, *E)`` (shared) or ``(n, *E)`` (one map per instance) int32 group ids, ``E`` a
            prefix of the per-instance input shape (``(H, W)`` for ``(H, W, C)`` images: a
            pixel's channels move together).
        num_groups: ``G``, the most groups of any instance (values have ``G`` entries).
        counts: ``(1,)`` or ``(n,)`` groups of each instance; an instance with fewer than ``G``
            has ids ``counts[i] .. G - 1`` unused, and they get exactly 0.
        shared: whether one map serves every instance.
    """

    ids: np.ndarray
    num_groups: int
    counts: np.ndarray
    shared: bool


def as_groups(
    groups, input_shape, n: int, *, name: str = "groups", max_groups: int | None = None, why=""
) -> Groups:
    """Check a group map against the inputs (host side, before anything compiles).

    ``groups`` maps each element of one input to a group id: shape ``E``, a prefix of the input
    shape (``(M,)`` for rows, ``(H, W)`` or ``(H, W, C)`` for ``(H, W, C)`` images, ``(L,)``
    for tokens), shared by every instance, or ``(n, *E)``, one map per instance. Ids run from
    0 to ``G - 1`` with every id used (a per-instance map may use fewer ids than another).

    Raises:
        TypeError: non-integer ids.
        ValueError: naming ``name``: a shape that matches neither form, negative ids, an
            unused id (an empty group), or more than ``max_groups`` groups (``why`` says why).

    Example:
        >>> g = as_groups([0, 0, 1, 2], (4,), n=3)
        >>> g.num_groups, g.ids.shape, g.shared
        (3, (1, 4), True)
    """
    a = np.asarray(groups)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be integer group ids; got dtype {a.dtype}")
    shape, inp = tuple(a.shape), tuple(int(s) for s in input_shape)

    def is_prefix(s):
        return 1 <= len(s) <= len(inp) and s == inp[: len(s)]

    if is_prefix(shape):
        ids, shared = a[None], True
    elif len(shape) >= 2 and shape[0] == n and is_prefix(shape[1:]):
        ids, shared = a, False
    else:
        forms = " or ".join(str(inp[:k]) for k in range(1, len(inp) + 1))
        raise ValueError(
            f"{name} must map the elements of one input of shape {inp} to group ids: shape "
            f"{forms} shared by all instances, or one map per instance ({n}, ...); "
            f"got shape {shape}"
        )
    flat = ids.reshape(ids.shape[0], -1)
    if flat.min() < 0:
        raise ValueError(f"{name} must hold ids >= 0; got {int(flat.min())}")
    counts = flat.max(axis=1).astype(np.int64) + 1
    for i, row in enumerate(flat):
        empty = np.flatnonzero(np.bincount(row, minlength=int(counts[i])) == 0)
        if empty.size:
            where = "" if shared else f" in instance {i}"
            raise ValueError(
                f"{name} must use every id from 0 to G - 1 (ids index the values); group(s) "
                f"{empty[:10].tolist()} are empty{where}. Relabel, e.g. "
                "np.unique(groups, return_inverse=True)[1].reshape(groups.shape)"
            )
    G = int(counts.max())
    if max_groups is not None and G > max_groups:
        raise ValueError(f"{name} has {G} groups; {why or 'at most'} {max_groups}")
    return Groups(ids.astype(np.int32), G, counts, shared)


def expand_groups(mask: jax.Array, ids: jax.Array, input_shape) -> jax.Array:
    """Group coalitions ``(c, G)`` as element masks ``(c, *input_shape)`` (True keeps ``x``).

    ``ids`` is one instance's map ``(*E)``; trailing input axes beyond ``E`` follow their group.

    Example:
        >>> import jax.numpy as jnp
        >>> expand_groups(jnp.array([[True, False]]), jnp.array([0, 1, 1]), (3,)).tolist()
        [[True, False, False]]
    """
    keep = jnp.take(mask, ids, axis=1)  # (c, *E)
    keep = keep.reshape(keep.shape + (1,) * (len(input_shape) - ids.ndim))
    return jnp.broadcast_to(keep, (mask.shape[0],) + tuple(input_shape))


def group_any(elements: jax.Array, ids: jax.Array, num_groups: int) -> jax.Array:
    """``(G,)`` whether any element of each group is True (False for an empty group).

    Example:
        >>> import jax.numpy as jnp
        >>> group_any(jnp.array([False, True, False]), jnp.array([0, 1, 2]), 4).tolist()
        [False, True, False, False]
    """
    e = jnp.any(elements, axis=tuple(range(ids.ndim, elements.ndim)))
    hit = jax.ops.segment_max(
        e.reshape(-1).astype(jnp.int32), ids.reshape(-1), num_segments=num_groups
    )
    return hit > 0


def element_values(values, groups: Groups) -> np.ndarray:
    """Per-group values ``(n, G[, K])`` spread onto the elements: ``(n, *E[, K])``.

    Example:
        >>> g = as_groups([0, 1, 1], (3,), n=1)
        >>> element_values(np.array([[1.0, 2.0]]), g).tolist()
        [[1.0, 2.0, 2.0]]
    """
    values = np.asarray(values)
    ids = np.broadcast_to(groups.ids, (values.shape[0],) + groups.ids.shape[1:])
    return np.stack([v[i] for v, i in zip(values, ids, strict=True)])


def patch_groups(shape, patch) -> np.ndarray:
    """A regular grid of ``patch`` (``(ph, pw)`` or an int) over an ``(H, W)`` image: ids ``(H, W)``
    row-major; edge patches are smaller when the size does not divide.

    Example:
        >>> patch_groups((2, 4), 2).tolist()
        [[0, 0, 1, 1], [0, 0, 1, 1]]
    """
    H, W = (int(s) for s in shape[:2])
    ph, pw = (patch, patch) if isinstance(patch, numbers.Integral) else tuple(patch)
    if ph < 1 or pw < 1:
        raise ValueError(f"patch must be positive; got {patch!r}")
    cols = -(-W // pw)
    r, c = np.meshgrid(np.arange(H) // ph, np.arange(W) // pw, indexing="ij")
    return (r * cols + c).astype(np.int32)


_SUPERPIXEL_DEFAULTS = {
    "slic": dict(n_segments=50, compactness=10.0, start_label=0),
    "quickshift": dict(kernel_size=4, max_dist=200, ratio=0.2),
    "felzenszwalb": dict(scale=100, sigma=0.5, min_size=50),
}


def superpixel_groups(images, method: str = "slic", **kwargs) -> np.ndarray:
    """Superpixels of each image as group ids (scikit-image; on the host).

    Args:
        images: ``(H, W, C)`` or ``(n, H, W, C)``.
        method: ``"slic"`` (default ``n_segments=50``), ``"quickshift"`` (LIME's defaults) or
            ``"felzenszwalb"``; ``kwargs`` go to ``skimage.segmentation.<method>``.

    Returns:
        ``(H, W)`` or ``(n, H, W)`` int32 ids ``0 .. G_i - 1`` (every id used).

    Example:
        >>> img = np.zeros((4, 4, 3)); img[:, 2:] = 1.0  # a dark and a light half
        >>> superpixel_groups(img, "felzenszwalb", scale=1, sigma=0, min_size=2).tolist()
        [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]]
    """
    from skimage import segmentation

    if method not in _SUPERPIXEL_DEFAULTS:
        raise ValueError(f"method must be one of {tuple(_SUPERPIXEL_DEFAULTS)}; got {method!r}")
    images = np.asarray(images)
    single = images.ndim == 3
    if images.ndim not in (3, 4):
        raise ValueError(f"images must be (H, W, C) or (n, H, W, C); got shape {images.shape}")
    batch = images[None] if single else images
    options = {**_SUPERPIXEL_DEFAULTS[method], **kwargs}
    if method == "quickshift" and batch.shape[-1] != 3:
        options.setdefault("convert2lab", False)
    fn = getattr(segmentation, method)
    out = []
    for img in batch.astype(np.float64):
        seg = fn(img, channel_axis=-1, **options)
        out.append(np.unique(seg, return_inverse=True)[1].reshape(seg.shape))
    ids = np.stack(out).astype(np.int32)
    return ids[0] if single else ids


# -- maskers ------------------------------------------------------------------------------------


@jax.tree_util.register_pytree_node_class
class Fill:
    """What hidden elements of one instance become: ``fill(x) -> (rows (B, *shape), weights (B,))``.

    A pytree: its arrays are traced (a new background does not recompile), its kind and static
    options are not. Built by :meth:`Masker.fill_for`.

    A mask-dependent fill (``"inpaint"``, static ``(method, iterations, tol)``) has no rows of
    its own: a coalition's row is :meth:`compose` ``(x, keep)``; called on ``x`` it gives the
    row of the empty coalition (nothing known: zeros).
    """

    def __init__(self, kind: str, arrays=(), static=()):
        self.kind, self.arrays, self.static = kind, tuple(arrays), tuple(static)

    def tree_flatten(self):
        return self.arrays, (self.kind, self.static)

    @classmethod
    def tree_unflatten(cls, aux, children):
        return cls(aux[0], children, aux[1])

    @property
    def mask_dependent(self) -> bool:
        """Whether hidden elements' values depend on the coalition (inpainting): then
        :func:`coalition_values` builds rows by :meth:`compose`."""
        return self.kind == "inpaint"

    def compose(self, x, keep):
        """``(1, *shape)``: ``x`` with the elements where ``keep`` is False filled, for a
        mask-dependent fill (``keep`` broadcastable to ``x``)."""
        if self.kind != "inpaint":
            raise ValueError(f"compose is for mask-dependent fills; this fill is {self.kind!r}")
        method, iterations, tol = self.static
        return inpaint(x, keep, method, iterations=iterations, tol=tol)[None]

    @property
    def num_rows(self) -> int:
        """``B``, the fill rows per instance."""
        return int(self.arrays[0].shape[0]) if self.kind == "rows" else 1

    def __call__(self, x):
        if self.kind == "rows":
            return self.arrays[0], self.arrays[1]
        if self.kind == "constant":
            rows = self.arrays[0][None]
        elif self.kind == "blur":
            rows = box_blur(x, self.static)[None]
        elif self.kind == "token":  # static: (mask id, *ids never masked)
            mask_id, keep = self.static[0], jnp.asarray(self.static[1:], x.dtype)
            rows = jnp.where(jnp.isin(x, keep), x, jnp.asarray(mask_id, x.dtype))[None]
        elif self.kind == "inpaint":  # the empty coalition: no known pixel, all zeros
            rows = jnp.zeros_like(x)[None]
        else:
            raise ValueError(f"unknown fill {self.kind!r}")
        weight_dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
        return rows.astype(x.dtype), jnp.ones((1,), weight_dtype)


def box_blur(x: jax.Array, size) -> jax.Array:
    """``cv2.blur(x, (w, h))`` on an ``(H, W[, C])`` image: the mean over an ``h x w`` window
    anchored at its centre (``size // 2``), borders reflected without repeating the edge
    (OpenCV's ``BORDER_REFLECT_101``).

    Example:
        >>> import jax.numpy as jnp
        >>> blurred = box_blur(jnp.arange(4.0).reshape(1, 4), (1, 3))  # 1 0 1 2 3 2 padded
        >>> [round(float(v) * 3, 4) for v in blurred[0]]
        [2.0, 3.0, 6.0, 7.0]
    """
    kh, kw = size
    pad = [(kh // 2, kh - 1 - kh // 2), (kw // 2, kw - 1 - kw // 2)] + [(0, 0)] * (x.ndim - 2)
    xp = jnp.pad(x, pad, mode="reflect")
    window = (kh, kw) + (1,) * (x.ndim - 2)
    total = jax.lax.reduce_window(xp, 0.0, jax.lax.add, window, (1,) * x.ndim, "VALID")
    return total / (kh * kw)


@dataclasses.dataclass(frozen=True, eq=False)
class Masker:
    """What a hidden feature becomes; build one with :mod:`xaijax.maskers`.

    Attributes:
        kind: ``"background"`` (interventional: the mean over background rows), ``"constant"``,
            ``"blur"`` (a box-blurred copy of the input), ``"token"`` (a mask token id for
            integer token inputs) or ``"inpaint"`` (hidden pixels inpainted from the kept ones).
        value: the background rows ``(B, *input_shape)``, the constant (broadcast to the input
            shape), the token id, or the inpainting method.
        weights: background row weights ``(B,)`` or ``None`` (uniform).
        size: the blur window ``(h, w)``.
        clustering: an optional hierarchy over the features (a SciPy linkage matrix), read by
            :func:`~xaijax.partition_shap`.
        hierarchy: how :func:`~xaijax.partition_shap` builds the hierarchy when ``clustering``
            is ``None``: ``"image"`` (shap's recursive halving of the image) or ``None``.
        shape: the input shape the masker was built for (``image``'s), or ``None``.
        keep: token ids that are never masked (``token``'s: ``[CLS]``, ``[SEP]``, padding).
        options: the inpainting options ``(iterations, tol)``.
    """

    kind: str
    value: Any = None
    weights: Any = None
    size: tuple[int, int] | None = None
    clustering: Any = None
    hierarchy: str | None = None
    shape: tuple[int, ...] | None = None
    keep: tuple[int, ...] = ()
    options: tuple = ()

    @property
    def has_rows(self) -> bool:
        """Whether the masker carries rows shaped like the inputs (a background)."""
        return self.kind == "background"

    def fill_for(self, input_shape, dtype, *, name: str = "masker") -> Fill:
        """Check the masker against one input's shape and dtype; its :class:`Fill`.

        Raises:
            ValueError: naming ``name``: a constant that does not broadcast to the input, a
                blur window larger than the image or on inputs that are not images.
        """
        input_shape = tuple(input_shape)
        if self.kind == "background":
            rows, weights = as_background(self.value, self.weights, dtype=dtype, name="background")
            if rows.shape[1:] != input_shape:
                raise ValueError(
                    f"background rows have shape {rows.shape[1:]}; the inputs {input_shape}"
                )
            return Fill("rows", (rows, weights))
        if self.kind == "token" and self.keep:
            if len(input_shape) != 1:
                raise ValueError(f"{name} masks token ids (L,); got inputs of shape {input_shape}")
            return Fill("token", static=(int(self.value),) + tuple(self.keep))
        if self.kind in ("constant", "token"):
            value = np.asarray(self.value)
            try:
                value = np.broadcast_to(value, input_shape)
            except ValueError:
                raise ValueError(
                    f"{name}'s value of shape {value.shape} does not broadcast to one input of "
                    f"shape {input_shape}"
                ) from None
            return Fill("constant", (np.asarray(value, dtype=dtype),))
        if self.kind == "blur":
            if len(input_shape) not in (2, 3):
                raise ValueError(
                    f"{name} blurs images (H, W) or (H, W, C); got inputs of shape {input_shape}"
                )
            if self.size[0] > input_shape[0] or self.size[1] > input_shape[1]:
                raise ValueError(
                    f"{name}'s blur window {self.size} is larger than the image {input_shape[:2]}"
                )
            return Fill("blur", static=self.size)
        if self.kind == "inpaint":
            if len(input_shape) not in (2, 3):
                raise ValueError(
                    f"{name} inpaints images: inputs must be (n, H, W) or (n, H, W, C); got "
                    f"inputs of shape {input_shape}"
                )
            if self.value not in INPAINT_METHODS:
                raise ValueError(f"{name}'s method must be one of {INPAINT_METHODS}")
            return Fill("inpaint", static=(self.value, *self.options))
        raise ValueError(f"unknown masker kind {self.kind!r}")


def as_masker(masker, background=None, background_weights=None) -> Masker:
    """One :class:`Masker` from an explainer's ``masker`` and ``background`` arguments.

    ``masker`` may be a :class:`Masker`, a :class:`Background` or rows (interventional), a number
    (a constant), ``"blur(h,w)"``, ``"inpaint_harmonic"`` or ``"inpaint_biharmonic"``
    (default options); ``None`` uses ``background`` (one of the two is needed).

    Raises:
        ValueError: both or neither given, or an unrecognised string (shap's OpenCV
            ``"inpaint_telea"`` and ``"inpaint_ns"`` are not provided).
        TypeError: a masker of another type.

    Example:
        >>> as_masker(0.0).kind, as_masker("blur(4,4)").size
        ('constant', (4, 4))
    """
    if masker is None:
        if background is None:
            raise ValueError(
                "pass a background (rows that stand in for hidden features) or a masker "
                "(e.g. xaijax.maskers.constant(0.0) or xaijax.maskers.blur(8))"
            )
        return Masker("background", background, background_weights)
    if background is not None or background_weights is not None:
        raise ValueError(
            "pass either background or masker, not both (a background is a masker: "
            "xaijax.maskers.background(rows, weights))"
        )
    if isinstance(masker, Masker):
        return masker
    if isinstance(masker, str) and masker.strip().startswith("inpaint_"):
        method = masker.strip()[len("inpaint_") :]
        if method in INPAINT_METHODS:
            return Masker("inpaint", method, options=(None, 1e-6))
        what = (
            "OpenCV's inpainting, which xaijax does not provide"
            if method
            in (
                "telea",
                "ns",
            )
            else "not an inpainting xaijax provides"
        )
        raise ValueError(
            f"masker {masker!r} is {what}; use 'inpaint_harmonic' or 'inpaint_biharmonic' "
            "(xaijax.maskers.inpaint)"
        )
    if isinstance(masker, str):
        m = re.fullmatch(r"blur\((\d+),\s*(\d+)\)", masker.strip())
        if not m:
            raise ValueError(
                f"masker must be a Masker, rows, a number or 'blur(h,w)'; got {masker!r}"
            )
        return Masker("blur", size=(int(m.group(1)), int(m.group(2))))
    if isinstance(masker, bool):
        raise TypeError("masker must be a Masker, rows, a number or 'blur(h,w)'; got a bool")
    if isinstance(masker, numbers.Number):
        return Masker("constant", float(masker))
    if isinstance(masker, Background) or isinstance(masker, (np.ndarray, jax.Array, list)):
        return Masker("background", masker)
    raise TypeError(
        "masker must be a Masker (xaijax.maskers), background rows, a number or 'blur(h,w)'; "
        f"got {type(masker).__name__}"
    )


def coalition_values(
    model: Model,
    params,
    x: jax.Array,
    background: jax.Array,
    weights: jax.Array,
    masks: Callable[[jax.Array], jax.Array],
    num_masks: int,
    batch_size: int,
    *,
    fill: Fill | None = None,
) -> jax.Array:
    """Score masks for one instance: ``v[s] = sum_b w_b f(where(mask_s, x, background_b))``.

    Args:
        model, params: the adapted model.
        x: ``(*input_shape)`` the explained instance (``(M,)`` for tabular rows).
        background: ``(B, *input_shape)`` fill rows (a :class:`Fill`'s); ``weights``: ``(B,)``
            summing to 1.
        masks: maps an int array of mask indices ``(c,)`` to boolean masks
            ``(c, *input_shape)`` (True keeps ``x``'s value), so that masks can be generated on
            the fly instead of stored (:func:`expand_groups` turns group masks into these).
        num_masks: how many masks there are.
        batch_size: most rows given to the model at once: whole masks (``B`` rows each) while
            ``B <= batch_size``, else one mask at a time, its rows in chunks of ``batch_size``.
        fill: the :class:`Fill` the rows came from; a mask-dependent one (inpainting) makes
            each mask's one row ``fill.compose(x, mask_s)`` (``background`` is then ignored).

    Returns:
        ``(num_masks, *output_shape)`` coalition values.
    """
    if fill is not None and fill.mask_dependent:

        def composed(idx):
            keep = masks(idx)  # (c, *input_shape)
            rows = jax.vmap(lambda k: fill.compose(x, k)[0])(keep)
            return model.apply(params, rows)

        chunk_size = balanced_chunk(num_masks, max(1, int(batch_size)))
        return map_row_chunks(composed, num_masks, chunk_size)
    B = background.shape[0]
    if B > batch_size:

        def one_mask(i):
            keep = masks(i[None])[0]  # (*input_shape,)

            def rows(b):
                return model.apply(params, jnp.where(keep[None], x[None], background[b]))

            y = map_row_chunks(rows, B, balanced_chunk(B, batch_size))  # (B, *output_shape)
            return jnp.einsum("b...,b->...", y, weights, precision="highest")

        return jax.lax.map(one_mask, jnp.arange(num_masks))
    # The fewest, most even chunks: the last chunk's padding is model work thrown away (2088
    # masks at 273 per chunk padded to 2184; balanced, 8 chunks of 261).
    masks_per_chunk = balanced_chunk(num_masks, max(1, int(batch_size) // B))

    def chunk(idx):
        keep = masks(idx)  # (c, *input_shape)
        rows = jnp.where(keep[:, None], x[None, None], background[None])
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
