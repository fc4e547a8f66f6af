"""Gradient attributions: saliency, gradient x input, SmoothGrad, Integrated and Expected Gradients.

Every method sums a contribution of ``grad S_i(z)`` over points ``z`` derived from the input
(the input itself, noisy copies, points on straight paths from a reference), evaluated in chunks
of at most ``batch_size`` model rows with one ``jax.vjp`` per chunk
(:mod:`xaijax.gradients.score_gradients`). Each explainer is one jitted function; the model and
the sample counts are static, so same-shaped calls compile once.

============================== ============ ===================================================
function                       kind         module
============================== ============ ===================================================
:func:`saliency`               map          :mod:`~xaijax.gradients.local`
:func:`gradient_x_input`       map          :mod:`~xaijax.gradients.local`
:func:`smoothgrad`             map          :mod:`~xaijax.gradients.noise`
:func:`integrated_gradients`   path         :mod:`~xaijax.gradients.paths`
:func:`expected_gradients`     path         :mod:`~xaijax.gradients.paths`
:func:`layer_integrated_...`   path         :mod:`~xaijax.gradients.layer`
:func:`layer_gradient_x_input` map          :mod:`~xaijax.gradients.layer`
============================== ============ ===================================================
"""

from xaijax.gradients.layer import layer_gradient_x_input, layer_integrated_gradients
from xaijax.gradients.local import gradient_x_input, saliency
from xaijax.gradients.noise import noise_tunnel, smoothgrad
from xaijax.gradients.paths import (
    PATH_METHODS,
    expected_gradients,
    integrated_gradients,
    path_weights,
)

__all__ = [
    "PATH_METHODS",
    "expected_gradients",
    "gradient_x_input",
    "integrated_gradients",
    "layer_gradient_x_input",
    "layer_integrated_gradients",
    "noise_tunnel",
    "path_weights",
    "saliency",
    "smoothgrad",
]
