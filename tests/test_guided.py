"""Guided backpropagation by jaxpr re-interpretation, and Guided Grad-CAM vs captum's fixture."""

import jax
import jax.monitoring
import jax.numpy as jnp
import numpy as np
import pytest
from cam_models import CAPTUM_INPUT, CaptumOneConv, captum_conv1, captum_fc

import xaijax.cam as cam

# captum tests/attr/test_guided_grad_cam.py::test_simple_input_conv (layer relu1, nearest).
CAPTUM_GUIDED_GRAD_CAM = [
    [0.0, 0.0, 4.0, 4.0],
    [0.0, 0.0, 12.0, 8.0],
    [28.0, 84.0, 97.5, 65.0],
    [28.0, 56.0, 65.0, 32.5],
]


def test_captum_fixture_guided_grad_cam():
    exp = cam.guided_grad_cam(
        lambda X: jax.nn.relu(captum_conv1(X)), captum_fc, CAPTUM_INPUT, 0, resize="nearest"
    )
    np.testing.assert_allclose(exp.values[0, :, :, 0], CAPTUM_GUIDED_GRAD_CAM, atol=1e-4)


def test_captum_fixture_guided_grad_cam_through_nnx_layer_path():
    exp = cam.guided_grad_cam(CaptumOneConv(), "relu1", CAPTUM_INPUT[0], 0, resize="nearest")
    np.testing.assert_allclose(exp.values[:, :, 0], CAPTUM_GUIDED_GRAD_CAM, atol=1e-4)


# A two-layer MLP, where guided backprop has a closed form:
# d/dx [w2 . relu(W1 x)] guided = W1^T (relu(w2) * [W1 x > 0]).
_k = jax.random.split(jax.random.key(3), 3)
W1 = jax.random.normal(_k[0], (7, 5))
W2 = jax.random.normal(_k[1], (7, 3))
XS = jax.random.normal(_k[2], (4, 5))


def mlp(X):
    return jax.nn.relu(X @ W1.T) @ W2


def assert_close(actual, expected, rtol=1e-5):
    """Float32 agreement scaled to the whole result (a gradient entry summing terms of both signs
    over the hidden units carries their rounding)."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * np.abs(expected).max())


def guided_oracle(X, k):
    active = (X @ W1.T > 0).astype(X.dtype)
    return (active * jax.nn.relu(W2[:, k])[None, :]) @ W1


@pytest.mark.parametrize(
    "relu",
    [
        jax.nn.relu,
        lambda h: jnp.maximum(h, 0.0),
        lambda h: jnp.maximum(h, jnp.zeros_like(h)),
        jax.jit(jax.nn.relu),  # a ReLU inside a jit sub-jaxpr
    ],
)
def test_guided_backprop_closed_form(relu):
    def f(X):
        return relu(X @ W1.T) @ W2

    grads = jax.vmap(jax.grad(lambda x: cam.with_guided_relu(f)(x[None])[0, 1]))(XS)
    assert_close(grads, guided_oracle(XS, 1))


def test_forward_values_unchanged_and_other_max_untouched():
    f = lambda x: jnp.maximum(x, 1.0).sum() + jax.nn.relu(x).sum()  # noqa: E731
    x = jnp.array([-2.0, 0.5, 3.0])
    np.testing.assert_allclose(cam.with_guided_relu(f)(x), f(x))
    # max(x, 1) keeps its ordinary gradient; relu's is guided (cotangent 1 > 0, so unchanged).
    np.testing.assert_allclose(jax.grad(cam.with_guided_relu(f))(x), jax.grad(f)(x))
    g = lambda x: -jax.nn.relu(x).sum()  # noqa: E731
    np.testing.assert_allclose(jax.grad(cam.with_guided_relu(g))(x), [0.0, 0.0, 0.0])


def test_guided_backprop_on_images_batch_equals_loop():
    f = lambda X: mlp(X.reshape(X.shape[0], -1)[:, :5])  # noqa: E731
    images = jax.random.normal(jax.random.key(4), (3, 1, 5, 1))
    batch = cam.guided_backprop(f, images, targets=[0, 2, 1])
    for i, t in enumerate([0, 2, 1]):
        one = cam.guided_backprop(f, images[i], targets=t)
        assert_close(one.values, batch.values[i], rtol=1e-6)
        assert_close(one.values.reshape(-1), guided_oracle(images[i].reshape(1, 5), t)[0])


def test_guided_backprop_bad_input():
    with pytest.raises(ValueError, match="targets"):
        cam.guided_backprop(lambda X: X.mean(axis=(1, 2)), jnp.ones((2, 4, 4, 3)), targets=3)
    with pytest.raises(ValueError, match="images"):
        cam.guided_backprop(lambda X: X, jnp.ones((4,)))


def test_guided_backprop_nan_gradient_with_finite_outputs_is_an_error():
    def f(X):  # sqrt((0 x)^2) is 0 with gradient 0 / 0 = NaN
        return jnp.sqrt((X[:, 0, 0, :] * 0.0) ** 2) + X.mean(axis=(1, 2))

    images = jnp.ones((2, 4, 4, 3))
    assert np.isfinite(f(images)).all()
    with pytest.raises(ValueError, match="guided gradient of the target score"):
        cam.guided_backprop(f, images, 0)


def test_guided_backprop_callable_targets():
    f = lambda X: mlp(X.reshape(X.shape[0], -1)[:, :5])  # noqa: E731
    images = jax.random.normal(jax.random.key(4), (3, 1, 5, 1))
    diff = cam.guided_backprop(f, images, lambda out: out[:, 0] + out[:, 2])
    # Guided gradients are linear in a positive combination of outputs with the same ReLUs
    # active: relu(W2[:, 0] + W2[:, 2]) is not relu(W2[:, 0]) + relu(W2[:, 2]), so compare with
    # the closed form on the summed output weights.
    active = (images.reshape(3, 5) @ W1.T > 0).astype(images.dtype)
    expected = (active * jax.nn.relu(W2[:, 0] + W2[:, 2])[None, :]) @ W1
    assert_close(diff.values.reshape(3, 5), expected)
    assert diff.extras["targets"].tolist() == [-1, -1, -1]


_compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, *a, **kw: _compiles.append(name) if "backend_compile" in name else None
)


def test_guided_methods_compile_once_for_same_shaped_calls():
    f = lambda X: mlp(X.reshape(X.shape[0], -1)[:, :5])  # noqa: E731
    batches = [jax.random.normal(jax.random.key(i), (3, 1, 5, 1)) for i in range(3)]
    layer = lambda X: jax.nn.relu(captum_conv1(X))  # noqa: E731
    images = [CAPTUM_INPUT + i for i in range(3)]
    cam.guided_backprop(f, batches[0], [0, 1, 2])
    cam.guided_grad_cam(layer, captum_fc, images[0], 0)
    _compiles.clear()
    for X, image in zip(batches[1:], images[1:], strict=True):
        cam.guided_backprop(f, X, [2, 1, 0])
        cam.guided_grad_cam(layer, captum_fc, image, 0)
    assert _compiles == []
