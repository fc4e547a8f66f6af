"""EigenGradCAM, KPCA-CAM, FullGrad and the CAM options (eigen_smooth, aug_smooth, several
layers, per-channel maps) against pytorch-grad-cam on a PyTorch twin with identical weights.

pytorch-grad-cam imports torchvision, whose registry wheels do not match the CPU torch here; as
issue 18 allows, :mod:`gradcam_standin` injects a stand-in for the few torchvision names it
imports (none is called). Extra install (no torchvision)::

    pip download grad-cam==1.5.7 --no-deps -d /tmp/gc
    pip install --no-deps /tmp/gc/grad_cam-1.5.7.tar.gz ttach opencv-python-headless

Conventions: for one layer pytorch-grad-cam min-max scales the map, ``cv2.resize``s it (bilinear,
half-pixel centres, as ``jax.image.resize`` when upsampling) and min-max scales again in
``aggregate_multi_layers``, which equals our resize-then-normalise: the maps are compared
directly. Its scaling divides by ``max + 1e-7`` (ours exactly), hence the 2e-4 tolerance. Its
SVD sign (EigenGradCAM, eigen_smooth) is LAPACK's, arbitrary; ours is fixed (see the tests).
"""

import gradcam_standin
import jax.numpy as jnp
import numpy as np
import pytest
from cam_models import ReLU, random_module
from flax import nnx

import xaijax as xj

gradcam_standin.install()
pytest.importorskip("pytorch_grad_cam")
torch = pytest.importorskip("torch")

from pytorch_grad_cam import (  # noqa: E402
    KPCA_CAM,
    EigenGradCAM,
    FullGrad,
    GradCAM,
    HiResCAM,
    LayerCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

H = W = 16
TARGETS = [1, 2, 0]
TOL = 2e-4


class Net(nnx.Module):
    """conv1 (3->8, stride 1) -> bn -> act1 -> conv2 (8->8, stride 2) -> act2 -> mean -> fc."""

    def __init__(self):
        rngs = nnx.Rngs(0)
        pad = ((1, 1), (1, 1))
        self.conv1 = nnx.Conv(3, 8, (3, 3), padding=pad, rngs=rngs)
        self.bn = nnx.BatchNorm(8, rngs=rngs)
        self.act1 = ReLU()
        self.conv2 = nnx.Conv(8, 8, (3, 3), strides=(2, 2), padding=pad, rngs=rngs)
        self.act2 = ReLU()
        self.fc = nnx.Linear(8, 4, rngs=rngs)

    def __call__(self, x):
        a = self.act2(self.conv2(self.act1(self.bn(self.conv1(x)))))
        return self.fc(a.mean(axis=(1, 2)))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.act1 = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.act2 = torch.nn.ReLU()
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        a = self.act2(self.conv2(self.act1(self.bn(self.conv1(x)))))
        return self.fc(a.mean(dim=(2, 3)))


@pytest.fixture(scope="module")
def twins():
    torch.manual_seed(0)
    tnet = TorchNet().eval()
    with torch.no_grad():
        tnet.bn.running_mean.uniform_(-0.3, 0.3)
        tnet.bn.running_var.uniform_(0.5, 1.5)
        tnet.bn.weight.uniform_(0.5, 1.5)
        tnet.bn.bias.uniform_(-0.3, 0.3)
    net = random_module(Net)

    def p(t):
        return jnp.asarray(t.detach().numpy())

    for name in ("conv1", "conv2"):
        tc = getattr(tnet, name)
        getattr(net, name).kernel = nnx.Param(p(tc.weight).transpose(2, 3, 1, 0))
        getattr(net, name).bias = nnx.Param(p(tc.bias))
    net.bn.scale, net.bn.bias = nnx.Param(p(tnet.bn.weight)), nnx.Param(p(tnet.bn.bias))
    net.bn.mean = nnx.BatchStat(p(tnet.bn.running_mean))
    net.bn.var = nnx.BatchStat(p(tnet.bn.running_var))
    net.fc.kernel, net.fc.bias = nnx.Param(p(tnet.fc.weight).T), nnx.Param(p(tnet.fc.bias))
    X = np.random.default_rng(0).uniform(size=(3, H, W, 3)).astype(np.float32)
    return net, tnet, X


def _torch_in(X):
    return torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2)))


def _targets():
    return [ClassifierOutputTarget(t) for t in TARGETS]


def _finish(raw):
    """Our post-processing of raw maps (ReLU, upsample, min-max), as cam() does it."""
    maps = jnp.maximum(jnp.asarray(raw), 0)
    return np.asarray(xj.cam.normalize_maps(xj.cam.upsample_maps(maps, (H, W))))


def _max_diff(a, b):
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


