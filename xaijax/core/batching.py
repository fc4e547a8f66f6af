"""Bounded work: the chunked evaluator, the instance loop and sharding over a device mesh.

Every model evaluation in xaijax goes through :func:`map_row_chunks` (or :func:`evaluate`), so at
most ``batch_size`` model rows are materialised and passed to the model at once, whatever the
number of instances, samples or coalitions. ``batch_size`` always counts model rows (inputs
passed to the model together); ``None`` picks :func:`default_batch_size` from the backend and
the size of one row.

Many instances run in one compiled loop (:func:`map_instances`), vectorising as many at once as
fit in ``batch_size`` rows. With ``mesh=`` the instance axis is split over a device mesh
(:func:`over_instances`): each device explains its slice of the instances with its own copy of
the model and the reference data, without communication. The instance count is padded to a
multiple of the device count by repeating the last instance (never zeros, which a model may
reject) and the padding sliced off, so the values equal the one-device call's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "default_batch_size",
    "map_row_chunks",
    "balanced_chunk",
    "evaluate",
    "map_instances",
    "instance_mesh",
    "check_mesh",
    "over_instances",
]

try:  # JAX >= 0.6 exposes shard_map at the top level; older versions under experimental.
    _shard_map = jax.shard_map
    _NO_CHECK = {"check_vma": False}
except AttributeError:  # pragma: no cover - older JAX
    from jax.experimental.shard_map import shard_map as _shard_map

    _NO_CHECK = {"check_rep": False}

# The CPU default for tabular rows: large enough that XLA spreads a small model's evaluation
# over the cores (below ~32,000 rows an MLP runs on one thread: on 2 cores a 20-32-2 MLP took
# 3.05 ms per 62,640 rows in chunks of 8192 and 1.86 ms in chunks of 65,536, 1.74 ms in one
# call) and that a tabular LIME step vectorises a dozen instances; small enough that a
# 30-feature MLP's activations stay in the tens of megabytes.
DEFAULT_BATCH_SIZE = 65536

# Per backend: (most rows, bytes of input rows per chunk). On a CPU small image chunks are as
# fast as large ones (image LIME: 3.8 s at 16 images against 6.7 s at 256 on 2 cores); a GPU
# needs many rows per step to fill the device (Kernel SHAP at 8192 rows ran one instance per
# step on an H100, 5x the model floor).
_BUDGETS = {"cpu": (DEFAULT_BATCH_SIZE, 8 * 2**20), "gpu": (2**18, 256 * 2**20)}


def default_batch_size(row_shape: Sequence[int] = (), dtype=jnp.float32, backend=None) -> int:
    """Model rows per chunk when ``batch_size=None``: by backend and the bytes of one row.

    CPU: up to 65,536 rows and 8 MiB of input rows per chunk (13 images of 224x224x3); GPU and
    TPU: up to 2^18 rows and 256 MiB (a tabular model gets many instances per step).

    Example:
        >>> default_batch_size((30,), backend="cpu")
        65536
        >>> default_batch_size((224, 224, 3), backend="cpu")
        13
        >>> default_batch_size((30,), backend="gpu")
        262144
    """
    backend = backend or jax.default_backend()
    most, budget = _BUDGETS["cpu" if backend == "cpu" else "gpu"]
    row_bytes = max(1, math.prod(int(s) for s in row_shape)) * np.dtype(dtype).itemsize
    return int(max(1, min(most, budget // row_bytes)))


def map_row_chunks(fn: Callable[[jax.Array], Any], total: int, chunk_size: int) -> Any:
    """Apply ``fn(rows)`` to consecutive chunks of the row indices ``0..total-1`` and concatenate.

    ``fn`` takes an int array of ``chunk_size`` row indices and returns a pytree whose leaves have
    that leading axis. The chunks run in a ``lax.map`` loop, so only one chunk's worth of inputs
    exists at a time; the last chunk repeats the final row instead of padding with zeros (zeros may
    be an invalid input, e.g. for a model that takes logs). Runs inside ``jit``.

    Example:
        >>> import jax.numpy as jnp
        >>> map_row_chunks(lambda rows: rows * 2, 5, 2).tolist()
        [0, 2, 4, 6, 8]
    """
    total, chunk_size = int(total), max(1, int(chunk_size))
    if total <= chunk_size:
        return fn(jnp.arange(total))
    num_chunks = -(-total // chunk_size)

    def one(k):
        return fn(jnp.minimum(k * chunk_size + jnp.arange(chunk_size), total - 1))

    out = jax.lax.map(one, jnp.arange(num_chunks))
    return jax.tree.map(lambda a: a.reshape((num_chunks * chunk_size,) + a.shape[2:])[:total], out)


def balanced_chunk(total: int, batch_size: int) -> int:
    """The chunk size ``<= batch_size`` that splits ``total`` rows into the fewest, most even
    chunks: 32 images at ``batch_size=13`` run as 3 chunks of 11, not 13 + 13 + 6 padded to 39.

    Example:
        >>> balanced_chunk(32, 13), balanced_chunk(5, 8), balanced_chunk(7, 1)
        (11, 5, 1)
    """
    total, batch_size = max(1, int(total)), max(1, int(batch_size))
    return -(-total // -(-total // batch_size))


def evaluate(model, params, X: jax.Array, *, batch_size: int | None = None):
    """``model`` (a :class:`~xaijax.core.model.Model`) on ``X: (n, *input_shape)`` in the fewest,
    most even chunks of at most ``batch_size`` rows (default :func:`default_batch_size`)."""
    if batch_size is None:
        batch_size = default_batch_size(X.shape[1:], X.dtype)
    chunk = balanced_chunk(X.shape[0], batch_size)
    return map_row_chunks(lambda rows: model.apply(params, X[rows]), X.shape[0], chunk)


def map_instances(per_instance: Callable, xs: Any, rows_per_instance: int, batch_size: int):
    """``per_instance`` over the leading axis of the pytree ``xs`` in one compiled loop.

    Vectorises as many instances at once as fit in ``batch_size`` model rows (all of them for
    small problems); a large problem runs one instance at a time with its own chunked evaluation.
    """
    n = jax.tree.leaves(xs)[0].shape[0]
    per_step = max(1, int(batch_size) // max(1, int(rows_per_instance)))
    if per_step >= n:
        return jax.vmap(per_instance)(xs)
    # Equal steps, the last one padded by repeating the final instance: lax.map's own remainder
    # step would trace and compile the whole per-instance program a second time (Kernel SHAP's
    # program took 2.5 s to compile instead of 1.5 s for 10 instances of 3 per step).
    per_step = balanced_chunk(n, per_step)
    padded = -(-n // per_step) * per_step
    if padded != n:
        rows = jnp.minimum(jnp.arange(padded), n - 1)
        xs = jax.tree.map(lambda a: a[rows], xs)
    out = jax.lax.map(per_instance, xs, batch_size=per_step)
    return jax.tree.map(lambda a: a[:n], out) if padded != n else out


def instance_mesh(devices: Sequence[jax.Device] | None = None, *, axis_name: str = "instances"):
    """A one-axis :class:`jax.sharding.Mesh` to shard the instances of an explainer over.

    Args:
        devices: the devices to use; default all of this process's devices
            (``jax.local_devices()``, so in a multi-process run each process explains its own
            instances on its own devices).
        axis_name: the mesh axis name.

    Returns:
        A ``Mesh`` of shape ``(len(devices),)`` to pass as ``mesh=`` to any explainer.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> import xaijax as xj
        >>> mesh = xj.instance_mesh()
        >>> f = lambda X: X @ jnp.array([1.0, 2.0, 3.0])
        >>> X = np.ones((5, 3))
        >>> exp = xj.kernel_shap(f, X, np.zeros((4, 3)), key=jax.random.key(0), mesh=mesh)
        >>> one = xj.kernel_shap(f, X, np.zeros((4, 3)), key=jax.random.key(0))
        >>> bool(np.array_equal(exp.values, one.values))
        True
    """
    devices = list(jax.local_devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices must hold at least one device")
    return Mesh(np.array(devices), (axis_name,))


def check_mesh(mesh) -> Mesh | None:
    """``mesh`` must be ``None`` or a :class:`jax.sharding.Mesh` of devices this process owns."""
    if mesh is None:
        return None
    if not isinstance(mesh, Mesh):
        raise TypeError(
            f"mesh must be None or a jax.sharding.Mesh (e.g. xaijax.instance_mesh()); got "
            f"{type(mesh).__name__}"
        )
    local = set(jax.local_devices())
    if not all(d in local for d in mesh.devices.flat):
        raise ValueError(
            "mesh must hold only this process's devices (jax.local_devices()); in a "
            "multi-process run give each process its own instances and a local mesh"
        )
    return mesh


def over_instances(
    fn: Callable[..., Any], sharded: Any, replicated: Any = (), *, mesh: Mesh | None
) -> Any:
    """``fn(sharded, replicated)`` with ``sharded``'s leading (instance) axis split over ``mesh``.

    ``fn`` maps a slice of instances (every leaf of ``sharded`` has the instance axis first) and
    the ``replicated`` pytree (model parameters, background: copied to every device) to a pytree
    whose leaves all have the instance axis first. With ``mesh=None`` this is ``fn`` itself. The
    instance axis is split over all the mesh's axes; a count that does not divide evenly is padded
    by repeating the last instance and the padding dropped from the results. Runs inside ``jit``.
    """
    if mesh is None:
        return fn(sharded, replicated)
    n = jax.tree.leaves(sharded)[0].shape[0]
    size = mesh.devices.size
    padded = -(-n // size) * size
    if padded != n:
        rows = jnp.minimum(jnp.arange(padded), n - 1)
        sharded = jax.tree.map(lambda a: a[rows], sharded)
    spec = PartitionSpec(tuple(mesh.axis_names))
    out = _shard_map(
        fn,
        mesh=mesh,
        in_specs=(spec, PartitionSpec()),
        out_specs=spec,
        **_NO_CHECK,
    )(sharded, replicated)
    return jax.tree.map(lambda a: a[:n], out) if padded != n else out
