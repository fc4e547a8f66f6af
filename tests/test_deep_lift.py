"""DeepLIFT (rescale and RevealCancel) and the propagation interpreter's coverage, with oracles.

Oracles: captum's ``DeepLift`` on PyTorch twins with identical weights (an MLP; a CNN with max
and average pooling, NHWC here vs NCHW there); the DeepLIFT paper's min network worked by hand
for RevealCancel; summation-to-delta on random MLPs; captum's ``DeepLiftShap`` for Deep SHAP on
ELU, softplus and leaky-ReLU networks, and shap's ``DeepExplainer`` (PyTorch backend) there;
``deep_shap`` with one background row.

captum hooks ``nn.Module`` nonlinearities, so its twins use ReLU/ELU/... modules, each used once.
captum's MaxPool rule breaks summation-to-delta when the pool touches another hooked
nonlinearity (ReLU -> MaxPool or MaxPool -> ReLU: captum issues #1104 and #1276, its zero-delta
fallback takes the first sample's gradient); the CNN twin keeps its max pool between two linear
layers, where captum's rule is the one ``maxima="routed"`` implements.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cam_models import random_module
from flax import nnx

import xaijax as xj
from xaijax.core.propagation import primitive_kind
from xaijax.propagation import deeplift as deeplift_module
from xaijax.shapley import UnsupportedPrimitiveError

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

RNG = np.random.default_rng(0)


def _summation(exp, f, X):
    """Max |sum of attributions + f(x') - f(x)| / max(1, |f(x)|) over instances (one target)."""
    total = exp.values.reshape(exp.values.shape[0], -1).sum(axis=1) + exp.base_values
    y = np.asarray(f(jnp.asarray(X)))
    return float((np.abs(total - y) / np.maximum(1.0, np.abs(y))).max())


# -- RevealCancel: the paper's min network (Shrikumar et al. 2017, Figure 3) --
def min_net(X):
    """y = i1 - ReLU(i1 - i2) = min(i1, i2)."""
    return X[:, 0] - jax.nn.relu(X[:, 0] - X[:, 1])


@pytest.mark.parametrize("i1, i2", [(3.0, 1.0), (1.0, 3.0), (2.0, 2.5), (4.0, 0.5)])
def test_reveal_cancel_reproduces_the_papers_min_network_by_hand(i1, i2):
    x = np.array([i1, i2], np.float32)  # reference 0, both inputs positive
    # By hand. The hidden unit h = ReLU(z), z = i1 - i2: Δz⁺ = i1 (from i1), Δz⁻ = -i2 (from i2).
    relu = lambda v: max(v, 0.0)  # noqa: E731
    dz_pos, dz_neg = i1, -i2
    dh_pos = 0.5 * (relu(dz_pos) - 0) + 0.5 * (relu(dz_neg + dz_pos) - relu(dz_neg))
    dh_neg = 0.5 * (relu(dz_neg) - 0) + 0.5 * (relu(dz_pos + dz_neg) - relu(dz_pos))
    m_pos, m_neg = dh_pos / dz_pos, dh_neg / dz_neg
    # y = i1 - h: i1 reaches y directly (1) and through Δz⁺ (-m⁺); i2 through Δz⁻ (-1 * -m⁻).
    hand = np.array([(1.0 - m_pos) * i1, m_neg * i2])
    # The paper: RevealCancel gives each input half of min(i1, i2).
    np.testing.assert_allclose(hand, [min(i1, i2) / 2] * 2, atol=1e-12)
    got = xj.deep_lift(min_net, x, rule="reveal_cancel")
    np.testing.assert_allclose(got.values, hand, atol=1e-6)
    assert float(got.base_values) == 0.0
    # The rescale rule gives everything to the smaller input (gradient-like behaviour).
    rescale = xj.deep_lift(min_net, x).values
    np.testing.assert_allclose(rescale, [i1, 0.0] if i1 < i2 else [0.0, i2], atol=1e-6)


def _random_mlp(seed, act):
    rng = np.random.default_rng(seed)
    W1 = rng.normal(size=(5, 8)).astype(np.float32)
    b1 = rng.normal(size=8).astype(np.float32)
    W2 = rng.normal(size=(8, 6)).astype(np.float32)
    W3 = rng.normal(size=(6, 3)).astype(np.float32)

    def f(X):
        return act(act(X @ W1 + b1[None]) @ W2) @ W3

    return f


@pytest.mark.parametrize("rule", ["rescale", "reveal_cancel"])
@pytest.mark.parametrize(
    "seed, act",
    [(0, jax.nn.relu), (1, jnp.tanh), (2, jax.nn.sigmoid)],
    ids=["relu", "tanh", "sigmoid"],
)
def test_summation_to_delta_on_random_mlps(rule, seed, act):
    X = RNG.normal(size=(4, 5)).astype(np.float32)
    baseline = RNG.normal(size=5).astype(np.float32)
    f = _random_mlp(seed, act)
    exp = xj.deep_lift(f, X, baseline, targets=[0, 1, 2, 1], rule=rule)
    y = np.asarray(f(jnp.asarray(X)))[np.arange(4), [0, 1, 2, 1]]
    assert np.abs(exp.values.sum(axis=1) + exp.base_values - y).max() < 1e-5
    np.testing.assert_allclose(
        exp.base_values, np.asarray(f(baseline[None]))[0, [0, 1, 2, 1]], atol=1e-6
    )
    # Every output at once: the trailing K axis, each summing to its own delta.
    every = xj.deep_lift(f, X, baseline, rule=rule)
    assert every.values.shape == (4, 5, 3)
    delta = np.asarray(f(jnp.asarray(X))) - np.asarray(f(baseline[None]))
    assert np.abs(every.values.sum(axis=1) - delta).max() < 1e-5


def test_reveal_cancel_differs_from_rescale_where_inputs_cancel():
    f = _random_mlp(0, jax.nn.relu)
    X = RNG.normal(size=(3, 5)).astype(np.float32)
    a = xj.deep_lift(f, X, targets=0).values
    b = xj.deep_lift(f, X, targets=0, rule="reveal_cancel").values
    assert np.abs(a - b).max() > 1e-3
    np.testing.assert_allclose(a.sum(axis=1), b.sum(axis=1), atol=1e-5)


# -- captum twins --
class TorchMLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.l1, self.a1 = torch.nn.Linear(6, 8), torch.nn.ReLU()
        self.l2, self.a2 = torch.nn.Linear(8, 8), torch.nn.Sigmoid()
        self.l3 = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.l3(self.a2(self.l2(self.a1(self.l1(x)))))


def _np(t):
    return t.detach().numpy()


def jax_mlp(net):
    Ws = [(_np(layer.weight).T, _np(layer.bias)) for layer in (net.l1, net.l2, net.l3)]

    def f(X):
        h = jax.nn.relu(X @ Ws[0][0] + Ws[0][1][None])
        h = jax.nn.sigmoid(h @ Ws[1][0] + Ws[1][1][None])
        return h @ Ws[2][0] + Ws[2][1][None]

    return f


def test_rescale_equals_captum_deeplift_on_an_mlp_twin():
    torch.manual_seed(0)
    net = TorchMLP().eval()
    f = jax_mlp(net)
    X = RNG.normal(size=(4, 6)).astype(np.float32)
    B = RNG.normal(size=(4, 6)).astype(np.float32)
    np.testing.assert_allclose(f(X), _np(net(torch.tensor(X))), atol=1e-5)
    labels = [0, 2, 1, 2]
    theirs = _np(
        captum_attr.DeepLift(net).attribute(torch.tensor(X), torch.tensor(B), target=labels)
    )
    ours = xj.deep_lift(f, X, B, targets=labels)
    assert np.abs(ours.values - theirs).max() < 1e-5  # measured 3e-7


class TorchCNN(torch.nn.Module):
    """conv -> ReLU -> avg pool -> conv -> max pool -> linear (NCHW)."""

    def __init__(self):
        super().__init__()
        self.c1, self.r1 = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU()
        self.avg = torch.nn.AvgPool2d(2)
        self.c2 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.max = torch.nn.MaxPool2d(2)
        self.fc = torch.nn.Linear(16, 3)

    def forward(self, x):
        h = self.avg(self.r1(self.c1(x)))
        return self.fc(self.max(self.c2(h)).flatten(1))


def jax_cnn(net):
    """The twin in NHWC; flattened in PyTorch's (c, h, w) order for the dense layer."""
    w1, b1 = _np(net.c1.weight).transpose(2, 3, 1, 0), _np(net.c1.bias)
    w2, b2 = _np(net.c2.weight).transpose(2, 3, 1, 0), _np(net.c2.bias)
    wf, bf = _np(net.fc.weight).T, _np(net.fc.bias)

    def conv(x, w, b):
        dn = jax.lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
        return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dn) + b.reshape(
            1, 1, 1, -1
        )

    def f(X):
        h = nnx.avg_pool(jax.nn.relu(conv(X, w1, b1)), (2, 2), (2, 2))
        h = nnx.max_pool(conv(h, w2, b2), (2, 2), (2, 2))
        return jnp.transpose(h, (0, 3, 1, 2)).reshape(X.shape[0], -1) @ wf + bf[None]

    return f


