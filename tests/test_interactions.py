"""Shapley interaction indices against shapiq's ExactComputer, brute-force NumPy formulas and the
exact indices (for the sampling methods), on the same interventional game."""

import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax as xj
from xaijax.shapley.interactions import (
    INDICES,
    aggregate_k_sii,
    moebius_weights,
    svarm_coefficients,
)

M = 5
_rng = np.random.default_rng(0)
X = _rng.normal(size=(2, M))
B = _rng.normal(size=(4, M))
X32, B32 = X.astype(np.float32), B.astype(np.float32)


def model_np(Z):
    """Main effects, pairs and a triple, so every order up to 3 is non-zero (float64 NumPy)."""
    return (
        Z[:, 0] * Z[:, 1] * Z[:, 2]
        + np.sin(Z[:, 3]) * Z[:, 4]
        + Z[:, 1] ** 2
        - 0.5 * Z[:, 0] * Z[:, 4]
        + Z[:, 2]
    )


def model(Z):
    return (
        Z[:, 0] * Z[:, 1] * Z[:, 2]
        + jnp.sin(Z[:, 3]) * Z[:, 4]
        + Z[:, 1] ** 2
        - 0.5 * Z[:, 0] * Z[:, 4]
        + Z[:, 2]
    )


def game(x):
    """The interventional game v(S) = mean_b f(x_S, b_rest) for shapiq (coalitions as rows)."""

    def v(coalitions):
        C = np.asarray(coalitions, bool)
        rows = np.where(C[:, None, :], x[None, None, :], B[None, :, :])
        return model_np(rows.reshape(-1, M)).reshape(len(C), -1).mean(axis=1)

    return v


def value(x, S):
    return game(x)(np.isin(np.arange(M), list(S))[None])[0]


def entry(exp, i, S):
    """Our value of the set S (a sorted tuple) for instance i."""
    return exp.extras[f"order_{len(S)}"][(i, *S)]


@pytest.fixture(scope="module")
def shapiq_values():
    from shapiq import ExactComputer

    out = {}
    for i in (1,):  # one instance: batches equal loops in the contract suite
        computer = ExactComputer(game(X[i]), M)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for index in INDICES:
                for order in (1, 2, 3):
                    out[i, index, order] = computer(index, order)
    return out


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("index", INDICES)
def test_exact_indices_equal_shapiq_exact_computer(shapiq_values, index, order):
    exp = xj.shapley_interactions(model, X32, B32, index=index, max_order=order)
    assert exp.kind == "interaction" and exp.extras["index"] == index
    worst = 0.0
    for i in (1,):
        iv = shapiq_values[i, index, order]
        for S, j in iv.interaction_lookup.items():
            if not S and index == "SII" and order == 1:
                # shapiq reports v(∅) there (SII of order 1 as the Shapley value); ours is
                # SII(∅) = sum_T m(T) / (|T| + 1) at every order, as shapiq's orders 2 and 3.
                assert float(entry(exp, i, S)) == pytest.approx(
                    shapiq_values[i, "SII", 2].values[0], abs=1e-5
                )
                continue
            worst = max(worst, abs(float(entry(exp, i, S)) - iv.values[j]))
    assert worst < 1e-5, worst


def test_pairs_equal_the_brute_force_formulas():
    """Order 2 from the discrete derivatives, coalition by coalition, in float64 NumPy."""
    exp = {
        index: xj.shapley_interactions(model, X32, B32, index=index, max_order=2)
        for index in ("SII", "BII", "STII")
    }
    for i, (a, b) in itertools.product(range(len(X)), itertools.combinations(range(M), 2)):
        rest = [p for p in range(M) if p not in (a, b)]
        sii = bii = stii = 0.0
        for r in range(M - 1):
            for S in itertools.combinations(rest, r):
                d = (
                    value(X[i], S + (a, b))
                    - value(X[i], S + (a,))
                    - value(X[i], S + (b,))
                    + value(X[i], S)
                )
                sii += math.factorial(r) * math.factorial(M - r - 2) / math.factorial(M - 1) * d
                bii += d / 2 ** (M - 2)
                stii += 2 / M / math.comb(M - 1, r) * d
        for index, want in (("SII", sii), ("BII", bii), ("STII", stii)):
            got = exp[index]
            assert float(got.extras["order_2"][i, a, b]) == pytest.approx(want, abs=1e-5), index
            assert float(got.values[i, a, b]) == pytest.approx(want / 2, abs=1e-5), index
    # SII's order 1 is the Shapley value; its matrix diagonal holds it.
    np.testing.assert_allclose(
        np.diagonal(exp["SII"].values, axis1=1, axis2=2),
        np.asarray(xj.exact_shapley(model, X32, B32).values),
        atol=1e-5,
    )


