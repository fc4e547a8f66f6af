"""Shapley-value explainers: exact enumeration, Kernel SHAP, permutation sampling, Linear, Deep and
Max SHAP; Shapley interaction indices."""

from xaijax.core.masking import Background
from xaijax.shapley.background import kmeans
from xaijax.shapley.deep import (
    UnsupportedPrimitiveError,
    deep_shap,
    deeplift_multipliers,
    max_shap,
    max_shapley_pairs,
)
from xaijax.shapley.exact import exact_shapley, shapley_weights
from xaijax.shapley.interactions import shapley_interactions
from xaijax.shapley.kernel import coalition_plan, kernel_shap, shapley_kernel_weights
from xaijax.shapley.linear import linear_shap
from xaijax.shapley.partition import full_budget, partition_shap
from xaijax.shapley.permutation import permutation_shap

__all__ = [
    "Background",
    "coalition_plan",
    "deep_shap",
    "deeplift_multipliers",
    "exact_shapley",
    "kernel_shap",
    "kmeans",
    "linear_shap",
    "max_shap",
    "max_shapley_pairs",
    "full_budget",
    "partition_shap",
    "permutation_shap",
    "shapley_interactions",
    "shapley_kernel_weights",
    "shapley_weights",
    "UnsupportedPrimitiveError",
]
