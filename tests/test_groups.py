"""Feature groups and maskers (core/masking.py) on the Shapley explainers, against brute force.

The oracle enumerates every coalition of groups in NumPy: a hidden group's elements take each
fill row's values, ``v(S)`` is the weighted mean of the model, and the Shapley value of group
``g`` is the weighted sum of ``v(S + g) - v(S)``.
"""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax as xj
from xaijax.core.masking import as_groups, box_blur, expand_groups


def brute_force_group_shapley(f, x, fill_rows, fill_weights, ids):
    """Shapley values of the ``G`` groups of ``ids`` (a map over ``x``'s leading axes)."""
    G = int(ids.max()) + 1
    trailing = (1,) * (x.ndim - ids.ndim)

    def v(S):
        keep = np.isin(ids, list(S)).reshape(ids.shape + trailing)
        rows = np.where(keep[None], x[None], fill_rows)
        return np.tensordot(fill_weights, np.asarray(f(rows), np.float64), axes=1)

    cache = {S: v(S) for r in range(G + 1) for S in itertools.combinations(range(G), r)}
    phi = []
    for g in range(G):
        total = 0.0
        for S, value in cache.items():
            if g in S:
                continue
            w = math.factorial(len(S)) * math.factorial(G - len(S) - 1) / math.factorial(G)
            total = total + w * (cache[tuple(sorted(S + (g,)))] - value)
        phi.append(total)
    return np.stack(phi), cache[()]


# A small nonlinear image model: products of pixels in different patches, so group values differ
# from sums of per-pixel values.
_W = np.random.default_rng(0).normal(size=(6, 6, 2)).astype(np.float32)


def image_model(X):
    s = (X * _W).sum(axis=(1, 2, 3))
    corner = X[:, 0, 0, 0] * X[:, 5, 5, 1]
    return jnp.stack([jnp.tanh(s) + corner, jax.nn.sigmoid(s - corner)], axis=1)


IMAGES = np.random.default_rng(1).normal(size=(2, 6, 6, 2)).astype(np.float32)
PATCHES = xj.patch_groups((6, 6), (3, 2))  # 2 x 3 = 6 groups


def tabular_model(X):
    return jnp.sin(X[:, 0] * X[:, 1]) + X[:, 2] * X[:, 3] * X[:, 4] + X[:, 5] ** 2


XT = np.random.default_rng(2).normal(size=(3, 6)).astype(np.float32)
BG = np.random.default_rng(3).normal(size=(5, 6)).astype(np.float32)
COLUMN_GROUPS = np.array([0, 0, 1, 2, 2, 3])


@pytest.mark.parametrize("method", ["exact", "kernel"])
def test_image_groups_equal_brute_force_with_a_constant_masker(method):
    kwargs = {} if method == "exact" else dict(key=jax.random.key(0))  # 2^6 - 2: enumerated
    fn = xj.exact_shapley if method == "exact" else xj.kernel_shap
    exp = fn(image_model, IMAGES, masker=xj.maskers.constant(0.5), groups=PATCHES, **kwargs)
    assert exp.values.shape == (2, 6, 2)
    for i, x in enumerate(IMAGES):
        phi, base = brute_force_group_shapley(
            image_model, x, np.full((1,) + x.shape, 0.5, np.float32), np.ones(1), PATCHES
        )
        np.testing.assert_allclose(exp.values[i], phi, atol=2e-5)
        np.testing.assert_allclose(exp.base_values[i], base, atol=1e-5)
    # element_values spreads each group's value over its pixels
    ev = exp.extras["element_values"]
    assert ev.shape == (2, 6, 6, 2)
    np.testing.assert_array_equal(ev[1, 4, 5], exp.values[1, PATCHES[4, 5]])
    np.testing.assert_array_equal(exp.extras["groups"], PATCHES)


@pytest.mark.parametrize("method", ["exact", "kernel", "permutation"])
def test_tabular_column_groups_equal_brute_force_over_a_background(method):
    if method == "exact":
        exp = xj.exact_shapley(tabular_model, XT, BG, groups=COLUMN_GROUPS)
    elif method == "kernel":
        exp = xj.kernel_shap(tabular_model, XT, BG, groups=COLUMN_GROUPS, key=jax.random.key(1))
    else:
        # Antithetic orders are exact for games with at most pairwise interactions: 4 groups
        # here have a three-way one, so many orders and a looser tolerance.
        exp = xj.permutation_shap(
            tabular_model, XT, BG, groups=COLUMN_GROUPS, key=jax.random.key(1),
            num_permutations=400,
        )  # fmt: skip
    w = np.full(len(BG), 1 / len(BG))
    for i, x in enumerate(XT):
        phi, _ = brute_force_group_shapley(tabular_model, x, BG, w, COLUMN_GROUPS)
        tol = 0.05 if method == "permutation" else 2e-5
        np.testing.assert_allclose(exp.values[i], phi, atol=tol)
    # local accuracy holds exactly for every estimator
    np.testing.assert_allclose(
        exp.values.sum(1) + exp.base_values, np.asarray(tabular_model(XT)), atol=2e-5
    )


