"""Small Flax NNX models to explain and build on (MLP, CNN, ResNet) and one way to initialise them.

Every model here is built the same way, by :func:`build`: constructed abstractly, then filled
with NumPy draws (variance-scaled normal kernels, zero biases, unit batch-norm scales), so that
construction compiles nothing and is deterministic in its seed. The CNN and the ResNet return
their last feature map when built without a classifier head (``num_classes=None`` /
``classes=None``), which is how ProtoPNet uses them as backbones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["MLP", "CNN", "ResNet", "BasicBlock", "build", "numpy_rng", "zero_init", "module_list"]


class MLP(nnx.Module):
    """A multilayer perceptron ``in -> hidden... -> out`` with ReLU, optionally ending in softmax.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> net = MLP(4, [8], 2, rngs=nnx.Rngs(0))
        >>> net(jnp.ones((3, 4))).shape
        (3, 2)
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        softmax: bool = False,
        rngs: nnx.Rngs,
    ):
        sizes = [in_features, *hidden]
        self.hidden = module_list(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )
        self.out = nnx.Linear(sizes[-1], out_features, rngs=rngs)
        self.softmax = softmax

    def __call__(self, x):
        for layer in self.hidden:
            x = jax.nn.relu(layer(x))
        x = self.out(x)
        return jax.nn.softmax(x, axis=-1) if self.softmax else x


class CNN(nnx.Module):
    """A small CNN: conv blocks (3x3 conv, ReLU, 2x2 max-pool) -> ``features`` -> GAP -> dense.

    ``features`` (a 3x3 conv + ReLU on the last block's output) is the layer to give CAM methods:
    ``xj.grad_cam(cnn, "features", images)``. With ``num_classes=None`` there is no head and the
    network returns the ``features`` map ``(n, H / 2^b, W / 2^b, widths[-1])`` (a backbone).

    Example:
        >>> import jax.numpy as jnp
        >>> net = build(lambda rngs: CNN(3, 4, widths=(8, 16), rngs=rngs))
        >>> net(jnp.zeros((2, 32, 32, 3))).shape
        (2, 4)
        >>> build(lambda rngs: CNN(3, None, widths=(8, 16), rngs=rngs))(jnp.zeros((2, 32, 32, 3))).shape
        (2, 8, 8, 16)
    """  # noqa: E501

    def __init__(
        self,
        in_channels: int,
        num_classes: int | None,
        *,
        widths: Sequence[int] = (16, 32),
        softmax: bool = False,
        rngs: nnx.Rngs,
    ):
        chans = [in_channels, *widths]
        self.blocks = module_list(
            [nnx.Conv(a, b, (3, 3), rngs=rngs) for a, b in zip(chans[:-1], chans[1:], strict=True)]
        )
        self.features = nnx.Sequential(
            nnx.Conv(chans[-1], chans[-1], (3, 3), rngs=rngs), jax.nn.relu
        )
        self.head = None if num_classes is None else nnx.Linear(chans[-1], num_classes, rngs=rngs)
        self.softmax = softmax

    def feature_map(self, x):
        """The ``features`` layer's output ``(n, h, w, widths[-1])``."""
        for conv in self.blocks:
            x = nnx.max_pool(jax.nn.relu(conv(x)), (2, 2), strides=(2, 2))
        return self.features(x)

    def __call__(self, x):
        a = self.feature_map(x)
        if self.head is None:
            return a
        x = self.head(a.mean(axis=(1, 2)))
        return jax.nn.softmax(x, axis=-1) if self.softmax else x