def test_rescale_equals_captum_deeplift_on_a_cnn_twin_with_max_and_avg_pooling():
    torch.manual_seed(1)
    net = TorchCNN().eval()
    f = jax_cnn(net)
    X = RNG.normal(size=(3, 8, 8, 3)).astype(np.float32)
    B = (RNG.normal(size=(3, 8, 8, 3)) * 0.5).astype(np.float32)

    def nchw(a):
        return torch.tensor(a.transpose(0, 3, 1, 2))

    np.testing.assert_allclose(f(X), _np(net(nchw(X))), atol=1e-5)
    theirs = _np(captum_attr.DeepLift(net).attribute(nchw(X), nchw(B), target=1))
    theirs = theirs.transpose(0, 2, 3, 1)
    routed = xj.deep_lift(f, X, B, targets=1, maxima="routed")
    assert np.abs(routed.values - theirs).max() < 1e-5  # measured ~1e-9
    # Max SHAP (the default, as deep_shap) splits each window's change differently, with the
    # same total.
    shapley = xj.deep_lift(f, X, B, targets=1)
    assert np.abs(shapley.values - theirs).max() > 1e-4
    np.testing.assert_allclose(
        shapley.values.sum(axis=(1, 2, 3)), routed.values.sum(axis=(1, 2, 3)), atol=1e-5
    )


