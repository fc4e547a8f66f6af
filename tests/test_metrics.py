"""Metrics on hand-made cases with known values, against a NumPy loop, and against scipy."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from xaijax import Explanation, as_model, metrics
from xaijax.zoo.data import synthetic_shapes
from xaijax.zoo.nets import MLP


def region_model(region):
    """P(class 0) rises with the mean brightness inside ``region`` (an (H, W) bool mask)."""
    r = jnp.asarray(region, jnp.float32)

    def f(X):
        inside = (X[..., 0] * r[None]).sum((1, 2)) / r.sum()
        p = jax.nn.sigmoid(8.0 * (inside - 0.5))
        return jnp.stack([p, 1.0 - p], axis=1)

    return f


# A softmax classifier on 5x5x2 images and its data: three classes, so the predicted class,
# int, per-instance and callable targets all differ.
RNG = np.random.default_rng(7)
IMAGES = RNG.random((3, 5, 5, 2)).astype(np.float32)
SALIENCY = RNG.random((3, 5, 5)).astype(np.float32)
WEIGHTS = RNG.normal(size=(50, 3)).astype(np.float32)


def softmax_model(X):
    return jax.nn.softmax(X.reshape(X.shape[0], -1) @ WEIGHTS, axis=1)


def softmax_host(X):
    logits = np.asarray(X, np.float64).reshape(len(X), -1) @ WEIGHTS.astype(np.float64)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def reference_curve(score, images, saliency, base, steps, insertion):
    """RISE's curve by a loop over images and steps; ``score(i, x)`` scores image i's input x."""
    n, H, W, _ = images.shape
    per_step = -(-(H * W) // steps)
    scores = np.zeros((n, steps + 1))
    for i in range(n):
        order = np.argsort(-saliency[i].ravel(), kind="stable")
        for k in range(steps + 1):
            changed = np.zeros(H * W, bool)
            changed[order[: min(k * per_step, H * W)]] = True
            changed = changed.reshape(H, W, 1)
            if insertion:
                x = np.where(changed, images[i], base[i])
            else:
                x = np.where(changed, base[i], images[i])
            scores[i, k] = score(i, x)
    auc = ((scores[:, 1:] + scores[:, :-1]) / 2).sum(1) / steps
    return auc, scores


def test_uniform_image_linear_model_auc_is_one_half():
    f = lambda X: jnp.stack([X.mean((1, 2, 3)), 1.0 - X.mean((1, 2, 3))], axis=1)  # noqa: E731
    sal = np.random.default_rng(0).random((2, 6, 6))
    for curve in (
        metrics.deletion_auc(f, np.ones((2, 6, 6, 1)), sal, targets=0, steps=6),
        metrics.insertion_auc(f, np.ones((2, 6, 6, 1)), sal, targets=0, steps=6, baseline="zero"),
    ):
        np.testing.assert_allclose(curve.auc, [0.5, 0.5], atol=1e-6)
        assert curve.scores.shape == (2, 7)


@pytest.mark.parametrize("insertion", [False, True])
def test_curves_equal_a_loop_over_images_and_steps(insertion):
    probs = np.asarray(softmax_host(IMAGES))
    predicted = probs.argmax(1)
    per_instance = np.array([2, 0, 1])
    margin = lambda y: y[:, 0] - y[:, 1]  # noqa: E731
    metric = metrics.insertion_auc if insertion else metrics.deletion_auc
    base = np.full_like(IMAGES, 0.25)
    cases = {  # targets -> the score of image i's perturbed input x
        None: lambda i, x: softmax_host(x[None])[0, predicted[i]],
        1: lambda i, x: softmax_host(x[None])[0, 1],
        "per_instance": lambda i, x: softmax_host(x[None])[0, per_instance[i]],
        "callable": lambda i, x: float(margin(softmax_host(x[None]))[0]),
    }
    for name, score in cases.items():
        targets = {"per_instance": per_instance, "callable": margin}.get(name, name)
        curve = metric(softmax_model, IMAGES, SALIENCY, targets=targets, steps=7, baseline=0.25)
        auc, scores = reference_curve(score, IMAGES, SALIENCY, base, 7, insertion)
        # 25 pixels in steps of 4: the last step restores the last pixel only.
        assert scores.shape == curve.scores.shape == (3, 8)
        np.testing.assert_allclose(curve.scores, scores, atol=1e-6 * np.abs(scores).max() + 1e-7)
        np.testing.assert_allclose(curve.auc, auc, atol=1e-6)


def test_curve_results_do_not_depend_on_batch_size_and_batch_size_counts_rows():
    seen = []

    def host(X):
        seen.append(len(X))
        return softmax_host(X)

    reference = metrics.deletion_auc(softmax_model, IMAGES, SALIENCY, steps=5)
    scale = np.abs(reference.scores).max()
    for batch_size in (1, 4, 7, 18, None):
        curve = metrics.deletion_auc(
            softmax_model, IMAGES, SALIENCY, steps=5, batch_size=batch_size
        )
        np.testing.assert_allclose(curve.scores, reference.scores, atol=1e-6 * scale)
    as_model(host, IMAGES)
    probes = len(seen)  # calls that check the host model's output shape, before compilation
    for batch_size in (1, 4, 7):
        seen.clear()
        curve = metrics.deletion_auc(host, IMAGES, SALIENCY, steps=5, batch_size=batch_size)
        np.testing.assert_allclose(curve.scores, reference.scores, atol=1e-6 * scale)
        # 3 images x 6 steps = 18 model rows, and 3 for the predicted class: batch_size at once.
        assert sum(seen[probes:]) >= 21 and max(seen[probes:]) <= batch_size


def test_host_model_and_scalar_output_model():
    host = metrics.insertion_auc(softmax_host, IMAGES, SALIENCY, targets=2, steps=5)
    jax_ = metrics.insertion_auc(softmax_model, IMAGES, SALIENCY, targets=2, steps=5)
    np.testing.assert_allclose(host.scores, jax_.scores, atol=1e-6)
    scalar = metrics.insertion_auc(lambda X: softmax_model(X)[:, 2], IMAGES, SALIENCY, steps=5)
    np.testing.assert_allclose(scalar.scores, jax_.scores, atol=1e-6)


def test_saliency_may_be_a_map_explanation():
    exp = Explanation(SALIENCY, np.zeros(3), IMAGES, kind="map", method="test")
    from_exp = metrics.deletion_auc(softmax_model, IMAGES, exp, steps=5)
    from_array = metrics.deletion_auc(softmax_model, IMAGES, SALIENCY, steps=5)
    np.testing.assert_array_equal(from_exp.scores, from_array.scores)
    np.testing.assert_array_equal(
        metrics.pointing_game(exp, SALIENCY > 0.5), metrics.pointing_game(SALIENCY, SALIENCY > 0.5)
    )


def test_target_is_a_deprecated_alias_of_targets():
    new = metrics.deletion_auc(softmax_model, IMAGES, SALIENCY, targets=1, steps=5)
    with pytest.warns(DeprecationWarning, match="target= is deprecated.*use targets="):
        old = metrics.deletion_auc(softmax_model, IMAGES, SALIENCY, target=1, steps=5)
    np.testing.assert_array_equal(old.scores, new.scores)
    with pytest.warns(DeprecationWarning, match="target="):
        metrics.insertion_auc(softmax_model, IMAGES, SALIENCY, target=[0, 1, 2], steps=5)
    with pytest.raises(TypeError, match="targets= only"):
        metrics.deletion_auc(softmax_model, IMAGES, SALIENCY, targets=1, target=1)
    # An error in the alias names the alias.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with pytest.raises(ValueError, match="^target must lie in"):
            metrics.deletion_auc(softmax_model, IMAGES, SALIENCY, target=3, steps=5)


def test_oracle_ordering_beats_random_ordering():
    rng = np.random.default_rng(1)
    region = np.zeros((8, 8), bool)
    region[2:5, 3:6] = True
    f = region_model(region)
    images = np.ones((4, 8, 8, 1), np.float32)
    oracle = region[None].astype(np.float32) + 0.01 * rng.random((4, 8, 8))
    random = rng.random((4, 8, 8))
    d_oracle = metrics.deletion_auc(f, images, oracle, targets=0, steps=16).auc
    d_random = metrics.deletion_auc(f, images, random, targets=0, steps=16).auc
    i_oracle = metrics.insertion_auc(f, images, oracle, targets=0, steps=16, baseline=0.0).auc
    i_random = metrics.insertion_auc(f, images, random, targets=0, steps=16, baseline=0.0).auc
    assert d_oracle.mean() < d_random.mean() - 0.2
    assert i_oracle.mean() > i_random.mean() + 0.2


def test_gaussian_blur_keeps_constants_and_mass():
    const = np.full((1, 7, 7, 2), 3.0)
    np.testing.assert_allclose(metrics.gaussian_blur(const), const, rtol=1e-6)
    # Away from the edges a blurred impulse keeps its mass and is the outer product of the taps.
    impulse = np.zeros((1, 21, 21, 1))
    impulse[0, 10, 10] = 1.0
    out = np.asarray(metrics.gaussian_blur(impulse, sigma=2.0, radius=3))[0, :, :, 0]
    taps = np.exp(-0.5 * (np.arange(-3, 4) / 2.0) ** 2)
    taps /= taps.sum()
    np.testing.assert_allclose(out[7:14, 7:14], np.outer(taps, taps), atol=1e-7)
    np.testing.assert_allclose(out.sum(), 1.0, atol=1e-6)


def test_pointing_game_and_energy_on_synthetic_shapes():
    ds = synthetic_shapes(jax.random.key(0), 6, size=24)
    perfect = ds.masks.astype(np.float32)
    assert metrics.pointing_game(perfect, ds.masks).all()
    assert (metrics.energy_in_mask(perfect, ds.masks) == 1.0).all()
    inverted = 1.0 - perfect
    assert not metrics.pointing_game(inverted, ds.masks).any()
    assert (metrics.energy_in_mask(inverted, ds.masks) == 0.0).all()
    # A peak one pixel off the object counts only within the tolerance.
    mask = np.zeros((1, 9, 9), bool)
    mask[0, 4, 4] = True
    sal = np.zeros((1, 9, 9))
    sal[0, 4, 6] = 1.0
    assert not metrics.pointing_game(sal, mask)[0]
    assert metrics.pointing_game(sal, mask, tolerance=2)[0]
    assert metrics.energy_in_mask(np.zeros((1, 9, 9)), mask)[0] == 0.0  # no division by zero


def test_sparseness_complexity_local_accuracy():
    np.testing.assert_allclose(metrics.sparseness([[0, 0, 0, 5.0], [2, 2, 2, 2.0]]), [0.75, 0.0])
    np.testing.assert_allclose(metrics.complexity([[0, 3.0], [1.0, 1.0]]), [0.0, np.log(2)])
    exp = Explanation(np.array([[1.0, -1.0], [0.5, 0.5]]), np.array([1.0, 0.0]), np.zeros((2, 2)))
    np.testing.assert_allclose(metrics.local_accuracy_gap(exp, np.array([1.0, 2.0])), [0.0, 1.0])
    # Explanations are read for their values.
    np.testing.assert_allclose(metrics.sparseness(exp), metrics.sparseness(exp.values))
    np.testing.assert_allclose(metrics.complexity(exp[0]), metrics.complexity(exp.values[:1]))


def test_local_accuracy_gap_sums_every_feature_axis_and_each_output():
    rng = np.random.default_rng(4)
    values = rng.normal(size=(2, 3, 4, 2, 5))  # (n, H, W, C, K)
    base = rng.normal(size=(2, 5))
    outputs = values.sum(axis=(1, 2, 3)) + base
    outputs[1, 3] += 0.5
    exp = Explanation(values, base, np.zeros((2, 3, 4, 2)), output_names=tuple("abcde"))
    gap = metrics.local_accuracy_gap(exp, outputs)
    expected = np.zeros((2, 5))
    expected[1, 3] = 0.5
    np.testing.assert_allclose(gap, expected, atol=1e-12 * np.abs(outputs).max())
    np.testing.assert_allclose(metrics.local_accuracy_gap(exp[1], outputs[1]), expected[1])
    path = Explanation(values, base, values[..., 0], output_names=tuple("abcde"), kind="path")
    np.testing.assert_allclose(metrics.local_accuracy_gap(path, outputs), gap)


@pytest.mark.parametrize("kind", ["map", "surrogate", "prototype"])
def test_local_accuracy_gap_refuses_kinds_without_additivity(kind):
    exp = Explanation(np.ones((2, 3)), np.zeros(2), np.ones((2, 3)), kind=kind, method="m")
    with pytest.raises(TypeError, match=f"local_accuracy_gap needs .*got kind '{kind}'"):
        metrics.local_accuracy_gap(exp, np.zeros(2))


def test_surrogate_fidelity_reads_surrogates_only():
    scores = np.array([[0.25, 0.5]])
    exp = Explanation(
        np.zeros((1, 3, 2)),
        np.zeros((1, 2)),
        np.zeros((1, 3)),
        output_names=("0", "1"),
        kind="surrogate",
        extras={"score": scores},
    )
    np.testing.assert_array_equal(metrics.surrogate_fidelity(exp), scores)
    additive = Explanation(np.zeros((1, 3)), np.zeros(1), np.zeros((1, 3)), extras={"score": 1})
    with pytest.raises(TypeError, match="surrogate_fidelity needs .*'surrogate'"):
        metrics.surrogate_fidelity(additive)


def test_spearman_equals_scipy_with_ties():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(2)
    a = rng.integers(-2, 2, size=(3, 20)).astype(float)  # many ties, negatives
    a[:, :3] = [-0.0, 0.0, -0.0]  # signed zeros tie (ranks sort integer keys of the floats)
    b = a + rng.normal(size=(3, 20))
    ours = metrics.spearman(a, b)
    ref = [spearmanr(x, y).statistic for x, y in zip(a, b, strict=True)]
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_cascading_randomization_destroys_gradient_maps():
    net = MLP(6, [32, 32], 2, rngs=nnx.Rngs(0))
    X = jnp.asarray(np.random.default_rng(3).normal(size=(16, 6)), jnp.float32)

    def saliency(m):
        return jax.vmap(jax.grad(lambda x: m(x[None])[0, 0]))(X)

    res = metrics.cascading_randomization(net, saliency, key=jax.random.key(0))
    assert res["layers"] == ["out", "hidden/1", "hidden/0"]
    assert res["spearman"].shape == (3, 16)
    assert res["spearman"][-1].mean() < 0.5  # fully randomised: maps no longer agree
    # The original module is untouched.
    np.testing.assert_array_equal(saliency(net), saliency(net))
    with pytest.raises(ValueError, match="layers: no parameters"):
        metrics.cascading_randomization(net, saliency, key=jax.random.key(0), layers=[("nope",)])


# -- bad input: one test per error, each naming the argument ----------------------------------
def curve(**kwargs):
    args = dict(f=softmax_model, images=IMAGES, saliency=SALIENCY, steps=5)
    args.update(kwargs)
    return metrics.deletion_auc(**args)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(saliency=np.ones((3, 5, 4))), ValueError, "^saliency must have shape"),
        (dict(images=np.ones((5, 5, 2))), ValueError, "^images must have shape"),
        (dict(images=np.where(IMAGES > 0.5, np.nan, IMAGES)), ValueError, "^images contains NaN"),
        (dict(saliency=SALIENCY * np.inf), ValueError, "^saliency contains NaN"),
        (dict(targets=3), ValueError, r"^targets must lie in \[0, 3\)"),
        (dict(targets=[0, 1]), ValueError, r"^targets must be an int or have shape \(3,\)"),
        (dict(targets=1.5), TypeError, "^targets must be None, an int"),
        (dict(targets=lambda y: y), ValueError, "^targets must return one score per instance"),
        (dict(steps=0), ValueError, r"^steps must be an int in \[1, 25\]"),
        (dict(steps=26), ValueError, r"^steps must be an int in \[1, 25\]"),
        (dict(steps=2.5), TypeError, "^steps must be an int"),
        (dict(batch_size=0), ValueError, "^batch_size must be an int >= 1"),
        (dict(batch_size=-3), ValueError, "^batch_size must be an int >= 1"),
        (dict(batch_size=2.0), TypeError, "^batch_size must be an int >= 1"),
        (dict(batch_size=True), TypeError, "^batch_size must be an int >= 1"),
        (dict(baseline="noise"), ValueError, "^baseline must be 'zero'"),
        (dict(baseline=np.ones((2, 5, 5, 2))), ValueError, "^baseline must be 'zero'"),
        (dict(baseline=np.nan), ValueError, "^baseline contains NaN"),
    ],
)
def test_curve_bad_input(kwargs, error, match):
    with pytest.raises(error, match=match):
        curve(**kwargs)


def test_curve_reports_non_finite_model_scores():
    def f(X):  # NaN once the top-left pixel is deleted
        p = softmax_model(X)
        return jnp.where((X[:, 0, 0, 0] == 0)[:, None], jnp.nan, p)

    saliency = np.zeros((3, 5, 5), np.float32)
    saliency[:, 0, 0] = 1.0
    with pytest.raises(ValueError, match="^f returned NaN or inf on the perturbed images"):
        metrics.deletion_auc(f, IMAGES, saliency, targets=0, steps=5)


def test_other_metrics_bad_input():
    with pytest.raises(ValueError, match="^masks must have shape"):
        metrics.pointing_game(np.ones((1, 4, 4)), np.ones((1, 4, 5)))
    with pytest.raises(ValueError, match="^tolerance must be a finite number >= 0"):
        metrics.pointing_game(np.ones((1, 4, 4)), np.ones((1, 4, 4)), tolerance=-1)
    with pytest.raises(ValueError, match="^sigma must be a finite number > 0"):
        metrics.gaussian_blur(np.ones((1, 4, 4, 1)), sigma=0.0)
    with pytest.raises(ValueError, match="^outputs must have shape"):
        exp = Explanation(np.ones((2, 3)), np.zeros(2), np.ones((2, 3)))
        metrics.local_accuracy_gap(exp, np.zeros(3))
    multi = Explanation(
        np.ones((2, 3, 2)), np.zeros((2, 2)), np.ones((2, 3)), output_names=("a", "b")
    )
    with pytest.raises(ValueError, match=r"^attributions is an Explanation with an output axis"):
        metrics.sparseness(multi)
    with pytest.raises(ValueError, match="^a and b must have the same shape"):
        metrics.spearman(np.ones((2, 3)), np.ones((2, 4)))
