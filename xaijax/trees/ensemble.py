"""Fitted tree ensembles as arrays: one row per root-to-leaf path.

Path-dependent Tree SHAP needs, for every leaf, the features split on along its path, the
interval of each feature that reaches the leaf, and the share of the training cover that
follows the path at that feature's splits (Lundberg et al. 2020). A path that splits twice on a
feature keeps the feature once: its interval is the intersection, its cover share the product
(GPUTreeShap's path merging). Paths are padded to the ensemble's longest.
"""

# jaxtyping shape strings such as "L D" are not Python expressions:

from __future__ import annotations

import json
from typing import NamedTuple

import numpy as np

__all__ = ["TreePaths", "tree_paths"]


class TreePaths(NamedTuple):
    """Every leaf of an ensemble as a padded path of unique features.

    ``feature (L, D)`` int (padding: 0), ``lower``/``upper (L, D)`` the interval
    (``lower < x <= upper``, or ``lower <= x < upper`` when ``strict``), ``cover_share (L, D)``
    (padding: 1), ``valid (L, D)`` bool, ``value (L, K)`` the leaf values (already scaled by
    any learning rate or averaging), ``offset (K,)`` what the ensemble adds to the leaves' sum,
    ``num_features`` M, ``strict`` whether a split sends ``x < threshold`` left (XGBoost),
    ``nan_ok (L, D)`` whether a missing (NaN) value of the feature follows the path, and
    ``missing`` whether the model defines where NaN goes (else NaN inputs are refused).
    """

    feature: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    cover_share: np.ndarray
    valid: np.ndarray
    value: np.ndarray
    offset: np.ndarray
    num_features: int
    strict: bool
    nan_ok: np.ndarray
    missing: bool


class _Tree(NamedTuple):
    left: np.ndarray  # (N,) child index, -1 at leaves
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    cover: np.ndarray
    value: np.ndarray  # (N, K)
    missing_left: np.ndarray | None = None  # (N,) where NaN goes; None: NaN is not allowed


def _leaf_paths(tree: _Tree):
    """Yield ``(leaf value (K,), {feature: (lower, upper, share, nan_ok)})`` for every leaf."""
    stack = [(0, {})]
    while stack:
        node, path = stack.pop()
        if tree.left[node] < 0:
            yield tree.value[node], path
            continue
        f, t = int(tree.feature[node]), float(tree.threshold[node])
        nan_left = tree.missing_left is not None and bool(tree.missing_left[node])
        for child, is_left in ((tree.left[node], True), (tree.right[node], False)):
            share = tree.cover[child] / tree.cover[node] if tree.cover[node] > 0 else 0.0
            lo, hi, s, nan = path.get(f, (-np.inf, np.inf, 1.0, True))
            lo, hi = (lo, min(hi, t)) if is_left else (max(lo, t), hi)
            nan = nan and (nan_left == is_left)
            stack.append((child, {**path, f: (lo, hi, s * share, nan)}))


def _pack(trees: list[_Tree], num_features: int, offset, strict: bool) -> TreePaths:
    leaves = [leaf for tree in trees for leaf in _leaf_paths(tree)]
    L = len(leaves)
    D = max(1, max(len(p) for _, p in leaves))
    K = len(np.atleast_1d(leaves[0][0]))
    out = dict(
        feature=np.zeros((L, D), np.int32),
        lower=np.full((L, D), -np.inf),
        upper=np.full((L, D), np.inf),
        cover_share=np.ones((L, D)),
        valid=np.zeros((L, D), bool),
        value=np.zeros((L, K)),
        nan_ok=np.zeros((L, D), bool),
    )
    for i, (value, path) in enumerate(leaves):
        out["value"][i] = value
        for j, (f, (lo, hi, s, nan)) in enumerate(sorted(path.items())):
            out["feature"][i, j], out["lower"][i, j], out["upper"][i, j] = f, lo, hi
            out["cover_share"][i, j], out["valid"][i, j], out["nan_ok"][i, j] = s, True, nan
    offset = np.broadcast_to(np.asarray(offset, np.float64), (K,)).copy()
    missing = all(tree.missing_left is not None for tree in trees)
    return TreePaths(
        **out, offset=offset, num_features=num_features, strict=strict, missing=missing
    )


