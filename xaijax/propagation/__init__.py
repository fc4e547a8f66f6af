"""Propagation attributions: rules attached to the primitives of the model's traced jaxpr.

============================== ============ ===================================================
function                       kind         module
============================== ============ ===================================================
:func:`deep_lift`              additive     :mod:`~xaijax.propagation.deeplift`
:func:`lrp`                    additive     :mod:`~xaijax.propagation.lrp`
============================== ============ ===================================================

The rules themselves (rescale, RevealCancel, Max SHAP, ...) live in
:mod:`xaijax.core.propagation`, shared with Deep SHAP.
"""

from xaijax.propagation.deeplift import deep_lift
from xaijax.propagation.lrp import lrp

__all__ = ["deep_lift", "lrp"]
