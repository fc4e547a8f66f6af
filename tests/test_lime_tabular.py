"""LIME tabular and the shared surrogate, checked against the `lime` package on identical data."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compiles import count_compiles
from lime.discretize import DecileDiscretizer, EntropyDiscretizer, QuartileDiscretizer
from lime.lime_base import LimeBase
from lime.lime_tabular import LimeTabularExplainer
from sklearn.datasets import load_breast_cancer

from xaijax.lime import explain_with_data, fit_discretizer, lime_tabular, sample_neighbourhood
from xaijax.lime import tabular as tabular_module

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _close(a, b, rtol=1e-5):
    """Float32 agreement relative to the whole result's magnitude, not to single entries (a
    coefficient that nearly cancels to 0 carries the rounding of the largest ones)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * max(1e-30, np.abs(b).max()))


# -- the surrogate: LimeBase.explain_instance_with_data on the same neighbourhood --------------
def _neighbourhood(binary, seed=0, S=1500, M=9):
    rng = np.random.default_rng(seed)
    if binary:
        Z = (rng.random((S, M)) < 0.6).astype(np.float64)
        Z[0] = 1.0
    else:
        Z = rng.normal(size=(S, M))
    logits = Z @ rng.normal(size=M) + 0.3 * rng.normal(size=S)
    p = 1.0 / (1.0 + np.exp(-logits))
    Y = np.stack([1.0 - p, p], axis=1)
    d = np.sqrt(((Z - Z[0]) ** 2).sum(axis=1))
    return Z, Y, d, 0.75 * np.sqrt(M)


# Jitted once per configuration; the binary and continuous cases share the compilation.
_explain_with_data = jax.jit(
    explain_with_data, static_argnames=("kernel_width", "num_features", "feature_selection")
)
_sample = jax.jit(tabular_module._sample, static_argnums=(3, 4, 5))


@pytest.mark.parametrize("binary", [True, False])
@pytest.mark.parametrize(
    "method,num_features",
    [
        ("none", 9),
        ("forward_selection", 4),
        ("highest_weights", 5),
        ("auto", 3),
        ("auto", 8),
        ("lasso_path", 4),
    ],
)
def test_surrogate_matches_lime_base(binary, method, num_features):
    _assert_matches_lime_base(*_neighbourhood(binary), method, num_features)


@pytest.mark.parametrize("method,num_features", [("forward_selection", 5), ("auto", 9)])
def test_surrogate_with_degenerate_columns_matches_lime_base(method, num_features):
    # A constant column and a duplicated column: forward selection must not pick the copy or the
    # constant while a real feature still adds fit, and the ridge fit must leave them at 0.
    Z, Y, _, width = _neighbourhood(True, seed=1)
    Z[:, 4] = 1.0
    Z[:, 7] = Z[:, 2]
    d = np.sqrt(((Z - Z[0]) ** 2).sum(axis=1))
    _assert_matches_lime_base(Z, Y, d, width, method, num_features)


def _assert_matches_lime_base(Z, Y, d, width, method, num_features):
    """Our fit for label 1 equals ``LimeBase.explain_instance_with_data`` on the same data."""
    base = LimeBase(lambda dist: np.sqrt(np.exp(-(dist**2) / width**2)))
    intercept, exp, score, local_pred = base.explain_instance_with_data(
        Z, Y, d, 1, num_features, feature_selection=method
    )
    coef = np.zeros(Z.shape[1])
    for j, w in exp:
        coef[j] = w
    fit = _explain_with_data(
        Z, Y[:, 1], d, kernel_width=width, num_features=num_features, feature_selection=method
    )
    assert set(np.flatnonzero(np.asarray(fit.selected))) == {j for j, _ in exp}
    # Float32 against lime's float64, to 1e-5 of each quantity's magnitude.
    _close(fit.coef, coef)
    _close(fit.intercept, intercept)
    _close(fit.score, score)
    _close(fit.local_pred, local_pred[0])