def _conv(cin, cout, k, stride, rngs, *, use_bias=False):
    pad = ((k // 2, k // 2), (k // 2, k // 2))  # PyTorch-compatible padding
    return nnx.Conv(
        cin, cout, (k, k), strides=(stride, stride), padding=pad, use_bias=use_bias, rngs=rngs
    )


class BasicBlock(nnx.Module):
    """He et al.'s basic residual block: two 3x3 convs, identity or 1x1 projection shortcut.

    With ``batch_norm`` each conv is followed by batch norm. Without it the convs have biases and
    the branch's second conv starts at zero, so the block starts as its shortcut (as batch norm
    biases residual blocks towards the identity) and the network is one deterministic function
    of its parameters in training and evaluation alike.

    References:
        He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
        De & Smith, "Batch Normalization Biases Residual Blocks Towards the Identity Function in
        Deep Networks", NeurIPS 2020.
    """

    def __init__(self, cin: int, cout: int, stride: int, rngs: nnx.Rngs, *, batch_norm=True):
        self.batch_norm = batch_norm
        self.conv1 = _conv(cin, cout, 3, stride, rngs, use_bias=not batch_norm)
        self.conv2 = _conv(cout, cout, 3, 1, rngs, use_bias=not batch_norm)
        if batch_norm:
            self.bn1 = nnx.BatchNorm(cout, rngs=rngs)
            self.bn2 = nnx.BatchNorm(cout, rngs=rngs)
        else:
            zero_init(self.conv2.kernel)
        self.project = stride != 1 or cin != cout
        if self.project:
            shortcut = _conv(cin, cout, 1, stride, rngs, use_bias=not batch_norm)
            self.down = (
                nnx.Sequential(shortcut, nnx.BatchNorm(cout, rngs=rngs)) if batch_norm else shortcut
            )

    def __call__(self, x):
        if self.batch_norm:
            y = self.bn2(self.conv2(jax.nn.relu(self.bn1(self.conv1(x)))))
        else:
            y = self.conv2(jax.nn.relu(self.conv1(x)))
        return jax.nn.relu(y + (self.down(x) if self.project else x))


STEMS = ("imagenet", "cifar")


class ResNet(nnx.Module):
    """A ResNet: a stem, stages of basic blocks (stride 2 from the second stage), GAP, dense.

    ``blocks=(2, 2, 2, 2)`` with ``widths=(64, 128, 256, 512)`` is ResNet-18's shape; the default
    is narrower and shallower. ``stem="imagenet"`` is a 7x7/2 conv and a 3x3/2 max-pool;
    ``stem="cifar"`` a 3x3/1 conv (for small images). ``batch_norm=False`` leaves batch norm out
    and starts every residual branch at zero instead (see :class:`BasicBlock`). With
    ``classes=None`` there is no head and the network returns the last stage's map. CAM layers
    are ``"stages/3"`` (the last stage) and so on.

    References:
        He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.

    Example:
        >>> import jax.numpy as jnp
        >>> net = build(lambda rngs: ResNet(widths=(8, 8, 16, 16), classes=3, rngs=rngs))
        >>> net(jnp.zeros((1, 32, 32, 3))).shape
        (1, 3)
    """

    def __init__(
        self,
        widths=(16, 32, 64, 128),
        blocks=(1, 1, 1, 1),
        classes: int | None = 10,
        in_channels: int = 3,
        *,
        stem: str = "imagenet",
        batch_norm: bool = True,
        rngs: nnx.Rngs,
    ):
        if stem not in STEMS:
            raise ValueError(f"stem must be one of {STEMS}; got {stem!r}")
        self.stem_kind = stem
        self.batch_norm = batch_norm
        k, s = (7, 2) if stem == "imagenet" else (3, 1)
        self.stem = _conv(in_channels, widths[0], k, s, rngs, use_bias=not batch_norm)
        if batch_norm:
            self.stem_bn = nnx.BatchNorm(widths[0], rngs=rngs)
        stages, cin = [], widths[0]
        for i, (w, b) in enumerate(zip(widths, blocks, strict=True)):
            layers = [
                BasicBlock(
                    cin if j == 0 else w,
                    w,
                    2 if (i > 0 and j == 0) else 1,
                    rngs,
                    batch_norm=batch_norm,
                )
                for j in range(b)
            ]
            stages.append(nnx.Sequential(*layers))
            cin = w
        self.stages = module_list(stages)
        self.fc = None if classes is None else nnx.Linear(cin, classes, rngs=rngs)

    def feature_map(self, x):
        """The last stage's output ``(n, h, w, widths[-1])``."""
        x = self.stem(x)
        x = jax.nn.relu(self.stem_bn(x) if self.batch_norm else x)
        if self.stem_kind == "imagenet":
            x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage in self.stages:
            x = stage(x)
        return x

    def __call__(self, x):
        a = self.feature_map(x)
        return a if self.fc is None else self.fc(a.mean(axis=(1, 2)))


def zero_init(variable: nnx.Variable) -> None:
    """Set ``variable`` to zeros and mark it so that :func:`build` keeps it at zero."""
    variable.set_metadata(init="zeros")
    variable[...] = jnp.zeros(variable.shape, variable.dtype)


def module_list(modules):
    """A list of submodules NNX tracks: ``nnx.List`` where Flax has it, else a plain list."""
    return nnx.List(modules) if hasattr(nnx, "List") else list(modules)


def numpy_rng(seed) -> np.random.Generator:
    """A NumPy generator from an int seed, a JAX key (typed or raw), or a generator (returned).

    Example:
        >>> import jax
        >>> float(numpy_rng(jax.random.key(0)).normal()) == float(numpy_rng(jax.random.key(0)).normal())
        True
    """  # noqa: E501
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, jax.Array) or (hasattr(seed, "dtype") and np.ndim(seed) >= 1):
        data = seed
        if isinstance(seed, jax.Array) and jax.dtypes.issubdtype(seed.dtype, jax.dtypes.prng_key):
            data = jax.random.key_data(seed)
        return np.random.default_rng([int(v) for v in np.asarray(data, np.uint32).ravel()])
    return np.random.default_rng(seed)


def build(
    make: Callable[[nnx.Rngs], nnx.Module],
    *,
    seed=0,
    scale: float = 1.0,
    mode: str = "fan_in",
) -> nnx.Module:
    """Construct ``make(rngs)`` abstractly and initialise its state with NumPy, deterministically.

    Kernels (and embeddings) get normal values of variance ``scale / fan`` (``scale=1``,
    ``mode="fan_in"``: LeCun normal, Flax's default; ``scale=2``: He normal), batch-norm scales
    and running variances 1, everything else 0 (biases, running means, and the variables marked
    by :func:`zero_init`). This
    avoids compiling one random kernel per parameter shape (seconds per layer on a small CPU).

    Args:
        make: builds the module from an ``nnx.Rngs`` (only its shapes are used).
        seed: an int, a JAX key, or a ``numpy.random.Generator`` to draw from (which advances, so
            several modules can be built from one generator).
        scale: the variance scale of the kernels.
        mode: ``"fan_in"`` or ``"fan_out"``: the fan the variance is divided by.

    Returns:
        The module, with concrete arrays.

    Example:
        >>> net = build(lambda rngs: MLP(3, [4], 2, rngs=rngs))
        >>> net.out.kernel.shape
        (4, 2)
    """
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out'; got {mode!r}")
    graphdef, state = nnx.split(nnx.eval_shape(lambda: make(nnx.Rngs(0))))
    rng = numpy_rng(seed)
    variables = jax.tree_util.tree_leaves_with_path(
        state, is_leaf=lambda v: isinstance(v, nnx.Variable)
    )
    zeros = {
        jax.tree_util.keystr(p)
        for p, v in variables
        if isinstance(v, nnx.Variable) and v.get_metadata().get("init") == "zeros"
    }

    def fill(path, x):
        names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        name = names[-2] if names and names[-1] == "value" and len(names) > 1 else names[-1]
        owner = jax.tree_util.keystr(path[:-1] if names[-1] == "value" else path)
        shape, dtype = x.shape, x.dtype
        if owner in zeros:
            return np.zeros(shape, dtype)
        if not jnp.issubdtype(dtype, jnp.floating):
            return jnp.zeros(shape, dtype) if jnp.issubdtype(dtype, jnp.integer) else x
        if name in ("kernel", "embedding") and len(shape) >= 2:
            fan = (
                int(np.prod(shape[:-1]))
                if mode == "fan_in"
                else int(np.prod(shape[:-2]) * shape[-1])
            )
            return (rng.normal(size=shape) * np.sqrt(scale / fan)).astype(dtype)
        return np.ones(shape, dtype) if name in ("scale", "var") else np.zeros(shape, dtype)

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))
