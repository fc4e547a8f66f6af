"""What a hidden feature becomes: maskers for the Shapley explainers and ``partition_shap``.

Every Shapley explainer hides the features (or groups of features) outside a coalition and
scores the model on the result. A masker says what hidden elements become:

================================= ===============================================================
``background(rows, weights)``     each background row's values, averaged over the rows
                                  (interventional; the default when a background is passed)
``constant(value)``               a constant: 0, the data mean, a colour (broadcast to the input)
``blur(size)``                    a box-blurred copy of the input image (shap's ``"blur(h,w)"``)
``token(mask_id)``                a mask or pad token id, for integer token inputs ``(n, L)``
``partition(rows, clustering=Z)`` background rows with a feature hierarchy (a SciPy linkage),
                                  as ``shap.maskers.Partition``
``image(mask_value, shape)``      an image masker with shap's recursive halving hierarchy, as
                                  ``shap.maskers.Image``
================================= ===============================================================

Example:
    >>> import jax, numpy as np, xaijax as xj
    >>> f = lambda X: X.sum(axis=(1, 2, 3))
    >>> images = np.ones((2, 4, 4, 1))
    >>> exp = xj.exact_shapley(f, images, masker=xj.maskers.constant(0.0),
    ...                        groups=xj.patch_groups((4, 4), 2))
    >>> exp.values.shape, [round(float(v), 3) for v in exp.values[0]]
    ((2, 4), [4.0, 4.0, 4.0, 4.0])
"""

from __future__ import annotations

import numbers

import numpy as np

from xaijax.core.masking import Background, Masker

__all__ = ["Masker", "background", "blur", "constant", "image", "partition", "token"]


def background(rows, weights=None) -> Masker:
    """Interventional masking: hidden features take each background row's values, and the
    coalition's value is the (weighted) mean over the rows. ``rows`` may be a
    :class:`~xaijax.Background` (e.g. from :func:`~xaijax.kmeans`)."""
    if isinstance(rows, Background):
        if weights is not None:
            raise ValueError("rows is a Background with its own weights; pass weights=None")
        rows, weights = rows.data, rows.weights
    return Masker("background", rows, weights)


def constant(value=0.0) -> Masker:
    """Hidden elements take ``value``: a number, or an array that broadcasts to one input (a
    per-channel colour ``(C,)``, per-feature means ``(M,)``)."""
    return Masker("constant", value)


def blur(size=(16, 16)) -> Masker:
    """Hidden pixels take a box-blurred copy of the image (``cv2.blur``'s mean over an ``h x w``
    window, reflected borders), as shap's ``Image("blur(h,w)")`` masker."""
    h, w = (size, size) if isinstance(size, numbers.Integral) else tuple(size)
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"size must be positive; got {size!r}")
    return Masker("blur", size=(int(h), int(w)))


def token(mask_id: int, *, keep=(), clustering=None) -> Masker:
    """Hidden tokens become ``mask_id`` (a ``[MASK]`` or pad id) in integer inputs ``(n, L)``.

    Tokens whose id is in ``keep`` are never masked: pass the special ids
    (``Tokenizer.special_ids``) so that ``[CLS]``, ``[SEP]`` and padding stay what the model
    was trained on; the group that holds them is then a dummy feature and gets exactly 0
    (``Encoding.word_groups()`` puts them in one group after the words).
    :func:`~xaijax.partition_shap` splits the sequence into contiguous halves recursively,
    or follows ``clustering`` (a SciPy linkage over the ``L`` tokens, or over the groups).

    Example:
        >>> from xaijax.zoo import Tokenizer
        >>> m = token(Tokenizer.mask_id, keep=Tokenizer.special_ids)
        >>> m.value, m.keep
        (4, (0, 1, 2, 3))
    """
    if isinstance(mask_id, bool) or not isinstance(mask_id, numbers.Integral):
        raise TypeError(f"mask_id must be an int token id; got {mask_id!r}")
    keep = (keep,) if isinstance(keep, numbers.Integral) else tuple(keep)
    if any(isinstance(k, bool) or not isinstance(k, numbers.Integral) for k in keep):
        raise TypeError(f"keep must be int token ids; got {keep!r}")
    keep = tuple(sorted({int(k) for k in keep} - {int(mask_id)}))
    Z = None if clustering is None else np.asarray(clustering, dtype=np.float64)
    return Masker("token", int(mask_id), clustering=Z, keep=keep)


def partition(rows, weights=None, *, clustering) -> Masker:
    """Background rows with a hierarchy over the ``M`` features, as
    ``shap.maskers.Partition(rows, clustering=Z)``: ``clustering`` a SciPy linkage matrix
    ``(M - 1, 4)`` (e.g. ``scipy.cluster.hierarchy.linkage``), read by
    :func:`~xaijax.partition_shap`."""
    base = background(rows, weights)
    Z = np.asarray(clustering, dtype=np.float64)
    return Masker("background", base.value, base.weights, clustering=Z)


def image(mask_value=0.0, shape=None) -> Masker:
    """An image masker as ``shap.maskers.Image(mask_value, shape)``: a constant (a number or a
    colour) or ``"blur(h,w)"``, with shap's hierarchy (the image halved recursively along its
    longest side), which :func:`~xaijax.partition_shap` uses."""
    if isinstance(mask_value, str):
        from xaijax.core.masking import as_masker

        base = as_masker(mask_value)
    else:
        base = constant(mask_value)
    shape = None if shape is None else tuple(int(s) for s in shape)
    return Masker(base.kind, base.value, size=base.size, hierarchy="image", shape=shape)
