"""LRP (xj.lrp) against zennit on PyTorch twins with identical weights, conservation, AttnLRP.

zennit imports torchvision, whose wheels do not match the CPU torch here: the test installs the
stand-in of ``tests/gradcam_standin.py`` (empty torchvision modules) before importing zennit.
"""

import gradcam_standin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax as xj
from xaijax.core import relevance
from xaijax.core.propagation import UnsupportedPrimitiveError

gradcam_standin.install()
torch = pytest.importorskip("torch")
zennit_composites = pytest.importorskip("zennit.composites")
from zennit.attribution import Gradient  # noqa: E402
from zennit.canonizers import SequentialMergeBatchNorm  # noqa: E402

RNG = np.random.default_rng(0)


def _w(*shape, scale=0.5):
    return (RNG.normal(size=shape) * scale).astype(np.float32)


# --- twins ---------------------------------------------------------------------------------------

MLP = {"W1": _w(5, 8), "b1": _w(8, scale=0.1), "W2": _w(8, 8), "b2": _w(8, scale=0.1)}
MLP.update({"W3": _w(8, 3), "b3": _w(3, scale=0.1)})


def mlp(X, p=MLP, bias=True):
    def b(k):
        return p[k][None] if bias else 0.0

    h = jax.nn.relu(X @ p["W1"] + b("b1"))
    h = jax.nn.relu(h @ p["W2"] + b("b2"))
    return h @ p["W3"] + b("b3")


def torch_mlp(p=MLP):
    layers = []
    for i, (a, b) in enumerate([(5, 8), (8, 8), (8, 3)], start=1):
        lin = torch.nn.Linear(a, b)
        lin.weight.data = torch.tensor(p[f"W{i}"].T.copy())
        lin.bias.data = torch.tensor(p[f"b{i}"])
        layers += [lin, torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).eval()


CNN = {
    "K1": _w(3, 3, 3, 4),
    "c1": _w(4, scale=0.1),
    "bn_mean": _w(4, scale=0.2),
    "bn_var": (np.abs(_w(4)) + 0.5).astype(np.float32),
    "bn_g": np.array([1.2, -0.7, 0.9, -1.1], np.float32),  # mixed signs: (aW)^+ per row
    "bn_b": _w(4, scale=0.1),
    "K2": _w(3, 3, 4, 5),
    "c2": _w(5, scale=0.1),
    "W3": _w(20, 6),
    "b3": _w(6, scale=0.1),
    "W4": _w(6, 3),
    "b4": _w(3, scale=0.1),
}
BN_EPS = 1e-5


def _conv(x, k, b):
    dn = ("NHWC", "HWIO", "NHWC")
    y = jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn)
    return y + b.reshape(1, 1, 1, -1)


