"""Faithfulness: does the model's score follow the attributions when the input is perturbed?

The deletion and insertion curves of RISE perturb the pixels in saliency order and score the
model on every step; all images and steps run in one compiled call, with the model evaluated
in chunks of ``batch_size`` rows. :func:`surrogate_fidelity` reads how well a LIME surrogate fits
its neighbourhood.
"""

# jaxtyping shape strings such as "n H W C" are not Python expressions:

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from xaijax.core.batching import balanced_chunk, evaluate, map_row_chunks
from xaijax.core.contract import (
    MISSING,
    as_float_array,
    call,
    check_int,
    check_number,
    renamed,
    resolve_batch_size,
)
from xaijax.core.explanation import Explanation, require_kind
from xaijax.core.model import as_model
from xaijax.core.targets import Targets, check_target_fn, resolve_targets
from xaijax.metrics.attributions import attribution_array

__all__ = ["Curve", "deletion_auc", "insertion_auc", "gaussian_blur", "surrogate_fidelity"]


class Curve(NamedTuple):
    """A perturbation curve: ``auc (n,)`` and the explained score after each step, ``(n, T+1)``."""

    auc: np.ndarray
    scores: np.ndarray


def gaussian_blur(
    images: Float[ArrayLike, "n H W C"], sigma: float = 5.0, radius: int = 5
) -> Float[Array, "n H W C"]:
    """Blur ``(n, H, W, C)`` images with a separable Gaussian (RISE's insertion start: 11 px, s=5).

    The image edge is extended (edge padding), so a constant image stays constant.

    Args:
        images: ``(n, H, W, C)``.
        sigma: the Gaussian's standard deviation in pixels, > 0.
        radius: the kernel's half-width in pixels (the kernel has ``2 * radius + 1`` taps).

    Returns:
        The blurred images, ``(n, H, W, C)``.

    Example:
        >>> import numpy as np
        >>> gaussian_blur(np.ones((1, 8, 8, 1))).shape
        (1, 8, 8, 1)
    """
    images = jnp.asarray(as_float_array("images", images))
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n, H, W, C); got shape {images.shape}")
    sigma = check_number("sigma", sigma, minimum=0.0, strict=True)
    radius = check_int("radius", radius, minimum=0)
    t = jnp.arange(-radius, radius + 1, dtype=images.dtype)
    k = jnp.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    n, H, W, C = images.shape
    x = images.transpose(0, 3, 1, 2).reshape(n * C, 1, H, W)
    pad = jnp.pad(x, ((0, 0), (0, 0), (radius, radius), (radius, radius)), mode="edge")
    dn = ("NCHW", "OIHW", "NCHW")
    x = jax.lax.conv_general_dilated(
        pad, k.reshape(1, 1, -1, 1), (1, 1), "VALID", dimension_numbers=dn, precision="highest"
    )
    x = jax.lax.conv_general_dilated(
        x, k.reshape(1, 1, 1, -1), (1, 1), "VALID", dimension_numbers=dn, precision="highest"
    )
    return x.reshape(n, C, H, W).transpose(0, 2, 3, 1)


def _check_maps(images, saliency):
    images = as_float_array("images", images)
    if images.ndim != 4:
        raise ValueError(f"images must have shape (n, H, W, C); got shape {images.shape}")
    saliency = attribution_array(saliency, "saliency", dtype=images.dtype)
    if saliency.shape != images.shape[:3]:
        raise ValueError(
            f"saliency must have shape {images.shape[:3]} (n, H, W) to match images; "
            f"got shape {saliency.shape}"
        )
    return images, saliency


def _baseline_images(baseline, images):
    expected = (
        f"baseline must be 'zero', 'blur', 'mean', a finite number or an array of shape "
        f"{images.shape} like images"
    )
    if isinstance(baseline, str):
        if baseline == "zero":
            return np.zeros_like(images)
        if baseline == "blur":
            return np.asarray(gaussian_blur(images))
        if baseline == "mean":
            return np.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape).copy()
        raise ValueError(f"{expected}; got {baseline!r}")
    base = as_float_array("baseline", baseline, dtype=images.dtype)
    try:
        return np.broadcast_to(base, images.shape).copy()
    except ValueError as err:
        raise ValueError(f"{expected}; got shape {base.shape}") from err


