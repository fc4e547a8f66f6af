"""Small models shared by the CAM and guided-backprop tests."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def random_module(make, seed=0, scale=0.3):
    """Build ``make()`` abstractly and fill its state from NumPy: N(0, scale^2) weights, positive
    BatchNorm variances. Flax's own initialisers compile one PRNG kernel per parameter shape,
    which costs seconds per layer on a loaded 2-core CPU."""
    graphdef, state = nnx.split(nnx.eval_shape(make))
    rng = np.random.default_rng(seed)

    def fill(path, x):
        v = (rng.normal(size=x.shape) * scale).astype(x.dtype)
        return np.abs(v) + 0.5 if any("var" in str(p) for p in path) else v

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


# captum's BasicModel_ConvNet_One_Conv: conv1 (1->2, 3x3, weights 1, bias [-50, -75]) -> relu1
# -> flatten in PyTorch's (c, h, w) order -> fc1 (8->4, weights [1]*5 + [-1]*3, bias 0) -> relu2.
CAPTUM_FC = jnp.concatenate([jnp.ones((4, 5)), -jnp.ones((4, 3))], axis=1)
CAPTUM_INPUT = jnp.arange(16.0).reshape(1, 4, 4, 1)


def captum_conv1(X):
    y = jax.lax.conv_general_dilated(
        X, jnp.ones((3, 3, 1, 2)), (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    return y + jnp.array([-50.0, -75.0]).reshape(1, 1, 1, 2)


def captum_fc(A):
    flat = A.transpose(0, 3, 1, 2).reshape(A.shape[0], 8)
    return jax.nn.relu(flat @ CAPTUM_FC.T)


class ReLU(nnx.Module):
    def __call__(self, x):
        return jax.nn.relu(x)


class CaptumOneConv(nnx.Module):
    """The same network as an NNX module, explained by layer path ("conv1", "relu1")."""

    def __init__(self):
        rngs = nnx.Rngs(0)
        # Constant initialisers (no PRNG kernels to compile); the weights are then set exactly.
        const = dict(kernel_init=nnx.initializers.ones, bias_init=nnx.initializers.zeros)
        self.conv1 = nnx.Conv(1, 2, (3, 3), padding="VALID", rngs=rngs, **const)
        self.conv1.bias = nnx.Param(jnp.array([-50.0, -75.0]))
        self.relu1 = ReLU()
        self.fc1 = nnx.Linear(8, 4, rngs=rngs, **const)
        self.fc1.kernel = nnx.Param(CAPTUM_FC.T)
        self.fc1.bias = nnx.Param(jnp.zeros(4))

    def __call__(self, x):
        a = self.relu1(self.conv1(x))
        return jax.nn.relu(self.fc1(a.transpose(0, 3, 1, 2).reshape(a.shape[0], 8)))


class Block(nnx.Module):
    """A residual block: relu(x + conv2(relu(bn(conv1(x)))))."""

    def __init__(self, ch, rngs):
        self.conv1 = nnx.Conv(ch, ch, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(ch, rngs=rngs)
        self.conv2 = nnx.Conv(ch, ch, (3, 3), rngs=rngs)

    def __call__(self, x):
        return jax.nn.relu(x + self.conv2(jax.nn.relu(self.bn(self.conv1(x)))))


class TinyResNet(nnx.Module):
    """stem conv -> 2 residual blocks -> global average pool -> dense (5 classes)."""

    def __init__(self, rngs, ch=6, classes=5):
        self.stem = nnx.Conv(3, ch, (3, 3), strides=(2, 2), rngs=rngs)
        self.blocks = nnx.List([Block(ch, rngs), Block(ch, rngs)])
        self.fc = nnx.Linear(ch, classes, rngs=rngs)

    def features(self, x):
        return self.blocks[1](self.blocks[0](jax.nn.relu(self.stem(x))))

    def head(self, a):
        return self.fc(a.mean(axis=(1, 2)))

    def __call__(self, x):
        return self.head(self.features(x))