def test_unknown_feature_selection_is_rejected():
    Z, Y, d, width = _neighbourhood(True)
    with pytest.raises(ValueError, match="feature_selection"):
        explain_with_data(Z, Y[:, 1], d, kernel_width=width, feature_selection="lars")


# -- discretizers --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cancer():
    data = load_breast_cancer()
    return data.data, data.target, list(data.feature_names)


@pytest.mark.parametrize(
    "name,cls", [("quartile", QuartileDiscretizer), ("decile", DecileDiscretizer)]
)
def test_bins_match_lime(cancer, name, cls):
    X, y, names = cancer
    ref = cls(X, [], names, labels=y)
    stats = fit_discretizer(X, discretizer=name, feature_names=names)
    for j in range(X.shape[1]):
        edges = stats.edges[j][np.isfinite(stats.edges[j])]
        nb = len(edges) + 1
        np.testing.assert_allclose(edges, ref.lambdas[j].__defaults__[0])
        np.testing.assert_allclose(stats.bin_mean[j, :nb], ref.means[j])
        np.testing.assert_allclose(stats.bin_std[j, :nb], ref.stds[j])
        np.testing.assert_allclose(stats.bin_min[j, :nb], ref.mins[j])
        np.testing.assert_allclose(stats.bin_max[j, :nb], ref.maxs[j])
        assert list(stats.bin_names[j]) == ref.names[j]


def test_entropy_bins_match_lime(cancer):
    X, y, names = cancer
    ref = EntropyDiscretizer(X[:, :6], [], names[:6], labels=y, random_state=0)
    stats = fit_discretizer(X[:, :6], discretizer="entropy", training_labels=y)
    for j in range(6):
        edges = stats.edges[j][np.isfinite(stats.edges[j])]
        np.testing.assert_allclose(edges, ref.lambdas[j].__defaults__[0])


def test_training_frequencies_and_scaler_match_lime(cancer):
    X, _, names = cancer
    ref = LimeTabularExplainer(X[:, :5], feature_names=names[:5], random_state=0)
    stats = fit_discretizer(X[:, :5])
    for j in range(5):
        present = stats.freqs[j] > 0
        np.testing.assert_allclose(stats.freqs[j][present], ref.feature_frequencies[j])
        np.testing.assert_array_equal(stats.values[j][present], ref.feature_values[j])
    cont = LimeTabularExplainer(X[:, :5], discretize_continuous=False, categorical_features=[4])
    stats = fit_discretizer(X[:, :5], discretize_continuous=False, categorical_features=[4])
    np.testing.assert_allclose(stats.mean, cont.scaler.mean_)
    np.testing.assert_allclose(stats.scale, cont.scaler.scale_)


# -- sampling semantics ------------------------------------------------------------------------
def _jax_stats(stats):
    arrays = ("edges values freqs bin_mean bin_std bin_min bin_max quantiles mean scale").split()
    return stats._replace(
        **{k: jnp.asarray(getattr(stats, k), jnp.float32) for k in arrays},
        kind=jnp.asarray(stats.kind),
        names=None,
        bin_names=None,
    )


def test_discretized_sampling_semantics(cancer):
    X, _, _ = cancer
    stats = fit_discretizer(X[:, :4])
    x = jnp.asarray(X[7, :4], jnp.float32)
    Z, inputs = _sample(_jax_stats(stats), x, jax.random.key(1), 4000, False, (2,))
    Z, inputs = np.asarray(Z), np.asarray(inputs)
    assert np.all(Z[0] == 1) and np.allclose(inputs[0], X[7, :4])
    for j in range(4):
        edges = stats.edges[j][np.isfinite(stats.edges[j])]
        bins = np.searchsorted(edges, inputs[1:, j])
        # Interpretable feature = "same bin as the instance"; values land inside their bin.
        np.testing.assert_array_equal(Z[1:, j], bins == np.searchsorted(edges, X[7, j]))
        assert inputs[1:, j].min() >= X[:, j].min() - 1e-4
        assert inputs[1:, j].max() <= X[:, j].max() + 1e-4
        # Bins are drawn by their training frequency (4000 draws: 3 sigma of a 1/4 share).
        freq = np.bincount(bins, minlength=len(edges) + 1) / len(bins)
        np.testing.assert_allclose(freq, stats.freqs[j, : len(edges) + 1], atol=0.03)


