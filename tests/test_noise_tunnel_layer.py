"""noise_tunnel on token ids: the noise is added at the layer (here the token embeddings).

Oracle: the same zoo TextTransformer split by hand at its embedding, as a float model ``g(Z)`` on
``Z = [embeddings | token id]`` (the id column only feeds the padding mask), explained by the
input-space explainers (``integrated_gradients``, ``gradient_x_input``) at ``Z`` with the
embeddings plus the very noise the tunnel reports (``extras["noise"]``), its attributions summed
over the embedding dimensions as the layer explainers do. No hook, no layer machinery: an
independent forward pass written out in the test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import xaijax as xj
from xaijax.zoo import build
from xaijax.zoo.transformers import TextTransformer

VOCAB, MAX_LEN, DIM, S, STDEVS = 30, 8, 16, 3, 0.5
NET = build(
    lambda rngs: TextTransformer(
        VOCAB, 3, max_len=MAX_LEN, dim=DIM, depth=1, heads=2, mlp_dim=32, pool="mean", rngs=rngs
    ),
    seed=4,
)
TOKENS = np.random.default_rng(0).integers(1, VOCAB, size=(3, MAX_LEN)).astype(np.int32)
TOKENS[1, 5:] = 0  # padding (the model's pad_id)
TOKENS[2, 3:] = 0
PAD = TOKENS == 0
TARGETS = np.array([0, 2, 1])
EMBED = np.asarray(NET.embed(jnp.asarray(TOKENS)))  # (n, L, d): the layer's output


def _split_at_embedding(net):
    """``g(Z)``: the network after its embedding, ``Z[..., :d]`` the embeddings and ``Z[..., d]``
    the token ids (read only for the padding mask, as ``TextTransformer.__call__``)."""
    graphdef, state = nnx.split(net)

    def g(Z):
        m = nnx.merge(graphdef, state)
        keep = Z[..., -1].astype(jnp.int32) != m.pad_id
        x = Z[..., :-1] + m.pos(jnp.arange(Z.shape[1]))[None]
        for block in m.blocks:
            x = block(x, keep[:, None, None, :])
        x = m.norm(x)
        w = keep.astype(x.dtype)[..., None]
        return m.head((x * w).sum(axis=1) / jnp.maximum(w.sum(axis=1), 1.0))

    return g


G = _split_at_embedding(NET)


def _z(embeddings, tokens):
    return np.concatenate([embeddings, tokens[..., None].astype(np.float32)], axis=-1)


def _close(a, b, atol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = float(np.abs(a - b).max())
    assert diff <= atol, f"max abs diff {diff} > {atol}"
    return diff


def _aggregate(samples, nt_type):
    mean, sq = samples.mean(0), (samples**2).mean(0)
    return {"smoothgrad": mean, "smoothgrad_sq": sq, "vargrad": sq - mean**2}[nt_type]


@pytest.fixture(scope="module")
def layer_ig():
    """One tunnel call (its per-copy samples aggregate every nt_type) and the oracle's copies."""
    exp = xj.noise_tunnel(
        xj.layer_integrated_gradients,
        NET,
        TOKENS,
        layer="embed",
        nt_samples=S,
        stdevs=STDEVS,
        key=jax.random.key(3),
        targets=TARGETS,
        num_steps=8,
    )
    noise = np.asarray(exp.extras["noise"])
    Z = _z(np.concatenate(EMBED[None] + noise), np.tile(TOKENS, (S, 1)))
    base = _z(np.zeros_like(EMBED), TOKENS)  # IG's path moves the embeddings only
    want = xj.integrated_gradients(
        G, Z, np.tile(TARGETS, S), baseline=np.tile(base, (S, 1, 1)), num_steps=8
    )
    attr = np.asarray(want.values)
    assert np.all(attr[..., -1] == 0.0)  # the id column is on the path's both ends
    return exp, attr[..., :-1].sum(-1).reshape((S,) + TOKENS.shape)


@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_layer_ig_with_noise_at_the_embeddings_equals_ig_on_the_split_model(layer_ig, nt_type):
    exp, oracle = layer_ig
    _close(exp.extras["samples"], oracle, 1e-5)
    ours = xj.noise_tunnel(
        xj.layer_integrated_gradients,
        NET,
        TOKENS,
        layer="embed",
        nt_type=nt_type,
        nt_samples=S,
        stdevs=STDEVS,
        key=jax.random.key(3),
        targets=TARGETS,
        num_steps=8,
    )
    _close(ours.values, _aggregate(oracle, nt_type), 1e-5)
    assert ours.values.shape == TOKENS.shape and ours.kind == "map"


def test_the_noise_is_n_0_stdevs_at_the_layer_and_none_at_padding(layer_ig):
    exp, oracle = layer_ig
    noise = np.asarray(exp.extras["noise"])
    assert noise.shape == (S,) + EMBED.shape
    assert np.all(noise[:, PAD] == 0.0)
    assert 0.4 < noise[:, ~PAD].std() < 0.6 and abs(noise[:, ~PAD].mean()) < 0.1
    assert not np.array_equal(noise[0], noise[1])  # copies differ
    samples = np.asarray(exp.extras["samples"])
    assert np.all(samples[:, PAD] == 0.0) and np.all(np.asarray(exp.values)[PAD] == 0.0)
    assert np.all(samples[:, ~PAD] != 0.0)


