"""Attention rollout and gradient rollout against NumPy loops of the papers' formulas.

Oracles: the attention matrices (and their gradients) come from independent captures: the
PyTorch twin of the ViT (tests/torch_twins.py, identical weights, its softmax outputs and their
autograd gradients), and for the text classifier an eager copy of the model whose attention
modules record their outputs (and add a perturbation that ``jax.grad`` differentiates).
The rollout itself is then a NumPy loop: Abnar & Zuidema 2020 with jacobgil's vit-explain
discarding, and Chefer et al. 2021's ``R = R + E_h[(grad A * A)^+] R``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cam_models import random_module
from flax import nnx

import xaijax as xj
from xaijax.zoo.transformers import TextTransformer, ViT

torch = pytest.importorskip("torch")

IMAGES = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype(np.float32)
TOKENS = np.array([[1, 5, 6, 7, 9, 0, 0], [1, 3, 4, 0, 0, 0, 0], [1, 8, 2, 2, 6, 11, 4]])


@pytest.fixture(scope="module")
def vit():
    return random_module(
        lambda: ViT(16, 4, 3, 3, dim=16, depth=2, heads=2, mlp_dim=32, rngs=nnx.Rngs(0)),
        seed=1,
        scale=0.5,
    )


@pytest.fixture(scope="module")
def text():
    return random_module(
        lambda: TextTransformer(
            20, 2, max_len=8, dim=16, depth=2, heads=2, mlp_dim=32, rngs=nnx.Rngs(0)
        ),
        scale=0.5,
    )


def _twin_attention(vit, target=None):
    from torch_twins import TorchViT

    twin = TorchViT(vit).eval()
    x = torch.tensor(IMAGES.transpose(0, 3, 1, 2).copy())
    out = twin(x)
    np.testing.assert_allclose(
        out.detach().numpy(), np.asarray(vit(jnp.asarray(IMAGES))), atol=1e-5
    )
    atts = [b.attn.attention for b in twin.blocks]
    grads = None
    if target is not None:
        out[:, target].sum().backward()
        grads = [a.grad.numpy() for a in atts]
    return [a.detach().numpy().astype(np.float64) for a in atts], grads


class _Recorder(nnx.Module):
    def __init__(self, store, delta=None):
        self.store, self.delta = store, delta

    def __call__(self, scores, mask=None):
        if mask is not None:
            scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
        a = jax.nn.softmax(scores, axis=-1)
        self.store.append(a)
        return a if self.delta is None else a + self.delta


def _text_attention(model, tokens, target=None):
    """Eager capture on a copy of the model; gradients by jax.grad through added deltas."""
    store = []
    copy = nnx.clone(model)
    for block in copy.blocks:
        block.attn.weights = _Recorder(store)
    logits = copy(jnp.asarray(tokens))
    atts = [np.asarray(a, np.float64) for a in store]
    if target is None:
        return atts, None, logits

    def score(deltas):
        m = nnx.clone(model)
        for block, d in zip(m.blocks, deltas, strict=True):
            block.attn.weights = _Recorder([], d)
        return m(jnp.asarray(tokens))[:, target].sum()

    grads = jax.grad(score)([jnp.zeros(a.shape, jnp.float32) for a in atts])
    return atts, [np.asarray(g, np.float64) for g in grads], logits


def numpy_rollout(atts, head_fusion="mean", discard_ratio=0.0, residual=True):
    n, _, L, _ = atts[0].shape
    out = []
    for i in range(n):
        R = np.eye(L)
        for A in atts:
            a = getattr(A[i], head_fusion)(axis=0)
            flat = a.reshape(-1).copy()
            k = int(L * L * discard_ratio)
            idx = np.argsort(flat, kind="stable")[:k]
            idx = idx[idx != 0]  # vit-explain keeps the class token's own entry
            flat[idx] = 0
            a = flat.reshape(L, L)
            if residual:
                a = (a + np.eye(L)) / 2
            a = a / a.sum(axis=-1, keepdims=True)
            R = a @ R
        out.append(R)
    return np.stack(out)


def numpy_gradient_rollout(atts, grads):
    n, _, L, _ = atts[0].shape
    out = []
    for i in range(n):
        R = np.eye(L)
        for A, G in zip(atts, grads, strict=True):
            a_bar = np.maximum(G[i] * A[i], 0).mean(axis=0)
            R = R + a_bar @ R
        out.append(R)
    return np.stack(out)


@pytest.mark.parametrize(
    "head_fusion, discard_ratio, residual",
    [
        ("mean", 0.0, True),
        ("max", 0.0, True),
        ("min", 0.5, True),
        ("mean", 0.9, True),
        ("mean", 0.3, False),
    ],
)
def test_vit_rollout_equals_numpy_loop_on_the_twins_attention(
    vit, head_fusion, discard_ratio, residual
):
    atts, _ = _twin_attention(vit)
    want = numpy_rollout(atts, head_fusion, discard_ratio, residual)
    exp = xj.attention_rollout(
        vit, IMAGES, head_fusion=head_fusion, discard_ratio=discard_ratio, residual=residual
    )
    np.testing.assert_allclose(np.asarray(exp.extras["matrix"]), want, rtol=0, atol=2e-5)
    np.testing.assert_allclose(np.asarray(exp.values), want[:, 0], rtol=0, atol=2e-5)
    np.testing.assert_array_equal(
        np.asarray(exp.extras["grid"]), np.asarray(exp.values)[:, 1:].reshape(2, 4, 4)
    )


def test_rollout_of_chosen_layers(vit):
    atts, _ = _twin_attention(vit)
    one = xj.attention_rollout(vit, IMAGES, layers=["blocks/-1/attn/weights"])
    np.testing.assert_allclose(np.asarray(one.values), numpy_rollout(atts[1:])[:, 0], atol=2e-5)
    both = xj.attention_rollout(
        vit, IMAGES, layers=["blocks/0/attn/weights", ("blocks", 1, "attn", "weights")]
    )
    default = xj.attention_rollout(vit, IMAGES)
    np.testing.assert_array_equal(np.asarray(both.values), np.asarray(default.values))


@pytest.mark.parametrize("target", [0, 2])
def test_vit_gradient_rollout_equals_numpy_loop_on_twin_gradients(vit, target):
    atts, grads = _twin_attention(vit, target)
    want = numpy_gradient_rollout(atts, grads)
    exp = xj.attention_rollout(vit, IMAGES, method="gradient", targets=target)
    assert np.abs(want - np.eye(want.shape[-1])).max() > 1e-3  # the gradients matter
    np.testing.assert_allclose(np.asarray(exp.extras["matrix"]), want, rtol=1e-4, atol=1e-6)


def test_text_rollout_with_padding(text):
    atts, _, logits = _text_attention(text, TOKENS)
    for fusion, ratio in (("mean", 0.0), ("max", 0.4)):
        exp = xj.attention_rollout(text, TOKENS, head_fusion=fusion, discard_ratio=ratio)
        want = numpy_rollout(atts, fusion, ratio)
        np.testing.assert_allclose(np.asarray(exp.values), want[:, 0], rtol=0, atol=2e-5)
        values = np.asarray(exp.values)
        assert np.all(values[TOKENS == 0] == 0)  # padding is never attended to: exactly 0
    assert "grid" not in exp.extras
    np.testing.assert_allclose(np.asarray(exp.extras["logits"]), np.asarray(logits), atol=1e-6)


def test_text_gradient_rollout_with_jax_grad_oracle(text):
    atts, grads, _ = _text_attention(text, TOKENS, target=1)
    want = numpy_gradient_rollout(atts, grads)
    exp = xj.attention_rollout(text, TOKENS, method="gradient", targets=1)
    np.testing.assert_allclose(np.asarray(exp.extras["matrix"]), want, rtol=1e-4, atol=1e-6)
    assert np.all(np.asarray(exp.values)[TOKENS == 0] == 0)


def test_one_instance_and_batch_size(text):
    batch = xj.attention_rollout(text, TOKENS, method="gradient", targets=1)
    one = xj.attention_rollout(text, TOKENS[1], method="gradient", targets=1)
    np.testing.assert_allclose(np.asarray(one.values), np.asarray(batch.values)[1], atol=1e-6)
    small = xj.attention_rollout(text, TOKENS, method="gradient", targets=1, batch_size=1)
    np.testing.assert_allclose(np.asarray(small.values), np.asarray(batch.values), atol=1e-6)


def test_bad_inputs_are_refused(vit, text):
    with pytest.raises(ValueError, match="layers.*not an attention-weights layer"):
        xj.attention_rollout(vit, IMAGES, layers=["blocks/0/norm1"])
    with pytest.raises(ValueError, match="layers"):
        xj.attention_rollout(vit, IMAGES, layers=["blocks/5/attn/weights"])
    with pytest.raises(ValueError, match="layers"):
        xj.attention_rollout(vit, IMAGES, layers=[])
    with pytest.raises(ValueError, match="head_fusion"):
        xj.attention_rollout(vit, IMAGES, head_fusion="median")
    with pytest.raises(ValueError, match="discard_ratio"):
        xj.attention_rollout(vit, IMAGES, discard_ratio=1.0)
    with pytest.raises(ValueError, match="method"):
        xj.attention_rollout(vit, IMAGES, method="flow")
    with pytest.raises(ValueError, match="gradient"):
        xj.attention_rollout(vit, IMAGES, method="gradient", head_fusion="max")
    with pytest.raises(TypeError, match="model"):
        xj.attention_rollout(lambda x: x, IMAGES)
    with pytest.raises(ValueError, match="X"):
        xj.attention_rollout(vit, IMAGES[:, :8])  # the wrong image size
    with pytest.raises(ValueError, match="X"):
        xj.attention_rollout(text, np.ones((2, 12), int))  # longer than max_len
    nan = IMAGES.copy()
    nan[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="X"):
        xj.attention_rollout(vit, nan)
    with pytest.raises(ValueError, match="targets"):
        xj.attention_rollout(vit, IMAGES, targets=7)
