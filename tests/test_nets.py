"""Model zoo: construction, training (batch-norm statistics included), save/load."""

import jax
import numpy as np
import pytest

from xaijax import data, nets


def test_cnn_learns_synthetic_shapes_and_round_trips(tmp_path):
    train = data.synthetic_shapes(jax.random.key(0), 256, size=32)
    test = data.synthetic_shapes(jax.random.key(1), 96, size=32)
    cnn = nets.build(lambda r: nets.CNN(3, 3, widths=(16, 32), rngs=r))
    losses = nets.train(
        cnn, train.images, train.labels, key=jax.random.key(2), epochs=15, learning_rate=3e-3
    )
    assert losses[-1] < 0.5 * losses[0]
    acc = nets.accuracy(cnn, test.images, test.labels)
    assert acc > 0.8  # chance is 1/3
    nets.save(cnn, str(tmp_path / "cnn.npz"))
    other = nets.build(lambda r: nets.CNN(3, 3, widths=(16, 32), rngs=r), seed=5)
    nets.load(str(tmp_path / "cnn.npz"), other)
    np.testing.assert_array_equal(
        np.asarray(other(test.images[:4])), np.asarray(cnn(test.images[:4]))
    )
    wrong = nets.build(lambda r: nets.CNN(3, 3, widths=(16, 16), rngs=r))
    with pytest.raises(ValueError, match="same architecture"):
        nets.load(str(tmp_path / "cnn.npz"), wrong)


def test_resnet_batchnorm_statistics_update_and_training_is_deterministic():
    X = np.random.default_rng(0).normal(size=(16, 16, 16, 3)).astype(np.float32)
    y = (X.mean((1, 2, 3)) > 0).astype(np.int32)

    def make(r):
        return nets.ResNet(widths=(4, 4, 8, 8), classes=2, rngs=r)

    a, b = nets.build(make), nets.build(make)
    la = nets.train(a, X, y, key=jax.random.key(0), epochs=2, batch_size=8)
    lb = nets.train(b, X, y, key=jax.random.key(0), epochs=2, batch_size=8)
    if jax.default_backend() == "cpu":
        np.testing.assert_array_equal(la, lb)  # same key, same run
    else:  # GPU convolution gradients use atomics: same run to float32 rounding, not bitwise
        np.testing.assert_allclose(la, lb, rtol=1e-5)
    assert float(np.abs(np.asarray(a.stem_bn.mean[...])).sum()) > 0  # running stats moved
    assert a.stem_bn.use_running_average  # back in eval mode after training
    assert a(X[:2]).shape == (2, 2)
