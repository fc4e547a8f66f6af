"""Class activation maps: one layer capture, any weighting (:mod:`xaijax.cam.weightings`).

:func:`cam` captures the activations ``A: (n, h, w, c)`` of one layer and, for gradient-based
weightings, ``G = d score / d A`` with one ``jax.vjp`` per chunk of at most ``batch_size``
images (the head treats images independently, so the gradient of the summed scores holds each
image's own gradient). The weighting turns them into channel or elementwise weights, the map
``sum_c w_c A_c`` goes through a ReLU, is upsampled to the image size with ``jax.image.resize``
(half-pixel centres, as cv2 and torch) and optionally min-max normalised per image. Score-CAM
and Ablation-CAM replace gradients by ``n * c`` extra model evaluations, also run in chunks of
``batch_size`` rows.

Everything after input checking is one jitted function; the model functions, the weighting and
the options are static, so repeated calls with same-shaped images compile once. With ``mesh=``
the images are split over the devices.

``features`` / ``head`` may be two functions (``features: X (n,H,W,C) -> A (n,h,w,c)``,
``head: A -> logits (n,K)``) or a Flax NNX module and the path of its target layer
(``cam(model, "block3/conv2", images)``); the module is never modified.
"""

# jaxtyping shape strings such as "n H W C" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, ArrayLike, Float

from xaijax.cam import smoothing
from xaijax.cam.weightings import WEIGHTINGS
from xaijax.core import contract
from xaijax.core.batching import balanced_chunk, check_mesh, map_row_chunks, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.layers import LayerModel, layer_model, resolve_reshape
from xaijax.core.model import cached_eval_shape
from xaijax.core.registry import explainer
from xaijax.core.targets import (
    Targets,
    TargetSpec,
    check_target_fn,
    resolve_targets,
    target_scores,
)

__all__ = [
    "cam",
    "capture",
    "normalize_maps",
    "upsample_maps",
    "prepare_images",
    "CamProblem",
    "RESIZE_METHODS",
]

RESIZE_METHODS = ("bilinear", "nearest")


# -- post-processing ---------------------------------------------------------------------------
def upsample_maps(
    maps: Float[Array, "n h w"], size: tuple[int, int], method: str = "bilinear"
) -> Float[Array, "n H W"]:
    """Resize maps ``(n, h, w)`` to ``(n, *size)`` with ``jax.image.resize`` (half-pixel centres).

    Example:
        >>> import jax.numpy as jnp
        >>> upsample_maps(jnp.ones((1, 2, 2)), (4, 4), "nearest").shape
        (1, 4, 4)
    """
    return jax.image.resize(maps, maps.shape[:1] + tuple(size), method=method)


def normalize_maps(maps: Float[Array, "n ..."]) -> Float[Array, "n ..."]:
    """Min-max normalise each map of ``(n, ...)`` to ``[0, 1]``; a constant map becomes zeros.

    Example:
        >>> import jax.numpy as jnp
        >>> normalize_maps(jnp.array([[1.0, 3.0], [2.0, 2.0]])).tolist()
        [[0.0, 1.0], [0.0, 0.0]]
    """
    axes = tuple(range(1, maps.ndim))
    lo = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - lo
    return (maps - lo) / jnp.where(span == 0, jnp.ones((), span.dtype), span)


def _finite_rows(a):
    return jnp.isfinite(a).reshape(a.shape[0], -1).all(axis=1)


# -- the capture --------------------------------------------------------------------------------
def capture(lm: LayerModel, X, indices, target_fn, *, sign=1.0, gradients=True):
    """``(A, G, logits, scores, targets)`` for a batch of images, ``G = sign * dS/dA``.

    One ``jax.vjp`` for the batch; ``G`` is ``None`` without ``gradients`` (a forward pass only).
    """
    if not gradients:
        logits, A = lm.forward(X)
        scores, t = target_scores(logits, indices, target_fn)
        return A, None, logits, scores, t
    a_shape = jax.eval_shape(lambda x: lm.forward(x)[1], X)
    delta0 = jnp.zeros(a_shape.shape, a_shape.dtype)

    def scored(delta):
        logits, A = lm.forward(X, delta)
        scores, t = target_scores(logits, indices, target_fn)
        return scores, (logits, A, t, scores)

    _, vjp, (logits, A, t, scores) = jax.vjp(scored, delta0, has_aux=True)
    (G,) = vjp(jnp.full(scores.shape, sign, scores.dtype))
    return A, G, logits, scores, t


