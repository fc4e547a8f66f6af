"""Robustness and randomisation metrics against Quantus 0.6 on PyTorch twins, and known answers.

Quantus imports torchvision through zennit, which is absent here: ``gradcam_standin.install()``
runs before Quantus is imported (tests/gradcam_standin.py). Every Quantus comparison feeds both
sides the same perturbations: ours come from the documented keys (sample ``s`` of instance
``i`` from ``jax.random.fold_in(split(key, n)[i], s)``), and Quantus gets a ``perturb_func`` that
replays them. Quantus normalises attributions over the whole batch by default; the comparisons
pass ``normalise_axes`` (or a per-instance ``normalise_func``) so both sides normalise each map.
"""

import copy

import gradcam_standin
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from xaijax import metrics

gradcam_standin.install()
import quantus  # noqa: E402

torch.set_default_dtype(torch.float32)


# -- models and their twins --------------------------------------------------------------------
def _mlp(din, hidden, k, seed):
    return nnx.Sequential(
        nnx.Linear(din, hidden, rngs=nnx.Rngs(seed)),
        nnx.tanh,
        nnx.Linear(hidden, k, rngs=nnx.Rngs(seed + 1)),
    )


def _twin(net) -> torch.nn.Sequential:
    """The PyTorch twin of an MLP ``Linear, tanh, Linear`` (weights copied)."""
    a, _, b = net.layers
    lin = []
    for layer in (a, b):
        kernel = np.asarray(layer.kernel[...])
        t = torch.nn.Linear(*kernel.shape)
        t.weight.data = torch.tensor(kernel.T.copy())
        t.bias.data = torch.tensor(np.asarray(layer.bias[...]).copy())
        lin.append(t)
    return torch.nn.Sequential(lin[0], torch.nn.Tanh(), lin[1])


class _Flat(torch.nn.Module):
    """NCHW images -> the twin of an MLP on NHWC images flattened."""

    def __init__(self, mlp):
        super().__init__()
        self.mlp = mlp

    def forward(self, x):
        return self.mlp(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1))


class ImageNet(nnx.Module):
    def __init__(self, seed):
        self.mlp = _mlp(36, 8, 2, seed)

    def __call__(self, x):
        return self.mlp(x.reshape(x.shape[0], -1))


def grad(model, X, targets):
    """The plain gradient of the target output (a JAX explainer: runs compiled)."""
    return jax.vmap(jax.grad(lambda x, t: model(x[None])[0, t]))(X, targets)


def torch_grad(model, inputs, targets, **kwargs):
    """The same gradient on the PyTorch twin, as a Quantus ``explain_func``."""
    x = torch.tensor(np.asarray(inputs, np.float32), requires_grad=True)
    out = model(x)
    out[torch.arange(len(x)), torch.as_tensor(np.array(targets), dtype=torch.long)].sum().backward()
    return x.grad.numpy().copy()


@pytest.fixture(scope="module")
def tab():
    net = _mlp(4, 6, 3, 0)
    X = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    y = np.asarray(jnp.argmax(net(X), axis=1))
    return net, _twin(net).eval(), X, y


@pytest.fixture(scope="module")
def img():
    net = ImageNet(3)
    X = np.random.default_rng(1).uniform(size=(2, 6, 6, 1)).astype(np.float32)
    y = np.asarray(jnp.argmax(net(X), axis=1))
    return net, _Flat(_twin(net.mlp)).eval(), X, y


def _noise(key, X, nr_samples, lo, hi):
    """Our perturbations ``(nr_samples, n, ...)``: what the metrics draw for ``key``."""
    keys = jax.random.split(key, len(X))
    return np.stack(
        [
            np.stack(
                [
                    X[i]
                    + np.asarray(
                        jax.random.uniform(
                            jax.random.fold_in(keys[i], s), X[i].shape, jnp.float32, lo, hi
                        )
                    )
                    for i in range(len(X))
                ]
            )
            for s in range(nr_samples)
        ]
    )


