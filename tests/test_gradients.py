"""Gradient attributions against closed forms, finite differences and brute-force averages."""

import json
import os
import subprocess
import sys
import textwrap

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


def assert_close(actual, expected, rtol=1e-5):
    """Float32 agreement scaled to the whole result: entries that cancel to near zero carry the
    rounding of their larger terms, so no entry is held to a tolerance relative to itself."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * np.abs(expected).max())


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
    assert_close(one.values, xg.gradient_x_input(mlp, X, 1).values[2], rtol=1e-6)


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
    scale = np.abs(square.extras["scores"]).max()
    np.testing.assert_allclose(square.extras["completeness_gap"], 0.0, atol=1e-5 * scale)


def test_integrated_gradients_batch_equals_loop():
    batch = xg.integrated_gradients(mlp, X, targets=[0, 1, 2, 0, 1], num_steps=16)
    for i, t in enumerate([0, 1, 2, 0, 1]):
        one = xg.integrated_gradients(mlp, X[i], targets=t, num_steps=16)
        assert_close(one.values, batch.values[i])


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
    assert_close(zero_noise.values, jax.grad(lambda x: mlp(x)[:, 2].sum())(X))


def test_expected_gradients_equals_mean_of_integrated_gradients_over_background():
    # E_{x', a}[(x - x') grad f(x' + a (x - x'))] = mean over background rows of IG(x; x').
    ig = np.mean(
        [xg.integrated_gradients(mlp, X, 0, baseline=b, num_steps=16).values for b in BACKGROUND],
        axis=0,
    )
    eg = xg.expected_gradients(mlp, X, BACKGROUND, 0, key=jax.random.key(0), num_samples=4000)
    np.testing.assert_allclose(eg.values, ig, atol=0.05)
    bg_scores = np.asarray(mlp(BACKGROUND)[:, 0])
    np.testing.assert_allclose(
        eg.base_values, bg_scores.mean(), rtol=0, atol=1e-6 * np.abs(bg_scores).max()
    )
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


def test_nnx_module_changed_between_calls_is_seen():
    # The split of a module is remembered between calls (core.model.nnx_split): new weights,
    # a replaced submodule, a switch to train mode and NaN weights must all be seen anyway.
    class Net(nnx.Module):
        def __init__(self):
            self.fc = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
            self.drop = nnx.Dropout(0.9, rngs=nnx.Rngs(1))

        def __call__(self, x):
            return self.drop(self.fc(x))

    def expected(net):
        return X * np.asarray(net.fc.kernel[...])[None, :, 1]

    net = Net()
    for _ in range(2):
        np.testing.assert_allclose(xg.gradient_x_input(net, X, 1).values, expected(net), 1e-6)
    net.fc.kernel[...] = 2 * net.fc.kernel[...]  # new weights, same structure
    np.testing.assert_allclose(xg.gradient_x_input(net, X, 1).values, expected(net), 1e-6)
    net.fc = nnx.Linear(4, 3, rngs=nnx.Rngs(5))  # another submodule
    np.testing.assert_allclose(xg.gradient_x_input(net, X, 1).values, expected(net), 1e-6)
    net.train()  # dropout on in the user's module: explained in eval mode, mode kept
    np.testing.assert_allclose(xg.gradient_x_input(net, X, 1).values, expected(net), 1e-6)
    assert net.drop.deterministic is False
    net.fc.kernel[...] = net.fc.kernel[...].at[0, 0].set(jnp.nan)
    with pytest.raises(ValueError, match="NaN or inf"):
        xg.gradient_x_input(net, X, 1)


# -- the contract --------------------------------------------------------------------------------
METHODS = {
    "saliency": lambda f, X, *a, **kw: xg.saliency(f, X, *a, **kw),
    "gradient_x_input": lambda f, X, *a, **kw: xg.gradient_x_input(f, X, *a, **kw),
    "smoothgrad": lambda f, X, *a, **kw: xg.smoothgrad(
        f, X, *a, key=kw.pop("key", jax.random.key(3)), num_samples=6, **kw
    ),
    "integrated_gradients": lambda f, X, *a, **kw: xg.integrated_gradients(
        f, X, *a, num_steps=5, **kw
    ),
    "expected_gradients": lambda f, X, *a, **kw: xg.expected_gradients(
        f, X, BACKGROUND, *a, key=kw.pop("key", jax.random.key(3)), num_samples=7, **kw
    ),
}


@pytest.mark.parametrize("name", METHODS)
def test_batch_size_one_row_equals_default(name):
    # One model row per call (a 5 x 6 SmoothGrad runs as 30 chunks) against one chunk.
    whole = METHODS[name](mlp, X, 1)
    rows = METHODS[name](mlp, X, 1, batch_size=1)
    assert_close(rows.values, whole.values)
    np.testing.assert_array_equal(rows.extras["targets"], whole.extras["targets"])
    scale = np.abs(whole.extras["scores"]).max()
    np.testing.assert_allclose(rows.base_values, whole.base_values, rtol=0, atol=1e-6 * scale)


@pytest.mark.parametrize("name", METHODS)
def test_callable_targets_are_linear_where_the_method_is(name):
    # A score that is a difference of logits: every method but saliency (|grad|) is linear in
    # the score, with the same noise and draws for the same key.
    diff = METHODS[name](mlp, X, lambda out: out[:, 0] - out[:, 2])
    assert diff.extras["targets"].tolist() == [-1] * 5
    if name == "saliency":
        expected = np.abs(jax.grad(lambda x: (mlp(x)[:, 0] - mlp(x)[:, 2]).sum())(X))
    else:
        expected = METHODS[name](mlp, X, 0).values - METHODS[name](mlp, X, 2).values
    assert_close(diff.values, expected)


@pytest.mark.parametrize("name", METHODS)
def test_per_instance_targets_and_single_instances_equal_a_loop(name):
    targets = np.array([0, 2, 1, 1, 0])
    keys = jax.random.split(jax.random.key(9), 5)
    kw = {"key": keys} if name in ("smoothgrad", "expected_gradients") else {}
    batch = METHODS[name](mlp, X, targets, **kw)
    for i in (0, 3):
        kw_i = {"key": keys[i : i + 1]} if kw else {}
        one = METHODS[name](mlp, X[i], int(targets[i]), **kw_i)
        assert one.values.shape == (4,)
        assert_close(one.values, batch.values[i])


@pytest.mark.parametrize("name", ["smoothgrad", "expected_gradients"])
def test_keys_typed_raw_one_or_per_instance(name):
    typed = METHODS[name](mlp, X, 1, key=jax.random.key(4))
    raw = METHODS[name](mlp, X, 1, key=jax.random.PRNGKey(4))
    np.testing.assert_array_equal(typed.values, raw.values)
    # One key means per-instance keys split(key, n); raw (n, 2) keys are the same keys.
    split = jax.random.split(jax.random.key(4), 5)
    np.testing.assert_array_equal(METHODS[name](mlp, X, 1, key=split).values, typed.values)
    raw_split = jax.random.key_data(split)
    np.testing.assert_array_equal(METHODS[name](mlp, X, 1, key=raw_split).values, typed.values)
    # Instance i's samples come from key i alone: instances 2..4 with keys 2..4 are rows 2..4.
    part = METHODS[name](mlp, X[2:], 1, key=split[2:])
    assert_close(part.values, typed.values[2:])
    other = METHODS[name](mlp, X, 1, key=jax.random.key(5))
    assert not np.allclose(other.values, typed.values)


@pytest.mark.parametrize("name", ["integrated_gradients", "expected_gradients"])
def test_path_kind_invariant(name):
    exp = METHODS[name](mlp, X, [0, 1, 2, 0, 1])
    assert exp.kind == "path"
    scores = np.asarray(mlp(X))[np.arange(5), [0, 1, 2, 0, 1]]
    assert_close(exp.extras["scores"], scores, rtol=1e-6)
    total = exp.values.sum(axis=1) + exp.base_values
    assert_close(total, exp.extras["scores"] - exp.extras["completeness_gap"], rtol=1e-6)
    assert {METHODS[m](mlp, X[:2]).kind for m in ("saliency", "smoothgrad")} == {"map"}


@pytest.mark.parametrize(
    "baseline",
    [0.5, np.full(4, 0.5), np.full((1, 4), 0.5), np.asarray(BACKGROUND[:5])],
    ids=["scalar", "one row (M,)", "one row (1, M)", "per instance (n, M)"],
)
def test_integrated_gradients_baselines_broadcast_as_in_captum(baseline):
    # Linear model: IG = (x - x') * w exactly, whatever the quadrature.
    exp = xg.integrated_gradients(linear, X, 1, baseline=baseline, num_steps=2)
    rows = np.broadcast_to(baseline, X.shape)
    np.testing.assert_allclose(exp.values, (X - rows) * W2[None, :4, 1], rtol=1e-5, atol=1e-6)
    assert_close(exp.base_values, linear(jnp.asarray(rows))[:, 1])


@pytest.mark.parametrize("form", ["scalar", "one image", "(1, H, W, C)", "per image"])
def test_integrated_gradients_image_baselines(form):
    images = jax.random.uniform(jax.random.key(6), (3, 4, 4, 2))
    w = jax.random.normal(jax.random.key(7), (4, 4, 2))
    f = lambda x: (x * w[None]).sum(axis=(1, 2, 3))  # noqa: E731
    per_image = jax.random.uniform(jax.random.key(8), (3, 4, 4, 2))
    baseline = {
        "scalar": 0.25,
        "one image": per_image[0],
        "(1, H, W, C)": per_image[:1],
        "per image": per_image,
    }[form]
    exp = xg.integrated_gradients(f, images, baseline=baseline, num_steps=2)
    expected = (images - jnp.broadcast_to(baseline, images.shape)) * w[None]
    np.testing.assert_allclose(exp.values, expected, rtol=1e-5, atol=1e-6)


def _nan_off_the_path_ends(X):
    # Finite at x0 = 0 and x0 = 1, NaN strictly between 0.2 and 0.8: only the points between an
    # input and its reference are NaN.
    x0 = X[:, 0]
    return X.sum(axis=1) * jnp.where((x0 > 0.2) & (x0 < 0.8), jnp.nan, 1.0)


ENDS = jnp.array([[1.0, 0.5, -0.5, 2.0], [1.0, 1.0, 1.0, 1.0]])


def test_nan_on_path_points_only_is_reported_by_integrated_gradients():
    assert np.isfinite(_nan_off_the_path_ends(ENDS)).all()
    with pytest.raises(ValueError, match=r"f returned NaN or inf \(instances \[0, 1\]\)"):
        xg.integrated_gradients(_nan_off_the_path_ends, ENDS, num_steps=8)


def test_nan_on_path_points_only_is_reported_by_expected_gradients():
    background = jnp.zeros((3, 4))
    with pytest.raises(ValueError, match="f returned NaN or inf"):
        xg.expected_gradients(
            _nan_off_the_path_ends, ENDS, background, key=jax.random.key(0), num_samples=16
        )


def test_nan_on_noise_samples_only_is_reported_by_smoothgrad():
    f = lambda X: X.sum(axis=1) * jnp.where(X[:, 0] > 1.5, jnp.nan, 1.0)  # noqa: E731
    X_ = jnp.array([[1.0, 0.0, 0.0, 3.0]])  # sigma = 0.5 * 3: many samples reach x0 > 1.5
    assert np.isfinite(f(X_)).all()
    with pytest.raises(ValueError, match="f returned NaN or inf"):
        xg.smoothgrad(f, X_, key=jax.random.key(0), num_samples=16, noise_level=0.5)


def _finite_output_nan_gradient(X):
    return jnp.sqrt(X[:, 0] ** 2) + X[:, 1]  # d/dx sqrt(x^2) = x / |x|: 0 / 0 at x = 0


@pytest.mark.parametrize("name", METHODS)
def test_nan_gradient_with_finite_outputs_is_an_error(name):
    # Every evaluated point has x0 = 0: the inputs, SmoothGrad's noise-free samples, IG's path
    # from (0, -1) and EG's paths from a background row at x0 = 0.
    X_ = jnp.array([[0.0, 1.0], [0.0, 2.0]])
    kw = {
        "smoothgrad": {"key": jax.random.key(0), "noise_level": 0.0},
        "integrated_gradients": {"baseline": jnp.array([0.0, -1.0])},
    }.get(name, {})
    if name == "expected_gradients":
        call = lambda: xg.expected_gradients(  # noqa: E731
            _finite_output_nan_gradient, X_, jnp.zeros((1, 2)), key=jax.random.key(0)
        )
    else:
        call = lambda: getattr(xg, name)(_finite_output_nan_gradient, X_, **kw)  # noqa: E731
    assert np.isfinite(_finite_output_nan_gradient(X_)).all()
    with pytest.raises(ValueError, match=r"the gradient of f \(its outputs are finite\)"):
        call()


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: xg.saliency(mlp, X, targets=3), ValueError, "targets"),
        (lambda: xg.saliency(mlp, X, targets=1.5), TypeError, "targets"),
        (lambda: xg.saliency(mlp, X, lambda out: out), ValueError, "targets"),
        (lambda: xg.saliency(mlp, X, batch_size=0), ValueError, "batch_size"),
        (lambda: xg.saliency(mlp, X, batch_size=-3), ValueError, "batch_size"),
        (lambda: xg.saliency(mlp, X, batch_size=2.5), TypeError, "batch_size"),
        (lambda: xg.gradient_x_input(mlp, X, batch_size=True), TypeError, "batch_size"),
        (lambda: xg.saliency(mlp, X, mesh="cpu"), TypeError, "mesh"),
        (lambda: xg.saliency(mlp, X.at[0, 0].set(jnp.inf)), ValueError, "X contains NaN"),
        (lambda: xg.saliency(mlp, np.array([["a"] * 4])), TypeError, "X must be a numeric"),
        (lambda: xg.saliency(mlp, np.zeros((2, 3, 4))), ValueError, r"X of shape \(2, 3, 4\)"),
        (lambda: xg.saliency(lambda X: np.tanh(X), X), TypeError, "host"),
        (lambda: xg.smoothgrad(mlp, X, key=0), TypeError, "key must be"),
        (
            lambda: xg.smoothgrad(mlp, X, key=jax.random.split(jax.random.key(0), 4)),
            ValueError,
            r"\(5,\) keys",
        ),  # fmt: skip
        (
            lambda: xg.smoothgrad(mlp, X, key=jax.random.key(0), noise_level=np.nan),
            ValueError,
            "noise_level",
        ),  # fmt: skip
        (
            lambda: xg.smoothgrad(mlp, X, key=jax.random.key(0), noise_level=-0.1),
            ValueError,
            "noise_level",
        ),  # fmt: skip
        (
            lambda: xg.smoothgrad(mlp, X, key=jax.random.key(0), num_samples=2.5),
            TypeError,
            "num_samples",
        ),  # fmt: skip
        (
            lambda: xg.smoothgrad(mlp, X, key=jax.random.key(0), num_samples=0),
            ValueError,
            "num_samples",
        ),  # fmt: skip
        (lambda: xg.integrated_gradients(mlp, X, num_steps=0), ValueError, "num_steps"),
        (lambda: xg.integrated_gradients(mlp, X, num_steps=2.5), TypeError, "num_steps"),
        (
            lambda: xg.integrated_gradients(mlp, X, num_steps=1, method="riemann_trapezoid"),
            ValueError,
            "num_steps",
        ),  # fmt: skip
        (lambda: xg.integrated_gradients(mlp, X, method="simpson"), ValueError, "method"),
        (
            lambda: xg.integrated_gradients(mlp, X, 0, baseline=jnp.zeros(3)),
            ValueError,
            "baseline must be",
        ),  # fmt: skip
        (
            lambda: xg.integrated_gradients(mlp, X, baseline=np.full(4, np.nan)),
            ValueError,
            "baseline contains NaN",
        ),  # fmt: skip
        (
            lambda: xg.integrated_gradients(mlp, X, baseline=np.zeros((2, 4))),
            ValueError,
            "baseline must be",
        ),  # fmt: skip
        (
            lambda: xg.expected_gradients(mlp, X, jnp.zeros((3, 2)), key=jax.random.key(0)),
            ValueError,
            "background must have shape",
        ),  # fmt: skip
        (
            lambda: xg.expected_gradients(mlp, X, np.full((3, 4), np.inf), key=jax.random.key(0)),
            ValueError,
            "background contains NaN",
        ),  # fmt: skip
        (
            lambda: xg.expected_gradients(mlp, X, BACKGROUND, key=jax.random.key(0), num_samples=0),
            ValueError,
            "num_samples",
        ),  # fmt: skip
        (lambda: xg.saliency(lambda X: mlp(X) * jnp.nan, X, 0), ValueError, "f returned NaN"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_batched_is_a_deprecated_alias():
    with pytest.warns(DeprecationWarning, match="batched") as caught:
        one = xg.saliency(mlp, X[0], 1, batched=False)
    assert caught[0].filename == __file__  # the warning points at the caller
    assert one.values.shape == (4,)
    np.testing.assert_array_equal(one.values, xg.saliency(mlp, X[0], 1).values)
    with pytest.warns(DeprecationWarning, match="batched"):
        assert xg.saliency(mlp, X, 1, batched=True).values.shape == (5, 4)


def test_three_dimensional_input_for_a_tabular_model_names_X():
    with pytest.raises(ValueError, match=r"^X of shape \(2, 5, 4\) is neither a batch nor one"):
        xg.integrated_gradients(mlp, jnp.ones((2, 5, 4)))


_compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, *a, **kw: _compiles.append(name) if "backend_compile" in name else None
)


def test_compiles_once_for_same_shaped_calls():
    inputs = [jax.random.normal(jax.random.key(i), (5, 4)) for i in range(3)]
    keys = [jax.random.key(i) for i in range(3)]

    def calls(X_i, k, targets):
        xg.saliency(mlp, X_i, targets)
        xg.gradient_x_input(mlp, X_i, targets)
        xg.smoothgrad(mlp, X_i, targets, key=jax.random.split(k, 5), num_samples=4)
        xg.integrated_gradients(mlp, X_i, targets, num_steps=8)
        xg.expected_gradients(mlp, X_i, BACKGROUND, key=k, num_samples=8)

    calls(inputs[0], keys[0], [0, 1, 2, 0, 1])
    _compiles.clear()
    for X_i, k in zip(inputs[1:], keys[1:], strict=True):
        calls(X_i, k, [2, 1, 0, 0, 1])
    assert _compiles == []


# -- sharding over 4 host devices (a fresh interpreter: devices are fixed at JAX start-up) --------
FOUR_DEVICES = textwrap.dedent(
    """
    import json, os
    flags = os.environ.get("XLA_FLAGS", "")  # the suite's (tests/conftest.py)
    os.environ["XLA_FLAGS"] = flags + " --xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh
    import xaijax.gradients as xg
    from xaijax.core.batching import instance_mesh

    jax.config.update("jax_numpy_rank_promotion", "raise")
    assert jax.device_count() == 4
    rng = np.random.default_rng(0)
    W1, W2 = rng.normal(size=(4, 8)).astype(np.float32), rng.normal(size=(8, 3)).astype(np.float32)
    mlp = lambda X: jnp.tanh(X @ W1) @ W2
    X, bg = rng.normal(size=(7, 4)), rng.normal(size=(5, 4))
    key = jax.random.key(0)
    calls = {
        "saliency": lambda **kw: xg.saliency(mlp, X, **kw),
        "gradient_x_input": lambda **kw: xg.gradient_x_input(mlp, X, 1, **kw),
        "smoothgrad": lambda **kw: xg.smoothgrad(mlp, X, key=key, num_samples=5, **kw),
        "integrated_gradients": lambda **kw: xg.integrated_gradients(mlp, X, num_steps=6, **kw),
        "expected_gradients": lambda **kw: xg.expected_gradients(
            mlp, X, bg, [0, 1, 2, 0, 1, 2, 0], key=key, num_samples=6, **kw
        ),
    }
    # the 1-d mesh without batch_size: tests/contract, for every explainer
    meshes = {"1d": instance_mesh(), "2x2": Mesh(np.array(jax.devices()).reshape(2, 2), ("a", "b"))}
    out = {}
    for name, call in calls.items():
        one = call()
        for mesh_name, mesh in meshes.items():
            for batch_size in (3,):
                sharded = call(mesh=mesh, batch_size=batch_size)
                scale = float(np.abs(one.values).max())
                out[f"{name}/{mesh_name}/{batch_size}"] = {
                    "shape": list(np.shape(sharded.values)),
                    "max_diff": float(np.abs(sharded.values - one.values).max()) / scale,
                    "base_diff": float(np.abs(sharded.base_values - one.base_values).max()),
                    "targets": sharded.extras["targets"].tolist() == one.extras["targets"].tolist(),
                }
    print("RESULT", json.dumps(out))
    """
)


def run_on_four_devices(script):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["JAX_PLATFORMS"] = "cpu"  # the forced host devices, even where a GPU is present
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=root, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_mesh_on_four_devices_equals_one_device():
    results = run_on_four_devices(FOUR_DEVICES)
    assert len(results) == 5 * 2
    for case, r in results.items():
        assert r["shape"] == [7, 4], case  # 7 instances on 4 devices: the padding is dropped
        assert r["max_diff"] <= 1e-6, (case, r)
        assert r["base_diff"] <= 1e-6, (case, r)
        assert r["targets"], case