def test_layout_efficiency_and_outputs():
    """Symmetric dense orders, zero where a player repeats; efficient indices sum to f(x);
    several outputs and targets as elsewhere; groups make the players."""
    fx = model_np(X)
    for index in ("k-SII", "STII", "FSII"):
        exp = xj.shapley_interactions(model, X32, B32, index=index, max_order=3)
        assert exp.values.shape == (2, M, M)
        third = exp.extras["order_3"]
        np.testing.assert_array_equal(third, np.transpose(third, (0, 2, 3, 1)))
        assert np.all(third[:, 0, 0, :] == 0)
        total = exp.base_values + sum(
            exp.extras[f"order_{s}"].reshape(2, -1).sum(1) / math.factorial(s) for s in (1, 2, 3)
        )
        np.testing.assert_allclose(total, fx, atol=1e-4, err_msg=index)
    # 2-SII at max_order 2: the matrix sums to f(x) - base, as shap's interaction values.
    two = xj.shapley_interactions(model, X32, B32, index="k-SII")
    np.testing.assert_allclose(two.values.sum((1, 2)) + two.base_values, fx, atol=1e-4)

    def two_out(Z):
        return jnp.stack([model(Z), -2 * model(Z)], axis=1)

    both = xj.shapley_interactions(two_out, X32, B32, index="BII")
    one = xj.shapley_interactions(model, X32, B32, index="BII")
    assert both.values.shape == (2, M, M, 2) and both.extras["order_2"].shape == (2, M, M, 2)
    np.testing.assert_allclose(both.values[..., 1], -2 * one.values, atol=1e-5)
    picked = xj.shapley_interactions(two_out, X32[0], B32, index="BII", targets=1)
    np.testing.assert_allclose(picked.values, -2 * one.values[0], atol=1e-5)
    # Groups: the players are the groups (shapiq on the game of the groups).
    from shapiq import ExactComputer

    groups = np.array([0, 0, 1, 2, 2])
    grouped = xj.shapley_interactions(model, X32, B32, groups=groups)
    assert grouped.values.shape == (2, 3, 3)
    full = game(X[1])
    iv = ExactComputer(lambda C: full(np.asarray(C)[:, groups]), 3)("SII", 2)
    for S, j in iv.interaction_lookup.items():
        if S:
            assert float(entry(grouped, 1, S)) == pytest.approx(iv.values[j], abs=1e-5)


def test_moebius_weights_recover_the_definitions():
    # SII pairs weigh the Moebius coefficient of a superset T by 1 / (|T| - 1).
    np.testing.assert_allclose(moebius_weights("SII", 4, 2)[2], [0, 0, 1, 1 / 2, 1 / 3])
    # k-SII of order k == max_order equals SII there; below, the Bernoulli aggregation.
    np.testing.assert_allclose(moebius_weights("k-SII", 4, 2)[2], moebius_weights("SII", 4, 2)[2])
    # The Bernoulli aggregation of exact SII tensors equals k-SII from its Moebius weights.
    sii = xj.shapley_interactions(model, X32, B32, index="SII", max_order=3)
    k_sii = xj.shapley_interactions(model, X32, B32, index="k-SII", max_order=3)
    aggregated = aggregate_k_sii([sii.extras[f"order_{s}"] for s in range(4)], 3)
    for s in (1, 2, 3):
        np.testing.assert_allclose(aggregated[s], k_sii.extras[f"order_{s}"], atol=1e-5)


@pytest.mark.parametrize("index", ["SII", "k-SII", "STII"])
def test_permutation_sampling_converges_to_exact(index):
    exact = xj.shapley_interactions(model, X32, B32, index=index)
    errors = []
    for budget in (200, 20000) if index != "k-SII" else (20000,):
        exp = xj.shapley_interactions(
            model, X32, B32, index=index, method="permutation", key=jax.random.key(0), budget=budget
        )
        assert exp.extras["num_evaluations"] <= budget
        errors.append(np.abs(exp.values - exact.values).max())
        if index == "k-SII":  # efficient for every sample: the order-1 estimates telescope
            total = (
                exp.base_values
                + exp.extras["order_1"].sum(1)
                + exp.extras["order_2"].sum((1, 2)) / 2
            )
            np.testing.assert_allclose(total, model_np(X), atol=1e-4)
    assert len(errors) == 1 or errors[1] < errors[0] / 3, errors
    assert errors[-1] < 0.05 * np.abs(exact.values).max(), errors


