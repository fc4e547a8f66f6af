"""Model adapters: what users have, turned into the one form every explainer traces.

An explainer sees a model as ``apply(params, X: (n, *input_shape)) -> (n,)`` or ``(n, K)`` with
the parameters a traced argument, so explaining a second checkpoint of the same architecture
reuses the compiled program. :func:`as_model` accepts:

* a JAX function ``f(X)``: traced as is (its closed-over parameters become constants of the
  program, and a new closure recompiles: use a pair for parameters that change);
* an ``(apply_fn, params)`` pair, ``apply_fn(params, X)``: Flax Linen (``(module.apply,
  variables)``), Haiku and plain-JAX models; ``params`` is traced;
* a Flax NNX module: split into a static graph definition and its state (remembered per module
  while its structure is unchanged, :func:`nnx_split`), called as ``nnx.merge(graphdef,
  state)(X)`` in eval mode (dropout off, batch-norm on running statistics) inside the trace, so
  the user's module keeps its mode;
* a callable pytree module (Equinox): its array leaves are the traced parameters, the rest static;
* a host callable on NumPy (``model.predict_proba`` of scikit-learn, a PyTorch wrapper, ...): run
  through ``jax.pure_callback`` so the explainer around it still compiles end to end. A callable
  that cannot be traced is detected and treated this way; :func:`host_model` says it explicitly.
  An explainer may instead call it between compiled programs (:meth:`Model.host_outputs`), which
  JAX's persistent compilation cache can then keep (Kernel SHAP does).

A Flax Linen module passed by itself is refused with the pair form in the message.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import sys
import types
import warnings
import weakref
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.registry import register_cache

__all__ = [
    "Model",
    "HostCallable",
    "as_model",
    "host_model",
    "float_dtype",
    "host_failure",
    "is_nnx_module",
]


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
    if not callable(fn):
        raise TypeError(f"host_model needs a callable f(X) -> (n,) or (n, K); got {type(fn)!r}")
    return HostCallable(fn)


def float_dtype():
    """The floating dtype of every explainer's arithmetic: float64 under ``jax_enable_x64``,
    else float32 (float64 in gives float64 out only when x64 is on, as JAX itself behaves)."""
    return np.dtype(jax.dtypes.canonicalize_dtype(float))  # no device array per call


@dataclasses.dataclass(frozen=True)
class Model:
    """A batched model in the form explainers trace: ``apply(params, X) -> (n, *output_shape)``.

    ``Model`` is hashable (by the identity of the user's callable, an NNX graph definition or a
    pytree definition), so it is a static argument of a jitted explainer; the parameters are
    the separate ``params`` pytree returned by :func:`as_model`, passed as a traced argument.

    Attributes:
        fn: the JAX function, the apply function of a pair, the host callable, the NNX graph
            definition or a pytree module's definition.
        kind: ``"jax"``, ``"pair"``, ``"nnx"``, ``"pytree"`` or ``"host"``.
        input_shape: shape of one input row, e.g. ``(M,)``.
        output_shape: ``()`` for a scalar output, ``(K,)`` for ``K`` outputs.
        score: an optional function of the outputs giving the explained score (``targets``).
    """

    fn: Any
    kind: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    score: Callable | None = None

    def scored_by(self, fn: Callable) -> Model:
        """This model followed by ``fn(outputs) -> (n,)``: the score ``targets=fn`` explains."""
        return dataclasses.replace(self, score=fn, output_shape=())

    def apply(self, params, X: jax.Array) -> jax.Array:
        """Evaluate on a batch ``X: (n, *input_shape)``; returns float ``(n, *output_shape)``."""
        dtype = float_dtype()
        if self.kind == "jax":
            y = self.fn(X)
        elif self.kind == "pair":
            y = self.fn(params, X)
        elif self.kind == "nnx":
            y = nnx_merge_call(self.fn, params, X)
        elif self.kind == "pytree":
            y = self.fn.rebuild(params)(X)
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
        y = jnp.asarray(y)
        if self.score is not None:
            y = jnp.asarray(self.score(y.astype(dtype)))
        expected = X.shape[:1] + self.output_shape
        if y.shape != expected and y.size != int(np.prod(expected)):
            raise ValueError(
                f"f must return one output row per input row, (n,) or (n, K): it returned shape "
                f"{y.shape} for inputs of shape {X.shape} (expected {expected})"
            )
        return y.astype(dtype).reshape(expected)

    def host_outputs(self, X: np.ndarray, *, batch_size: int) -> np.ndarray:
        """A host model's outputs on NumPy rows ``X: (n, *input_shape)``, called directly
        (outside any compiled program) in chunks of at most ``batch_size`` rows.

        Returns float ``(n, *output_shape)``; a model with a ``score`` is refused. Explainers
        that stage a host model between compiled programs call this instead of
        ``pure_callback``, so that their programs can be kept in the persistent compilation
        cache (JAX keeps no program holding a callback into the running process). The BLAS
        cap of calls inside XLA's threads is not applied: no program runs meanwhile.
        """
        if self.kind != "host" or self.score is not None:
            raise ValueError("host_outputs is for host models without a score")
        call = _HostCall(self.fn, self.input_shape, self.output_shape, np.dtype(float_dtype()))
        X = np.asarray(X)
        n, step = X.shape[0], max(1, int(batch_size))
        if n <= step:
            return call(X, capped=False)
        out = np.empty((n,) + self.output_shape, call.dtype)
        for start in range(0, n, step):
            out[start : start + step] = call(X[start : start + step], capped=False)
        return out

    @property
    def num_outputs(self) -> int | None:
        """``K`` for a vector output, ``None`` for a scalar output."""
        return self.output_shape[0] if self.output_shape else None

    @property
    def differentiable(self) -> bool:
        """Whether JAX can differentiate through the model (everything but host models)."""
        return self.kind != "host"


@dataclasses.dataclass(frozen=True)
class PytreeModule:
    """A callable pytree (an Equinox module) split into static structure and array leaves."""

    treedef: Any
    static: tuple  # the non-array leaves, None where an array leaf goes
    positions: tuple[int, ...]  # where the array leaves go

    def rebuild(self, arrays):
        leaves = list(self.static)
        for i, a in zip(self.positions, arrays, strict=True):
            leaves[i] = a
        return jax.tree.unflatten(self.treedef, leaves)


# -- host models -----------------------------------------------------------------------------
# Process-wide, not thread-local: XLA runs host callbacks on its own threads, not the caller's.
_FAILURE = types.SimpleNamespace(error=None)


def host_failure() -> BaseException | None:
    """The exception the last failing host model call raised, if any (then cleared).

    Inside a compiled explainer a failing host call surfaces as JAX's ``JaxRuntimeError``;
    :func:`xaijax.core.contract.call` uses this to raise the model's own error instead.
    """
    err, _FAILURE.error = _FAILURE.error, None
    return err


@dataclasses.dataclass(frozen=True)
class _HostCall:
    """The host side of ``pure_callback``: flattens any vmapped leading axes into rows."""

    fn: Callable
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    dtype: np.dtype

    def __call__(self, X, *, capped: bool = True):
        X = np.asarray(X)
        lead = X.shape[: X.ndim - len(self.input_shape)]
        rows = X.reshape((-1,) + self.input_shape)
        try:
            limit = _host_thread_limit() if capped else None
            if limit is None:
                Y = self.fn(rows)
            else:
                with limit():
                    Y = self.fn(rows)
            Y = np.asarray(Y)
            if np.iscomplexobj(Y):
                raise ValueError(f"f returned complex outputs (dtype {Y.dtype}); it must be real")
            expected = (rows.shape[0],) + self.output_shape
            if Y.size != int(np.prod(expected)):
                raise ValueError(
                    f"f must return one output row per input row: it returned shape {Y.shape} "
                    f"for {rows.shape[0]} rows of shape {self.input_shape} (expected {expected})"
                )
            Y = Y.astype(self.dtype)
        except BaseException as err:
            _FAILURE.error = err
            raise
        return Y.reshape(lead + self.output_shape)


@register_cache
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


# -- adapting ----------------------------------------------------------------------------------
def as_model(f, example, *, name: str = "X", integer: bool = False) -> tuple[Model, Any]:
    """Adapt ``f`` to a :class:`Model`, probing it on ``example`` rows ``(n, *input_shape)``.

    ``name`` is the argument the example rows come from, for messages; ``integer`` probes
    with int32 rows (token ids) instead of the float dtype. Returns ``(model, params)``:
    ``params`` is the traced parameter pytree (NNX state, a pair's parameters, a pytree
    module's arrays) and ``None`` for functions and host callables.

    Raises:
        TypeError: if ``f`` is not a model (not callable, a Linen module without parameters).
        ValueError: if ``f`` fails on the example rows or returns another shape than ``(n,)`` or
            ``(n, K)``, or complex or non-numeric outputs.

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> model, params = as_model(lambda X: jnp.sum(X, axis=1), np.ones((4, 3)))
        >>> model.kind, model.output_shape
        ('jax', ())
        >>> model, params = as_model((lambda p, X: X @ p, jnp.ones(3)), np.ones((4, 3)))
        >>> model.kind, params.shape
        ('pair', (3,))
    """
    example = np.asarray(example)
    input_shape = tuple(example.shape[1:])
    # Integer inputs (token ids, with ``integer``) are probed as integers, the rest as floats.
    dtype = np.int32 if integer else float_dtype()
    probe = example[: min(2, len(example))].astype(dtype)
    spec = jax.ShapeDtypeStruct(probe.shape, probe.dtype)

    if isinstance(f, Model):
        return f, None
    if isinstance(f, HostCallable):
        return _host(f.fn, probe, input_shape, name), None
    if _is_linen_module(f):
        raise TypeError(
            f"f is a Flax Linen module ({type(f).__name__}), which holds no parameters: pass the "
            "pair (module.apply, variables), e.g. f=(model.apply, {'params': params}); the "
            "parameters are then traced, so a new checkpoint does not recompile"
        )
    if isinstance(f, tuple):
        if len(f) != 2 or not callable(f[0]):
            raise TypeError(
                "a model given as a tuple must be the pair (apply_fn, params) with "
                f"apply_fn(params, X) -> (n,) or (n, K); got a tuple of {len(f)} items"
            )
        apply_fn, params = f
        _check_finite_params(params)
        out = _probe(
            lambda x: apply_fn(params, x),
            spec,
            "f=(apply_fn, params)",
            name,
            key=("pair", apply_fn, _avals(params)),
        )
        return _checked(Model(apply_fn, "pair", input_shape, out), probe.shape), params
    if is_nnx_module(f):
        graphdef, state = nnx_split(f)
        _check_finite_params(state)
        out = _probe(
            lambda x: nnx_merge_call(graphdef, state, x),
            spec,
            "f (an NNX module)",
            name,
            key=("nnx", graphdef, _avals(state)),
        )
        return _checked(Model(graphdef, "nnx", input_shape, out), probe.shape), state
    if not callable(f):
        raise TypeError(f"f must be a callable model f(X) -> (n,) or (n, K); got {type(f)!r}")
    if _with_fitted_names(f, input_shape) is not f:
        # An estimator fitted on a DataFrame runs on the host; tracing it would only warn.
        return _host(f, probe, input_shape, name), None
    pytree = _pytree_module(f)
    if pytree is not None:
        module, arrays = pytree
        _check_finite_params(arrays)
        out = _probe(
            lambda x: f(x),
            spec,
            "f (a pytree module)",
            name,
            key=("pytree", module, _avals(arrays)),
        )
        return _checked(Model(module, "pytree", input_shape, out), probe.shape), arrays
    cache_key = _probe_key(("jax", f), spec)
    out = _PROBED.get(cache_key) if cache_key is not None else None
    if out is None:
        try:
            traced = jax.eval_shape(f, spec)
        except Exception:
            # Not traceable (scikit-learn, PyTorch, anything calling np.asarray): run on the host.
            return _host(f, probe, input_shape, name), None
        out = _output_shape(traced, spec)
        _remember(cache_key, out)
    return _checked(Model(f, "jax", input_shape, out), probe.shape), None


# Output shapes of models already probed, by the model's identity (its function, NNX graph
# definition or pytree definition), its parameters' shapes and dtypes, and the probe's shape.
# Tracing the probe is most of a call's fixed cost otherwise (1.2 ms of 3 ms for a small NNX
# MLP explained one instance at a time). A failing probe is not remembered.
_PROBED: collections.OrderedDict = register_cache(collections.OrderedDict())
_PROBED_MAX = 128


def _avals(tree):
    """Hashable shapes and dtypes of a parameter pytree (``None`` if a leaf has neither)."""
    leaves, treedef = jax.tree.flatten(tree)
    try:
        return treedef, tuple(_aval(a) for a in leaves)
    except Exception:  # a leaf that is not an array or a number
        return None


def _aval(a) -> tuple:
    if isinstance(a, (jax.Array, np.ndarray)):  # the common case, without result_type's cost
        return a.shape, a.dtype
    return tuple(np.shape(a)), jnp.result_type(a)


def _probe_key(key, spec):
    full = (key, spec.shape, str(spec.dtype))
    if any(part is None for part in key[2:]):
        return None
    try:
        hash(full)
    except TypeError:  # an unhashable callable: probe every time
        return None
    return full


def _remember(key, out):
    if key is None:
        return
    _PROBED[key] = out
    while len(_PROBED) > _PROBED_MAX:
        _PROBED.popitem(last=False)


def _probe(fn, spec, what, name, *, key=None):
    cache_key = None if key is None else _probe_key(key, spec)
    if cache_key is not None and cache_key in _PROBED:
        return _PROBED[cache_key]
    try:
        out = jax.eval_shape(fn, spec)
    except Exception as err:
        raise ValueError(
            f"{what} failed on {name} rows of shape {spec.shape}: {type(err).__name__}: {err}"
        ) from err
    out = _output_shape(out, spec)
    _remember(cache_key, out)
    return out


def cached_eval_shape(fn: Callable, tree, spec: jax.ShapeDtypeStruct):
    """``jax.eval_shape(fn, tree, spec)``, remembered by ``fn`` (a module-level function or an
    unbound method, not a fresh closure), the structure, shapes and dtypes of ``tree``'s leaves
    and ``spec``: tracing a transformer's forward pass again costs 30 ms a call. Failures are
    not remembered."""
    avals = _avals(tree)
    key = None if avals is None else (fn, avals, spec.shape, str(spec.dtype))
    try:
        if key is not None and key in _SHAPES:
            _SHAPES.move_to_end(key)
            return _SHAPES[key]
    except TypeError:  # an unhashable static part
        key = None
    out = jax.eval_shape(fn, tree, spec)
    if key is not None:
        _SHAPES[key] = out
        while len(_SHAPES) > _PROBED_MAX:
            _SHAPES.popitem(last=False)
    return out


_SHAPES: collections.OrderedDict = register_cache(collections.OrderedDict())


def _output_shape(out, spec) -> tuple[int, ...]:
    if not hasattr(out, "shape") or not hasattr(out, "dtype"):
        raise ValueError(
            f"f must return one array of shape (n,) or (n, K); got a {type(out).__name__}"
        )
    if jnp.issubdtype(out.dtype, jnp.complexfloating):
        raise ValueError(f"f returned complex outputs (dtype {out.dtype}); it must be real")
    if not (jnp.issubdtype(out.dtype, jnp.number) or out.dtype == jnp.bool_):
        raise ValueError(f"f must return numbers; got dtype {out.dtype}")
    if out.shape[:1] != spec.shape[:1]:
        raise ValueError(
            f"f must return one output row per input row: it returned shape {out.shape} for "
            f"inputs of shape {spec.shape}"
        )
    _warn_if_labels(out.dtype)
    return tuple(out.shape[1:])


def nnx_merge_call(graphdef, state, X):
    """Call the NNX module ``graphdef``/``state`` in eval mode on ``X`` (a pure function of
    ``state``)."""
    return nnx_merge(graphdef, state)(X)


@dataclasses.dataclass(frozen=True)
class _NamedColumns:
    """A host model fitted on a pandas DataFrame, called with one: rows become a DataFrame with
    the fitted column names, so scikit-learn does not warn "X does not have valid feature names"
    on every call. Equal (and hashing) by the model and names, so it recompiles nothing."""

    fn: Callable
    columns: tuple[str, ...]

    def __call__(self, X):
        import pandas as pd

        return self.fn(pd.DataFrame(np.asarray(X), columns=list(self.columns), copy=False))


def _with_fitted_names(fn, input_shape):
    """``fn`` called with DataFrames when the estimator behind a bound method (``predict_proba``)
    has ``feature_names_in_`` for rows of that many columns and pandas is installed; else ``fn``."""
    owner = getattr(fn, "__self__", None)
    names = getattr(owner, "feature_names_in_", None)
    if names is None or len(input_shape) != 1 or len(names) != input_shape[0]:
        return fn
    try:
        import pandas  # noqa: F401
    except ImportError:  # pragma: no cover - a model fitted on a DataFrame had pandas
        return fn
    return _NamedColumns(fn, tuple(str(n) for n in names))


def _host(fn, probe, input_shape, name="X") -> Model:
    fn = _with_fitted_names(fn, input_shape)
    try:
        y = np.asarray(fn(np.asarray(probe)))
    except Exception as err:
        raise ValueError(
            f"f could neither be traced by JAX nor called on NumPy {name} rows of shape "
            f"{probe.shape}: {type(err).__name__}: {err}"
        ) from err
    if np.iscomplexobj(y):
        raise ValueError(f"f returned complex outputs (dtype {y.dtype}); it must be real")
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise ValueError(f"f must return numbers; got dtype {y.dtype}")
    if y.shape[:1] != probe.shape[:1]:
        raise ValueError(
            f"f must return one output row per input row: got output shape {y.shape} "
            f"for input shape {probe.shape}"
        )
    _warn_if_labels(y.dtype, y)
    return _checked(Model(fn, "host", input_shape, tuple(y.shape[1:])), probe.shape)


def _warn_if_labels(dtype, outputs=None) -> None:
    """Warn (``UserWarning``) when a model's outputs look like class labels, not scores.

    Labels are integer or boolean outputs, or float ``outputs`` (the first rows evaluated) that
    are one per row, all whole numbers and not all 0 or 1 (a probability of exactly 0 or 1 is
    no sign of labels). Attributions of a label explain a step function of the input, rarely
    what was meant.

    Example:
        >>> import warnings, numpy as np
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     _warn_if_labels(np.dtype("int64"))
        >>> "predict_proba" in str(caught[0].message)
        True
    """
    dtype = np.dtype(dtype)
    if dtype.kind in "iub":  # signed, unsigned, boolean
        seen = f"outputs of dtype {dtype}"
    elif outputs is not None and outputs.ndim == 1 and outputs.size:
        y = np.asarray(outputs, np.float64)
        if not (np.all(np.isfinite(y)) and np.all(y == np.round(y)) and np.any(np.abs(y) > 1)):
            return
        seen = f"only whole numbers ({np.unique(y)[:5].tolist()}) on its first rows"
    else:
        return
    warnings.warn(
        f"f returned {seen}: if these are class labels (a classifier's predict), the "
        "attributions explain a step function of the input. Pass the scores instead "
        "(predict_proba or decision_function); ignore this for a model whose outputs are "
        "whole numbers by nature.",
        UserWarning,
        stacklevel=4,
    )


def _checked(model: Model, probe_shape) -> Model:
    if len(model.output_shape) > 1:
        raise ValueError(
            f"f must return (n,) or (n, K) outputs; got trailing shape {model.output_shape} "
            f"for input of shape {probe_shape}"
        )
    return model


def _check_finite_params(params) -> None:
    for leaf in jax.tree.leaves(params):
        if isinstance(leaf, (jax.Array, np.ndarray)) and jnp.issubdtype(leaf.dtype, jnp.inexact):
            if isinstance(leaf, jax.core.Tracer):
                continue
            seen = _FINITE.get(id(leaf))
            if seen is not None and seen() is leaf:
                continue
            if not bool(np.all(np.isfinite(np.asarray(leaf)))):
                raise ValueError("f's parameters contain NaN or inf; the model is not usable")
            if isinstance(leaf, jax.Array):  # immutable: checked once (NumPy's may change)
                _FINITE[id(leaf)] = weakref.ref(leaf, functools.partial(_forget, id(leaf)))


def _forget(key, ref) -> None:
    if _FINITE.get(key) is ref:
        del _FINITE[key]


# id -> weak reference of the JAX parameter arrays already found finite. Checking copies each
# array to the host, a transfer of every parameter in every call on a GPU.
_FINITE: dict = register_cache({})


def is_nnx_module(f) -> bool:
    # Nothing is an NNX module unless Flax was imported: do not import it to find out.
    if "flax.nnx" not in sys.modules:
        return False
    from flax import nnx

    return isinstance(f, nnx.Module)


def _is_linen_module(f) -> bool:
    if "flax.linen" not in sys.modules:
        return False
    from flax import linen

    return isinstance(f, linen.Module)


def _pytree_module(f):
    """``(PytreeModule, arrays)`` for a callable pytree holding arrays (Equinox), else ``None``."""
    try:
        leaves, treedef = jax.tree.flatten(f)
    except Exception:  # pragma: no cover - exotic objects
        return None
    if len(leaves) == 1 and leaves[0] is f:
        return None  # an ordinary function or object: a pytree leaf itself
    positions = tuple(i for i, x in enumerate(leaves) if isinstance(x, (jax.Array, np.ndarray)))
    if not positions:
        return None
    static = tuple(None if i in positions else x for i, x in enumerate(leaves))
    try:
        hash(static)
    except TypeError:
        return None  # unhashable static parts: treat as a plain function
    arrays = [leaves[i] for i in positions]
    return PytreeModule(treedef, static, positions), arrays


def nnx_split(module) -> tuple[Any, Any]:
    """``nnx.split(module)``, remembered per module between calls; the graph definition comes
    back wrapped with its hash (merge it with :func:`nnx_merge`).

    NNX's graph traversal costs 3-6 ms for a ResNet, which is most of an explainer call's fixed
    cost on one instance. While the module's pytree structure (its submodules, static attributes
    and variable types) is unchanged, its state is rebuilt from one pytree flatten of its arrays
    (about 0.7 ms) around the graph definition of the last split. Modules that are not pytrees,
    share variables or cannot be weakly referenced are split every time.
    """
    from flax import nnx

    try:
        leaves, structure = jax.tree.flatten(module)
        hit = _SPLITS.get(module)
    except TypeError:
        return nnx.split(module)
    if hit is not None and hit[0] == structure:
        return hit[1], jax.tree.unflatten(hit[2], leaves)
    graphdef, state = nnx.split(module)
    graphdef = _Graph(graphdef, hash(graphdef))
    state_leaves, state_structure = jax.tree.flatten(state)
    # Cached only when the state holds exactly the module's leaves in the same order, which
    # then holds for every module of this structure (no shared or hidden variables).
    if len(state_leaves) == len(leaves) and all(
        a is b for a, b in zip(state_leaves, leaves, strict=True)
    ):
        _SPLITS[module] = (structure, graphdef, state_structure)
    return graphdef, state


# module -> (its pytree structure, graph definition, state structure) at its last split.
_SPLITS: weakref.WeakKeyDictionary = register_cache(weakref.WeakKeyDictionary())


@dataclasses.dataclass(frozen=True, eq=False)
class _Graph:
    """An NNX graph definition whose hash is computed once. Flax recomputes it on every hash
    (about 1 ms for a ResNet), and one explainer call hashes it several times as a key of
    compiled programs and probes."""

    graphdef: Any
    hash: int

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other) -> bool:
        if self is other:
            return True
        same = isinstance(other, _Graph) and self.hash == other.hash
        return same and self.graphdef == other.graphdef


def eval_mode(module):
    """Switch an NNX module (a copy merged inside a trace) to eval mode: dropout off, batch norm
    on its running statistics. Returns the module."""
    # Flax renamed the eval switch across versions; use whichever this version has.
    if hasattr(module, "eval"):
        module.eval()
    elif hasattr(module, "set_attributes"):  # pragma: no cover - older/newer flax
        module.set_attributes(
            deterministic=True, use_running_average=True, raise_if_not_found=False
        )
    return module


def nnx_merge(graphdef, state):
    """The NNX module ``graphdef``/``state`` in eval mode, for use inside a trace: the user's
    module keeps its own mode, and switching costs nothing at run time."""
    from flax import nnx

    if isinstance(graphdef, _Graph):
        graphdef = graphdef.graphdef
    return eval_mode(nnx.merge(graphdef, state))