def test_public_neighbourhood_is_the_one_lime_tabular_fits(cancer, logistic):
    # The surrogate refitted on sample_neighbourhood's rows with instance i's key equals
    # lime_tabular's values for instance i: the same sampler, the same key rule.
    X, _, _ = cancer
    stats = fit_discretizer(X)
    key, n, S = jax.random.key(3), 3, 400
    opts = dict(num_samples=S, num_features=5, feature_selection="highest_weights")
    exp = lime_tabular(logistic, X[:n], stats, targets=1, key=key, **opts)
    width = 0.75 * np.sqrt(X.shape[1])
    for i, k in enumerate(jax.random.split(key, n)):
        features, inputs = sample_neighbourhood(stats, X[i], k, S)
        assert features.shape == inputs.shape == (S, X.shape[1])
        np.testing.assert_allclose(inputs[0], X[i], rtol=1e-6)
        y = np.asarray(logistic(inputs))[:, 1]
        d = np.sqrt(((np.asarray(features) - np.asarray(features)[:1]) ** 2).sum(1))
        fit = explain_with_data(
            features, y, d, kernel_width=width, num_features=5, feature_selection="highest_weights"
        )
        _close(exp.values[i], fit.coef, rtol=1e-4)
    with pytest.raises(TypeError, match="stats"):
        sample_neighbourhood(X, X[0], key)
    with pytest.raises(ValueError, match="x must be one instance"):
        sample_neighbourhood(stats, X[:2], key)
    with pytest.raises(ValueError, match="num_samples"):
        sample_neighbourhood(stats, X[0], key, 1)


def test_truncated_normal_tables_match_scipy(cancer):
    # Every one of the 65536 16-bit uniforms, through the table, against scipy's truncated
    # normal quantile in float64: the breast-cancer bins and heavy-tailed columns (bins reaching
    # 7 standard deviations from their mean).
    from scipy.stats import truncnorm

    rng = np.random.default_rng(0)
    heavy = np.column_stack([rng.lognormal(0, 1.5, 500), rng.standard_t(2, 500)])
    u16 = jnp.arange(65536, dtype=jnp.uint32)
    draw = jax.jit(tabular_module._truncnorm_draw)
    u = (np.arange(65536) + 0.5) / 65536
    for data in (cancer[0][:, [0, 3, 14]], heavy):
        stats = fit_discretizer(data)
        for j in range(data.shape[1]):
            for b in range(4):
                mu, sd = stats.bin_mean[j, b], stats.bin_std[j, b]
                lo, hi = stats.bin_min[j, b], stats.bin_max[j, b]
                exact = truncnorm.ppf(u, (lo - mu) / sd, (hi - mu) / sd, loc=mu, scale=sd)
                table = jnp.asarray(stats.quantiles[j, b], jnp.float32)
                ours = np.asarray(draw(table, jnp.zeros((), jnp.int32), u16), np.float64)
                # Interpolation: below 1e-3 bin standard deviations (measured 6.3e-4); float32.
                np.testing.assert_allclose(ours, exact, rtol=1e-6, atol=1e-3 * sd)
                # The 256 extreme values at each end are tabulated exactly.
                ends = np.r_[0:256, 65280:65536]
                np.testing.assert_allclose(ours[ends], exact[ends], rtol=1e-6, atol=1e-6 * sd)
                assert lo <= ours.min() and ours.max() <= hi * (1 + 1e-7)


