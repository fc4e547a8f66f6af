"""LRP on control flow with a constant predicate, input standardisation and log-softmax heads.

* ``lax.cond``/``switch`` whose index does not depend on the input: the same relevance as the
  model without the ``cond`` (a constant flag bit for bit; a flag among the parameters, every
  branch re-interpreted in ``lax.switch``, to rounding); an input-dependent index is an error
  naming the equation and its source line.
* ``(x - mu) / sigma`` inside the model: the relevance of the standardised input, equal to zennit
  (0.5.1) on the PyTorch twin fed standardised inputs, also at ``x = mu`` where the norm rule
  used to divide by ~0 (6e3 with the flat first layer).
* ``jax.nn.log_softmax`` heads: the softmax rule at the logits, ``R = z (onehot - p)``, then the
  composite's rules: equal to zennit started at the logits with that relevance. A log-softmax
  written out (``z - logsumexp(z)``) is conservative; its ``- max`` shift used to fold into the
  last layer's bias and give 2e5.

zennit imports torchvision, whose wheels do not match the CPU torch here: ``test_lrp`` installs
the stand-in of ``tests/gradcam_standin.py`` (``gradcam_standin.install()``) before importing
zennit.
"""

import gradcam_standin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_lrp import MLP, TARGETS, X_MLP, _bias_free, mlp, torch_mlp, zennit_relevance

import xaijax as xj
from xaijax.core import relevance
from xaijax.core.propagation import UnsupportedPrimitiveError

gradcam_standin.install()
torch = pytest.importorskip("torch")
zc = pytest.importorskip("zennit.composites")
from zennit.rules import Epsilon  # noqa: E402
from zennit.types import Convolution  # noqa: E402

RNG = np.random.default_rng(7)
FLAG = jnp.array(True)


def _values(f, X, composite="epsilon_plus_flat", **kw):
    return np.asarray(xj.lrp(f, X, targets=TARGETS, composite=composite, **kw).values)


# --- cond / switch -------------------------------------------------------------------------------


def _cond_mid(X):  # the cond between a layer and its bias: the bias still folds into it
    h = jax.nn.relu(X @ MLP["W1"] + MLP["b1"][None])
    h = jax.lax.cond(FLAG, lambda v: v @ MLP["W2"], lambda v: 3.0 * (v @ MLP["W2"]), h)
    h = jax.nn.relu(h + MLP["b2"][None])
    return h @ MLP["W3"] + MLP["b3"][None]


CONSTANT_CONDS = {
    "python_flag": lambda X: jax.lax.cond(True, mlp, lambda v: 2.0 * mlp(v), X),
    "array_flag": lambda X: jax.lax.cond(FLAG, mlp, lambda v: -mlp(v), X),
    "switch": lambda X: jax.lax.switch(1, [lambda v: -mlp(v), mlp, lambda v: 0.0 * mlp(v)], X),
    "inside_a_layer": _cond_mid,
}


# Flat first layer, z+ on the layer inside the cond (its bias folds into it), epsilon last.
RULES = {1: relevance.z_plus()}


@pytest.fixture(scope="module")
def plain_mlp():
    return _values(mlp, X_MLP, layer_rules=RULES)


@pytest.mark.parametrize("name", sorted(CONSTANT_CONDS))
def test_constant_cond_equals_the_model_without_it(plain_mlp, name):
    got = _values(CONSTANT_CONDS[name], X_MLP, layer_rules=RULES)
    np.testing.assert_array_equal(got, plain_mlp)


def test_cond_on_a_parameter_flag_and_layer_numbering(plain_mlp):
    def apply(p, X):  # the flag is traced (a parameter): both branches re-interpreted
        return jax.lax.cond(p["flag"], mlp, lambda v: -mlp(v), X)

    got = _values((apply, {"flag": jnp.array(True)}), X_MLP, layer_rules=RULES)
    np.testing.assert_allclose(got, plain_mlp, rtol=0, atol=1e-7)
    got = _values((apply, {"flag": jnp.array(False)}), X_MLP, layer_rules=RULES)
    np.testing.assert_allclose(got, -plain_mlp, rtol=0, atol=1e-7)
    # Layers inside a branch are numbered as in the model without the cond.
    assert relevance.layer_kinds(_cond_mid, X_MLP[:1]) == ["dense"] * 3


def test_input_dependent_cond_is_named_with_its_line():
    def branching(X):
        return jax.lax.cond(X.sum() > 0, lambda v: v * 2, lambda v: -v, X) @ MLP["W1"]

    with pytest.raises(UnsupportedPrimitiveError, match=r"'cond'.*branch index") as err:
        xj.lrp(branching, X_MLP)
    assert "test_lrp_robust.py" in str(err.value) and "jnp.where" in str(err.value)


# --- standardisation and log-softmax against zennit ----------------------------------------------

MU = RNG.normal(size=5).astype(np.float32)
SIGMA = (RNG.uniform(size=5) + 0.5).astype(np.float32)
X_RAW = (MU + SIGMA * RNG.normal(size=(3, 5))).astype(np.float32)
X_RAW[0, 1] = np.nextafter(MU[1], np.float32(np.inf))  # one ulp above the mean
X_STD = (X_RAW - MU) / SIGMA


def _zennit_epsilon():
    base = zc.layer_map_base()
    return zc.LayerMapComposite(base + [(Convolution, Epsilon()), (torch.nn.Linear, Epsilon())])


ZENNIT = {
    "epsilon": _zennit_epsilon,
    "epsilon_plus_flat": lambda: zc.EpsilonPlusFlat(),
    "epsilon_alpha2_beta1": lambda: zc.EpsilonAlpha2Beta1(),
}


@pytest.fixture(scope="module")
def twin():
    return torch_mlp()


@pytest.mark.parametrize("name", sorted(ZENNIT))
def test_standardised_input_equals_zennit_on_the_standardised_input(twin, name):
    ours = _values(lambda X: mlp((X - MU[None]) / SIGMA[None]), X_RAW, name)
    ref = zennit_relevance(twin, X_STD, TARGETS, ZENNIT[name]())
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    assert np.abs(ref).max() > 1e-2


def test_log_softmax_head_equals_zennit_from_the_logits(twin):
    ours = _values(lambda X: jax.nn.log_softmax(mlp(X)), X_MLP, "epsilon")
    x = torch.tensor(X_MLP, requires_grad=True)
    onehot = torch.nn.functional.one_hot(torch.tensor(TARGETS), 3).float()
    with _attributor(twin) as a:
        _, ref = a(x, lambda z: z * (onehot - torch.softmax(z, 1)))
    ref = ref.detach().numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)
    assert np.abs(ref).max() > 1e-2


def _attributor(model):
    from zennit.attribution import Gradient

    return Gradient(model=model, composite=_zennit_epsilon())


def test_written_out_log_softmax_is_conservative_and_bounded():
    p = _bias_free(MLP)

    def f(X):
        z = mlp(X, p)
        return z - jax.nn.logsumexp(z, axis=1, keepdims=True)

    values = _values(f, X_MLP, "epsilon", epsilon=1e-9)
    scores = np.asarray(f(X_MLP))[np.arange(3), TARGETS]
    np.testing.assert_allclose(values.sum(axis=1), scores, rtol=1e-5, atol=1e-6)
    assert np.abs(values).max() < 10 * np.abs(scores).max()