def test_twin_logits_agree(twins):
    net, tnet, X = twins
    with torch.no_grad():
        ref = tnet(_torch_in(X)).numpy()
    copy = nnx.merge(*nnx.split(net))
    copy.eval()  # batch norm on running statistics, as torch's eval(); net itself is untouched
    assert _max_diff(copy(jnp.asarray(X)), ref) < 1e-5


def test_grad_cam_equals_pytorch_grad_cam(twins):
    net, tnet, X = twins
    for layer in ("act1", "act2"):
        ref = GradCAM(tnet, [getattr(tnet, layer)])(_torch_in(X), _targets())
        assert _max_diff(xj.grad_cam(net, layer, X, TARGETS).values, ref) < TOL


def test_eigen_grad_cam_equals_pytorch_grad_cam_up_to_the_svd_sign(twins):
    net, tnet, X = twins
    ref = EigenGradCAM(tnet, [tnet.act2])(_torch_in(X), _targets())
    exp = xj.eigen_grad_cam(net, "act2", X, TARGETS)
    signed = xj.eigen_grad_cam(net, "act2", X, TARGETS, relu=False, normalize=False)
    proj = np.asarray(signed.extras["raw_maps"])
    for i in range(len(X)):
        # pytorch-grad-cam keeps LAPACK's sign; ours agrees with the channel mean of G * A.
        diffs = [_max_diff(_finish(s * proj[i : i + 1]), ref[i : i + 1]) for s in (1, -1)]
        assert min(diffs) < TOL, diffs
        if diffs[0] < TOL:
            assert _max_diff(exp.values[i], ref[i]) < TOL
    # The sign rule itself: the projection correlates positively with the HiResCAM map.
    hires = xj.hires_cam(net, "act2", X, TARGETS, relu=False, normalize=False)
    corr = (proj * np.asarray(hires.extras["raw_maps"])).sum(axis=(1, 2))
    assert np.all(corr >= 0)


def test_kpca_cam_equals_pytorch_grad_cam(twins):
    net, tnet, X = twins
    ref = KPCA_CAM(tnet, [tnet.act2])(_torch_in(X), _targets())
    exp = xj.kpca_cam(net, "act2", X, TARGETS)
    assert exp.method == "kpca_cam"
    # float32 eigen-decompositions of a 64 x 64 kernel (LAPACK's and XLA's) differ by ~6e-4.
    assert _max_diff(exp.values, ref) < 2e-3


@pytest.mark.parametrize("kernel", ["rbf", "linear"])
def test_kpca_cam_kernels_equal_sklearn(twins, kernel):
    from sklearn.decomposition import KernelPCA

    net, _, X = twins
    A = np.asarray(_activations(net, X))
    exp = xj.kpca_cam(net, "act2", X, kernel=kernel, gamma=0.3, relu=False, normalize=False)
    for i in range(len(X)):
        flat = A[i].reshape(-1, A.shape[-1])
        flat = flat - flat.mean(axis=0)
        ref = KernelPCA(1, kernel=kernel, gamma=0.3).fit_transform(flat).reshape(A.shape[1:3])
        assert _max_diff(exp.extras["raw_maps"][i], ref) < 1e-4 * max(1, np.abs(ref).max())


def _activations(net, X):
    from xaijax.core.layers import layer_model

    return layer_model(net, "act2").forward(jnp.asarray(X))[1]


def test_full_grad_equals_pytorch_grad_cam(twins):
    net, tnet, X = twins
    ref = FullGrad(tnet, [])(_torch_in(X), _targets())
    exp = xj.full_grad(net, X, TARGETS)
    assert xj.cam.bias_layers(net) == [("bn",), ("conv1",), ("conv2",)]
    assert _max_diff(exp.values, ref) < TOL
    one = xj.full_grad(net, X[1], TARGETS[1])
    assert _max_diff(one.values, exp.values[1]) < 1e-5


def test_eigen_smooth_equals_pytorch_grad_cam_up_to_the_svd_sign(twins):
    net, tnet, X = twins
    ref = GradCAM(tnet, [tnet.act2])(_torch_in(X), _targets(), eigen_smooth=True)
    signed = xj.grad_cam(net, "act2", X, TARGETS, eigen_smooth=True, relu=False, normalize=False)
    proj = np.asarray(signed.extras["raw_maps"])
    for i in range(len(X)):
        diffs = [_max_diff(_finish(s * proj[i : i + 1]), ref[i : i + 1]) for s in (1, -1)]
        assert min(diffs) < TOL, diffs
    # Signed to agree with the plain (unsmoothed) Grad-CAM map.
    plain = xj.grad_cam(net, "act2", X, TARGETS, relu=False, normalize=False)
    assert np.all((proj * np.asarray(plain.extras["raw_maps"])).sum(axis=(1, 2)) >= 0)