def test_continuous_and_categorical_sampling(cancer):
    X, _, _ = cancer
    data = X[:, :3].copy()
    data[:, 2] = (data[:, 2] > np.median(data[:, 2])).astype(float) + 2 * (data[:, 0] > 15)
    stats = fit_discretizer(data, discretize_continuous=False, categorical_features=[2])
    x = jnp.asarray(data[3], jnp.float32)
    Z, inputs = _sample(_jax_stats(stats), x, jax.random.key(2), 4000, False, (0, 1))
    Z, inputs = np.asarray(Z), np.asarray(inputs)
    # Continuous: normal around the training mean with the training std; feature = standardised.
    np.testing.assert_allclose(inputs[1:, :2].mean(0), data[:, :2].mean(0), rtol=0.05)
    np.testing.assert_allclose(inputs[1:, :2].std(0), data[:, :2].std(0), rtol=0.05)
    scaled = (inputs[:, :2] - stats.mean[:2]) / stats.scale[:2]
    np.testing.assert_allclose(Z[:, :2], scaled, rtol=1e-4, atol=1e-4)
    # Categorical: training values by frequency; feature = same value as the instance.
    values, counts = np.unique(data[:, 2], return_counts=True)
    freq = np.array([np.mean(inputs[1:, 2] == v) for v in values])
    np.testing.assert_allclose(freq, counts / counts.sum(), atol=0.03)
    np.testing.assert_array_equal(Z[1:, 2], inputs[1:, 2] == data[3, 2])
    around, _ = _sample(_jax_stats(stats), x, jax.random.key(2), 4000, True, (0, 1))
    centre = (data[3, :2] - stats.mean[:2]) / stats.scale[:2]
    np.testing.assert_allclose(np.asarray(around)[1:, :2].mean(0), centre, atol=0.1)


# -- end to end --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def logistic(cancer):
    X, y, _ = cancer
    mean, std = X.mean(0), X.std(0)
    w = np.linalg.lstsq((X - mean) / std, 2.0 * y - 1.0, rcond=None)[0]
    W = jnp.asarray(w / std * 3.0, jnp.float32)
    b = float(-(mean / std * w).sum() * 3.0)

    def f(Z):
        z = Z @ W + b
        return jnp.stack([jax.nn.sigmoid(-z), jax.nn.sigmoid(z)], axis=1)

    return f


def test_top5_features_agree_with_lime(cancer, logistic):
    X, _, names = cancer
    rows = np.arange(0, 560, 70)  # 8 instances
    exp = lime_tabular(
        logistic, X[rows], X, key=jax.random.key(0), num_samples=5000, feature_names=names
    )
    ref = LimeTabularExplainer(X, feature_names=names, random_state=0)

    def predict(Z):
        return np.asarray(logistic(jnp.asarray(Z, jnp.float32)), np.float64)

    overlap = []
    for i, r in enumerate(rows):
        e = ref.explain_instance(X[r], predict, labels=(1,), num_features=10, num_samples=5000)
        theirs = {j for j, _ in sorted(e.local_exp[1], key=lambda t: -abs(t[1]))[:5]}
        ours = set(np.argsort(-np.abs(np.asarray(exp.values[i, :, 1])))[:5].tolist())
        overlap.append(len(theirs & ours) / 5)
        # The readable labels are lime's discretized names.
        lime_names = dict(e.as_list(1))
        for j in ours & theirs:
            assert exp.extras["feature_labels"][i, j] in lime_names
    # Two independent samplings of the same explainer agree on ~80% of the top 5 (measured 0.83
    # on 20 instances); a broken sampler or kernel drops this towards chance (5/30).
    assert np.mean(overlap) >= 0.6, overlap


# One configuration shared by the end-to-end tests below, so they reuse two compilations.
CONFIG = dict(num_samples=300, num_features=4, feature_selection="highest_weights")