def test_permutation_groups_exact_for_pairwise_interactions():
    def pairwise(X):
        return X[:, 0] * X[:, 3] + X[:, 1] * X[:, 5] + X[:, 2]

    exp = xj.permutation_shap(
        pairwise, XT, BG, groups=COLUMN_GROUPS, key=jax.random.key(0), num_permutations=3
    )
    w = np.full(len(BG), 1 / len(BG))
    for i, x in enumerate(XT):
        phi, _ = brute_force_group_shapley(pairwise, x, BG, w, COLUMN_GROUPS)
        np.testing.assert_allclose(exp.values[i], phi, atol=2e-5)


@pytest.mark.parametrize("method", ["exact", "kernel", "permutation"])
def test_one_group_per_feature_equals_the_ungrouped_values_exactly(method):
    kw = {} if method == "exact" else dict(key=jax.random.key(2))
    fn = {"exact": xj.exact_shapley, "kernel": xj.kernel_shap}.get(method, xj.permutation_shap)
    plain = fn(tabular_model, XT, BG, **kw)
    grouped = fn(tabular_model, XT, BG, groups=np.arange(6), **kw)
    np.testing.assert_array_equal(plain.values, grouped.values)
    np.testing.assert_array_equal(plain.base_values, grouped.base_values)
    # the background as a masker is the same thing
    masked = fn(tabular_model, XT, masker=xj.maskers.background(BG), **kw)
    np.testing.assert_array_equal(plain.values, masked.values)


def test_per_instance_groups_with_different_counts_pad_with_exact_zeros():
    ids = np.array([[0, 0, 1, 1, 2, 2], [0, 1, 2, 3, 3, 3], [0, 0, 0, 0, 1, 1]])
    w = np.full(len(BG), 1 / len(BG))
    for fn, kw in (
        (xj.exact_shapley, {}),
        (xj.kernel_shap, dict(key=jax.random.key(0))),
    ):
        exp = fn(tabular_model, XT, BG, groups=ids, **kw)
        assert exp.values.shape == (3, 4)
        for i, x in enumerate(XT):
            phi, _ = brute_force_group_shapley(tabular_model, x, BG, w, ids[i])
            G = len(phi)
            np.testing.assert_allclose(exp.values[i, :G], phi, atol=2e-5)
            assert np.all(exp.values[i, G:] == 0.0)
        np.testing.assert_array_equal(exp.extras["groups"], ids)


