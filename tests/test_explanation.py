"""The Explanation result type: slicing, persistence, pytree behaviour and shap interop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax as xj


def batch(K=None, n=4, M=3):
    rng = np.random.default_rng(0)
    shape = (n, M) if K is None else (n, M, K)
    return xj.Explanation(
        values=rng.normal(size=shape),
        base_values=rng.normal(size=(n,) if K is None else (n, K)),
        data=rng.normal(size=(n, M)),
        feature_names=["a", "b", "c"],
        output_names=None if K is None else [str(k) for k in range(K)],
        method="test",
        extras={"score": np.arange(n), "num_samples": 7},
    )


@pytest.mark.parametrize("K", [None, 2])
def test_indexing_slices_every_field(K):
    exp = batch(K)
    one = exp[2]
    assert not one.is_batched and one.values.shape == ((3,) if K is None else (3, K))
    assert one.extras["score"] == 2 and one.extras["num_samples"] == 7
    part = exp[1:3]
    assert len(part) == 2 and part.data.shape == (2, 3)
    np.testing.assert_array_equal(part.extras["score"], [1, 2])
    assert one[0].feature_names == "a"  # a single instance indexes its features, as shap does
    with pytest.raises(IndexError):
        one[5]
    with pytest.raises(IndexError):
        exp[len(exp) + 7]


def test_save_load_round_trip(tmp_path):
    exp = batch(2)
    exp.save(tmp_path / "e.npz")
    back = xj.Explanation.load(tmp_path / "e")
    for name in ("values", "base_values", "data"):
        np.testing.assert_array_equal(getattr(back, name), getattr(exp, name))
    assert back.feature_names == ("a", "b", "c") and back.output_names == ("0", "1")
    assert back.method == "test" and back.extras["num_samples"] == 7
    np.testing.assert_array_equal(back.extras["score"], np.arange(4))


def test_is_a_pytree_that_crosses_jit():
    exp = batch()
    doubled = jax.jit(lambda e: jax.tree.map(lambda a: 2 * a, e))(exp)
    np.testing.assert_allclose(doubled.values, 2 * exp.values, rtol=1e-6)
    assert doubled.feature_names == exp.feature_names  # static metadata survives
    leaves = jax.tree.leaves(exp)
    assert all(isinstance(leaf, (np.ndarray, jnp.ndarray, int)) for leaf in leaves)


def test_to_shap_feeds_shap_plots():
    shap = pytest.importorskip("shap")
    sexp = batch().to_shap()
    assert isinstance(sexp, shap.Explanation)
    np.testing.assert_array_equal(sexp.values, batch().values)
    assert list(sexp.feature_names) == ["a", "b", "c"]
