"""Class activation maps (the Grad-CAM family) and guided backpropagation.

One mechanism (:func:`cam`: capture a layer's activations and gradients, weight the channels,
upsample) and one weighting function per paper (:mod:`xaijax.cam.weightings`); the named CAMs
(:mod:`xaijax.cam.methods`) are :func:`cam` with their weighting. Guided backpropagation
(:mod:`xaijax.cam.guided`) re-interprets the model's jaxpr.
"""

from xaijax.cam.activation_maps import cam, normalize_maps, upsample_maps
from xaijax.cam.full_grad import bias_layers, full_grad
from xaijax.cam.guided import guided_backprop, guided_grad_cam, guided_relu, with_guided_relu
from xaijax.cam.methods import (
    ablation_cam,
    eigen_cam,
    grad_cam,
    grad_cam_plus_plus,
    hires_cam,
    layer_cam,
    score_cam,
    xgrad_cam,
)
from xaijax.cam.projections import eigen_grad_cam, kpca_cam
from xaijax.cam.weightings import (
    WEIGHTINGS,
    KernelPCAWeights,
    ablation_cam_weights,
    combine,
    eigen_cam_weights,
    eigen_grad_cam_weights,
    grad_cam_plus_plus_weights,
    grad_cam_weights,
    hires_cam_weights,
    kpca_cam_weights,
    layer_cam_weights,
    score_cam_weights,
    xgrad_cam_weights,
)

__all__ = [
    "WEIGHTINGS",
    "KernelPCAWeights",
    "ablation_cam",
    "ablation_cam_weights",
    "bias_layers",
    "cam",
    "combine",
    "eigen_cam",
    "eigen_cam_weights",
    "eigen_grad_cam",
    "eigen_grad_cam_weights",
    "full_grad",
    "grad_cam",
    "grad_cam_plus_plus",
    "grad_cam_plus_plus_weights",
    "grad_cam_weights",
    "guided_backprop",
    "guided_grad_cam",
    "guided_relu",
    "hires_cam",
    "hires_cam_weights",
    "kpca_cam",
    "kpca_cam_weights",
    "layer_cam",
    "layer_cam_weights",
    "normalize_maps",
    "score_cam",
    "score_cam_weights",
    "upsample_maps",
    "with_guided_relu",
    "xgrad_cam",
    "xgrad_cam_weights",
]
