"""CAMs on token grids (``reshape=``): the CAM family on our ViT, against pytorch-grad-cam.

The oracle is pytorch-grad-cam (``grad-cam==1.5.7``) with its ViT ``reshape_transform`` on a
PyTorch twin of the ViT with identical weights (tests/torch_twins.py). pytorch-grad-cam imports
torchvision, whose registry wheels do not match the CPU torch here; as issue 18 allows, this test
injects a small stand-in module for the few torchvision names it imports (``transforms.Compose``,
``Normalize``, ``ToTensor``, ``transforms.functional.resize``, ``ops.box_iou``), none of which the
compared CAMs call. Without pytorch-grad-cam the oracle tests are skipped.
"""

import sys
import types

import jax.numpy as jnp
import numpy as np
import pytest
from cam_models import random_module
from flax import nnx

import xaijax as xj
from xaijax.zoo.transformers import ViT

torch = pytest.importorskip("torch")

IMAGES = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype(np.float32)
SCALE = 1e4
LAYER = "blocks/-1/norm1"  # pytorch-grad-cam's ViT target layer: the last block's norm1


@pytest.fixture(scope="module")
def vit():
    return random_module(
        lambda: ViT(16, 4, 3, 3, dim=16, depth=2, heads=2, mlp_dim=32, rngs=nnx.Rngs(0)),
        seed=1,
        scale=0.5,
    )


def _torchvision_stand_in():
    """A stand-in for the torchvision names pytorch-grad-cam imports (see the module docstring)."""
    if "torchvision" in sys.modules:
        return
    tv = types.ModuleType("torchvision")
    transforms = types.ModuleType("torchvision.transforms")
    functional = types.ModuleType("torchvision.transforms.functional")
    ops = types.ModuleType("torchvision.ops")

    def unavailable(*args, **kwargs):
        raise NotImplementedError("torchvision stand-in (tests/test_vit_cam.py)")

    transforms.Compose = transforms.Normalize = transforms.ToTensor = unavailable
    functional.resize = unavailable
    ops.box_iou = unavailable
    transforms.functional, tv.transforms, tv.ops = functional, transforms, ops
    sys.modules.update(
        {
            "torchvision": tv,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
            "torchvision.ops": ops,
        }
    )


@pytest.fixture(scope="module")
def gradcam_lib():
    try:
        import torchvision  # noqa: F401
    except Exception:
        _torchvision_stand_in()
    return pytest.importorskip("pytorch_grad_cam")


@pytest.fixture(scope="module")
def twin(vit):
    from torch_twins import TorchViT

    return TorchViT(vit).eval()


def _nchw(X):
    return torch.tensor(np.ascontiguousarray(np.asarray(X).transpose(0, 3, 1, 2)))


def reshape_transform(tensor, height=4, width=4):
    # pytorch-grad-cam's ViT tutorial transform: drop the class token, (n, d, h, w).
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


def test_twin_logits_equal(vit, twin):
    ours = np.asarray(vit(jnp.asarray(IMAGES)))
    theirs = twin(_nchw(IMAGES)).detach().numpy()
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "ours, theirs",
    [
        ("grad_cam", "GradCAM"),
        ("grad_cam_plus_plus", "GradCAMPlusPlus"),
        ("xgrad_cam", "XGradCAM"),
        ("layer_cam", "LayerCAM"),
        ("hires_cam", "HiResCAM"),
    ],
)
def test_cams_equal_pytorch_grad_cam_on_the_twin(vit, twin, gradcam_lib, ours, theirs):
    # The score is 1e4 * logit: pytorch-grad-cam adds 1e-7 to Grad-CAM++'s alpha denominator
    # (of order g^2, here ~1e-6 for the logit), which would otherwise be a visible difference.
    targets = np.array([1, 2])  # positive Grad-CAM maps on both images with these weights
    exp = getattr(xj, ours)(
        vit,
        LAYER,
        IMAGES,
        lambda y: SCALE * jnp.take_along_axis(y, jnp.asarray(targets)[:, None], 1)[:, 0],
        reshape=True,
    )
    method = getattr(gradcam_lib, theirs)(
        model=twin, target_layers=[twin.blocks[-1].norm1], reshape_transform=reshape_transform
    )
    want = method(
        input_tensor=_nchw(IMAGES), targets=[lambda out, t=t: SCALE * out[t] for t in targets]
    )
    assert float(np.asarray(exp.values).max()) > 0.5  # a real map, not all zeros
    np.testing.assert_allclose(np.asarray(exp.values), want, rtol=0, atol=2e-4)


def test_eigen_cam_equals_the_2d_projection_up_to_sign(vit, twin, gradcam_lib):
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    exp = xj.eigen_cam(vit, LAYER, IMAGES, reshape=True, relu=False, normalize=False)
    acts = []
    hook = twin.blocks[-1].norm1.register_forward_hook(lambda m, i, o: acts.append(o))
    twin(_nchw(IMAGES))
    hook.remove()
    proj = get_2d_projection(reshape_transform(acts[0]).detach().numpy())
    raw = np.asarray(exp.extras["raw_maps"])
    for r, p in zip(raw, proj, strict=True):
        sign = np.sign((r * p).sum())
        np.testing.assert_allclose(r, sign * p, rtol=0, atol=1e-4 * np.abs(p).max())


