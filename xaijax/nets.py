"""Small Flax NNX models to explain, and one optax training loop for them."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

__all__ = ["MLP", "train"]


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
):
    """Train ``model`` in place with AdamW on ``(X, y)``; returns the per-epoch mean losses.

    ``loss`` is ``"cross_entropy"`` (integer labels; a softmax model is trained on its
    log-probabilities) or ``"mse"`` (a scalar output ``(n, 1)`` or ``(n,)``). Mini-batches are
    shuffled with ``key``, so the same key trains the same weights.

    Example:
        >>> import jax, numpy as np
        >>> from flax import nnx
        >>> X = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
        >>> net = MLP(2, [8], 2, rngs=nnx.Rngs(0))
        >>> losses = train(net, X, (X[:, 0] > 0).astype(np.int32), key=jax.random.key(0), epochs=20)
        >>> losses[-1] < losses[0]
        True
    """
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"loss must be 'cross_entropy' or 'mse'; got {loss!r}")
    X = jnp.asarray(X, jnp.float32)
    y = jnp.asarray(y)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adamw(learning_rate, weight_decay=weight_decay)
    opt_state = tx.init(params)
    softmax = bool(getattr(model, "softmax", False))

    def loss_fn(params, xb, yb):
        out = nnx.merge(graphdef, params, rest)(xb)
        if loss == "mse":
            return jnp.mean((out.reshape(yb.shape) - yb) ** 2)
        logp = jnp.log(jnp.clip(out, 1e-12)) if softmax else jax.nn.log_softmax(out, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))

    @jax.jit
    def step(params, opt_state, xb, yb):
        value, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    n = X.shape[0]
    batch_size = min(batch_size, n)
    num_batches = n // batch_size
    history = []
    for epoch_key in jax.random.split(key, epochs):
        order = jax.random.permutation(epoch_key, n)
        total = 0.0
        for b in range(num_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            params, opt_state, value = step(params, opt_state, X[idx], y[idx])
            total += float(value)
        history.append(total / num_batches)
    nnx.update(model, params)
    return np.asarray(history)
