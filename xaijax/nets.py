"""Small Flax NNX models to explain, and one optax training loop for them."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

__all__ = ["MLP", "CNN", "ResNet", "BasicBlock", "build", "train", "accuracy", "save", "load"]


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
        self.hidden = (
            nnx.List(
                [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
            )
            if hasattr(nnx, "List")
            else [nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
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
    ``xj.grad_cam(cnn, "features", images)``.

    Example:
        >>> import jax.numpy as jnp
        >>> net = build(lambda rngs: CNN(3, 4, widths=(8, 16), rngs=rngs))
        >>> net(jnp.zeros((2, 32, 32, 3))).shape
        (2, 4)
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        *,
        widths: Sequence[int] = (16, 32),
        softmax: bool = False,
        rngs: nnx.Rngs,
    ):
        chans = [in_channels, *widths]
        self.blocks = _list(
            [nnx.Conv(a, b, (3, 3), rngs=rngs) for a, b in zip(chans[:-1], chans[1:], strict=True)]
        )
        self.features = nnx.Sequential(
            nnx.Conv(chans[-1], chans[-1], (3, 3), rngs=rngs), jax.nn.relu
        )
        self.head = nnx.Linear(chans[-1], num_classes, rngs=rngs)
        self.softmax = softmax

    def __call__(self, x):
        for conv in self.blocks:
            x = nnx.max_pool(jax.nn.relu(conv(x)), (2, 2), strides=(2, 2))
        x = self.head(self.features(x).mean(axis=(1, 2)))
        return jax.nn.softmax(x, axis=-1) if self.softmax else x


def _conv(cin, cout, k, stride, rngs):
    pad = ((k // 2, k // 2), (k // 2, k // 2))  # PyTorch-compatible padding
    return nnx.Conv(
        cin, cout, (k, k), strides=(stride, stride), padding=pad, use_bias=False, rngs=rngs
    )


class BasicBlock(nnx.Module):
    """He et al.'s basic residual block: two 3x3 conv + batch-norm, identity or 1x1 projection."""

    def __init__(self, cin: int, cout: int, stride: int, rngs: nnx.Rngs):
        self.conv1 = _conv(cin, cout, 3, stride, rngs)
        self.bn1 = nnx.BatchNorm(cout, rngs=rngs)
        self.conv2 = _conv(cout, cout, 3, 1, rngs)
        self.bn2 = nnx.BatchNorm(cout, rngs=rngs)
        self.project = stride != 1 or cin != cout
        if self.project:
            self.down = nnx.Sequential(
                _conv(cin, cout, 1, stride, rngs), nnx.BatchNorm(cout, rngs=rngs)
            )

    def __call__(self, x):
        y = self.bn2(self.conv2(jax.nn.relu(self.bn1(self.conv1(x)))))
        return jax.nn.relu(y + (self.down(x) if self.project else x))


