"""LIME image: perturbations pixel for pixel against `lime`, masks, batching and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compiles import count_compiles
from lime.lime_image import ImageExplanation, LimeImageExplainer
from skimage import data, segmentation, transform

from xaijax.lime import (
    fudged_image,
    get_image_and_mask,
    lime_image,
    perturb_image,
    segment_images,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def photos():
    small = [transform.resize(p, (32, 32)) for p in (data.astronaut(), data.chelsea())]
    return (np.stack(small) * 255).astype(np.uint8)


def model(X):
    """A tiny fixed "CNN": mean colour per channel through a softmax (3 classes)."""
    return jax.nn.softmax(X.mean(axis=(1, 2)) / 40.0, axis=1)


def _close(a, b, rtol=1e-5):
    """Float32 agreement relative to the whole result's magnitude, not to single entries."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * max(1e-30, np.abs(b).max()))


def test_quickshift_default_is_the_reference(photos):
    # From 224 pixels up, lime's parameters; smaller images get them scaled (quickshift_defaults).
    big = (transform.resize(data.astronaut(), (224, 224)) * 255).astype(np.uint8)
    ours = segment_images(big[None])[0]
    ref = segmentation.quickshift(big, kernel_size=4, max_dist=200, ratio=0.2)
    np.testing.assert_array_equal(ours, ref)
    small = segmentation.quickshift(photos[0], kernel_size=1, max_dist=200 * 32 / 224, ratio=0.2)
    np.testing.assert_array_equal(segment_images(photos[:1])[0], small)
    for method, kwargs in [("slic", dict(n_segments=20)), ("felzenszwalb", dict(scale=50))]:
        seg = segment_images(photos, method, **kwargs)
        assert seg.shape == (2, 32, 32) and seg.min() == 0


@pytest.mark.parametrize("hide_color", [None, 0])
@pytest.mark.parametrize("as_float", [False, True])
def test_perturbed_images_equal_lime(photos, hide_color, as_float):
    img = photos[0].astype(np.float64) / 255.0 if as_float else photos[0]
    seg = segmentation.slic(img, n_segments=12, start_label=0)
    m = int(seg.max()) + 1
    captured = []

    def classifier(batch):
        captured.extend(np.asarray(batch))
        return np.zeros((len(batch), 2))

    ref = LimeImageExplainer(random_state=0)
    fudged_ref = img.copy()
    if hide_color is None:
        for x in np.unique(seg):
            fudged_ref[seg == x] = img[seg == x].mean(axis=0)
    else:
        fudged_ref[:] = hide_color
    masks, _ = ref.data_labels(img, fudged_ref, seg, classifier, 20, batch_size=7)
    fudged = fudged_image(
        jnp.asarray(img, jnp.float32), jnp.asarray(seg), m, hide_color, integer=not as_float
    )
    np.testing.assert_allclose(np.asarray(fudged), fudged_ref, atol=1e-6)
    ours = jax.vmap(perturb_image, in_axes=(None, None, None, 0))(
        jnp.asarray(img, jnp.float32), fudged, jnp.asarray(seg), jnp.asarray(masks)
    )
    np.testing.assert_allclose(np.asarray(ours), np.stack(captured), atol=1e-6)


# One configuration shared by the end-to-end tests below (two compilations: n = 2 and n = 1).
CONFIG = dict(num_samples=64, segmentation="slic", segmentation_kwargs=dict(n_segments=15))


def test_batch_with_different_segment_counts_equals_loop(photos):
    keys = jax.random.split(jax.random.key(1), 2)
    seg = segment_images(photos, "slic", n_segments=15)
    counts = seg.reshape(2, -1).max(axis=1) + 1
    batch = lime_image(model, photos, key=keys, segments=seg, num_samples=64)
    assert counts[0] != counts[1]
    assert batch.values.shape == (2, counts.max(), 3)
    np.testing.assert_array_equal(batch.extras["num_segments"], counts)
    for i in range(2):
        one = lime_image(model, photos[i], key=keys[i : i + 1], segments=seg[i], num_samples=64)
        m = counts[i]
        # Padding columns are always off: they neither move the distances nor get weight.
        np.testing.assert_allclose(batch.values[i, m:], 0.0)
        assert one.values.shape == (m, 3)
        _close(one.extras["score"], batch.extras["score"][i], rtol=1e-4)
        _close(one.values, batch.values[i, :m], rtol=1e-4)
    heat = np.asarray(batch.extras["heatmap"])
    np.testing.assert_allclose(heat[0], np.asarray(batch.values[0])[seg[0]])
    assert batch.extras["score"].min() > 0.5  # the model is linear in the segment colours


