"""The Grad-CAM family against captum's fixture numbers and closed forms on GAP networks."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.monitoring
import jax.numpy as jnp
import numpy as np
import pytest
from cam_models import (
    CAPTUM_INPUT,
    CaptumOneConv,
    TinyResNet,
    captum_conv1,
    captum_fc,
    random_module,
)
from flax import nnx

import xaijax.cam as cam

# -- captum's LayerGradCam fixture (tests/attr/layer/test_grad_cam.py) --


def test_captum_fixture_conv1_before_relu():
    exp = cam.grad_cam(
        captum_conv1,
        lambda A: captum_fc(jax.nn.relu(A)),
        CAPTUM_INPUT,
        targets=0,
        relu=False,
        normalize=False,
    )
    np.testing.assert_allclose(exp.extras["raw_maps"][0], [[11.25, 13.5], [20.25, 22.5]], atol=1e-5)


def test_captum_fixture_relu1():
    exp = cam.grad_cam(
        lambda X: jax.nn.relu(captum_conv1(X)),
        captum_fc,
        CAPTUM_INPUT,
        targets=0,
        relu=False,
        normalize=False,
    )
    np.testing.assert_allclose(exp.extras["raw_maps"][0], [[0.0, 4.0], [28.0, 32.5]], atol=1e-5)


@pytest.mark.parametrize(
    "layer, expected",
    [("conv1", [[11.25, 13.5], [20.25, 22.5]]), ("relu1", [[0.0, 4.0], [28.0, 32.5]])],
)
def test_captum_fixture_through_nnx_layer_path(layer, expected):
    model = CaptumOneConv()
    exp = cam.grad_cam(model, layer, CAPTUM_INPUT[0], targets=0, relu=False, normalize=False)
    np.testing.assert_allclose(exp.extras["raw_maps"], expected, atol=1e-5)
    assert exp.values.shape == (4, 4)  # one image in, no leading axis out


# -- a GAP network: conv -> ReLU -> global average pool -> dense; Grad-CAM == CAM --
H, C, K = 16, 6, 4
_k = jax.random.split(jax.random.key(1), 4)
CONV_W = jax.random.normal(_k[0], (3, 3, 3, C)) * 0.5
FC_W = jax.random.normal(_k[1], (C, K))
FC_B = jax.random.normal(_k[2], (K,))
IMAGES = jax.random.uniform(_k[3], (3, H, H, 3))


def gap_features(X):
    y = jax.lax.conv_general_dilated(
        X, CONV_W, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return jax.nn.relu(y)


def gap_head(A):
    return A.mean(axis=(1, 2)) @ FC_W + FC_B[None, :]


def assert_close(actual, expected, rtol=1e-5):
    """Float32 agreement scaled to the whole result: a map entry where positive and negative
    channel terms cancel carries the rounding of those terms, not of its own small value."""
    expected = np.asarray(expected)
    np.testing.assert_allclose(actual, expected, rtol=0, atol=rtol * np.abs(expected).max())


def class_activation_map(A, k):
    """Zhou et al. 2016's CAM: the class's dense weights times the activations."""
    return jnp.einsum("nhwc,c->nhw", A, FC_W[:, k])


A_GAP = gap_features(IMAGES)
HW = A_GAP.shape[1] * A_GAP.shape[2]


def raw(fn, targets=2, **kw):
    exp = fn(gap_features, gap_head, IMAGES, targets, relu=False, normalize=False, **kw)
    return np.asarray(exp.extras["raw_maps"]), exp


def test_grad_cam_equals_cam_on_gap_network():
    maps, _ = raw(cam.grad_cam)
    assert_close(maps * HW, class_activation_map(A_GAP, 2))


def test_grad_cam_default_output_is_normalised_upsampled_relu_cam():
    exp = cam.grad_cam(gap_features, gap_head, IMAGES, targets=2)
    expected = cam.normalize_maps(
        jax.image.resize(jax.nn.relu(class_activation_map(A_GAP, 2)), (3, H, H), "bilinear")
    )
    np.testing.assert_allclose(exp.values, expected, atol=1e-5)
    assert exp.values.min() >= 0.0 and exp.values.max() <= 1.0
    np.testing.assert_allclose(exp.values.max(axis=(1, 2)), 1.0)


def test_bilinear_upsampling_matches_half_pixel_reference():
    # pytorch-grad-cam resizes with cv2.resize (INTER_LINEAR: half-pixel centres, edges
    # replicated), as torch's interpolate(align_corners=False) and scikit-image's order-1 resize
    # do. A grid off by half a pixel would shift every map; scikit-image is the oracle here.
    from skimage.transform import resize

    maps = np.random.default_rng(0).random((2, 7, 8)).astype(np.float32)
    ours = np.asarray(cam.upsample_maps(jnp.asarray(maps), (28, 32)))
    for m, o in zip(maps, ours, strict=True):
        expected = resize(m, (28, 32), order=1, mode="edge", anti_aliasing=False)
        np.testing.assert_allclose(o, expected, atol=1e-6)


def test_nearest_upsampling_repeats_blocks():
    exp = cam.grad_cam(gap_features, gap_head, IMAGES, 2, resize="nearest", normalize=False)
    np.testing.assert_allclose(
        exp.values, np.repeat(np.repeat(exp.extras["raw_maps"], 2, axis=1), 2, axis=2)
    )


def test_counterfactual_negates_gradient():
    maps, _ = raw(cam.grad_cam, counterfactual=True)
    assert_close(maps * HW, -class_activation_map(A_GAP, 2))


def test_hires_and_xgrad_equal_grad_cam_when_gradients_are_spatially_constant():
    expected = class_activation_map(A_GAP, 2) / HW
    for fn in (cam.hires_cam, cam.xgrad_cam):
        assert_close(raw(fn)[0], expected)


def test_layer_cam_closed_form():
    expected = jnp.einsum("nhwc,c->nhw", A_GAP, jax.nn.relu(FC_W[:, 2])) / HW
    assert_close(raw(cam.layer_cam)[0], expected)


def test_grad_cam_plus_plus_closed_form():
    g = FC_W[:, 2] / HW  # d logit / d A, the same at every position
    s = A_GAP.sum(axis=(1, 2))  # (n, c)
    alpha = g[None, :] ** 2 / (2 * g[None, :] ** 2 + s * g[None, :] ** 3)
    w = HW * alpha * jax.nn.relu(g)[None, :]
    maps, exp = raw(cam.grad_cam_plus_plus)
    np.testing.assert_allclose(exp.extras["channel_weights"], w, rtol=1e-4)
    assert_close(maps, jnp.einsum("nhwc,nc->nhw", A_GAP, w), rtol=1e-4)


def test_ablation_cam_closed_form():
    y = gap_head(A_GAP)[:, 2]
    drop = A_GAP.mean(axis=(1, 2)) * FC_W[None, :, 2]  # y - y_without_c for a linear head
    maps, exp = raw(cam.ablation_cam, batch_size=5)
    # The weights are drop / y. Where the logit y nearly cancels (image 1: y ~ 6e-4 against
    # terms ~1), float32 rounding of y is amplified by 1/y, on any machine; check those images'
    # weights only for sign and scale, and the well-conditioned ones to 1e-4.
    y = np.asarray(y)
    good = np.abs(y) > 1e-2 * np.abs(drop).sum(axis=1)
    assert good.sum() >= 1
    weights = np.asarray(exp.extras["channel_weights"])
    np.testing.assert_allclose(weights[good], (drop / y[:, None])[good], rtol=1e-4)
    np.testing.assert_allclose(weights[~good], (drop / y[:, None])[~good], rtol=1e-2)
    np.testing.assert_allclose(
        np.asarray(maps)[good],
        jnp.einsum("nhwc,nc->nhw", A_GAP, drop / y[:, None])[good],
        rtol=1e-4,
        atol=1e-5,
    )


def test_score_cam_matches_a_loop_over_channels():
    scores = np.zeros((3, C))
    for i in range(3):
        for c in range(C):
            m = jax.image.resize(A_GAP[i, :, :, c], (H, H), "bilinear")
            m = (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else m * 0
            scores[i, c] = gap_head(gap_features(IMAGES[i : i + 1] * m[None, :, :, None]))[0, 2]
    weights = jax.nn.softmax(jnp.asarray(scores), axis=1)
    maps, exp = raw(cam.score_cam, batch_size=4)  # 18 rows in chunks of 4: a ragged last chunk
    np.testing.assert_allclose(exp.extras["channel_weights"], weights, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(maps, jnp.einsum("nhwc,nc->nhw", A_GAP, weights), rtol=1e-4)


def test_chunk_size_does_not_change_score_or_ablation_cam():
    for fn in (cam.score_cam, cam.ablation_cam):
        a = raw(fn, batch_size=1)[0]
        b = raw(fn, batch_size=1000)[0]
        # The batch size picks the matmul/convolution blocking (CPU and GPU alike): float32 sums
        # of ~100 come out in another order, ~4e-5 relative apart.
        assert_close(a, b, rtol=1e-4)


def test_eigen_cam_is_first_principal_component():
    maps, _ = raw(cam.eigen_cam)
    for i in range(3):
        flat = np.asarray(A_GAP[i]).reshape(HW, C).astype(np.float64)
        centered = flat - flat.mean(axis=0)
        proj = centered @ np.linalg.svd(centered)[2][0]
        proj *= np.sign(proj @ flat.mean(axis=1))
        assert_close(maps[i].reshape(-1), proj, rtol=1e-4)


# -- targets --
def test_targets_none_is_argmax_and_callable_equals_int():
    predicted = np.argmax(gap_head(A_GAP), axis=1)
    by_none = cam.grad_cam(gap_features, gap_head, IMAGES)
    by_index = cam.grad_cam(gap_features, gap_head, IMAGES, predicted)
    np.testing.assert_array_equal(by_none.extras["targets"], predicted)
    np.testing.assert_allclose(by_none.values, by_index.values)
    by_fn = cam.grad_cam(gap_features, gap_head, IMAGES, lambda logits: logits[:, 1])
    np.testing.assert_allclose(by_fn.values, cam.grad_cam(gap_features, gap_head, IMAGES, 1).values)
    np.testing.assert_array_equal(by_fn.extras["targets"], [-1, -1, -1])


@pytest.mark.parametrize(
    "fn", [cam.grad_cam, cam.grad_cam_plus_plus, cam.layer_cam, cam.score_cam, cam.ablation_cam]
)
def test_batch_equals_loop_over_images(fn):
    targets = np.array([0, 3, 1])
    batch = fn(gap_features, gap_head, IMAGES, targets)
    for i in range(3):
        one = fn(gap_features, gap_head, IMAGES[i], int(targets[i]))
        assert_close(one.values, batch.values[i])


def test_all_zero_cam_stays_zero():
    dead = lambda X: jax.nn.relu(gap_features(X) - 1e3)  # noqa: E731
    for fn in (cam.grad_cam, cam.grad_cam_plus_plus, cam.xgrad_cam, cam.eigen_cam, cam.score_cam):
        exp = fn(dead, gap_head, IMAGES)
        assert np.all(np.isfinite(exp.values)) and np.all(exp.values == 0.0), fn.__name__


# -- NNX modules by layer path --
def test_nnx_layer_path_equals_explicit_split_in_residual_network():
    model = random_module(lambda: TinyResNet(nnx.Rngs(0)))
    images = jax.random.uniform(jax.random.key(2), (2, 16, 16, 3))
    model.eval()
    # The hand-written split: everything up to block 0's conv2 output is "features".
    blk = model.blocks[0]

    def features(x):
        return blk.conv2(jax.nn.relu(blk.bn(blk.conv1(jax.nn.relu(model.stem(x))))))

    def head_with_skip(x):
        skip = jax.nn.relu(model.stem(x))
        return lambda a: model.head(model.blocks[1](jax.nn.relu(skip + a)))

    by_path = cam.grad_cam(model, "blocks/0/conv2", images, 1, relu=False, normalize=False)

    @jax.jit  # one compiled oracle instead of hundreds of eager NNX ops
    def oracle(x):
        A = features(x)
        G = jax.grad(lambda a: head_with_skip(x)(a)[:, 1].sum())(A)
        return jnp.einsum("nhwc,nc->nhw", A, G.mean(axis=(1, 2)))

    expected = oracle(images)
    assert_close(by_path.extras["raw_maps"], expected, rtol=1e-4)


@pytest.mark.parametrize("fn", [cam.ablation_cam, cam.score_cam])
def test_nnx_layer_path_equals_explicit_split_for_gradient_free_cams(fn):
    # The hook zeroes a channel of the layer's output inside the running network (Ablation-CAM).
    by_path = fn(CaptumOneConv(), ("conv1",), CAPTUM_INPUT, 0, normalize=False, batch_size=3)
    split = fn(captum_conv1, lambda A: captum_fc(jax.nn.relu(A)), CAPTUM_INPUT, 0, normalize=False)
    assert_close(by_path.values, split.values)


def test_nnx_module_is_not_modified():
    model = random_module(lambda: TinyResNet(nnx.Rngs(0)))
    before = jax.tree.map(np.asarray, nnx.state(model))
    cam.grad_cam(model, "blocks/1", jnp.ones((1, 16, 16, 3)))
    assert isinstance(model.blocks[1], nnx.Module)
    jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, nnx.state(model)))


# -- compile once --
_compiles = []
jax.monitoring.register_event_duration_secs_listener(
    lambda name, *a, **kw: _compiles.append(name) if "backend_compile" in name else None
)


def test_compiles_once_for_same_shaped_calls():
    traces = []

    def features(X):
        traces.append(1)
        return gap_features(X)

    batches = [jax.random.uniform(jax.random.key(i), (3, H, H, 3)) for i in range(4)]
    targets = [np.array([i % K, 1, 2]) for i in range(4)]
    cam.grad_cam(features, gap_head, batches[0], targets[0])
    cam.score_cam(features, gap_head, batches[0], targets[0], batch_size=5)
    traced = len(traces)
    _compiles.clear()
    for X, t in zip(batches[1:], targets[1:], strict=True):
        cam.grad_cam(features, gap_head, X, t)
        cam.score_cam(features, gap_head, X, t, batch_size=5)
    assert _compiles == []
    assert len(traces) == traced  # not even re-traced (the shape probe is cached too)


# -- the family as data: one weighting per paper, one mechanism --
NAMED = {
    "grad_cam": cam.grad_cam,
    "grad_cam_plus_plus": cam.grad_cam_plus_plus,
    "hires_cam": cam.hires_cam,
    "xgrad_cam": cam.xgrad_cam,
    "layer_cam": cam.layer_cam,
    "eigen_cam": cam.eigen_cam,
    "score_cam": cam.score_cam,
    "ablation_cam": cam.ablation_cam,
}


@pytest.mark.parametrize("name", NAMED)
def test_each_named_cam_is_cam_with_its_weighting(name):
    named = NAMED[name](gap_features, gap_head, IMAGES, 2, normalize=False)
    generic = cam.cam(gap_features, gap_head, IMAGES, 2, weighting=name, normalize=False)
    np.testing.assert_array_equal(named.values, generic.values)
    assert named.method == name and named.kind == "map"
    assert cam.WEIGHTINGS[name][0].__name__ == f"{name}_weights"


def test_weighting_functions_pass_as_callables():
    by_name = cam.grad_cam(gap_features, gap_head, IMAGES, 2, normalize=False)
    by_fn = cam.cam(
        gap_features, gap_head, IMAGES, 2, weighting=cam.grad_cam_weights, normalize=False
    )
    np.testing.assert_array_equal(by_fn.values, by_name.values)
    assert by_fn.method == "cam"


def test_a_new_weighting_against_a_loop():
    # A weighting that is in no paper: each channel weighted by its largest gradient.
    def max_gradient_weights(A, G):
        return G.max(axis=(1, 2))

    exp = cam.cam(
        gap_features, gap_head, IMAGES, 1, weighting=max_gradient_weights, relu=False,
        normalize=False,
    )  # fmt: skip
    G = np.broadcast_to(np.asarray(FC_W[:, 1]) / HW, A_GAP.shape)  # GAP head: constant gradient
    expected = np.zeros((3,) + A_GAP.shape[1:3])
    for i in range(3):
        for c in range(C):
            expected[i] += G[i, :, :, c].max() * np.asarray(A_GAP[i, :, :, c])
    assert_close(exp.extras["raw_maps"], expected)
    np.testing.assert_allclose(exp.extras["channel_weights"], G.max(axis=(1, 2)), rtol=1e-6)


ALL_CAMS = {**NAMED, "guided_grad_cam": cam.guided_grad_cam}


@pytest.mark.parametrize("name", ALL_CAMS)
def test_batch_size_one_image_equals_default(name):
    # One model row per call: one image per capture, one masked or ablated row at a time.
    whole = ALL_CAMS[name](gap_features, gap_head, IMAGES, [0, 3, 1])
    rows = ALL_CAMS[name](gap_features, gap_head, IMAGES, [0, 3, 1], batch_size=1)
    assert_close(rows.values, whole.values, rtol=1e-4)
    np.testing.assert_array_equal(rows.extras["targets"], whole.extras["targets"])


@pytest.mark.parametrize("name", ALL_CAMS)
def test_callable_targets_equal_int_targets(name):
    by_fn = ALL_CAMS[name](gap_features, gap_head, IMAGES, lambda logits: logits[:, 3])
    by_int = ALL_CAMS[name](gap_features, gap_head, IMAGES, 3)
    assert_close(by_fn.values, by_int.values)
    assert by_fn.extras["targets"].tolist() == [-1, -1, -1]
    np.testing.assert_allclose(by_fn.extras["scores"], by_int.extras["scores"], rtol=1e-6)


def test_guided_backprop_batch_size_one_image_equals_default():
    f = lambda X: gap_head(gap_features(X))  # noqa: E731
    whole = cam.guided_backprop(f, IMAGES, [0, 3, 1])
    assert_close(cam.guided_backprop(f, IMAGES, [0, 3, 1], batch_size=1).values, whole.values)


def _dead_features(X):
    return jax.nn.relu(gap_features(X) - 1e3)  # every activation 0


def _norm_head(A):
    # sqrt(sum A^2) is 0 with the finite gradient A / 0 = NaN at A = 0.
    return jnp.sqrt((A**2).sum(axis=(1, 2, 3)))[:, None] * jnp.arange(1.0, K + 1.0)[None, :]


@pytest.mark.parametrize(
    "name", ["grad_cam", "grad_cam_plus_plus", "hires_cam", "xgrad_cam", "layer_cam"]
)
def test_nan_gradient_with_finite_outputs_is_an_error(name):
    assert np.isfinite(_norm_head(_dead_features(IMAGES))).all()
    with pytest.raises(ValueError, match="the gradient of the target score at the layer"):
        NAMED[name](_dead_features, _norm_head, IMAGES, 1)


def test_nan_gradient_is_an_error_in_guided_grad_cam():
    with pytest.raises(ValueError, match="gradient"):
        cam.guided_grad_cam(_dead_features, _norm_head, IMAGES, 1)


def _subsample(X):
    return X[:, ::2, ::2, :]  # "activations": the image's colour channels at half resolution


def _log_min_head(A):
    # Finite for the (positive) images; -inf once a channel is zeroed (Ablation-CAM) or an
    # image is multiplied by a min-max normalised mask that is 0 somewhere (Score-CAM).
    return jnp.log(A.min(axis=(1, 2, 3)))[:, None] * jnp.ones((1, 2))


@pytest.mark.parametrize("name", ["ablation_cam", "score_cam"])
def test_non_finite_scores_of_ablated_or_masked_inputs_are_an_error(name):
    images = IMAGES + 0.1
    assert np.isfinite(_log_min_head(_subsample(images))).all()
    with pytest.raises(ValueError, match=r"the model .* returned NaN or inf \(instances"):
        NAMED[name](_subsample, _log_min_head, images, 0)


# -- the contract: mesh on 4 host devices equals one device --
FOUR_DEVICES = textwrap.dedent(
    """
    import json, os
    flags = os.environ.get("XLA_FLAGS", "")  # the suite's (tests/conftest.py)
    os.environ["XLA_FLAGS"] = flags + " --xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh
    import xaijax.cam as cam
    from xaijax.core.batching import instance_mesh

    jax.config.update("jax_numpy_rank_promotion", "raise")
    assert jax.device_count() == 4
    rng = np.random.default_rng(0)
    conv_w = jnp.asarray(rng.normal(size=(3, 3, 3, 4)).astype(np.float32))
    fc_w = jnp.asarray(rng.normal(size=(4, 3)).astype(np.float32))

    def features(X):
        y = jax.lax.conv_general_dilated(
            X, conv_w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jax.nn.relu(y)

    def head(A):
        return jax.nn.relu(A).mean(axis=(1, 2)) @ fc_w

    images = jnp.asarray(rng.uniform(size=(7, 8, 8, 3)).astype(np.float32))
    # every named CAM on a 1-d mesh: tests/contract; here the generic one and 2x2 meshes
    calls = {name: getattr(cam, name) for name in ("grad_cam", "score_cam", "guided_grad_cam")}
    calls["cam"] = lambda *a, **kw: cam.cam(*a, weighting=cam.grad_cam_weights, **kw)
    calls["guided_backprop"] = lambda f, h, X, **kw: cam.guided_backprop(
        lambda x: h(f(x)), X, **kw
    )
    meshes = {"1d": instance_mesh(), "2x2": Mesh(np.array(jax.devices()).reshape(2, 2), ("a", "b"))}
    out = {}
    for name, call in calls.items():
        one = call(features, head, images)
        for mesh_name, mesh in meshes.items():
            if mesh_name == "2x2" and name not in ("grad_cam", "score_cam"):
                continue
            sharded = call(features, head, images, mesh=mesh, batch_size=2)
            scale = float(np.abs(one.values).max())
            out[f"{name}/{mesh_name}"] = {
                "shape": list(np.shape(sharded.values)),
                "max_diff": float(np.abs(sharded.values - one.values).max()) / scale,
                "targets": sharded.extras["targets"].tolist() == one.extras["targets"].tolist(),
            }
    print("RESULT", json.dumps(out))
    """
)


def test_mesh_on_four_devices_equals_one_device():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["JAX_PLATFORMS"] = "cpu"  # the forced host devices, even where a GPU is present
    proc = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICES], cwd=root, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT "))
    results = json.loads(line[len("RESULT ") :])
    assert len(results) == 5 + 2
    for case, r in results.items():
        assert r["shape"][0] == 7, case  # 7 images on 4 devices: the padding is dropped
        assert r["max_diff"] <= 1e-5, (case, r)
        assert r["targets"], case


# -- bad input --
def test_target_out_of_range():
    with pytest.raises(ValueError, match="targets"):
        cam.grad_cam(gap_features, gap_head, IMAGES, targets=K)
    with pytest.raises(ValueError, match="targets"):
        cam.grad_cam(gap_features, gap_head, IMAGES, targets=[0, 1])


def test_layer_path_that_does_not_exist():
    with pytest.raises(ValueError, match="layer 'blocks/7'.*available layer paths"):
        cam.grad_cam(
            random_module(lambda: TinyResNet(nnx.Rngs(0))), "blocks/7", jnp.ones((1, 16, 16, 3))
        )
    with pytest.raises(ValueError, match="layer"):
        cam.grad_cam(
            random_module(lambda: TinyResNet(nnx.Rngs(0))), "nope", jnp.ones((1, 16, 16, 3))
        )


def test_non_4d_activations():
    with pytest.raises(ValueError, match=r"4-D \(n, h, w, c\)"):
        cam.grad_cam(lambda X: X.mean(axis=(1, 2)), lambda A: A, IMAGES)


def test_bad_images_and_nan_outputs():
    with pytest.raises(ValueError, match="images"):
        cam.grad_cam(gap_features, gap_head, IMAGES[0, 0])
    with pytest.raises(ValueError, match="NaN"):
        cam.grad_cam(gap_features, gap_head, IMAGES.at[0, 0, 0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="NaN"):
        cam.grad_cam(gap_features, lambda A: gap_head(A) * jnp.nan, IMAGES, 0)
    with pytest.raises(ValueError, match="resize"):
        cam.grad_cam(gap_features, gap_head, IMAGES, resize="bicubic")


@pytest.mark.parametrize(
    "call, error, match",
    [
        (
            lambda: cam.grad_cam(gap_features, gap_head, IMAGES, resize="bicubic"),
            ValueError,
            "resize",
        ),  # fmt: skip
        (
            lambda: cam.cam(gap_features, gap_head, IMAGES, weighting="gradcam"),
            ValueError,
            "weighting must be one of",
        ),  # fmt: skip
        (
            lambda: cam.cam(gap_features, gap_head, IMAGES, weighting=3),
            TypeError,
            "weighting must be one of",
        ),  # fmt: skip
        (
            lambda: cam.cam(gap_features, gap_head, IMAGES, weighting=lambda A, G: A.sum()),
            ValueError,
            "weighting must return",
        ),  # fmt: skip
        (
            lambda: cam.cam(
                gap_features, gap_head, IMAGES, weighting="eigen_cam", counterfactual=True
            ),
            ValueError,
            "counterfactual",
        ),  # fmt: skip
        (
            lambda: cam.grad_cam(gap_features, gap_head, IMAGES, normalize="yes"),
            TypeError,
            "normalize",
        ),  # fmt: skip
        (lambda: cam.grad_cam(gap_features, gap_head, IMAGES, relu=None), TypeError, "relu"),
        (
            lambda: cam.grad_cam(gap_features, gap_head, IMAGES, batch_size=0),
            ValueError,
            "batch_size",
        ),  # fmt: skip
        (
            lambda: cam.score_cam(gap_features, gap_head, IMAGES, batch_size=2.5),
            TypeError,
            "batch_size",
        ),  # fmt: skip
        (
            lambda: cam.ablation_cam(gap_features, gap_head, IMAGES, batch_size=-1),
            ValueError,
            "batch_size",
        ),  # fmt: skip
        (
            lambda: cam.grad_cam(gap_features, gap_head, IMAGES, mesh=jax.devices()),
            TypeError,
            "mesh",
        ),  # fmt: skip
        (
            lambda: cam.grad_cam(gap_features, gap_head, IMAGES, targets=1.0),
            TypeError,
            "targets",
        ),  # fmt: skip
        (
            lambda: cam.grad_cam(gap_features, gap_head, IMAGES, lambda logits: logits),
            ValueError,
            "targets",
        ),  # fmt: skip
        (
            lambda: cam.grad_cam(gap_features, gap_head, IMAGES[:0]),
            ValueError,
            "images must hold at least one",
        ),  # fmt: skip
        (
            lambda: cam.guided_backprop(lambda X: X.mean(axis=(1, 2)), IMAGES, batch_size=0),
            ValueError,
            "batch_size",
        ),  # fmt: skip
        (
            lambda: cam.guided_grad_cam(gap_features, gap_head, IMAGES, resize="area"),
            ValueError,
            "resize",
        ),  # fmt: skip
    ],
)
def test_bad_options(call, error, match):
    with pytest.raises(error, match=match):
        call()