def test_batch_equals_loop_and_key_determinism(cancer, logistic):
    X, _, _ = cancer
    keys = jax.random.split(jax.random.key(3), 3)
    batch = lime_tabular(logistic, X[:3], X, key=keys, **CONFIG)
    for i in range(3):
        one = lime_tabular(logistic, X[i : i + 1], X, key=keys[i : i + 1], **CONFIG)
        _close(batch.values[i], one.values[0])
        _close(batch.extras["score"][i], one.extras["score"][0])
    again = lime_tabular(logistic, X[:3], X, key=keys, **CONFIG)
    np.testing.assert_array_equal(np.asarray(batch.values), np.asarray(again.values))
    other = lime_tabular(logistic, X[:3], X, key=jax.random.split(jax.random.key(4), 3), **CONFIG)
    assert not np.array_equal(np.asarray(batch.values), np.asarray(other.values))
    assert batch.values.shape == (3, 30, 2)
    assert batch.extras["selected"].sum(axis=1).tolist() == [[4, 4]] * 3
    assert batch.extras["feature_labels"].shape == (3, 30)


def test_compiles_once(cancer, logistic):
    X, _, _ = cancer
    stats = fit_discretizer(X)
    lime_tabular(logistic, X[:3], stats, key=jax.random.key(0), **CONFIG)
    lime_tabular(logistic, X[:3], stats, key=jax.random.key(0), targets=1, **CONFIG)
    with count_compiles() as compiled:
        for start in (3, 6, 9):
            lime_tabular(logistic, X[start : start + 3], stats, key=jax.random.key(start), **CONFIG)
        # The labels are traced: explaining other outputs reuses the program.
        for targets in (np.array([0, 1, 1]), 0):
            lime_tabular(logistic, X[:3], stats, targets=targets, key=jax.random.key(1), **CONFIG)
        lime_tabular(logistic, X[:3], stats, labels=(1, 0), key=jax.random.key(1), **CONFIG)
    assert compiled == []


def test_training_statistics_held_by_the_caller(cancer, logistic):
    # fit_discretizer's statistics passed as training_data (host or device copies) give the
    # values the training rows give: the statistics are a value the caller holds.
    X = cancer[0]
    rows = lime_tabular(logistic, X[:2], X, key=jax.random.key(0), **CONFIG)
    stats = fit_discretizer(X)
    for held in (stats, stats.on_device()):
        again = lime_tabular(logistic, X[:2], held, key=jax.random.key(0), **CONFIG)
        np.testing.assert_array_equal(np.asarray(rows.values), np.asarray(again.values))
        np.testing.assert_array_equal(rows.extras["feature_labels"], again.extras["feature_labels"])
    # A changed training set gives new statistics (nothing is kept between calls).
    changed = lime_tabular(logistic, X[:2], X * 2.0, key=jax.random.key(0), **CONFIG)
    assert changed.extras["feature_labels"][0, 0] != rows.extras["feature_labels"][0, 0]
    with pytest.raises(TypeError, match="discretizer.*fit_discretizer"):
        lime_tabular(logistic, X[:2], stats, key=jax.random.key(0), discretizer="decile")


def test_no_module_level_mutable_state():
    # Caches and registries of mutable containers at module level are global state; the lime
    # family keeps none (constants are tuples, read-only mappings or read-only arrays).
    import importlib
    import pkgutil

    import xaijax.lime

    for info in pkgutil.iter_modules(xaijax.lime.__path__):
        module = importlib.import_module(f"xaijax.lime.{info.name}")
        for name, value in vars(module).items():
            if name != "__all__" and not name.startswith("__"):
                assert not isinstance(value, (dict, list, set)), f"{info.name}.{name}"
                if isinstance(value, np.ndarray):
                    assert not value.flags.writeable, f"{info.name}.{name}"


