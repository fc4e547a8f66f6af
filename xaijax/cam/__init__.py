"""Class activation maps (the Grad-CAM family) and guided backpropagation."""

from xaijax.cam.grad_cam import (
    ablation_cam,
    eigen_cam,
    grad_cam,
    grad_cam_plus_plus,
    hires_cam,
    layer_cam,
    normalize_maps,
    score_cam,
    upsample_maps,
    xgrad_cam,
)
from xaijax.cam.guided import guided_backprop, guided_grad_cam, guided_relu, with_guided_relu

__all__ = [
    "ablation_cam",
    "eigen_cam",
    "grad_cam",
    "grad_cam_plus_plus",
    "guided_backprop",
    "guided_grad_cam",
    "guided_relu",
    "hires_cam",
    "layer_cam",
    "normalize_maps",
    "score_cam",
    "upsample_maps",
    "with_guided_relu",
    "xgrad_cam",
]
