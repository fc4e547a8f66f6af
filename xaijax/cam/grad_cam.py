"""The Grad-CAM family: one activation/gradient capture, different channel weightings.

Every method here is ``map = ReLU(sum_c w_c(A, G) * A_c)`` (or an elementwise variant) on the
activations ``A: (n, h, w, c)`` of one layer and the gradients ``G = d score / d A``, captured for
the whole batch with a single ``jax.vjp`` (see :mod:`xaijax.cam.layer`). The raw ``(h, w)`` maps
are upsampled to the input size with ``jax.image.resize`` and optionally min-max normalised per
image. Score-CAM and Ablation-CAM replace gradients by ``n * c`` extra model evaluations, which run
in chunks of ``batch_size`` rows (:func:`xaijax.models.map_row_chunks`) so memory stays bounded.

Everything after input checking is one jitted function; the model functions, the method and the
options are static, so repeated calls with same-shaped images compile once.

``features`` / ``head`` may be two functions (``features: X (n,H,W,C) -> A (n,h,w,c)``,
``head: A -> logits (n,K)``) or a Flax NNX module and the path of its target layer
(``grad_cam(model, "block3/conv2", images)``); the module is never modified.
"""

from __future__ import annotations

import functools
import textwrap

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.batching import map_row_chunks
from xaijax.core.explanation import Explanation
from xaijax.core.layers import LayerModel, layer_model
from xaijax.core.registry import explainer
from xaijax.core.targets import resolve_targets, target_scores

__all__ = [
    "grad_cam",
    "grad_cam_plus_plus",
    "hires_cam",
    "xgrad_cam",
    "layer_cam",
    "eigen_cam",
    "score_cam",
    "ablation_cam",
    "normalize_maps",
    "upsample_maps",
]

_GRADIENT_METHODS = ("grad_cam", "grad_cam_plus_plus", "hires_cam", "xgrad_cam", "layer_cam")
_RESIZE_METHODS = ("bilinear", "nearest")


# -- channel weightings: (A, G) -> (cam (n,h,w), channel weights (n,c) or None) --
def _safe_divide(num, den):
    return num / jnp.where(den == 0, 1.0, den)


def _grad_cam_weighting(A, G):
    w = G.mean(axis=(1, 2))
    return jnp.einsum("nhwc,nc->nhw", A, w), w


def _grad_cam_plus_plus_weighting(A, G):
    # Chattopadhay et al., eq. 19 with the exponential score, so that only first-order gradients of
    # the score appear: alpha = g^2 / (2 g^2 + sum_ab A_ab * g^3), zero where g == 0.
    g2 = G * G
    sum_a = A.sum(axis=(1, 2), keepdims=True)
    alpha = jnp.where(G != 0, _safe_divide(g2, 2.0 * g2 + sum_a * g2 * G), 0.0)
    w = (alpha * jax.nn.relu(G)).sum(axis=(1, 2))
    return jnp.einsum("nhwc,nc->nhw", A, w), w


def _hires_cam_weighting(A, G):
    return (A * G).sum(axis=-1), None


def _xgrad_cam_weighting(A, G):
    w = _safe_divide((A * G).sum(axis=(1, 2)), A.sum(axis=(1, 2)))
    return jnp.einsum("nhwc,nc->nhw", A, w), w


def _layer_cam_weighting(A, G):
    return (jax.nn.relu(G) * A).sum(axis=-1), None


def _eigen_cam_map(A):
    n, h, w, c = A.shape
    flat = A.reshape(n, h * w, c)
    centered = flat - flat.mean(axis=1, keepdims=True)
    _, _, vt = jnp.linalg.svd(centered, full_matrices=False)
    proj = jnp.einsum("npc,nc->np", centered, vt[:, 0, :])
    # The principal direction's sign is arbitrary; pick the one that agrees with the mean
    # activation so that the map highlights where the layer fires, not where it is silent.
    sign = jnp.sign(jnp.einsum("np,np->n", proj, flat.mean(axis=2)))
    sign = jnp.where(sign == 0, 1.0, sign)
    return (proj * sign[:, None]).reshape(n, h, w)


