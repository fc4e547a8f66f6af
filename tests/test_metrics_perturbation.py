"""Quantus-style faithfulness metrics against Quantus 0.6 on a PyTorch twin, and by hand.

Quantus runs inside the tests on a twin of the JAX model (identical weights) with the same
inputs, attributions and perturbations: fixed baselines, and for the random subsets of
faithfulness correlation the subsets xaijax draws, fed to Quantus through ``np.random.choice``.
Quantus imports torchvision through zennit, so ``gradcam_standin.install()`` runs before the
import. Quantus calls ``np.trapz``, which NumPy 2.4 removed: the tests alias it.
"""

import functools

import gradcam_standin
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax import metrics
from xaijax.core.contract import instance_keys
from xaijax.metrics.perturb import random_subset, random_subset_mask

gradcam_standin.install()
import quantus  # noqa: E402
import torch  # noqa: E402

N, H, W, K = 3, 8, 8, 3
RNG = np.random.default_rng(0)
W1 = RNG.normal(size=(H * W, 16)).astype(np.float32) / 4
B1 = RNG.normal(size=16).astype(np.float32) / 4
W2 = RNG.normal(size=(16, K)).astype(np.float32)
X = RNG.uniform(size=(N, H, W, 1)).astype(np.float32)
A = RNG.normal(size=(N, H, W)).astype(np.float32)


def jax_model(x):
    h = jnp.tanh(x.reshape(x.shape[0], -1) @ W1 + B1)
    return jax.nn.softmax(h @ W2, axis=1)


def torch_twin():
    lin1, lin2 = torch.nn.Linear(H * W, 16), torch.nn.Linear(16, K, bias=False)
    lin1.weight.data, lin1.bias.data = torch.tensor(W1.T), torch.tensor(B1)
    lin2.weight.data = torch.tensor(W2.T)
    return torch.nn.Sequential(torch.nn.Flatten(), lin1, torch.nn.Tanh(), lin2, torch.nn.Softmax(1))


@pytest.fixture(scope="module")
def twin():
    model = torch_twin().eval()
    with torch.no_grad():
        ref = model(torch.tensor(X.transpose(0, 3, 1, 2))).numpy()
    np.testing.assert_allclose(ref, np.asarray(jax_model(X)), atol=1e-6)
    return model


@pytest.fixture(autouse=True)
def trapz(monkeypatch):
    if not hasattr(np, "trapz"):
        monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)


Y = np.asarray(jax_model(X)).argmax(1)


def quantus_scores(metric, model, **kwargs):
    out = metric(
        model=model,
        x_batch=X.transpose(0, 3, 1, 2),
        y_batch=Y,
        a_batch=A[:, None],
        channel_first=True,
        device="cpu",
        softmax=True,  # Quantus drops a final Softmax layer unless told otherwise
        **kwargs,
    )
    return np.asarray(out, np.float64)


DETERMINISTIC = [
    ("faithfulness_estimate", "FaithfulnessEstimate", dict(features_in_step=4)),
    (
        "monotonicity_correlation",
        "MonotonicityCorrelation",
        dict(features_in_step=4, perturb_baseline="black", nr_samples=2),
    ),
    ("pixel_flipping", "PixelFlipping", dict(features_in_step=8)),
    ("region_perturbation", "RegionPerturbation", dict(patch_size=4, order="morf")),
    ("region_perturbation", "RegionPerturbation", dict(patch_size=3, order="lerf")),
    ("selectivity", "Selectivity", dict(patch_size=4, perturb_baseline="white")),
]


@pytest.mark.parametrize("ours,theirs,kwargs", DETERMINISTIC)
def test_deterministic_metrics_equal_quantus(twin, ours, theirs, kwargs):
    ref = quantus_scores(getattr(quantus, theirs)(disable_warnings=True, **kwargs), twin)
    got = getattr(metrics, ours)(jax_model, X, A, targets=Y, **kwargs)
    if isinstance(got, metrics.Curve):
        np.testing.assert_allclose(got.scores, ref, atol=1e-4)
        np.testing.assert_allclose(got.auc, np.trapezoid(ref, dx=1, axis=1), atol=1e-4)
    else:
        np.testing.assert_allclose(got, ref, atol=1e-4)