def test_layer_gradient_x_input_with_noise_equals_gradient_x_input_on_the_split_model():
    exp = xj.noise_tunnel(
        xj.layer_gradient_x_input,
        NET,
        TOKENS,
        layer="embed",
        nt_type="smoothgrad_sq",
        nt_samples=S,
        stdevs=STDEVS,
        key=jax.random.key(5),
    )
    noise = np.asarray(exp.extras["noise"])
    Z = _z(np.concatenate(EMBED[None] + noise), np.tile(TOKENS, (S, 1)))
    # targets=None: each noisy copy's own predicted class, as the float tunnel does
    want = np.asarray(xj.gradient_x_input(G, Z).values)[..., :-1].sum(-1)
    want = want.reshape((S,) + TOKENS.shape)
    want[:, PAD] = 0.0  # the layer explainers give padding exactly 0
    _close(exp.extras["samples"], want, 1e-5)
    _close(exp.values, _aggregate(want, "smoothgrad_sq"), 1e-5)


@pytest.mark.parametrize("explainer", ["layer_integrated_gradients", "layer_gradient_x_input"])
def test_zero_noise_equals_the_plain_layer_explainer_exactly(explainer):
    fn = getattr(xj, explainer)
    # the shapes and options of the calls above, so nothing recompiles
    if explainer == "layer_integrated_gradients":
        options, targets = {"num_steps": 8, "targets": TARGETS}, np.tile(TARGETS, S)
    else:
        options, targets = {}, None
    exp = xj.noise_tunnel(
        fn, NET, TOKENS, layer="embed", nt_samples=S, stdevs=0.0, key=jax.random.key(0), **options
    )
    assert np.all(np.asarray(exp.extras["noise"]) == 0.0)
    # the same rows as the tunnel's one call (XLA's rounding may change with the batch's size)
    options.pop("targets", None)
    plain = fn(NET, "embed", np.tile(TOKENS, (S, 1)), targets=targets, **options)
    want = np.asarray(plain.values).reshape((S,) + TOKENS.shape)
    np.testing.assert_array_equal(np.asarray(exp.extras["samples"]), want)
    _close(exp.values, want[0], 1e-6)


def test_one_instance_draws_from_its_own_key_only(layer_ig):
    exp, _ = layer_ig
    # instance 1 alone with its key and 3 * S copies: the rows, targets and shapes of the
    # fixture's call (no recompilation); its first S copies are the fixture's copies of it
    one = xj.noise_tunnel(
        xj.layer_integrated_gradients,
        NET,
        TOKENS[1:2],
        layer="embed",
        nt_samples=3 * S,
        stdevs=STDEVS,
        key=jax.random.split(jax.random.key(3), 3)[1:2],
        targets=TARGETS[1:2],
        num_steps=8,
    )
    np.testing.assert_array_equal(
        np.asarray(one.extras["noise"])[:S, 0], np.asarray(exp.extras["noise"])[:, 1]
    )
    _close(np.asarray(one.extras["samples"])[:S, 0], np.asarray(exp.extras["samples"])[:, 1], 1e-6)


def test_float_inputs_are_noised_at_the_input_as_before():
    W1 = np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32)
    W2 = np.random.default_rng(2).normal(size=(6, 3)).astype(np.float32)
    X = np.random.default_rng(3).normal(size=(2, 4)).astype(np.float32)

    def features(x):
        return jnp.tanh(x @ W1)

    def head(a):
        return a @ W2

    exp = xj.noise_tunnel(
        xj.layer_integrated_gradients,
        features,
        X,
        layer=head,
        nt_type="vargrad",
        nt_samples=S,
        stdevs=0.3,
        key=jax.random.key(2),
        targets=1,
        num_steps=4,
        reduce=None,
    )
    noise = np.asarray(exp.extras["noise"])
    assert noise.shape == (S,) + X.shape
    noisy = (X[None] + noise).reshape((S * 2, 4))
    each = xj.layer_integrated_gradients(features, head, noisy, targets=1, num_steps=4, reduce=None)
    samples = jnp.asarray(each.values).reshape((S, 2, 6))
    np.testing.assert_array_equal(np.asarray(exp.extras["samples"]), np.asarray(samples))
    mean, sq = samples.mean(axis=0), (samples * samples).mean(axis=0)
    np.testing.assert_array_equal(np.asarray(exp.values), np.asarray(sq - mean * mean))


def test_token_ids_need_a_layer_explainer_and_its_layer():
    with pytest.raises(ValueError, match=r"X .*layer_integrated_gradients"):
        xj.noise_tunnel(xj.saliency, NET, TOKENS, key=jax.random.key(0))
    with pytest.raises(ValueError, match="X"):
        xj.noise_tunnel(xj.integrated_gradients, NET, TOKENS, key=jax.random.key(0))
    with pytest.raises(TypeError, match="layer"):
        xj.noise_tunnel(xj.layer_gradient_x_input, NET, TOKENS, key=jax.random.key(0))
    with pytest.raises(ValueError, match="X"):
        xj.noise_tunnel(
            xj.layer_gradient_x_input, NET, TOKENS[0], layer="embed", key=jax.random.key(0)
        )
