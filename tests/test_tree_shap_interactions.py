"""Tree SHAP interaction values against shap.TreeExplainer.shap_interaction_values."""

import lightgbm
import numpy as np
import pytest
import shap
import xgboost
from sklearn.ensemble import GradientBoostingClassifier, RandomForestRegressor
from sklearn.tree import DecisionTreeRegressor

import xaijax as xj
from xaijax.trees import tree_ensemble
from xaijax.trees.interactions import tree_shap_interactions

RNG = np.random.default_rng(1)
X = RNG.normal(size=(200, 4))
Y = X[:, 0] + X[:, 1] * X[:, 2] + 0.5 * np.sin(3 * X[:, 3])
YC = (Y > 0).astype(int)
XE = X[:3].copy()
XN = XE.copy()
XN[0, 1] = np.nan
XTRAIN_NAN = X.copy()
XTRAIN_NAN[::7, 1] = np.nan

MODELS = {
    "tree_d1": (lambda: DecisionTreeRegressor(max_depth=1).fit(X, Y), XE),
    "tree_d6": (lambda: DecisionTreeRegressor(max_depth=6, random_state=0).fit(X, Y), XE),
    "rf_reg": (lambda: RandomForestRegressor(3, max_depth=4, random_state=0).fit(X, Y), XE),
    "gb_clf": (lambda: GradientBoostingClassifier(n_estimators=4, max_depth=3).fit(X, YC), XE),
    "xgb_nan": (
        lambda: xgboost.XGBRegressor(n_estimators=4, max_depth=5).fit(XTRAIN_NAN, Y),
        XN,
    ),
    "lgbm_nan": (
        lambda: lightgbm.LGBMRegressor(n_estimators=4, num_leaves=8, verbose=-1).fit(XTRAIN_NAN, Y),
        XN,
    ),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_interactions_match_shap(name):
    make, Xe = MODELS[name]
    model = make()
    exp = tree_shap_interactions(model, Xe)
    ref = np.asarray(shap.TreeExplainer(model).shap_interaction_values(Xe))
    scale = max(1.0, float(np.abs(ref).max()))
    assert exp.kind == "interaction" and exp.values.shape == ref.shape
    np.testing.assert_allclose(exp.values, ref, atol=1e-5 * scale)
    np.testing.assert_allclose(exp.values, np.swapaxes(exp.values, 1, 2), atol=1e-6 * scale)
    # efficiency: every entry plus the expected value is the raw margin
    raw = tree_ensemble(model).predict(Xe)[:, 0]
    np.testing.assert_allclose(exp.values.sum((1, 2)) + exp.base_values, raw, atol=1e-5 * scale)


def test_single_row_and_orders():
    model = DecisionTreeRegressor(max_depth=3).fit(X, Y)
    batch = tree_shap_interactions(model, XE)
    one = tree_shap_interactions(model, XE[0])
    np.testing.assert_allclose(one.values, batch.values[0], atol=1e-6)
    diag = np.diagonal(batch.values, axis1=1, axis2=2)
    np.testing.assert_allclose(batch.extras["order_1"], diag)
    np.testing.assert_allclose(
        batch.extras["order_2"].sum((1, 2)) / 2 + diag.sum(1), batch.values.sum((1, 2)), atol=1e-5
    )


def test_bad_inputs():
    model = DecisionTreeRegressor(max_depth=2).fit(X, Y)
    with pytest.raises(ValueError, match="X"):
        tree_shap_interactions(model, np.ones((2, 3)))
    with pytest.raises(TypeError, match="X"):
        tree_shap_interactions(model, np.array([["a"] * 4]))


def test_tree_shap_with_interactions_is_the_same_call():
    model = DecisionTreeRegressor(max_depth=4, random_state=0).fit(X, X[:, 0] * X[:, 1])
    via = xj.tree_shap(model, X[:5], interactions=True)
    np.testing.assert_array_equal(via.values, tree_shap_interactions(model, X[:5]).values)
    assert via.kind == "interaction"
    # the main effects and half-interactions of a row add up to its Shapley values
    np.testing.assert_allclose(via.values.sum(2), xj.tree_shap(model, X[:5]).values, atol=1e-5)
    with pytest.raises(ValueError, match="interactions"):
        xj.tree_shap(model, X[:5], interactions=True, background=X[:10])
