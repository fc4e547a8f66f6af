"""Results that would be quietly meaningless get a warning or an error instead."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data, transform

import xaijax as xj
from xaijax.lime.image import MIN_SEGMENTS, quickshift_defaults, segment_images
from xaijax.shapley.coalitions import apply_link, output_status


# -- lime_image: superpixels of small images ------------------------------------------------------
@pytest.fixture(scope="module")
def photo():
    return data.astronaut()


@pytest.mark.parametrize("size, low, high", [(32, 8, 80), (224, 20, 400)])
def test_default_quickshift_gives_a_useful_number_of_segments(photo, size, low, high):
    image = (transform.resize(photo, (size, size)) * 255).astype(np.uint8)
    count = int(segment_images(image[None])[0].max()) + 1
    assert low <= count <= high
    # lime's own parameters make one superpixel of the 32x32 image (the reason for scaling).
    if size == 32:
        from skimage.segmentation import quickshift

        assert quickshift(image, kernel_size=4, max_dist=200, ratio=0.2).max() + 1 < MIN_SEGMENTS


def test_quickshift_defaults_are_the_reference_from_224_pixels():
    assert quickshift_defaults(224, 400) == dict(kernel_size=4, max_dist=200, ratio=0.2)
    small = quickshift_defaults(32, 48)
    assert small["max_dist"] == pytest.approx(200 * 32 / 224) and small["kernel_size"] >= 1


def _mean_model(X):
    return jnp.stack([X[..., 0].mean((1, 2)), X[..., 1].mean((1, 2))], axis=1)


def test_lime_image_warns_on_few_segments_naming_segmentation(photo):
    constant = np.full((32, 32, 3), 0.5)
    with pytest.warns(UserWarning, match="segmentation") as caught:
        exp = xj.lime_image(
            _mean_model, constant, key=jax.random.key(0), num_samples=8, segmentation="felzenszwalb"
        )
    assert "[1]" in str(caught[0].message) and "segments=" in str(caught[0].message)
    assert int(exp.extras["num_segments"]) == 1
    # The case: lime's own quickshift parameters on a 32x32 photo.
    image = transform.resize(photo, (32, 32))
    lime_params = dict(kernel_size=4, max_dist=200, ratio=0.2)
    with pytest.warns(UserWarning, match="segmentation='quickshift' found only"):
        xj.lime_image(
            _mean_model,
            image,
            key=jax.random.key(0),
            num_samples=8,
            segmentation_kwargs=lime_params,
        )


def test_lime_image_is_quiet_with_enough_segments(photo):
    image = transform.resize(photo, (32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exp = xj.lime_image(_mean_model, image, key=jax.random.key(0), num_samples=8)
    assert int(exp.extras["num_segments"]) >= MIN_SEGMENTS


# -- link="logit": only probabilities -------------------------------------------------------------
def test_output_status_codes():
    y = jnp.array([[0.2, 0.7], [1.0, 0.5], [0.0, 0.5], [1.5, 0.5], [jnp.nan, 0.5]])
    assert output_status("logit", y, rows=True).tolist() == [0, 1, 1, 1, 2]
    assert output_status("identity", y, rows=True).tolist() == [0, 0, 0, 0, 2]
    assert int(output_status("logit", y[:1])) == 0
    np.testing.assert_allclose(apply_link("logit", jnp.array(0.75)), np.log(3.0), rtol=1e-6)


def _saturating(X):
    """A probability that is exactly 1 for rows with x0 > 3 (as float32 rounds 1 - 1e-9)."""
    p = jax.nn.sigmoid(X[:, 0] + 0.5 * X[:, 1])
    return jnp.where(X[:, 0] > 3.0, 1.0, p)


@pytest.mark.parametrize(
    "explainer, options",
    [
        (xj.exact_shapley, {}),
        (xj.kernel_shap, {"key": jax.random.key(0), "num_samples": 16}),
        (xj.permutation_shap, {"key": jax.random.key(0), "num_permutations": 2}),
    ],
)
def test_logit_link_refuses_outputs_outside_0_1(explainer, options):
    rng = np.random.default_rng(0)
    bg = rng.normal(size=(6, 3))
    X = rng.normal(size=(3, 3))
    ok = explainer(_saturating, X, bg, link="logit", **options)
    logit = np.log(_saturating(X)) - np.log1p(-_saturating(X))
    np.testing.assert_allclose(ok.values.sum(1) + ok.base_values, logit, atol=1e-4)
    X[1, 0] = 5.0  # instance 1's probability is exactly 1
    with pytest.raises(ValueError, match=r"link='logit'.*instances \[1\]"):
        explainer(_saturating, X, bg, link="logit", **options)
    with pytest.raises(ValueError, match="link='logit'"):
        explainer(lambda X: 2.0 * X[:, 0], X, bg, link="logit", **options)
    # The identity link explains the same outputs without complaint.
    explainer(_saturating, X, bg, **options)
    # NaN outputs still get the NaN message, under either link.
    with pytest.raises(ValueError, match="NaN"):
        explainer(lambda X: jnp.log(X[:, 0]), X, bg, link="logit", **options)


# -- labels where scores are expected --------------------------------------------------------------
def test_integer_outputs_warn_host_and_jax():
    rng = np.random.default_rng(1)
    bg, X = rng.normal(size=(5, 3)), rng.normal(size=(2, 3))
    bg[0, :2] = 1.0  # label 3 on the first background row, which the model is probed on

    def predict(X):  # a host classifier's labels, as scikit-learn returns them
        return (np.asarray(X)[:, 0] > 0).astype(np.int64) + 2 * (np.asarray(X)[:, 1] > 0)

    with pytest.warns(UserWarning, match="predict_proba"):
        xj.exact_shapley(predict, X, bg)
    with pytest.warns(UserWarning, match="int32"):
        xj.exact_shapley(lambda X: jnp.argmax(X, axis=1), X, bg)
    # Float labels above 1 on the first rows warn; probabilities (even exactly 0 or 1) do not.
    with pytest.warns(UserWarning, match="whole numbers"):
        xj.exact_shapley(lambda X: predict(X).astype(np.float64), X, bg)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xj.exact_shapley(lambda X: np.round(1 / (1 + np.exp(-np.asarray(X)[:, 0]))), X, bg)
        xj.exact_shapley(lambda X: jax.nn.sigmoid(X[:, 0]), X, bg)
