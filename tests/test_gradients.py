"""Gradient attributions against closed forms, finite differences and brute-force averages."""

import jax
import jax.monitoring
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import xaijax.gradients as xg

_k = jax.random.split(jax.random.key(5), 4)
W1 = jax.random.normal(_k[0], (4, 8)) * 0.7
W2 = jax.random.normal(_k[1], (8, 3)) * 0.7
X = jax.random.normal(_k[2], (5, 4))
BACKGROUND = jax.random.normal(_k[3], (6, 4))


def mlp(X):
    return jnp.tanh(X @ W1) @ W2


def linear(X):
    return X @ W2[:4]


def test_saliency_and_gradient_x_input_on_a_linear_model():
    sal = xg.saliency(linear, X, targets=2)
    np.testing.assert_allclose(sal.values, jnp.broadcast_to(jnp.abs(W2[:4, 2]), X.shape))
    gxi = xg.gradient_x_input(linear, X, targets=2)
    np.testing.assert_allclose(gxi.values, X * W2[None, :4, 2], rtol=1e-6)


def test_saliency_matches_central_finite_differences():
    X64 = np.asarray(X, np.float64)
    eps = 1e-3
    fd = np.zeros_like(X64)
    for j in range(4):
        step = np.zeros(4)
        step[j] = eps
        fd[:, j] = (np.asarray(mlp(X64 + step))[:, 1] - np.asarray(mlp(X64 - step))[:, 1]) / (
            2 * eps
        )
    np.testing.assert_allclose(xg.saliency(mlp, X, 1).values, np.abs(fd), rtol=2e-3, atol=2e-4)


def test_targets_none_callable_and_single_instance():
    predicted = np.argmax(mlp(X), axis=1)
    by_none = xg.saliency(mlp, X)
    np.testing.assert_array_equal(by_none.extras["targets"], predicted)
    np.testing.assert_allclose(by_none.values, xg.saliency(mlp, X, predicted).values)
    by_fn = xg.saliency(mlp, X, lambda logits: logits[:, 0])
    np.testing.assert_allclose(by_fn.values, xg.saliency(mlp, X, 0).values)
    one = xg.gradient_x_input(mlp, X[2], targets=1)
    assert one.values.shape == (4,)
    np.testing.assert_allclose(one.values, xg.gradient_x_input(mlp, X, 1).values[2], rtol=1e-6)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_middle"])
def test_integrated_gradients_completeness_gap_shrinks_with_steps(method):
    gaps = [
        float(
            jnp.abs(
                xg.integrated_gradients(mlp, X * 3, 0, num_steps=s, method=method).extras[
                    "completeness_gap"
                ]
            ).max()
        )
        for s in (2, 8, 64)
    ]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] < 2e-3


def test_integrated_gradients_closed_forms():
    # Linear: (x - x') * w exactly; sum x^2 from 0: x^2 (exact for Gauss-Legendre with 2 nodes).
    base = BACKGROUND[0]
    exp = xg.integrated_gradients(linear, X, targets=1, baseline=base, num_steps=3)
    np.testing.assert_allclose(exp.values, (X - base[None, :]) * W2[None, :4, 1], rtol=1e-5)
    np.testing.assert_allclose(exp.base_values, linear(base[None])[:, 1].repeat(5), rtol=1e-5)
    square = xg.integrated_gradients(lambda X: (X**2).sum(axis=1), X, num_steps=2)
    np.testing.assert_allclose(square.values, X**2, rtol=1e-5)
    np.testing.assert_allclose(square.extras["completeness_gap"], 0.0, atol=1e-5)


def test_integrated_gradients_batch_equals_loop():
    batch = xg.integrated_gradients(mlp, X, targets=[0, 1, 2, 0, 1], num_steps=16)
    for i, t in enumerate([0, 1, 2, 0, 1]):
        one = xg.integrated_gradients(mlp, X[i], targets=t, num_steps=16)
        np.testing.assert_allclose(batch.values[i], one.values, rtol=1e-5, atol=1e-7)


