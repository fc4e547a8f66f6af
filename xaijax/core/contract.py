"""The explainer contract: inputs checked on the way in, results checked on the way out.

Every explainer has the signature ``explainer(model, X, [reference], *, targets=None, key=...,
batch_size=None, mesh=None, **options) -> Explanation`` and calls these pieces, in this order:

1. :func:`split_instances` (or :func:`split_instances_by_model` when there is no reference data):
   the one single-vs-batch rule. ``X`` is one instance exactly when its shape is the model's
   input shape (one reference row's shape, or what the model accepts), and then the
   Explanation has no leading axis.
2. :func:`as_float_array` for every array argument (numeric, finite), the ``check_*``
   validators for every option (a ``TypeError``/``ValueError`` naming the argument and what was
   expected, before anything compiles), :func:`instance_keys` for ``key``,
   :func:`~xaijax.core.targets.resolve_targets` for ``targets``, :func:`resolve_batch_size` for
   ``batch_size`` and :func:`~xaijax.core.batching.check_mesh` for ``mesh``.
3. :func:`call` runs the compiled explainer, turning a host model's failure inside it into a
   ``ValueError`` from the model's own error (on a CPU, with one BLAS thread for XLA's LAPACK
   kernels).
4. :func:`pack` checks that the model's outputs (reported by the compiled call) and the values
   are finite and builds the :class:`~xaijax.core.explanation.Explanation`, unbatched for one
   instance.
"""

from __future__ import annotations

import contextlib
import functools
import numbers
import threading
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.batching import default_batch_size
from xaijax.core.explanation import Explanation
from xaijax.core.model import Model, as_model, float_dtype, host_failure
from xaijax.core.registry import register_cache

__all__ = [
    "MISSING",
    "instance_keys",
    "check_int",
    "check_number",
    "check_choice",
    "check_names",
    "resolve_batch_size",
    "as_float_array",
    "baseline_rows",
    "split_instances",
    "split_instances_by_model",
    "renamed",
    "call",
    "host_outputs",
    "one_blas_thread",
    "pack",
]


class _Missing:
    def __repr__(self):
        return "MISSING"


MISSING = _Missing()  # default of deprecated keyword aliases: tells "not given" from None


# -- keys ------------------------------------------------------------------------------------
def instance_keys(key, n: int | None, *, name: str = "key") -> jax.Array:
    """``(n,)`` typed per-instance keys from one key or ``n`` keys, typed or raw.

    With ``n=None``, ``key`` must be one key and comes back typed, not split.

    Instance ``i`` draws from ``jax.random.split(key, n)[i]``, so a slice of instances explained
    with the matching slice of keys (one process's share of a dataset) equals that slice of the
    whole. A raw key is a ``jax.random.PRNGKey``'s ``uint32`` data, ``(2,)`` or ``(n, 2)``.

    Raises:
        TypeError: if ``key`` is missing or not a key (an int seed, a float array).
        ValueError: if there are keys, but not one or ``n`` of them.

    Example:
        >>> import jax
        >>> instance_keys(jax.random.key(0), 3).shape
        (3,)
        >>> bool((jax.random.key_data(instance_keys(jax.random.PRNGKey(0), 3))
        ...       == jax.random.key_data(instance_keys(jax.random.key(0), 3))).all())
        True
    """
    expected = f"{name} must be a jax.random.key(seed) or a raw jax.random.PRNGKey(seed)" + (
        "" if n is None else f": one key, or ({n},) keys, one per instance"
    )
    if key is None:
        raise TypeError(f"{name} is required: {expected}, e.g. {name}=jax.random.key(0)")
    if isinstance(key, jax.Array) and jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        typed = key
    else:
        if isinstance(key, (bool, numbers.Number, str)) or not hasattr(key, "__array__"):
            raise TypeError(f"{expected}; got {type(key).__name__} {key!r}")
        raw = np.asarray(key)
        impl_shape = jax.random.key_data(jax.random.key(0)).shape
        if raw.dtype != np.uint32 or raw.shape[-len(impl_shape) :] != impl_shape:
            raise TypeError(
                f"{expected}; got an array of dtype {raw.dtype} and shape {raw.shape} "
                f"(raw keys are uint32 with trailing shape {impl_shape})"
            )
        typed = jax.random.wrap_key_data(raw)
    if n is None:  # one key, used as given
        if typed.shape != ():
            raise ValueError(f"{name} must be one key; got {typed.shape} keys")
        return typed
    if typed.shape not in ((), (n,)):
        raise ValueError(f"{expected}; got {typed.shape} keys")
    return jax.random.split(typed, n) if typed.shape == () else typed