def test_same_key_same_result_and_compiles_once(photos):
    a = lime_image(model, photos, key=jax.random.key(0), **CONFIG)
    with count_compiles() as compiled:
        b = lime_image(model, photos, key=jax.random.key(0), **CONFIG)
        c = lime_image(model, photos[::-1], key=jax.random.key(5), **CONFIG)
    np.testing.assert_array_equal(np.asarray(a.values), np.asarray(b.values))
    assert not np.array_equal(np.asarray(a.values), np.asarray(c.values)[::-1])
    assert compiled == []


def test_get_image_and_mask_matches_lime(photos):
    exp = lime_image(model, photos[0], key=jax.random.key(2), **CONFIG)
    label = int(exp.extras["labels"][0])
    ref = ImageExplanation(np.asarray(exp.data), np.asarray(exp.extras["segments"]))
    weights = np.asarray(exp.values[:, 0])
    ref.local_exp[label] = sorted(enumerate(weights), key=lambda t: abs(t[1]), reverse=True)
    for kw in [
        dict(),
        dict(positive_only=False, num_features=4),
        dict(positive_only=False, negative_only=True, num_features=2),
        dict(hide_rest=True, num_features=3),
        dict(positive_only=False, min_weight=float(np.median(np.abs(weights)))),
    ]:
        temp_ref, mask_ref = ref.get_image_and_mask(label, **kw)
        temp, mask = get_image_and_mask(exp, label, **kw)
        np.testing.assert_array_equal(mask, mask_ref)
        np.testing.assert_array_equal(temp, temp_ref)


def test_targets_forms_against_labels_and_the_top_labels_default(photos):
    seg = segment_images(photos, "slic", n_segments=15)
    key = jax.random.key(3)
    kw = dict(segments=seg, num_samples=64)
    # lime's default: the top 5 labels, clamped to the 3 outputs, highest first.
    top = lime_image(model, photos, key=key, **kw)
    p = np.asarray(model(jnp.asarray(photos, jnp.float32)))
    np.testing.assert_array_equal(top.extras["labels"], np.argsort(p, axis=1)[:, ::-1])
    assert top.output_names == ("top0", "top1", "top2")
    every = lime_image(model, photos, key=key, labels=(0, 1, 2), **kw)
    one = lime_image(model, photos, key=key, targets=2, **kw)
    assert one.values.shape == every.values.shape[:2]
    assert one.extras["heatmap"].shape == (2, 32, 32)
    _close(one.values, every.values[..., 2], rtol=1e-4)
    per = lime_image(model, photos, key=key, targets=np.array([1, 0]), **kw)
    _close(per.values, every.values[np.arange(2), :, [1, 0]], rtol=1e-4)
    # Oracle for a callable: a difference of outputs is linear in them, so is its surrogate.
    diff = lime_image(model, photos, key=key, targets=lambda y: y[:, 2] - y[:, 0], **kw)
    _close(diff.values, every.values[..., 2] - every.values[..., 0], rtol=1e-3)
    # get_image_and_mask reads a one-target explanation as lime's one-label one.
    alias = lime_image(model, photos, key=key, labels=(2,), **kw)
    np.testing.assert_array_equal(one.values, alias.values[..., 0])  # one program, one label
    for kwargs in (dict(), dict(positive_only=False, num_features=3)):
        ours = get_image_and_mask(one[0], 2, **kwargs)
        theirs = get_image_and_mask(alias[0], 2, **kwargs)
        for a, b in zip(ours, theirs, strict=True):
            np.testing.assert_array_equal(a, b)


