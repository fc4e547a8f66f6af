"""The Grad-CAM family as data: one weighting function per paper.

Every class activation map is ``ReLU(sum_c w_c * A_c)`` over the channels of a layer's
activations ``A: (n, h, w, c)``; the papers differ only in the weights ``w``. A weighting function
returns them in one of three forms, which :func:`combine` turns into the map ``(n, h, w)``:

* channel weights ``(n, c)``, one number per channel and image (Grad-CAM, Grad-CAM++, XGrad-CAM,
  Score-CAM, Ablation-CAM; pytorch-grad-cam's ``get_cam_weights``);
* elementwise weights ``(n, h, w, c)``, one per activation (HiResCAM, LayerCAM);
* the map itself ``(n, h, w)`` (EigenCAM, a projection of the centred activations).

Gradient-based weightings take ``(activations, gradients)`` with ``gradients = d score / d A``;
Score-CAM's and Ablation-CAM's take model scores that :func:`xaijax.cam.cam` computes for them.
:data:`WEIGHTINGS` lists every named weighting with what it is computed from.
"""

# jaxtyping shape strings such as "n h w c" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = [
    "WEIGHTINGS",
    "grad_cam_weights",
    "grad_cam_plus_plus_weights",
    "hires_cam_weights",
    "xgrad_cam_weights",
    "layer_cam_weights",
    "eigen_cam_weights",
    "eigen_grad_cam_weights",
    "KernelPCAWeights",
    "kpca_cam_weights",
    "score_cam_weights",
    "ablation_cam_weights",
    "combine",
]


def _safe_divide(num, den):
    return num / jnp.where(den == 0, jnp.ones((), den.dtype), den)


def grad_cam_weights(
    activations: Float[Array, "n h w c"], gradients: Float[Array, "n h w c"]
) -> Float[Array, "n c"]:
    """Grad-CAM's channel weights: the spatial mean of the gradient, ``mean_hw dS/dA_c``.

    Args:
        activations: ``A``, the layer's activations (unused; part of the common signature).
        gradients: ``dS/dA``, the gradient of the target score.

    Returns:
        ``(n, c)`` channel weights.

    References:
        Selvaraju et al. 2017, Grad-CAM: Visual Explanations from Deep Networks via
        Gradient-based Localization, ICCV.

    Example:
        >>> import jax.numpy as jnp
        >>> G = jnp.arange(8.0).reshape(1, 2, 2, 2)
        >>> grad_cam_weights(jnp.ones_like(G), G).tolist()
        [[3.0, 4.0]]
    """
    del activations
    return gradients.mean(axis=(1, 2))


def grad_cam_plus_plus_weights(
    activations: Float[Array, "n h w c"], gradients: Float[Array, "n h w c"]
) -> Float[Array, "n c"]:
    """Grad-CAM++'s channel weights ``sum_hw alpha * ReLU(dS/dA_c)`` with the closed-form alpha.

    With the exponential of the score (the paper's eq. 19), only first-order gradients appear:
    ``alpha = g^2 / (2 g^2 + sum_hw(A_c) g^3)``, zero where ``g == 0``.

    Args:
        activations: ``A``, the layer's activations.
        gradients: ``g = dS/dA``.

    Returns:
        ``(n, c)`` channel weights.

    References:
        Chattopadhay et al. 2018, Grad-CAM++: Generalized Gradient-based Visual Explanations for
        Deep Convolutional Networks, WACV.

    Example:
        >>> import jax.numpy as jnp
        >>> A, G = jnp.ones((1, 2, 2, 1)), jnp.full((1, 2, 2, 1), 0.5)
        >>> grad_cam_plus_plus_weights(A, G).tolist()  # 4 * 0.25 / (0.5 + 4 * 0.125) * 0.5
        [[0.5]]
    """
    g2 = gradients * gradients
    sum_a = activations.sum(axis=(1, 2), keepdims=True)
    alpha = jnp.where(gradients != 0, _safe_divide(g2, 2.0 * g2 + sum_a * g2 * gradients), 0.0)
    return (alpha * jax.nn.relu(gradients)).sum(axis=(1, 2))


def hires_cam_weights(
    activations: Float[Array, "n h w c"], gradients: Float[Array, "n h w c"]
) -> Float[Array, "n h w c"]:
    """HiResCAM's elementwise weights: the gradient itself, so the map is ``sum_c dS/dA_c * A_c``.

    Args:
        activations: ``A`` (unused; part of the common signature).
        gradients: ``dS/dA``.

    Returns:
        ``(n, h, w, c)`` elementwise weights.

    References:
        Draelos & Carin 2020, Use HiResCAM instead of Grad-CAM for faithful explanations of
        convolutional neural networks, arXiv:2011.08891.

    Example:
        >>> import jax.numpy as jnp
        >>> hires_cam_weights(jnp.ones((1, 1, 1, 2)), jnp.array([[[[2.0, -1.0]]]])).tolist()
        [[[[2.0, -1.0]]]]
    """
    del activations
    return gradients