def _channel_scores(score_rows, n, c, batch_size):
    """``score_rows(image_idx, channel_idx) -> (b,)`` over all ``n * c`` pairs, in chunks."""
    total = n * c
    out = map_row_chunks(
        lambda rows: score_rows(rows // c, rows % c), total, balanced_chunk(total, batch_size)
    )
    return out.reshape(n, c)


@functools.partial(
    jax.jit,
    static_argnames=(
        "weighting",
        "target_fn",
        "counterfactual",
        "relu",
        "resize",
        "normalize",
        "batch_size",
        "mesh",
        "eigen_smooth",
        "per_channel",
    ),
)
def _cam(
    lm,
    X,
    indices,
    *,
    weighting,
    target_fn,
    counterfactual,
    relu,
    resize,
    normalize,
    batch_size,
    mesh,
    eigen_smooth=False,
    per_channel=False,
):
    fn, uses = (
        WEIGHTINGS[weighting]
        if isinstance(weighting, str)
        else (weighting, getattr(weighting, "uses", "gradients"))
    )

    def local(sharded, lm):
        X, indices = sharded
        n, height, width = X.shape[:3]

        def chunk(rows):
            t = None if indices is None else indices[rows]
            return capture(
                lm,
                X[rows],
                t,
                target_fn,
                sign=-1.0 if counterfactual else 1.0,
                gradients=uses == "gradients",
            )

        A, G, logits, scores, t = map_row_chunks(chunk, n, balanced_chunk(n, batch_size))
        outputs_ok = _finite_rows(logits) & _finite_rows(A)
        grads_ok = jnp.ones((n,), bool) if G is None else _finite_rows(G)
        c = A.shape[-1]
        fixed = None if target_fn is not None or logits.ndim == 1 else t
        if uses == "masked_inputs":

            def masked_scores(i, k):
                masks = normalize_maps(upsample_maps(A[i, :, :, k], (height, width)))
                logits_k = lm.logits(X[i] * masks[..., None].astype(X.dtype))
                return target_scores(logits_k, None if fixed is None else fixed[i], target_fn)[0]

            evidence = _channel_scores(masked_scores, n, c, batch_size)
            weights = fn(evidence)
            outputs_ok = outputs_ok & _finite_rows(evidence)
        elif uses == "ablated_channels":

            def ablated_scores(i, k):
                keep = 1.0 - jax.nn.one_hot(k, c, dtype=A.dtype)
                logits_k = lm.logits_from(X[i], A[i] * keep[:, None, None, :])
                return target_scores(logits_k, None if fixed is None else fixed[i], target_fn)[0]

            evidence = _channel_scores(ablated_scores, n, c, batch_size)
            weights = fn(scores, evidence)
            outputs_ok = outputs_ok & _finite_rows(evidence)
        else:
            weights = fn(A, G)
        cam_maps, channel_maps = smoothing.weighted_map(weights, A, eigen_smooth, per_channel)
        raw = jax.nn.relu(cam_maps) if relu else cam_maps
        maps = upsample_maps(raw, (height, width), resize)
        if normalize:
            maps = normalize_maps(maps)
        extras = {"raw_maps": raw, "targets": t, "scores": scores, "logits": logits}
        if weights.ndim == 2:
            extras["channel_weights"] = weights
        if channel_maps is not None:
            extras["channel_maps"] = channel_maps
        return maps, extras, outputs_ok, grads_ok

    return over_instances(local, (X, indices), lm, mesh=mesh)


# -- the way in ---------------------------------------------------------------------------------
class CamProblem(NamedTuple):
    """Validated inputs of a CAM explainer (host side, before compilation)."""

    lm: LayerModel
    X: np.ndarray  # (n, H, W, C), float
    single: bool  # one image was given
    targets: TargetSpec
    batch_size: int
    mesh: Mesh | None
    logits_shape: tuple  # (n,) or (n, K)
    a_shape: tuple  # (n, h, w, c)


def prepare_images(images, *, name: str = "images"):
    """``(X (n, H, W, C) float, single)``: one image ``(H, W, C)`` or a batch, numeric, finite."""
    X = contract.as_float_array(name, images)
    if X.ndim not in (3, 4):
        raise ValueError(
            f"{name} must be NHWC (n, H, W, C) or one image (H, W, C); got shape {X.shape}"
        )
    return contract.split_instances(X, X.shape[-3:], name=name)


def _check_bool(name, value):
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def prepare(features, head, images, targets, *, batch_size, mesh, reshape=None) -> CamProblem:
    """Check the images, the layer, ``reshape``, ``targets``, ``batch_size`` and ``mesh``,
    before compiling."""
    lm = layer_model(features, head)
    X, single = prepare_images(images)
    batch_size = contract.resolve_batch_size(batch_size, X.shape[1:], X.dtype)
    mesh = check_mesh(mesh)
    logits_shape, a_shape = _probe(lm, X)
    view = resolve_reshape(reshape, a_shape)
    if view is not None:
        a_shape = jax.eval_shape(view, jax.ShapeDtypeStruct(tuple(a_shape), X.dtype)).shape
        lm = dataclasses.replace(lm, reshape=view)
    if len(a_shape) != 4:
        raise ValueError(
            f"the target layer's activations must be 4-D (n, h, w, c) in NHWC layout; got shape "
            f"{tuple(a_shape)}. For ViT tokens (n, 1 + h*w, d) pass reshape=True (or the grid "
            "(h, w), or a function A -> (n, h, w, d))."
        )
    if len(logits_shape) not in (1, 2):
        raise ValueError(f"head must return logits (n,) or (n, K); got shape {tuple(logits_shape)}")
    num_classes = logits_shape[1] if len(logits_shape) == 2 else None
    spec = resolve_targets(targets, X.shape[0], num_classes)
    if spec.fn is not None:
        check_target_fn(spec.fn, jax.ShapeDtypeStruct((2,) + tuple(logits_shape[1:]), X.dtype))
    return CamProblem(lm, X, single, spec, batch_size, mesh, logits_shape, a_shape)


def _probe(lm, X):
    """Shapes of the logits and the layer's activations, traced once per model and input shape."""
    spec = jax.ShapeDtypeStruct(X.shape, X.dtype)
    try:
        logits, A = cached_eval_shape(LayerModel.forward, lm, spec)
    except Exception as err:
        raise ValueError(
            f"the model failed on images of shape {tuple(X.shape)} (check images against what "
            f"features/head expect): {type(err).__name__}: {err}"
        ) from err
    return np.shape(logits), np.shape(A)


def _check_weighting(weighting, a_shape):
    if isinstance(weighting, str):
        return contract.check_choice("weighting", weighting, tuple(WEIGHTINGS))
    if not callable(weighting):
        raise TypeError(
            f"weighting must be one of {tuple(WEIGHTINGS)} or a function (activations, "
            f"gradients) -> weights; got {weighting!r}"
        )
    spec = jax.ShapeDtypeStruct(tuple(a_shape), jnp.float32)
    n, h, w, c = a_shape
    try:
        out = jax.eval_shape(weighting, spec, spec)
    except Exception as err:
        raise ValueError(
            f"weighting failed on activations and gradients of shape {tuple(a_shape)}: "
            f"{type(err).__name__}: {err}"
        ) from err
    if getattr(out, "shape", None) not in ((n, c), (n, h, w, c), (n, h, w)):
        raise ValueError(
            f"weighting must return channel weights {(n, c)}, elementwise weights "
            f"{(n, h, w, c)} or a map {(n, h, w)} for activations {tuple(a_shape)}; got "
            f"{getattr(out, 'shape', type(out).__name__)}"
        )
    return weighting


def run(
    problem: CamProblem,
    weighting,
    *,
    counterfactual=False,
    relu=True,
    resize="bilinear",
    normalize=True,
    eigen_smooth=False,
    per_channel=False,
):
    """Run the compiled CAM on a prepared problem: ``(maps, extras, outputs_ok, grads_ok)``."""
    return contract.call(
        _cam,
        problem.lm,
        problem.X,
        problem.targets.indices,
        weighting=weighting,
        target_fn=problem.targets.fn,
        counterfactual=counterfactual,
        relu=relu,
        resize=resize,
        normalize=normalize,
        batch_size=problem.batch_size,
        mesh=problem.mesh,
        eigen_smooth=eigen_smooth,
        per_channel=per_channel,
    )


def report(problem: CamProblem, maps, extras, outputs_ok, grads_ok, *, method) -> Explanation:
    """Raise for non-finite outputs, activations or gradients; pack the Explanation."""
    outputs_ok, grads_ok = np.asarray(outputs_ok), np.asarray(grads_ok)
    what = "the model (its outputs or the layer's activations)"
    if outputs_ok.all() and not grads_ok.all():
        what = "the gradient of the target score at the layer (the outputs are finite)"
    return contract.pack(
        maps,
        np.zeros(problem.X.shape[:1], np.asarray(maps).dtype),
        problem.X,
        single=problem.single,
        kind="map",
        method=method,
        extras=extras,
        finite=outputs_ok & grads_ok,
        what=what,
    )


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
def cam(
    features,
    head,
    images: Float[ArrayLike, "*n H W C"],
    targets: Targets = None,
    *,
    weighting: str | Callable = "grad_cam",
    counterfactual: bool = False,
    resize: str = "bilinear",
    normalize: bool = True,
    relu: bool = True,
    reshape=None,
    batch_size: int | None = None,
    mesh=None,
    eigen_smooth: bool = False,
    aug_smooth: bool = False,
    per_channel: bool = False,
) -> Explanation:
    """A class activation map ``ReLU(sum_c w_c * A_c)`` with any weighting of the channels.

    The named CAMs (:func:`~xaijax.cam.grad_cam`, :func:`~xaijax.cam.score_cam`, ...) are this
    function with their weighting; a callable ``weighting(activations, gradients)`` defines a new
    one (see :mod:`xaijax.cam.weightings` for the three forms the weights may take).

    Args:
        features: ``X (n, H, W, C) -> A (n, h, w, c)``, or a Flax NNX module.
        head: ``A (n, h, w, c) -> logits (n, K)``, or the path of the target layer in the
            module (``"block3/conv2"``, ``("layers", 4)``), or several layers: a list of paths
            (``["block2", "block3"]``) or a tuple of tuple paths. Several layers give one map
            each (ReLU, min-max normalised, upsampled), averaged and normalised again, as
            pytorch-grad-cam's ``aggregate_multi_layers``; extras ``layer_maps (n, L, H, W)``.
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints,
            or a callable ``fn(logits) -> (n,)``.
        weighting: one of ``"grad_cam"``, ``"grad_cam_plus_plus"``, ``"hires_cam"``,
            ``"xgrad_cam"``, ``"layer_cam"``, ``"eigen_cam"``, ``"score_cam"``,
            ``"ablation_cam"``, or a JAX function ``(A, dS/dA) -> weights`` returning channel
            weights ``(n, c)``, elementwise weights ``(n, h, w, c)`` or the map ``(n, h, w)``.
        counterfactual: explain evidence *against* the target (the gradient is negated; only
            for gradient-based weightings).
        resize: ``"bilinear"`` (default) or ``"nearest"`` upsampling to ``(H, W)``.
        normalize: min-max normalise each upsampled map to ``[0, 1]`` (constant maps become 0).
        relu: apply the final ReLU to the map (as the papers do).
        reshape: how to see a token layer as a grid: ``None`` (the layer is already
            ``(n, h, w, c)``), ``True``/``"auto"`` (ViT tokens ``(n, 1 + h*w, d)``: class token
            dropped, square grid), an int or ``(h, w)`` grid, or a linear function
            ``A -> (n, h, w, d)`` (pytorch-grad-cam's ``reshape_transform``, channels last).
        batch_size: most rows passed to the model at once: images per capture, and masked or
            ablated rows for Score-CAM and Ablation-CAM; ``None`` picks a default for the
            backend and the image size.
        mesh: optional :class:`jax.sharding.Mesh` to shard the images over; the maps equal the
            one-device call's.
        eigen_smooth: the map is the first principal component of the weighted activations
            ``w_c * A_c`` instead of their sum (pytorch-grad-cam's ``eigen_smooth``; its SVD
            sign, arbitrary there, agrees here with the unsmoothed map). No effect on
            weightings that return the map (EigenCAM, KPCA-CAM).
        aug_smooth: average the maps of six augmented copies of the images (horizontal flip
            times brightness ``0.9, 1.0, 1.1``, pytorch-grad-cam's test-time augmentation), each
            flipped back; each copy's map is normalised when ``normalize``. The extras are
            the un-augmented images'.
        per_channel: also return ``channel_maps (n, h, w, c)``, each channel's term
            ``w_c * A_c`` of the map (before the ReLU; one layer only).

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values (n, H, W)`` (no leading
        axis for one image), ``data`` the images, ``base_values`` zeros, and extras
        ``raw_maps (n, h, w)`` (before upsampling and normalisation), ``targets (n,)`` (-1 for
        a callable), ``scores (n,)``, ``logits (n, K)`` and, for channel weightings,
        ``channel_weights (n, c)``.

    Raises:
        ValueError: for bad images, layers, targets or options, or when the model's outputs,
            the layer's activations, the gradients or the masked/ablated scores are NaN or inf.

    References:
        Zhou et al. 2016, Learning Deep Features for Discriminative Localization, CVPR; the
        weightings' papers in :mod:`xaijax.cam.weightings`.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jax.random.normal(jax.random.key(0), (3, 5))
        >>> head = lambda A: A.mean(axis=(1, 2)) @ w
        >>> exp = cam(jax.nn.relu, head, jnp.ones((2, 8, 8, 3)), 1, weighting="layer_cam")
        >>> exp.values.shape, exp.extras["raw_maps"].shape
        ((2, 8, 8), (2, 8, 8))
    """
    counterfactual = _check_bool("counterfactual", counterfactual)
    normalize = _check_bool("normalize", normalize)
    relu = _check_bool("relu", relu)
    eigen_smooth = _check_bool("eigen_smooth", eigen_smooth)
    aug_smooth = _check_bool("aug_smooth", aug_smooth)
    per_channel = _check_bool("per_channel", per_channel)
    contract.check_choice("resize", resize, RESIZE_METHODS)
    options = dict(
        weighting=weighting,
        counterfactual=counterfactual,
        resize=resize,
        normalize=normalize,
        relu=relu,
        batch_size=batch_size,
        mesh=mesh,
        eigen_smooth=eigen_smooth,
        per_channel=per_channel,
    )
    if aug_smooth:
        X, single = prepare_images(images)
        return smoothing.augmentation_smoothing(cam, features, head, X, single, targets, options)
    layers = smoothing.several_layers(features, head)
    if layers is not None:
        if per_channel:
            raise ValueError("per_channel=True needs one target layer; got several in `head`")
        X, single = prepare_images(images)
        return smoothing.aggregate_layers(cam, features, layers, X, single, targets, options)
    if isinstance(weighting, str):
        contract.check_choice("weighting", weighting, tuple(WEIGHTINGS))
        if counterfactual and WEIGHTINGS[weighting][1] != "gradients":
            raise ValueError(
                f"counterfactual=True negates the gradient; weighting={weighting!r} uses none"
            )
    problem = prepare(
        features, head, images, targets, batch_size=batch_size, mesh=mesh, reshape=reshape
    )
    weighting = _check_weighting(weighting, problem.a_shape)
    maps, extras, outputs_ok, grads_ok = run(
        problem,
        weighting,
        counterfactual=counterfactual,
        relu=relu,
        resize=resize,
        normalize=normalize,
        eigen_smooth=eigen_smooth,
        per_channel=per_channel,
    )
    method = weighting if isinstance(weighting, str) else "cam"
    return report(problem, maps, extras, outputs_ok, grads_ok, method=method)
