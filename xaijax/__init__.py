"""xaijax: explaining machine-learning models in JAX, compiled and batched.

The public API at a glance (see DESIGN.md for the contract).
"""

from xaijax.explanation import Explanation
from xaijax.models import DEFAULT_BATCH_SIZE, as_model, evaluate, host_model
from xaijax.solve import Surrogate, fit_surrogate, weighted_lstsq

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "Explanation",
    "Surrogate",
    "as_model",
    "evaluate",
    "fit_surrogate",
    "host_model",
    "weighted_lstsq",
]