# -- scikit-learn --------------------------------------------------------------------------------
def _sklearn_tree(est, scale: float, normalise: bool) -> _Tree:
    t = est.tree_
    value = np.asarray(t.value, np.float64)[:, 0, :] if t.value.ndim == 3 else t.value
    if normalise:  # classifier nodes hold class counts or fractions: the leaf's probabilities
        value = value / np.maximum(value.sum(1, keepdims=True), 1e-300)
    missing = getattr(t, "missing_go_to_left", None)  # scikit-learn >= 1.3
    return _Tree(
        t.children_left, t.children_right, t.feature, t.threshold,
        np.asarray(t.weighted_n_node_samples, np.float64), value * scale,
        None if missing is None else np.asarray(missing, bool),
    )  # fmt: skip


def _from_sklearn(model) -> TreePaths | None:
    try:
        from sklearn import ensemble, tree
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        return None
    M = getattr(model, "n_features_in_", None)
    if isinstance(model, tree.BaseDecisionTree):
        clf = isinstance(model, tree.DecisionTreeClassifier)
        return _pack([_sklearn_tree(model, 1.0, clf)], M, 0.0, strict=False)
    if isinstance(model, ensemble.RandomForestClassifier | ensemble.ExtraTreesClassifier):
        w = 1.0 / len(model.estimators_)
        return _pack([_sklearn_tree(e, w, True) for e in model.estimators_], M, 0.0, False)
    if isinstance(model, ensemble.RandomForestRegressor | ensemble.ExtraTreesRegressor):
        w = 1.0 / len(model.estimators_)
        return _pack([_sklearn_tree(e, w, False) for e in model.estimators_], M, 0.0, False)
    if isinstance(
        model, ensemble.HistGradientBoostingRegressor | ensemble.HistGradientBoostingClassifier
    ):
        if len(model._predictors[0]) != 1:
            raise ValueError(
                "model: multi-class HistGradientBoostingClassifier is not supported yet; a "
                "binary one or a regressor is"
            )
        trees = []
        for (predictor,) in model._predictors:
            nd = predictor.nodes
            if nd["is_categorical"].any():
                raise ValueError("model: categorical splits are not supported by tree_shap")
            leaf = nd["is_leaf"].astype(bool)
            trees.append(
                _Tree(
                    np.where(leaf, -1, nd["left"].astype(np.int64)),
                    np.where(leaf, -1, nd["right"].astype(np.int64)),
                    nd["feature_idx"].astype(np.int64),
                    nd["num_threshold"].astype(np.float64),
                    nd["count"].astype(np.float64),
                    np.where(leaf, nd["value"], 0.0)[:, None],
                    nd["missing_go_to_left"].astype(bool),
                )
            )
        how = "decision_function" if hasattr(model, "classes_") else "predict"
        return _pack(trees, M, 0.0, strict=False), how
    if isinstance(model, ensemble.GradientBoostingRegressor | ensemble.GradientBoostingClassifier):
        if model.estimators_.shape[1] != 1:
            raise ValueError(
                "model: multi-class GradientBoostingClassifier is not supported yet "
                "(one regression tree per class); a binary one or a regressor is"
            )
        trees = [_sklearn_tree(e, model.learning_rate, False) for e in model.estimators_[:, 0]]
        paths = _pack(trees, M, 0.0, strict=False)
        return paths, "decision_function" if hasattr(model, "classes_") else "predict"
    return None


