"""Prototype purity and pruning on a network built by hand, whose prototypes' places are known.

The backbone passes the image's first channel through (every conv is the identity on channel 0,
so the latent grid holds the 4x4 max-pool of it) and the add-on maps it to ``sigmoid(8 v - 3)``
in every latent dimension. Objects are 8x8 squares aligned with the latent cells, of value 0.5
(class 1, images 0-2) or 1 (class 0, images 3-5) on a zero background. A prototype equal to an
object's latent patch sits on that object; one equal to the background's sits on background.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from xaijax.protopnet import (
    ProtoPNet,
    ProtoPNetConfig,
    evaluate,
    fraction_on_mask,
    peak_distance,
    prototype_purity,
    prune_prototypes,
    push,
    select_prototypes,
    train_last_layer,
)
from xaijax.protopnet.model import BORDER_DISTANCE, log_similarity, squared_distances
from xaijax.protopnet.train import TrainConfig

SIZE, D = 24, 4
CORNERS = [(0, 0), (8, 8), (16, 8), (4, 12), (8, 0), (12, 16)]  # multiples of the 4-pixel cells
LABELS = np.array([1, 1, 1, 0, 0, 0])


def _data():
    images = np.zeros((6, SIZE, SIZE, 3), np.float32)
    masks = np.zeros((6, SIZE, SIZE), bool)
    for i, (y, x) in enumerate(CORNERS):
        masks[i, y : y + 8, x : x + 8] = True
        images[i, y : y + 8, x : x + 8, 0] = 1.0 if LABELS[i] == 0 else 0.5
    return images, masks, LABELS


def _latent_of(v):
    return jax.nn.sigmoid(8.0 * v - 3.0) * jnp.ones(D)


def _network():
    cfg = ProtoPNetConfig(
        img_size=SIZE, num_classes=2, num_prototypes=4, prototype_depth=D, channels=(4, 4)
    )
    net = ProtoPNet(cfg, key=jax.random.key(0))
    for _, conv in nnx.iter_graph(net.features):
        if isinstance(conv, nnx.Conv):
            kernel = np.zeros(conv.kernel[...].shape, np.float32)
            kernel[1, 1, 0, 0] = 1.0
            conv.kernel[...] = kernel
            conv.bias[...] = np.zeros(conv.bias[...].shape, np.float32)
    first, second = net.add_on[0], net.add_on[1]
    k0 = np.zeros(first.kernel[...].shape, np.float32)
    k0[0, 0, 0, 0] = 1.0
    first.kernel[...], first.bias[...] = k0, np.zeros(first.bias[...].shape, np.float32)
    k1 = np.zeros(second.kernel[...].shape, np.float32)
    k1[0, 0, 0, :] = 8.0
    second.kernel[...], second.bias[...] = k1, np.full(second.bias[...].shape, -3.0, np.float32)
    # Prototypes 0, 1 are class 0's, 2, 3 class 1's: an object and the background each.
    net.prototypes[...] = jnp.stack([_latent_of(v) for v in (1.0, 0.0, 0.5, 0.0)])
    return net


@pytest.fixture(scope="module")
def pushed():
    images, masks, labels = _data()
    net = _network()
    z = net.latent(jnp.asarray(images))
    np.testing.assert_allclose(z[3, 1, 3], _latent_of(1.0), rtol=1e-6)  # the construction holds
    result = push(net, images, labels)
    return net, result, images, masks, labels


def test_peak_distance_is_the_distance_to_the_mask():
    maps = np.zeros((2, 6, 6))
    maps[0, 0, 5] = 1.0  # 3 rows above the mask's top-right pixel (3, 5): distance 3
    maps[1, 4, 4] = 1.0  # on the mask
    mask = np.zeros((2, 6, 6), bool)
    mask[:, 3:, 3:] = True
    assert peak_distance(maps, mask).tolist() == [3.0, 0.0]


def test_fraction_on_mask_counts_the_top_pixels():
    # The 80th percentile of 0..19 is 15.2: the top pixels are 16..19 (last row, columns 1-4).
    maps = np.arange(20.0).reshape(1, 4, 5)
    mask = np.zeros((1, 4, 5), bool)
    mask[0, 3, :3] = True  # covers 15, 16, 17: two of the four
    assert fraction_on_mask(maps, mask, percentile=80.0).tolist() == [0.5]


def test_purity_of_object_and_background_prototypes(pushed):
    net, result, images, masks, labels = pushed
    assert result.distances.max() < 1e-6  # every prototype was already a training patch
    pur = prototype_purity(net, result, images, masks, labels, k=3)
    # Object prototypes: all their high-activation pixels on the object; background: none.
    np.testing.assert_allclose(pur.on_object, [1.0, 0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(pur.nearest_on_object, [1.0, 0.0, 1.0, 0.0], atol=1e-12)
    # Peaks: on the object for object prototypes, well off it for background ones.
    assert pur.peak_distance[[0, 2]].tolist() == [0.0, 0.0] and np.all(
        pur.peak_distance[[1, 3]] >= 3
    )
    assert np.all(pur.nearest_peak_distance[[0, 2]] == 0) and np.all(
        pur.nearest_peak_distance[[1, 3]] >= 3
    )
    # Nearest images: class 0's object -> images 3-5; every background patch ties at distance
    # 0, broken by index -> images 0-2 (class 1): pure for prototype 3, impure for prototype 1.
    assert pur.nearest_index.tolist() == [[3, 4, 5], [0, 1, 2], [0, 1, 2], [0, 1, 2]]
    assert pur.class_purity.tolist() == [1.0, 0.0, 1.0, 1.0]
    assert pur.classes.tolist() == [0, 0, 1, 1]
    summary = pur.summary()
    assert summary["fraction_on_object"] == 0.5 and summary["class_purity"] == 0.75
    # Peaks closer than one latent stride (4 px here) count; the background's are 4 px away.
    assert pur.stride == 4.0 and summary["tolerance"] == 4.0
    assert summary["fraction_peak_at_object"] == 0.5 and summary["nearest_peak_at_object"] == 0.5
    assert pur.summary(tolerance=5.0)["fraction_peak_at_object"] == 1.0
    # The object prototypes' high-activation boxes lie inside their objects; their receptive
    # fields (18 px) see more than the 8x8 object.
    np.testing.assert_allclose(pur.box_on_object[[0, 2]], 1.0)
    assert np.all(pur.rf_on_object[[0, 2]] < 0.6) and pur.rf_on_object[1] == 0.0


def test_chance_level_counts_the_positions_near_each_object(pushed):
    net, result, images, masks, labels = pushed
    pur = prototype_purity(net, result, images, masks, labels, k=3)
    assert pur.position_peak_distance.shape == (6, 36)  # every position of the 6x6 grid
    # Positions on an object score 0 (objects are aligned with the 4-pixel cells).
    on = masks[:, 2::4, 2::4].reshape(6, -1)
    assert np.all(pur.position_peak_distance[on] == 0) and np.all(
        pur.position_peak_distance[~on] > 0
    )
    # Closed form: an inner position's map peaks within a pixel of its cell's centre (2 + 4 i
    # px; at the outer ring the upsampling pulls the peak to the image's edge), so with a 5 px
    # tolerance the inner positions at the object are those whose centre lies in the square
    # grown by one 4 px cell on each side (no centre lies near the 5 px boundary).
    centres = 2.0 + 4.0 * np.arange(1, 5)
    expected = [
        np.sum((centres >= y - 4) & (centres < y + 12))
        * np.sum((centres >= x - 4) & (centres < x + 12))
        for y, x in CORNERS
    ]
    inner = (np.arange(1, 5)[:, None] * 6 + np.arange(1, 5)).ravel()
    near = (pur.position_peak_distance[:, inner] < 5.0).sum(axis=1)
    assert near.tolist() == expected == [4, 16, 8, 9, 8, 6]
    chance = (pur.position_peak_distance < 5.0).mean()
    assert pur.summary(tolerance=5.0)["chance_peak_at_object"] == chance


def test_purity_checks_its_arguments(pushed):
    net, result, images, masks, labels = pushed
    with pytest.raises(ValueError, match="masks"):
        prototype_purity(net, result, images, masks[:, :10], labels)
    with pytest.raises(ValueError, match="labels"):
        prototype_purity(net, result, images, masks, labels[:3])
    with pytest.raises(ValueError, match="k must"):
        prototype_purity(net, result, images, masks, labels, k=7)
    with pytest.raises(ValueError, match="push_result"):
        prototype_purity(
            net, result._replace(image_index=result.image_index[:2]), images, masks, labels
        )


def test_pruning_removes_the_impure_prototype_and_keeps_the_logits_of_the_rest(pushed):
    net, result, images, masks, labels = pushed
    pruned = prune_prototypes(net, images, labels, k=3, threshold=2, push_result=result)
    assert pruned.kept.tolist() == [0, 2, 3] and pruned.pruned.tolist() == [1]
    assert pruned.own_class_counts.tolist() == [3, 0, 3, 3]
    small = pruned.model
    assert small.config.prototype_classes == (0, 1, 1) and small.config.num_prototypes == 3
    assert pruned.push.image_index.tolist() == result.image_index[[0, 2, 3]].tolist()
    # Removing a prototype removes its term from every logit, nothing else.
    _, min_d, _ = net.forward(jnp.asarray(images))
    w = np.asarray(net.last_layer[...])
    expected = (
        np.asarray(net(jnp.asarray(images))) - np.asarray(log_similarity(min_d))[:, 1:2] * w[1]
    )
    np.testing.assert_allclose(small(jnp.asarray(images)), expected, rtol=1e-5, atol=1e-5)
    assert net.config.num_prototypes == 4  # the input network is unchanged
    # The pruned network trains and evaluates like any other.
    train_last_layer(
        small, images, labels, config=TrainConfig(batch_size=3), key=jax.random.key(0), iterations=2
    )
    assert 0.0 <= evaluate(small, images, labels)["accuracy"] <= 1.0


def test_pruning_keeps_one_prototype_per_class(pushed):
    net, result, images, masks, labels = pushed
    pruned = prune_prototypes(net, images, labels, k=6, threshold=6)
    assert pruned.kept.tolist() == [0, 2]  # every count is 3 < 6: the first of each class stays
    bare = prune_prototypes(net, images, labels, k=6, threshold=6, keep_one_per_class=False)
    assert bare.kept.tolist() == [0]
    with pytest.raises(ValueError, match="threshold"):
        prune_prototypes(net, images, labels, k=3, threshold=4)
    with pytest.raises(ValueError, match="keep"):
        select_prototypes(net, [0, 0])
    with pytest.raises(ValueError, match="prototype_classes"):
        ProtoPNetConfig(num_classes=2, num_prototypes=2, prototype_classes=(0, 2)).validate()


def test_border_patches_are_never_matched():
    cfg = ProtoPNetConfig(
        img_size=SIZE, num_classes=2, num_prototypes=2, prototype_depth=D, channels=(4, 4), border=1
    )
    net = ProtoPNet(cfg, key=jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (6, SIZE, SIZE, 3))
    _, min_d, d = net.forward(x)
    inner = squared_distances(net.latent(x), net.prototypes[...])[:, 1:-1, 1:-1]
    np.testing.assert_allclose(min_d, inner.min(axis=(1, 2)), rtol=1e-6)
    assert np.all(np.asarray(d)[:, 0] >= BORDER_DISTANCE)
    res = push(net, np.asarray(x), LABELS)
    assert np.all((res.position >= 1) & (res.position <= 4))  # inside the 6x6 grid's ring
    with pytest.raises(ValueError, match="border"):
        ProtoPNetConfig(
            img_size=SIZE, num_classes=2, num_prototypes=2, channels=(4, 4), border=3
        ).validate()