def test_faithfulness_correlation_equals_quantus_on_shared_subsets(twin, monkeypatch):
    runs, size, key = 5, 10, jax.random.key(3)
    keys = instance_keys(key, N)
    subsets = iter(
        np.asarray(random_subset(keys[i], t, H * W))[:size] for t in range(runs) for i in range(N)
    )
    monkeypatch.setattr(np.random, "choice", lambda *a, **k: next(subsets))
    metric = quantus.FaithfulnessCorrelation(
        nr_runs=runs, subset_size=size, return_aggregate=False, disable_warnings=True
    )
    ref = quantus_scores(metric, twin)
    got = metrics.faithfulness_correlation(
        jax_model, X, A, targets=Y, key=key, nr_runs=runs, subset_size=size
    )
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_irof_equals_quantus_on_shared_segments(twin, monkeypatch):
    seg = (np.arange(H)[:, None] // 4) * 2 + (np.arange(W)[None] // 4)
    seg = np.broadcast_to(seg, (N, H, W))
    monkeypatch.setattr(quantus.helpers.utils, "get_superpixel_segments", lambda img, **k: seg[0])
    ref = quantus_scores(
        quantus.IROF(perturb_baseline=0.0, return_aggregate=False, disable_warnings=True), twin
    )
    got = metrics.irof(jax_model, X, A, targets=Y, segments=seg, perturb_baseline=0.0)
    np.testing.assert_allclose(got, ref, atol=1e-4)


def test_sufficiency_equals_quantus(twin):
    a = np.repeat(A[:1], N, 0) + RNG.normal(size=A.shape).astype(np.float32) * [
        [[0]],
        [[0.1]],
        [[3]],
    ]
    ref = quantus.Sufficiency(threshold=0.6, disable_warnings=True, return_aggregate=False)(
        model=twin,
        x_batch=X.transpose(0, 3, 1, 2),
        y_batch=Y,
        a_batch=a[:, None],
        channel_first=True,
        device="cpu",
        softmax=True,
    )
    got = metrics.sufficiency(jax_model, X, a, threshold=0.6)
    np.testing.assert_allclose(got, np.asarray(ref, np.float64), atol=1e-6)


def test_monotonicity_against_the_definition(twin):
    """Arya et al.: the score never decreases while features enter in increasing attribution
    order. Quantus 0.6's Monotonicity is always True (it "inserts" the baseline value into the
    baseline image, so its curve is constant): checked against a loop over the insertions."""
    ref = quantus_scores(quantus.Monotonicity(features_in_step=8, disable_warnings=True), twin)
    got = metrics.monotonicity(jax_model, X, A, targets=Y, features_in_step=8)
    a = np.abs(A.reshape(N, -1))
    loop = []
    for i in range(N):
        x, order, preds = np.full(H * W, X[i].min()), np.argsort(a[i]), []
        for t in range(0, H * W, 8):
            x[order[t : t + 8]] = X[i].reshape(-1)[order[t : t + 8]]
            preds.append(float(jax_model(x.reshape(1, H, W, 1))[0, Y[i]]))
        loop.append(bool(np.all(np.diff(preds) >= 0)))
    assert got.tolist() == loop
    assert ref.astype(bool).all() and not got.all()  # Quantus's defect, not ours
    w, x4 = np.arange(1.0, 5.0), np.arange(1.0, 5.0)[None]
    mono = functools.partial(metrics.monotonicity, perturb_baseline=0.0)
    assert mono(lambda x: x @ w, x4, w * x4).tolist() == [True]
    assert mono(lambda x: x @ w, x4, -w * x4, abs=False).tolist() == [True]
    assert mono(lambda x: -(x @ w), x4, w * x4).tolist() == [False]


def test_sensitivity_n_equals_a_loop_with_the_same_subsets():
    """The paper's sensitivity-n (Ancona et al.): random subsets per size (Quantus's differs)."""
    key, samples = jax.random.key(1), 4
    got = metrics.sensitivity_n(
        jax_model,
        X[:2],
        A[:2],
        targets=Y[:2],
        key=key,
        n_max_percentage=0.25,
        features_in_step=8,
        nr_samples=samples,
        perturb_baseline=0.0,
        normalise=False,
    )
    keys = instance_keys(key, 2)
    for i in range(2):
        y0 = float(jax_model(X[i : i + 1])[0, Y[i]])
        for j, size in enumerate([8, 16]):
            atts, drops = [], []
            for r in range(samples):
                sub = np.asarray(random_subset(keys[i], j * samples + r, H * W))[:size]
                x = X[i].reshape(-1).copy()
                x[sub] = 0.0
                drops.append(y0 - float(jax_model(x.reshape(1, H, W, 1))[0, Y[i]]))
                atts.append(A[i].reshape(-1)[sub].sum())
            np.testing.assert_allclose(got[i, j], np.corrcoef(atts, drops)[0, 1], atol=1e-4)


def test_linear_model_with_exact_attribution_scores_one():
    X2 = np.random.default_rng(1).normal(size=(4, 7))
    w = np.random.default_rng(2).normal(size=7)
    a = w * (X2 - X2.min(1, keepdims=True))  # replaced by "black": the instance minimum
    f = lambda x: x @ w  # noqa: E731
    np.testing.assert_allclose(
        metrics.faithfulness_correlation(
            f, X2, a, key=jax.random.key(0), nr_runs=30, subset_size=3
        ),
        1.0,
        atol=1e-5,
    )
    np.testing.assert_allclose(metrics.faithfulness_estimate(f, X2, a), 1.0, atol=1e-5)
    r = metrics.sensitivity_n(f, X2, a, key=jax.random.key(0), nr_samples=20)
    np.testing.assert_allclose(r, 1.0, atol=1e-5)
    wrong = -a
    assert np.all(metrics.faithfulness_estimate(f, X2, wrong) < -0.99)


def test_rgb_images_batch_size_invariance_and_uniform_baseline():
    Xc = RNG.uniform(size=(2, 6, 6, 3)).astype(np.float32)
    f = lambda x: jnp.stack([x.mean((1, 2, 3)), x[:, :3].sum((1, 2, 3))], 1)  # noqa: E731
    a = RNG.normal(size=(2, 6, 6)).astype(np.float32)
    full = metrics.pixel_flipping(f, Xc, a, targets=1, features_in_step=5)
    small = metrics.pixel_flipping(f, Xc, a, targets=1, features_in_step=5, batch_size=3)
    np.testing.assert_allclose(full.scores, small.scores, atol=1e-6)
    # Deleting whole pixels (all 3 channels): the first step removes the top-5 pixels.
    top = np.argsort(-a.reshape(2, -1), 1)[:, :5]
    x = Xc.reshape(2, 36, 3).copy()
    for i in range(2):
        x[i, top[i]] = Xc[i].min()
    np.testing.assert_allclose(
        full.scores[:, 0], np.asarray(f(x.reshape(Xc.shape)))[:, 1], atol=1e-5
    )
    k = jax.random.key(5)
    m1 = metrics.monotonicity_correlation(
        f, Xc, a, targets=0, key=k, nr_samples=3, features_in_step=9, batch_size=7
    )
    m2 = metrics.monotonicity_correlation(
        f, Xc, a, targets=0, key=k, nr_samples=3, features_in_step=9
    )
    np.testing.assert_allclose(m1, m2, atol=1e-6)
    assert np.all(np.abs(m1) <= 1)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(attributions=np.zeros((N, 4, 4))), ValueError, "attributions"),
        (dict(features_in_step=0), ValueError, "features_in_step"),
        (dict(features_in_step=1.5), TypeError, "features_in_step"),
        (dict(perturb_baseline="grey"), ValueError, "perturb_baseline"),
        (dict(targets=K), ValueError, "targets"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = dict(attributions=A) | kwargs
    a = args.pop("attributions")
    with pytest.raises(error, match=match):
        metrics.pixel_flipping(jax_model, X, a, **args)


def test_nan_model_output_raises():
    with pytest.raises(ValueError, match="NaN"):
        metrics.pixel_flipping(lambda x: jnp.log(x.sum((1, 2, 3)) - 20), X, A, features_in_step=16)


def test_road_imputation_and_accuracy_equal_quantus(twin):
    """Noise 0 on both sides. Quantus's ROAD returns the mean over instances per percentage."""
    from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation

    from xaijax.metrics.perturb import noisy_linear_imputation

    img = RNG.uniform(size=(2, H, W)).astype(np.float32)  # (C, H, W): two channels
    idx = RNG.choice(H * W, 40, replace=False)
    ref = quantus_imputation(img, idx, noise=0.0)
    removed = np.zeros(H * W, bool)
    removed[idx] = True
    got = noisy_linear_imputation(
        jnp.asarray(img.transpose(1, 2, 0)),
        removed.reshape(H, W),
        jax.random.key(0),
        0.0,
        maxiter=H * W,
    )
    np.testing.assert_allclose(np.asarray(got).transpose(2, 0, 1), ref, atol=1e-4)
    pct = [10, 30, 50, 70, 90]
    metric = quantus.ROAD(percentages=pct, noise=0.0, disable_warnings=True)
    ref = metric(
        model=twin,
        x_batch=X.transpose(0, 3, 1, 2),
        y_batch=Y,
        a_batch=A[:, None],
        channel_first=True,
        device="cpu",
        softmax=True,
    )
    got = metrics.road(jax_model, X, A, targets=Y, percentages=pct, noise=0.0)
    np.testing.assert_allclose(got.mean(0), [ref[p] for p in pct], atol=1e-6)
    assert got.shape == (N, len(pct)) and set(np.unique(got)) <= {0.0, 1.0}


def test_infidelity_equals_quantus_and_the_definition(twin):
    """With one patch per size Quantus's cumulative removal (its defect) equals removing each
    patch alone; with several patches the check is a loop over Yeh et al.'s definition."""
    metric = quantus.Infidelity(
        perturb_patch_sizes=[8], n_perturb_samples=1, return_aggregate=False, disable_warnings=True
    )
    ref = quantus_scores(metric, twin)
    got = metrics.infidelity(jax_model, X, A, targets=Y, perturb_patch_sizes=[8])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6)
    got = metrics.infidelity(jax_model, X, A, targets=Y, perturb_patch_sizes=[3, 4])
    for i in range(N):
        y0, per_size = float(jax_model(X[i : i + 1])[0, Y[i]]), []
        for p in (3, 4):
            losses = []
            for r in range(0, H, p):
                for c in range(0, W, p):
                    x = X[i].copy()
                    x[r : r + p, c : c + p] = X[i].min()
                    drop = y0 - float(jax_model(x[None])[0, Y[i]])
                    losses.append((np.sum(A[i] * (X[i] - x)[..., 0]) - drop) ** 2)
            per_size.append(np.mean(losses))
        np.testing.assert_allclose(got[i], np.mean(per_size), rtol=1e-4)


