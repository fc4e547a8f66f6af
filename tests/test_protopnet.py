"""ProtoPNet unit tests: distances, similarity, initialisation, losses, push, config errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from xaijax.protopnet.losses import (
    LossCoefficients,
    cluster_cost,
    l1_wrong_class,
    protopnet_loss,
    separation_cost,
)
from xaijax.protopnet.model import (
    PlainCNN,
    ProtoPNet,
    ProtoPNetConfig,
    log_similarity,
    receptive_field,
    squared_distances,
)
from xaijax.protopnet.push import high_activation_box, push
from xaijax.protopnet.train import TrainConfig, parameter_groups, stage_optimizer

CFG = ProtoPNetConfig(
    img_size=24, in_channels=3, num_classes=3, num_prototypes=6, prototype_depth=8, channels=(8, 8)
)


@pytest.fixture(scope="module")
def net():
    return ProtoPNet(CFG, key=jax.random.key(0))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(10, 24, 24, 3)).astype(np.float32)
    labels = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0], np.int32)
    return images, labels


def brute_force_distances(z, p):
    z, p = np.asarray(z, np.float64), np.asarray(p, np.float64)
    n, h, w, _ = z.shape
    out = np.zeros((n, h, w, p.shape[0]))
    for i in range(n):
        for a in range(h):
            for b in range(w):
                for j in range(p.shape[0]):
                    out[i, a, b, j] = np.sum((z[i, a, b] - p[j]) ** 2)
    return out


def test_distances_equal_brute_force():
    rng = np.random.default_rng(1)
    z = rng.uniform(size=(2, 3, 4, 5)).astype(np.float32)
    p = rng.uniform(size=(6, 5)).astype(np.float32)
    p[2] = z[1, 2, 3]  # an exact match: the distance must clamp to 0, not go negative
    d = np.asarray(squared_distances(jnp.asarray(z), jnp.asarray(p)))
    np.testing.assert_allclose(d, brute_force_distances(z, p), atol=1e-5)
    assert d.min() >= 0.0 and d[1, 2, 3, 2] < 1e-6


def test_model_distances_are_those_of_its_latent_patches(net, data):
    x = jnp.asarray(data[0][:2])
    logits, min_d, d = net.forward(x)
    z = net.latent(x)
    assert z.shape == (2, 6, 6, 8) and float(z.min()) >= 0 and float(z.max()) <= 1
    brute = brute_force_distances(z, net.prototypes[...])
    np.testing.assert_allclose(np.asarray(d), brute, atol=1e-4)
    np.testing.assert_allclose(np.asarray(min_d), brute.min(axis=(1, 2)), atol=1e-4)
    sim = np.log((brute.min(axis=(1, 2)) + 1) / (brute.min(axis=(1, 2)) + 1e-4))
    np.testing.assert_allclose(np.asarray(logits), sim @ np.asarray(net.last_layer[...]), rtol=1e-4)


def test_similarity_at_zero_and_monotone():
    assert float(log_similarity(jnp.float32(0.0))) == pytest.approx(math.log(1e4), rel=1e-6)
    s = np.asarray(log_similarity(jnp.linspace(0.0, 10.0, 50)))
    assert np.all(np.diff(s) < 0) and s[-1] > 0


def test_last_layer_init_and_class_identity(net):
    ident = np.asarray(net.class_identity[...])
    np.testing.assert_array_equal(ident.argmax(1), [0, 0, 1, 1, 2, 2])
    expected = np.full((6, 3), -0.5)
    expected[np.arange(6), [0, 0, 1, 1, 2, 2]] = 1.0
    np.testing.assert_array_equal(np.asarray(net.last_layer[...]), expected)
    protos = np.asarray(net.prototypes[...])
    assert protos.shape == (6, 8) and protos.min() >= 0 and protos.max() < 1


def test_loss_terms_on_hand_made_case():
    ident = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    min_d = jnp.array([[1.0, 2.0, 3.0, 0.5], [4.0, 0.25, 6.0, 7.0]])
    labels = jnp.array([0, 1])
    # image 0 (class 0): own min(1, 2) = 1, other min(3, 0.5) = 0.5
    # image 1 (class 1): own min(6, 7) = 6, other min(4, 0.25) = 0.25
    assert float(cluster_cost(min_d, labels, ident, 8.0)) == pytest.approx((1 + 6) / 2)
    assert float(separation_cost(min_d, labels, ident, 8.0)) == pytest.approx((0.5 + 0.25) / 2)
    w = jnp.array([[1.0, -0.5], [2.0, 3.0], [-4.0, 1.0], [0.5, 1.0]])
    assert float(l1_wrong_class(w, ident)) == pytest.approx(0.5 + 3.0 + 4.0 + 0.5)
    logits = jnp.array([[2.0, 0.0], [1.0, 1.0]])
    ce = (math.log(1 + math.exp(-2.0)) + math.log(2.0)) / 2
    coef = LossCoefficients(cross_entropy=1.0, cluster=0.8, separation=-0.08, l1=1e-4)
    t = protopnet_loss(logits, min_d, labels, w, ident, max_dist=8.0, coefficients=coef)
    assert float(t.cross_entropy) == pytest.approx(ce, rel=1e-6)
    assert float(t.total) == pytest.approx(ce + 0.8 * 3.5 - 0.08 * 0.375 + 1e-4 * 8.0, rel=1e-6)
    assert float(t.accuracy) == pytest.approx(0.5)  # ties go to class 0, image 1 is class 1


def test_push_projects_onto_own_class_patches(data):
    images, labels = data
    model = ProtoPNet(CFG, key=jax.random.key(3))
    old = np.asarray(model.prototypes[...])
    res = push(model, images, labels, batch_size=4)  # 10 images: a padded last batch
    new = np.asarray(model.prototypes[...])
    np.testing.assert_array_equal(new, res.prototypes)
    z = np.asarray(model.latent(jnp.asarray(images)))  # (10, 6, 6, 8)
    brute = brute_force_distances(z, old)  # distances of old prototypes to every patch
    own = np.array([0, 0, 1, 1, 2, 2])
    for j in range(6):
        i, (r, c) = res.image_index[j], res.position[j]
        assert labels[i] == own[j] == res.classes[j]
        np.testing.assert_allclose(new[j], z[i, r, c], atol=1e-6)
        # the chosen patch is the nearest among all patches of images of the prototype's class
        allowed = brute[labels == own[j], :, :, j]
        assert res.distances[j] == pytest.approx(allowed.min(), abs=1e-4)
        assert brute[i, r, c, j] == pytest.approx(allowed.min(), abs=1e-4)
    _, min_d, d = model.forward(jnp.asarray(images[res.image_index]))
    assert float(jnp.max(min_d[jnp.arange(6), jnp.arange(6)])) < 1e-5
    # the recorded activation map peaks (similarity ~ ln 1e4) at the pushed position
    for j in range(6):
        r, c = res.position[j]
        assert res.activation[j, r, c] == pytest.approx(res.activation[j].max())
        assert res.activation[j, r, c] > 8.0
        y0, y1, x0, x1 = res.rf_box[j]
        assert 0 <= y0 < y1 <= 24 and 0 <= x0 < x1 <= 24


def test_receptive_field_contains_gradient_support(net):
    rf = receptive_field(CFG)
    assert (rf.size, rf.jump, rf.rf) == (6, 4, 18)  # two conv blocks and the features conv
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(1, 24, 24, 3)), jnp.float32)
    for r, c in [(0, 0), (2, 3), (5, 5)]:
        g = jax.grad(lambda x, r=r, c=c: jnp.sum(net.latent(x)[0, r, c]))(x)
        support = np.abs(np.asarray(g[0])).sum(-1) > 0
        y0, y1, x0, x1 = rf.box(r, c, 24)
        inside = np.zeros_like(support)
        inside[y0:y1, x0:x1] = True
        assert support.any() and not (support & ~inside).any()


def test_high_activation_box():
    m = np.zeros((20, 20))
    m[3:9, 10:15] = 1.0  # 30 of 400 pixels: above the 95th percentile
    m[15, 2] = 0.5
    assert high_activation_box(m) == (3, 9, 10, 15)


def test_stage_optimizers_freeze_the_right_groups(net, data):
    images, labels = data
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    groups = parameter_groups(params)
    assert set(jax.tree_util.tree_leaves(groups)) == {
        "features",
        "add_on",
        "prototypes",
        "last_layer",
    }
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    trained = {
        "warm": {"add_on", "prototypes"},
        "joint": {"features", "add_on", "prototypes"},
        "last": {"last_layer"},
    }
    for stage, moving in trained.items():
        tx = stage_optimizer(stage, TrainConfig(), steps_per_epoch=3)
        updates, _ = tx.update(grads, tx.init(params), params)
        new = optax.apply_updates(params, updates)
        changed = jax.tree_util.tree_map(
            lambda a, b: bool(jnp.any(a != b)),
            jax.tree_util.tree_leaves(new),
            jax.tree_util.tree_leaves(params),
        )
        for g, ch in zip(jax.tree_util.tree_leaves(groups), changed, strict=True):
            assert ch == (g in moving), (stage, g)


def test_bad_configuration_raises():
    with pytest.raises(ValueError, match="num_prototypes"):
        ProtoPNet(ProtoPNetConfig(num_classes=3, num_prototypes=7), key=jax.random.key(0))
    with pytest.raises(ValueError, match="img_size"):
        ProtoPNet(ProtoPNetConfig(img_size=6, channels=(4, 4, 4)), key=jax.random.key(0))
    with pytest.raises(ValueError, match="backbone"):
        PlainCNN(ProtoPNetConfig(backbone="vgg"), key=jax.random.key(0))
    with pytest.raises(ValueError, match="channels"):
        ProtoPNetConfig(backbone="resnet18", channels=(4, 4)).validate()
    with pytest.raises(ValueError, match="epochs"):
        TrainConfig(epochs=0).validate()


def test_resnet18_backbone_shapes():
    cfg = ProtoPNetConfig(
        img_size=32,
        num_classes=2,
        num_prototypes=2,
        backbone="resnet18",
        channels=(4, 4, 8, 8),
        prototype_depth=4,
    )
    model = ProtoPNet(cfg, key=jax.random.key(0))
    logits, min_d, d = model.forward(jnp.zeros((1, 32, 32, 3)))
    assert logits.shape == (1, 2) and d.shape == (1, 4, 4, 2) == (
        1,
        *[receptive_field(cfg).size] * 2,
        2,
    )