def test_blur_masker_is_opencv_blur():
    img = np.random.default_rng(4).normal(size=(7, 9, 3)).astype(np.float32)
    for kh, kw in ((3, 3), (4, 2), (5, 6)):
        # cv2.blur: mean over rows i - kh//2 .. i + (kh-1) - kh//2, BORDER_REFLECT_101.
        pad = ((kh // 2, kh - 1 - kh // 2), (kw // 2, kw - 1 - kw // 2), (0, 0))
        p = np.pad(img, pad, mode="reflect")
        want = np.zeros_like(img)
        for i in range(7):
            for j in range(9):
                want[i, j] = p[i : i + kh, j : j + kw].mean(axis=(0, 1))
        np.testing.assert_allclose(box_blur(jnp.asarray(img), (kh, kw)), want, atol=1e-5)
    try:
        import cv2
    except ImportError:
        return
    np.testing.assert_allclose(box_blur(jnp.asarray(img), (4, 2)), cv2.blur(img, (2, 4)), 1e-5)


def test_blur_masker_groups_equal_brute_force():
    exp = xj.exact_shapley(image_model, IMAGES[:1], masker=xj.maskers.blur(3), groups=PATCHES)
    blurred = np.asarray(box_blur(jnp.asarray(IMAGES[0]), (3, 3)))[None]
    phi, base = brute_force_group_shapley(image_model, IMAGES[0], blurred, np.ones(1), PATCHES)
    np.testing.assert_allclose(exp.values[0], phi, atol=2e-5)
    np.testing.assert_allclose(exp.base_values[0], base, atol=1e-5)


def test_token_masker_on_integer_sequences():
    emb = np.random.default_rng(5).normal(size=(10, 3)).astype(np.float32)

    def text_model(tokens):  # tokens (n, L) int
        e = jnp.asarray(emb)[tokens]  # (n, L, 3)
        return jnp.tanh(e[:, :, 0].sum(1)) + e[:, 0, 1] * e[:, -1, 2]

    tokens = np.array([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]])
    spans = np.array([0, 0, 1, 2, 2])
    exp = xj.exact_shapley(text_model, tokens, masker=xj.maskers.token(0), groups=spans)
    for i, x in enumerate(tokens):
        phi, _ = brute_force_group_shapley(
            lambda t: text_model(jnp.asarray(t)), x, np.zeros((1, 5), int), np.ones(1), spans
        )
        np.testing.assert_allclose(exp.values[i], phi, atol=2e-5)
    with pytest.raises(TypeError, match="X must be integer token ids"):
        xj.exact_shapley(text_model, tokens.astype(float), masker=xj.maskers.token(0))


def test_expand_groups_broadcasts_over_channels():
    keep = expand_groups(jnp.array([[True, False]]), jnp.array([[0, 1], [1, 1]]), (2, 2, 3))
    assert keep.shape == (1, 2, 2, 3)
    assert keep[0, :, :, 0].tolist() == [[True, False], [False, False]]
    assert np.all(keep[..., 0] == keep[..., 2])


def test_patch_and_superpixel_groups():
    ids = xj.patch_groups((5, 5), 2)
    assert ids.max() == 8 and ids[4, 4] == 8 and ids[0, 1] == 0
    img = np.zeros((2, 16, 16, 3))
    img[:, :, 8:] = 1.0
    seg = xj.superpixel_groups(img, "slic", n_segments=4, compactness=1.0)
    assert seg.shape == (2, 16, 16) and seg.min() == 0
    for s in seg:  # every id used, so the map passes as_groups
        assert set(np.unique(s)) == set(range(s.max() + 1))
    as_groups(seg, (16, 16, 3), 2)
    with pytest.raises(ValueError, match="method must be one of"):
        xj.superpixel_groups(img, "watershed")


@pytest.mark.parametrize(
    "groups, match",
    [
        (np.zeros((5,), int), "groups must map the elements"),
        (np.array([0, 1, 2, -1, 0, 1]), "groups must hold ids >= 0"),
        (np.array([0, 2, 2, 3, 0, 0]), r"group\(s\) \[1\] are empty"),
        (np.zeros((4, 6), int), "groups must map the elements"),
    ],
)
def test_bad_groups_name_the_argument(groups, match):
    with pytest.raises(ValueError, match=match):
        xj.kernel_shap(tabular_model, XT, BG, groups=groups, key=jax.random.key(0))


def test_bad_groups_and_maskers():
    with pytest.raises(TypeError, match="groups must be integer group ids"):
        xj.exact_shapley(tabular_model, XT, BG, groups=np.zeros(6))
    many = np.arange(6 * 7).reshape(6, 7) % 21
    images = np.zeros((1, 6, 7, 1), np.float32)
    with pytest.raises(ValueError, match="groups has 21 groups; exact_shapley enumerates"):
        xj.exact_shapley(lambda X: X.sum((1, 2, 3)), images, masker=0.0, groups=many)
    with pytest.raises(ValueError, match="groups are needed for inputs of shape"):
        xj.kernel_shap(image_model, IMAGES, masker=0.0, key=jax.random.key(0))
    with pytest.raises(ValueError, match="either background or masker"):
        xj.exact_shapley(tabular_model, XT, BG, masker=xj.maskers.constant(0.0))
    with pytest.raises(ValueError, match="pass a background"):
        xj.exact_shapley(tabular_model, XT)
    with pytest.raises(TypeError, match="masker must be a Masker"):
        xj.exact_shapley(tabular_model, XT, masker={"value": 0})
    with pytest.raises(ValueError, match="does not broadcast"):
        xj.exact_shapley(tabular_model, XT, masker=xj.maskers.constant(np.zeros(4)))
    with pytest.raises(ValueError, match="blur window"):
        xj.exact_shapley(image_model, IMAGES, masker=xj.maskers.blur(7), groups=PATCHES)
    with pytest.raises(ValueError, match="feature_names"):
        xj.exact_shapley(tabular_model, XT, BG, groups=COLUMN_GROUPS, feature_names=list("abcdef"))


def test_grouped_images_keep_the_contract():
    """Mesh, batch_size=1, per-instance groups, compile once: values as the plain call's."""
    from compiles import count_compiles

    seg = np.stack([PATCHES, PATCHES.T.reshape(6, 6) % 6])
    kw = dict(masker=xj.maskers.blur(3), groups=seg, key=jax.random.key(3), num_samples=30)
    plain = xj.kernel_shap(image_model, IMAGES, **kw)
    sharded = xj.kernel_shap(image_model, IMAGES, mesh=xj.instance_mesh(), **kw)
    np.testing.assert_allclose(sharded.values, plain.values, atol=1e-6)
    small = xj.kernel_shap(image_model, IMAGES, batch_size=1, **kw)
    np.testing.assert_allclose(small.values, plain.values, atol=1e-5)
    single = xj.kernel_shap(image_model, IMAGES[1], **{**kw, "groups": seg[1]})
    assert single.values.shape == (6, 2) and single.extras["element_values"].shape == (6, 6, 2)
    np.testing.assert_allclose(
        single.values.sum(0) + single.base_values,
        np.asarray(image_model(IMAGES[1:]))[0],
        atol=1e-6,
    )
    other = IMAGES[::-1] + 0.1
    with count_compiles() as names:
        xj.kernel_shap(image_model, other, **kw)
    assert names == [], names  # new images and groups of the same shapes: no recompilation
