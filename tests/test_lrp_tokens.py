"""Token-level LRP / AttnLRP on the zoo's text classifier (``lrp(..., layer="embed")``).

The AttnLRP rules themselves are checked against lxt in tests/test_lrp.py on a transformer block
fed embeddings; here the oracle is the same explainer on a hand-written embeddings -> logits
function (the layer plumbing). AttnLRP's softmax rule is not conservative, so the token
relevances do not add up to the logit even without biases (measured: 0.21 vs 0.27).
"""

import jax.numpy as jnp
import numpy as np
import pytest

import xaijax as xj
from xaijax.zoo import text_classifier


@pytest.fixture(scope="module")
def task():
    return text_classifier("sentiment", n=80, epochs=2, dim=8, depth=1)


def test_token_relevance_equals_lrp_on_the_embeddings(task):
    model, ids = task.model, task.ids[:3]
    exp = xj.lrp(model, ids, targets=1, composite="attn_lrp", epsilon=1e-9, layer="embed")
    assert exp.values.shape == ids.shape and exp.extras["attributions"].shape == ids.shape + (8,)
    np.testing.assert_allclose(exp.values, exp.extras["attributions"].sum(-1), atol=1e-7)
    np.testing.assert_allclose(exp.extras["scores"], np.asarray(model(ids))[:, 1], atol=1e-5)
    assert np.all(exp.values[ids == model.pad_id] == 0) and np.abs(exp.values).max() > 1e-3

    E = np.asarray(model.embed(jnp.asarray(ids)))

    def from_embeddings(E, tokens):  # the classifier's forward pass, written out by hand
        x = E + model.pos(jnp.arange(tokens.shape[1]))[None]
        mask = (tokens != model.pad_id)[:, None, None, :]
        for block in model.blocks:
            x = block(x, mask)
        return model.head(model.norm(x)[:, 0])

    for i in (0,):  # one sequence (one compilation): the mask is a constant of the function
        ref = xj.lrp(
            lambda e, i=i: from_embeddings(e, ids[i : i + 1].repeat(len(e), 0)),
            E[i],
            targets=1,
            composite="attn_lrp",
            epsilon=1e-9,
        ).values
        np.testing.assert_allclose(exp.extras["attributions"][i], ref, atol=1e-6)


def test_layer_option_errors(task):
    with pytest.raises(TypeError, match="layer="):
        xj.lrp(lambda X: X, np.ones((2, 3)), layer="embed")
    with pytest.raises(ValueError, match="layer"):
        xj.lrp(task.model, task.ids[:1], layer="nope")
    with pytest.raises(ValueError, match="X must be"):
        xj.lrp(task.model, np.zeros((0, 16), np.int32), layer="embed")
