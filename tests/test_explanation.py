"""The Explanation result type: shap-style indexing, kinds, persistence, pytree behaviour."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax as xj
from xaijax.core.explanation import KINDS, require_kind


def batch(K=None, n=4, M=3, *, kind="additive", jax_arrays=False):
    rng = np.random.default_rng(0)
    shape = (n, M) if K is None else (n, M, K)
    wrap = jnp.asarray if jax_arrays else np.asarray
    return xj.Explanation(
        values=wrap(rng.normal(size=shape)),
        base_values=wrap(rng.normal(size=(n,) if K is None else (n, K))),
        data=wrap(rng.normal(size=(n, M))),
        feature_names=["a", "b", "c"][:M],
        output_names=None if K is None else [f"o{k}" for k in range(K)],
        method="test",
        kind=kind,
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


# Every pattern shap users write, on identical arrays: values, base_values, data and the names
# must come out as shap's Explanation gives them.
SHAP_INDICES = [
    0,
    -1,
    slice(1, 3),
    np.array([True, False, True, False]),
    [0, 2],
    (slice(None), 0),
    (slice(None), "b"),
    (slice(None), [0, 2]),
    (slice(None), slice(1, 3)),
    (0, 1),
    (2, "c"),
    (slice(None), slice(None), 1),
    (slice(None), 0, 1),
    (0, slice(None), 0),
    (slice(1, 3), [0, 2], 1),
    (slice(None), slice(None), "o2"),
]


def _shap_pair(K):
    shap = pytest.importorskip("shap")
    ours = batch(K)
    theirs = shap.Explanation(
        values=np.asarray(ours.values),
        base_values=np.asarray(ours.base_values),
        data=np.asarray(ours.data),
        feature_names=list(ours.feature_names),
        output_names=None if K is None else list(ours.output_names),
    )
    return ours, theirs


@pytest.mark.parametrize("index", SHAP_INDICES, ids=repr)
@pytest.mark.parametrize("K", [None, 3])
def test_indexing_matches_shap(index, K):
    ours, theirs = _shap_pair(K)
    n_axes = len(index) if isinstance(index, tuple) else 1
    if n_axes > ours.values.ndim or (K is None and "o2" in str(index)):
        with pytest.raises(IndexError):
            ours[index]
        return
    got, want = ours[index], theirs[index]
    np.testing.assert_array_equal(got.values, want.values)
    np.testing.assert_array_equal(got.base_values, want.base_values)
    np.testing.assert_array_equal(got.data, want.data)
    names = got.feature_names
    assert (list(names) if isinstance(names, tuple) else names) == (
        list(want.feature_names) if isinstance(want.feature_names, list) else want.feature_names
    )
    if K is not None:
        outs = got.output_names
        theirs_out = want.output_names
        assert (list(outs) if isinstance(outs, tuple) else outs) == theirs_out


def test_picking_an_output_pairs_base_values_with_it():
    exp = batch(K=2)
    # shap's way to pick output 1: values, base values and names of output 1 only.
    picked = exp[:, :, 1]
    np.testing.assert_array_equal(picked.values, np.asarray(exp.values)[:, :, 1])
    np.testing.assert_array_equal(picked.base_values, np.asarray(exp.base_values)[:, 1])
    assert picked.output_names == "o1" and not picked.has_output_axis and picked.is_batched
    # A feature keeps every output and leaves base values whole (no silent pairing with output 0).
    feature = exp[:, 0]
    np.testing.assert_array_equal(feature.base_values, exp.base_values)
    assert feature.values.shape == (4, 2) and feature.feature_names == "a"


@pytest.mark.parametrize("jax_arrays", [False, True])
def test_out_of_range_indices_raise_instead_of_clamping(jax_arrays):
    exp = batch(jax_arrays=jax_arrays)
    for bad in (len(exp), len(exp) + 7, -len(exp) - 1):
        with pytest.raises(IndexError, match="out of range"):
            exp[bad]
    with pytest.raises(IndexError, match="out of range"):
        exp[:, 3]
    with pytest.raises(IndexError, match="not one of"):
        exp[:, "zz"]
    with pytest.raises(IndexError, match="too many indices"):
        exp[0, 0, 0]
    with pytest.raises(IndexError, match="boolean mask"):
        exp[np.array([True, False])]


@pytest.mark.parametrize("jax_arrays", [False, True])
def test_iteration_yields_each_instance_once(jax_arrays):
    exp = batch(jax_arrays=jax_arrays)
    items = list(exp)
    assert len(items) == len(exp) == 4
    for i, item in enumerate(items):
        np.testing.assert_array_equal(item.values, np.asarray(exp.values)[i])
    with pytest.raises(TypeError):
        list(exp[0])  # a single instance has no length


def test_image_maps_index_data_along_the_pixels():
    maps = np.arange(2 * 4 * 5, dtype=float).reshape(2, 4, 5)
    images = np.zeros((2, 4, 5, 3))
    exp = xj.Explanation(maps, np.zeros(2), images, kind="map")
    assert exp.feature_shape == (4, 5)
    assert exp[1, 2].values.shape == (5,) and exp[1, 2].data.shape == (5, 3)
    # Per-segment values (LIME) leave the image whole.
    seg = xj.Explanation(np.ones((2, 7, 1)), np.zeros((2, 1)), images, output_names=["1"])
    assert seg[:, 3].data.shape == images.shape


def test_kinds_are_checked_and_refused_where_meaningless():
    assert set(KINDS) == {"additive", "path", "map", "surrogate", "prototype", "interaction"}
    with pytest.raises(ValueError, match="kind must be one of"):
        batch(kind="shapley")
    for kind in ("map", "surrogate", "prototype", "interaction"):
        with pytest.raises(TypeError, match=f"kind '{kind}'"):
            batch(kind=kind).to_shap()
    require_kind(batch(kind="path"), ("additive", "path"), "x")  # no error
    with pytest.raises(TypeError, match="local_accuracy_gap needs an Explanation.*got function"):
        require_kind(lambda X: X, ("additive",), "local_accuracy_gap")  # arguments swapped


def test_save_load_round_trip(tmp_path):
    exp = batch(2, kind="surrogate")
    exp.save(tmp_path / "e.npz")
    back = xj.Explanation.load(tmp_path / "e")
    for name in ("values", "base_values", "data"):
        np.testing.assert_array_equal(getattr(back, name), getattr(exp, name))
    assert back.feature_names == ("a", "b", "c") and back.output_names == ("o0", "o1")
    assert back.method == "test" and back.extras["num_samples"] == 7 and back.kind == "surrogate"
    np.testing.assert_array_equal(back.extras["score"], np.arange(4))
    one = exp[:, 1, 0]  # names indexed down to one feature and one output survive too
    one.save(tmp_path / "one")
    back = xj.Explanation.load(tmp_path / "one")
    assert back.feature_names == "b" and back.output_names == "o0"


def test_is_a_pytree_that_crosses_jit():
    exp = batch()
    doubled = jax.jit(lambda e: jax.tree.map(lambda a: 2 * a, e))(exp)
    np.testing.assert_allclose(doubled.values, 2 * exp.values, rtol=1e-6)
    assert doubled.feature_names == exp.feature_names and doubled.kind == exp.kind
    leaves = jax.tree.leaves(exp)
    assert all(isinstance(leaf, (np.ndarray, jnp.ndarray, int)) for leaf in leaves)


def test_to_shap_feeds_shap_plots():
    shap = pytest.importorskip("shap")
    sexp = batch().to_shap()
    assert isinstance(sexp, shap.Explanation)
    np.testing.assert_array_equal(sexp.values, batch().values)
    assert list(sexp.feature_names) == ["a", "b", "c"]
    assert sexp.display_data is None
    raw = 100.0 * np.asarray(batch().data) + 7.0
    shown = dataclasses.replace(batch(), extras={"display_data": raw}).to_shap()
    np.testing.assert_array_equal(shown.display_data, raw)
    np.testing.assert_array_equal(shown.data, batch().data)