_WEIGHTINGS = {
    "grad_cam": _grad_cam_weighting,
    "grad_cam_plus_plus": _grad_cam_plus_plus_weighting,
    "hires_cam": _hires_cam_weighting,
    "xgrad_cam": _xgrad_cam_weighting,
    "layer_cam": _layer_cam_weighting,
}


# -- shared post-processing --
def upsample_maps(maps, size, method="bilinear"):
    """Resize maps ``(n, h, w)`` to ``(n, *size)`` with ``jax.image.resize`` (half-pixel centres).

    Example:
        >>> import jax.numpy as jnp
        >>> upsample_maps(jnp.ones((1, 2, 2)), (4, 4), "nearest").shape
        (1, 4, 4)
    """
    return jax.image.resize(maps, maps.shape[:1] + tuple(size), method=method)


def normalize_maps(maps):
    """Min-max normalise each map of ``(n, ...)`` to ``[0, 1]``; a constant map becomes zeros.

    Example:
        >>> import jax.numpy as jnp
        >>> normalize_maps(jnp.array([[1.0, 3.0], [2.0, 2.0]])).tolist()
        [[0.0, 1.0], [0.0, 0.0]]
    """
    axes = tuple(range(1, maps.ndim))
    lo = maps.min(axis=axes, keepdims=True)
    span = maps.max(axis=axes, keepdims=True) - lo
    return _safe_divide(maps - lo, span)


# -- the one compiled mechanism --
def capture(lm: LayerModel, X, targets, target_fn, sign=1.0):
    """Activations, gradients of the (signed) target score w.r.t. them, logits, scores, targets.

    One ``jax.vjp`` for the batch: the head treats images independently, so the gradient of the
    summed scores w.r.t. ``A`` holds each image's own gradient.
    """
    a_shape = jax.eval_shape(lambda x: lm.forward(x)[1], X)
    delta0 = jnp.zeros(a_shape.shape, a_shape.dtype)

    def scored(delta):
        logits, A = lm.forward(X, delta)
        scores, t = target_scores(logits, targets, target_fn)
        return scores, (logits, A, t, scores)

    _, vjp, (logits, A, t, scores) = jax.vjp(scored, delta0, has_aux=True)
    (G,) = vjp(jnp.full(scores.shape, sign, scores.dtype))
    return A, G, logits, scores, t