class ResNet(nnx.Module):
    """A ResNet-style CNN: 7x7/2 stem, 3x3/2 max-pool, stages of basic blocks, GAP, dense.

    ``blocks=(2, 2, 2, 2)`` with ``widths=(64, 128, 256, 512)`` is ResNet-18's shape; the default
    is narrower and shallower. CAM layers are ``"stages/3"`` (the last stage) and so on.

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
        classes: int = 10,
        in_channels: int = 3,
        *,
        rngs: nnx.Rngs,
    ):
        self.stem = _conv(in_channels, widths[0], 7, 2, rngs)
        self.stem_bn = nnx.BatchNorm(widths[0], rngs=rngs)
        stages, cin = [], widths[0]
        for i, (w, b) in enumerate(zip(widths, blocks, strict=True)):
            layers = [
                BasicBlock(cin if j == 0 else w, w, 2 if (i > 0 and j == 0) else 1, rngs)
                for j in range(b)
            ]
            stages.append(nnx.Sequential(*layers))
            cin = w
        self.stages = _list(stages)
        self.fc = nnx.Linear(cin, classes, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.stem_bn(self.stem(x)))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage in self.stages:
            x = stage(x)
        return self.fc(x.mean(axis=(1, 2)))


def _merge_fresh(graphdef, *states):
    # Fresh Variables at the current trace level, so batch-norm may update them under grad/jit
    # (Flax >= 0.11 reuses the given Variables unless copy=True; older Flax always copies).
    try:
        return nnx.merge(graphdef, *states, copy=True)
    except TypeError:  # pragma: no cover - older Flax without the keyword
        return nnx.merge(graphdef, *states)


def _list(modules):
    # nnx.List exists in newer Flax; older Flax registers plain lists of modules.
    return nnx.List(modules) if hasattr(nnx, "List") else list(modules)


def build(make: Callable[[nnx.Rngs], nnx.Module], *, seed: int = 0) -> nnx.Module:
    """Construct ``make(rngs)`` abstractly and initialise its state with NumPy, deterministically.

    Kernels get LeCun-normal values, biases 0, batch-norm scales 1 with running mean 0 and
    variance 1: Flax's defaults in distribution, without compiling one random kernel per
    parameter shape (seconds per layer on a small CPU).

    Example:
        >>> net = build(lambda rngs: MLP(3, [4], 2, rngs=rngs))
        >>> net.out.kernel.shape
        (4, 2)
    """
    graphdef, state = nnx.split(nnx.eval_shape(lambda: make(nnx.Rngs(0))))
    rng = np.random.default_rng(seed)

    def fill(path, x):
        names = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        name = names[-2] if names and names[-1] == "value" and len(names) > 1 else names[-1]
        shape, dtype = x.shape, x.dtype
        if not jnp.issubdtype(dtype, jnp.floating):
            return jnp.zeros(shape, dtype) if jnp.issubdtype(dtype, jnp.integer) else x
        if name in ("kernel", "embedding") and len(shape) >= 2:
            fan_in = int(np.prod(shape[:-1]))
            return (rng.normal(size=shape) / np.sqrt(fan_in)).astype(dtype)
        return np.ones(shape, dtype) if name in ("scale", "var") else np.zeros(shape, dtype)

    return nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))


def accuracy(model: nnx.Module, X, y, *, batch_size: int = 512) -> float:
    """Fraction of ``X`` whose arg-max output equals ``y``, evaluated in batches."""
    X, y = np.asarray(X), np.asarray(y)
    correct = 0
    for start in range(0, len(X), batch_size):
        out = np.asarray(model(jnp.asarray(X[start : start + batch_size], jnp.float32)))
        correct += int((out.argmax(1) == y[start : start + batch_size]).sum())
    return correct / max(1, len(X))


def _state_arrays(model):
    _, state = nnx.split(model)
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return state, {jax.tree_util.keystr(p): v for p, v in leaves}


def save(model: nnx.Module, path: str) -> None:
    """Write ``model``'s state (parameters, batch statistics) to ``path`` (``.npz``).

    Restore with :func:`load` into a module of the same architecture.
    """
    _, arrays = _state_arrays(model)
    arrays = {
        k: np.asarray(v)
        for k, v in arrays.items()
        if jnp.issubdtype(jnp.asarray(v).dtype, jnp.number)
    }
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    np.savez(path, **arrays)


def load(path: str, model: nnx.Module) -> nnx.Module:
    """Restore the state written by :func:`save` into ``model`` (same architecture), in place.

    Raises:
        ValueError: if the file does not hold ``model``'s state paths with the same shapes.
    """
    state, _ = _state_arrays(model)
    with np.load(path if path.endswith(".npz") else path + ".npz") as npz:
        stored = {k: npz[k] for k in npz.files}

    def restore(p, v):
        k = jax.tree_util.keystr(p)
        if not jnp.issubdtype(jnp.asarray(v).dtype, jnp.number):
            return v
        if k not in stored or stored[k].shape != np.shape(v):
            raise ValueError(
                f"path {path!r} does not hold {k} with shape {np.shape(v)}; "
                "was it saved from a model of the same architecture?"
            )
        return jnp.asarray(stored[k], dtype=jnp.asarray(v).dtype)

    nnx.update(model, jax.tree_util.tree_map_with_path(restore, state))
    return model


def train(
    model: nnx.Module,
    X,
    y,
    *,
    key,
    loss: str = "cross_entropy",
    epochs: int = 50,
    learning_rate: float = 1e-2,
    batch_size: int = 64,
    weight_decay: float = 1e-4,
    progress: bool = False,
):
    """Train ``model`` in place with AdamW on ``(X, y)``; returns the per-epoch mean losses.

    ``loss`` is ``"cross_entropy"`` (integer labels; a softmax model is trained on its
    log-probabilities) or ``"mse"`` (a scalar output ``(n, 1)`` or ``(n,)``). Mini-batches are
    shuffled with ``key``, so the same key trains the same weights. ``progress`` prints one line
    per epoch (loss, seconds) to stderr. Batch-norm statistics are updated in training mode.

    Example:
        >>> import jax, numpy as np
        >>> from flax import nnx
        >>> X = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
        >>> net = MLP(2, [8], 2, rngs=nnx.Rngs(0))
        >>> losses = train(net, X, (X[:, 0] > 0).astype(np.int32), key=jax.random.key(0), epochs=20)
        >>> bool(losses[-1] < losses[0])
        True
    """
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"loss must be 'cross_entropy' or 'mse'; got {loss!r}")
    X = jnp.asarray(X, jnp.float32)
    y = jnp.asarray(y)
    if hasattr(model, "train"):
        model.train()  # dropout on, batch-norm on batch statistics
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)
    opt_state = tx.init(params)
    softmax = bool(getattr(model, "softmax", False))

    def loss_fn(params, rest, xb, yb):
        module = _merge_fresh(graphdef, params, rest)
        out = module(xb)
        # Batch-norm updates its running statistics on the merged copy; hand them back out.
        new_rest = nnx.split(module, nnx.Param, ...)[2]
        if loss == "mse":
            return jnp.mean((out.reshape(yb.shape) - yb) ** 2), new_rest
        logp = jnp.log(jnp.clip(out, 1e-12)) if softmax else jax.nn.log_softmax(out, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1)), new_rest

    @jax.jit
    def step(params, rest, opt_state, xb, yb):
        (value, rest), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, rest, xb, yb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, value

    n = X.shape[0]
    batch_size = min(batch_size, n)
    num_batches = n // batch_size
    history = []
    start = time.perf_counter()
    for epoch, epoch_key in enumerate(jax.random.split(key, epochs)):
        order = jax.random.permutation(epoch_key, n)
        total = 0.0
        for b in range(num_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            params, rest, opt_state, value = step(params, rest, opt_state, X[idx], y[idx])
            total += float(value)
        history.append(total / num_batches)
        if progress:
            bar = "#" * int(20 * (epoch + 1) / epochs)
            print(
                f"\r  [{bar:<20}] epoch {epoch + 1}/{epochs} loss {history[-1]:.4f} "
                f"({time.perf_counter() - start:.1f} s)",
                end="" if epoch + 1 < epochs else "\n",
                file=sys.stderr,
                flush=True,
            )
    nnx.update(model, params, rest)
    if hasattr(model, "eval"):
        model.eval()
    return np.asarray(history)
