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

__all__ = [
    "ablation_cam",
    "eigen_cam",
    "grad_cam",
    "grad_cam_plus_plus",
    "hires_cam",
    "layer_cam",
    "normalize_maps",
    "score_cam",
    "upsample_maps",
    "xgrad_cam",
]
