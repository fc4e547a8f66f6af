"""xaijax: explaining machine-learning models in JAX, compiled and batched.

The public API at a glance (see DESIGN.md for the contract).
"""

from xaijax.explanation import Explanation
from xaijax.models import DEFAULT_BATCH_SIZE, as_model, evaluate, host_model
from xaijax.shapley import (
    Background,
    coalition_plan,
    exact_shapley,
    kernel_shap,
    kmeans,
    linear_shap,
    permutation_shap,
    shapley_kernel_weights,
)
from xaijax.solve import Surrogate, fit_surrogate, lars_active_set, weighted_lstsq

__version__ = "0.1.0"

__all__ = [
    # results and models
    "DEFAULT_BATCH_SIZE",
    "Explanation",
    "as_model",
    "evaluate",
    "host_model",
    # Shapley values
    "Background",
    "coalition_plan",
    "exact_shapley",
    "kernel_shap",
    "kmeans",
    "linear_shap",
    "permutation_shap",
    "shapley_kernel_weights",
    # surrogate fits
    "Surrogate",
    "fit_surrogate",
    "lars_active_set",
    "weighted_lstsq",
]