def xgrad_cam_weights(
    activations: Float[Array, "n h w c"], gradients: Float[Array, "n h w c"]
) -> Float[Array, "n c"]:
    """XGrad-CAM's channel weights ``sum_hw(A_c * dS/dA_c) / sum_hw A_c`` (0 for a dead channel).

    Args:
        activations: ``A``.
        gradients: ``dS/dA``.

    Returns:
        ``(n, c)`` channel weights.

    References:
        Fu et al. 2020, Axiom-based Grad-CAM: Towards Accurate Visualization and Explanation of
        CNNs, BMVC.

    Example:
        >>> import jax.numpy as jnp
        >>> A = jnp.array([1.0, 3.0]).reshape(1, 1, 2, 1)
        >>> G = jnp.array([2.0, 4.0]).reshape(1, 1, 2, 1)
        >>> xgrad_cam_weights(A, G).tolist()  # (1 * 2 + 3 * 4) / (1 + 3)
        [[3.5]]
    """
    return _safe_divide((activations * gradients).sum(axis=(1, 2)), activations.sum(axis=(1, 2)))


def layer_cam_weights(
    activations: Float[Array, "n h w c"], gradients: Float[Array, "n h w c"]
) -> Float[Array, "n h w c"]:
    """LayerCAM's elementwise weights: the positive part of the gradient, ``ReLU(dS/dA)``.

    Args:
        activations: ``A`` (unused; part of the common signature).
        gradients: ``dS/dA``.

    Returns:
        ``(n, h, w, c)`` elementwise weights.

    References:
        Jiang et al. 2021, LayerCAM: Exploring Hierarchical Class Activation Maps for
        Localization, IEEE TIP.

    Example:
        >>> import jax.numpy as jnp
        >>> layer_cam_weights(jnp.ones((1, 1, 1, 2)), jnp.array([[[[2.0, -1.0]]]])).tolist()
        [[[[2.0, 0.0]]]]
    """
    del activations
    return jax.nn.relu(gradients)


def eigen_cam_weights(
    activations: Float[Array, "n h w c"], gradients: Float[Array, "n h w c"] | None = None
) -> Float[Array, "n h w"]:
    """EigenCAM's map: the centred activations projected on their first principal component.

    Class-agnostic (the gradients are not used). The component's sign is arbitrary; it is
    chosen to agree with the mean activation, so that the map highlights where the layer fires.
    Centring follows pytorch-grad-cam's ``get_2d_projection``.

    Args:
        activations: ``A``.
        gradients: unused.

    Returns:
        The map ``(n, h, w)`` itself.

    References:
        Muhammad & Yeasin 2020, Eigen-CAM: Class Activation Map using Principal Components,
        IJCNN.

    Example:
        >>> import jax.numpy as jnp
        >>> A = jnp.array([0.0, 1.0, 2.0, 3.0]).reshape(1, 2, 2, 1) * jnp.array([[[[1.0, 2.0]]]])
        >>> [round(v, 4) for v in eigen_cam_weights(A).reshape(-1).tolist()]
        [-3.3541, -1.118, 1.118, 3.3541]
    """
    del gradients
    n, h, w, c = activations.shape
    flat = activations.reshape(n, h * w, c)
    centred = flat - flat.mean(axis=1, keepdims=True)
    _, _, vt = jnp.linalg.svd(centred, full_matrices=False)
    proj = jnp.einsum("npc,nc->np", centred, vt[:, 0, :])
    sign = jnp.sign(jnp.einsum("np,np->n", proj, flat.mean(axis=2)))
    sign = jnp.where(sign == 0, jnp.ones((), sign.dtype), sign)
    return (proj * sign[:, None]).reshape(n, h, w)


def eigen_grad_cam_weights(
    activations: Float[Array, "n h w c"], gradients: Float[Array, "n h w c"]
) -> Float[Array, "n h w"]:
    """EigenGradCAM's map: :func:`eigen_cam_weights` of the product ``dS/dA * A``.

    The first principal component of the centred products (pytorch-grad-cam's
    ``get_2d_projection(grads * activations)``); its sign, arbitrary in an SVD, is chosen to
    agree with the channel mean of the product (the HiResCAM map), so positive evidence stays
    positive before the ReLU.

    Args:
        activations: ``A``.
        gradients: ``dS/dA``.

    Returns:
        The map ``(n, h, w)`` itself.

    References:
        pytorch-grad-cam's EigenGradCAM (Gildenblat et al., 2021), after Muhammad & Yeasin
        2020, Eigen-CAM, IJCNN.

    Example:
        >>> import jax.numpy as jnp
        >>> A = jnp.array([0.0, 1.0, 2.0, 3.0]).reshape(1, 2, 2, 1)
        >>> [round(v, 2) for v in eigen_grad_cam_weights(A, jnp.ones_like(A)).ravel().tolist()]
        [-1.5, -0.5, 0.5, 1.5]
    """
    return eigen_cam_weights(activations * gradients)


