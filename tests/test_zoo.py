"""Model zoo: construction, the one trainer (compiled steps, batch-norm statistics), save/load."""

import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from xaijax import zoo
from xaijax.zoo import data


def test_cnn_learns_synthetic_shapes_and_round_trips(tmp_path):
    train = data.synthetic_shapes(jax.random.key(0), 256, size=32)
    test = data.synthetic_shapes(jax.random.key(1), 96, size=32)
    cnn = zoo.build(lambda r: zoo.CNN(3, 3, widths=(16, 32), rngs=r))
    losses = zoo.train(
        cnn, train.images, train.labels, key=jax.random.key(2), epochs=15, learning_rate=3e-3
    )
    assert losses.shape == (15,) and losses[-1] < 0.5 * losses[0]
    acc = zoo.accuracy(cnn, test.images, test.labels, batch_size=40)  # a short last batch
    assert acc > 0.8  # chance is 1/3
    out = np.asarray(cnn(test.images))
    assert acc == pytest.approx(float((out.argmax(1) == test.labels).mean()))
    zoo.save(cnn, str(tmp_path / "cnn.npz"))
    assert json.loads((tmp_path / "cnn.json").read_text())["model"] == "CNN"
    other = zoo.build(lambda r: zoo.CNN(3, 3, widths=(16, 32), rngs=r), seed=5)
    zoo.load(str(tmp_path / "cnn.npz"), other)
    np.testing.assert_array_equal(
        np.asarray(other(test.images[:4])), np.asarray(cnn(test.images[:4]))
    )
    wrong = zoo.build(lambda r: zoo.CNN(3, 3, widths=(16, 16), rngs=r))
    with pytest.raises(ValueError, match="same architecture"):
        zoo.load(str(tmp_path / "cnn.npz"), wrong)
    # Without a head the CNN is a backbone: its features map.
    backbone = zoo.build(lambda r: zoo.CNN(3, None, widths=(16, 32), rngs=r))
    assert backbone(test.images[:2]).shape == (2, 8, 8, 32)


def test_resnet_batchnorm_statistics_update_and_training_is_deterministic():
    X = np.random.default_rng(0).normal(size=(16, 16, 16, 3)).astype(np.float32)
    y = (X.mean((1, 2, 3)) > 0).astype(np.int32)

    def make(r):
        return zoo.ResNet(widths=(4, 4, 8, 8), classes=2, rngs=r)

    a, b = zoo.build(make), zoo.build(make)
    la = zoo.train(a, X, y, key=jax.random.key(0), epochs=2, batch_size=8)
    lb = zoo.train(b, X, y, key=jax.random.key(0), epochs=2, batch_size=8)
    if jax.default_backend() == "cpu":
        np.testing.assert_array_equal(la, lb)  # same key, same run
    else:  # GPU convolution gradients use atomics: same run to float32 rounding, not bitwise
        np.testing.assert_allclose(la, lb, rtol=1e-5)
    assert float(np.abs(np.asarray(a.stem_bn.mean[...])).sum()) > 0  # running stats moved
    assert a.stem_bn.use_running_average  # back in eval mode after training
    assert a(X[:2]).shape == (2, 2)


def test_resnet_without_batch_norm_starts_as_its_shortcuts():
    # Without batch norm each residual branch's second conv starts at zero, so at initialisation
    # a block is relu(shortcut(x)): with identity shortcuts the stage is relu(x) = x for x >= 0.
    def make(r):
        return zoo.ResNet((4, 4), (2, 1), None, 3, stem="cifar", batch_norm=False, rngs=r)

    for net in (zoo.build(make, seed=1), make(nnx.Rngs(1))):  # built, or constructed directly
        x = jnp.asarray(np.random.default_rng(0).uniform(size=(2, 8, 8, 3)), jnp.float32)
        stem = jax.nn.relu(net.stem(x))
        np.testing.assert_allclose(np.asarray(net.stages[0](stem)), np.asarray(stem), rtol=1e-6)
        assert net(x).shape == (2, 4, 4, 4) and not hasattr(net, "stem_bn")
        for stage in net.stages:
            for block in stage.layers:
                assert not np.any(np.asarray(block.conv2.kernel[...]))
                assert np.any(np.asarray(block.conv1.kernel[...]))


def test_build_draws_variance_scaled_kernels():
    net = zoo.build(lambda r: nnx.Linear(400, 300, rngs=r), seed=0, scale=2.0)
    assert float(np.std(net.kernel[...])) == pytest.approx(np.sqrt(2 / 400), rel=0.02)
    out = zoo.build(lambda r: nnx.Conv(8, 50, (3, 3), rngs=r), seed=0, mode="fan_out")
    assert float(np.std(out.kernel[...])) == pytest.approx(np.sqrt(1 / (9 * 50)), rel=0.05)
    np.testing.assert_array_equal(out.bias[...], np.zeros(50))
    same = zoo.build(lambda r: nnx.Linear(400, 300, rngs=r), seed=jax.random.key(3))
    again = zoo.build(lambda r: nnx.Linear(400, 300, rngs=r), seed=jax.random.key(3))
    np.testing.assert_array_equal(same.kernel[...], again.kernel[...])
    with pytest.raises(ValueError, match="mode"):
        zoo.build(lambda r: nnx.Linear(2, 2, rngs=r), mode="fan_avg")


