"""Fitted tree ensembles as arrays: one node table per tree, then one row per root-to-leaf path.

A :class:`TreeEnsemble` holds the nodes of every tree (children, split feature and threshold,
missing-value direction, cover, leaf values) for sklearn, XGBoost and LightGBM models, in the
model's raw margin. :func:`tree_paths` turns it into the path form Tree SHAP is vectorised over
(GPUTreeShap's path decomposition): per path and unique feature the interval of values that
follows the path, whether NaN follows it, and the cover fraction.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

__all__ = ["Tree", "TreeEnsemble", "TreePaths", "tree_ensemble", "tree_paths"]


class Tree(NamedTuple):
    """One tree: node arrays, ``left[i] == -1`` at leaves; ``value`` is ``(nodes, K)``."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    default_left: np.ndarray
    cover: np.ndarray
    value: np.ndarray


@dataclasses.dataclass(frozen=True)
class TreeEnsemble:
    """Trees whose leaf values sum (plus ``offset``) to the model's raw margin ``(K,)``.

    ``strict``: a row goes left when ``x < threshold`` (XGBoost), else when ``x <= threshold``.
    """

    trees: tuple[Tree, ...]
    offset: np.ndarray
    num_features: int
    strict: bool
    num_outputs: int

    def predict(self, X) -> np.ndarray:
        """The raw margin ``(n, K)`` computed from the arrays (NumPy, for checks)."""
        X = np.asarray(X, np.float32)
        out = np.tile(self.offset, (len(X), 1)).astype(np.float64)
        for t in self.trees:
            node = np.zeros(len(X), int)
            while True:
                inner = t.left[node] >= 0
                if not inner.any():
                    break
                x = X[np.arange(len(X)), np.maximum(t.feature[node], 0)]
                thr = t.threshold[node]
                go_left = np.where(
                    np.isnan(x), t.default_left[node], x < thr if self.strict else x <= thr
                )
                node = np.where(inner, np.where(go_left, t.left[node], t.right[node]), node)
            out += t.value[node]
        return out


def _f32_threshold(thr, strict: bool) -> np.ndarray:
    # sklearn and LightGBM compare float32 rows with float64 thresholds; x32 <= t64 holds
    # exactly when x32 <= the largest float32 not above t64.
    thr = np.asarray(thr, np.float64)
    t32 = thr.astype(np.float32)
    if not strict:
        above = t32.astype(np.float64) > thr
        t32 = np.where(above, np.nextafter(t32, np.float32(-np.inf)), t32)
    return t32


def _sklearn_tree(tree, scale: float, column: int | None = None) -> Tree:
    t = tree.tree_
    value = t.value[:, :, 0] if column is None and t.value.shape[1] > 1 else t.value[:, 0, :]
    if column is not None:
        value = t.value[:, 0, :][:, [0]]
    return Tree(
        t.children_left.astype(int),
        t.children_right.astype(int),
        t.feature.astype(int),
        _f32_threshold(t.threshold, False),
        (
            t.missing_go_to_left.astype(bool)
            if hasattr(t, "missing_go_to_left")
            else np.ones(t.node_count, bool)
        ),
        t.weighted_n_node_samples.astype(np.float64),
        value.astype(np.float64) * scale,
    )


def _one_hot_value(values: np.ndarray, k: int, K: int) -> np.ndarray:
    out = np.zeros((len(values), K))
    out[:, k] = values
    return out


def _xgboost(booster) -> tuple[list[Tree], int, bool]:
    import json

    cfg = json.loads(booster.save_config())
    K = max(1, int(cfg["learner"]["learner_model_param"]["num_class"]))
    model = json.loads(booster.save_raw("json"))
    trees = model["learner"]["gradient_booster"]["model"]["trees"]
    info = model["learner"]["gradient_booster"]["model"].get("tree_info", [0] * len(trees))
    out = []
    for t, k in zip(trees, info, strict=True):
        left = np.asarray(t["left_children"], int)
        leaf = left == -1
        # XGBoost stores leaf values in split_conditions
        value = np.where(leaf, np.asarray(t["split_conditions"], np.float64), 0.0)
        out.append(
            Tree(
                left,
                np.asarray(t["right_children"], int),
                np.asarray(t["split_indices"], int),
                np.asarray(t["split_conditions"], np.float32),
                np.asarray(t["default_left"], bool),
                np.asarray(t["sum_hessian"], np.float64),
                _one_hot_value(value, int(k), K),
            )
        )
    return out, K, True