def _perturbation_curve(
    f, images, saliency, *, targets, target_name, steps, baseline, insertion, batch_size
):
    images, saliency = _check_maps(images, saliency)
    n, H, W, C = images.shape
    steps = min(50, H * W) if steps is None else check_int("steps", steps, maximum=H * W)
    base = _baseline_images(baseline, images)
    model, params = as_model(f, images)
    spec = resolve_targets(targets, n, model.num_outputs, name=target_name)
    if spec.fn is not None:
        outputs = jax.ShapeDtypeStruct((n,) + model.output_shape, images.dtype)
        check_target_fn(spec.fn, outputs, name=target_name)
        model = model.scored_by(spec.fn)
    batch_size = resolve_batch_size(batch_size, images.shape[1:], images.dtype)
    scores = call(
        _curve,
        model,
        params,
        jnp.asarray(images),
        jnp.asarray(saliency),
        jnp.asarray(base),
        spec.indices,
        steps=steps,
        insertion=insertion,
        batch_size=batch_size,
    )
    scores = np.asarray(scores)
    if not np.all(np.isfinite(scores)):
        bad = np.flatnonzero(~np.isfinite(scores).all(axis=1)).tolist()
        raise ValueError(
            f"f returned NaN or inf on the perturbed images of instances {bad[:10]}: the curve "
            "of a non-finite score is meaningless"
        )
    auc = (scores.sum(1) - 0.5 * (scores[:, 0] + scores[:, -1])) / steps
    return Curve(auc, scores)


@functools.partial(jax.jit, static_argnames=("model", "steps", "insertion", "batch_size"))
def _curve(model, params, images, saliency, base, indices, *, steps, insertion, batch_size):
    n, H, W, C = images.shape
    HW = H * W
    if indices is None and model.output_shape:
        # The default target: the class the model predicts for the unperturbed image.
        indices = jnp.argmax(evaluate(model, params, images, batch_size=batch_size), axis=1)
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
        if y.ndim == 1:  # a scalar output, or the score of a callable ``targets``
            return y
        return jnp.take_along_axis(y, indices[i][:, None], axis=1)[:, 0]

    total = n * (steps + 1)
    return map_row_chunks(chunk, total, balanced_chunk(total, batch_size)).reshape(n, steps + 1)


def deletion_auc(
    f,
    images: Float[ArrayLike, "n H W C"],
    saliency: Float[ArrayLike, "n H W"] | Explanation,
    *,
    targets: Targets = None,
    steps: int | None = None,
    baseline: str | float | Float[ArrayLike, "n H W C"] = "zero",
    batch_size: int | None = None,
    target=MISSING,
) -> Curve:
    """Area under the target score as the most salient pixels are deleted first (lower: better).

    The RISE protocol: pixels are ranked by ``saliency`` and replaced by ``baseline`` in ``steps``
    equal steps; the AUC is the trapezoidal mean of the score curve (in [0, 1] for probabilities).

    Args:
        f: the model, ``(n, H, W, C) -> (n, K)`` class scores (probabilities for RISE's numbers)
            or ``(n,)`` one score; any model form :func:`xaijax.as_model` accepts.
        images: ``(n, H, W, C)``.
        saliency: ``(n, H, W)`` maps, or a batched Explanation with such values.
        targets: the scored output: ``None`` (the class predicted for the unperturbed image; the
            output itself for a scalar model), an int, ``(n,)`` ints, or a callable on the
            model's outputs ``(n, K) -> (n,)``. ``target=`` is its deprecated alias.
        steps: number of deletion steps, in ``[1, H * W]``; default ``min(50, H * W)``.
        baseline: ``"zero"``, ``"blur"``, ``"mean"`` (each image's channel means), a number, or
            an array that broadcasts to ``images``.
        batch_size: most model rows (perturbed images) evaluated at once; ``None`` picks the
            backend's default for the image size. The result does not depend on it.

    Returns:
        :class:`Curve` with ``auc (n,)`` and ``scores (n, steps + 1)``.

    Raises:
        ValueError: for inputs of the wrong shape, NaN or inf in them or in the model's scores,
            out-of-range ``targets``, ``steps`` or ``batch_size``.
        TypeError: for a float ``targets``, ``steps`` or ``batch_size``.

    References:
        Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
        Models", BMVC 2018.

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> f = lambda X: jnp.stack([X.mean((1, 2, 3)), 1 - X.mean((1, 2, 3))], axis=1)
        >>> curve = deletion_auc(f, np.ones((1, 4, 4, 1)), np.random.rand(1, 4, 4), targets=0,
        ...                      steps=4)
        >>> round(float(curve.auc[0]), 4)
        0.5
    """
    name = "targets" if target is MISSING else "target"
    targets = renamed("target", target, "targets", targets)
    return _perturbation_curve(
        f,
        images,
        saliency,
        targets=targets,
        target_name=name,
        steps=steps,
        baseline=baseline,
        insertion=False,
        batch_size=batch_size,
    )


