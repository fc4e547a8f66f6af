"""LRP meets the primitives that jax.nn activations, structural jnp ops and flax.nnx layers emit
(the interpreter-coverage sweep of tests/test_deep_lift.py, run through ``xj.lrp``): each model
is explained without a missing rule, with finite relevance."""

import jax
import numpy as np
import pytest
from flax import nnx
from test_deep_lift import ACTIVATIONS, Layers, _structural_models, random_module

import xaijax as xj
from xaijax.shapley import UnsupportedPrimitiveError

RNG = np.random.default_rng(0)
# The activations that trace to select_n with an input-dependent predicate (the list);
# the full sweep of jax.nn runs through the same interpreter in tests/test_deep_lift.py.
SELECT_N = ("elu", "leaky_relu", "softplus", "selu", "logsumexp")


def _finite_nonzero(exp):
    v = np.asarray(exp.values)
    return bool(np.all(np.isfinite(v)) and np.abs(v).max() > 0)


def test_structural_primitives_and_activations_work_in_lrp():
    models = _structural_models()  # cond_const included: a constant predicate is supported
    W = RNG.normal(size=(6, 6)).astype(np.float32)

    def f(X):  # every structural model and activation in one model: one compilation
        z = X @ W
        acts = [ACTIVATIONS[a](z).reshape(X.shape[0], -1).sum(1) for a in SELECT_N]
        return sum(models[k](X) for k in sorted(models)) + 0.01 * sum(acts)

    X = RNG.normal(size=(2, 6)).astype(np.float32)
    assert _finite_nonzero(xj.lrp(f, X, composite="epsilon"))


def test_flax_nnx_layers_work_in_lrp():
    model = random_module(lambda: Layers(nnx.Rngs(0)), seed=3, scale=0.5)
    model.eval()
    X = RNG.normal(size=(2, 8, 8, 2)).astype(np.float32)
    exp = xj.lrp(model, X, targets=1, composite="epsilon_plus_flat")
    assert exp.values.shape == X.shape and _finite_nonzero(exp)


def test_input_dependent_branches_are_named():
    def branching(X):
        return jax.lax.cond(X.sum() > 0, lambda v: v * 2, lambda v: -v, X).sum(axis=1)

    with pytest.raises(UnsupportedPrimitiveError, match="'cond'"):
        xj.lrp(branching, RNG.normal(size=(2, 3)).astype(np.float32))
