"""Projection CAMs: EigenGradCAM and KPCA-CAM, :func:`~xaijax.cam.cam` with a principal
component of the layer (pytorch-grad-cam's ``EigenGradCAM`` and ``KPCA_CAM``)."""

# jaxtyping shape strings such as "*n H W C" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import dataclasses

from jaxtyping import ArrayLike, Float

from xaijax.cam.activation_maps import cam
from xaijax.cam.weightings import KernelPCAWeights
from xaijax.core.explanation import Explanation
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets

__all__ = ["eigen_grad_cam", "kpca_cam"]


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
def eigen_grad_cam(
    features,
    head,
    images: Float[ArrayLike, "*n H W C"],
    targets: Targets = None,
    *,
    counterfactual: bool = False,
    resize: str = "bilinear",
    normalize: bool = True,
    relu: bool = True,
    batch_size: int | None = None,
    mesh=None,
    aug_smooth: bool = False,
) -> Explanation:
    """EigenGradCAM: ``ReLU`` of the first principal component of ``dS/dA * A`` at each position.

    :func:`~xaijax.cam.cam` with ``weighting="eigen_grad_cam"``
    (:func:`~xaijax.cam.eigen_grad_cam_weights`). The component's sign is arbitrary in an SVD
    (pytorch-grad-cam keeps LAPACK's); here it agrees with the channel mean of ``dS/dA * A``,
    so the map keeps the class evidence before the ReLU. Equal to pytorch-grad-cam's
    ``EigenGradCAM`` wherever the two signs agree (tests/test_cam_extras.py).

    Args:
        features: ``X (n, H, W, C) -> A (n, h, w, c)``, or a Flax NNX module.
        head: ``A (n, h, w, c) -> logits (n, K)``, or the path (or a list of paths) of the
            target layer in the module.
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: ``None`` (the predicted class), an int, ``(n,)`` ints, or ``fn(logits)``.
        counterfactual: explain evidence *against* the target (the gradient is negated).
        resize: ``"bilinear"`` (default) or ``"nearest"`` upsampling to ``(H, W)``.
        normalize: min-max normalise each upsampled map to ``[0, 1]``.
        relu: apply the final ReLU to the map.
        batch_size: most images passed to the model at once; ``None`` picks a default.
        mesh: optional :class:`jax.sharding.Mesh` to shard the images over.
        aug_smooth: average over flipped and brightness-scaled copies (see :func:`cam`).

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"``, ``values (n, H, W)``, extras
        ``raw_maps (n, h, w)``, ``targets``, ``scores``, ``logits``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jax.random.normal(jax.random.key(0), (3, 5))
        >>> head = lambda A: A.mean(axis=(1, 2)) @ w
        >>> X = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
        >>> eigen_grad_cam(jax.nn.relu, head, X, targets=1).values.shape
        (2, 8, 8)
    """
    return cam(
        features,
        head,
        images,
        targets,
        weighting="eigen_grad_cam",
        counterfactual=counterfactual,
        resize=resize,
        normalize=normalize,
        relu=relu,
        batch_size=batch_size,
        mesh=mesh,
        aug_smooth=aug_smooth,
    )


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
def kpca_cam(
    features,
    head,
    images: Float[ArrayLike, "*n H W C"],
    targets: Targets = None,
    *,
    kernel: str = "sigmoid",
    gamma: float | None = None,
    resize: str = "bilinear",
    normalize: bool = True,
    relu: bool = True,
    batch_size: int | None = None,
    mesh=None,
    aug_smooth: bool = False,
) -> Explanation:
    """KPCA-CAM: ``ReLU`` of the activations' first kernel principal component.

    :func:`~xaijax.cam.cam` with :func:`~xaijax.cam.kpca_cam_weights` (scikit-learn's
    ``KernelPCA`` with one component: centring, dense eigen-decomposition, its sign flip),
    as pytorch-grad-cam's ``KPCA_CAM``. Class-agnostic: ``targets`` only selects the reported
    scores.

    Args:
        features: ``X (n, H, W, C) -> A (n, h, w, c)``, or a Flax NNX module.
        head: ``A (n, h, w, c) -> logits (n, K)``, or the path (or a list of paths) of the
            target layer in the module.
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: ``None`` (the predicted class), an int, ``(n,)`` ints, or ``fn(logits)``.
        kernel: ``"sigmoid"`` (default, as pytorch-grad-cam), ``"rbf"``, ``"linear"``,
            ``"poly"`` or ``"cosine"`` (scikit-learn's definitions and defaults).
        gamma: the kernel coefficient; ``None`` is ``1 / c`` (scikit-learn's default).
        resize: ``"bilinear"`` (default) or ``"nearest"`` upsampling to ``(H, W)``.
        normalize: min-max normalise each upsampled map to ``[0, 1]``.
        relu: apply the final ReLU to the map.
        batch_size: most images passed to the model at once; ``None`` picks a default.
        mesh: optional :class:`jax.sharding.Mesh` to shard the images over.
        aug_smooth: average over flipped and brightness-scaled copies (see :func:`cam`).

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"``, ``values (n, H, W)``, extras
        ``raw_maps (n, h, w)``, ``targets``, ``scores``, ``logits``.

    Raises:
        ValueError: for an unknown kernel or a non-positive gamma.

    References:
        Karmani et al. 2024, KPCA-CAM: Visual Explainability of Deep Computer Vision Models
        using Kernel PCA, arXiv:2410.00267.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jax.random.normal(jax.random.key(0), (3, 5))
        >>> head = lambda A: A.mean(axis=(1, 2)) @ w
        >>> X = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
        >>> kpca_cam(jax.nn.relu, head, X, kernel="rbf").values.shape
        (2, 8, 8)
    """
    weighting = KernelPCAWeights(kernel, gamma)
    if weighting == KernelPCAWeights():
        weighting = "kpca_cam"
    exp = cam(
        features,
        head,
        images,
        targets,
        weighting=weighting,
        resize=resize,
        normalize=normalize,
        relu=relu,
        batch_size=batch_size,
        mesh=mesh,
        aug_smooth=aug_smooth,
    )
    return dataclasses.replace(exp, method="kpca_cam")