def insertion_auc(
    f,
    images: Float[ArrayLike, "n H W C"],
    saliency: Float[ArrayLike, "n H W"] | Explanation,
    *,
    targets: Targets = None,
    steps: int | None = None,
    baseline: str | float | Float[ArrayLike, "n H W C"] = "blur",
    batch_size: int | None = None,
    target=MISSING,
) -> Curve:
    """Area under the target score as the most salient pixels are inserted first (higher: better).

    Starts from ``baseline`` (RISE: a blurred copy, :func:`gaussian_blur`) and restores pixels
    in saliency order in ``steps`` equal steps; the AUC is the trapezoidal mean of the curve.

    Args:
        f: the model, ``(n, H, W, C) -> (n, K)`` or ``(n,)``.
        images: ``(n, H, W, C)``.
        saliency: ``(n, H, W)`` maps, or a batched Explanation with such values.
        targets: the scored output, as in :func:`deletion_auc` (``target=`` is its deprecated
            alias).
        steps: number of insertion steps, in ``[1, H * W]``; default ``min(50, H * W)``.
        baseline: the start: ``"blur"``, ``"zero"``, ``"mean"``, a number, or an array that
            broadcasts to ``images``.
        batch_size: most model rows evaluated at once; ``None`` picks the backend's default.

    Returns:
        :class:`Curve` with ``auc (n,)`` and ``scores (n, steps + 1)``.

    References:
        Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of Black-box
        Models", BMVC 2018.

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> f = lambda X: jnp.stack([X.mean((1, 2, 3)), 1 - X.mean((1, 2, 3))], axis=1)
        >>> curve = insertion_auc(f, np.ones((1, 4, 4, 1)), np.random.rand(1, 4, 4), targets=0,
        ...                       steps=4, baseline="zero")
        >>> round(float(curve.auc[0]), 4)
        0.5
    """
    name = "targets" if target is MISSING else "target"
    targets = renamed("target", target, "targets", targets)
    return _perturbation_curve(
        f,
        images,
        saliency,
        targets=targets,
        target_name=name,
        steps=steps,
        baseline=baseline,
        insertion=True,
        batch_size=batch_size,
    )


def surrogate_fidelity(exp: Explanation) -> Float[np.ndarray, "n L"]:
    """How well a LIME explanation's linear surrogate fits the model on its neighbourhood.

    The kernel-weighted R² of the surrogate, per instance and explained label (``(n, L)``): near 1
    means the local linear story is faithful; near 0 means the weights explain little.

    Args:
        exp: an Explanation of kind ``"surrogate"`` (:func:`xaijax.lime_tabular`,
            :func:`xaijax.lime_image`, :func:`xaijax.lime_text`).

    Returns:
        ``extras["score"]`` as float64, ``(n, L)`` (``(L,)`` for one instance).

    Raises:
        TypeError: for an Explanation of another kind.

    References:
        Ribeiro, Singh & Guestrin, "Why Should I Trust You?", KDD 2016 (the ``score``).

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> e = Explanation(np.zeros((1, 2, 1)), np.zeros((1, 1)), np.zeros((1, 2)),
        ...                 output_names=("1",), kind="surrogate",
        ...                 extras={"score": np.array([[0.9]])})
        >>> surrogate_fidelity(e).tolist()
        [[0.9]]
    """
    require_kind(exp, ("surrogate",), "surrogate_fidelity")
    if "score" not in exp.extras:
        raise ValueError(
            "exp has no surrogate score extras['score']: pass a LIME explanation "
            f"(lime_tabular, lime_image, lime_text); got method {exp.method!r}"
        )
    return np.asarray(exp.extras["score"], np.float64)