def test_single_instance_top_labels_and_scalar_output(cancer, logistic):
    X, _, _ = cancer
    one = lime_tabular(logistic, X[0], X, key=jax.random.key(0), **CONFIG)
    assert one.values.shape == (30, 2) and one.base_values.shape == (2,)
    top = lime_tabular(logistic, X[:3], X, key=jax.random.key(0), top_labels=1, **CONFIG)
    assert top.values.shape == (3, 30, 1)
    predicted = np.argmax(np.asarray(logistic(jnp.asarray(X[:3], jnp.float32))), axis=1)
    np.testing.assert_array_equal(np.asarray(top.extras["labels"])[:, 0], predicted)

    def positive(Z):
        return logistic(Z)[:, 1]

    scalar = lime_tabular(positive, X[:3], X, key=jax.random.key(0), **CONFIG)
    assert scalar.values.shape == (3, 30) and scalar.base_values.shape == (3,)
    assert scalar.output_names is None


def test_targets_forms_against_labels(cancer, logistic):
    # Oracle: lime's labels=(0, 1) fits both outputs on the same neighbourhood (same key);
    # targets picks one of them per instance, a callable explains its score.
    X, _, _ = cancer
    key = jax.random.key(5)
    both = lime_tabular(logistic, X[:4], X, key=key, labels=(0, 1), **CONFIG)
    assert both.values.shape == (4, 30, 2) and both.output_names == ("0", "1")
    one = lime_tabular(logistic, X[:4], X, key=key, targets=1, **CONFIG)
    assert one.values.shape == (4, 30) and one.base_values.shape == (4,)
    assert one.output_names is None and one.extras["labels"].tolist() == [1] * 4
    alias = lime_tabular(logistic, X[:4], X, key=key, labels=(1,), **CONFIG)
    np.testing.assert_array_equal(one.values, alias.values[..., 0])  # one program, one label
    _close(one.values, both.values[..., 1])
    picks = np.array([0, 1, 1, 0])
    per = lime_tabular(logistic, X[:4], X, key=key, targets=picks, **CONFIG)
    _close(per.values, both.values[np.arange(4), :, picks])
    _close(per.base_values, both.base_values[np.arange(4), picks])
    np.testing.assert_array_equal(per.extras["labels"], picks)
    # A callable: its score is the explained scalar. P(1) - P(0) = 2 P(1) - 1 is linear in
    # output 1, so its surrogate is twice output 1's (same features, same neighbourhood).
    margin = lime_tabular(
        logistic, X[:4], X, key=key, targets=lambda y: y[:, 1] - y[:, 0], **CONFIG
    )
    _close(margin.values, 2.0 * one.values, rtol=1e-4)
    _close(margin.extras["prediction"], np.asarray(logistic(X[:4]) @ jnp.array([-1.0, 1.0])))


@pytest.mark.parametrize("top_labels", [1, 2, 5])
def test_top_labels_clamp_to_the_outputs(cancer, logistic, top_labels):
    # lime's np.argsort(p)[-top_labels:][::-1]: at most K labels, highest first.
    X, _, _ = cancer
    exp = lime_tabular(logistic, X[:3], X, key=jax.random.key(0), top_labels=top_labels, **CONFIG)
    p = np.asarray(logistic(jnp.asarray(X[:3], jnp.float32)))
    want = np.stack([np.argsort(row)[-top_labels:][::-1] for row in p])
    np.testing.assert_array_equal(exp.extras["labels"], want)
    assert exp.values.shape == (3, 30, min(top_labels, 2))


def test_results_do_not_depend_on_batch_size(cancer, logistic):
    X, _, _ = cancer
    stats = fit_discretizer(X)
    default = lime_tabular(logistic, X[:5], stats, key=jax.random.key(2), **CONFIG)
    for batch_size in (1, 299, 301, 4096):
        other = lime_tabular(
            logistic, X[:5], stats, key=jax.random.key(2), batch_size=batch_size, **CONFIG
        )
        _close(other.values, default.values, rtol=1e-4)
        _close(other.base_values, default.base_values, rtol=1e-4)
        np.testing.assert_array_equal(other.extras["selected"], default.extras["selected"])