def _row_counter():
    seen = []

    def counted(x):
        # An operand computed from x, so that a vmapped call reports its own rows too.
        jax.debug.callback(lambda a: seen.append(int(np.size(a))), x.reshape(x.shape[0], -1)[:, 0])
        return jax_model(x)

    return counted, seen


@pytest.mark.parametrize("batch_size", [5, 13])
def test_perturbation_metrics_run_their_rows_in_the_fewest_most_even_chunks(batch_size):
    # 3 images x 16 steps = 48 rows: at 13 rows per chunk, 4 chunks of 12 (no padding), not
    # 13 + 13 + 13 + 9 padded to 52. (The calls before the chunks: the model's probe and the
    # unperturbed images.)
    for run, total in (
        (lambda f: metrics.pixel_flipping(f, X, A, features_in_step=4, batch_size=batch_size), 48),
        (lambda f: metrics.deletion_auc(f, X, A, targets=0, steps=7, batch_size=batch_size), 24),
    ):
        counted, seen = _row_counter()
        run(counted)
        chunks = -(-total // batch_size)
        size = -(-total // chunks)
        assert seen[-chunks:] == [size] * chunks, seen


@pytest.mark.parametrize("F", [1, 7, 64, 5000])
def test_random_subset_is_a_uniform_random_order(F):
    key = jax.random.key(3)
    orders = np.asarray(jax.vmap(lambda t: random_subset(key, t, F))(jnp.arange(400)))
    assert orders.dtype == np.int32 and (np.sort(orders, axis=1) == np.arange(F)).all()
    if F in (7, 64):
        # Each feature is among the first k with probability k / F: within 5 standard errors.
        k = max(1, F // 4)
        counts = np.bincount(orders[:, :k].ravel(), minlength=F)
        p = k / F
        assert np.abs(counts / 400 - p).max() < 5 * np.sqrt(p * (1 - p) / 400)
        assert len({tuple(o) for o in orders}) > 390  # rows draw their own orders


@pytest.mark.parametrize("F", [1, 7, 1024, 5000])
def test_random_subset_mask_holds_the_first_k_of_random_subset(F):
    """The metrics' masks (a binary search for the k-th smallest packed word, no sort) against
    the sorted order the tests feed to Quantus."""
    key = jax.random.key(5)
    ks = np.unique([0, 1, F // 3, F - 1, F])
    t = jnp.arange(len(ks))
    masks = np.asarray(jax.vmap(random_subset_mask, (None, 0, None, 0))(key, t, F, ks))
    for j, k in enumerate(ks):
        expected = np.zeros(F, bool)
        expected[np.asarray(random_subset(key, j, F))[:k]] = True
        np.testing.assert_array_equal(masks[j], expected)


def test_sufficiency_distances_equal_cdist():
    """The Euclidean distances by one product of centred rows against SciPy's cdist."""
    import scipy.spatial.distance

    from xaijax.metrics.perturbation import _distances

    a = np.random.default_rng(1).normal(size=(9, 50)) + 5
    a[3] = a[2]  # a duplicate row: 0 apart
    a[:, 7] = 1.0  # a constant column: cdist's NaNs for seuclidean
    for metric in ("euclidean", "sqeuclidean", "seuclidean", "cityblock"):
        ref = scipy.spatial.distance.cdist(a, a, metric=metric)
        np.testing.assert_allclose(_distances(a, metric), ref, rtol=1e-12, atol=1e-15)
    ref = scipy.spatial.distance.cdist(a[:, :7], a[:, :7], metric="seuclidean")
    np.testing.assert_allclose(_distances(a[:, :7], "seuclidean"), ref, rtol=1e-12, atol=1e-15)


def test_uniform_baseline_drawn_for_the_band_alone_equals_the_full_draw(monkeypatch):
    """Narrow bands draw the uniform baseline for their features alone (threefry counters):
    the draws and the scores equal those of the full ``jax.random.uniform`` draw."""
    from xaijax.metrics import perturb

    key = jax.random.fold_in(jax.random.key(3), 5)
    full = jax.random.uniform(key, (H * W, 3), jnp.float32).reshape(-1)
    flat = jnp.asarray([0, 7, 100, H * W * 3 - 1])
    np.testing.assert_array_equal(perturb.uniform_at(key, flat), full[flat])
    assert perturb.uniform_draws_by_index(jax.random.split(key, 2), np.float32)
    args = dict(targets=Y, key=jax.random.key(1), nr_samples=3, features_in_step=4)
    narrow = metrics.monotonicity_correlation(jax_model, X, A, **args)
    monkeypatch.setattr(perturb, "_narrow_bands", lambda *a: (None, None))
    np.testing.assert_array_equal(metrics.monotonicity_correlation(jax_model, X, A, **args), narrow)