def test_results_do_not_depend_on_batch_size(photos):
    seg = segment_images(photos, "slic", n_segments=15)
    kw = dict(segments=seg, num_samples=64, key=jax.random.key(4))
    default = lime_image(model, photos, **kw)
    for batch_size in (1, 5, 64, 200):
        other = lime_image(model, photos, batch_size=batch_size, **kw)
        _close(other.values, default.values, rtol=1e-4)
        _close(other.base_values, default.base_values, rtol=1e-4)


BAD_OPTIONS = [
    (dict(kernel_width=0.0), ValueError, "kernel_width"),
    (dict(kernel_width=float("nan")), ValueError, "kernel_width"),
    (dict(kernel_width=-0.25), ValueError, "kernel_width"),
    (dict(num_features=0), ValueError, "num_features"),
    (dict(num_samples=2.5), TypeError, "num_samples"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=-1), ValueError, "batch_size"),
    (dict(batch_size=1.5), TypeError, "batch_size"),
    (dict(top_labels=0), ValueError, "top_labels"),
    (dict(top_labels=-2), ValueError, "top_labels"),
    (dict(hide_color=float("nan")), ValueError, "hide_color"),
    (dict(hide_color="grey"), TypeError, "hide_color"),
    (dict(feature_selection="lars"), ValueError, "feature_selection"),
    (dict(targets=0, top_labels=2), TypeError, "targets"),
    (dict(labels=(5,)), ValueError, "labels"),
    (dict(segments=np.zeros((16, 16), int)), ValueError, "segments must have shape"),
    (dict(segments=np.zeros((3, 32, 32), int)), ValueError, "segments must have shape"),
    (dict(segments=np.zeros((32, 32))), ValueError, "segments must be an integer"),
    (dict(segments=np.zeros((32, 32), bool)), ValueError, "segments must be an integer"),
    (dict(segments=None, segmentation="watershed"), ValueError, "segmentation"),
]


@pytest.mark.parametrize("options,error,match", BAD_OPTIONS)
def test_options_are_checked_before_compiling(photos, options, error, match):
    kw = {"segments": np.repeat(np.arange(4), 256).reshape(32, 32), **options}
    key = jax.random.key(0)  # made outside: a fresh process compiles the key's seeding
    with count_compiles() as compiled:
        with pytest.raises(error, match=match):
            lime_image(model, photos, key=key, num_samples=16, **kw)
    assert compiled == []


def test_bad_input_raises(photos):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="segments must have shape"):
        lime_image(model, photos, key=key, segments=np.zeros((2, 16, 16), int))
    with pytest.raises(ValueError, match="3 channels"):
        lime_image(model, photos[..., :2], key=key)
    with pytest.raises(ValueError, match="images of shape"):
        lime_image(model, photos[0, 0], key=key)
    with pytest.raises(ValueError, match="images must hold at least one"):
        lime_image(model, photos[:0], key=key)
    with pytest.raises(ValueError, match="integer"):
        lime_image(model, photos[0], key=key, segments=np.zeros((32, 32)))
    with pytest.raises(ValueError, match="NaN"):
        lime_image(lambda X: model(X) * jnp.nan, photos, key=key, **CONFIG)


def test_nan_on_one_images_perturbations_is_reported_for_that_image(photos):
    # Image 0 is one flat colour, so hiding its segments changes nothing; the model is NaN on
    # every image that is neither original: image 1's perturbations only.
    images = np.stack([np.full((32, 32, 3), 100, np.uint8), photos[1]])
    seg = np.repeat(np.arange(4), 256).reshape(32, 32)
    originals = jnp.asarray(images, jnp.float32).reshape(2, -1)

    def poisoned(X):
        flat = X.reshape(X.shape[0], -1)
        seen = jnp.any(jnp.all(flat[:, None, :] == originals[None], axis=2), axis=1)
        return jnp.where(seen[:, None], model(X), jnp.nan)

    with pytest.raises(ValueError, match=r"NaN or inf \(instances \[1\]\)"):
        lime_image(poisoned, images, key=jax.random.key(0), segments=seg, num_samples=16)
