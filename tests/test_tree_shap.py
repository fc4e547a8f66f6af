"""Tree SHAP against shap.TreeExplainer (path-dependent) on the same small fitted models."""

import jax
import lightgbm
import numpy as np
import pytest
import shap
import xgboost
from same import assert_same
from sklearn.ensemble import (
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

import xaijax as xj
from xaijax.trees import tree_ensemble, tree_shap

RNG = np.random.default_rng(0)
X = RNG.normal(size=(200, 5))
Y = X[:, 0] + X[:, 1] * X[:, 2] + 0.5 * np.sin(3 * X[:, 3])
YC = (Y > 0).astype(int)
Y3 = np.digitize(Y, [-0.5, 0.5])
XE = X[:4].copy()
XN = XE.copy()
XN[0, 1] = np.nan
XN[2, 3] = np.nan
XTRAIN_NAN = X.copy()
XTRAIN_NAN[::7, 1] = np.nan
XTRAIN_NAN[::5, 3] = np.nan

MODELS = {
    "tree_reg_d1": (lambda: DecisionTreeRegressor(max_depth=1).fit(X, Y), XE),
    "tree_reg_d12": (lambda: DecisionTreeRegressor(max_depth=12, random_state=0).fit(X, Y), XE),
    "tree_clf": (lambda: DecisionTreeClassifier(max_depth=4, random_state=0).fit(X, Y3), XE),
    "rf_reg": (lambda: RandomForestRegressor(4, max_depth=6, random_state=0).fit(X, Y), XE),
    "rf_clf": (lambda: RandomForestClassifier(3, max_depth=5, random_state=0).fit(X, YC), XE),
    "et_reg": (lambda: ExtraTreesRegressor(3, max_depth=5, random_state=0).fit(X, Y), XE),
    "gb_reg": (lambda: GradientBoostingRegressor(n_estimators=5, max_depth=3).fit(X, Y), XE),
    "gb_clf": (lambda: GradientBoostingClassifier(n_estimators=5, max_depth=2).fit(X, YC), XE),
    "hgb_clf_nan": (
        lambda: HistGradientBoostingClassifier(max_iter=5, max_depth=4).fit(XTRAIN_NAN, YC),
        XN,
    ),
    "xgb_reg_nan": (
        lambda: xgboost.XGBRegressor(n_estimators=5, max_depth=8).fit(XTRAIN_NAN, Y),
        XN,
    ),
    "xgb_multi": (
        lambda: xgboost.XGBClassifier(n_estimators=4, max_depth=3).fit(X, Y3),
        XE,
    ),
    "lgbm_reg_nan": (
        lambda: lightgbm.LGBMRegressor(n_estimators=5, num_leaves=8, verbose=-1).fit(XTRAIN_NAN, Y),
        XN,
    ),
    "lgbm_clf": (
        lambda: lightgbm.LGBMClassifier(n_estimators=4, num_leaves=6, verbose=-1).fit(X, YC),
        XN,
    ),
}


def _raw(model, Xe):
    if hasattr(model, "get_booster"):
        return model.predict(Xe, output_margin=True)
    if type(model).__module__.startswith("lightgbm"):
        return model.predict(Xe, raw_score=True)
    if hasattr(model, "decision_function") and "Gradient" in type(model).__name__:
        return model.decision_function(Xe)
    if hasattr(model, "predict_proba"):
        return model.predict_proba(Xe)
    return model.predict(Xe)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_path_dependent_matches_shap(name):
    make, Xe = MODELS[name]
    model = make()
    exp = tree_shap(model, Xe)
    ref = shap.TreeExplainer(model)
    ref_values = np.asarray(ref.shap_values(Xe))
    scale = max(1.0, float(np.abs(ref_values).max()))
    assert exp.values.shape == ref_values.shape
    np.testing.assert_allclose(exp.values, ref_values, atol=1e-5 * scale)
    np.testing.assert_allclose(
        exp.base_values[0],
        np.asarray(ref.expected_value).reshape(-1)[: exp.values.shape[-1]]
        if exp.values.ndim == 3
        else ref.expected_value,
        atol=1e-5 * scale,
    )
    # local accuracy against the model's own raw output
    raw = np.asarray(_raw(model, Xe)).reshape(len(Xe), -1)
    total = exp.values.sum(1) + exp.base_values
    np.testing.assert_allclose(total.reshape(len(Xe), -1), raw, atol=1e-5 * scale)


def test_single_row_and_converter_predicts():
    model = RandomForestRegressor(3, max_depth=4, random_state=0).fit(X, Y)
    ens = tree_ensemble(model)
    np.testing.assert_allclose(ens.predict(X)[:, 0], model.predict(X), atol=1e-6)
    one = tree_shap(ens, XE[0])
    assert one.values.shape == (5,)
    np.testing.assert_allclose(one.values, tree_shap(model, XE).values[0], atol=1e-6)


def test_bad_inputs():
    model = DecisionTreeRegressor(max_depth=2).fit(X, Y)
    with pytest.raises(ValueError, match="X"):
        tree_shap(model, np.ones((2, 3)))
    with pytest.raises(TypeError, match="X"):
        tree_shap(model, np.array([["a"] * 5]))
    with pytest.raises(TypeError, match="model"):
        tree_shap(object(), XE)
    with pytest.raises(ValueError, match="model"):
        tree_shap(DecisionTreeRegressor(), XE)


def test_kernel_shap_black_box_on_tree_predict():
    model = DecisionTreeRegressor(max_depth=2).fit(X, Y)
    exp = xj.kernel_shap(
        lambda A: np.asarray(model.predict(np.asarray(A)), np.float32),
        XE[:1].astype(np.float32),
        X[:20].astype(np.float32),
        key=jax.random.key(0),
    )
    total = exp.values.sum(-1) + exp.base_values
    np.testing.assert_allclose(total, model.predict(XE[:1]), atol=1e-4)


@pytest.mark.parametrize("name", ["rf_reg", "gb_clf", "xgb_reg_nan", "lgbm_reg_nan"])
def test_interventional_matches_shap(name):
    make, Xe = MODELS[name]
    model = make()
    bg = X[10:30]
    exp = tree_shap(model, Xe, background=bg)
    ref = shap.TreeExplainer(model, bg, feature_perturbation="interventional")
    ref_values = np.asarray(ref.shap_values(Xe))
    scale = max(1.0, float(np.abs(ref_values).max()))
    np.testing.assert_allclose(exp.values, ref_values, atol=1e-5 * scale)
    np.testing.assert_allclose(exp.base_values[0], ref.expected_value, atol=1e-5 * scale)
    raw = np.asarray(_raw(model, Xe)).reshape(len(Xe), -1)
    total = exp.values.sum(1) + exp.base_values
    np.testing.assert_allclose(total.reshape(len(Xe), -1), raw, atol=1e-5 * scale)


def test_targets_output_names_and_batch_size():
    model = MODELS["tree_clf"][0]()
    full = tree_shap(model, X[:9])
    assert full.output_names == ("0", "1", "2") and full.values.shape == (9, 5, 3)
    picked = tree_shap(model, X[:9], targets=np.arange(9) % 3)
    assert_same(picked.values, full.values[np.arange(9), :, np.arange(9) % 3], cpu_rtol=1e-7)
    one = tree_shap(model, X[3], targets=1)
    assert_same(one.values, tree_shap(model, X[3:4], targets=1).values[0])
    np.testing.assert_allclose(tree_shap(model, X[:9], batch_size=2).values, full.values, atol=1e-6)
    with pytest.raises(TypeError, match="targets"):
        tree_shap(model, X[:9], targets=lambda y: y[:, 0])
    with pytest.raises(ValueError, match="targets"):
        tree_shap(model, X[:9], targets=5)
    with pytest.raises(ValueError, match="inf"):
        tree_shap(model, np.where(X[:9] > 1, np.inf, X[:9]))


def test_slot_coefficients_match_the_shapley_sum_with_zero_factors():
    """The product-over-division kernel against the subset sum, where factors are exactly 0."""
    import itertools
    import math

    from xaijax.trees.kernels import quadrature
    from xaijax.trees.shap import _slot_coefficients

    rng = np.random.default_rng(1)
    d, L, B = 4, 12, 4
    o = (rng.random((d, L, B)) < 0.6).astype(np.float32)
    z = rng.choice(np.float32([0.0, 0.25, 0.5, 1.0]), size=(d, L, B))
    nodes, weights = quadrature(d)
    got = np.asarray(_slot_coefficients(o, z, nodes, weights))
    want = np.zeros((d, L, B))
    for i in range(d):
        rest = [j for j in range(d) if j != i]
        for r in range(d):
            for subset in itertools.combinations(rest, r):
                w = math.factorial(r) * math.factorial(d - r - 1) / math.factorial(d)
                term = np.prod([o[j] if j in subset else z[j] for j in rest], axis=0)
                want[i] += w * term
        want[i] *= o[i] - z[i]
    zeros = ((o == 0) & (z == 0)).sum(0)
    assert (zeros == 1).any() and (zeros >= 2).any()
    np.testing.assert_allclose(got, want, atol=1e-6)