def test_bad_input_raises(cancer, logistic):
    X, _, _ = cancer
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="categorical_features"):
        lime_tabular(logistic, X[:2], X, key=key, categorical_features=[30])
    with pytest.raises(ValueError, match=r"X must be one instance of shape \(30,\)"):
        lime_tabular(logistic, X[:2, :5], X, key=key)
    with pytest.raises(ValueError, match="training_data must have shape"):
        lime_tabular(logistic, X[:2], X[0], key=key)
    with pytest.raises(ValueError, match="labels must be output indices"):
        lime_tabular(logistic, X[:2], X, key=key, labels=(2,))
    with pytest.raises(ValueError, match="key"):
        lime_tabular(logistic, X[:2], X, key=jax.random.split(key, 3))
    with pytest.raises(ValueError, match="NaN"):
        lime_tabular(lambda Z: logistic(Z) * jnp.nan, X[:1], X, key=key, **CONFIG)


# Every option checked against its documented range before anything compiles.
BAD_OPTIONS = [
    (dict(kernel_width=0.0), ValueError, "kernel_width"),
    (dict(kernel_width=float("nan")), ValueError, "kernel_width"),
    (dict(kernel_width=-1.0), ValueError, "kernel_width"),
    (dict(num_features=0), ValueError, "num_features"),
    (dict(num_samples=2.5), TypeError, "num_samples"),
    (dict(num_samples=1), ValueError, "num_samples"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=-4), ValueError, "batch_size"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(feature_selection="lars"), ValueError, "feature_selection"),
    (dict(top_labels=0), ValueError, "top_labels"),
    (dict(top_labels=1.5), TypeError, "top_labels"),
    (dict(labels=1), TypeError, "labels"),
    (dict(labels=()), ValueError, "labels"),
    (dict(targets=1, labels=(1,)), TypeError, "targets"),
    (dict(targets=1, top_labels=1), TypeError, "targets"),
    (dict(labels=(0,), top_labels=1), TypeError, "labels"),
    (dict(targets=2), ValueError, "targets"),
    (dict(targets=0.5), TypeError, "targets"),
    (dict(discretizer="median"), ValueError, "discretizer"),
]


@pytest.mark.parametrize("options,error,name", BAD_OPTIONS)
def test_options_are_checked_before_compiling(cancer, logistic, options, error, name):
    X, _, _ = cancer
    with count_compiles() as compiled:
        with pytest.raises(error, match=name):
            lime_tabular(logistic, X[:2], X, key=jax.random.key(0), **options)
    assert compiled == []


def test_nan_on_some_neighbourhoods_is_reported_per_instance(cancer, logistic):
    # NaN only where feature 0 is far above instance 2's value: the neighbourhoods of
    # instances whose samples reach there are named, the others are not.
    X, _, _ = cancer
    rows = X[[0, 1, 2]].copy()
    top = float(X[:, 0].max())
    rows[1, 0] = top + 1.0  # out of the training range: NaN at the instance itself

    def poisoned(Z):
        # Sampled values stay inside the training range, so only instance 1's row 0 is NaN.
        return jnp.where(Z[:, :1] > top + 0.5, jnp.nan, logistic(Z))

    with pytest.raises(ValueError, match=r"NaN or inf \(instances \[1\]\)"):
        lime_tabular(poisoned, rows, X, key=jax.random.key(0), **CONFIG)


def test_host_model_failure_is_named(cancer, logistic):
    X, _, _ = cancer

    def flaky(Z):
        if len(Z) > 2:  # fine at the probe, broken inside the compiled run
            raise RuntimeError("the model server went away")
        return np.asarray(logistic(jnp.asarray(Z, jnp.float32)))

    with pytest.raises(ValueError, match="host model.*the model server went away"):
        lime_tabular(flaky, X[:2], X, key=jax.random.key(0), **CONFIG)