def test_kernel_fsii_converges_and_is_exact_at_full_budget():
    exact = xj.shapley_interactions(model, X32, B32, index="FSII")
    errors = []
    for budget in (16, 2**M):
        exp = xj.shapley_interactions(
            model, X32, B32, index="FSII", method="kernel", key=jax.random.key(1), budget=budget
        )
        errors.append(np.abs(exp.values - exact.values).max())
        total = exp.base_values + exp.values.sum((1, 2))
        np.testing.assert_allclose(total, model_np(X), atol=1e-4)  # efficiency imposed exactly
    assert errors[1] < 1e-5 < errors[0], errors


@pytest.mark.parametrize("index", ["SII", "STII", "BII"])
def test_svarm_converges_and_is_exact_at_full_budget(index):
    exact = xj.shapley_interactions(model, X32, B32, index=index, max_order=3)
    errors = []
    for budget in (12, 2**M) if index == "SII" else (2**M,):  # compilations cost test time
        exp = xj.shapley_interactions(
            model,
            X32,
            B32,
            index=index,
            max_order=3,
            method="svarm",
            key=jax.random.key(2),
            budget=budget,
        )
        assert exp.extras["num_evaluations"] == budget
        errors.append(
            max(
                np.abs(exp.extras[f"order_{s}"] - exact.extras[f"order_{s}"]).max()
                for s in (1, 2, 3)
            )
        )
    assert errors[-1] < 1e-5, errors
    assert len(errors) == 1 or errors[0] > 1e-2, errors


def test_svarm_coefficients_are_the_discrete_derivative_weights():
    """Stratum coefficients against the definition, coalition by coalition."""
    coef = svarm_coefficients("SII", M, 2)[2]
    S = (0, 1)
    rest = [p for p in range(M) if p not in S]
    want = np.zeros((3, M - 1))
    for r in range(M - 1):
        for _ in itertools.combinations(rest, r):
            w = math.factorial(r) * math.factorial(M - r - 2) / math.factorial(M - 1)
            for L in itertools.chain.from_iterable(itertools.combinations(S, q) for q in range(3)):
                want[len(L), r] += (-1) ** (2 - len(L)) * w
    np.testing.assert_allclose(coef, want, atol=1e-12)


def test_bad_arguments_are_named():
    cases = [
        (dict(index="shapley"), ValueError, "index"),
        (dict(method="svd"), ValueError, "method"),
        (dict(index="FSII", method="permutation", key=jax.random.key(0)), ValueError, "index"),
        (dict(max_order=0), ValueError, "max_order"),
        (dict(max_order=M + 1), ValueError, "max_order"),
        (dict(max_order=1.5), TypeError, "max_order"),
        (dict(method="permutation", key=jax.random.key(0), budget=3), ValueError, "budget"),
        (
            dict(method="kernel", index="FSII", key=jax.random.key(0), budget=2),
            ValueError,
            "budget",
        ),
        (dict(method="permutation"), TypeError, "key"),
        (dict(method="svarm", index="k-SII", key=jax.random.key(0)), ValueError, "index"),
        (dict(method="svarm", key=jax.random.key(0), budget=2), ValueError, "budget"),
    ]
    for kwargs, error, name in cases:
        with pytest.raises(error, match=name):
            xj.shapley_interactions(model, X32, B32, **kwargs)
    with pytest.raises(ValueError, match="features"):
        xj.shapley_interactions(model, np.zeros((1, 21), np.float32), np.zeros((2, 21), np.float32))


def test_command_line_writes_the_interaction_figures(tmp_path, monkeypatch):
    from xaijax import cli

    (tmp_path / "interaction_model.py").write_text("def f(X):\n    return X[:, 0] * X[:, 1]\n")
    np.savez(tmp_path / "data.npz", X=X32[:, :3])
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "out"
    argv = ["explain", "--model", "interaction_model:f", "--data", str(tmp_path / "data.npz")]
    assert cli.main([*argv, "--method", "shapley_interactions", "--out", str(out)]) == 0
    assert (out / "interaction_matrix.png").exists() and (out / "interaction_network.png").exists()
    exp = xj.Explanation.load(out / "explanation")
    # f = x0 x1 with the rows as background: SII(0, 1) = mean_b (x0 - b0)(x1 - b1), halved
    d = X[:, None, :2] - X[None, :, :2]
    want = (d[..., 0] * d[..., 1]).mean(1) / 2
    np.testing.assert_allclose(exp.values[:, 0, 1], want, atol=1e-5)