def test_aug_smooth_equals_pytorch_grad_cam(twins):
    net, tnet, X = twins
    # act1 is at the image's resolution, where normalise-then-resize equals resize-then-normalise.
    ref = GradCAM(tnet, [tnet.act1])(_torch_in(X), _targets(), aug_smooth=True)
    exp = xj.grad_cam(net, "act1", X, TARGETS, aug_smooth=True)
    assert _max_diff(exp.values, ref) < TOL
    plain = xj.grad_cam(net, "act1", X, TARGETS)
    assert _max_diff(exp.extras["scores"], plain.extras["scores"]) < 1e-6
    assert _max_diff(exp.values, plain.values) > 1e-3  # the augmentation changed something
    # Predicted-class targets are chosen per augmented copy, as pytorch-grad-cam does.
    ref_none = GradCAM(tnet, [tnet.act2])(_torch_in(X), None, aug_smooth=True)
    ours_none = xj.grad_cam(net, "act2", X, aug_smooth=True)
    assert ours_none.values.shape == ref_none.shape


def test_several_layers_equal_pytorch_grad_cam(twins):
    net, tnet, X = twins
    ref = GradCAM(tnet, [tnet.act1, tnet.act2])(_torch_in(X), _targets())
    exp = xj.grad_cam(net, ["act1", "act2"], X, TARGETS)
    assert exp.extras["layer_maps"].shape == (3, 2, H, W)
    assert _max_diff(exp.values, ref) < TOL
    same = xj.cam.cam(net, (("act1",), ("act2",)), X, TARGETS)
    assert _max_diff(same.values, exp.values) == 0
    both = xj.grad_cam(net, ["act1", "act2"], X, TARGETS, aug_smooth=True)
    ref_both = GradCAM(tnet, [tnet.act1, tnet.act2])(_torch_in(X), _targets(), aug_smooth=True)
    assert _max_diff(both.values, ref_both) < TOL
    with pytest.raises(ValueError, match="per_channel"):
        xj.grad_cam(net, ["act1", "act2"], X, TARGETS, per_channel=True)


def test_per_channel_maps_equal_torch_weights_times_activations(twins):
    net, tnet, X = twins
    store = {}
    hook = tnet.act2.register_forward_hook(lambda m, i, o: store.setdefault("A", o))
    x = _torch_in(X)
    out = tnet(x)
    hook.remove()
    A = store["A"]
    (G,) = torch.autograd.grad(out[torch.arange(3), torch.tensor(TARGETS)].sum(), A)
    ref = (G.mean(dim=(2, 3), keepdim=True) * A).detach().numpy().transpose(0, 2, 3, 1)
    exp = xj.grad_cam(net, "act2", X, TARGETS, per_channel=True)
    maps = np.asarray(exp.extras["channel_maps"])
    assert maps.shape == (3, H // 2, W // 2, 8)
    assert _max_diff(maps, ref) < 1e-5
    assert _max_diff(np.maximum(maps.sum(-1), 0), exp.extras["raw_maps"]) < 1e-5


def test_option_errors_name_the_argument(twins):
    net, _, X = twins
    with pytest.raises(TypeError, match="aug_smooth"):
        xj.grad_cam(net, "act2", X, aug_smooth="yes")
    with pytest.raises(TypeError, match="eigen_smooth"):
        xj.cam.cam(net, "act2", X, eigen_smooth=1)
    with pytest.raises(ValueError, match="kernel"):
        xj.kpca_cam(net, "act2", X, kernel="gauss")
    with pytest.raises(ValueError, match="gamma"):
        xj.kpca_cam(net, "act2", X, kernel="rbf", gamma=-1.0)
    with pytest.raises(TypeError, match="NNX module"):
        xj.full_grad(lambda x: x.sum(axis=(1, 2)), X)


@pytest.mark.parametrize(
    "ours, theirs",
    # (Grad-CAM++ is compared in tests/test_vit_cam.py with scores scaled up: pytorch-grad-cam
    # adds 1e-7 to its alpha's denominator, which is visible at this twin's tiny gradients.)
    [
        (xj.xgrad_cam, XGradCAM),
        (xj.layer_cam, LayerCAM),
        (xj.hires_cam, HiResCAM),
    ],
)
def test_every_wrapper_takes_the_smoothing_options(twins, ours, theirs):
    net, tnet, X = twins
    ref = theirs(tnet, [tnet.act1])(_torch_in(X), _targets(), aug_smooth=True)
    exp = ours(net, "act1", X, TARGETS, aug_smooth=True, per_channel=False)
    assert _max_diff(exp.values, ref) < TOL