def _pool(x, op, init):
    return jax.lax.reduce_window(x, init, op, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def cnn(X, p=CNN):
    h = _conv(X, p["K1"], p["c1"])
    c = {k: p[k].reshape(1, 1, 1, -1) for k in ("bn_mean", "bn_var", "bn_g", "bn_b")}
    h = (h - c["bn_mean"]) / jnp.sqrt(c["bn_var"] + BN_EPS) * c["bn_g"] + c["bn_b"]
    h = _pool(jax.nn.relu(h), jax.lax.max, -jnp.inf)
    h = jax.nn.relu(_conv(h, p["K2"], p["c2"]))
    h = _pool(h, jax.lax.add, 0.0) / 4.0
    h = h.transpose(0, 3, 1, 2).reshape(h.shape[0], -1)  # torch's NCHW flatten
    h = jax.nn.relu(h @ p["W3"] + p["b3"][None])
    return h @ p["W4"] + p["b4"][None]


def torch_cnn(p=CNN):
    def conv(k, b):
        c = torch.nn.Conv2d(k.shape[2], k.shape[3], 3, padding=1)
        c.weight.data = torch.tensor(k.transpose(3, 2, 0, 1).copy())
        c.bias.data = torch.tensor(b)
        return c

    bn = torch.nn.BatchNorm2d(4, eps=BN_EPS)
    bn.running_mean.data = torch.tensor(p["bn_mean"])
    bn.running_var.data = torch.tensor(p["bn_var"])
    bn.weight.data = torch.tensor(p["bn_g"])
    bn.bias.data = torch.tensor(p["bn_b"])
    l3, l4 = torch.nn.Linear(20, 6), torch.nn.Linear(6, 3)
    for lin, w, b in ((l3, "W3", "b3"), (l4, "W4", "b4")):
        lin.weight.data = torch.tensor(p[w].T.copy())
        lin.bias.data = torch.tensor(p[b])
    return torch.nn.Sequential(
        conv(p["K1"], p["c1"]),
        bn,
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        conv(p["K2"], p["c2"]),
        torch.nn.ReLU(),
        torch.nn.AvgPool2d(2),
        torch.nn.Flatten(),
        l3,
        torch.nn.ReLU(),
        l4,
    ).eval()


X_MLP = RNG.normal(size=(3, 5)).astype(np.float32)
X_IMG = RNG.uniform(size=(2, 8, 8, 3)).astype(np.float32)
TARGETS = np.array([0, 2, 1])


def zennit_relevance(model, X, targets, comp):
    x = torch.tensor(X, requires_grad=True)
    onehot = torch.nn.functional.one_hot(torch.tensor(targets), 3).float()
    with Gradient(model=model, composite=comp) as attributor:
        _, rel = attributor(x, lambda out: out * onehot)
    return rel.detach().numpy()


ZENNIT = {
    "epsilon_plus_flat": lambda: zennit_composites.EpsilonPlusFlat(
        canonizers=[SequentialMergeBatchNorm()]
    ),
    "epsilon_gamma_box": lambda: zennit_composites.EpsilonGammaBox(
        low=0.0, high=1.0, canonizers=[SequentialMergeBatchNorm()]
    ),
    "epsilon_alpha2_beta1": lambda: zennit_composites.EpsilonAlpha2Beta1(
        canonizers=[SequentialMergeBatchNorm()]
    ),
}


@pytest.fixture(scope="module")
def twins():
    return torch_mlp(), torch_cnn()


def test_twins_agree(twins):
    tm, tc = twins
    with torch.no_grad():
        np.testing.assert_allclose(tm(torch.tensor(X_MLP)).numpy(), mlp(X_MLP), atol=1e-5)
        img = torch.tensor(X_IMG.transpose(0, 3, 1, 2).copy())
        np.testing.assert_allclose(tc(img).numpy(), cnn(X_IMG), atol=1e-5)


@pytest.mark.parametrize("name", sorted(ZENNIT))
def test_mlp_equals_zennit(twins, name):
    ours = xj.lrp(mlp, X_MLP, targets=TARGETS, composite=name, low=0.0, high=1.0).values
    ref = zennit_relevance(twins[0], X_MLP, TARGETS, ZENNIT[name]())
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)
    assert np.abs(ref).max() > 1e-2  # a non-trivial relevance


@pytest.mark.parametrize("name", sorted(ZENNIT))
def test_cnn_equals_zennit(twins, name):
    t = TARGETS[:2]
    ours = xj.lrp(cnn, X_IMG, targets=t, composite=name, low=0.0, high=1.0).values
    img = X_IMG.transpose(0, 3, 1, 2).copy()
    ref = zennit_relevance(twins[1], img, t, ZENNIT[name]()).transpose(0, 2, 3, 1)
    np.testing.assert_allclose(ours, ref, atol=1e-4, rtol=1e-4)
    assert np.abs(ref).max() > 1e-3


# --- AttnLRP ------------------------------------------------------------------------------------


