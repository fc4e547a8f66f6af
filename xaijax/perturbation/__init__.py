"""Perturbation attributions: occlusion, feature ablation and RISE.

Each method scores perturbed copies of the input (a window or a group set to a baseline, a random
soft mask multiplied in) for the explained output, in chunks of at most ``batch_size`` model rows
(:mod:`xaijax.perturbation.scoring`). Nothing is differentiated, so host models (scikit-learn,
PyTorch) work as well as JAX ones. Each explainer is one jitted function; the model and the
perturbation plan are static, so same-shaped calls compile once.

============================== ============ ===================================================
function                       kind         module
============================== ============ ===================================================
:func:`occlusion`              map          :mod:`~xaijax.perturbation.occlusion`
:func:`feature_ablation`       map          :mod:`~xaijax.perturbation.ablation`
:func:`rise`                   map          :mod:`~xaijax.perturbation.rise`
============================== ============ ===================================================
"""

from xaijax.perturbation.ablation import feature_ablation
from xaijax.perturbation.occlusion import occlusion, window_counts
from xaijax.perturbation.rise import rise, rise_mask, rise_masks, upsampling_matrix

__all__ = [
    "feature_ablation",
    "occlusion",
    "rise",
    "rise_mask",
    "rise_masks",
    "upsampling_matrix",
    "window_counts",
]
