"""Path-dependent Tree SHAP against ``shap.TreeExplainer`` on the same fitted models.

scikit-learn trees, forests, gradient boosting and histogram gradient boosting, XGBoost and
LightGBM, depths 1 to 12: the values and
the expected value equal shap's (C++) to 1e-5 relative to the output scale, and local accuracy
holds against the model's own raw output.
"""

import jax
import lightgbm
import numpy as np
import pytest
import shap
import xgboost
from sklearn import ensemble, tree

import xaijax as xj

RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 6))
Y = X[:, 0] + 2 * (X[:, 1] > 0) + X[:, 2] * X[:, 3] + 0.1 * RNG.normal(size=300)
YC = (Y > np.median(Y)).astype(int)
Y3 = np.digitize(Y, np.quantile(Y, [1 / 3, 2 / 3]))
XE = X[:16]

MODELS = {
    "tree_depth1": lambda: tree.DecisionTreeRegressor(max_depth=1).fit(X, Y),
    "tree_depth12": lambda: tree.DecisionTreeRegressor(max_depth=12, random_state=0).fit(X, Y),
    "tree_classifier_3": lambda: tree.DecisionTreeClassifier(max_depth=5).fit(X, Y3),
    "forest_classifier": lambda: ensemble.RandomForestClassifier(
        n_estimators=5, max_depth=6, random_state=0
    ).fit(X, YC),
    "extra_trees": lambda: ensemble.ExtraTreesRegressor(
        n_estimators=4, max_depth=8, random_state=0
    ).fit(X, Y),
    "boosting": lambda: ensemble.GradientBoostingRegressor(n_estimators=10, max_depth=3).fit(X, Y),
    "boosting_binary": lambda: ensemble.GradientBoostingClassifier(
        n_estimators=10, max_depth=3
    ).fit(X, YC),
    "xgboost": lambda: xgboost.XGBRegressor(n_estimators=12, max_depth=6).fit(X, Y),
    "xgboost_binary": lambda: xgboost.XGBClassifier(n_estimators=8, max_depth=4).fit(X, YC),
    "hist_boosting": lambda: ensemble.HistGradientBoostingRegressor(
        max_iter=8, max_depth=4, max_leaf_nodes=8
    ).fit(X, Y),
    "hist_boosting_binary": lambda: ensemble.HistGradientBoostingClassifier(
        max_iter=8, max_depth=4, max_leaf_nodes=8
    ).fit(X, YC),
    "lightgbm": lambda: lightgbm.LGBMRegressor(n_estimators=8, max_depth=5, verbose=-1).fit(X, Y),
    "lightgbm_binary": lambda: lightgbm.LGBMClassifier(n_estimators=8, max_depth=4, verbose=-1).fit(
        X, YC
    ),
}


def _raw(model, X):
    if isinstance(model, xgboost.XGBModel):
        return model.predict(X, output_margin=True)
    if isinstance(model, lightgbm.LGBMModel):
        return model.predict(X, raw_score=True)
    if isinstance(
        model, ensemble.GradientBoostingClassifier | ensemble.HistGradientBoostingClassifier
    ):
        return model.decision_function(X)
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)
    return model.predict(X)


@pytest.mark.parametrize("name", list(MODELS))
def test_equals_shap_tree_explainer_and_adds_up(name):
    model = MODELS[name]()
    exp = xj.tree_shap(model, XE)
    ref = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
    want = np.asarray(ref.shap_values(XE, check_additivity=False))
    got = np.asarray(exp.values, np.float64)
    if want.ndim == 3 and want.shape != got.shape:  # older shap: a list per class
        want = np.moveaxis(want, 0, -1)
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, atol=1e-5 * scale, rtol=0)
    np.testing.assert_allclose(
        np.asarray(exp.base_values)[0], np.asarray(ref.expected_value), atol=1e-5 * scale
    )
    total = got.sum(axis=1) + np.asarray(exp.base_values, np.float64)
    np.testing.assert_allclose(total, _raw(model, XE), atol=1e-5 * scale)


XN = np.where(RNG.random(X.shape) < 0.15, np.nan, X)  # missing values
MISSING = {
    "tree": lambda: tree.DecisionTreeRegressor(max_depth=6).fit(XN, Y),
    "hist_boosting": lambda: ensemble.HistGradientBoostingRegressor(
        max_iter=8, max_leaf_nodes=8
    ).fit(XN, Y),
    "xgboost": lambda: xgboost.XGBRegressor(n_estimators=8, max_depth=4).fit(XN, Y),
    "lightgbm": lambda: lightgbm.LGBMRegressor(n_estimators=8, verbose=-1).fit(XN, Y),
}


@pytest.mark.parametrize("name", list(MISSING))
def test_missing_values_follow_each_split_default_direction(name):
    model = MISSING[name]()
    rows = XN[:16]
    assert np.isnan(rows).any()
    exp = xj.tree_shap(model, rows)
    want = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent").shap_values(
        rows, check_additivity=False
    )
    np.testing.assert_allclose(exp.values, want, atol=1e-5 * max(1.0, np.abs(want).max()))
    total = np.asarray(exp.values, np.float64).sum(1) + np.asarray(exp.base_values)
    np.testing.assert_allclose(total, _raw(model, rows), atol=1e-5)


def test_targets_one_instance_and_batch_size():
    model = MODELS["tree_classifier_3"]()
    full = xj.tree_shap(model, XE)
    assert full.output_names == ("0", "1", "2") and full.values.shape == (16, 6, 3)
    picked = xj.tree_shap(model, XE, targets=np.arange(16) % 3)
    np.testing.assert_allclose(picked.values, full.values[np.arange(16), :, np.arange(16) % 3])
    one = xj.tree_shap(model, XE[3], targets=1)
    np.testing.assert_array_equal(one.values, xj.tree_shap(model, XE[3:4], targets=1).values[0])
    np.testing.assert_allclose(xj.tree_shap(model, XE, batch_size=3).values, full.values, atol=1e-6)


def test_kernel_shap_on_a_tree_model_still_works_as_a_black_box():
    model = MODELS["boosting"]()
    bg = X[:32]
    exp = xj.kernel_shap(model.predict, XE[:2], bg, key=jax.random.key(0))
    np.testing.assert_allclose(
        exp.values.sum(1) + exp.base_values, model.predict(XE[:2]), atol=1e-4
    )


def test_bad_input_names_the_argument():
    model = MODELS["boosting"]()
    with pytest.raises(ValueError, match="X must have shape"):
        xj.tree_shap(model, XE[:, :3])
    with pytest.raises(ValueError, match="X must not hold"):
        xj.tree_shap(model, np.where(XE > 1, np.inf, XE))
    with pytest.raises(TypeError, match="model must be a fitted"):
        xj.tree_shap(lambda x: x, XE)
    with pytest.raises(ValueError, match="background"):
        xj.tree_shap(model, XE, background=X[:10])
    with pytest.raises(ValueError, match="interactions"):
        xj.tree_shap(model, XE, interactions=True)
    with pytest.raises(TypeError, match="targets"):
        xj.tree_shap(MODELS["tree_classifier_3"](), XE, targets=lambda y: y[:, 0])