_KERNELS = ("sigmoid", "rbf", "linear", "poly", "cosine")


def _kernel_matrix(x, kernel, gamma, degree=3, coef0=1.0):
    """scikit-learn's pairwise kernels of the rows of ``x (p, c)`` (its default parameters)."""
    gamma = 1.0 / x.shape[-1] if gamma is None else gamma
    dots = x @ x.T
    if kernel == "linear":
        return dots
    if kernel == "poly":
        return (gamma * dots + coef0) ** degree
    if kernel == "sigmoid":
        return jnp.tanh(gamma * dots + coef0)
    if kernel == "rbf":
        sq = jnp.diagonal(dots)
        return jnp.exp(-gamma * jnp.maximum(sq[:, None] + sq[None, :] - 2.0 * dots, 0.0))
    norms = jnp.sqrt((x * x).sum(axis=1))
    unit = x / jnp.where(norms == 0, jnp.ones((), x.dtype), norms)[:, None]
    return unit @ unit.T


def kpca_cam_weights(
    activations: Float[Array, "n h w c"],
    gradients: Float[Array, "n h w c"] | None = None,
    *,
    kernel: str = "sigmoid",
    gamma: float | None = None,
) -> Float[Array, "n h w"]:
    """KPCA-CAM's map: the activations' first kernel principal component at every position.

    As pytorch-grad-cam's ``get_2d_projection_kernel`` with scikit-learn's ``KernelPCA``: the
    ``h * w`` activation vectors are centred, the kernel matrix (default ``"sigmoid"``:
    ``tanh(gamma <a, b> + 1)``, ``gamma = 1 / c``) is double-centred, and the map is the top
    eigenvector times the square root of its eigenvalue, signed so that its largest-magnitude
    entry is positive (scikit-learn's ``svd_flip``). Class-agnostic (the gradients are unused).

    Args:
        activations: ``A``.
        gradients: unused.
        kernel: ``"sigmoid"`` (default), ``"rbf"``, ``"linear"``, ``"poly"`` (degree 3,
            ``coef0 = 1``) or ``"cosine"``, with scikit-learn's definitions.
        gamma: the kernel coefficient; ``None`` is ``1 / c``.

    Returns:
        The map ``(n, h, w)`` itself.

    References:
        Karmani et al. 2024, KPCA-CAM: Visual Explainability of Deep Computer Vision Models
        using Kernel PCA, arXiv:2410.00267.

    Example:
        >>> import jax.numpy as jnp
        >>> A = jnp.array([0.0, 1.0, 2.0, 3.0]).reshape(1, 2, 2, 1)
        >>> kpca_cam_weights(A, kernel="linear").shape
        (1, 2, 2)
    """
    del gradients
    n, h, w, c = activations.shape
    flat = activations.reshape(n, h * w, c)
    centred = flat - flat.mean(axis=1, keepdims=True)
    K = jax.vmap(lambda x: _kernel_matrix(x, kernel, gamma))(centred)
    K = K - K.mean(axis=1, keepdims=True) - K.mean(axis=2, keepdims=True)
    K = K + K.mean(axis=(1, 2), keepdims=True)
    eigvals, eigvecs = jnp.linalg.eigh(K)
    top, lam = eigvecs[:, :, -1], jnp.maximum(eigvals[:, -1], 0.0)
    pick = jnp.take_along_axis(top, jnp.abs(top).argmax(axis=1)[:, None], axis=1)
    sign = jnp.where(pick < 0, -1.0, 1.0).astype(top.dtype)
    return (top * sign * jnp.sqrt(lam)[:, None]).reshape(n, h, w)