def test_deep_shap_with_one_background_row_equals_deep_lift():
    torch.manual_seed(1)
    f = jax_cnn(TorchCNN().eval())
    X = RNG.normal(size=(2, 8, 8, 3)).astype(np.float32)
    b = RNG.normal(size=(8, 8, 3)).astype(np.float32)
    shap = xj.deep_shap(f, X, b[None])
    lift = xj.deep_lift(f, X, b)
    # The same rules on the same rows. Not bitwise: the two programs are compiled separately and
    # XLA may fuse (and so round) the conv's sums differently (seen: 2e-9 on values of 1e-3).
    np.testing.assert_allclose(lift.values, shap.values, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(lift.base_values, shap.base_values, rtol=1e-6)


# -- Deep SHAP on where-built activations vs captum's DeepLiftShap --
def _softplus_where(v):
    """softplus written with jnp.where (as shap's tests write it)."""
    return jnp.where(v > 0, v + jnp.log1p(jnp.exp(-v)), jnp.log1p(jnp.exp(v)))


@pytest.mark.parametrize(
    "jax_act, torch_act",
    [
        (jax.nn.elu, torch.nn.ELU),
        (_softplus_where, torch.nn.Softplus),
        (jax.nn.softplus, torch.nn.Softplus),
        (lambda v: jax.nn.leaky_relu(v, 0.1), lambda: torch.nn.LeakyReLU(0.1)),
    ],
    ids=["elu", "softplus_where", "softplus", "leaky_relu"],
)
def test_deep_shap_on_where_activations_equals_captum_deeplift_shap(jax_act, torch_act):
    torch.manual_seed(2)
    l1, a1, l2 = torch.nn.Linear(5, 8), torch_act(), torch.nn.Linear(8, 2)
    net = torch.nn.Sequential(l1, a1, l2).eval()
    W1, b1, W2, b2 = _np(l1.weight).T, _np(l1.bias), _np(l2.weight).T, _np(l2.bias)

    def f(X):
        return jax_act(X @ W1 + b1[None]) @ W2 + b2[None]

    X = (RNG.normal(size=(3, 5)) * 2).astype(np.float32)
    BG = (RNG.normal(size=(4, 5)) * 2).astype(np.float32)
    np.testing.assert_allclose(f(X), _np(net(torch.tensor(X))), atol=1e-5)
    theirs = _np(
        captum_attr.DeepLiftShap(net).attribute(torch.tensor(X), torch.tensor(BG), target=1)
    )
    ours = xj.deep_shap(f, X, BG, targets=1)
    assert np.abs(ours.values - theirs).max() < 1e-5  # measured <= 3e-7
    # shap's own Deep explainer (its PyTorch backend) on the same twin: (n, M, K).
    shap = pytest.importorskip("shap")
    values = shap.DeepExplainer(net, torch.tensor(BG)).shap_values(
        torch.tensor(X), check_additivity=False
    )
    assert np.abs(ours.values - np.asarray(values)[..., 1]).max() < 1e-5  # measured <= 2e-7


def test_logsumexp_works_in_deep_shap_and_adds_up():
    # Neither captum nor shap has a logsumexp rule to compare with: summation-to-delta.
    W = RNG.normal(size=(5, 4)).astype(np.float32)

    def f(X):
        return jax.nn.logsumexp(X @ W, axis=1)

    X = RNG.normal(size=(3, 5)).astype(np.float32)
    BG = RNG.normal(size=(4, 5)).astype(np.float32)
    exp = xj.deep_shap(f, X, BG)
    assert _summation(exp, f, X) < 1e-5
    assert _summation(xj.deep_lift(f, X, BG[0], rule="reveal_cancel"), f, X) < 1e-5


# -- interpreter coverage: every primitive jax.nn and flax.nnx layers emit works or is named --
ACTIVATIONS = {
    name: getattr(jax.nn, name)
    for name in (
        "relu relu6 elu selu celu gelu silu swish mish leaky_relu softplus soft_sign sigmoid "
        "log_sigmoid hard_tanh hard_sigmoid hard_silu sparse_plus squareplus tanh softmax "
        "log_softmax standardize logsumexp glu"
    ).split()
    if hasattr(jax.nn, name)
}
ACTIVATIONS["logsumexp"] = lambda v: jax.nn.logsumexp(v, axis=-1, keepdims=True)


def test_every_jax_nn_activation_works_in_deep_shap_and_deep_lift():
    # One model holding every activation (one compilation per explainer, not one per
    # activation); a missing rule would raise naming the primitive and its equation.
    W = RNG.normal(size=(4, 6)).astype(np.float32)
    scale = np.linspace(0.5, 1.5, len(ACTIVATIONS)).astype(np.float32)

    def f(X):
        z = X @ W
        return sum(
            c * act(z).reshape(X.shape[0], -1).sum(axis=1)
            for c, (_, act) in zip(scale, sorted(ACTIVATIONS.items()), strict=True)
        )

    X = (RNG.normal(size=(2, 4)) * 2).astype(np.float32)
    BG = RNG.normal(size=(3, 4)).astype(np.float32)
    assert _summation(xj.deep_shap(f, X, BG), f, X) < 1e-5
    assert _summation(xj.deep_lift(f, X, BG[0], rule="reveal_cancel"), f, X) < 1e-5


def _structural_models():
    W = RNG.normal(size=(6, 6)).astype(np.float32)

    def relu(X):
        return jax.nn.relu(X @ W)

    return {
        "stack": lambda X: jnp.stack([relu(X), X], axis=1).sum(axis=(1, 2)),
        "split": lambda X: sum(
            jnp.tanh(p).sum(axis=1) * i for i, p in enumerate(jnp.split(X, 3, 1))
        ),
        "tile": lambda X: jax.nn.relu(jnp.tile(X, (1, 2)) @ jnp.ones((12, 2))).sum(axis=1),
        "concatenate": lambda X: jnp.concatenate([relu(X), X[:, :2]], axis=1).sum(axis=1),
        "pad_rev": lambda X: jnp.pad(jnp.flip(relu(X), 1), ((0, 0), (1, 2))).sum(axis=1),
        "gather_static": lambda X: relu(X)[:, jnp.array([0, 2, 2, 5])].sum(axis=1),
        "dynamic_slice": lambda X: jax.lax.dynamic_slice_in_dim(relu(X), 1, 3, axis=1).sum(axis=1),
        "transpose_cumsum": lambda X: jnp.cumsum(relu(X).T, axis=0).T.sum(axis=1),
        "squeeze_expand": lambda X: jnp.squeeze(relu(X)[:, None, :], 1).sum(axis=1),
        "where_on_input": lambda X: jnp.where(X > 0.3, jnp.exp(X), X * X).sum(axis=1),
        "cond_const": lambda X: jax.lax.cond(True, lambda v: jnp.tanh(v), lambda v: v, X).sum(1),
        "scatter_add": lambda X: (
            jnp.zeros((X.shape[0], 3))
            .at[:, jnp.array([0, 2, 0])]
            .add(jnp.tanh(X[:, :3]))
            .sum(axis=1)
        ),
        "attention_like": lambda X: (
            jax.nn.softmax(relu(X)[:, :, None] * X[:, None, :]) @ X[:, :, None]
        ).sum(axis=(1, 2)),
    }


def test_structural_primitives_work():
    models = _structural_models()

    def f(X):  # all of them in one model: one compilation per explainer
        return sum(models[name](X) * (1 + 0.1 * i) for i, name in enumerate(sorted(models)))

    X = RNG.normal(size=(2, 6)).astype(np.float32)
    BG = RNG.normal(size=(3, 6)).astype(np.float32)
    assert _summation(xj.deep_shap(f, X, BG), f, X) < 1e-5
    assert _summation(xj.deep_lift(f, X, rule="reveal_cancel"), f, X) < 1e-5


class Layers(nnx.Module):
    """Linear, Conv, BatchNorm (eval), LayerNorm, Dropout (eval), avg and max pool."""

    def __init__(self, rngs):
        self.conv = nnx.Conv(2, 4, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(4, rngs=rngs)
        self.ln = nnx.LayerNorm(16, rngs=rngs)
        self.drop = nnx.Dropout(0.5)
        self.linear = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, X):
        h = nnx.relu(self.bn(self.conv(X)))  # (n, 8, 8, 4)
        h = nnx.max_pool(h, (2, 2), (2, 2))
        h = nnx.avg_pool(h, (2, 2), (2, 2))  # (n, 2, 2, 4)
        h = self.drop(self.ln(h.reshape(X.shape[0], -1)))
        return self.linear(nnx.gelu(h))


def test_flax_nnx_layers_work_and_embed_is_named():
    model = random_module(lambda: Layers(nnx.Rngs(0)), seed=3, scale=0.5)
    model.eval()
    X = RNG.normal(size=(2, 8, 8, 2)).astype(np.float32)
    BG = RNG.normal(size=(2, 8, 8, 2)).astype(np.float32)

    def out(X):
        return model(X)[:, 1]

    for exp in (
        xj.deep_shap(model, X, BG, targets=1),
        xj.deep_lift(model, X, BG[0], targets=1, rule="reveal_cancel"),
    ):
        assert _summation(exp, out, X) < 1e-5
    # An embedding looks rows up by token id: an input-dependent index, named with its equation.
    embed = random_module(lambda: nnx.Embed(10, 4, rngs=nnx.Rngs(0)), seed=0)

    def tokens(X):
        return embed(jnp.clip(X, 0, 9).astype(jnp.int32)).sum(axis=(1, 2))

    with pytest.raises(UnsupportedPrimitiveError, match="equation: "):
        xj.deep_shap(tokens, np.array([[1.0, 3.0]]), np.zeros((1, 2)))


def test_loops_and_input_dependent_branches_are_named():
    X = RNG.normal(size=(2, 3)).astype(np.float32)

    def scanned(X):
        return jax.lax.scan(lambda c, v: (c + jnp.tanh(v), None), jnp.zeros(X.shape[0]), X.T)[0]

    with pytest.raises(UnsupportedPrimitiveError, match="'scan'.*loop"):
        xj.deep_lift(scanned, X)

    def branching(X):
        return jax.lax.cond(X.sum() > 0, lambda v: v * 2, lambda v: -v, X).sum(axis=1)

    with pytest.raises(UnsupportedPrimitiveError, match="'cond'.*branch index"):
        xj.deep_lift(branching, X)
    assert primitive_kind("scan") == "loop" and primitive_kind("cond") == "call"
    assert primitive_kind("split") == "affine" and primitive_kind("tile") == "affine"


# -- the contract: baselines, options, compile once --
def test_baseline_broadcasts_like_integrated_gradients():
    f = _random_mlp(1, jnp.tanh)
    X = RNG.normal(size=(3, 5)).astype(np.float32)
    b = RNG.normal(size=5).astype(np.float32)
    per_row = xj.deep_lift(f, X, np.broadcast_to(b, X.shape), targets=0).values
    for baseline in (b, b[None]):
        np.testing.assert_allclose(xj.deep_lift(f, X, baseline, targets=0).values, per_row)
    zeros = xj.deep_lift(f, X, targets=0)
    np.testing.assert_allclose(zeros.values, xj.deep_lift(f, X, 0.0, targets=0).values)
    one = xj.deep_lift(f, X[0], b, targets=0)  # one instance: no leading axis
    np.testing.assert_allclose(one.values, per_row[0], atol=1e-6)
    with pytest.raises(ValueError, match="baseline"):
        xj.deep_lift(f, X, np.zeros((2, 5)))
    with pytest.raises(ValueError, match="rule"):
        xj.deep_lift(f, X, rule="gradient")
    with pytest.raises(ValueError, match="maxima"):
        xj.deep_lift(f, X, maxima="mean")
    with pytest.raises(TypeError, match="host"):
        xj.deep_lift(xj.host_model(lambda X: np.asarray(X).sum(axis=1)), X)


def test_compiles_once_for_same_shaped_calls():
    W = RNG.normal(size=(5, 2)).astype(np.float32)

    def model(X):  # a model no other test compiled
        return jax.nn.elu(X @ W)

    X = RNG.normal(size=(3, 5)).astype(np.float32)
    before = deeplift_module._deep_lift._cache_size()
    a = xj.deep_lift(model, X, targets=1)
    b = xj.deep_lift(model, X + 1.0, 0.5, targets=1)
    assert deeplift_module._deep_lift._cache_size() == before + 1
    assert not np.allclose(a.values, b.values)
