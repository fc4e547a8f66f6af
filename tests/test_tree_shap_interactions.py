"""Tree SHAP interaction values against shap.TreeExplainer.shap_interaction_values
(path-dependent, targets) and brute-force Shapley interaction indices (interventional: shap
refuses interactions with a background)."""

import math

import lightgbm
import numpy as np
import pytest
import shap
import xgboost
from same import assert_same
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestRegressor,
)
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
    with pytest.raises(ValueError, match="background"):
        xj.tree_shap(model, X[:5], interactions=True, background=X[:10, :3])
    with pytest.raises(TypeError, match="targets"):
        xj.tree_shap(model, X[:5], interactions=True, targets=lambda y: y[:, 0])


# -- interventional interaction values: brute force over all 2^M coalitions -------------------

XB = np.random.default_rng(2).normal(size=(300, 5)).astype(np.float32)
YB = XB[:, 0] * XB[:, 1] + np.sin(2 * XB[:, 2]) + XB[:, 3] * (XB[:, 4] > 0)
BACKGROUND = XB[100:106]
XB_EXPLAIN = XB[:3]


def brute_force_interventional(f, x, background):
    """Shapley values ``(M, K)`` and Shapley interaction index ``(M, M, K)`` of the game
    ``v(S) = mean_b f(x_S, b_rest)``, by enumerating all ``2^M`` coalitions."""
    M = len(x)
    masks = ((np.arange(2**M)[:, None] >> np.arange(M)) & 1).astype(bool)  # (2^M, M)
    hybrid = np.where(masks[:, None, :], x, background[None])  # (2^M, b, M)
    out = np.asarray(f(hybrid.reshape(-1, M)), np.float64).reshape(2**M, len(background), -1)
    v = {int(m @ (1 << np.arange(M))): y for m, y in zip(masks, out.mean(1), strict=True)}
    fact = [math.factorial(k) for k in range(M + 1)]
    phi = np.zeros((M, out.shape[2]))
    sii = np.zeros((M, M, out.shape[2]))
    for code in range(2**M):
        s = bin(code).count("1")
        for i in range(M):
            if code >> i & 1:
                continue
            phi[i] += fact[s] * fact[M - s - 1] / fact[M] * (v[code | 1 << i] - v[code])
            for j in range(i + 1, M):
                if code >> j & 1:
                    continue
                w = fact[s] * fact[M - s - 2] / fact[M - 1]
                d2 = v[code | 1 << i | 1 << j] - v[code | 1 << i] - v[code | 1 << j] + v[code]
                sii[i, j] += w * d2
                sii[j, i] += w * d2
    return phi, sii


XB_NAN = XB.copy()
XB_NAN[::5, 1] = np.nan
XE_NAN, BG_NAN = XB_EXPLAIN.copy(), BACKGROUND.copy()
XE_NAN[0, 1] = BG_NAN[2, 1] = np.nan


def _xgb_nan():
    m = xgboost.XGBRegressor(n_estimators=4, max_depth=4).fit(XB_NAN, YB)
    return m, m.predict, XE_NAN, BG_NAN


# each case: the model, its raw output on NumPy rows, explained rows, background rows
INTERVENTIONAL = {
    "gb_reg": lambda: (
        (m := GradientBoostingRegressor(n_estimators=10, max_depth=3, random_state=0).fit(XB, YB)),
        m.predict,
        XB_EXPLAIN,
        BACKGROUND,
    ),
    "xgb_clf3": lambda: (
        (
            m := xgboost.XGBClassifier(n_estimators=3, max_depth=4).fit(
                XB, np.digitize(YB, np.quantile(YB, [1 / 3, 2 / 3]))
            )
        ),
        lambda Z: m.predict(Z, output_margin=True),
        XB_EXPLAIN,
        BACKGROUND,
    ),
    "xgb_nan": _xgb_nan,  # NaN (missing) in the explained and the reference rows
}


@pytest.mark.parametrize("name", sorted(INTERVENTIONAL))
def test_interventional_interactions_match_brute_force(name):
    model, raw, Xe, bg = INTERVENTIONAL[name]()
    exp = xj.tree_shap(model, Xe, background=bg, interactions=True)
    phi = xj.tree_shap(model, Xe, background=bg).values
    values = exp.values if exp.values.ndim == 4 else exp.values[..., None]
    phi = phi if phi.ndim == 3 else phi[..., None]
    M = XB.shape[1]
    diag = np.arange(M)
    for r, x in enumerate(Xe):
        phi_ref, sii = brute_force_interventional(raw, x, bg)
        scale = max(1.0, float(np.abs(phi_ref).max()))
        np.testing.assert_allclose(phi[r], phi_ref, atol=1e-5 * scale)
        ref = sii / 2  # shap's layout: half of each pair's interaction index off the diagonal
        ref[diag, diag] = phi_ref - ref.sum(1)  # main effects (the diagonal of sii is 0)
        np.testing.assert_allclose(values[r], ref, atol=1e-5 * scale)
    # efficiency against the background mean, and the base value
    mean_bg = raw(bg).reshape(len(bg), -1).mean(0)
    gap = raw(Xe).reshape(len(Xe), -1) - mean_bg
    np.testing.assert_allclose(values.sum((1, 2)), gap, atol=1e-5 * scale)
    base = np.reshape(exp.base_values, gap.shape)
    np.testing.assert_allclose(base, np.broadcast_to(mean_bg, gap.shape), atol=1e-5 * scale)
    # the background loop is the same per row however the rows are chunked
    one = xj.tree_shap(model, Xe[1], background=bg, interactions=True, batch_size=1)
    np.testing.assert_allclose(one.values, exp.values[1], atol=1e-6 * scale)


# -- targets: one output per row of the (n, M, M, K) values ---------------------------------


def test_interaction_targets_slice_the_multi_output_layout_that_matches_shap():
    y3 = np.digitize(Y, np.quantile(Y, [1 / 3, 2 / 3]))
    model = xgboost.XGBClassifier(n_estimators=3, max_depth=3).fit(X, y3)
    full = xj.tree_shap(model, XE, interactions=True)
    ref = np.asarray(shap.TreeExplainer(model).shap_interaction_values(XE))
    assert full.values.shape == ref.shape == (3, 4, 4, 3)
    assert full.output_names == ("0", "1", "2")
    scale = max(1.0, float(np.abs(ref).max()))
    np.testing.assert_allclose(full.values, ref, atol=1e-5 * scale)
    picks = np.array([2, 0, 1])
    for targets, idx in ((1, np.array([1, 1, 1])), (picks, picks)):
        for background in (None, X[50:54]):
            every = xj.tree_shap(model, XE, interactions=True, background=background)
            one = xj.tree_shap(model, XE, interactions=True, background=background, targets=targets)
            rows = np.arange(len(XE))
            assert one.values.shape == (3, 4, 4) and one.output_names is None
            assert_same(one.values, every.values[rows, :, :, idx])
            assert_same(one.base_values, every.base_values[rows, idx])
            np.testing.assert_array_equal(
                one.extras["order_1"], np.diagonal(one.values, axis1=1, axis2=2)
            )
    single = xj.tree_shap(model, XE[0], interactions=True, targets=2)
    np.testing.assert_allclose(single.values, full.values[0, :, :, 2], atol=1e-6)
    with pytest.raises(ValueError, match="targets"):
        xj.tree_shap(model, XE, interactions=True, targets=3)
    with pytest.raises(ValueError, match="targets"):
        xj.tree_shap(model, XE, interactions=True, targets=np.array([0, 1]))
