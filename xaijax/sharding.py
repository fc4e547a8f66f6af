"""Explaining many instances on many devices: the instance axis sharded over a device mesh.

Every batched explainer is a map over instances with nothing shared between them but the model
and the background, so it shards without communication: each device explains its slice of the
instances with its own copy of the model, background and training statistics. The explainers
take ``mesh=``; inside their one compiled call the per-instance work runs under ``shard_map``
(:func:`over_instances`), the instance count padded to a multiple of the device count (by
repeating the last instance, never zeros, which a model may reject) and the padding sliced off.

Validation, key splitting and packing the :class:`~xaijax.Explanation` stay on the host and are
shared with the one-device call, so the per-instance keys are the same and so are the results:
bitwise on CPU for the explainers tested (``tests/test_sharding.py``). Host models
(``jax.pure_callback``) run on every device's slice, called from each device in turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec

__all__ = ["instance_mesh", "check_mesh", "over_instances"]

try:  # JAX >= 0.6 exposes shard_map at the top level; older versions under experimental.
    _shard_map = jax.shard_map
    _NO_CHECK = {"check_vma": False}
except AttributeError:  # pragma: no cover - older JAX
    from jax.experimental.shard_map import shard_map as _shard_map

    _NO_CHECK = {"check_rep": False}


def instance_mesh(devices: Sequence[jax.Device] | None = None, *, axis_name: str = "instances"):
    """A one-axis :class:`jax.sharding.Mesh` to shard the instances of an explainer over.

    Args:
        devices: the devices to use; default all of this process's devices
            (``jax.local_devices()``, so in a multi-process run each process explains its own
            instances on its own devices).
        axis_name: the mesh axis name.

    Returns:
        A ``Mesh`` of shape ``(len(devices),)`` to pass as ``mesh=`` to :func:`~xaijax.kernel_shap`,
        :func:`~xaijax.permutation_shap`, :func:`~xaijax.exact_shapley` or
        :func:`~xaijax.lime_tabular`.

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
        raise ValueError(
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
