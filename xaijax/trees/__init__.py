"""Tree ensembles: path-dependent Tree SHAP of fitted scikit-learn, XGBoost and LightGBM models."""

from xaijax.trees.ensemble import TreePaths, tree_paths
from xaijax.trees.shap import tree_shap

__all__ = ["tree_shap", "tree_paths", "TreePaths"]