# -- XGBoost -------------------------------------------------------------------------------------
def _from_xgboost(model) -> TreePaths | None:
    try:
        import xgboost
    except ImportError:
        return None
    if isinstance(model, xgboost.XGBModel):
        booster = model.get_booster()
    elif isinstance(model, xgboost.Booster):
        booster = model
    else:
        return None
    names = booster.feature_names
    index = {n: i for i, n in enumerate(names)} if names else None
    trees = []
    for dump in booster.get_dump(dump_format="json", with_stats=True):
        nodes, stack = {}, [json.loads(dump)]
        while stack:
            node = stack.pop()
            nodes[node["nodeid"]] = node
            stack.extend(node.get("children", []))
        N = max(nodes) + 1
        left, right = np.full(N, -1), np.full(N, -1)
        feature, threshold = np.zeros(N, np.int64), np.zeros(N)
        cover, value = np.zeros(N), np.zeros((N, 1))
        missing_left = np.zeros(N, bool)
        for i, node in nodes.items():
            cover[i] = node["cover"]
            if "leaf" in node:
                value[i, 0] = node["leaf"]
                continue
            left[i], right[i] = node["yes"], node["no"]
            missing_left[i] = node["missing"] == node["yes"]
            split = node["split"]
            feature[i] = index[split] if index else int(str(split).lstrip("f"))
            threshold[i] = node["split_condition"]
        trees.append(_Tree(left, right, feature, threshold, cover, value, missing_left))
    paths = _pack(trees, booster.num_features(), 0.0, strict=True)
    return paths, "xgboost"


# -- LightGBM ------------------------------------------------------------------------------------
def _from_lightgbm(model) -> tuple[TreePaths, str] | None:
    try:
        import lightgbm
    except ImportError:
        return None
    if isinstance(model, lightgbm.LGBMModel):
        booster = model.booster_
    elif isinstance(model, lightgbm.Booster):
        booster = model
    else:
        return None
    dump = booster.dump_model()
    if dump.get("num_tree_per_iteration", 1) != 1:
        raise ValueError("model: multi-class LightGBM models are not supported yet")
    trees = []
    for info in dump["tree_info"]:
        nodes = [info["tree_structure"]]  # children linked by their position in the list
        stack, left, right = [0], {}, {}
        while stack:
            i = stack.pop()
            node = nodes[i]
            if "leaf_value" in node:
                continue
            if node.get("decision_type", "<=") != "<=":
                raise ValueError("model: categorical splits are not supported by tree_shap")
            if node.get("missing_type") == "Zero":
                raise ValueError("model: LightGBM's zero_as_missing is not supported by tree_shap")
            for side, table in (("left_child", left), ("right_child", right)):
                nodes.append(node[side])
                table[i] = len(nodes) - 1
                stack.append(table[i])
        N = len(nodes)
        tree = _Tree(
            np.array([left.get(i, -1) for i in range(N)]),
            np.array([right.get(i, -1) for i in range(N)]),
            np.array([n.get("split_feature", 0) for n in nodes], np.int64),
            np.array([float(n.get("threshold", 0.0)) for n in nodes]),
            np.array([float(n.get("internal_count", n.get("leaf_count", 0))) for n in nodes]),
            np.array([[float(n.get("leaf_value", 0.0))] for n in nodes]),
            # NaN follows default_left; with missing_type "None" LightGBM reads NaN as 0
            np.array(
                [
                    n.get("default_left", False)
                    if n.get("missing_type") == "NaN"
                    else 0.0 <= float(n.get("threshold", 0.0))
                    for n in nodes
                ],
                bool,
            ),
        )
        trees.append(tree)
    return _pack(trees, booster.num_feature(), 0.0, strict=False), "lightgbm"


def tree_paths(model) -> tuple[TreePaths, str]:
    """``(paths, how to read the model's raw output)`` for a fitted ensemble.

    The second item names how :func:`~xaijax.trees.tree_shap` finds ``offset`` (the ensemble's
    constant, e.g. a boosting model's initial prediction) from one prediction: ``"predict"``,
    ``"decision_function"``, ``"xgboost"`` or ``"lightgbm"`` (the margin, the raw score);
    ``None`` when the leaves add up to
    the output on their own.
    """
    for convert in (_from_sklearn, _from_xgboost, _from_lightgbm):
        out = convert(model)
        if out is not None:
            return (out, None) if isinstance(out, TreePaths) else out
    raise TypeError(
        "model must be a fitted scikit-learn DecisionTree*, RandomForest*, ExtraTrees* or "
        "(Hist)GradientBoosting* estimator, or an XGBoost or LightGBM model or Booster; "
        f"got {type(model).__name__}"
    )
