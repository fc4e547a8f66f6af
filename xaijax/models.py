"""Model adapters and the one chunked evaluator every explainer calls.

An explainer sees a model as a batched function ``f(X: (n, *input_shape)) -> (n,)`` or ``(n, K)``.
:func:`as_model` turns what users have into that form:

* a JAX function: traced as is;
* a Flax NNX module: split once into a static graph definition and a state pytree, called as the
  pure function ``nnx.merge(graphdef, state)(x)`` with the module in eval mode (dropout off,
  batch-norm on running statistics);
* a host callable on NumPy (``model.predict_proba`` of scikit-learn, a PyTorch wrapper, ...): run
  through ``jax.pure_callback`` so the explainer around it still compiles end to end. A callable
  that cannot be traced is detected and treated this way automatically; :func:`host_model` says it
  explicitly.

Every model evaluation goes through :func:`map_row_chunks`, so at most ``batch_size`` rows are
materialised and passed to the model at once, whatever the number of instances or samples.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Model", "as_model", "host_model", "evaluate", "map_row_chunks", "DEFAULT_BATCH_SIZE"]

# Rows per model call. Large enough to amortise a host round-trip or a kernel launch, small
# enough that a 30-feature MLP's activations stay in the tens of megabytes.
DEFAULT_BATCH_SIZE = 8192


@dataclasses.dataclass(frozen=True)
class HostCallable:
    """Marks a NumPy-in, NumPy-out callable to be run on the host (see :func:`host_model`)."""

    fn: Callable


def host_model(fn: Callable) -> HostCallable:
    """Mark ``fn`` (NumPy array in, NumPy array out) to be run on the host via ``pure_callback``.

    Untraceable callables are detected automatically, so this is only needed for a callable that
    happens to trace but should not be (e.g. one with side effects).

    Example:
        >>> import numpy as np
        >>> m = host_model(lambda X: np.tanh(X).sum(axis=1))
        >>> isinstance(m, HostCallable)
        True
    """
    return HostCallable(fn)


@dataclasses.dataclass(frozen=True)
class Model:
    """A batched model in the form explainers trace: ``apply(params, X) -> (n, *output_shape)``.

    ``Model`` is hashable (by the identity of the user's callable), so it can be a static argument
    of a jitted explainer and many calls with the same model compile once. NNX state lives in the
    separate ``params`` pytree returned by :func:`as_model`, passed as a traced argument.

    Attributes:
        fn: the JAX function, the host callable, or the NNX graph definition.
        kind: ``"jax"``, ``"nnx"`` or ``"host"``.
        input_shape: shape of one input row, e.g. ``(M,)``.
        output_shape: ``()`` for a scalar output, ``(K,)`` for ``K`` outputs.
    """

    fn: Any
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    def apply(self, params, X: jax.Array) -> jax.Array:
        """Evaluate on a batch ``X: (n, *input_shape)``; returns float ``(n, *output_shape)``."""
        dtype = _float_dtype()
        if self.kind == "jax":
            y = self.fn(X)
        elif self.kind == "nnx":
            from flax import nnx

            y = nnx.merge(self.fn, params)(X)
        elif self.kind == "host":
            result = jax.ShapeDtypeStruct(X.shape[:1] + self.output_shape, dtype)
            y = jax.pure_callback(
                _HostCall(self.fn, self.input_shape, self.output_shape, np.dtype(dtype)),
                result,
                X,
                vmap_method="broadcast_all",
            )
        else:  # pragma: no cover - constructed only by as_model
            raise ValueError(f"unknown model kind {self.kind!r}")
        return jnp.asarray(y).astype(dtype).reshape(X.shape[:1] + self.output_shape)

    @property
    def num_outputs(self) -> int | None:
        """``K`` for a vector output, ``None`` for a scalar output."""
        return self.output_shape[0] if self.output_shape else None


@dataclasses.dataclass(frozen=True)
class _HostCall:
    """The host side of ``pure_callback``: flattens any vmapped leading axes into rows."""

    fn: Callable
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    dtype: np.dtype

    def __call__(self, X):
        X = np.asarray(X)
        lead = X.shape[: X.ndim - len(self.input_shape)]
        limit = _host_thread_limit()
        if limit is None:
            Y = self.fn(X.reshape((-1,) + self.input_shape))
        else:
            with limit():
                Y = self.fn(X.reshape((-1,) + self.input_shape))
        Y = np.asarray(Y, dtype=self.dtype)
        return Y.reshape(lead + self.output_shape)


@functools.cache
def _host_thread_limit():
    """A context capping the host model's BLAS/OpenMP thread pools, or ``None``.

    On a CPU backend a host model runs inside XLA's own thread pool, and a BLAS pool as large as
    the machine oversubscribes the cores: scikit-learn's MLP ran 2.7x slower inside Kernel SHAP on
    2 cores than alone (75 vs 28 ms per instance with one BLAS thread). So host calls get half the
    cores (at least one) while the CPU backend runs. ``XAIJAX_HOST_THREADS=N`` sets the cap
    (``0``: no cap). Needs ``threadpoolctl`` (installed with scikit-learn); without it, no cap.
    """
    setting = os.environ.get("XAIJAX_HOST_THREADS", "auto")
    if setting == "auto":
        if jax.default_backend() != "cpu":
            return None
        limit = max(1, (os.cpu_count() or 2) // 2)
    else:
        limit = int(setting)
        if limit <= 0:
            return None
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    controller = ThreadpoolController()
    return functools.partial(controller.limit, limits=limit)


def as_model(f, example: np.ndarray) -> tuple[Model, Any]:
    """Adapt ``f`` to a :class:`Model`, probing it on ``example`` rows ``(n, *input_shape)``.

    Returns ``(model, params)``: ``params`` is the NNX state for a module and ``None`` otherwise.
    The output must be ``(n,)`` or ``(n, K)``.

    Raises:
        ValueError: if ``f`` is not callable, fails on the example rows, or returns another shape.

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> model, params = as_model(lambda X: jnp.sum(X, axis=1), np.ones((4, 3)))
        >>> model.kind, model.output_shape
        ('jax', ())
    """
    example = np.asarray(example)
    input_shape = tuple(example.shape[1:])
    probe = example[: min(2, len(example))].astype(_float_dtype())
    spec = jax.ShapeDtypeStruct(probe.shape, probe.dtype)

    if isinstance(f, Model):
        return f, None
    if _is_nnx_module(f):
        graphdef, state = _nnx_eval_split(f)
        out = jax.eval_shape(lambda s, x: nnx_merge_call(graphdef, s, x), state, spec)
        return _checked(Model(graphdef, "nnx", input_shape, out.shape[1:]), probe.shape), state
    if isinstance(f, HostCallable):
        return _host(f.fn, probe, input_shape), None
    if not callable(f):
        raise ValueError(f"f must be a callable model f(X) -> (n,) or (n, K); got {type(f)!r}")
    try:
        out = jax.eval_shape(f, spec)
    except Exception:
        # Not traceable (scikit-learn, PyTorch, anything calling np.asarray): run on the host.
        return _host(f, probe, input_shape), None
    if not hasattr(out, "shape"):
        raise ValueError("f must return one array of shape (n,) or (n, K); got a pytree")
    return _checked(Model(f, "jax", input_shape, tuple(out.shape[1:])), probe.shape), None


def nnx_merge_call(graphdef, state, X):
    from flax import nnx

    return nnx.merge(graphdef, state)(X)


def _host(fn, probe, input_shape) -> Model:
    try:
        y = np.asarray(fn(np.asarray(probe)))
    except Exception as err:
        raise ValueError(
            f"f could neither be traced by JAX nor called on NumPy rows of shape {probe.shape}: "
            f"{type(err).__name__}: {err}"
        ) from err
    if y.shape[:1] != probe.shape[:1]:
        raise ValueError(
            f"f must return one row per input row: got output shape {y.shape} "
            f"for input shape {probe.shape}"
        )
    return _checked(Model(fn, "host", input_shape, tuple(y.shape[1:])), probe.shape)


def _checked(model: Model, probe_shape) -> Model:
    if len(model.output_shape) > 1:
        raise ValueError(
            f"f must return (n,) or (n, K) outputs; got trailing shape {model.output_shape} "
            f"for input of shape {probe_shape}"
        )
    return model


def _is_nnx_module(f) -> bool:
    try:
        from flax import nnx
    except ImportError:  # pragma: no cover
        return False
    return isinstance(f, nnx.Module)


def _nnx_eval_split(module):
    """Split a copy of ``module`` in eval mode, leaving the user's module untouched."""
    from flax import nnx

    graphdef, state = nnx.split(module)
    copy = nnx.merge(graphdef, state)
    # Flax renamed the eval switch across versions; use whichever this version has.
    if hasattr(copy, "eval"):
        copy.eval()
    elif hasattr(copy, "set_attributes"):  # pragma: no cover - older/newer flax
        copy.set_attributes(deterministic=True, use_running_average=True, raise_if_not_found=False)
    return nnx.split(copy)


def _float_dtype():
    # float32 unless the user enabled x64.
    return jnp.zeros((), dtype=float).dtype


def map_row_chunks(fn: Callable[[jax.Array], Any], total: int, chunk_size: int) -> Any:
    """Apply ``fn(rows)`` to consecutive chunks of the row indices ``0..total-1`` and concatenate.

    ``fn`` takes an int array of ``chunk_size`` row indices and returns a pytree whose leaves have
    that leading axis. The chunks run in a ``lax.map`` loop, so only one chunk's worth of inputs
    exists at a time; the last chunk repeats the final row instead of padding with zeros (zeros may
    be an invalid input, e.g. for a model that takes logs). Runs inside ``jit``.
    """
    total, chunk_size = int(total), max(1, int(chunk_size))
    if total <= chunk_size:
        return fn(jnp.arange(total))
    num_chunks = -(-total // chunk_size)

    def one(k):
        return fn(jnp.minimum(k * chunk_size + jnp.arange(chunk_size), total - 1))

    out = jax.lax.map(one, jnp.arange(num_chunks))
    return jax.tree.map(lambda a: a.reshape((num_chunks * chunk_size,) + a.shape[2:])[:total], out)


def evaluate(model: Model, params, X: jax.Array, *, batch_size: int = DEFAULT_BATCH_SIZE):
    """``model`` on ``X: (n, *input_shape)`` in chunks of at most ``batch_size`` rows."""
    return map_row_chunks(lambda rows: model.apply(params, X[rows]), X.shape[0], batch_size)