class KernelPCAWeights:
    """:func:`kpca_cam_weights` with a fixed kernel and gamma, as a hashable weighting.

    Two instances with the same options are equal, so :func:`xaijax.cam.cam` compiles once for
    them; ``uses = "activations"`` tells it that no gradient is needed.

    Example:
        >>> KernelPCAWeights("rbf", 0.5) == KernelPCAWeights("rbf", 0.5)
        True
    """

    uses = "activations"

    def __init__(self, kernel: str = "sigmoid", gamma: float | None = None):
        if kernel not in _KERNELS:
            raise ValueError(f"kernel must be one of {_KERNELS}; got {kernel!r}")
        if gamma is not None:
            if isinstance(gamma, bool) or not isinstance(gamma, int | float):
                raise TypeError(f"gamma must be a positive number or None; got {gamma!r}")
            if not gamma > 0:
                raise ValueError(f"gamma must be a positive number or None; got {gamma!r}")
            gamma = float(gamma)
        self.kernel, self.gamma = kernel, gamma

    def __call__(self, activations, gradients=None):
        return kpca_cam_weights(activations, kernel=self.kernel, gamma=self.gamma)

    def __eq__(self, other):
        return isinstance(other, KernelPCAWeights) and (self.kernel, self.gamma) == (
            other.kernel,
            other.gamma,
        )

    def __hash__(self):
        return hash((KernelPCAWeights, self.kernel, self.gamma))

    def __repr__(self):
        return f"KernelPCAWeights({self.kernel!r}, {self.gamma!r})"


def score_cam_weights(masked_scores: Float[Array, "n c"]) -> Float[Array, "n c"]:
    """Score-CAM's channel weights: a softmax over channels of the masked-input scores.

    ``masked_scores[i, k]`` is the target score of image ``i`` multiplied by channel ``k``'s
    activation map, upsampled to the image and min-max normalised (:func:`xaijax.cam.cam`
    computes them).

    Args:
        masked_scores: ``(n, c)`` scores (logits, as in pytorch-grad-cam).

    Returns:
        ``(n, c)`` channel weights, each row summing to 1.

    References:
        Wang et al. 2020, Score-CAM: Score-Weighted Visual Explanations for Convolutional
        Neural Networks, CVPR Workshops.

    Example:
        >>> import jax.numpy as jnp
        >>> score_cam_weights(jnp.array([[0.0, 0.0]])).tolist()
        [[0.5, 0.5]]
    """
    return jax.nn.softmax(masked_scores, axis=1)


def ablation_cam_weights(
    scores: Float[Array, " n"], ablated_scores: Float[Array, "n c"]
) -> Float[Array, "n c"]:
    """Ablation-CAM's channel weights ``(S - S_k) / S``: the relative drop of the score when
    channel ``k`` is zeroed (a zero score leaves the drop undivided).

    Args:
        scores: ``(n,)`` target scores of the images.
        ablated_scores: ``(n, c)`` the scores with each channel of the layer set to zero.

    Returns:
        ``(n, c)`` channel weights.

    References:
        Desai & Ramaswamy 2020, Ablation-CAM: Visual Explanation for Deep Convolutional Network
        via Gradient-free Localization, WACV.

    Example:
        >>> import jax.numpy as jnp
        >>> ablation_cam_weights(jnp.array([2.0]), jnp.array([[1.0, 3.0]])).tolist()
        [[0.5, -0.5]]
    """
    return _safe_divide(scores[:, None] - ablated_scores, scores[:, None])


def combine(
    weights: Float[Array, "n ..."], activations: Float[Array, "n h w c"]
) -> Float[Array, "n h w"]:
    """The map ``sum_c w_c * A_c`` from channel ``(n, c)`` or elementwise ``(n, h, w, c)``
    weights; a weighting that returned the map ``(n, h, w)`` passes through.

    Example:
        >>> import jax.numpy as jnp
        >>> combine(jnp.array([[1.0, 2.0]]), jnp.ones((1, 2, 2, 2))).tolist()
        [[[3.0, 3.0], [3.0, 3.0]]]
    """
    if weights.ndim == 2:
        return jnp.einsum("nhwc,nc->nhw", activations, weights)
    if weights.ndim == 4:
        return (weights * activations).sum(axis=-1)
    return weights


# Every named weighting, with what it is computed from: "gradients" (A and dS/dA),
# "activations" (A only), "masked_inputs" (Score-CAM: scores of the image masked by each
# channel), "ablated_channels" (Ablation-CAM: the score and the scores with each channel zeroed).
WEIGHTINGS = {
    "grad_cam": (grad_cam_weights, "gradients"),
    "grad_cam_plus_plus": (grad_cam_plus_plus_weights, "gradients"),
    "hires_cam": (hires_cam_weights, "gradients"),
    "xgrad_cam": (xgrad_cam_weights, "gradients"),
    "layer_cam": (layer_cam_weights, "gradients"),
    "eigen_cam": (eigen_cam_weights, "activations"),
    "eigen_grad_cam": (eigen_grad_cam_weights, "gradients"),
    "kpca_cam": (KernelPCAWeights(), "activations"),
    "score_cam": (score_cam_weights, "masked_inputs"),
    "ablation_cam": (ablation_cam_weights, "ablated_channels"),
}
