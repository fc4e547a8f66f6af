"""Tree SHAP for fitted tree ensembles (sklearn, XGBoost, LightGBM), compiled with XLA."""

from xaijax.trees.convert import Tree, TreeEnsemble, TreePaths, tree_ensemble, tree_paths
from xaijax.trees.interactions import tree_shap_interactions
from xaijax.trees.shap import tree_shap

__all__ = [
    "Tree",
    "TreeEnsemble",
    "TreePaths",
    "tree_ensemble",
    "tree_paths",
    "tree_shap",
    "tree_shap_interactions",
]