def _lightgbm(booster) -> tuple[list[Tree], int, bool]:
    dump = booster.dump_model()
    K = int(dump.get("num_tree_per_iteration", 1))
    out = []
    for i, info in enumerate(dump["tree_info"]):
        nodes: list[dict] = []

        def walk(n, nodes=nodes):
            idx = len(nodes)
            nodes.append(n)
            rec = {"node": n}
            if "split_index" in n:
                if n.get("decision_type", "<=") != "<=":
                    raise ValueError("model: LightGBM categorical splits are not supported")
                rec["left"] = walk(n["left_child"], nodes)
                rec["right"] = walk(n["right_child"], nodes)
            nodes[idx] = rec
            return idx

        walk(info["tree_structure"])
        m = len(nodes)
        left, right = -np.ones(m, int), -np.ones(m, int)
        feat, thr = -np.ones(m, int), np.zeros(m)
        dl, cover, val = np.ones(m, bool), np.zeros(m), np.zeros(m)
        for j, rec in enumerate(nodes):
            n = rec["node"]
            if "left" in rec:
                left[j], right[j] = rec["left"], rec["right"]
                feat[j], thr[j] = n["split_feature"], n["threshold"]
                dl[j] = n.get("default_left", True)
                if n.get("missing_type", "None") == "None":
                    # LightGBM reads NaN as 0.0 at splits that saw no missing values.
                    dl[j] = 0.0 <= n["threshold"]
                elif n.get("missing_type") == "Zero":
                    raise ValueError("model: LightGBM zero-as-missing splits are not supported")
                cover[j] = n["internal_count"]
            else:
                val[j] = n["leaf_value"]
                cover[j] = n.get("leaf_count", 0)
        out.append(
            Tree(
                left,
                right,
                feat,
                _f32_threshold(thr, False),
                dl,
                cover,
                _one_hot_value(val, i % K, K),
            )
        )
    return out, K, False


def _sklearn(model) -> tuple[list[Tree], int, bool, object]:
    name = type(model).__name__
    if name.startswith(("DecisionTree", "ExtraTree")) and hasattr(model, "tree_"):
        tree = _sklearn_tree(model, 1.0)
        return [tree], tree.value.shape[1], False, None
    if name.startswith(("RandomForest", "ExtraTrees")):
        trees = [_sklearn_tree(e, 1.0 / len(model.estimators_)) for e in model.estimators_]
        return trees, trees[0].value.shape[1], False, None
    if name.startswith("GradientBoosting"):
        lr = model.learning_rate
        est = model.estimators_
        K = est.shape[1]
        trees = []
        for row in est:
            for k, e in enumerate(row):
                t = _sklearn_tree(e, lr, column=k)
                trees.append(t._replace(value=_one_hot_value(t.value[:, 0], k, K)))
        return trees, K, False, None
    if name.startswith("HistGradientBoosting"):
        trees = []
        K = len(model._predictors[0])
        for row in model._predictors:
            for k, pred in enumerate(row):
                nd = pred.nodes
                if "is_categorical" in nd.dtype.names and nd["is_categorical"].any():
                    raise ValueError("model: categorical splits are not supported")
                leaf = nd["is_leaf"].astype(bool)
                trees.append(
                    Tree(
                        np.where(leaf, -1, nd["left"].astype(np.int64)),
                        np.where(leaf, -1, nd["right"].astype(np.int64)),
                        nd["feature_idx"].astype(int),
                        _f32_threshold(nd["num_threshold"], False),
                        nd["missing_go_to_left"].astype(bool),
                        nd["count"].astype(np.float64),
                        _one_hot_value(np.where(leaf, nd["value"], 0.0), k, K),
                    )
                )
        return trees, K, False, None
    raise TypeError(f"model: unsupported sklearn estimator {name}")


def _raw_margin(model, X: np.ndarray) -> np.ndarray | None:
    mod = type(model).__module__
    name = type(model).__name__
    if mod.startswith("xgboost"):
        import xgboost

        booster = model.get_booster() if hasattr(model, "get_booster") else model
        return booster.predict(xgboost.DMatrix(X), output_margin=True)
    if mod.startswith("lightgbm"):
        booster = model.booster_ if hasattr(model, "booster_") else model
        return booster.predict(X, raw_score=True)
    if name.startswith(("GradientBoosting", "HistGradientBoosting")):
        return model._raw_predict(X)
    return None