def test_smoothgrad_keys_and_expectation():
    quad = lambda X: (X**2 * jnp.arange(1.0, 5.0)[None, :]).sum(axis=1)  # noqa: E731
    a = xg.smoothgrad(quad, X, key=jax.random.key(0), num_samples=400, noise_level=0.1)
    b = xg.smoothgrad(quad, X, key=jax.random.key(0), num_samples=400, noise_level=0.1)
    c = xg.smoothgrad(quad, X, key=jax.random.key(1), num_samples=400, noise_level=0.1)
    np.testing.assert_array_equal(a.values, b.values)
    assert not np.allclose(a.values, c.values)
    # E[grad at x + noise] = 2 c x for a quadratic; the error is 2 c sigma / sqrt(S) per entry.
    expected = 2 * X * jnp.arange(1.0, 5.0)[None, :]
    tol = 5 * 2 * 4 * float(a.extras["sigma"].max()) / np.sqrt(400)
    np.testing.assert_allclose(a.values, expected, atol=tol)
    zero_noise = xg.smoothgrad(mlp, X, 2, key=jax.random.key(0), num_samples=3, noise_level=0.0)
    np.testing.assert_allclose(
        zero_noise.values, jax.grad(lambda x: mlp(x)[:, 2].sum())(X), rtol=1e-5, atol=1e-7
    )


def test_expected_gradients_equals_mean_of_integrated_gradients_over_background():
    # E_{x', a}[(x - x') grad f(x' + a (x - x'))] = mean over background rows of IG(x; x').
    ig = np.mean(
        [xg.integrated_gradients(mlp, X, 0, baseline=b, num_steps=16).values for b in BACKGROUND],
        axis=0,
    )
    eg = xg.expected_gradients(mlp, X, BACKGROUND, 0, key=jax.random.key(0), num_samples=4000)
    np.testing.assert_allclose(eg.values, ig, atol=0.05)
    np.testing.assert_allclose(eg.base_values, mlp(BACKGROUND)[:, 0].mean(), rtol=1e-5)
    assert float(jnp.abs(eg.extras["completeness_gap"]).max()) < 0.1
    again = xg.expected_gradients(mlp, X, BACKGROUND, 0, key=jax.random.key(0), num_samples=4000)
    np.testing.assert_array_equal(eg.values, again.values)


def test_expected_gradients_with_one_background_row_is_exact_for_linear_models():
    eg = xg.expected_gradients(linear, X, BACKGROUND[:1], 2, key=jax.random.key(1), num_samples=3)
    np.testing.assert_allclose(eg.values, (X - BACKGROUND[:1]) * W2[None, :4, 2], rtol=1e-5)


def test_nnx_module():
    model = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
    exp = xg.gradient_x_input(model, X, targets=1)
    np.testing.assert_allclose(exp.values, X * jnp.asarray(model.kernel)[None, :, 1], rtol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="targets"):
        xg.saliency(mlp, X, targets=3)
    with pytest.raises(ValueError, match="baseline"):
        xg.integrated_gradients(mlp, X, 0, baseline=jnp.zeros(3))
    with pytest.raises(ValueError, match="background"):
        xg.expected_gradients(mlp, X, jnp.zeros((3, 2)), key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_steps"):
        xg.integrated_gradients(mlp, X, num_steps=0)
    with pytest.raises(ValueError, match="NaN"):
        xg.saliency(lambda X: mlp(X) * jnp.nan, X, 0)
    with pytest.raises(ValueError, match="NaN"):
        xg.saliency(mlp, X.at[0, 0].set(jnp.inf))


_compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, *a, **kw: _compiles.append(name) if "backend_compile" in name else None
)


def test_compiles_once_for_same_shaped_calls():
    inputs = [jax.random.normal(jax.random.key(i), (5, 4)) for i in range(3)]
    keys = [jax.random.key(i) for i in range(3)]
    xg.integrated_gradients(mlp, inputs[0], [0, 1, 2, 0, 1], num_steps=8)
    xg.expected_gradients(mlp, inputs[0], BACKGROUND, key=keys[0], num_samples=8)
    _compiles.clear()
    for X_i, k in zip(inputs[1:], keys[1:], strict=True):
        xg.integrated_gradients(mlp, X_i, [2, 1, 0, 0, 1], num_steps=8)
        xg.expected_gradients(mlp, X_i, BACKGROUND, key=k, num_samples=8)
    assert _compiles == []
