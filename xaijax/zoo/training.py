"""One trainer for the models in xaijax: compiled steps, one progress bar, one save format.

:func:`epoch_runner` runs a training epoch of compiled optimiser steps; its metrics stay on the
device and come back once per epoch, not once per step.
:func:`train` uses it for the zoo's supervised models, and ProtoPNet's stages use it with their
own losses and optimisers. :class:`Progress` is the one progress line (training epochs,
explained rows). :func:`save_checkpoint` / :func:`load_checkpoint` write and read any pytree
(a model's state, a training state with optimiser states) as arrays keyed by their pytree paths,
with JSON metadata, in one file replaced atomically; :func:`save` / :func:`load` do it for a
model.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import zipfile
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from xaijax.core.progress import Progress

__all__ = [
    "Progress",
    "epoch_runner",
    "evaluate_batches",
    "train",
    "accuracy",
    "save",
    "load",
    "save_checkpoint",
    "load_checkpoint",
    "next_token_targets",
]

FORMAT = "xaijax.checkpoint/1"
_META = "__metadata__"


# ----------------------------------------------------------------------------- the epoch
def epoch_runner(loss_fn: Callable, tx: optax.GradientTransformation) -> Callable:
    """A training epoch of compiled steps for ``loss_fn`` and the optimiser ``tx``.

    Args:
        loss_fn: ``loss_fn(params, rest, x, y) -> (loss, (metrics, rest))``: the scalar loss
            minimised, a dict of scalar metrics, and the non-trained state after the step
            (batch-norm statistics; returned unchanged by models without any).
        tx: the optax optimiser over ``params``.

    Returns:
        ``run(params, rest, opt_state, X, y, key, *, batch_size) -> (params, rest, opt_state,
        metrics)``. The rows of ``X`` are shuffled by ``jax.random.permutation(key, n)`` and cut
        into ``n // batch_size`` full batches (the remainder is left out, differently each
        epoch). Each step is one compiled call that gathers its batch on the device; the steps
        are dispatched without waiting for each other, and ``metrics``, their means, stay on
        the device: nothing is copied to the host during an epoch. (A ``lax.scan`` over the
        steps would dispatch once, but XLA's CPU backend runs convolutions inside loops ~6x
        slower.)

    Example:
        >>> import jax, jax.numpy as jnp, optax
        >>> def loss_fn(w, rest, x, y):
        ...     loss = jnp.mean((x @ w - y) ** 2)
        ...     return loss, ({"mse": loss}, rest)
        >>> run = epoch_runner(loss_fn, optax.sgd(0.1))
        >>> X = jnp.eye(4); y = jnp.arange(4.0)
        >>> w, _, _, m = run(jnp.zeros(4), (), optax.sgd(0.1).init(jnp.zeros(4)), X, y,
        ...                  jax.random.key(0), batch_size=2)
        >>> sorted(m)
        ['mse']
    """

    @jax.jit
    def step(params, rest, opt_state, X, y, order, i):
        idx = order[i]
        (_, (metrics, rest)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            params, rest, X[idx], y[idx]
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), rest, opt_state, metrics, i + 1

    def run(params, rest, opt_state, X, y, key, *, batch_size):
        n = X.shape[0]
        steps = n // batch_size
        if steps < 1:
            raise ValueError(f"batch_size must be at most the {n} rows; got {batch_size}")
        # The step counter lives on the device (each step returns the next), and the shuffle
        # and the means are compiled with their sizes as constants: no host-to-device transfer.
        order, i = _shuffle(key, n, steps, batch_size)
        sums = None
        for _ in range(steps):
            params, rest, opt_state, metrics, i = step(params, rest, opt_state, X, y, order, i)
            sums = metrics if sums is None else jax.tree.map(jnp.add, sums, metrics)
        return params, rest, opt_state, _divide(sums, steps)

    return run


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _shuffle(key, n: int, steps: int, batch_size: int):
    order = jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)
    return order, jnp.zeros((), jnp.int32)


@functools.partial(jax.jit, static_argnums=1)
def _divide(sums, steps: int):
    return jax.tree.map(lambda s: s / steps, sums)


def evaluate_batches(fn: Callable, X, y, *, batch_size: int = 128) -> dict[str, float]:
    """The mean of ``fn(x, y)`` (a dict of batch means) over ``(X, y)``, weighted by batch size.

    The sums stay on the device; the result is copied to the host once.

    Example:
        >>> import numpy as np
        >>> evaluate_batches(lambda x, y: {"mean": x.mean()}, np.arange(5.0), np.zeros(5),
        ...                  batch_size=2)
        {'mean': 2.0}
    """
    n = int(X.shape[0])
    sums = None
    for start in range(0, n, batch_size):
        xb, yb = X[start : start + batch_size], y[start : start + batch_size]
        weight = xb.shape[0]
        out = jax.tree.map(lambda v, w=weight: v * w, dict(fn(xb, yb)))
        sums = out if sums is None else jax.tree.map(jnp.add, sums, out)
    return {k: float(v) / max(1, n) for k, v in jax.device_get(sums or {}).items()}


# ----------------------------------------------------------------------------- zoo models
def _merge_fresh(graphdef, *states):
    # Fresh Variables at the current trace level, so batch-norm may update them under grad/jit
    # (Flax >= 0.11 reuses the given Variables unless copy=True; older Flax always copies).
    try:
        return nnx.merge(graphdef, *states, copy=True)
    except TypeError:  # pragma: no cover - older Flax without the keyword
        return nnx.merge(graphdef, *states)


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
) -> np.ndarray:
    """Train ``model`` in place with AdamW on ``(X, y)``; returns the per-epoch mean losses.

    ``loss`` is ``"cross_entropy"`` (integer labels; a softmax model is trained on its
    log-probabilities), ``"mse"`` (a scalar output ``(n, 1)`` or ``(n,)``) or ``"next_token"``
    (a language model's ``(n, L, V)`` logits against ``y (n, L)``, the next token id at each
    position, negative ids ignored; see :func:`next_token_targets`). Integer inputs (token ids)
    stay integers; others become float32. Epoch ``e``
    shuffles with ``fold_in(key, e)``, so the same key trains the same weights. ``progress``
    draws one line per epoch (loss, rate, ETA) on stderr. Batch-norm statistics are updated in
    training mode; the model is left in evaluation mode.

    Example:
        >>> import jax, numpy as np
        >>> from flax import nnx
        >>> from xaijax.zoo.nets import MLP
        >>> X = np.random.default_rng(0).normal(size=(64, 2)).astype(np.float32)
        >>> net = MLP(2, [8], 2, rngs=nnx.Rngs(0))
        >>> losses = train(net, X, (X[:, 0] > 0).astype(np.int32), key=jax.random.key(0), epochs=20)
        >>> bool(losses[-1] < losses[0])
        True
    """
    if loss not in ("cross_entropy", "mse", "next_token"):
        raise ValueError(f"loss must be 'cross_entropy', 'mse' or 'next_token'; got {loss!r}")
    X = _inputs(X)
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
            value = jnp.mean((out.reshape(yb.shape) - yb) ** 2)
        elif loss == "next_token":  # out (b, L, V), yb (b, L): the next id, negative = ignored
            logp = jax.nn.log_softmax(out, axis=-1)
            keep = yb >= 0
            picked = jnp.take_along_axis(logp, jnp.maximum(yb, 0)[..., None], axis=-1)[..., 0]
            value = -jnp.sum(jnp.where(keep, picked, 0.0)) / jnp.maximum(keep.sum(), 1)
        else:
            logp = jnp.log(jnp.clip(out, 1e-12)) if softmax else jax.nn.log_softmax(out, axis=-1)
            value = -jnp.mean(jnp.take_along_axis(logp, yb[:, None], axis=1))
        return value, ({"loss": value}, new_rest)

    run = epoch_runner(loss_fn, tx)
    batch_size = min(int(batch_size), int(X.shape[0]))
    bar = Progress(epochs, unit="epochs", label="train", stream=sys.stderr if progress else None)
    history = []
    for epoch in range(epochs):
        params, rest, opt_state, metrics = run(
            params, rest, opt_state, X, y, jax.random.fold_in(key, epoch), batch_size=batch_size
        )
        history.append(metrics["loss"])
        if progress:  # one host sync per epoch, only to draw the line
            bar.update(1, metrics=jax.device_get(metrics))
    bar.close()
    nnx.update(model, params, rest)
    if hasattr(model, "eval"):
        model.eval()
    return np.asarray(jax.device_get(history))


def _inputs(X):
    X = jnp.asarray(X)
    return X if jnp.issubdtype(X.dtype, jnp.integer) else X.astype(jnp.float32)


def next_token_targets(ids, pad_id: int = 0) -> np.ndarray:
    """``y (n, L)`` for ``loss="next_token"``: position ``t``'s target is ``ids[:, t + 1]``;
    the last position and positions whose next id is ``pad_id`` are ``-1`` (ignored).

    Example:
        >>> next_token_targets(np.array([[2, 7, 9, 0]])).tolist()
        [[7, 9, -1, -1]]
    """
    ids = np.asarray(ids)
    y = np.full(ids.shape, -1, np.int32)
    y[:, :-1] = np.where(ids[:, 1:] == pad_id, -1, ids[:, 1:])
    return y


@functools.lru_cache(maxsize=32)
def _correct_counter(graphdef):
    @jax.jit
    def correct(state, xb, yb):
        out = nnx.merge(graphdef, state)(xb)
        return jnp.sum(jnp.argmax(out, axis=1) == yb)

    return correct


def accuracy(model: nnx.Module, X, y, *, batch_size: int = 512) -> float:
    """Fraction of ``X`` whose arg-max output equals ``y``, evaluated in batches.

    Example:
        >>> import numpy as np
        >>> from flax import nnx
        >>> from xaijax.zoo.nets import MLP
        >>> net = MLP(2, [4], 2, rngs=nnx.Rngs(0))
        >>> 0.0 <= accuracy(net, np.ones((3, 2)), np.zeros(3, int)) <= 1.0
        True
    """
    graphdef, state = nnx.split(model)
    correct = _correct_counter(graphdef)
    X, y = _inputs(X), jnp.asarray(y)
    counts = [
        correct(state, X[s : s + batch_size], y[s : s + batch_size])
        for s in range(0, len(X), batch_size)
    ]
    return float(sum(jax.device_get(counts))) / max(1, len(X))


# ----------------------------------------------------------------------------- save format
def _stem(path) -> str:
    path = os.fspath(path)
    for suffix in (".npz", ".json"):
        if path.endswith(suffix):
            return path[: -len(suffix)]
    return path


def _numeric(v) -> bool:
    dtype = getattr(v, "dtype", None)
    if dtype is None or jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return False
    return bool(np.issubdtype(np.dtype(dtype), np.number) or np.dtype(dtype) == bool)


def save_checkpoint(path, tree: Any, metadata: dict | None = None) -> str:
    """Write the numeric leaves of ``tree`` and JSON ``metadata`` to ``<path>.npz``.

    Each leaf is stored under its pytree path (``jax.tree_util.keystr``), so a checkpoint is
    readable without the code that wrote it; ``metadata`` is stored inside the same file (and
    copied to ``<path>.json`` for people). The ``.npz`` is written to a temporary file and
    renamed into place, so a checkpoint is never half written.

    Returns:
        The path of the ``.npz``.

    Example:
        >>> import tempfile, os, numpy as np
        >>> with tempfile.TemporaryDirectory() as d:
        ...     _ = save_checkpoint(os.path.join(d, "ckpt"), {"w": np.ones(2)}, {"epoch": 3})
        ...     tree, meta = load_checkpoint(os.path.join(d, "ckpt"), {"w": np.zeros(2)})
        >>> tree["w"].tolist(), meta["epoch"]
        ([1.0, 1.0], 3)
    """
    stem = _stem(path)
    os.makedirs(os.path.dirname(os.path.abspath(stem)) or ".", exist_ok=True)
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    arrays = {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves if _numeric(v)}
    if _META in arrays:  # pragma: no cover - a pytree path cannot look like this
        raise ValueError(f"{_META} is reserved")
    meta = {"format": FORMAT, **(metadata or {})}
    text = json.dumps(meta, indent=1)
    tmp = stem + ".tmp.npz"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays, **{_META: np.array(text)})
        fh.flush()
        os.fsync(fh.fileno())  # the data on disk before the rename that makes it the checkpoint
    os.replace(tmp, stem + ".npz")
    # The .json is a copy for people; the metadata read back is the one inside the .npz.
    tmp_json = stem + ".tmp.json"
    with open(tmp_json, "w") as fh:
        fh.write(text)
    os.replace(tmp_json, stem + ".json")
    return stem + ".npz"


def load_checkpoint(path, template: Any) -> tuple[Any, dict]:
    """Read a checkpoint written by :func:`save_checkpoint` into the structure of ``template``.

    Leaves of ``template`` that are not numeric (PRNG keys, Python objects) are kept.

    Returns:
        ``(tree, metadata)``.

    Raises:
        ValueError: if the file does not hold every numeric leaf of ``template`` with the same
            shape (it was saved from another architecture or configuration).
    """
    stem = _stem(path)
    try:
        with np.load(stem + ".npz", allow_pickle=False) as npz:
            stored = {k: npz[k] for k in npz.files}
        meta = json.loads(str(stored.pop(_META))) if _META in stored else {}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as err:
        if isinstance(err, FileNotFoundError):
            raise
        raise ValueError(
            f"checkpoint {stem}.npz is unreadable ({type(err).__name__}: {err}); it is damaged "
            "or not a checkpoint"
        ) from err

    def restore(p, v):
        if not _numeric(v):
            return v
        k = jax.tree_util.keystr(p)
        if k not in stored or stored[k].shape != np.shape(v):
            raise ValueError(
                f"checkpoint {stem}.npz does not hold {k} with shape {np.shape(v)}; "
                "was it saved from a model of the same architecture and configuration?"
            )
        if isinstance(v, np.ndarray | np.generic):  # NumPy stays NumPy (float64 too)
            return np.asarray(stored[k], dtype=v.dtype)
        return jnp.asarray(stored[k], dtype=v.dtype)

    return jax.tree_util.tree_map_with_path(restore, template), meta


def save(model: nnx.Module, path) -> None:
    """Write ``model``'s state (parameters, batch statistics) to ``path`` (``.npz``).

    Restore with :func:`load` into a module of the same architecture.
    """
    save_checkpoint(path, nnx.state(model), {"model": type(model).__name__})


def load(path, model: nnx.Module) -> nnx.Module:
    """Restore the state written by :func:`save` into ``model`` (same architecture), in place.

    Raises:
        ValueError: if the file does not hold ``model``'s state paths with the same shapes.
    """
    state, _ = load_checkpoint(path, nnx.state(model))
    nnx.update(model, state)
    return model
