"""Evaluation metrics for attributions: faithfulness, localisation, complexity and sanity checks.

All array metrics are batched over instances and jitted; model evaluations go through the chunked
evaluator, so memory stays bounded by ``batch_size`` rows.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.batching import DEFAULT_BATCH_SIZE, evaluate, map_row_chunks
from xaijax.core.model import as_model

__all__ = [
    "Curve",
    "deletion_auc",
    "insertion_auc",
    "pointing_game",
    "energy_in_mask",
    "local_accuracy_gap",
    "surrogate_fidelity",
    "sparseness",
    "complexity",
    "spearman",
    "cascading_randomization",
    "gaussian_blur",
]


class Curve(NamedTuple):
    """A perturbation curve: ``auc (n,)`` and the target score after each step, ``(n, T+1)``."""

    auc: np.ndarray
    scores: np.ndarray


def gaussian_blur(images, sigma: float = 5.0, radius: int = 5) -> jax.Array:
    """Blur ``(n, H, W, C)`` images with a separable Gaussian (RISE's insertion start: 11 px, s=5).

    Example:
        >>> import numpy as np
        >>> gaussian_blur(np.ones((1, 8, 8, 1))).shape
        (1, 8, 8, 1)
    """
    images = jnp.asarray(images, jnp.float32)
    t = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    k = jnp.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    n, H, W, C = images.shape
    x = images.transpose(0, 3, 1, 2).reshape(n * C, 1, H, W)
    pad = jnp.pad(x, ((0, 0), (0, 0), (radius, radius), (radius, radius)), mode="edge")
    dn = ("NCHW", "OIHW", "NCHW")
    x = jax.lax.conv_general_dilated(
        pad, k.reshape(1, 1, -1, 1), (1, 1), "VALID", dimension_numbers=dn
    )
    x = jax.lax.conv_general_dilated(
        x, k.reshape(1, 1, 1, -1), (1, 1), "VALID", dimension_numbers=dn
    )
    return x.reshape(n, C, H, W).transpose(0, 2, 3, 1)


def _check_maps(images, saliency):
    images = np.asarray(images, np.float32)
    saliency = np.asarray(saliency, np.float32)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n, H, W, C); got shape {images.shape}")
    if saliency.shape != images.shape[:3]:
        raise ValueError(
            f"saliency must have shape {images.shape[:3]} (n, H, W) to match images; "
            f"got shape {saliency.shape}"
        )
    if not (np.all(np.isfinite(images)) and np.all(np.isfinite(saliency))):
        raise ValueError("images and saliency must be finite (no NaN or inf)")
    return images, saliency


def _perturbation_curve(f, images, saliency, *, target, steps, baseline, insertion, batch_size):
    images, saliency = _check_maps(images, saliency)
    n, H, W, C = images.shape
    steps = min(50, H * W) if steps is None else steps
    if not isinstance(steps, int) or not 1 <= steps <= H * W:
        raise ValueError(f"steps must be an int in [1, {H * W}]; got {steps!r}")
    if isinstance(baseline, str):
        if baseline == "zero":
            base = np.zeros_like(images)
        elif baseline == "blur":
            base = np.asarray(gaussian_blur(images))
        elif baseline == "mean":
            base = np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape).copy()
        else:
            raise ValueError(
                f"baseline must be 'zero', 'blur', 'mean', a number or an array of "
                f"shape {images.shape}; got {baseline!r}"
            )
    else:
        base = np.broadcast_to(np.asarray(baseline, np.float32), images.shape).copy()
    model, params = as_model(f, images)
    if model.num_outputs is None:
        raise ValueError("f must return class scores (n, K) for deletion/insertion curves")
    K = model.num_outputs
    if target is None:
        target = np.asarray(evaluate(model, params, jnp.asarray(images))).argmax(1)
    target = np.broadcast_to(np.asarray(target, np.int32), (n,))
    if np.any((target < 0) | (target >= K)):
        raise ValueError(f"target must be class indices in [0, {K}); got {target}")
    scores = _curve(
        model,
        params,
        jnp.asarray(images),
        jnp.asarray(saliency),
        jnp.asarray(base),
        jnp.asarray(target),
        steps=steps,
        insertion=insertion,
        batch_size=int(batch_size),
    )
    scores = np.asarray(scores)
    if not np.all(np.isfinite(scores)):
        raise ValueError("f returned NaN or inf on perturbed images")
    auc = (scores.sum(1) - 0.5 * (scores[:, 0] + scores[:, -1])) / steps
    return Curve(auc, scores)


@functools.partial(jax.jit, static_argnames=("model", "steps", "insertion", "batch_size"))
def _curve(model, params, images, saliency, base, target, *, steps, insertion, batch_size):
    n, H, W, C = images.shape
    HW = H * W
    # rank[i, p] = 0 for the most salient pixel of image i.
    order = jnp.argsort(-saliency.reshape(n, HW), axis=1)
    rank = (
        jnp.zeros_like(order)
        .at[jnp.arange(n)[:, None], order]
        .set(jnp.broadcast_to(jnp.arange(HW), (n, HW)))
    )
    per_step = -(-HW // steps)

    def chunk(rows):
        i, k = rows // (steps + 1), rows % (steps + 1)
        changed = (rank[i] < jnp.minimum(k * per_step, HW)[:, None]).reshape(-1, H, W, 1)
        if insertion:
            x = jnp.where(changed, images[i], base[i])
        else:
            x = jnp.where(changed, base[i], images[i])
        y = model.apply(params, x)
        return jnp.take_along_axis(y, target[i][:, None], axis=1)[:, 0]

    return map_row_chunks(chunk, n * (steps + 1), batch_size).reshape(n, steps + 1)


def deletion_auc(
    f,
    images,
    saliency,
    *,
    target=None,
    steps: int | None = None,
    baseline="zero",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Curve:
    """Area under the target score as the most salient pixels are deleted first (lower = better).

    The RISE protocol: pixels are ranked by ``saliency`` and replaced by ``baseline`` in ``steps``
    equal steps; the AUC is the trapezoidal mean of the score curve (in [0, 1] for probabilities).

    Args:
        f: the model, ``(n, H, W, C) -> (n, K)`` class scores (probabilities for RISE's numbers).
        images: ``(n, H, W, C)``; saliency: ``(n, H, W)``.
        target: class per image (int or ``(n,)``); default the predicted class.
        steps: number of deletion steps; default ``min(50, H * W)``.
        baseline: ``"zero"``, ``"blur"``, ``"mean"``, a number, or an array like ``images``.
        batch_size: most images passed to the model at once.

    Returns:
        :class:`Curve` with ``auc (n,)`` and ``scores (n, steps + 1)``.

    References:
        Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
        Models", BMVC 2018.

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> f = lambda X: jnp.stack([X.mean((1, 2, 3)), 1 - X.mean((1, 2, 3))], axis=1)
        >>> curve = deletion_auc(f, np.ones((1, 4, 4, 1)), np.random.rand(1, 4, 4), target=0,
        ...                      steps=4)
        >>> round(float(curve.auc[0]), 4)
        0.5
    """
    return _perturbation_curve(
        f,
        images,
        saliency,
        target=target,
        steps=steps,
        baseline=baseline,
        insertion=False,
        batch_size=batch_size,
    )


def insertion_auc(
    f,
    images,
    saliency,
    *,
    target=None,
    steps: int | None = None,
    baseline="blur",
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Curve:
    """Area under the target score as the most salient pixels are inserted first (higher = better).

    Starts from ``baseline`` (RISE: a blurred copy) and restores pixels in saliency order; arguments
    as :func:`deletion_auc`.

    References:
        Petsiuk, Das & Saenko, "RISE", BMVC 2018.

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> f = lambda X: jnp.stack([X.mean((1, 2, 3)), 1 - X.mean((1, 2, 3))], axis=1)
        >>> curve = insertion_auc(f, np.ones((1, 4, 4, 1)), np.random.rand(1, 4, 4), target=0,
        ...                       steps=4, baseline="zero")
        >>> round(float(curve.auc[0]), 4)
        0.5
    """
    return _perturbation_curve(
        f,
        images,
        saliency,
        target=target,
        steps=steps,
        baseline=baseline,
        insertion=True,
        batch_size=batch_size,
    )


def _check_masks(saliency, masks):
    saliency = np.asarray(saliency, np.float32)
    masks = np.asarray(masks)
    if saliency.ndim != 3:
        raise ValueError(f"saliency must have shape (n, H, W); got shape {saliency.shape}")
    if masks.shape != saliency.shape:
        raise ValueError(
            f"masks must have shape {saliency.shape} like saliency; got shape {masks.shape}"
        )
    if not np.all(np.isfinite(saliency)):
        raise ValueError("saliency must be finite (no NaN or inf)")
    return saliency, masks.astype(bool)


def pointing_game(saliency, masks, *, tolerance: float = 0.0) -> np.ndarray:
    """Whether each map's maximum lies on the object (within ``tolerance`` pixels): ``(n,)`` bool.

    Args:
        saliency: ``(n, H, W)`` maps.
        masks: ``(n, H, W)`` ground-truth object masks.
        tolerance: radius in pixels around the maximum (Zhang et al. use 15 at 224 px).

    References:
        Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((1, 4, 4), bool); m[0, 1, 1] = True
        >>> pointing_game(m.astype(float), m).tolist(), pointing_game(1 - m, m).tolist()
        ([True], [False])
    """
    saliency, masks = _check_masks(saliency, masks)
    return np.asarray(_pointing(jnp.asarray(saliency), jnp.asarray(masks), float(tolerance)))


@jax.jit
def _pointing(saliency, masks, tolerance):
    n, H, W = saliency.shape
    flat = jnp.argmax(saliency.reshape(n, -1), axis=1)
    py, px = flat // W, flat % W
    yy, xx = jnp.mgrid[0:H, 0:W]
    d2 = (yy[None] - py[:, None, None]) ** 2 + (xx[None] - px[:, None, None]) ** 2
    return jnp.any(masks & (d2 <= tolerance**2), axis=(1, 2))


def energy_in_mask(saliency, masks) -> np.ndarray:
    """Share of each map's positive mass that falls on the object: ``(n,)`` in [0, 1].

    A map with no positive mass scores 0.

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


def local_accuracy_gap(exp, outputs) -> np.ndarray:
    """``|sum_i values_i + base_value - f(x)|`` per instance (and output): completeness violation.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> e = Explanation(np.array([[1.0, 2.0]]), np.array([0.5]), np.zeros((1, 2)))
        >>> local_accuracy_gap(e, np.array([3.5])).tolist()
        [0.0]
    """
    values = np.asarray(exp.values)
    feature_axis = 1 if exp.is_batched else 0
    total = values.sum(axis=feature_axis) + np.asarray(exp.base_values)
    outputs = np.asarray(outputs)
    if outputs.shape != total.shape:
        raise ValueError(
            f"outputs must have shape {total.shape} like base_values; got shape {outputs.shape}"
        )
    return np.abs(total - outputs)


def surrogate_fidelity(exp) -> np.ndarray:
    """How well a LIME explanation's linear surrogate fits the model on its neighbourhood.

    The kernel-weighted R² of the surrogate, per instance and explained label (``(n, L)``): near 1
    means the local linear story is faithful; near 0 means the weights explain little.

    References:
        Ribeiro, Singh & Guestrin, "Why Should I Trust You?", KDD 2016 (the ``score``).

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> e = Explanation(np.zeros((1, 2, 1)), np.zeros((1, 1)), np.zeros((1, 2)),
        ...                 output_names=("1",), extras={"score": np.array([[0.9]])})
        >>> surrogate_fidelity(e).tolist()
        [[0.9]]
    """
    if "score" not in exp.extras:
        raise ValueError(
            "exp has no surrogate score: pass a LIME explanation "
            f"(lime_tabular, lime_image, lime_text); got method {exp.method!r}"
        )
    return np.asarray(exp.extras["score"], np.float64)


def _flat_abs(attributions):
    a = np.abs(np.asarray(attributions, np.float64))
    return a.reshape(a.shape[0], -1) if a.ndim > 1 else a[None]


def sparseness(attributions) -> np.ndarray:
    """Gini index of ``|attributions|`` per instance: 0 for uniform, ``1 - 1/d`` for one-hot.

    References:
        Chalasani et al., "Concise Explanations of Neural Networks using Adversarial Training",
        ICML 2020.

    Example:
        >>> sparseness([[0.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]).tolist()
        [0.75, 0.0]
    """
    a = np.sort(_flat_abs(attributions), axis=1)
    d = a.shape[1]
    i = np.arange(1, d + 1)
    total = a.sum(1)
    gini = ((2 * i - d - 1)[None] * a).sum(1) / (d * np.where(total > 0, total, 1.0))
    return np.where(total > 0, gini, 0.0)


def complexity(attributions) -> np.ndarray:
    """Entropy of the normalised ``|attributions|`` per instance: 0 for one-hot, ``log d`` uniform.

    References:
        Bhatt, Weller & Moura, "Evaluating and Aggregating Feature-based Model Explanations",
        IJCAI 2020.

    Example:
        >>> [round(v, 4) for v in complexity([[0.0, 1.0], [1.0, 1.0]]).tolist()]
        [0.0, 0.6931]
    """
    a = _flat_abs(attributions)
    total = a.sum(1, keepdims=True)
    p = a / np.where(total > 0, total, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return 0.0 - np.where(p > 0, p * np.log(p), 0.0).sum(1)


def spearman(a, b) -> np.ndarray:
    """Spearman rank correlation between rows of ``a`` and ``b`` (flattened), ties averaged.

    Example:
        >>> spearman([[1.0, 2.0, 3.0]], [[10.0, 20.0, 15.0]]).tolist()
        [0.5]
    """
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {a.shape} and {b.shape}")
    a = a.reshape(a.shape[0], -1) if a.ndim > 1 else a[None]
    b = b.reshape(a.shape)
    return np.asarray(_spearman(jnp.asarray(a), jnp.asarray(b)))


def _average_ranks(x):
    s = jnp.sort(x)
    lo = jnp.searchsorted(s, x, side="left")
    hi = jnp.searchsorted(s, x, side="right")
    return 0.5 * (lo + hi - 1).astype(jnp.float32)


@jax.jit
def _spearman(a, b):
    def one(x, y):
        rx, ry = _average_ranks(x), _average_ranks(y)
        rx, ry = rx - rx.mean(), ry - ry.mean()
        denom = jnp.sqrt((rx * rx).sum() * (ry * ry).sum())
        return jnp.where(denom > 0, (rx * ry).sum() / jnp.where(denom > 0, denom, 1.0), 0.0)

    return jax.vmap(one)(a, b)


def _path_name(path) -> tuple:
    out = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                out.append(getattr(k, attr))
                break
        else:
            out.append(str(k))
    return tuple(out)


def cascading_randomization(
    module, explain: Callable[[Any], Any], *, key, layers: Sequence[tuple] | None = None
) -> dict:
    """The model-parameter randomisation test: re-initialise layers from the top, cumulatively.

    For ``k = 1..L`` the top ``k`` layers of a copy of ``module`` (an NNX module) get fresh random
    weights (kernels LeCun-normal, biases 0, scales 1), ``explain(copy)`` recomputes the maps, and
    their Spearman rank correlation with the original maps is recorded, with and without absolute
    values. A method whose maps stay similar as the model is destroyed does not explain the model.

    Args:
        module: a Flax NNX module (left unchanged).
        explain: ``explain(module) -> (n, ...)`` attribution maps.
        key: a ``jax.random.key``.
        layers: paths of the layers in order from the output down, e.g. ``[("out",), ("hidden",
            1)]``; default every parameter-holding layer, last-defined first.

    Returns:
        ``{"layers": [names...], "spearman": (L, n), "spearman_abs": (L, n)}``.

    References:
        Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.
    """
    from flax import nnx

    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    # Some Flax versions end a parameter's path in the Variable's "value" field; drop it.
    names = [n[:-1] if n[-1] == "value" else n for n in (_path_name(p) for p, _ in leaves)]
    if layers is None:
        layers = []
        for name in names:
            if name[:-1] not in layers:
                layers.append(name[:-1])
        layers = layers[::-1]
    layers = [tuple(layer) for layer in layers]
    for layer in layers:
        if not any(name[: len(layer)] == layer for name in names):
            raise ValueError(f"layers: no parameters under {layer}; parameter paths are {names}")
    original = np.asarray(explain(module))
    keys = jax.random.split(key, len(names))

    def fresh(name, value, k):
        value = jnp.asarray(value)
        if value.ndim >= 2:
            fan_in = int(np.prod(value.shape[:-1]))
            return jax.random.normal(k, value.shape, value.dtype) / np.sqrt(fan_in)
        return jnp.ones_like(value) if name[-1] == "scale" else jnp.zeros_like(value)

    current = [leaf for _, leaf in leaves]
    treedef = jax.tree_util.tree_structure(params)
    rho, rho_abs = [], []
    for layer in layers:
        for j, name in enumerate(names):
            if name[: len(layer)] == layer:
                current[j] = _replace_value(current[j], fresh(name, _value_of(current[j]), keys[j]))
        randomized = nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, current), rest)
        maps = np.asarray(explain(randomized))
        rho.append(spearman(original, maps))
        rho_abs.append(spearman(np.abs(original), np.abs(maps)))
    return {
        "layers": ["/".join(map(str, layer)) for layer in layers],
        "spearman": np.stack(rho),
        "spearman_abs": np.stack(rho_abs),
    }


def _value_of(leaf):
    return leaf.value if hasattr(leaf, "value") else leaf


def _replace_value(leaf, value):
    if hasattr(leaf, "replace"):
        return leaf.replace(value)
    return value
