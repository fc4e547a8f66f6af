"""LIME image: perturbations pixel for pixel against `lime`, masks, batching and bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from lime.lime_image import ImageExplanation, LimeImageExplainer
from skimage import data, segmentation, transform

from xaijax.lime import (
    fudged_image,
    get_image_and_mask,
    lime_image,
    perturb_image,
    segment_images,
)
from xaijax.lime import image as image_module

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def photos():
    small = [transform.resize(p, (32, 32)) for p in (data.astronaut(), data.chelsea())]
    return (np.stack(small) * 255).astype(np.uint8)


def model(X):
    """A tiny fixed "CNN": mean colour per channel through a softmax (3 classes)."""
    return jax.nn.softmax(X.mean(axis=(1, 2)) / 40.0, axis=1)


def test_quickshift_default_is_the_reference(photos):
    ours = segment_images(photos[:1])[0]
    ref = segmentation.quickshift(photos[0], kernel_size=4, max_dist=200, ratio=0.2)
    np.testing.assert_array_equal(ours, ref)
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
        np.testing.assert_allclose(one.extras["score"], batch.extras["score"][i], rtol=1e-4)
        np.testing.assert_allclose(one.values, batch.values[i, :m], rtol=1e-4, atol=1e-5)
    heat = np.asarray(batch.extras["heatmap"])
    np.testing.assert_allclose(heat[0], np.asarray(batch.values[0])[seg[0]])
    assert batch.extras["score"].min() > 0.5  # the model is linear in the segment colours


def test_same_key_same_result_and_compiles_once(photos):
    a = lime_image(model, photos, key=jax.random.key(0), **CONFIG)
    size = image_module._explain._cache_size()
    b = lime_image(model, photos, key=jax.random.key(0), **CONFIG)
    c = lime_image(model, photos[::-1], key=jax.random.key(5), **CONFIG)
    np.testing.assert_array_equal(np.asarray(a.values), np.asarray(b.values))
    assert not np.array_equal(np.asarray(a.values), np.asarray(c.values)[::-1])
    assert image_module._explain._cache_size() == size


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


def test_bad_input_raises(photos):
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="segments must have shape"):
        lime_image(model, photos, key=key, segments=np.zeros((2, 16, 16), int))
    with pytest.raises(ValueError, match="3 channels"):
        lime_image(model, photos[..., :2], key=key)
    with pytest.raises(ValueError, match="images must have shape"):
        lime_image(model, photos[0, 0], key=key)
    with pytest.raises(ValueError, match="integer"):
        lime_image(model, photos[0], key=key, segments=np.zeros((32, 32)))
    with pytest.raises(ValueError, match="NaN"):
        lime_image(lambda X: model(X) * jnp.nan, photos, key=key, **CONFIG)
