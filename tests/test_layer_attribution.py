"""Layer attributions, IG options, the noise tunnel and generation targets against captum on
PyTorch twins with identical weights (tests/torch_twins.py), and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from captum.attr import (
    IntegratedGradients,
    LayerGradientXActivation,
    LayerIntegratedGradients,
)
from torch_twins import TorchTextTransformer

import xaijax as xj
import xaijax.gradients as xg
from xaijax.transformers import LastTokenLogProbs
from xaijax.zoo import build
from xaijax.zoo.transformers import DecoderLM, TextTransformer

VOCAB, MAX_LEN, REF = 30, 12, 29  # token REF's embedding row is zeroed: captum's layer baseline


def _text_net(pool="cls", depth=2, seed=0):
    net = build(
        lambda rngs: TextTransformer(
            VOCAB,
            3,
            max_len=MAX_LEN,
            dim=16,
            depth=depth,
            heads=2,
            mlp_dim=32,
            pool=pool,
            rngs=rngs,
        ),
        seed=seed,
    )
    table = np.array(net.embed.embedding[...])
    table[REF] = 0.0
    net.embed.embedding[...] = table
    return net


NET = _text_net()
TWIN = TorchTextTransformer(NET).eval()
_rng = np.random.default_rng(0)
TOKENS = _rng.integers(1, REF, size=(3, 10)).astype(np.int32)
TOKENS[1, 7:] = 0  # padding at the end
TOKENS[2, 5:] = 0


def _close(a, b, atol):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = float(np.abs(a - b).max())
    assert diff <= atol, f"max abs diff {diff} > {atol}"
    return diff


def test_the_twin_computes_our_logits():
    ours = np.asarray(NET(jnp.asarray(TOKENS)))
    with torch.no_grad():
        theirs = TWIN(torch.tensor(TOKENS, dtype=torch.long)).numpy()
    _close(ours, theirs, 1e-5)


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_right", "riemann_trapezoid"])
def test_layer_ig_equals_captum_layer_integrated_gradients(method):
    exp = xj.layer_integrated_gradients(
        NET, "embed", TOKENS, targets=1, num_steps=16, method=method, reduce=None
    )
    lig = LayerIntegratedGradients(TWIN, TWIN.embed)
    inputs = torch.tensor(TOKENS, dtype=torch.long)
    attr, delta = lig.attribute(
        inputs,
        baselines=torch.full_like(inputs, REF),
        target=1,
        n_steps=16,
        method=method,
        return_convergence_delta=True,
    )
    attr = attr.detach().numpy()
    attr[TOKENS == 0] = 0.0  # our padding rule (captum's pad gradients are 0 here anyway)
    if method == "riemann_trapezoid":
        # captum's trapezoid steps are 1/n (weights summing to (n - 1)/n); ours 1/(n - 1).
        attr = attr * 16 / 15
    _close(exp.values, attr, 1e-4)
    summed = xj.layer_integrated_gradients(
        NET, "embed", TOKENS, targets=1, num_steps=16, method=method
    )
    _close(summed.values, attr.sum(-1), 1e-4)
    # captum's delta is sum(attr) - (f(x) - f(x')), ours its negative; captum's f(x') runs on the
    # baseline ids (no padding mask), so the two agree on the unpadded row only.
    gap = -np.asarray(summed.extras["completeness_gap"])
    if method != "riemann_trapezoid":
        _close(gap[:1], delta.detach().numpy()[:1], 1e-4)


def test_layer_gradient_x_input_equals_captum_layer_gradient_x_activation():
    exp = xj.layer_gradient_x_input(NET, "embed", TOKENS, targets=2, reduce=None)
    theirs = LayerGradientXActivation(TWIN, TWIN.embed).attribute(
        torch.tensor(TOKENS, dtype=torch.long), target=2
    )
    theirs = theirs.detach().numpy()
    theirs[TOKENS == 0] = 0.0
    _close(exp.values, theirs, 1e-5)
    l2 = xj.layer_gradient_x_input(NET, "embed", TOKENS, targets=2, reduce="l2")
    _close(l2.values, np.linalg.norm(theirs, axis=-1), 1e-5)


def test_layer_ig_completeness_with_64_steps_against_the_twin():
    exp = xj.layer_integrated_gradients(NET, "embed", TOKENS, num_steps=64)
    t = np.asarray(exp.extras["targets"])
    with torch.no_grad():
        x = torch.tensor(TOKENS, dtype=torch.long)
        fx = TWIN(x).numpy()[np.arange(3), t]
        embed = TWIN.embed
        TWIN.embed = torch.nn.Embedding(VOCAB, 16)
        torch.nn.init.zeros_(TWIN.embed.weight)
        try:
            fb = TWIN(x).numpy()[np.arange(3), t]
        finally:
            TWIN.embed = embed
    gap = (fx - fb) - np.asarray(exp.values).sum(axis=1)
    assert np.abs(gap).max() < 1e-3
    _close(exp.base_values, fb, 1e-5)
    _close(exp.extras["completeness_gap"], gap, 1e-5)


def test_padding_tokens_get_exactly_zero_with_mean_pooling_and_a_deeper_layer():
    net = _text_net(pool="mean", depth=1, seed=3)
    for layer in ("embed", "blocks/0/norm1", "blocks/0"):
        exp = xj.layer_integrated_gradients(net, layer, TOKENS, num_steps=8)
        values = np.asarray(exp.values)
        assert np.all(values[TOKENS == 0] == 0.0)
        assert np.all(np.asarray(exp.extras["attributions"])[TOKENS == 0] == 0.0)
        assert np.all(values[TOKENS != 0] != 0.0)
    # an explicit pad_id overrides the model's; float X has no padding
    exp = xj.layer_gradient_x_input(net, "embed", TOKENS, pad_id=TOKENS[0, 0])
    assert np.all(np.asarray(exp.values)[TOKENS == TOKENS[0, 0]] == 0.0)


def test_one_sequence_is_an_unbatched_explanation_and_batch_size_bounds_rows():
    one = xj.layer_integrated_gradients(NET, "embed", TOKENS[1], num_steps=8)
    batch = xj.layer_integrated_gradients(NET, "embed", TOKENS, num_steps=8, batch_size=5)
    assert one.values.shape == (10,)
    _close(one.values, np.asarray(batch.values)[1], 1e-5)


def test_bad_layer_and_too_long_sequences_are_refused():
    with pytest.raises(ValueError, match="layer"):
        xj.layer_integrated_gradients(NET, "blocks/7/norm1", TOKENS)
    with pytest.raises(ValueError, match="layer"):
        xj.layer_gradient_x_input(NET, "nothing_here", TOKENS)
    long = np.ones((2, MAX_LEN + 3), np.int32)
    with pytest.raises(ValueError, match="max_len"):
        xj.layer_integrated_gradients(NET, "embed", long)
    with pytest.raises(ValueError, match="reduce"):
        xj.layer_integrated_gradients(NET, "embed", TOKENS, reduce="mean")
    with pytest.raises(ValueError, match="baseline"):
        xj.layer_integrated_gradients(NET, "embed", TOKENS, baseline=np.zeros((4, 4)))
    with pytest.raises(ValueError, match="pad_id"):
        xj.layer_gradient_x_input(NET, "embed", TOKENS.astype(np.float32), pad_id=0)


# -- IG options on an MLP: captum's IntegratedGradients -------------------------------------------
_k = np.random.default_rng(1)
W1 = _k.normal(size=(4, 8)).astype(np.float32) * 0.7
W2 = _k.normal(size=(8, 3)).astype(np.float32) * 0.7
X = _k.normal(size=(5, 4)).astype(np.float32)


def mlp(X):
    return jnp.tanh(X @ W1) @ W2


def torch_mlp(X):
    return torch.tanh(X @ torch.tensor(W1)) @ torch.tensor(W2)


@pytest.mark.parametrize("method", ["riemann_right", "riemann_left", "gausslegendre"])
@pytest.mark.parametrize("multiply", [True, False])
def test_ig_methods_and_multiply_by_inputs_equal_captum(method, multiply):
    ours = xj.integrated_gradients(
        mlp, X, 2, num_steps=10, method=method, multiply_by_inputs=multiply, baseline=0.5
    )
    ig = IntegratedGradients(torch_mlp, multiply_by_inputs=multiply)
    theirs = ig.attribute(
        torch.tensor(X), baselines=0.5, target=2, n_steps=10, method=method
    ).detach()
    _close(ours.values, theirs.numpy(), 1e-5)
    assert ours.kind == ("path" if multiply else "map")


def test_riemann_right_nodes():
    a, w = xg.path_weights(4, "riemann_right")
    assert a.tolist() == [0.25, 0.5, 0.75, 1.0] and np.allclose(w, 0.25)


# -- noise tunnel: a torch loop on the same noise draws -------------------------------------------
@pytest.mark.parametrize("nt_type", ["smoothgrad", "smoothgrad_sq", "vargrad"])
def test_noise_tunnel_equals_a_torch_loop_on_the_same_draws(nt_type):
    exp = xj.noise_tunnel(
        xj.saliency,
        mlp,
        X,
        nt_type=nt_type,
        nt_samples=6,
        stdevs=0.3,
        key=jax.random.key(0),
        targets=1,
    )
    noise = np.asarray(exp.extras["noise"])
    assert noise.shape == (6,) + X.shape
    grads = []
    for s in range(6):
        x = torch.tensor(X + noise[s], requires_grad=True)
        torch_mlp(x)[:, 1].sum().backward()
        grads.append(x.grad.abs().numpy())  # saliency is |grad|, as captum's Saliency
    g = np.stack(grads)
    want = {
        "smoothgrad": g.mean(0),
        "smoothgrad_sq": (g**2).mean(0),
        "vargrad": (g**2).mean(0) - g.mean(0) ** 2,
    }[nt_type]
    _close(exp.values, want, 1e-5)
    assert 0.2 < noise.std() < 0.4  # N(0, stdevs^2)


def test_noise_tunnel_around_a_layer_method_on_float_inputs():
    def features(x):
        return jnp.tanh(x @ W1)

    def head(a):
        return a @ W2

    exp = xj.noise_tunnel(
        xj.layer_gradient_x_input,
        features,
        X,
        layer=head,
        nt_samples=3,
        stdevs=0.0,
        key=jax.random.key(1),
        targets=0,
        reduce=None,
    )
    plain = xj.layer_gradient_x_input(features, head, X, targets=0, reduce=None)
    _close(exp.values, plain.values, 1e-6)
    with pytest.raises(ValueError, match="X"):
        xj.noise_tunnel(xj.saliency, NET, TOKENS, key=jax.random.key(0))


# -- generation targets on the decoder LM ----------------------------------------------------------
LM = build(lambda rngs: DecoderLM(20, max_len=10, dim=16, depth=1, heads=2, rngs=rngs), seed=2)
PROMPTS = np.array([[3, 5, 7, 2], [9, 4, 1, 6]], np.int32)


def test_next_token_and_contrastive_targets_read_log_probabilities():
    logits = np.asarray(LM(jnp.asarray(PROMPTS)))
    lp = jax.nn.log_softmax(logits[:, -1], axis=-1)
    _close(xj.next_token_target(4)(logits), lp[:, 4], 1e-6)
    _close(
        xj.next_token_target(4, position=1)(logits), jax.nn.log_softmax(logits[:, 1])[:, 4], 1e-6
    )
    _close(xj.contrastive_target(4, 7)(logits), logits[:, -1, 4] - logits[:, -1, 7], 1e-5)
    exp = xj.layer_integrated_gradients(
        LM, "embed", PROMPTS, targets=xj.contrastive_target(4, 7), num_steps=64
    )
    assert np.abs(np.asarray(exp.extras["completeness_gap"])).max() < 1e-3
    _close(exp.extras["scores"], logits[:, -1, 4] - logits[:, -1, 7], 1e-5)
    with pytest.raises(ValueError, match="targets"):
        xj.layer_integrated_gradients(LM, "embed", PROMPTS, targets=1)


def test_generation_attribution_equals_one_call_per_unpadded_prefix():
    generated, values, exp = xj.generation_attribution(
        LM, PROMPTS, num_new_tokens=3, method=xj.layer_integrated_gradients, num_steps=8
    )
    assert generated.shape == (2, 3) and values.shape == (2, 3, 4)
    full = np.concatenate([PROMPTS, generated], axis=1)
    for i, k in ((0, 0), (1, 2)):  # two of the six prefixes (each call compiles)
        prefix = full[i : i + 1, : 4 + k]
        logits = np.asarray(LM(jnp.asarray(prefix)))
        assert logits[0, -1].argmax() == generated[i, k]  # greedy
        one = xj.layer_integrated_gradients(
            LM, "embed", prefix, targets=xj.next_token_target(int(generated[i, k])), num_steps=8
        )
        row = np.asarray(exp.values)[i * 3 + k]
        _close(row[: 4 + k], np.asarray(one.values)[0], 1e-5)
        assert np.all(row[4 + k :] == 0.0)  # the right padding
    wrapped = LastTokenLogProbs(LM, 0)
    assert wrapped(jnp.asarray(full[:, :5])).shape == (2, 20)
