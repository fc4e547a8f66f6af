"""Occlusion and feature ablation against captum on a PyTorch twin; RISE against its defining
average (a NumPy loop over the same masks), scikit-image's upsampling and a linear closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from captum.attr import FeatureAblation, Occlusion
from skimage.transform import resize

import xaijax as xj
from xaijax.perturbation import rise_mask, rise_masks, window_counts

torch.set_num_threads(1)

# -- twins: the same weights in JAX (NHWC) and torch (NCHW) ----------------------------------
_rng = np.random.default_rng(17)
H, W, C, F, K = 7, 6, 3, 4, 3
CONV = (_rng.normal(size=(3, 3, C, F)) / 3).astype(np.float32)  # HWIO
CONV_B = _rng.normal(size=(F,)).astype(np.float32) / 4
DENSE = _rng.normal(size=(F, K)).astype(np.float32)
IMAGES = _rng.uniform(size=(2, H, W, C)).astype(np.float32)

M = 5
W1 = (_rng.normal(size=(M, 8)) / 2).astype(np.float32)
W2 = _rng.normal(size=(8, K)).astype(np.float32)
ROWS = _rng.normal(size=(3, M)).astype(np.float32)


def cnn(X):
    dn = jax.lax.conv_dimension_numbers(X.shape, CONV.shape, ("NHWC", "HWIO", "NHWC"))
    A = jax.lax.conv_general_dilated(X, jnp.asarray(CONV), (1, 1), "SAME", dimension_numbers=dn)
    A = jax.nn.relu(A + CONV_B.reshape(1, 1, 1, F))
    # A max over positions as well as the mean, so occluding one window is not a linear change.
    return (A.mean(axis=(1, 2)) + A.max(axis=(1, 2))) @ DENSE


def torch_cnn():
    conv = torch.nn.Conv2d(C, F, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(CONV.transpose(3, 2, 0, 1).copy()))
        conv.bias.copy_(torch.from_numpy(CONV_B))
    dense = torch.from_numpy(DENSE)

    def forward(x):  # NCHW
        a = torch.relu(conv(x))
        return (a.mean(dim=(2, 3)) + a.amax(dim=(2, 3))) @ dense

    return forward


def mlp(X):
    return jnp.tanh(X @ W1) @ W2


def torch_mlp(x):
    return torch.tanh(x @ torch.from_numpy(W1)) @ torch.from_numpy(W2)


def nchw(a):
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(np.asarray(a), -1, 1)))


def nhwc(t):
    return np.moveaxis(t.detach().numpy(), 1, -1)


def assert_close(actual, expected, tol=1e-5):
    expected = np.asarray(expected, np.float64)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=0, atol=tol * scale)


# -- occlusion -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "window, strides, baseline",
    [
        ((2, 2, C), 1, 0.0),  # all channels, every position
        ((3, 2, 1), (2, 2, 1), 0.5),  # one channel at a time; strides that cut the border
        ((4, 3, 2), (3, 2, 1), "image"),  # a baseline image; windows past the border
    ],
)
def test_occlusion_equals_captum_on_a_cnn_twin(window, strides, baseline):
    targets = np.array([2, 0])
    if isinstance(baseline, str):
        baseline = _rng.uniform(size=(H, W, C)).astype(np.float32)
        torch_base = nchw(baseline[None])
    else:
        torch_base = baseline
    ours = xj.occlusion(cnn, IMAGES, window=window, strides=strides, baseline=baseline, targets=2)
    to_chw = (2, 0, 1)
    theirs = Occlusion(torch_cnn()).attribute(
        nchw(IMAGES),
        sliding_window_shapes=tuple(window[i] for i in to_chw),
        strides=strides if isinstance(strides, int) else tuple(strides[i] for i in to_chw),
        baselines=torch_base,
        target=2,
    )
    assert ours.values.shape == IMAGES.shape
    assert_close(ours.values, nhwc(theirs))
    # per-instance targets and a batch of one image per call agree with captum too
    mixed = xj.occlusion(
        cnn, IMAGES, window=window, strides=strides, baseline=baseline, targets=targets
    )
    theirs = Occlusion(torch_cnn()).attribute(
        nchw(IMAGES),
        sliding_window_shapes=tuple(window[i] for i in to_chw),
        strides=strides if isinstance(strides, int) else tuple(strides[i] for i in to_chw),
        baselines=torch_base,
        target=targets.tolist(),
    )
    assert_close(mixed.values, nhwc(theirs))


def test_occlusion_on_rows_equals_captum_and_counts_windows_as_captum():
    for window, strides in (((2,), 1), ((3,), 2), ((1,), 1), ((5,), 1)):
        ours = xj.occlusion(mlp, ROWS, window=window, strides=strides, targets=1)
        theirs = Occlusion(torch_mlp).attribute(
            torch.from_numpy(ROWS), sliding_window_shapes=window, strides=strides, target=1
        )
        assert_close(ours.values, theirs.numpy())
        counts = window_counts((M,), window, (strides,))
        assert ours.extras["window_values"].shape == (3, *counts)


def test_occlusion_explains_the_predicted_class_by_default_and_host_models_agree():
    default = xj.occlusion(cnn, IMAGES, window=(2, 2, C), strides=2)
    predicted = np.asarray(cnn(jnp.asarray(IMAGES))).argmax(axis=1)
    np.testing.assert_array_equal(default.extras["targets"], predicted)
    explicit = xj.occlusion(cnn, IMAGES, window=(2, 2, C), strides=2, targets=predicted)
    np.testing.assert_array_equal(default.values, explicit.values)

    def host(X):  # NumPy in and out: run on the host through a callback
        return np.asarray(cnn(jnp.asarray(X)))

    on_host = xj.occlusion(xj.host_model(host), IMAGES, window=(2, 2, C), strides=2)
    assert_close(on_host.values, default.values)
    one = xj.occlusion(cnn, IMAGES[1], window=(2, 2, C), strides=2, batch_size=3)
    assert_close(one.values, default.values[1])


# -- feature ablation ----------------------------------------------------------------------
def test_feature_ablation_equals_captum_with_a_feature_mask():
    groups = np.repeat(np.arange(6), 7).reshape(H, W)  # (H, W): channels move together
    groups = np.random.default_rng(1).permutation(6)[groups]
    ours = xj.feature_ablation(cnn, IMAGES, groups=groups, baseline=0.2, targets=1)
    theirs = FeatureAblation(torch_cnn()).attribute(
        nchw(IMAGES), baselines=0.2, target=1, feature_mask=torch.from_numpy(groups)[None, None]
    )
    assert_close(ours.values, nhwc(theirs))
    gv = np.asarray(ours.extras["group_values"])
    assert gv.shape == (2, 6)
    for g in range(6):  # each group's value is spread over its pixels and channels
        spread = np.asarray(ours.values)[:, groups == g].reshape(2, -1)
        assert_close(spread, np.repeat(gv[:, g, None], 7 * C, 1))
    np.testing.assert_array_equal(ours.extras["groups"], groups[None])


def test_feature_ablation_per_element_per_instance_groups_and_rows():
    # groups=None: every element its own group (captum's default feature mask)
    ours = xj.feature_ablation(cnn, IMAGES, targets=0, batch_size=50)
    theirs = FeatureAblation(torch_cnn()).attribute(nchw(IMAGES), target=0)
    assert_close(ours.values, nhwc(theirs))
    # one map per instance, the second using fewer groups: its unused group scores exactly 0
    per = np.stack([np.arange(H * W * C).reshape(H, W, C) % 4, np.zeros((H, W, C), int)])
    per[1, :3] = 1
    ours = xj.feature_ablation(cnn, IMAGES, groups=per, targets=np.array([0, 2]))
    for i, t in enumerate((0, 2)):
        theirs = FeatureAblation(torch_cnn()).attribute(
            nchw(IMAGES[i : i + 1]), target=t, feature_mask=nchw(per[i : i + 1])
        )
        assert_close(ours.values[i], nhwc(theirs)[0])
    assert np.asarray(ours.extras["group_values"])[1, 2:].tolist() == [0.0, 0.0]
    # tabular rows with column groups (a one-hot variable's columns together)
    cols = np.array([0, 1, 1, 2, 0])
    ours = xj.feature_ablation(mlp, ROWS, groups=cols, baseline=ROWS.mean(0), targets=2)
    theirs = FeatureAblation(torch_mlp).attribute(
        torch.from_numpy(ROWS),
        baselines=torch.from_numpy(ROWS.mean(0))[None],
        target=2,
        feature_mask=torch.from_numpy(cols)[None],
    )
    assert_close(ours.values, theirs.numpy())


# -- RISE ----------------------------------------------------------------------------------
def test_rise_masks_are_the_papers_upsampled_and_cropped_grids():
    rng = np.random.default_rng(3)
    for s, (h, w) in ((3, (7, 6)), (8, (32, 30)), (2, (5, 9))):
        ch, cw = -(-h // s), -(-w // s)
        grid = (rng.random((s, s)) < 0.5).astype(np.float32)
        shift = np.array([rng.integers(ch), rng.integers(cw)])
        up = resize(
            grid, ((s + 1) * ch, (s + 1) * cw), order=1, mode="reflect", anti_aliasing=False
        )
        want = up[shift[0] : shift[0] + h, shift[1] : shift[1] + w]
        assert_close(rise_mask(grid, jnp.asarray(shift), (h, w)), want, tol=1e-6)
    masks = np.asarray(rise_masks(jax.random.key(0), 4000, (9, 9), cell_size=3, p=0.3))
    assert masks.shape == (4000, 9, 9) and masks.min() >= 0 and masks.max() <= 1
    assert abs(masks.mean() - 0.3) < 0.01  # interpolation keeps the mean: E[m] = p
    # cell_size is the cell's side in pixels; the default is the paper's 8 x 8 grid
    key = jax.random.key(1)
    default = np.asarray(rise_masks(key, 5, (32, 32)))
    np.testing.assert_array_equal(default, np.asarray(rise_masks(key, 5, (32, 32), cell_size=4)))
    wide = np.asarray(rise_masks(key, 2000, (32, 32), cell_size=16))  # a 2 x 2 grid of cells
    fine = np.asarray(rise_masks(key, 2000, (32, 32)))
    assert wide[:, :8, :8].std(axis=(1, 2)).mean() < fine[:, :8, :8].std(axis=(1, 2)).mean()


def test_rise_equals_the_defining_average_over_its_masks():
    key, N, s, p = jax.random.key(4), 40, 3, 0.4
    exp = xj.rise(cnn, IMAGES, key=key, num_masks=N, cell_size=s, p=p, batch_size=7)
    assert exp.values.shape == (2, H, W)
    predicted = np.asarray(cnn(jnp.asarray(IMAGES))).argmax(axis=1)
    np.testing.assert_array_equal(exp.extras["targets"], predicted)
    for i, k in enumerate(jax.random.split(key, 2)):
        masks = np.asarray(rise_masks(k, N, (H, W), cell_size=s, p=p))
        masked = IMAGES[i][None] * masks[:, :, :, None]
        scores = np.asarray(cnn(jnp.asarray(masked)))[:, predicted[i]]  # one model call
        want = np.zeros((H, W))
        for score, m in zip(scores, masks, strict=True):
            want += score * m
        assert_close(exp.values[i], want / (N * p))
    again = xj.rise(cnn, IMAGES, key=key, num_masks=N, cell_size=s, p=p)
    assert_close(again.values, exp.values)  # the masks do not depend on the chunking
    one = xj.rise(
        cnn, IMAGES[0], key=jax.random.split(key, 2)[0][None], num_masks=N, cell_size=s, p=p
    )
    assert_close(one.values, exp.values[0])


def test_rise_on_a_linear_model_matches_the_closed_form():
    # f(x) = sum(w * x) on (h, w, 1) images, mask m = A g with g iid Bernoulli(p) cells:
    # E[sal] = E[f(x * m) m] / p = E[m m^T] a / p,  a = w * x,
    # E[m m^T] = mean over crop offsets of A (p^2 11^T + p (1 - p) I) A^T.
    h, w, s, p, N = 6, 6, 3, 0.5, 20000
    rng = np.random.default_rng(5)
    weights, x = rng.normal(size=(h, w, 1)), rng.uniform(0.5, 1.5, size=(h, w, 1))
    a = (weights * x).reshape(-1)
    cell = -(-h // s)
    up = (s + 1) * cell
    basis = [
        resize(
            np.eye(s * s)[u].reshape(s, s), (up, up), order=1, mode="reflect", anti_aliasing=False
        )
        for u in range(s * s)
    ]
    second = np.zeros((h * w, h * w))
    cov = p * p * np.ones((s * s, s * s)) + p * (1 - p) * np.eye(s * s)
    for dy in range(cell):
        for dx in range(cell):
            A = np.stack([b[dy : dy + h, dx : dx + w].reshape(-1) for b in basis], axis=1)
            second += A @ cov @ A.T / cell**2
    closed = (second @ a / p).reshape(h, w)

    def linear(X):
        return (X * jnp.asarray(weights, X.dtype)[None]).sum(axis=(1, 2, 3))

    exp = xj.rise(
        linear, x.astype(np.float32), key=jax.random.key(6), num_masks=N, cell_size=cell, p=p
    )
    masks = np.asarray(rise_masks(jax.random.split(jax.random.key(6), 1)[0], N, (h, w), cell, p))
    flat = masks.reshape(N, -1)
    terms = (flat @ a)[:, None] * flat / p  # each mask's term of the average
    se = terms.std(axis=0) / np.sqrt(N)
    z = (np.asarray(exp.values).reshape(-1) - closed.reshape(-1)) / se
    assert np.abs(z).max() < 5, np.abs(z).max()
    # and exactly, on the masks drawn: (1 / (N p)) M^T M a
    # (float32 sums of 20,000 terms: rounding near 1e-5 of the scale)
    assert_close(exp.values, (flat.T @ (flat @ a) / (N * p)).reshape(h, w), tol=5e-5)


def test_rise_on_sequences_gets_one_dimensional_masks():
    exp = xj.rise(mlp, ROWS, key=jax.random.key(1), num_masks=30, cell_size=2, targets=0)
    assert exp.values.shape == ROWS.shape
    masks = np.asarray(rise_masks(jax.random.split(jax.random.key(1), 3)[2], 30, (M,), 2))
    scores = np.asarray(mlp(jnp.asarray(ROWS[2][None] * masks)))[:, 0]
    want = sum(score * m for score, m in zip(scores, masks, strict=True))
    assert_close(exp.values[2], want / (30 * 0.5))


# -- bad input -----------------------------------------------------------------------------
def test_bad_rise_masks_arguments_are_named():
    with pytest.raises(ValueError, match="spatial"):
        rise_masks(jax.random.key(0), 4, (2, 3, 4))
    with pytest.raises(ValueError, match="p "):
        rise_masks(jax.random.key(0), 4, (8, 8), p=-0.5)
    with pytest.raises(TypeError, match="key"):
        rise_masks(0, 4, (8, 8))


@pytest.mark.parametrize(
    "call, error, name",
    [
        (lambda: xj.occlusion(cnn, IMAGES, window=(H + 1, 2, C)), ValueError, "window"),
        (lambda: xj.occlusion(cnn, IMAGES, window=(2, 2)), ValueError, "window"),
        (lambda: xj.occlusion(cnn, IMAGES, window=(2, 2.0, 1)), TypeError, "window"),
        (lambda: xj.occlusion(cnn, IMAGES, window=(2, 2, 1), strides=0), ValueError, "strides"),
        (
            lambda: xj.occlusion(cnn, IMAGES, window=(2, 2, 1), strides=(1, 3, 1)),
            ValueError,
            "strides",
        ),
        (
            lambda: xj.occlusion(cnn, IMAGES, window=(2, 2, 1), strides=(1, 1)),
            ValueError,
            "strides",
        ),
        (
            lambda: xj.occlusion(cnn, IMAGES, window=(2, 2, 1), baseline=np.ones(4)),
            ValueError,
            "baseline",
        ),
        (
            lambda: xj.occlusion(cnn, IMAGES, window=(2, 2, 1), baseline=np.nan),
            ValueError,
            "baseline",
        ),
        (
            lambda: xj.feature_ablation(cnn, IMAGES, groups=np.zeros((W, H), int)),
            ValueError,
            "groups",
        ),
        (
            lambda: xj.feature_ablation(cnn, IMAGES, groups=-np.ones((H, W), int)),
            ValueError,
            "groups",
        ),
        (
            lambda: xj.feature_ablation(cnn, IMAGES, groups=2 * np.ones((H, W), int)),
            ValueError,
            "groups",
        ),
        (
            lambda: xj.rise(cnn, IMAGES, key=jax.random.key(0), num_masks=0),
            ValueError,
            "num_masks",
        ),
        (lambda: xj.rise(cnn, IMAGES, key=jax.random.key(0), p=0.0), ValueError, "p "),
        (lambda: xj.rise(cnn, IMAGES, key=jax.random.key(0), p=1.5), ValueError, "p "),
        (
            lambda: xj.rise(cnn, IMAGES, key=jax.random.key(0), cell_size=2.0),
            TypeError,
            "cell_size",
        ),
        (
            lambda: xj.rise(cnn, IMAGES, key=jax.random.key(0), cell_size=0),
            ValueError,
            "cell_size",
        ),
        (
            lambda: xj.rise(
                lambda X: X.sum(axis=(1, 2, 3, 4)), IMAGES[:, None], key=jax.random.key(0)
            ),
            ValueError,
            "X",
        ),
    ],
)
def test_bad_input_is_named(call, error, name):
    with pytest.raises(error, match=name):
        call()


def test_nan_model_outputs_are_an_error():
    def nan_off_x(X):  # NaN on the perturbed copies only
        out = cnn(X)
        seen = jnp.all(X.reshape(X.shape[0], -1) == jnp.asarray(IMAGES[0]).reshape(1, -1), axis=1)
        return jnp.where(seen[:, None], out, jnp.nan)

    for call in (
        lambda f: xj.occlusion(f, IMAGES[0], window=(2, 2, C)),
        lambda f: xj.feature_ablation(f, IMAGES[0], groups=np.arange(H * W).reshape(H, W)),
        lambda f: xj.rise(f, IMAGES[0], key=jax.random.key(0), num_masks=8, cell_size=2),
    ):
        with pytest.raises(ValueError, match="NaN"):
            call(nan_off_x)