def test_epoch_is_one_compiled_step_equal_to_a_step_by_step_loop():
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(10, 3)), jnp.float32)
    y = X @ jnp.array([1.0, -2.0, 0.5]) + 0.1
    tx = optax.adam(0.05)
    traced = []

    def loss_fn(w, rest, xb, yb):
        traced.append(1)  # Python runs once per trace, not once per step
        loss = jnp.mean((xb @ w - yb) ** 2)
        return loss, ({"mse": loss, "count": rest + 1.0}, rest)

    run = zoo.epoch_runner(loss_fn, tx)
    w, opt_state = jnp.zeros(3), tx.init(jnp.zeros(3))
    ref_w, ref_state = w, opt_state
    for epoch in range(3):
        key = jax.random.fold_in(jax.random.key(1), epoch)
        w, _, opt_state, metrics = run(w, 0.0, opt_state, X, y, key, batch_size=4)
        assert isinstance(metrics["mse"], jax.Array)  # still on the device
        order = np.asarray(jax.random.permutation(key, 10))[:8].reshape(2, 4)
        losses = []
        for idx in order:  # the oracle: one step at a time on the host
            xb, yb = X[idx], y[idx]
            loss, grads = jax.value_and_grad(lambda w, xb=xb, yb=yb: jnp.mean((xb @ w - yb) ** 2))(
                ref_w
            )
            updates, ref_state = tx.update(grads, ref_state, ref_w)
            ref_w = optax.apply_updates(ref_w, updates)
            losses.append(float(loss))
        np.testing.assert_allclose(np.asarray(w), np.asarray(ref_w), rtol=1e-5, atol=1e-6)
        assert float(metrics["mse"]) == pytest.approx(np.mean(losses), rel=1e-5)
        assert float(metrics["count"]) == 1.0
    assert len(traced) == 1  # 3 epochs of 2 steps: one trace, one compiled step
    # No host-to-device transfer in an epoch (on a GPU each would wait for the device): the step
    # counter stays on the device. The arguments are made before the guard.
    zero, key = jnp.float32(0.0), jax.random.key(2)
    with jax.transfer_guard("disallow"):
        run(w, zero, opt_state, X, y, key, batch_size=4)


def test_checkpoint_round_trips_any_pytree(tmp_path):
    params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.zeros(3)}
    tx = optax.chain(optax.add_decayed_weights(1e-3), optax.adam(1e-2))
    state = tx.init(params)
    tree = {"params": params, "opt": state, "step": jnp.int32(7), "key": jax.random.key(0)}
    path = zoo.save_checkpoint(tmp_path / "run" / "ckpt", tree, {"epoch": 3, "note": "x"})
    assert path.endswith("ckpt.npz") and not list((tmp_path / "run").glob("*.tmp*"))
    assert json.loads((tmp_path / "run" / "ckpt.json").read_text())["epoch"] == 3
    template = jax.tree.map(jnp.zeros_like, {k: v for k, v in tree.items() if k != "key"})
    template["key"] = jax.random.key(5)
    loaded, meta = zoo.load_checkpoint(tmp_path / "run" / "ckpt", template)
    assert meta["epoch"] == 3 and meta["note"] == "x"
    for a, b in zip(jax.tree.leaves(loaded["params"]), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert int(loaded["step"]) == 7 and loaded["step"].dtype == jnp.int32
    assert jax.tree.structure(loaded["opt"]) == jax.tree.structure(state)
    template["params"]["w"] = jnp.zeros((3, 3))
    with pytest.raises(ValueError, match=r"\['params'\]\['w'\]"):
        zoo.load_checkpoint(tmp_path / "run" / "ckpt", template)


def test_progress_line(capsys):
    import io

    out = io.StringIO()
    bar = zoo.Progress(3, unit="epochs", label="train", stream=out)
    bar.update(1, metrics={"loss": 0.25})
    bar.update(2)
    bar.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("train [########................] 1/3 epochs (33%)")
    assert "loss=0.25" in lines[0] and "3/3 epochs (100%)" in lines[1] and "ETA 0:00:00" in lines[1]
    zoo.Progress(3, stream=None).update(1)  # draws nothing


@pytest.mark.parametrize(
    ("old", "names"),
    [
        ("xaijax.data", ("synthetic_shapes", "SENTIMENT_WORDS")),
        ("xaijax.nets", ("MLP", "build", "train", "save")),
        ("xaijax.chunks", ("explain_in_chunks",)),
        ("xaijax.runs", ("save_results",)),
    ],
)
def test_old_module_paths_warn_and_still_work(old, names):
    module = importlib.import_module(old)
    for name in names:
        with pytest.warns(DeprecationWarning, match="moved"):
            value = getattr(module, name)
        assert value is not None
