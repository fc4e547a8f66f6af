"""LIME: local surrogate explanations for tabular data, images and text, and submodular pick.

References:
    Ribeiro, Singh & Guestrin, "Why Should I Trust You?": Explaining the Predictions of Any
    Classifier, KDD 2016.
"""

from xaijax.lime.surrogate import LimeFit, cosine_distance, explain_with_data, exponential_kernel
from xaijax.lime.tabular import TabularStats, fit_discretizer, lime_tabular

__all__ = [
    "LimeFit",
    "TabularStats",
    "cosine_distance",
    "explain_with_data",
    "exponential_kernel",
    "fit_discretizer",
    "lime_tabular",
]
