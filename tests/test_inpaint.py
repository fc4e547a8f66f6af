"""Inpainting maskers: the JAX solvers against SciPy and scikit-image, and Shapley values under
them against brute force and shap's PartitionExplainer."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import shap
from compiles import count_compiles
from scipy import sparse
from scipy.sparse.linalg import spsolve
from skimage.restoration import inpaint_biharmonic

import xaijax as xj
from xaijax.core.inpainting import inpaint, laplacian

RNG = np.random.default_rng(0)


def neumann_laplacian(H, W):
    """``-Δ`` as a sparse matrix: the graph Laplacian of the 4-neighbour ``H x W`` grid."""

    def path(n):
        d = np.full(n, 2.0)
        d[[0, -1]] = 1.0
        if n == 1:
            d[:] = 0.0
        return sparse.diags([d, -np.ones(n - 1), -np.ones(n - 1)], [0, -1, 1])

    return (sparse.kron(path(H), sparse.eye(W)) + sparse.kron(sparse.eye(H), path(W))).tocsr()


def harmonic_reference(x, keep):
    """Solve ``(-Δ)[h, h] u = -(-Δ)[h, k] x_k`` with ``spsolve``, channel by channel."""
    x = np.asarray(x, np.float64)
    x3 = x[..., None] if x.ndim == 2 else x
    keep3 = np.broadcast_to(keep.reshape(keep.shape + (1,) * (3 - keep.ndim)), x3.shape)
    A = neumann_laplacian(*x3.shape[:2])
    out = x3.copy()
    for c in range(x3.shape[2]):
        k = keep3[..., c].ravel()
        h = ~k
        if not h.any():
            continue
        if not k.any():
            out[..., c] = 0.0
            continue
        u = spsolve(A[h][:, h].tocsc(), -A[h][:, k] @ x3[..., c].ravel()[k])
        flat = out[..., c].ravel()
        flat[h] = u
        out[..., c] = flat.reshape(x3.shape[:2])
    return out.reshape(x.shape)


def biharmonic_reference(x, keep):
    """``skimage.restoration.inpaint_biharmonic`` channel by channel (a channel with nothing
    known becomes 0, as ours)."""
    x = np.asarray(x, np.float64)
    x3 = x[..., None] if x.ndim == 2 else x
    keep3 = np.broadcast_to(keep.reshape(keep.shape + (1,) * (3 - keep.ndim)), x3.shape)
    out = x3.copy()
    for c in range(x3.shape[2]):
        k = keep3[..., c]
        if k.all():
            continue
        if not k.any():
            out[..., c] = 0.0
            continue
        out[..., c] = inpaint_biharmonic(x3[..., c], ~k)
    return out.reshape(x.shape)


REFERENCE = {"harmonic": harmonic_reference, "biharmonic": biharmonic_reference}


def holes(H, W):
    """Hidden blocks in the interior, on an edge and in a corner."""
    keep = np.ones((H, W), bool)
    keep[H // 4 : H // 2 + 2, 1 : W // 2] = False
    keep[0:3, W - 4 :] = False
    keep[H - 2 :, 0:2] = False
    return keep


# -- the solvers ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["harmonic", "biharmonic"])
@pytest.mark.parametrize("shape", [(8, 8), (12, 9, 3), (24, 24, 2)])
def test_inpaint_equals_the_sparse_direct_solution(method, shape):
    x = RNG.uniform(size=shape).astype(np.float32)
    keep = holes(*shape[:2])
    ours = np.asarray(jax.jit(lambda x, k: inpaint(x, k, method))(x, keep))
    ref = REFERENCE[method](x, keep)
    np.testing.assert_array_equal(ours[keep], x[keep])  # known pixels untouched
    assert np.abs(ours - ref).max() < 1e-5
    assert np.abs(ref - x)[~keep].max() > 0.05, "a comparison of the input with itself"


@pytest.mark.parametrize("method", ["harmonic", "biharmonic"])
def test_per_channel_masks_and_empty_channels(method):
    x = RNG.uniform(size=(10, 7, 3)).astype(np.float32)
    keep = RNG.uniform(size=(10, 7, 3)) < 0.4
    keep[..., 2] = False  # nothing known in channel 2: zeros
    ours = np.asarray(inpaint(jnp.asarray(x), jnp.asarray(keep), method))
    np.testing.assert_allclose(ours, REFERENCE[method](x, keep), atol=1e-5)
    np.testing.assert_array_equal(ours[..., 2], 0.0)


def test_harmonic_solution_is_the_mean_of_its_neighbours():
    x = RNG.uniform(size=(9, 11)).astype(np.float32)
    keep = holes(9, 11)
    u = inpaint(jnp.asarray(x), jnp.asarray(keep), "harmonic")
    assert float(jnp.abs(jnp.where(keep, 0.0, laplacian(u))).max()) < 1e-5


def test_biharmonic_under_x64_matches_skimage_to_rounding():
    x = RNG.uniform(size=(16, 12, 3))
    keep = holes(16, 12)
    with jax.enable_x64(True):
        ours = np.asarray(inpaint(jnp.asarray(x), jnp.asarray(keep), "biharmonic", tol=1e-12))
    ref = inpaint_biharmonic(x, ~keep, channel_axis=-1)
    np.testing.assert_allclose(ours, ref, atol=1e-10)


def test_iterations_cap_the_solve():
    x = RNG.uniform(size=(16, 16)).astype(np.float32)
    keep = holes(16, 16)
    ref = harmonic_reference(x, keep)
    rough = np.asarray(inpaint(jnp.asarray(x), jnp.asarray(keep), "harmonic", iterations=2))
    assert np.abs(rough - ref).max() > 1e-3
    assert np.abs(np.asarray(inpaint(jnp.asarray(x), jnp.asarray(keep))) - ref).max() < 1e-5


# -- Shapley values under inpainting -------------------------------------------------------------
H, W, C, K = 8, 8, 3, 2
PROJ = RNG.normal(size=(H * W * C, K)).astype(np.float32) / 8


def model(X):
    X = jnp.asarray(X, jnp.float32)
    return jnp.tanh(X.reshape(X.shape[0], -1) @ PROJ)


_model = jax.jit(model)


def model_np(X):
    return np.asarray(_model(np.asarray(X, np.float32)), np.float64)


def brute_force_shapley(x, groups, method):
    """Shapley values over group coalitions, each coalition inpainted by the reference."""
    G = int(groups.max()) + 1
    v = {}
    for S in itertools.product([False, True], repeat=G):
        keep = np.asarray(S)[groups]
        v[S] = model_np(REFERENCE[method](x, keep)[None])[0]
    phi = np.zeros((G, K))
    for i in range(G):
        for S, value in v.items():
            if S[i]:
                continue
            s = sum(S)
            w = math.factorial(s) * math.factorial(G - s - 1) / math.factorial(G)
            on = S[:i] + (True,) + S[i + 1 :]
            phi[i] += w * (v[on] - value)
    return phi, v[(False,) * G]


def images_with_a_zero_patch(n=2):
    images = RNG.uniform(size=(n, H, W, C)).astype(np.float32)
    images[:, :4, :4] = 0.0  # patch 0 equals the empty coalition's fill: no dummy under inpainting
    return images


@pytest.mark.parametrize("method", ["harmonic", "biharmonic"])
def test_exact_and_kernel_shap_equal_brute_force(method):
    images = images_with_a_zero_patch()
    groups = xj.patch_groups((H, W), 4)  # 4 patches
    masker = xj.maskers.inpaint(method)
    exact = xj.exact_shapley(model, images, masker=masker, groups=groups)
    kernel = xj.kernel_shap(
        model, images, masker=masker, groups=groups, num_samples=100, key=jax.random.key(0)
    )
    for i, x in enumerate(images):
        ref, base = brute_force_shapley(x, groups, method)
        assert np.abs(exact.values[i] - ref).max() < 1e-5
        assert np.abs(kernel.values[i] - ref).max() < 1e-5
        np.testing.assert_allclose(exact.base_values[i], base, atol=1e-6)
        assert np.abs(ref[0]).max() > 1e-3  # the zero patch matters: the dummy shortcut is off


def test_permutation_shap_is_exact_with_two_groups():
    images = images_with_a_zero_patch()
    groups = (np.arange(W)[None, :] >= 3).repeat(H, 0).astype(np.int32)
    masker = xj.maskers.inpaint("harmonic")
    perm = xj.permutation_shap(model, images, masker=masker, groups=groups, key=jax.random.key(1))
    for i, x in enumerate(images):
        np.testing.assert_allclose(
            perm.values[i], brute_force_shapley(x, groups, "harmonic")[0], atol=1e-5
        )


class SkimageInpaint(shap.maskers.Image):
    """shap's Image masker (its hierarchy) filling hidden elements with scikit-image's
    biharmonic inpainting, channel by channel."""

    def __init__(self, shape):
        super().__init__(0.0, shape)

    def __call__(self, mask, x):
        x = np.asarray(x, np.float64).reshape(self.input_shape)
        mask = np.ones(x.size, bool) if mask is None else np.asarray(mask, bool)
        out = biharmonic_reference(x, mask.reshape(self.input_shape))
        return (out.reshape(1, *self.input_shape),)


@pytest.mark.parametrize(("shape", "max_evals"), [((3, 4, 2), 10**4), ((5, 6, 3), 120)])
def test_partition_shap_equals_shap_with_skimage_inpainting(shape, max_evals):
    images = RNG.uniform(size=(2,) + shape).astype(np.float32)
    proj = RNG.normal(size=(int(np.prod(shape)), K)).astype(np.float32) / 4

    def f(X):
        return jnp.tanh(jnp.asarray(X, jnp.float32).reshape(X.shape[0], -1) @ proj)

    f_jit = jax.jit(f)
    ours = xj.partition_shap(
        f, images, xj.maskers.image("inpaint_biharmonic", shape), max_evals=max_evals
    )
    theirs = shap.PartitionExplainer(
        lambda X: np.asarray(f_jit(np.asarray(X, np.float32)), np.float64), SkimageInpaint(shape)
    )(images, max_evals=max_evals, silent=True)
    np.testing.assert_allclose(ours.extras["element_values"], theirs.values, atol=1e-5)
    assert np.abs(theirs.values).max() > 1e-3, "a comparison of zeros"


def test_new_images_do_not_recompile():
    groups = xj.patch_groups((H, W), 4)
    masker = xj.maskers.inpaint("biharmonic")
    xj.exact_shapley(model, images_with_a_zero_patch(), masker=masker, groups=groups)
    with count_compiles() as names:
        xj.exact_shapley(model, images_with_a_zero_patch(), masker=masker, groups=groups)
    assert names == []


# -- bad options ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(method="telea"), "method"),
        (dict(iterations=0), "iterations"),
        (dict(iterations=True), "iterations"),
        (dict(iterations=2.5), "iterations"),
        (dict(tol=0.0), "tol"),
        (dict(tol=float("nan")), "tol"),
        (dict(tol="1e-6"), "tol"),
    ],
)
def test_bad_inpaint_options_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        xj.maskers.inpaint(**kwargs)


@pytest.mark.parametrize("name", ["inpaint_telea", "inpaint_ns"])
def test_opencv_methods_are_refused_naming_ours(name):
    with pytest.raises(ValueError, match="OpenCV.*inpaint_harmonic.*inpaint_biharmonic"):
        xj.maskers.image(name, (8, 8, 3))


def test_unknown_inpaint_string_raises():
    with pytest.raises(ValueError, match="inpaint_harmonic"):
        xj.maskers.image("inpaint_fast", (8, 8, 3))


def test_inpainting_needs_images():
    rows = RNG.uniform(size=(3, 5)).astype(np.float32)
    with pytest.raises(ValueError, match="images"):
        xj.exact_shapley(
            lambda X: X.sum(axis=1), rows, masker=xj.maskers.inpaint(), groups=np.arange(5)
        )


def test_occlusion_and_feature_ablation_refuse_maskers():
    images = images_with_a_zero_patch(1)
    with pytest.raises(ValueError, match="baseline"):
        xj.occlusion(model, images, window=(2, 2, C), baseline=xj.maskers.inpaint())
    with pytest.raises(ValueError, match="baseline"):
        xj.feature_ablation(
            model, images, groups=xj.patch_groups((H, W), 4), baseline=xj.maskers.inpaint()
        )


@pytest.mark.parametrize("name", ["inpaint_telea", "inpaint_ns"])
def test_opencv_strings_are_refused_as_maskers(name):
    with pytest.raises(ValueError, match="OpenCV.*inpaint_harmonic"):
        xj.exact_shapley(
            model, images_with_a_zero_patch(1), masker=name, groups=np.zeros((H, W), np.int32)
        )


def test_inpaint_strings_are_the_default_maskers():
    images = images_with_a_zero_patch(1)
    groups = xj.patch_groups((H, W), 4)
    by_string = xj.exact_shapley(model, images, masker="inpaint_harmonic", groups=groups)
    by_masker = xj.exact_shapley(model, images, masker=xj.maskers.inpaint(), groups=groups)
    np.testing.assert_array_equal(by_string.values, by_masker.values)