def _channel_scores(score_rows, n, c, batch_size):
    """``score_rows(image_idx, channel_idx) -> (b,)`` over all ``n * c`` pairs, in chunks."""
    out = map_row_chunks(lambda rows: score_rows(rows // c, rows % c), n * c, batch_size)
    return out.reshape(n, c)


@functools.partial(
    jax.jit,
    static_argnames=(
        "method",
        "target_fn",
        "counterfactual",
        "relu",
        "resize",
        "normalize",
        "batch_size",
    ),
)
def _cam(lm, X, targets, *, method, target_fn, counterfactual, relu, resize, normalize, batch_size):
    n, height, width = X.shape[:3]
    weights = None
    if method in _WEIGHTINGS:
        A, G, logits, scores, t = capture(
            lm, X, targets, target_fn, -1.0 if counterfactual else 1.0
        )
        cam, weights = _WEIGHTINGS[method](A, G)
    else:
        logits, A = lm.forward(X)
        scores, t = target_scores(logits, targets, target_fn)
        c = A.shape[-1]
        t_rows = None if target_fn is not None or logits.ndim == 1 else t
        if method == "eigen_cam":
            cam = _eigen_cam_map(A)
        elif method == "score_cam":

            def masked_scores(i, k):
                masks = normalize_maps(upsample_maps(A[i, :, :, k], (height, width), "bilinear"))
                logit_k = lm.logits(X[i] * masks[..., None].astype(X.dtype))
                return target_scores(logit_k, None if t_rows is None else t[i], target_fn)[0]

            # Wang et al. normalise the masked-input scores with a softmax over channels.
            weights = jax.nn.softmax(_channel_scores(masked_scores, n, c, batch_size), axis=1)
            cam = jnp.einsum("nhwc,nc->nhw", A, weights)
        elif method == "ablation_cam":

            def ablated_scores(i, k):
                keep = 1.0 - jax.nn.one_hot(k, c, dtype=A.dtype)
                logit_k = lm.logits_from(X[i], A[i] * keep[:, None, None, :])
                return target_scores(logit_k, None if t_rows is None else t[i], target_fn)[0]

            ablated = _channel_scores(ablated_scores, n, c, batch_size)
            # Desai & Ramaswamy: w_k = (y - y_k) / y, the relative drop when channel k is removed.
            weights = _safe_divide(scores[:, None] - ablated, scores[:, None])
            cam = jnp.einsum("nhwc,nc->nhw", A, weights)
        else:  # pragma: no cover - checked by the public wrappers
            raise ValueError(f"unknown CAM method {method!r}")
    raw = jax.nn.relu(cam) if relu else cam
    maps = upsample_maps(raw, (height, width), resize)
    if normalize:
        maps = normalize_maps(maps)
    extras = {"raw_maps": raw, "targets": t, "scores": scores, "logits": logits}
    if weights is not None:
        extras["channel_weights"] = weights
    return maps, extras, jnp.isfinite(logits).all()


def _explain(
    method,
    features,
    head,
    images,
    targets,
    *,
    counterfactual=False,
    relu=True,
    resize="bilinear",
    normalize=True,
    batch_size=64,
) -> Explanation:
    lm = layer_model(features, head)
    X, single = _check_images(images)
    if resize not in _RESIZE_METHODS:
        raise ValueError(f"resize must be one of {_RESIZE_METHODS}; got {resize!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    logits_shape, a_shape = _probe(lm, X)
    if len(a_shape) != 4:
        raise ValueError(
            f"the target layer's activations must be 4-D (n, h, w, c) in NHWC layout; got shape "
            f"{tuple(a_shape)}. For a dense or token layer, reshape them in `features`."
        )
    if len(logits_shape) not in (1, 2):
        raise ValueError(f"head must return logits (n,) or (n, K); got shape {tuple(logits_shape)}")
    num_classes = logits_shape[1] if len(logits_shape) == 2 else None
    t, target_fn = resolve_targets(targets, X.shape[0], num_classes)
    maps, extras, finite = _cam(
        lm,
        X,
        t,
        method=method,
        target_fn=target_fn,
        counterfactual=bool(counterfactual),
        relu=bool(relu),
        resize=resize,
        normalize=bool(normalize),
        batch_size=int(batch_size),
    )
    if not bool(finite):
        raise ValueError("the model's outputs (logits) contain NaN or inf for these images")
    exp = Explanation(
        values=maps,
        base_values=jnp.zeros(X.shape[:1], maps.dtype),
        data=X,
        method=method,
        kind="map",
        extras=extras,
    )
    return exp[0] if single else exp


def _check_images(images):
    X = jnp.asarray(images)
    if X.ndim not in (3, 4):
        raise ValueError(
            f"images must be NHWC (n, H, W, C) or one image (H, W, C); got shape {tuple(X.shape)}"
        )
    if not jnp.issubdtype(X.dtype, jnp.floating):
        X = X.astype(jnp.zeros((), dtype=float).dtype)
    if not bool(jnp.isfinite(X).all()):
        raise ValueError("images contain NaN or inf")
    single = X.ndim == 3
    return (X[None] if single else X), single


_PROBES: dict = {}


def _probe(lm, X):
    """Shapes of the logits and the layer's activations, traced once per model and input shape."""
    leaves, treedef = jax.tree.flatten(lm)
    cache_key = (treedef, tuple((np.shape(x), str(x.dtype)) for x in leaves), X.shape, X.dtype)
    if cache_key not in _PROBES:
        if len(_PROBES) > 64:
            _PROBES.clear()
        _PROBES[cache_key] = _probe_shapes(lm, X)
    return _PROBES[cache_key]


def _probe_shapes(lm, X):
    spec = jax.ShapeDtypeStruct(X.shape, X.dtype)
    try:
        logits, A = jax.eval_shape(lambda x: lm.forward(x), spec)
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(
            f"the model failed on images of shape {tuple(X.shape)}: {type(err).__name__}: {err}"
        ) from err
    return np.shape(logits), np.shape(A)


_DOC_ARGS = """
    Args:
        features: ``X (n,H,W,C) -> A (n,h,w,c)``, or a Flax NNX module.
        head: ``A (n,h,w,c) -> logits (n,K)``, or the path of the target layer in the module
            (``"block3/conv2"``, ``("layers", 4)``).
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: ``None`` (the predicted class), an int, ``(n,)`` ints, or a callable
            ``fn(logits) -> (n,)`` defining the explained score.
        resize: ``"bilinear"`` (default) or ``"nearest"`` upsampling to ``(H, W)``.
        normalize: min-max normalise each upsampled map to ``[0, 1]`` (constant maps become 0).
        relu: apply the final ReLU to the map (as the papers do).

    Returns:
        An :class:`~xaijax.Explanation` with ``values (n, H, W)`` (no leading axis for one image),
        ``data`` the images, ``base_values`` zeros, and extras ``raw_maps (n, h, w)`` (before
        upsampling and normalisation), ``targets (n,)`` (-1 for a callable), ``scores (n,)``,
        ``logits (n, K)`` and, for channel-weighted methods, ``channel_weights (n, c)``.
"""


def _doc(summary, references, example, extra_args=""):
    def deco(fn):
        fn.__doc__ = (
            summary
            + "\n"
            + _DOC_ARGS.replace("\n\n    Returns:", extra_args + "\n\n    Returns:")
            + "\n    References:\n"
            + textwrap.fill(references, 100, initial_indent=" " * 8, subsequent_indent=" " * 8)
            + "\n\n    Example:\n"
            + example
        )
        return fn

    return deco


_EXAMPLE = """        >>> import jax, jax.numpy as jnp
        >>> w = jax.random.normal(jax.random.key(0), (3, 5))
        >>> features = lambda X: jax.nn.relu(X)
        >>> head = lambda A: A.mean(axis=(1, 2)) @ w
        >>> exp = {name}(features, head, jnp.ones((2, 8, 8, 3)), targets=1)
        >>> exp.values.shape, exp.extras["raw_maps"].shape
        ((2, 8, 8), (2, 8, 8))
"""

_COUNTERFACTUAL = """
        counterfactual: explain evidence *against* the target (the gradient is negated)."""


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
@_doc(
    "Grad-CAM: ReLU(sum_c mean_hw(dS/dA_c) * A_c), the gradient-weighted class activation map.",
    "Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via "
    "Gradient-based Localization, ICCV.",
    _EXAMPLE.format(name="grad_cam"),
    _COUNTERFACTUAL,
)
def grad_cam(
    features,
    head,
    images,
    targets=None,
    *,
    counterfactual=False,
    resize="bilinear",
    normalize=True,
    relu=True,
) -> Explanation:
    return _explain(
        "grad_cam", features, head, images, targets, counterfactual=counterfactual,
        resize=resize, normalize=normalize, relu=relu,
    )  # fmt: skip


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
@_doc(
    "Grad-CAM++: channel weights sum_hw alpha * ReLU(dS/dA) with the closed-form alpha.",
    "Chattopadhay et al. 2018, Grad-CAM++: Generalized Gradient-based Visual Explanations for "
    "Deep Convolutional Networks, WACV.",
    _EXAMPLE.format(name="grad_cam_plus_plus"),
    _COUNTERFACTUAL,
)
def grad_cam_plus_plus(
    features,
    head,
    images,
    targets=None,
    *,
    counterfactual=False,
    resize="bilinear",
    normalize=True,
    relu=True,
) -> Explanation:
    return _explain(
        "grad_cam_plus_plus", features, head, images, targets, counterfactual=counterfactual,
        resize=resize, normalize=normalize, relu=relu,
    )  # fmt: skip


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
@_doc(
    "HiResCAM: ReLU(sum_c dS/dA_c * A_c), the elementwise gradient-activation product.",
    "Draelos & Carin 2020, Use HiResCAM instead of Grad-CAM for faithful explanations of "
    "convolutional neural networks, arXiv:2011.08891.",
    _EXAMPLE.format(name="hires_cam"),
    _COUNTERFACTUAL,
)
def hires_cam(
    features,
    head,
    images,
    targets=None,
    *,
    counterfactual=False,
    resize="bilinear",
    normalize=True,
    relu=True,
) -> Explanation:
    return _explain(
        "hires_cam", features, head, images, targets, counterfactual=counterfactual,
        resize=resize, normalize=normalize, relu=relu,
    )  # fmt: skip


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
@_doc(
    "XGrad-CAM: channel weights sum_hw(A_c * dS/dA_c) / sum_hw A_c.",
    "Fu et al. 2020, Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of "
    "CNNs, BMVC.",
    _EXAMPLE.format(name="xgrad_cam"),
    _COUNTERFACTUAL,
)
def xgrad_cam(
    features,
    head,
    images,
    targets=None,
    *,
    counterfactual=False,
    resize="bilinear",
    normalize=True,
    relu=True,
) -> Explanation:
    return _explain(
        "xgrad_cam", features, head, images, targets, counterfactual=counterfactual,
        resize=resize, normalize=normalize, relu=relu,
    )  # fmt: skip


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
@_doc(
    "LayerCAM: ReLU(sum_c ReLU(dS/dA_c) * A_c), spatially weighted by positive gradients.",
    "Jiang et al. 2021, LayerCAM: Exploring Hierarchical Class Activation Maps for "
    "Localization, IEEE TIP.",
    _EXAMPLE.format(name="layer_cam"),
    _COUNTERFACTUAL,
)
def layer_cam(
    features,
    head,
    images,
    targets=None,
    *,
    counterfactual=False,
    resize="bilinear",
    normalize=True,
    relu=True,
) -> Explanation:
    return _explain(
        "layer_cam", features, head, images, targets, counterfactual=counterfactual,
        resize=resize, normalize=normalize, relu=relu,
    )  # fmt: skip


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
@_doc(
    "EigenCAM: the activations projected on their first principal component (class-agnostic).\n\n"
    "    The sign of the component is chosen to agree with the mean activation map.",
    "Muhammad & Yeasin 2020, Eigen-CAM: Class Activation Map using Principal Components, IJCNN.",
    _EXAMPLE.format(name="eigen_cam"),
)
def eigen_cam(
    features, head, images, targets=None, *, resize="bilinear", normalize=True, relu=True
) -> Explanation:
    return _explain(
        "eigen_cam", features, head, images, targets, resize=resize, normalize=normalize, relu=relu
    )


_BATCH = """
        batch_size: model evaluations per chunk (rows of the ``n * c`` masked inputs); bounds
            memory."""


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
@_doc(
    "Score-CAM: channel weights softmax_c(S(X * upsample(A_c))) from masked-input scores.\n\n"
    "    Each channel, upsampled and min-max normalised, masks the image; the target score of the\n"
    "    masked image (a logit, as in pytorch-grad-cam) is softmax-normalised over channels.\n"
    "    ``n * c`` model evaluations, batched in chunks of ``batch_size``.",
    "Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural "
    "Networks, CVPR Workshops.",
    _EXAMPLE.format(name="score_cam"),
    _BATCH,
)
def score_cam(
    features,
    head,
    images,
    targets=None,
    *,
    resize="bilinear",
    normalize=True,
    relu=True,
    batch_size=64,
) -> Explanation:
    return _explain(
        "score_cam", features, head, images, targets, resize=resize, normalize=normalize,
        relu=relu, batch_size=batch_size,
    )  # fmt: skip


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
@_doc(
    "Ablation-CAM: channel weights (S - S_without_c) / S from zeroing each channel in turn.\n\n"
    "    ``n * c`` evaluations of the head (or, for an NNX module, of the model with the layer's\n"
    "    channel zeroed), batched in chunks of ``batch_size``; a zero score leaves weights\n"
    "    undivided.",
    "Desai & Ramaswamy 2020, Ablation-CAM: Visual Explanation for Deep Convolutional Network "
    "via Gradient-free Localization, WACV.",
    _EXAMPLE.format(name="ablation_cam"),
    _BATCH,
)
def ablation_cam(
    features,
    head,
    images,
    targets=None,
    *,
    resize="bilinear",
    normalize=True,
    relu=True,
    batch_size=64,
) -> Explanation:
    return _explain(
        "ablation_cam", features, head, images, targets, resize=resize, normalize=normalize,
        relu=relu, batch_size=batch_size,
    )  # fmt: skip
