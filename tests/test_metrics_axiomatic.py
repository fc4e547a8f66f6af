"""Axiomatic metrics: closed forms on linear models, Quantus 0.6's NonSensitivity on a PyTorch
twin, and Kindermans et al.'s input-invariance results for gradients and gradient x input.

Quantus imports torchvision through zennit, which is absent here: ``gradcam_standin.install()``
runs before Quantus is imported (tests/gradcam_standin.py).
"""

import gradcam_standin
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import xaijax as xj
from xaijax import metrics

gradcam_standin.install()
import quantus  # noqa: E402

RNG = np.random.default_rng(0)
N, S = 5, 4
W = RNG.normal(size=(S * S, 3)).astype(np.float32)
W[[1, 5, 6, 12]] = 0.0  # features the model ignores
X = RNG.normal(size=(N, S, S, 1)).astype(np.float32)


def linear(x):
    return x.reshape(x.shape[0], -1) @ jnp.asarray(W)


def twin():
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(S * S, 3, bias=False))
    with torch.no_grad():
        net[1].weight.copy_(torch.from_numpy(W.T))
    return net.eval()


Y = np.asarray(linear(X)).argmax(1)


def exact(X, base):
    """``w_k * (x - base)`` for the predicted class: complete for a linear model."""
    return (W[:, Y].T * (X.reshape(N, -1) - base)).reshape(N, S, S)


def test_completeness_is_the_gap_of_the_sum():
    black = X.reshape(N, -1).min(1, keepdims=True)
    np.testing.assert_allclose(metrics.completeness(linear, X, exact(X, black)), 0.0, atol=1e-5)
    noise = RNG.normal(size=(N, S, S))
    drop = (W[:, Y].T * (X.reshape(N, -1) - black)).sum(1)
    np.testing.assert_allclose(
        metrics.completeness(linear, X, noise),
        np.abs(noise.reshape(N, -1).sum(1) - drop),
        atol=1e-5,
    )
    # a number as the baseline
    np.testing.assert_allclose(
        metrics.completeness(linear, X, exact(X, 0.0), perturb_baseline=0.0), 0.0, atol=1e-5
    )


@pytest.mark.parametrize("which", ["exact", "noisy"])
def test_non_sensitivity_equals_quantus(which):
    a = exact(X, X.reshape(N, -1).min(1, keepdims=True))
    if which == "noisy":
        a = a + (RNG.random(a.shape) < 0.3) * RNG.normal(size=a.shape)
    want = quantus.NonSensitivity(eps=1e-4, normalise=False, disable_warnings=True)(
        model=twin(),
        x_batch=X.transpose(0, 3, 1, 2),
        y_batch=Y,
        a_batch=a[:, None],
        channel_first=True,
        device="cpu",
        softmax=False,
    )
    got = metrics.non_sensitivity(linear, X, a, eps=1e-4, normalise=False)
    np.testing.assert_array_equal(got, np.asarray(want))
    if which == "exact":  # zero exactly where the model ignores the pixel
        assert (got == 0).all()
    else:
        assert (got > 0).any()


def test_non_sensitivity_groups_take_their_group_effect():
    black = X.reshape(N, -1).min(1, keepdims=True)
    a = exact(X, black)
    got = metrics.non_sensitivity(linear, X, a, eps=1e-4, normalise=False, features_in_step=2)
    # brute force: replacing group (2j, 2j+1) moves the score by sum_f w_f (x_f - black)
    moved = (W[:, Y].T * (X.reshape(N, -1) - black)).reshape(N, -1, 2).sum(2)
    no_effect = np.repeat(np.abs(moved) < 1e-4, 2, axis=1)
    want = ((np.abs(a.reshape(N, -1)) < 1e-4) ^ no_effect).sum(1)
    np.testing.assert_array_equal(got, want)
    assert (want > 0).all()  # the ignored pixels 1, 5, 6, 12 share groups with used ones


def test_input_invariance_of_gradients_and_not_of_gradient_x_input():
    def tanh_net(x):
        return jnp.tanh(linear(x))

    assert metrics.input_invariance(tanh_net, X, xj.saliency).all()
    assert not metrics.input_invariance(tanh_net, X, xj.gradient_x_input).any()


def test_bad_input_names_the_argument():
    a = exact(X, 0.0)
    with pytest.raises(ValueError, match="attributions"):
        metrics.completeness(linear, X, a[:, :2])
    with pytest.raises(ValueError, match="features_in_step"):
        metrics.non_sensitivity(linear, X, a, features_in_step=S * S + 1)
    with pytest.raises(ValueError, match="eps"):
        metrics.non_sensitivity(linear, X, a, eps=-1.0)
    with pytest.raises(TypeError, match="explainer"):
        metrics.input_invariance(linear, X, a)
    with pytest.raises(ValueError, match="NaN"):
        metrics.completeness(lambda x: linear(x) * jnp.nan, X, a)