class Replay:
    """A Quantus ``perturb_func`` that returns prepared perturbations, one sample per call."""

    def __init__(self, perturbed):
        self.perturbed, self.calls = perturbed, 0

    def __call__(self, arr, **kwargs):
        out = self.perturbed[self.calls].reshape(arr.shape)
        self.calls += 1
        return out


# -- Quantus oracles ---------------------------------------------------------------------------
S = 5


@pytest.mark.parametrize(
    "ours, theirs, kwargs",
    [
        (metrics.max_sensitivity, quantus.MaxSensitivity, {}),
        (metrics.avg_sensitivity, quantus.AvgSensitivity, {}),
        (metrics.local_lipschitz_estimate, quantus.LocalLipschitzEstimate, {}),
        (metrics.relative_input_stability, quantus.RelativeInputStability, {}),
        (metrics.relative_output_stability, quantus.RelativeOutputStability, {}),
    ],
)
def test_noise_metrics_equal_quantus(tab, ours, theirs, kwargs):
    net, twin, X, y = tab
    key = jax.random.key(1)
    lo, hi = 0.01, 0.05
    noise = dict(perturb_func=lambda k, x: x + jax.random.uniform(k, x.shape, x.dtype, lo, hi))
    got = ours(net, X, grad, key=key, nr_samples=S, **noise)
    q = theirs(
        nr_samples=S,
        perturb_func=Replay(_noise(key, X, S, lo, hi)),
        normalise_func_kwargs={"normalise_axes": [1]},
        disable_warnings=True,
    )
    ref = q(twin, X, y, explain_func=torch_grad)
    assert np.all(np.isfinite(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_relative_representation_stability_equals_quantus(tab):
    net, twin, X, y = tab
    key = jax.random.key(2)
    lo, hi = 0.01, 0.05
    got = metrics.relative_representation_stability(
        net, X, grad, layer="layers/0", key=key, nr_samples=S, lower_bound=lo, upper_bound=hi
    )
    q = quantus.RelativeRepresentationStability(
        nr_samples=S,
        perturb_func=Replay(_noise(key, X, S, lo, hi)),
        layer_names=["0"],
        disable_warnings=True,
    )
    ref = q(twin, X, y, explain_func=torch_grad)
    assert np.all(np.isfinite(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_continuity_equals_quantus(img):
    net, twin, X, y = img
    got = metrics.continuity(net, X, grad, nr_steps=4)
    q = quantus.Continuity(
        nr_steps=4, normalise_func_kwargs={"normalise_axes": [1, 2, 3]}, disable_warnings=True
    )
    ref = q(twin, X.transpose(0, 3, 1, 2), y, explain_func=torch_grad, channel_first=True)
    assert np.all(np.isfinite(ref)) and np.all(np.asarray(ref) > 0)
    np.testing.assert_allclose(got, ref, rtol=1e-4)


@pytest.mark.parametrize("abs_", [True, False])
def test_consistency_equals_quantus(abs_):
    net = _mlp(4, 6, 3, 5)
    X = np.random.default_rng(4).normal(size=(12, 4)).astype(np.float32)
    y = np.asarray(jnp.argmax(net(X), axis=1))
    got = metrics.consistency(net, X, grad, abs=abs_, normalise=False)
    q = quantus.Consistency(abs=abs_, normalise=False, disable_warnings=True)
    ref = q(_twin(net).eval(), X, y, explain_func=torch_grad)
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert 0 < np.mean(got) < 1  # neither trivial case


# -- randomisation against Quantus -------------------------------------------------------------
def _torch_resets(twin, seed):
    """What Quantus's layer generator puts in each layer: ``reset_parameters()`` right after
    ``torch.manual_seed(seed + 1)``; keyed by the order of the layers."""
    out = []
    for _, module in twin.named_modules():
        if hasattr(module, "reset_parameters"):
            fresh = copy.deepcopy(module)
            torch.manual_seed(seed + 1)
            fresh.reset_parameters()
            out.append((fresh.weight.detach().numpy().T.copy(), fresh.bias.detach().numpy().copy()))
    return out


def _init_from(resets, layer_paths):
    """Our ``init`` giving each layer (paths in bottom-up order) the twin's reset weights."""
    table = dict(zip(layer_paths, resets, strict=True))

    def init(path, value, key):
        kernel, bias = table[tuple(path[:-1])]
        return kernel if path[-1] == "kernel" else bias

    return init


@pytest.mark.parametrize("order", ["top_down", "independent"])
def test_mprt_equals_quantus(tab, order):
    net, twin, X, y = tab
    init = _init_from(_torch_resets(twin, 42), [("layers", 0), ("layers", 2)])
    got = metrics.mprt(net, X, grad, key=jax.random.key(0), init=init, layer_order=order)
    q = quantus.MPRT(layer_order=order, seed=42, disable_warnings=True)
    ref = q(twin, X, y, explain_func=torch_grad)
    assert list(ref) == ["original"] + [name.split("/")[-1] for name in got.layers]
    np.testing.assert_allclose(got.scores, [ref[k] for k in list(ref)[1:]], atol=1e-4)
    if order == "top_down":
        # Quantus's average also counts its "original" entry (the model against itself, 1):
        # it skips a key named "orig" that it never writes. Ours averages the layers only.
        q_avg = quantus.MPRT(seed=42, return_average_correlation=True, disable_warnings=True)
        avg = q_avg(twin, X, y, explain_func=torch_grad)
        n_layers = len(got.layers)
        np.testing.assert_allclose(
            avg, (got.scores.sum(0) + np.asarray(ref["original"])) / (n_layers + 1), atol=1e-4
        )
        ours_avg = metrics.mprt(
            net, X, grad, key=jax.random.key(0), init=init, return_average_correlation=True
        )
        np.testing.assert_allclose(ours_avg, got.scores.mean(0), atol=1e-6)


def test_smooth_mprt_equals_quantus(tab, monkeypatch):
    net, twin, X, y = tab
    key, S_ = jax.random.key(3), 4
    init = _init_from(_torch_resets(twin, 42), [("layers", 0), ("layers", 2)])
    got = metrics.smooth_mprt(net, X, grad, key=key, init=init, nr_samples=S_)
    # Quantus draws np.random.randn(*x.shape) for each noisy sample: replay ours.
    keys = jax.random.split(jax.random.split(key)[1], len(X))
    noise = [
        np.stack(
            [np.asarray(jax.random.normal(jax.random.fold_in(k, s), X.shape[1:])) for k in keys]
        )
        for s in range(S_ - 1)
    ]
    calls = iter(range(10**6))
    monkeypatch.setattr(np.random, "randn", lambda *shape: noise[next(calls) % (S_ - 1)])
    # Quantus's smooth MPRT explains through quantus.explain, not the explain_func it is given.
    monkeypatch.setattr(quantus, "explain", lambda model, x, t, **kw: torch_grad(model, x, t))

    def per_instance(a):  # its second-moment normalisation, per instance
        return a / np.sqrt(np.mean(a**2, axis=1, keepdims=True))

    q = quantus.SmoothMPRT(
        nr_samples=S_, seed=42, normalise_func=per_instance, disable_warnings=True
    )
    ref = q(twin, X, y, explain_func=torch_grad)
    np.testing.assert_allclose(got.scores, [ref[k] for k in list(ref)[1:]], atol=1e-4)


def test_efficient_mprt_equals_quantus(img):
    net, twin, X, y = img
    init = _init_from(_torch_resets(twin, 42), [("mlp", "layers", 0), ("mlp", "layers", 2)])
    got = metrics.efficient_mprt(net, X, grad, key=jax.random.key(0), init=init, n_bins=10)
    q = quantus.EfficientMPRT(complexity_func_kwargs={"n_bins": 10}, seed=42, disable_warnings=True)
    ref = q(twin, X.transpose(0, 3, 1, 2), y, explain_func=torch_grad, channel_first=True)
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_random_logit_equals_quantus_for_two_classes(img):
    # With two classes the other class is determined, so both sides explain the same one.
    net, twin, X, y = img
    got = metrics.random_logit(net, X, grad, key=jax.random.key(0))
    q = quantus.RandomLogit(
        num_classes=2, normalise_func_kwargs={"normalise_axes": [1, 2, 3]}, disable_warnings=True
    )
    ref = q(twin, X.transpose(0, 3, 1, 2), y, explain_func=torch_grad, channel_first=True)
    np.testing.assert_allclose(got, ref, atol=1e-4)


# -- known answers -----------------------------------------------------------------------------
def constant(model, X, targets):
    return jnp.ones(X.shape)


def test_constant_explainer_is_perfectly_robust(tab, img):
    net, _, X, _ = tab
    for fn in (metrics.max_sensitivity, metrics.avg_sensitivity):
        np.testing.assert_array_equal(fn(net, X, constant, key=jax.random.key(0), nr_samples=3), 0)
    net, _, Xi, _ = img
    np.testing.assert_array_equal(metrics.continuity(net, Xi, constant, nr_steps=3), 0)


def test_gradient_of_a_linear_model_has_lipschitz_zero():
    W = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
    X = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    lle = metrics.local_lipschitz_estimate(
        lambda X: X @ W, X, grad, key=jax.random.key(0), nr_samples=4, normalise=False
    )
    np.testing.assert_allclose(lle, 0, atol=1e-6)


def test_model_independent_explainer_survives_randomisation(tab):
    net, _, X, _ = tab
    edge = lambda model, X, targets: X  # noqa: E731 - ignores the model entirely
    res = metrics.mprt(net, X, edge, key=jax.random.key(0), abs=False)
    np.testing.assert_allclose(res.scores, 1, atol=1e-6)
    eff = metrics.efficient_mprt(net, X, edge, key=jax.random.key(0), n_bins=3)
    np.testing.assert_allclose(eff, 0, atol=1e-12)


def test_ssim_equals_scikit_image():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 20))
    b = a + rng.normal(size=(3, 20))
    ref = [
        structural_similarity(x, y, data_range=float(np.ptp(np.concatenate([x, y]))))
        for x, y in zip(a, b, strict=True)
    ]
    np.testing.assert_allclose(
        metrics.ssim(a.astype(np.float32), b.astype(np.float32)), ref, atol=1e-5
    )


def test_random_logit_draws_another_class_uniformly():
    # The explainer returns the explained class as its map: the metric's draw is readable.
    K, n = 4, 240
    X = np.zeros((n, 8), np.float32)
    X[:, K - 1] = 1.0
    f = lambda X: X[:, :K] * jnp.arange(1.0, K + 1)[None]  # noqa: E731 - predicts class K-1
    drawn = []

    def reveal(model, X, targets):
        drawn.append(np.asarray(targets))
        return jnp.ones(X.shape)

    metrics.random_logit(f, X, reveal, key=jax.random.key(0), similarity_func=lambda a, b: a[:, 0])
    ((explained, other),) = [t.reshape(2, n) for t in drawn]  # one pass: both classes
    assert np.all(explained == K - 1) and np.all(other != explained)
    counts = np.bincount(other, minlength=K)[: K - 1]
    assert counts.min() > n / (K - 1) * 0.7  # ~80 each; a fixed class would give 0


def test_a_second_call_reuses_the_program_and_reads_its_new_inputs(tab):
    """The compiled program is kept across calls with the same settings (the explainer is not
    traced again), and everything that changes comes in as an argument: a module of the same
    structure with other weights, other targets and other inputs score as with a fresh program."""
    from xaijax.metrics import explaining

    net, _, X, _ = tab
    other = _mlp(4, 6, 3, 9)  # the same structure, other weights
    traces = []

    def traced_grad(model, X, targets):
        traces.append(X.shape)
        return grad(model, X, targets)

    runs = [
        (metrics.max_sensitivity, net, X, None, dict(nr_samples=3)),
        (metrics.max_sensitivity, other, X + 0.5, np.array([2, 0, 1]), dict(nr_samples=3)),
        (metrics.mprt, net, X, None, dict(return_last_correlation=True)),
        (metrics.mprt, other, X + 0.5, None, dict(return_last_correlation=True)),
    ]
    explaining._PROGRAMS.clear()
    kept, seen = [], []
    for fn, model, x, targets, kw in runs:
        before = len(traces)
        kept.append(fn(model, x, traced_grad, targets=targets, key=jax.random.key(0), **kw))
        seen.append(len(traces) - before)
    assert seen[0] > 0 and seen[2] > 0 and seen[1] == seen[3] == 0  # kept, not traced again
    for k in (1, 3):
        fn, model, x, targets, kw = runs[k]
        explaining._PROGRAMS.clear()
        fresh = fn(model, x, traced_grad, targets=targets, key=jax.random.key(0), **kw)
        np.testing.assert_array_equal(kept[k], fresh)
        assert not np.allclose(kept[k], kept[k - 1])


def test_one_loop_over_all_phases_equals_one_loop_per_phase(tab, monkeypatch):
    """The inputs' and the perturbed rows' explanations run in one loop (one copy of the
    explainer in the program): the same numbers as a loop per phase, bit for bit (12 rows in
    chunks of 4: the first chunk holds rows of both phases)."""
    from xaijax.metrics import explaining

    net, _, X, _ = tab
    # Relative output stability: its score also reads the model's outputs on the rows.
    runs = [(metrics.relative_output_stability, dict(nr_samples=3))]
    merged = []
    original = explaining._merged_program
    monkeypatch.setattr(
        explaining, "_merged_program", lambda *a: merged.append(original(*a)) or merged[-1]
    )
    for fn, kw in runs:
        out = []
        for merge in (True, False):
            monkeypatch.setattr(explaining, "_MERGE_PHASES", merge)
            explaining._PROGRAMS.clear()
            out.append(fn(net, X, grad, key=jax.random.key(0), batch_size=5, **kw))
        np.testing.assert_array_equal(out[0], out[1])
    assert len(merged) == len(runs) and all(m is not None for m in merged)
    explaining._PROGRAMS.clear()


def test_host_and_compiled_explainers_agree_at_any_batch_size(tab):
    net, _, X, _ = tab
    key = jax.random.key(5)
    compiled = metrics.max_sensitivity(net, X, grad, key=key, nr_samples=4)

    graphdef = nnx.graphdef(net)
    grad_jit = jax.jit(lambda state, X, t: grad(nnx.merge(graphdef, state), X, t))

    def on_host(model, X, targets):  # NumPy in and out: cannot be traced
        assert isinstance(X, np.ndarray)
        return np.asarray(grad_jit(nnx.state(model), X, targets))

    host = metrics.max_sensitivity(net, X, on_host, key=key, nr_samples=4, batch_size=5)
    np.testing.assert_allclose(host, compiled, rtol=1e-5)
    single = metrics.max_sensitivity(
        net, X[1], grad, key=jax.random.split(key, 3)[1:2], nr_samples=4
    )
    np.testing.assert_allclose(single, compiled[1], rtol=1e-5)


def test_relative_stability_skips_perturbations_that_change_the_prediction(tab):
    net, twin, X, y = tab
    key, lo, hi = jax.random.key(7), -1.5, 1.5
    got = metrics.relative_input_stability(
        net, X, grad, key=key, nr_samples=S, lower_bound=lo, upper_bound=hi
    )
    # The paper's definition by brute force: the maximum over the kept perturbations.
    Xp = _noise(key, X, S, lo, hi)  # (S, n, d)
    a_all = np.asarray(grad(net, np.concatenate([X, *Xp]), np.tile(y, S + 1)))
    a_all = a_all.reshape(S + 1, *X.shape)
    pred = np.asarray(jnp.argmax(net(Xp.reshape(-1, X.shape[1])), axis=1)).reshape(S, -1)
    a0 = a_all[0]
    ratios = np.full((len(X), S), np.nan)
    for s in range(S):
        a, keep = a_all[s + 1], pred[s] == y
        num = np.linalg.norm((a0 - a) / np.where(a0 == 0, 1e-6, a0), axis=1)
        den = np.linalg.norm((X - Xp[s]) / np.where(X == 0, 1e-6, X), axis=1)
        ratios[keep, s] = (num / den)[keep]
    assert np.isnan(ratios).any() and not np.isnan(ratios).all(axis=1).any()
    np.testing.assert_allclose(got, np.nanmax(ratios, axis=1), rtol=1e-4)
    # Quantus instead scores an instance NaN as soon as one perturbation changes its class.
    q = quantus.RelativeInputStability(nr_samples=S, perturb_func=Replay(Xp), disable_warnings=True)
    ref = np.asarray(q(twin, X, y, explain_func=torch_grad))
    assert np.isnan(ref).sum() == np.isnan(ratios).any(axis=1).sum()


# -- bad input ---------------------------------------------------------------------------------
_NET = _mlp(4, 6, 3, 0)
_IMG = np.ones((1, 6, 6, 1), np.float32)


def _image_model(X):
    return X[:, 0, :2, 0]


def _nan_map(model, X, targets):
    return X * jnp.nan


@pytest.mark.parametrize(
    "name, kwargs, error, match",
    [
        ("max_sensitivity", dict(explainer="saliency"), TypeError, "^explainer must"),
        ("max_sensitivity", dict(nr_samples=0), ValueError, "^nr_samples"),
        ("avg_sensitivity", dict(key=None), TypeError, "^key is required"),
        ("max_sensitivity", dict(norm_numerator="l3"), ValueError, "^norm_numerator"),
        ("max_sensitivity", dict(upper_bound=0.1), ValueError, "^upper_bound"),
        ("max_sensitivity", dict(targets=5), ValueError, "^targets"),
        ("max_sensitivity", dict(f=lambda X: X * jnp.nan), ValueError, "^f returned NaN"),
        ("max_sensitivity", dict(explainer=_nan_map), ValueError, "^explainer returned NaN"),
        ("continuity", {}, ValueError, "^X must be images"),
        (
            "continuity",
            dict(f=_image_model, X=_IMG, perturb_baseline="grey"),
            ValueError,
            "^perturb_baseline",
        ),
        ("consistency", dict(discretise_func="hash"), ValueError, "^discretise_func"),
        ("relative_representation_stability", {}, ValueError, "^layer is required"),
        ("relative_representation_stability", dict(layer="nope"), ValueError, "^layer 'nope'"),
        (
            "relative_representation_stability",
            dict(f=lambda X: _NET(X), layer="layers/0"),
            ValueError,
            "^layer=",
        ),
        ("mprt", dict(f=lambda X: _NET(X)), TypeError, "^model must be a Flax NNX"),
        ("mprt", dict(layer_order="sideways"), ValueError, "^layer_order"),
        ("mprt", dict(similarity_func="cosine"), ValueError, "^similarity_func"),
        ("mprt", dict(layers=[("nope",)]), ValueError, "^layers: no parameters"),
        (
            "mprt",
            dict(return_average_correlation=True, skip_layers=True),
            ValueError,
            "^return_average_correlation",
        ),
        ("smooth_mprt", dict(nr_samples=0), ValueError, "^nr_samples"),
        ("efficient_mprt", dict(n_bins=0), ValueError, "^n_bins"),
        ("random_logit", dict(f=lambda X: X.sum(1)), ValueError, "^model must have K >= 2"),
        ("random_logit", dict(targets=lambda y: y[:, 0]), TypeError, "^targets"),
    ],
)
def test_bad_input_is_refused_naming_the_argument(name, kwargs, error, match):
    args = dict(f=_NET, X=np.ones((3, 4), np.float32), explainer=grad, key=jax.random.key(0))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        getattr(metrics, name)(args.pop("f"), args.pop("X"), args.pop("explainer"), **args)
