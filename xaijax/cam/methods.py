"""The named CAMs: :func:`~xaijax.cam.cam` with one paper's weighting each."""

# jaxtyping shape strings such as "*n H W C" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

from jaxtyping import ArrayLike, Float

from xaijax.cam.activation_maps import cam
from xaijax.core.explanation import Explanation
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets

__all__ = [
    "grad_cam",
    "grad_cam_plus_plus",
    "hires_cam",
    "xgrad_cam",
    "layer_cam",
    "eigen_cam",
    "score_cam",
    "ablation_cam",
]


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
def grad_cam(
    features,
    head,
    images: Float[ArrayLike, "*n H W C"],
    targets: Targets = None,
    *,
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
    """Grad-CAM: ``ReLU(sum_c mean_hw(dS/dA_c) * A_c)``, the gradient-weighted class activation map.

    :func:`~xaijax.cam.cam` with ``weighting="grad_cam"`` (:func:`~xaijax.cam.grad_cam_weights`).

    Args:
        features: ``X (n, H, W, C) -> A (n, h, w, c)``, or a Flax NNX module.
        head: ``A (n, h, w, c) -> logits (n, K)``, or the path of the target layer in the
            module (``"block3/conv2"``, ``("layers", 4)``).
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints,
            or a callable ``fn(logits) -> (n,)``.
        counterfactual: explain evidence *against* the target (the gradient is negated).
        resize: ``"bilinear"`` (default) or ``"nearest"`` upsampling to ``(H, W)``.
        normalize: min-max normalise each upsampled map to ``[0, 1]`` (constant maps become 0).
        relu: apply the final ReLU to the map (as the paper does).
        reshape: a token layer as a grid: ``True`` for ViT tokens ``(n, 1 + h*w, d)``
            (class token dropped, square grid), an ``(h, w)`` grid, or ``A -> (n, h, w, d)``;
            see :func:`~xaijax.cam.cam`.
        batch_size: most images passed to the model at once; ``None`` picks a default for
            the backend and the image size.
        mesh: optional :class:`jax.sharding.Mesh` to shard the images over.
        eigen_smooth, aug_smooth, per_channel: pytorch-grad-cam's smoothing options and the
            per-channel terms ``channel_maps``; several layers as a list of paths (see
            :func:`~xaijax.cam.cam`).

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values (n, H, W)`` (no leading
        axis for one image), ``base_values`` zeros and extras ``raw_maps (n, h, w)``,
        ``targets (n,)``, ``scores (n,)``, ``logits``, ``channel_weights (n, c)``.

    References:
        Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via
        Gradient-based Localization, ICCV.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jax.random.normal(jax.random.key(0), (3, 5))
        >>> head = lambda A: A.mean(axis=(1, 2)) @ w
        >>> exp = grad_cam(jax.nn.relu, head, jnp.ones((2, 8, 8, 3)), targets=1)
        >>> exp.values.shape, exp.extras["raw_maps"].shape
        ((2, 8, 8), (2, 8, 8))
    """
    return cam(
        features,
        head,
        images,
        targets,
        weighting="grad_cam",
        counterfactual=counterfactual,
        resize=resize,
        normalize=normalize,
        relu=relu,
        reshape=reshape,
        batch_size=batch_size,
        mesh=mesh,
        eigen_smooth=eigen_smooth,
        aug_smooth=aug_smooth,
        per_channel=per_channel,
    )


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
def grad_cam_plus_plus(
    features,
    head,
    images: Float[ArrayLike, "*n H W C"],
    targets: Targets = None,
    *,
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
    """Grad-CAM++: channel weights ``sum_hw alpha * ReLU(dS/dA_c)`` with the closed-form alpha.

    :func:`~xaijax.cam.cam` with ``weighting="grad_cam_plus_plus"``
    (:func:`~xaijax.cam.grad_cam_plus_plus_weights`).

    Args:
        features: ``X (n, H, W, C) -> A (n, h, w, c)``, or a Flax NNX module.
        head: ``A (n, h, w, c) -> logits (n, K)``, or the path of the target layer in the
            module (``"block3/conv2"``, ``("layers", 4)``).
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints,
            or a callable ``fn(logits) -> (n,)``.
        counterfactual: explain evidence *against* the target (the gradient is negated).
        resize: ``"bilinear"`` (default) or ``"nearest"`` upsampling to ``(H, W)``.
        normalize: min-max normalise each upsampled map to ``[0, 1]`` (constant maps become 0).
        relu: apply the final ReLU to the map (as the paper does).
        reshape: a token layer as a grid: ``True`` for ViT tokens ``(n, 1 + h*w, d)``
            (class token dropped, square grid), an ``(h, w)`` grid, or ``A -> (n, h, w, d)``;
            see :func:`~xaijax.cam.cam`.
        batch_size: most images passed to the model at once; ``None`` picks a default for
            the backend and the image size.
        mesh: optional :class:`jax.sharding.Mesh` to shard the images over.
        eigen_smooth, aug_smooth, per_channel: pytorch-grad-cam's smoothing options and the
            per-channel terms ``channel_maps`` (see :func:`~xaijax.cam.cam`).

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values (n, H, W)`` (no leading
        axis for one image), ``base_values`` zeros and extras ``raw_maps (n, h, w)``,
        ``targets (n,)``, ``scores (n,)``, ``logits``, ``channel_weights (n, c)``.

    References:
        Chattopadhay et al. 2018, Grad-CAM++: Generalized Gradient-based Visual Explanations
        for Deep Convolutional Networks, WACV.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jax.random.normal(jax.random.key(0), (3, 5))
        >>> head = lambda A: A.mean(axis=(1, 2)) @ w
        >>> exp = grad_cam_plus_plus(jax.nn.relu, head, jnp.ones((2, 8, 8, 3)), targets=1)
        >>> exp.values.shape, exp.extras["raw_maps"].shape
        ((2, 8, 8), (2, 8, 8))
    """
    return cam(
        features,
        head,
        images,
        targets,
        weighting="grad_cam_plus_plus",
        counterfactual=counterfactual,
        resize=resize,
        normalize=normalize,
        relu=relu,
        reshape=reshape,
        batch_size=batch_size,
        mesh=mesh,
        eigen_smooth=eigen_smooth,
        aug_smooth=aug_smooth,
        per_channel=per_channel,
    )


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
def hires_cam(
    features,
    head,
    images: Float[ArrayLike, "*n H W C"],
    targets: Targets = None,
    *,
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
    """HiResCAM: ``ReLU(sum_c dS/dA_c * A_c)``, the elementwise gradient-activation product.

    :func:`~xaijax.cam.cam` with ``weighting="hires_cam"`` (:func:`~xaijax.cam.hires_cam_weights`).

    Args:
        features: ``X (n, H, W, C) -> A (n, h, w, c)``, or a Flax NNX module.
        head: ``A (n, h, w, c) -> logits (n, K)``, or the path of the target layer in the
            module (``"block3/conv2"``, ``("layers", 4)``).
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints,
            or a callable ``fn(logits) -> (n,)``.
        counterfactual: explain evidence *against* the target (the gradient is negated).
        resize: ``"bilinear"`` (default) or ``"nearest"`` upsampling to ``(H, W)``.
        normalize: min-max normalise each upsampled map to ``[0, 1]`` (constant maps become 0).
        relu: apply the final ReLU to the map (as the paper does).
        reshape: a token layer as a grid: ``True`` for ViT tokens ``(n, 1 + h*w, d)``
            (class token dropped, square grid), an ``(h, w)`` grid, or ``A -> (n, h, w, d)``;
            see :func:`~xaijax.cam.cam`.
        batch_size: most images passed to the model at once; ``None`` picks a default for
            the backend and the image size.
        mesh: optional :class:`jax.sharding.Mesh` to shard the images over.
        eigen_smooth, aug_smooth, per_channel: pytorch-grad-cam's smoothing options and the
            per-channel terms ``channel_maps`` (see :func:`~xaijax.cam.cam`).

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values (n, H, W)`` (no leading
        axis for one image), ``base_values`` zeros and extras ``raw_maps (n, h, w)``,
        ``targets (n,)``, ``scores (n,)``, ``logits``.

    References:
        Draelos & Carin 2020, Use HiResCAM instead of Grad-CAM for faithful explanations of
        convolutional neural networks, arXiv:2011.08891.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jax.random.normal(jax.random.key(0), (3, 5))
        >>> head = lambda A: A.mean(axis=(1, 2)) @ w
        >>> exp = hires_cam(jax.nn.relu, head, jnp.ones((2, 8, 8, 3)), targets=1)
        >>> exp.values.shape, exp.extras["raw_maps"].shape
        ((2, 8, 8), (2, 8, 8))
    """
    return cam(
        features,
        head,
        images,
        targets,
        weighting="hires_cam",
        counterfactual=counterfactual,
        resize=resize,
        normalize=normalize,
        relu=relu,
        reshape=reshape,
        batch_size=batch_size,
        mesh=mesh,
        eigen_smooth=eigen_smooth,
        aug_smooth=aug_smooth,
        per_channel=per_channel,
    )


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
def xgrad_cam(
    features,
    head,
    images: Float[ArrayLike, "*n H W C"],
    targets: Targets = None,
    *,
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
    """XGrad-CAM: channel weights ``sum_hw(A_c * dS/dA_c) / sum_hw A_c``.

    :func:`~xaijax.cam.cam` with ``weighting="xgrad_cam"`` (:func:`~xaijax.cam.xgrad_cam_weights`).

    Args:
        features: ``X (n, H, W, C) -> A (n, h, w, c)``, or a Flax NNX module.
        head: ``A (n, h, w, c) -> logits (n, K)``, or the path of the target layer in the
            module (``"block3/conv2"``, ``("layers", 4)``).
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints,
            or a callable ``fn(logits) -> (n,)``.
        counterfactual: explain evidence *against* the target (the gradient is negated).
        resize: ``"bilinear"`` (default) or ``"nearest"`` upsampling to ``(H, W)``.
        normalize: min-max normalise each upsampled map to ``[0, 1]`` (constant maps become 0).
        relu: apply the final ReLU to the map (as the paper does).
        reshape: a token layer as a grid: ``True`` for ViT tokens ``(n, 1 + h*w, d)``
            (class token dropped, square grid), an ``(h, w)`` grid, or ``A -> (n, h, w, d)``;
            see :func:`~xaijax.cam.cam`.
        batch_size: most images passed to the model at once; ``None`` picks a default for
            the backend and the image size.
        mesh: optional :class:`jax.sharding.Mesh` to shard the images over.
        eigen_smooth, aug_smooth, per_channel: pytorch-grad-cam's smoothing options and the
            per-channel terms ``channel_maps`` (see :func:`~xaijax.cam.cam`).

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values (n, H, W)`` (no leading
        axis for one image), ``base_values`` zeros and extras ``raw_maps (n, h, w)``,
        ``targets (n,)``, ``scores (n,)``, ``logits``, ``channel_weights (n, c)``.

    References:
        Fu et al. 2020, Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of
        CNNs, BMVC.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jax.random.normal(jax.random.key(0), (3, 5))
        >>> head = lambda A: A.mean(axis=(1, 2)) @ w
        >>> exp = xgrad_cam(jax.nn.relu, head, jnp.ones((2, 8, 8, 3)), targets=1)
        >>> exp.values.shape, exp.extras["raw_maps"].shape
        ((2, 8, 8), (2, 8, 8))
    """
    return cam(
        features,
        head,
        images,
        targets,
        weighting="xgrad_cam",
        counterfactual=counterfactual,
        resize=resize,
        normalize=normalize,
        relu=relu,
        reshape=reshape,
        batch_size=batch_size,
        mesh=mesh,
        eigen_smooth=eigen_smooth,
        aug_smooth=aug_smooth,
        per_channel=per_channel,
    )


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
def layer_cam(
    features,
    head,
    images: Float[ArrayLike, "*n H W C"],
    targets: Targets = None,
    *,
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
    """LayerCAM: ``ReLU(sum_c ReLU(dS/dA_c) * A_c)``, spatially weighted by positive gradients.

    :func:`~xaijax.cam.cam` with ``weighting="layer_cam"`` (:func:`~xaijax.cam.layer_cam_weights`).

    Args:
        features: ``X (n, H, W, C) -> A (n, h, w, c)``, or a Flax NNX module.
        head: ``A (n, h, w, c) -> logits (n, K)``, or the path of the target layer in the
            module (``"block3/conv2"``, ``("layers", 4)``).
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints,
            or a callable ``fn(logits) -> (n,)``.
        counterfactual: explain evidence *against* the target (the gradient is negated).
        resize: ``"bilinear"`` (default) or ``"nearest"`` upsampling to ``(H, W)``.
        normalize: min-max normalise each upsampled map to ``[0, 1]`` (constant maps become 0).
        relu: apply the final ReLU to the map (as the paper does).
        reshape: a token layer as a grid: ``True`` for ViT tokens ``(n, 1 + h*w, d)``
            (class token dropped, square grid), an ``(h, w)`` grid, or ``A -> (n, h, w, d)``;
            see :func:`~xaijax.cam.cam`.
        batch_size: most images passed to the model at once; ``None`` picks a default for
            the backend and the image size.
        mesh: optional :class:`jax.sharding.Mesh` to shard the images over.
        eigen_smooth, aug_smooth, per_channel: pytorch-grad-cam's smoothing options and the
            per-channel terms ``channel_maps`` (see :func:`~xaijax.cam.cam`).

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values (n, H, W)`` (no leading
        axis for one image), ``base_values`` zeros and extras ``raw_maps (n, h, w)``,
        ``targets (n,)``, ``scores (n,)``, ``logits``.

    References:
        Jiang et al. 2021, LayerCAM: Exploring Hierarchical Class Activation Maps for
        Localization, IEEE TIP.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jax.random.normal(jax.random.key(0), (3, 5))
        >>> head = lambda A: A.mean(axis=(1, 2)) @ w
        >>> exp = layer_cam(jax.nn.relu, head, jnp.ones((2, 8, 8, 3)), targets=1)
        >>> exp.values.shape, exp.extras["raw_maps"].shape
        ((2, 8, 8), (2, 8, 8))
    """
    return cam(
        features,
        head,
        images,
        targets,
        weighting="layer_cam",
        counterfactual=counterfactual,
        resize=resize,
        normalize=normalize,
        relu=relu,
        reshape=reshape,
        batch_size=batch_size,
        mesh=mesh,
        eigen_smooth=eigen_smooth,
        aug_smooth=aug_smooth,
        per_channel=per_channel,
    )


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
def eigen_cam(
    features,
    head,
    images: Float[ArrayLike, "*n H W C"],
    targets: Targets = None,
    *,
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
    """EigenCAM: the centred activations projected on their first principal component.

    Class-agnostic: ``targets`` only sets the reported scores. The component's sign is
    chosen to agree with the mean activation map.

    :func:`~xaijax.cam.cam` with ``weighting="eigen_cam"`` (:func:`~xaijax.cam.eigen_cam_weights`).

    Args:
        features: ``X (n, H, W, C) -> A (n, h, w, c)``, or a Flax NNX module.
        head: ``A (n, h, w, c) -> logits (n, K)``, or the path of the target layer in the
            module (``"block3/conv2"``, ``("layers", 4)``).
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints,
            or a callable ``fn(logits) -> (n,)``.
        resize: ``"bilinear"`` (default) or ``"nearest"`` upsampling to ``(H, W)``.
        normalize: min-max normalise each upsampled map to ``[0, 1]`` (constant maps become 0).
        relu: apply the final ReLU to the map (as the paper does).
        reshape: a token layer as a grid: ``True`` for ViT tokens ``(n, 1 + h*w, d)``
            (class token dropped, square grid), an ``(h, w)`` grid, or ``A -> (n, h, w, d)``;
            see :func:`~xaijax.cam.cam`.
        batch_size: most images passed to the model at once; ``None`` picks a default for
            the backend and the image size.
        mesh: optional :class:`jax.sharding.Mesh` to shard the images over.
        eigen_smooth, aug_smooth, per_channel: pytorch-grad-cam's smoothing options and the
            per-channel terms ``channel_maps`` (see :func:`~xaijax.cam.cam`).

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values (n, H, W)`` (no leading
        axis for one image), ``base_values`` zeros and extras ``raw_maps (n, h, w)``,
        ``targets (n,)``, ``scores (n,)``, ``logits``.

    References:
        Muhammad & Yeasin 2020, Eigen-CAM: Class Activation Map using Principal Components,
        IJCNN.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jax.random.normal(jax.random.key(0), (3, 5))
        >>> head = lambda A: A.mean(axis=(1, 2)) @ w
        >>> exp = eigen_cam(jax.nn.relu, head, jnp.ones((2, 8, 8, 3)), targets=1)
        >>> exp.values.shape, exp.extras["raw_maps"].shape
        ((2, 8, 8), (2, 8, 8))
    """
    return cam(
        features,
        head,
        images,
        targets,
        weighting="eigen_cam",
        resize=resize,
        normalize=normalize,
        relu=relu,
        reshape=reshape,
        batch_size=batch_size,
        mesh=mesh,
        eigen_smooth=eigen_smooth,
        aug_smooth=aug_smooth,
        per_channel=per_channel,
    )


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
def score_cam(
    features,
    head,
    images: Float[ArrayLike, "*n H W C"],
    targets: Targets = None,
    *,
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
    """Score-CAM: channel weights ``softmax_c(S(X * upsample(A_c)))`` from masked-input scores.

    Each channel, upsampled and min-max normalised, masks the image; the target score of
    the masked image (a logit, as in pytorch-grad-cam) is softmax-normalised over channels:
    ``n * c`` model evaluations, in chunks of ``batch_size`` rows.

    :func:`~xaijax.cam.cam` with ``weighting="score_cam"`` (:func:`~xaijax.cam.score_cam_weights`).

    Args:
        features: ``X (n, H, W, C) -> A (n, h, w, c)``, or a Flax NNX module.
        head: ``A (n, h, w, c) -> logits (n, K)``, or the path of the target layer in the
            module (``"block3/conv2"``, ``("layers", 4)``).
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints,
            or a callable ``fn(logits) -> (n,)``.
        resize: ``"bilinear"`` (default) or ``"nearest"`` upsampling to ``(H, W)``.
        normalize: min-max normalise each upsampled map to ``[0, 1]`` (constant maps become 0).
        relu: apply the final ReLU to the map (as the paper does).
        reshape: a token layer as a grid: ``True`` for ViT tokens ``(n, 1 + h*w, d)``
            (class token dropped, square grid), an ``(h, w)`` grid, or ``A -> (n, h, w, d)``;
            see :func:`~xaijax.cam.cam`.
        batch_size: most rows passed to the model at once: images per capture and the
            ``n * c`` masked/ablated rows; ``None`` picks a default for the backend.
        mesh: optional :class:`jax.sharding.Mesh` to shard the images over.
        eigen_smooth, aug_smooth, per_channel: pytorch-grad-cam's smoothing options and the
            per-channel terms ``channel_maps`` (see :func:`~xaijax.cam.cam`).

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values (n, H, W)`` (no leading
        axis for one image), ``base_values`` zeros and extras ``raw_maps (n, h, w)``,
        ``targets (n,)``, ``scores (n,)``, ``logits``, ``channel_weights (n, c)``.

    References:
        Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
        Networks, CVPR Workshops.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jax.random.normal(jax.random.key(0), (3, 5))
        >>> head = lambda A: A.mean(axis=(1, 2)) @ w
        >>> exp = score_cam(jax.nn.relu, head, jnp.ones((2, 8, 8, 3)), targets=1)
        >>> exp.values.shape, exp.extras["raw_maps"].shape
        ((2, 8, 8), (2, 8, 8))
    """
    return cam(
        features,
        head,
        images,
        targets,
        weighting="score_cam",
        resize=resize,
        normalize=normalize,
        relu=relu,
        reshape=reshape,
        batch_size=batch_size,
        mesh=mesh,
        eigen_smooth=eigen_smooth,
        aug_smooth=aug_smooth,
        per_channel=per_channel,
    )


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
def ablation_cam(
    features,
    head,
    images: Float[ArrayLike, "*n H W C"],
    targets: Targets = None,
    *,
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
    """Ablation-CAM: channel weights ``(S - S_without_c) / S`` from zeroing each channel in turn.

    ``n * c`` evaluations of the head (or, for an NNX module, of the model with the layer's
    channel zeroed), in chunks of ``batch_size`` rows; a zero score leaves the drop
    undivided.

    :func:`~xaijax.cam.cam` with ``weighting="ablation_cam"``
    (:func:`~xaijax.cam.ablation_cam_weights`).

    Args:
        features: ``X (n, H, W, C) -> A (n, h, w, c)``, or a Flax NNX module.
        head: ``A (n, h, w, c) -> logits (n, K)``, or the path of the target layer in the
            module (``"block3/conv2"``, ``("layers", 4)``).
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints,
            or a callable ``fn(logits) -> (n,)``.
        resize: ``"bilinear"`` (default) or ``"nearest"`` upsampling to ``(H, W)``.
        normalize: min-max normalise each upsampled map to ``[0, 1]`` (constant maps become 0).
        relu: apply the final ReLU to the map (as the paper does).
        reshape: a token layer as a grid: ``True`` for ViT tokens ``(n, 1 + h*w, d)``
            (class token dropped, square grid), an ``(h, w)`` grid, or ``A -> (n, h, w, d)``;
            see :func:`~xaijax.cam.cam`.
        batch_size: most rows passed to the model at once: images per capture and the
            ``n * c`` masked/ablated rows; ``None`` picks a default for the backend.
        mesh: optional :class:`jax.sharding.Mesh` to shard the images over.
        eigen_smooth, aug_smooth, per_channel: pytorch-grad-cam's smoothing options and the
            per-channel terms ``channel_maps`` (see :func:`~xaijax.cam.cam`).

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values (n, H, W)`` (no leading
        axis for one image), ``base_values`` zeros and extras ``raw_maps (n, h, w)``,
        ``targets (n,)``, ``scores (n,)``, ``logits``, ``channel_weights (n, c)``.

    References:
        Desai & Ramaswamy 2020, Ablation-CAM: Visual Explanation for Deep Convolutional Network
        via Gradient-free Localization, WACV.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jax.random.normal(jax.random.key(0), (3, 5))
        >>> head = lambda A: A.mean(axis=(1, 2)) @ w
        >>> exp = ablation_cam(jax.nn.relu, head, jnp.ones((2, 8, 8, 3)), targets=1)
        >>> exp.values.shape, exp.extras["raw_maps"].shape
        ((2, 8, 8), (2, 8, 8))
    """
    return cam(
        features,
        head,
        images,
        targets,
        weighting="ablation_cam",
        resize=resize,
        normalize=normalize,
        relu=relu,
        reshape=reshape,
        batch_size=batch_size,
        mesh=mesh,
        eigen_smooth=eigen_smooth,
        aug_smooth=aug_smooth,
        per_channel=per_channel,
    )