# -- options -----------------------------------------------------------------------------------
def check_int(name: str, value, *, minimum: int | None = 1, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``; a float, bool or string is a ``TypeError``.

    Example:
        >>> check_int("num_samples", 5)
        5
        >>> check_int("num_samples", 2.5)
        Traceback (most recent call last):
        ...
        TypeError: num_samples must be an int >= 1; got 2.5 (float)
    """
    bounds = _bounds_text(minimum, maximum)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int{bounds}; got {value!r} ({type(value).__name__})")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an int{bounds}; got {value}")
    return value


def check_number(
    name: str,
    value,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    strict: bool = False,
) -> float:
    """``value`` as a finite float in its range (``strict``: excluding ``minimum``).

    Example:
        >>> check_number("kernel_width", 0.0, minimum=0.0, strict=True)
        Traceback (most recent call last):
        ...
        ValueError: kernel_width must be a finite number > 0.0; got 0.0
    """
    low = "" if minimum is None else f" {'>' if strict else '>='} {minimum}"
    high = "" if maximum is None else f" <= {maximum}"
    what = f"{name} must be a finite number{low}{' and' if low and high else ''}{high}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if not (isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0):
            raise TypeError(f"{what}; got {value!r} ({type(value).__name__})")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{what}; got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise ValueError(f"{what}; got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{what}; got {value}")
    return value


def check_choice(name: str, value, choices: Sequence) -> Any:
    """``value`` if it is one of ``choices``, else a ``ValueError`` listing them."""
    if not isinstance(value, str | type(None) | numbers.Number) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}; got {value!r}")
    return value


def check_names(name: str, names, count: int) -> tuple[str, ...] | None:
    """``names`` as a tuple of ``count`` strings, or ``None``."""
    if names is None:
        return None
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise TypeError(f"{name} must be a sequence of {count} names; got {names!r}")
    names = tuple(str(s) for s in names)
    if len(names) != count:
        raise ValueError(f"{name} must have {count} entries, one per feature; got {len(names)}")
    return names


def resolve_batch_size(batch_size, row_shape: Sequence[int] = (), dtype=None) -> int:
    """``batch_size`` (model rows at once) checked, or the backend's default for ``None``."""
    if batch_size is None:
        return default_batch_size(row_shape, dtype or float_dtype())
    return check_int("batch_size", batch_size, minimum=1)


def _bounds_text(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


def renamed(old: str, old_value, new: str, new_value, *, default=None):
    """Resolve a deprecated keyword alias: warn if ``old`` was given, refuse both at once."""
    if old_value is MISSING:
        return new_value
    if new_value is not default:
        raise TypeError(f"pass {new}= only; {old}= is its deprecated alias")
    warnings.warn(
        f"{old}= is deprecated and will be removed in the next release; use {new}=",
        DeprecationWarning,
        stacklevel=3,
    )
    return old_value


# -- arrays ----------------------------------------------------------------------------------
def as_float_array(name: str, a, *, dtype=None, finite: bool = True) -> np.ndarray:
    """``a`` as a float NumPy array of the explainer dtype, checked numeric and finite.

    Raises:
        TypeError: if ``a`` is not numeric (strings, objects, complex numbers).
        ValueError: if it contains NaN or inf (with ``finite``) or overflows the dtype.
    """
    dtype = np.dtype(dtype or float_dtype())
    raw = a
    if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        raise TypeError(f"{name} must be a numeric array; got PRNG keys")
    arr = np.asarray(a)
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must be real; got complex dtype {arr.dtype}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise TypeError(
            f"{name} must be a numeric array; got dtype {arr.dtype} ({type(raw).__name__})"
        )
    if finite and arr.size and not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; impute or drop those entries first")
    with np.errstate(over="ignore"):
        out = arr.astype(dtype)
    # Only a narrowing cast can overflow (a second pass over a large X is not free).
    narrowing = out.dtype.itemsize < arr.dtype.itemsize or not np.issubdtype(arr.dtype, np.floating)
    if finite and arr.size and narrowing and not np.all(np.isfinite(out)):
        raise ValueError(
            f"{name} has values too large for {dtype} (up to {np.abs(arr).max():.3g}); "
            "rescale the data or enable jax_enable_x64"
        )
    return out


def baseline_rows(baseline, X: np.ndarray) -> np.ndarray:
    """``baseline`` as X's shape ``(n, ...)``: ``None`` (zeros), a number, one input, ``(1, ...)``
    or ``(n, ...)`` (as captum broadcasts baselines; integrated gradients and DeepLIFT use it).

    Raises:
        ValueError: naming ``baseline``, for any other shape or non-finite values.

    Example:
        >>> baseline_rows(0.5, np.zeros((2, 3))).tolist()
        [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]]
    """
    if baseline is None:
        return np.zeros_like(X)
    b = as_float_array("baseline", baseline, dtype=X.dtype)
    row = X.shape[1:]
    if b.ndim == 0 or b.shape == row or b.shape == (1,) + row:
        return np.broadcast_to(b.reshape((1,) + row if b.ndim else ()), X.shape).copy()
    if b.shape == X.shape:
        return b
    dims = ", ".join(map(str, row))
    raise ValueError(
        f"baseline must be a number, one input of shape {row}, (1, {dims}) or one per instance "
        f"{X.shape}; got shape {b.shape}"
    )


def split_instances(
    X: np.ndarray, input_shape: Sequence[int], *, name: str = "X", reference: str | None = None
):
    """``(batch, single)``: ``X`` is one instance iff its shape is ``input_shape``.

    ``reference`` names where ``input_shape`` comes from (``"background"``), for the message.

    Raises:
        ValueError: if ``X`` is neither ``input_shape`` nor ``(n, *input_shape)`` with ``n >= 1``.
    """
    input_shape = tuple(int(s) for s in input_shape)
    shape = tuple(np.shape(X))
    if shape == input_shape:
        return X[None], True
    if shape[1:] == input_shape and len(shape) == len(input_shape) + 1:
        if shape[0] == 0:
            raise ValueError(f"{name} must hold at least one instance; got shape {shape}")
        return X, False
    dims = ", ".join(map(str, input_shape))
    like = f"the rows of {reference}" if reference else "the model's input"
    raise ValueError(
        f"{name} must be one instance of shape {input_shape} or a batch (n, {dims}) like "
        f"{like}; got shape {shape}"
    )


def split_instances_by_model(f, X: np.ndarray, *, name: str = "X", integer: bool = False):
    """``(batch, single, model, params)`` for explainers without reference data.

    ``X`` is a batch if the model maps it to one output row per leading entry, else one
    instance if it maps ``X[None]`` so; a batch wins when both work. The model is adapted on
    the way (:func:`~xaijax.core.model.as_model`).

    Raises:
        ValueError: if the model accepts neither reading of ``X``.
    """
    shape = tuple(np.shape(X))
    if len(shape) == 0:
        raise ValueError(f"{name} must be one input or a batch of inputs; got a scalar")
    errors = []
    if len(shape) >= 2:
        if shape[0] == 0:
            raise ValueError(f"{name} must hold at least one instance; got shape {shape}")
        try:
            model, params = as_model(f, X, name=name, integer=integer)
            return X, False, model, params
        except ValueError as err:
            errors.append(f"as a batch of {shape[0]} inputs of shape {shape[1:]}: {err}")
    try:
        model, params = as_model(f, X[None], name=name, integer=integer)
        return X[None], True, model, params
    except ValueError as err:
        errors.append(f"as one input of shape {shape}: {err}")
    raise ValueError(
        f"{name} of shape {shape} is neither a batch nor one input the model accepts. "
        + " ".join(errors)
    )


# -- running and packing -----------------------------------------------------------------------
def call(fn: Callable, *args, **kwargs):
    """Run the compiled ``fn``; a host model's failure inside it is raised as a ``ValueError``.

    Without this, an exception in a host model (one called through ``jax.pure_callback``)
    reaches the user as ``JaxRuntimeError: INTERNAL: CpuCallback error``.

    On the CPU backend the BLAS library behind XLA's LAPACK kernels (QR, Cholesky, triangular
    solves: SciPy's OpenBLAS) runs with one thread while ``fn`` runs, and gets its setting back
    after. Its thread pool otherwise takes every core and keeps spinning between calls on the
    cores XLA's own threads use: Kernel SHAP's QR of a 2108 x 22 design took 0.45 ms with it
    and 0.11 ms without, and the model evaluations around it 15-30% longer (on 2 cores). A call
    with a host model is left alone: that model's BLAS is capped inside its own calls
    (``XAIJAX_HOST_THREADS``).
    """
    host_failure()  # clear a stale failure
    try:
        with _one_blas_thread(args):
            out = fn(*args, **kwargs)
            return jax.block_until_ready(out)
    except jax.errors.JaxRuntimeError:
        cause = host_failure()
        if cause is None:
            raise
        raise ValueError(
            f"f (a host model) failed while the explainer ran: {type(cause).__name__}: {cause}"
        ) from cause


def host_outputs(model: Model, rows, *, batch_size: int) -> np.ndarray:
    """A host model's outputs on NumPy ``rows``, called directly between compiled programs
    (:meth:`~xaijax.core.model.Model.host_outputs`); its failure is raised as the
    ``ValueError`` :func:`call` raises for a failure inside a program."""
    try:
        return model.host_outputs(np.asarray(rows), batch_size=batch_size)
    except Exception as err:
        host_failure()  # recorded by the adapter for calls inside programs: not needed here
        raise ValueError(
            f"f (a host model) failed while the explainer ran: {type(err).__name__}: {err}"
        ) from err


# One cap for the process, however many threads call explainers at once: the first call in
# sets it, the last one out restores the BLAS libraries' own settings.
_BLAS_CAP = types.SimpleNamespace(lock=threading.Lock(), depth=0, limiter=None)


@register_cache
@functools.cache
def _blas_controller():
    """threadpoolctl's handle on the loaded BLAS libraries on a CPU backend, else ``None``."""
    if jax.default_backend() != "cpu":
        return None
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - installed with scikit-learn
        return None
    # XLA loads its LAPACK (SciPy's OpenBLAS) when it first lowers a LAPACK kernel: do that
    # now, so the handle holds it.
    jax.jit(jnp.linalg.cholesky).lower(jax.ShapeDtypeStruct((1, 1), jnp.float32))
    controller = ThreadpoolController().select(user_api="blas")
    return controller if controller.lib_controllers else None


def one_blas_thread():
    """A context in which the BLAS libraries behind NumPy and XLA's LAPACK kernels run on one
    thread (CPU backend; restored after), for host linear algebra beside compiled work: a
    256 x 1,024 product took 1.8 ms on one thread, as on two, and 4x longer on two threads
    when other processes held the cores."""
    return _one_blas_thread(())


@contextlib.contextmanager
def _one_blas_thread(args):
    host = any(isinstance(a, Model) and a.kind == "host" for a in args)
    controller = None if host else _blas_controller()
    if controller is None:
        yield
        return
    with _BLAS_CAP.lock:
        if _BLAS_CAP.depth == 0:
            _BLAS_CAP.limiter = controller.limit(limits=1)
        _BLAS_CAP.depth += 1
    try:
        yield
    finally:
        with _BLAS_CAP.lock:
            _BLAS_CAP.depth -= 1
            if _BLAS_CAP.depth == 0:
                _BLAS_CAP.limiter.restore_original_limits()
                _BLAS_CAP.limiter = None


def pack(
    values,
    base_values,
    data,
    *,
    single: bool,
    kind: str,
    method: str,
    feature_names=None,
    output_names=None,
    extras: dict | None = None,
    finite=True,
    what: str = "f",
) -> Explanation:
    """Check the result and build the :class:`~xaijax.core.explanation.Explanation`.

    ``finite`` is the compiled call's report that every model output it used was finite (a
    boolean scalar or one per instance); ``what`` names the model in the message. Non-finite
    outputs or values raise ``ValueError``: an explanation of NaN is never returned.
    """
    ok = np.asarray(finite)
    if not bool(np.all(ok)):
        rows = np.flatnonzero(~ok.reshape(-1)).tolist() if ok.ndim else []
        where = f" (instances {rows[:10]}{'...' if len(rows) > 10 else ''})" if rows else ""
        raise ValueError(
            f"{what} returned NaN or inf{where}: an explanation of non-finite outputs would be "
            "meaningless. Check the model on these inputs and on the perturbed inputs the "
            "explainer builds from them."
        )
    if not (_finite(values) and _finite(base_values)):
        raise ValueError(
            f"non-finite attributions: {what} returned NaN or inf, or has NaN or inf gradients, "
            "on some inputs the explainer evaluated (the instances, the reference data, or rows "
            "mixing them)"
        )
    extras = dict(extras or {})
    if single:
        values, base_values, data = values[0], base_values[0], data[0]
        extras = {
            k: (v[0] if np.ndim(v) >= 1 and np.shape(v)[0] == 1 else v) for k, v in extras.items()
        }
    return Explanation(
        values=values,
        base_values=base_values,
        data=data,
        feature_names=feature_names,
        output_names=output_names,
        method=method,
        kind=kind,
        extras=extras,
    )


def _finite(a) -> bool:
    dtype = a.dtype if hasattr(a, "dtype") else np.asarray(a).dtype
    if not jnp.issubdtype(dtype, jnp.inexact):
        return True
    if isinstance(a, jax.Array) and not on_host(a):
        return bool(jnp.all(jnp.isfinite(a)))
    # On the host NumPy reads the array in place: no program to trace, compile or load from
    # the persistent cache, which in a fresh process costs 0.1 s per call.
    return bool(np.isfinite(np.asarray(a)).all())


def on_host(a: jax.Array) -> bool:
    """Whether a JAX array lives in this process's CPU memory (NumPy can read it in place)."""
    return a.is_fully_addressable and all(d.platform == "cpu" for d in a.devices())