def _lxt_rules():
    """lxt 2.1's efficient (gradient x input) rules, loaded from their file: ``lxt.efficient``'s
    package ``__init__`` imports ``transformers``, which is not installed here."""
    import importlib.util
    import pathlib

    import lxt

    path = pathlib.Path(lxt.__file__).parent / "efficient" / "rules.py"
    spec = importlib.util.spec_from_file_location("lxt_efficient_rules", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def attention_twins():
    from flax import nnx
    from torch_twins import TorchBlock, _linear, _norm

    from xaijax.zoo.transformers import LN_EPSILON, TransformerBlock

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.block = TransformerBlock(8, 2, 16, rngs=rngs)
            self.norm = nnx.LayerNorm(8, epsilon=LN_EPSILON, rngs=rngs)
            self.head = nnx.Linear(8, 3, rngs=rngs)

        def __call__(self, E):  # (n, L, 8) embeddings -> (n, 3)
            return self.head(self.norm(self.block(E)).mean(axis=1))

    net = Net(nnx.Rngs(3))
    for path, var in nnx.iter_graph(net):  # non-trivial layer-norm scales and biases
        if isinstance(var, nnx.Param) and path[-1] in ("scale", "bias"):
            shape = var[...].shape
            var[...] = jnp.asarray(RNG.normal(size=shape) * 0.3 + (path[-1] == "scale"))
    block, norm, head = TorchBlock(net.block), _norm(net.norm), _linear(net.head)
    return net, (block, norm, head)


def _lxt_forward(torch_net, x, rules):
    """The twin with AttnLRP as lxt patches a transformer: layer norm's std held, q/k/v
    gradients divided (uniform rule), the identity rule on GELU."""
    block, norm, head = torch_net

    def layer_norm(m, x):  # lxt.efficient.patches.layer_norm_forward
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) / rules.stop_gradient((var + m.eps).sqrt()) * m.weight + m.bias

    def attention(att, x):
        n, length, dim = x.shape
        hd = dim // att.heads
        qkv = att.qkv(x).reshape(n, length, 3, att.heads, hd).permute(2, 0, 3, 1, 4)
        q, k = rules.divide_gradient(qkv[0], 4), rules.divide_gradient(qkv[1], 4)
        v = rules.divide_gradient(qkv[2], 2)
        a = (q @ k.transpose(-2, -1) / np.sqrt(hd)).softmax(dim=-1)
        return att.proj((a @ v).transpose(1, 2).reshape(n, length, dim))

    h = x + attention(block.attn, layer_norm(block.norm1, x))
    up = rules.identity_rule_implicit(block.act, block.fc1(layer_norm(block.norm2, h)))
    h = h + block.fc2(up)
    return head(layer_norm(norm, h).mean(dim=1))


def test_attn_lrp_equals_lxt(attention_twins):
    net, torch_net = attention_twins
    rules = _lxt_rules()
    E = RNG.normal(size=(2, 5, 8)).astype(np.float32)
    targets = np.array([0, 2])
    x = torch.tensor(E, requires_grad=True)
    out = _lxt_forward(torch_net, x, rules)
    np.testing.assert_allclose(out.detach().numpy(), net(E), atol=1e-5)
    out.backward(torch.nn.functional.one_hot(torch.tensor(targets), 3).float())
    ref = (x * x.grad).detach().numpy()
    # lxt is gradient x input (no stabiliser): epsilon -> 0.
    ours = xj.lrp(net, E, targets=targets, composite="attn_lrp", epsilon=1e-9).values
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=1e-4)
    assert np.abs(ref).max() > 1e-2


def test_attn_lrp_explains_the_zoo_vit_in_one_pass():
    """The zoo's ViT (patch conv, class token, attention, layer norm, GELU) is explained
    unchanged (its rules are checked against lxt on the block above)."""
    from flax import nnx

    from xaijax.zoo.transformers import ViT

    vit = ViT(8, 4, 3, 3, dim=8, depth=1, heads=2, mlp_dim=16, rngs=nnx.Rngs(0))
    exp = xj.lrp(vit, X_IMG, targets=TARGETS[:2], composite="attn_lrp", epsilon=1e-9)
    logits = np.asarray(vit(X_IMG))[np.arange(2), TARGETS[:2]]
    assert exp.values.shape == X_IMG.shape
    assert np.all(np.isfinite(exp.values))
    assert np.abs(exp.values).max() > 0
    np.testing.assert_allclose(exp.extras["scores"], logits, atol=1e-5)


