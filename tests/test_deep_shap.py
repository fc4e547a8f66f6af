"""Deep SHAP (DeepLIFT by jaxpr re-interpretation) and Max SHAP against their oracles.

Oracles: summation-to-delta (sum of attributions = f(x) - E[f(b)]) on MLPs and CNNs with ReLU,
softmax and max pooling; Linear SHAP's closed form on linear models; brute-force Shapley values
(exact_shapley) for Max SHAP, products and a single max, where Deep SHAP's rules are exact.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cam_models import random_module
from flax import nnx

from xaijax.shapley import (
    UnsupportedPrimitiveError,
    deep_shap,
    deeplift_multipliers,
    exact_shapley,
    kernel_shap,
    linear_shap,
    max_shap,
    max_shapley_pairs,
)
from xaijax.shapley import deep as deep_module

RNG = np.random.default_rng(0)
W1 = RNG.normal(size=(6, 8)).astype(np.float32)
B1 = (RNG.normal(size=8) * 0.3).astype(np.float32)
W2 = RNG.normal(size=(8, 3)).astype(np.float32)
X = RNG.normal(size=(4, 6)).astype(np.float32)
BG = RNG.normal(size=(5, 6)).astype(np.float32)


def mlp_softmax(X):
    h = jax.nn.relu(X @ W1 + B1[None])
    h = jnp.tanh(h) + jax.nn.sigmoid(h) * jnp.exp(-jnp.abs(h)) + jnp.log1p(h * h)
    return jax.nn.softmax(h @ W2)


def relu_net(X):
    return jax.nn.relu(X @ W1 + B1[None]) @ W2[:, 0]


class CNN(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.norm = nnx.BatchNorm(4, rngs=rngs)
        self.dense = nnx.Linear(4 * 4 * 4, 3, rngs=rngs)

    def __call__(self, X):
        h = nnx.relu(self.norm(self.conv(X)))
        # Overlapping 3x3 windows with SAME padding: Max SHAP must treat padding as null.
        h = nnx.max_pool(h, (3, 3), (2, 2), padding="SAME")
        h = h.reshape(h.shape[0], -1)
        return jax.nn.log_softmax(self.dense(h))


@pytest.fixture(scope="module")
def cnn():
    model = random_module(lambda: CNN(nnx.Rngs(0)), seed=1, scale=0.5)
    model.eval()  # BatchNorm on its running statistics, as deep_shap evaluates it
    return model


IMAGES = RNG.normal(size=(3, 8, 8, 1)).astype(np.float32)
IMAGE_BG = RNG.normal(size=(4, 8, 8, 1)).astype(np.float32)


# -- Max SHAP --
def test_max_shapley_pairs_equal_brute_force_shapley():
    x = RNG.normal(size=6).astype(np.float32)
    r = RNG.normal(size=6).astype(np.float32)
    x[2] = r[2]  # a null player
    x[4] = x[1]  # a tie
    phi = max_shapley_pairs(jnp.asarray(x), jnp.asarray(r))
    oracle = exact_shapley(lambda X: X.max(axis=1), x, r[None]).values
    np.testing.assert_allclose(phi, oracle, atol=1e-6)
    assert float(phi[2]) == 0.0


def test_max_shap_over_a_background_equals_exact_shapley():
    Xm = RNG.normal(size=(3, 7)).astype(np.float32)
    bg = RNG.normal(size=(4, 7)).astype(np.float32)
    w = np.array([1.0, 2.0, 0.5, 0.5])
    exp = max_shap(Xm, bg, background_weights=w, batch_size=3)
    oracle = exact_shapley(lambda X: X.max(axis=1), Xm, bg, background_weights=w)
    np.testing.assert_allclose(exp.values, oracle.values, atol=1e-5)
    np.testing.assert_allclose(exp.base_values, oracle.base_values, atol=1e-6)
    np.testing.assert_allclose(exp.values.sum(axis=1) + exp.base_values, Xm.max(axis=1), atol=1e-5)


# -- Deep SHAP: summation-to-delta --
def test_summation_to_delta_on_an_mlp_with_softmax():
    exp = deep_shap(mlp_softmax, X, BG)
    assert exp.values.shape == (4, 6, 3) and exp.base_values.shape == (4, 3)
    np.testing.assert_allclose(exp.base_values[0], mlp_softmax(BG).mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(exp.values.sum(axis=1) + exp.base_values, mlp_softmax(X), atol=1e-6)
    # Not a degenerate answer: every instance gets non-trivial attributions.
    assert np.all(np.abs(exp.values).sum(axis=(1, 2)) > 1e-2)


def test_summation_to_delta_on_an_nnx_cnn_with_max_pooling(cnn):
    exp = deep_shap(cnn, IMAGES, IMAGE_BG, batch_size=3)
    assert exp.values.shape == (3, 8, 8, 1, 3) and exp.base_values.shape == (3, 3)
    np.testing.assert_allclose(
        exp.values.sum(axis=(1, 2, 3)) + exp.base_values, cnn(IMAGES), atol=1e-5
    )
    one = deep_shap(cnn, IMAGES[1], IMAGE_BG)
    assert one.values.shape == (8, 8, 1, 3)
    np.testing.assert_allclose(one.values, exp.values[1], atol=1e-6)


def test_summation_to_delta_through_padded_min_pooling():
    def f(X):
        pooled = jax.lax.reduce_window(X, jnp.inf, jax.lax.min, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
        return pooled.sum(axis=(1, 2, 3))

    exp = deep_shap(f, IMAGES, IMAGE_BG)
    np.testing.assert_allclose(
        exp.values.sum(axis=(1, 2, 3)) + exp.base_values, f(IMAGES), atol=1e-5
    )


def test_summation_to_delta_for_each_reference_with_near_equal_inputs():
    # The secant's fallback (x ~ r) must not break the sum: references close to x.
    x = X[0]
    refs = np.stack([x, x + 1e-6, x - 3e-4, x + 1.0])
    for r in refs:
        # One output at a time: summed over softmax's outputs both sides cancel to ~0, and a
        # float32 tolerance must be set by the size of the whole result, not of that cancelled
        # sum. (One row per call: eager ops of these shapes are compiled once.)
        for cot in np.eye(3, dtype=np.float32):
            m, y, y_ref = deeplift_multipliers(
                mlp_softmax, jnp.asarray(x[None]), jnp.asarray(r[None]), jnp.asarray(cot[None])
            )
            terms = (x - r) * np.asarray(m[0])
            # the scale of the whole result: every output at x and at r, and the terms
            scale = np.abs(terms).sum() + np.abs(y).sum() + np.abs(y_ref).sum()
            delta = np.asarray(y)[0] @ cot - np.asarray(y_ref)[0] @ cot
            assert abs(terms.sum() - delta) <= 1e-6 * scale, (r - x, cot)


# -- Deep SHAP: oracles where its rules are exact Shapley values --
def test_linear_model_equals_linear_shap():
    coef = RNG.normal(size=(6, 3)).astype(np.float32)
    intercept = RNG.normal(size=3).astype(np.float32)
    exp = deep_shap(lambda X: X @ coef + intercept[None], X, BG)
    oracle = linear_shap(coef, intercept, X, BG)
    np.testing.assert_allclose(exp.values, oracle.values, atol=1e-5)
    np.testing.assert_allclose(exp.base_values, oracle.base_values, atol=1e-5)


@pytest.mark.parametrize(
    "f",
    [
        lambda X: X[:, 0] * X[:, 1] + X[:, 2],  # product of two inputs
        lambda X: jnp.max(X, axis=1),  # a single max (Max SHAP)
        lambda X: jnp.min(X, axis=1),
        lambda X: X[:, 0] / (1.0 + X[:, 1] ** 2),  # a quotient
        lambda X: jnp.einsum("ni,ni->n", X[:, :2], X[:, 1:]),  # dot of two inputs (attention)
    ],
    ids=["mul", "max", "min", "div", "dot"],
)
def test_two_player_rules_are_exact_shapley_values(f):
    # With one reference, Deep SHAP's rules for these functions are their Shapley values.
    exp = deep_shap(f, X[:, :3], BG[:1, :3])
    oracle = exact_shapley(f, X[:, :3], BG[:1, :3])
    np.testing.assert_allclose(exp.values, oracle.values, atol=1e-5)


def test_small_relu_net_close_to_exact_shapley():
    exp = deep_shap(relu_net, X, BG)
    oracle = exact_shapley(relu_net, X, BG).values
    err = np.abs(exp.values - oracle).mean()
    scale = np.abs(oracle).mean()
    # Deep SHAP is an approximation for deep ReLU nets; here it is within ~15% of the scale.
    # Kernel SHAP at ~equal model cost (a few coalitions per reference) is far off.
    kernel = kernel_shap(relu_net, X, BG, key=jax.random.key(0), num_samples=8).values
    kernel_err = np.abs(kernel - oracle).mean()
    assert err < 0.2 * scale, (err, scale)
    assert err < kernel_err, (err, kernel_err)


# -- compile once, chunking, errors --
def test_compiles_once_for_same_shaped_calls_and_chunks_agree():
    def model(X):  # a model no other test compiled
        return jax.nn.relu(X @ W1) @ W2

    before = deep_module._deep._cache_size()
    a = deep_shap(model, X, BG)
    b = deep_shap(model, X + 1.0, BG - 1.0)
    assert deep_module._deep._cache_size() == before + 1
    assert not np.allclose(a.values, b.values)
    chunked = deep_shap(model, X, BG, batch_size=2)
    np.testing.assert_allclose(chunked.values, a.values, atol=1e-6)


def test_unsupported_primitive_is_named():
    with pytest.raises(UnsupportedPrimitiveError, match="'sort'"):
        deep_shap(lambda X: jnp.sort(X, axis=1) @ jnp.arange(6.0), X, BG)
    # The equation and the user's source line are named too (where JAX keeps the line: not
    # inside jnp's own jitted functions, whose frames stop at their call).
    with pytest.raises(UnsupportedPrimitiveError, match=r"equation: .*sort\[.*test_deep_shap"):
        deep_shap(lambda X: jax.lax.sort(X, dimension=1).sum(axis=1), X, BG)
    # A step function (where between constants on the input) has no multipliers.
    with pytest.raises(UnsupportedPrimitiveError, match="'select_n'.*step function"):
        deep_shap(lambda X: jnp.where(X > 0, 1.0, 0.0).sum(axis=1), X, BG)
    # Loops over the input are named, not re-interpreted.
    with pytest.raises(UnsupportedPrimitiveError, match="'while'"):
        deep_shap(lambda X: jax.lax.while_loop(lambda c: c.sum() > 9, lambda c: c / 2, X), X, BG)
    # where on the input (ReLU written as a where) is the rescale rule on the selected branch.
    a = deep_shap(lambda X: jnp.where(X > 0, X, 0.0).sum(axis=1), X, BG)
    b = deep_shap(lambda X: jax.nn.relu(X).sum(axis=1), X, BG)
    np.testing.assert_allclose(a.values, b.values, atol=1e-6)


def test_bad_input_raises_before_compilation():
    with pytest.raises(ValueError, match="X"):
        deep_shap(relu_net, np.ones((2, 5)), BG)
    with pytest.raises(ValueError, match="background"):
        deep_shap(relu_net, X, np.ones((3, 5)))
    with pytest.raises(ValueError, match="X"):
        deep_shap(relu_net, np.full((1, 6), np.nan), BG)
    with pytest.raises(ValueError, match="X"):
        deep_shap(lambda X: X.sum(axis=(1, 2, 3)), np.ones((2, 8, 7, 1)), IMAGE_BG)
    with pytest.raises(ValueError, match="host"):
        deep_shap(lambda X: np.asarray(X).sum(axis=1), X, BG)


def test_nan_model_output_raises():
    with pytest.raises(ValueError, match="NaN"):
        deep_shap(lambda X: jnp.log(X[:, 0]), X, BG)


# -- the explainer contract --
def test_int_array_and_callable_targets():
    every = deep_shap(mlp_softmax, X, BG)
    scale = np.abs(every.values).max()
    # An int target is one backward pass with that output's cotangent: the same multipliers.
    one = deep_shap(mlp_softmax, X, BG, targets=2)
    assert one.values.shape == (4, 6) and one.base_values.shape == (4,)
    np.testing.assert_allclose(one.values, every.values[..., 2], atol=1e-6 * scale)
    np.testing.assert_allclose(one.base_values, every.base_values[:, 2], atol=1e-6)
    t = np.array([0, 2, 1, 2])
    per = deep_shap(mlp_softmax, X, BG, targets=t)
    np.testing.assert_allclose(per.values, every.values[np.arange(4), :, t], atol=1e-6 * scale)
    np.testing.assert_allclose(per.base_values, every.base_values[np.arange(4), t], atol=1e-6)
    # A callable is re-interpreted with the model; a difference of outputs is affine, so its
    # attributions are the difference of the outputs' (DeepLIFT is linear in the cotangent).
    diff = deep_shap(mlp_softmax, X, BG, targets=lambda Y: Y[:, 0] - Y[:, 1])
    np.testing.assert_allclose(
        diff.values, every.values[..., 0] - every.values[..., 1], atol=1e-6 * scale
    )
    fx = mlp_softmax(X)
    np.testing.assert_allclose(
        diff.values.sum(axis=1) + diff.base_values, fx[:, 0] - fx[:, 1], atol=1e-6
    )
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        deep_shap(mlp_softmax, X, BG, targets=3)


def test_stacked_outputs_are_affine():
    def f(X):  # jnp.stack is its own primitive in recent JAX
        return jnp.stack([X[:, 0] * X[:, 1], jnp.tanh(X[:, 2])], axis=1)

    exp = deep_shap(f, X[:, :3], BG[:1, :3])
    oracle = exact_shapley(f, X[:, :3], BG[:1, :3])
    np.testing.assert_allclose(exp.values, oracle.values, atol=1e-5)


def test_batch_size_of_one_row_equals_the_default():
    a = deep_shap(mlp_softmax, X, BG)
    b = deep_shap(mlp_softmax, X, BG, batch_size=1)
    np.testing.assert_allclose(b.values, a.values, atol=1e-6 * np.abs(a.values).max())
    m = max_shap(X, BG)
    np.testing.assert_allclose(max_shap(X, BG, batch_size=1).values, m.values, atol=1e-6)
    for explain in (
        lambda **kw: deep_shap(relu_net, X, BG, **kw),
        lambda **kw: max_shap(X, BG, **kw),
    ):
        with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
            explain(batch_size=0)
        with pytest.raises(TypeError, match="batch_size must be an int"):
            explain(batch_size=2.5)
        with pytest.raises(TypeError, match="mesh must be None or a jax.sharding.Mesh"):
            explain(mesh="cpu")


def test_nan_at_one_instance_is_named():
    Xp = np.abs(X) + 0.1
    Xp[2, 0] = -1.0  # log of a negative at instance 2 only; the references are positive
    with pytest.raises(ValueError, match=r"f returned NaN or inf \(instances \[2\]\)"):
        deep_shap(lambda X: jnp.log(X[:, 0]) + X[:, 1], Xp, np.abs(BG) + 0.1)