def test_reshape_forms_agree(vit):
    by_auto = xj.grad_cam(vit, LAYER, IMAGES, 1, reshape="auto")
    by_true = xj.grad_cam(vit, "blocks/1/norm1", IMAGES, 1, reshape=True)
    by_grid = xj.grad_cam(vit, LAYER, IMAGES, 1, reshape=(4, 4))
    by_int = xj.grad_cam(vit, LAYER, IMAGES, 1, reshape=4)
    by_fn = xj.grad_cam(
        vit, LAYER, IMAGES, 1, reshape=lambda A: A[:, 1:].reshape(A.shape[0], 4, 4, -1)
    )
    for other in (by_true, by_grid, by_int, by_fn):
        np.testing.assert_array_equal(np.asarray(other.values), np.asarray(by_auto.values))


def test_every_cam_runs_on_tokens_and_score_cam_matches_a_loop(vit):
    for fn in (xj.score_cam, xj.ablation_cam, xj.eigen_cam, xj.guided_grad_cam):
        exp = fn(vit, LAYER, IMAGES, 1, reshape=True)
        assert np.all(np.isfinite(np.asarray(exp.values)))
    # Ablation-CAM zeroes one grid channel at a time: the class token is kept.
    exp = xj.ablation_cam(vit, LAYER, IMAGES[:1], 1, reshape=True, relu=False, normalize=False)
    w = np.asarray(exp.extras["channel_weights"])[0]
    from xaijax.core.layers import TokenGrid, layer_model

    lm = layer_model(vit, LAYER)
    score = float(vit(jnp.asarray(IMAGES[:1]))[0, 1])
    for k in (0, 5):

        def ablate(a, k=k):
            keep = jnp.ones(a.shape[-1]).at[k].set(0.0)
            return a.at[:, 1:].multiply(keep)

        out = float(lm._run_nnx(jnp.asarray(IMAGES[:1]), ablate)[0][0, 1])
        np.testing.assert_allclose(w[k], (score - out) / score, rtol=1e-4, atol=1e-5)
    assert TokenGrid(4, 4)(jnp.zeros((1, 17, 2))).shape == (1, 4, 4, 2)


def test_non_square_grid_with_layer_functions():
    rng = np.random.default_rng(1)
    W = jnp.asarray(rng.normal(size=(3, 5)), jnp.float32)
    V = jnp.asarray(rng.normal(size=(5, 2)), jnp.float32)

    def features(X):  # (n, 4, 6, 3) -> tokens (n, 1 + 2*3, 5) from 2x2 patches
        n = X.shape[0]
        patches = X.reshape(n, 2, 2, 3, 2, 3).mean(axis=(2, 4)).reshape(n, 6, 3)
        tokens = jnp.tanh(patches @ W)
        return jnp.concatenate([tokens.mean(axis=1, keepdims=True), tokens], axis=1)

    def head(T):
        return (T[:, 0] + T[:, 1:].max(axis=1)) @ V

    X = rng.uniform(size=(2, 4, 6, 3)).astype(np.float32)
    exp = xj.grad_cam(features, head, X, 1, reshape=(2, 3), normalize=False)
    grid_fn = lambda T: T[:, 1:].reshape(T.shape[0], 2, 3, 5)  # noqa: E731

    def grid_features(X):
        return grid_fn(features(X))

    raw = np.asarray(exp.extras["raw_maps"])
    assert raw.shape == (2, 2, 3)
    # Oracle: the gradient of the score through the grid tokens, by finite differences.
    import jax

    T = features(jnp.asarray(X))
    G = jax.grad(lambda t: head(t)[:, 1].sum())(T)
    A, Gg = grid_fn(T), grid_fn(G)
    want = np.maximum(np.einsum("nhwc,nc->nhw", A, Gg.mean(axis=(1, 2))), 0)
    np.testing.assert_allclose(raw, want, rtol=1e-5, atol=1e-6)
    assert grid_features(jnp.asarray(X)).shape == (2, 2, 3, 5)
    with pytest.raises(ValueError, match="reshape"):
        xj.grad_cam(features, head, X, 1, reshape=True)  # 6 tokens: not square


def test_bad_reshape_is_refused_clearly(vit):
    with pytest.raises(ValueError, match=r"reshape=\(3, 5\).*17 tokens"):
        xj.grad_cam(vit, LAYER, IMAGES, reshape=(3, 5))
    with pytest.raises(ValueError, match="reshape.*token activations"):
        xj.grad_cam(vit, "blocks/0/attn/weights", IMAGES, reshape=True)
    with pytest.raises(ValueError, match="reshape"):
        xj.grad_cam(vit, LAYER, IMAGES, reshape=lambda A: A)
    with pytest.raises(TypeError, match="reshape"):
        xj.grad_cam(vit, LAYER, IMAGES, reshape="square")
    with pytest.raises(ValueError, match="reshape=True"):
        xj.grad_cam(vit, LAYER, IMAGES)  # tokens without reshape
    with pytest.raises(ValueError, match="blocks/-3"):
        xj.grad_cam(vit, "blocks/-3/norm1", IMAGES, reshape=True)


def test_negative_layer_index_equals_positive(vit):
    a = xj.grad_cam(vit, "blocks/-1/norm1", IMAGES, 0, reshape=True)
    b = xj.grad_cam(vit, ("blocks", 1, "norm1"), IMAGES, 0, reshape=True)
    np.testing.assert_array_equal(np.asarray(a.values), np.asarray(b.values))