# --- conservation and closed forms --------------------------------------------------------------


def _bias_free(p):
    return {k: (np.zeros_like(v) if k[0] in "bc" or k == "bn_mean" else v) for k, v in p.items()}


@pytest.mark.parametrize(
    "name", ["epsilon", "epsilon_plus_flat", "epsilon_alpha2_beta1", "epsilon_gamma_box"]
)
def test_conservation_on_bias_free_nets(name):
    p_mlp, p_cnn = _bias_free(MLP), _bias_free(CNN)
    for f, X in ((lambda X: mlp(X, p_mlp), X_MLP), (lambda X: cnn(X, p_cnn), X_IMG)):
        t = TARGETS[: len(X)]
        exp = xj.lrp(f, X, targets=t, composite=name, epsilon=1e-9, low=0.0, high=1.0)
        logits = np.asarray(f(X))[np.arange(len(X)), t]
        total = np.asarray(exp.values).reshape(len(X), -1).sum(axis=1)
        np.testing.assert_allclose(total, logits, rtol=1e-5, atol=1e-6)


def test_w_square_and_flat_closed_forms_and_layer_overrides():
    """One bias-free dense layer: w^2 gives R_i = w_i^2 / sum w^2 * y, flat R_i = y / M."""
    W = MLP["W1"][:, :3]
    X = X_MLP[:2]
    y = X @ W
    t = np.array([0, 2])
    logit = y[np.arange(2), t][:, None]
    w2 = xj.lrp(lambda X: X @ W, X, targets=t, layer_rules={0: relevance.w_square()}).values
    want = (W[:, t] ** 2 / (W[:, t] ** 2).sum(axis=0)).T * logit
    np.testing.assert_allclose(w2, want, rtol=1e-5, atol=1e-6)
    flat = xj.lrp(lambda X: X @ W, X, targets=t).values  # epsilon_plus_flat: flat first layer
    np.testing.assert_allclose(flat, np.broadcast_to(logit / 5, (2, 5)), rtol=1e-5, atol=1e-6)
    # Overrides by index: -1 is the last of the MLP's three layers.
    last = xj.lrp(mlp, X_MLP, targets=TARGETS, layer_rules={-1: relevance.z_plus()}).values
    third = xj.lrp(mlp, X_MLP, targets=TARGETS, layer_rules={2: relevance.z_plus()}).values
    default = xj.lrp(mlp, X_MLP, targets=TARGETS).values
    np.testing.assert_array_equal(last, third)
    assert np.abs(last - default).max() > 1e-3
    assert relevance.layer_kinds(cnn, X_IMG[:1]) == ["conv", "conv", "dense", "dense"]
    # A Composite object equals the named one.
    comp = relevance.composite("epsilon_gamma_box", low=0.0, high=1.0)
    np.testing.assert_array_equal(
        xj.lrp(cnn, X_IMG, targets=1, composite=comp).values,
        xj.lrp(cnn, X_IMG, targets=1, composite="epsilon_gamma_box", low=0.0, high=1.0).values,
    )


def test_bad_input_and_missing_rules():
    with pytest.raises(ValueError, match="composite"):
        xj.lrp(mlp, X_MLP, composite="nope")
    with pytest.raises(ValueError, match="low"):
        xj.lrp(cnn, X_IMG, composite="epsilon_gamma_box")
    with pytest.raises(ValueError, match="epsilon"):
        xj.lrp(mlp, X_MLP, epsilon=-1.0)
    with pytest.raises(TypeError, match="composite"):
        xj.lrp(mlp, X_MLP, composite=3)
    with pytest.raises(ValueError, match="X"):
        xj.lrp(mlp, np.full((2, 5), np.nan, np.float32))
    with pytest.raises(ValueError, match="alpha"):
        relevance.alpha_beta(1.0, 1.0)
    with pytest.raises(UnsupportedPrimitiveError, match="cumprod"):
        xj.lrp(lambda X: jax.lax.cumprod(X, axis=1) @ MLP["W1"], X_MLP)
