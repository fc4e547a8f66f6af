"""Metrics on hand-made cases with known values, and against scipy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from xaijax import Explanation, metrics
from xaijax.zoo.data import synthetic_shapes
from xaijax.zoo.nets import MLP


def region_model(region):
    """P(class 0) rises with the mean brightness inside ``region`` (an (H, W) bool mask)."""
    r = jnp.asarray(region, jnp.float32)

    def f(X):
        inside = (X[..., 0] * r[None]).sum((1, 2)) / r.sum()
        p = jax.nn.sigmoid(8.0 * (inside - 0.5))
        return jnp.stack([p, 1.0 - p], axis=1)

    return f


def test_uniform_image_linear_model_auc_is_one_half():
    f = lambda X: jnp.stack([X.mean((1, 2, 3)), 1.0 - X.mean((1, 2, 3))], axis=1)  # noqa: E731
    sal = np.random.default_rng(0).random((2, 6, 6))
    for curve in (
        metrics.deletion_auc(f, np.ones((2, 6, 6, 1)), sal, target=0, steps=6),
        metrics.insertion_auc(f, np.ones((2, 6, 6, 1)), sal, target=0, steps=6, baseline="zero"),
    ):
        np.testing.assert_allclose(curve.auc, [0.5, 0.5], atol=1e-6)
        assert curve.scores.shape == (2, 7)


def test_oracle_ordering_beats_random_ordering():
    rng = np.random.default_rng(1)
    region = np.zeros((8, 8), bool)
    region[2:5, 3:6] = True
    f = region_model(region)
    images = np.ones((4, 8, 8, 1), np.float32)
    oracle = region[None].astype(np.float32) + 0.01 * rng.random((4, 8, 8))
    random = rng.random((4, 8, 8))
    d_oracle = metrics.deletion_auc(f, images, oracle, target=0, steps=16).auc
    d_random = metrics.deletion_auc(f, images, random, target=0, steps=16).auc
    i_oracle = metrics.insertion_auc(f, images, oracle, target=0, steps=16, baseline=0.0).auc
    i_random = metrics.insertion_auc(f, images, random, target=0, steps=16, baseline=0.0).auc
    assert d_oracle.mean() < d_random.mean() - 0.2
    assert i_oracle.mean() > i_random.mean() + 0.2


def test_pointing_game_and_energy_on_synthetic_shapes():
    ds = synthetic_shapes(jax.random.key(0), 6, size=24)
    perfect = ds.masks.astype(np.float32)
    assert metrics.pointing_game(perfect, ds.masks).all()
    assert (metrics.energy_in_mask(perfect, ds.masks) == 1.0).all()
    inverted = 1.0 - perfect
    assert not metrics.pointing_game(inverted, ds.masks).any()
    assert (metrics.energy_in_mask(inverted, ds.masks) == 0.0).all()
    # A peak one pixel off the object counts only within the tolerance.
    mask = np.zeros((1, 9, 9), bool)
    mask[0, 4, 4] = True
    sal = np.zeros((1, 9, 9))
    sal[0, 4, 6] = 1.0
    assert not metrics.pointing_game(sal, mask)[0]
    assert metrics.pointing_game(sal, mask, tolerance=2)[0]
    assert metrics.energy_in_mask(np.zeros((1, 9, 9)), mask)[0] == 0.0  # no division by zero


def test_sparseness_complexity_local_accuracy():
    np.testing.assert_allclose(metrics.sparseness([[0, 0, 0, 5.0], [2, 2, 2, 2.0]]), [0.75, 0.0])
    np.testing.assert_allclose(metrics.complexity([[0, 3.0], [1.0, 1.0]]), [0.0, np.log(2)])
    exp = Explanation(np.array([[1.0, -1.0], [0.5, 0.5]]), np.array([1.0, 0.0]), np.zeros((2, 2)))
    np.testing.assert_allclose(metrics.local_accuracy_gap(exp, np.array([1.0, 2.0])), [0.0, 1.0])


def test_spearman_equals_scipy_with_ties():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(2)
    a = rng.integers(0, 4, size=(3, 20)).astype(float)  # many ties
    b = a + rng.normal(size=(3, 20))
    ours = metrics.spearman(a, b)
    ref = [spearmanr(x, y).statistic for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_cascading_randomization_destroys_gradient_maps():
    net = MLP(6, [32, 32], 2, rngs=nnx.Rngs(0))
    X = jnp.asarray(np.random.default_rng(3).normal(size=(16, 6)), jnp.float32)

    def saliency(m):
        return jax.vmap(jax.grad(lambda x: m(x[None])[0, 0]))(X)

    res = metrics.cascading_randomization(net, saliency, key=jax.random.key(0))
    assert res["layers"] == ["out", "hidden/1", "hidden/0"]
    assert res["spearman"].shape == (3, 16)
    assert res["spearman"][-1].mean() < 0.5  # fully randomised: maps no longer agree
    # The original module is untouched.
    np.testing.assert_array_equal(saliency(net), saliency(net))
    with pytest.raises(ValueError, match="layers: no parameters"):
        metrics.cascading_randomization(net, saliency, key=jax.random.key(0), layers=[("nope",)])


def test_bad_input():
    f = lambda X: jnp.stack([X.mean((1, 2, 3))] * 2, axis=1)  # noqa: E731
    with pytest.raises(ValueError, match="saliency must have shape"):
        metrics.deletion_auc(f, np.ones((1, 4, 4, 1)), np.ones((1, 5, 4)))
    with pytest.raises(ValueError, match="target must be class indices"):
        metrics.deletion_auc(f, np.ones((1, 4, 4, 1)), np.ones((1, 4, 4)), target=3, steps=2)
    with pytest.raises(ValueError, match="baseline must be"):
        metrics.insertion_auc(f, np.ones((1, 4, 4, 1)), np.ones((1, 4, 4)), baseline="noise")
    with pytest.raises(ValueError, match="masks must have shape"):
        metrics.pointing_game(np.ones((1, 4, 4)), np.ones((1, 4, 5)))