def tree_ensemble(model) -> TreeEnsemble:
    """Convert a fitted tree model to a :class:`TreeEnsemble` in its raw margin.

    Supports sklearn ``DecisionTree*``, ``ExtraTree*``, ``RandomForest*``, ``ExtraTrees*``,
    ``GradientBoosting*``, ``HistGradientBoosting*``, XGBoost (``Booster`` or sklearn API) and
    LightGBM (``Booster`` or sklearn API). Classifier forests give probabilities (as shap's
    ``model_output="raw"``), boosted models their log-odds margin.

    Example:
        >>> import numpy as np
        >>> from sklearn.tree import DecisionTreeRegressor
        >>> X = np.arange(8.0).reshape(4, 2); y = X[:, 0]
        >>> ens = tree_ensemble(DecisionTreeRegressor(max_depth=2).fit(X, y))
        >>> np.allclose(ens.predict(X)[:, 0], y)
        True

    References:
        Lundberg et al., "From local explanations to global understanding with explainable AI
        for trees", Nature Machine Intelligence (2020).
    """
    mod = type(model).__module__
    if mod.startswith("xgboost"):
        booster = model.get_booster() if hasattr(model, "get_booster") else model
        trees, K, strict = _xgboost(booster)
        M = booster.num_features()
    elif mod.startswith("lightgbm"):
        booster = model.booster_ if hasattr(model, "booster_") else model
        trees, K, strict = _lightgbm(booster)
        M = booster.num_feature()
    elif mod.startswith("sklearn"):
        if not hasattr(model, "n_features_in_"):
            raise ValueError("model: the estimator is not fitted")
        trees, K, strict, _ = _sklearn(model)
        M = int(model.n_features_in_)
    else:
        raise TypeError(
            "model must be a fitted scikit-learn tree, forest or (histogram) gradient boosting "
            f"estimator, or an XGBoost or LightGBM model; got {type(model).__name__}"
        )
    ens = TreeEnsemble(tuple(trees), np.zeros(K), int(M), strict, K)
    probe = np.zeros((1, M), np.float32)
    raw = _raw_margin(model, probe)
    if raw is not None:
        offset = np.asarray(raw, np.float64).reshape(1, -1) - ens.predict(probe)
        ens = dataclasses.replace(ens, offset=offset[0])
    return ens


class TreePaths(NamedTuple):
    """Every root-to-leaf path, padded to ``S`` unique features (padding is neutral).

    ``feature``, ``lower``, ``upper``, ``nan_follows``, ``cover_fraction``: ``(L, S)``;
    ``value``: ``(L, K)`` leaf values.
    """

    feature: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    nan_follows: np.ndarray
    cover_fraction: np.ndarray
    value: np.ndarray


def tree_paths(ens: TreeEnsemble) -> TreePaths:
    """The path decomposition of ``ens`` (host NumPy; once per model).

    References:
        Mitchell, Frank, Holmes, "GPUTreeShap: massively parallel exact calculation of SHAP
        scores for tree ensembles", PeerJ Computer Science (2022).
    """
    rows = []
    for t in ens.trees:
        stack = [(0, {})]
        while stack:
            node, cons = stack.pop()
            if t.left[node] < 0:
                rows.append((cons, t.value[node]))
                continue
            f = int(t.feature[node])
            for child, is_left in ((t.left[node], True), (t.right[node], False)):
                lo, hi, nan_ok, z = cons.get(f, (-np.inf, np.inf, True, 1.0))
                thr = float(t.threshold[node])
                if is_left:
                    hi = min(hi, thr)
                else:
                    lo = max(lo, thr)
                nan_ok = nan_ok and bool(t.default_left[node]) == is_left
                frac = t.cover[child] / t.cover[node] if t.cover[node] > 0 else 0.0
                new = dict(cons)
                new[f] = (lo, hi, nan_ok, z * frac)
                stack.append((int(child), new))
    S = max(1, max(len(c) for c, _ in rows))
    L = len(rows)
    feature = np.zeros((L, S), np.int32)
    lower = np.full((L, S), -np.inf, np.float32)
    upper = np.full((L, S), np.inf, np.float32)
    nan_follows = np.ones((L, S), bool)
    cover = np.ones((L, S), np.float32)
    value = np.zeros((L, ens.num_outputs), np.float32)
    for i, (cons, v) in enumerate(rows):
        for j, (f, (lo, hi, nan_ok, z)) in enumerate(sorted(cons.items())):
            feature[i, j], lower[i, j], upper[i, j] = f, lo, hi
            nan_follows[i, j], cover[i, j] = nan_ok, z
        value[i] = v
    return TreePaths(feature, lower, upper, nan_follows, cover, value)
