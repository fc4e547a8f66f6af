"""Feature ablation: each group of input elements set to a baseline in turn; captum's
``FeatureAblation`` with a ``feature_mask``."""

# jaxtyping shape strings such as "..." are not Python expressions:
# ruff: noqa: F722, UP037

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from xaijax.core.explanation import Explanation
from xaijax.core.masking import as_groups, expand_groups
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets
from xaijax.perturbation.scoring import as_baseline, finish, prepare, run

__all__ = ["feature_ablation"]


@dataclasses.dataclass(frozen=True)
class _Groups:
    """The ablated copies of one input: one per group (static, hashable)."""

    input_shape: tuple[int, ...]
    num_groups: int

    @property
    def num_rows(self) -> int:
        return self.num_groups

    def perturb(self, x, fill, aux, rows):
        ids, _ = aux  # (*E,)
        keep = jnp.arange(self.num_groups)[None, :] != rows[:, None]  # (c, G): all but one
        return jnp.where(expand_groups(keep, ids, self.input_shape), x[None], fill[None])

    def aggregate(self, drops, aux):
        ids, counts = aux  # (n, *E), (n,)
        n = drops.shape[0]
        # Ids an instance does not use (per-instance maps with fewer groups) score exactly 0.
        used = jnp.arange(self.num_groups)[None, :] < counts[:, None]
        drops = jnp.where(used, drops, jnp.zeros((), drops.dtype))
        per_element = jax.vmap(lambda d, i: d[i])(drops, ids)  # (n, *E)
        trailing = len(self.input_shape) - (ids.ndim - 1)
        per_element = per_element.reshape(per_element.shape + (1,) * trailing)
        values = jnp.broadcast_to(per_element, (n,) + self.input_shape)
        return values, {"group_values": drops}


@explainer(kind="map")
def feature_ablation(
    f,
    X: Float[ArrayLike, "..."],
    *,
    groups=None,
    baseline=0.0,
    targets: Targets = None,
    batch_size: int | None = None,
    mesh=None,
) -> Explanation:
    """Feature ablation: the drop of the target score when one group is set to a baseline.

    Each group of input elements is replaced by ``baseline`` in turn (the others keep ``x``'s
    values); the group's value is ``f(x) - f(x with the group ablated)``, and every element of
    the group gets it. This is captum's ``FeatureAblation`` with ``feature_mask=groups``; with
    ``groups=None`` every element is its own group.

    Args:
        f: the model ``X (n, *input_shape) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX module, or a host callable (NumPy in and out).
        X: one instance or a batch ``(n, *input_shape)``, decided by the model's input shape.
        groups: integer group ids ``0 .. G-1`` of the elements of one input, shape ``E`` a prefix
            of the input shape (``(M,)`` for rows, ``(H, W)`` for ``(H, W, C)`` images: a
            pixel's channels move together), shared by the batch, or ``(n, *E)``, one map per
            instance (e.g. :func:`xaijax.core.masking.superpixel_groups` or
            :func:`~xaijax.core.masking.patch_groups`). ``None``: one group
            per element.
        baseline: what an ablated element becomes: a number, or an array broadcastable to one
            input or to ``X``.
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints, or
            a callable ``fn(outputs) -> (n,)``.
        batch_size: most rows passed to the model at once; ``None`` picks a default.
        mesh: optional :class:`jax.sharding.Mesh` to shard the instances over.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values`` shaped like ``X``,
        ``base_values`` zeros and extras ``group_values (n, G)`` (each group's drop; 0 for ids
        an instance does not use), ``groups`` (the id map, ``(1, *E)`` shared or ``(n, *E)``;
        ``(*E)`` for one instance), ``targets (n,)`` (-1 for a callable) and ``scores (n,)``.

    Raises:
        ValueError: groups of the wrong shape, negative ids or empty groups (naming
            ``groups``), a baseline that does not broadcast, bad targets, or NaN/inf model
            outputs.

    References:
        captum's ``FeatureAblation``; Zeiler & Fergus 2014, Visualizing and Understanding
        Convolutional Networks, ECCV.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda X: X @ jnp.array([1.0, 2.0, 3.0, 4.0])
        >>> exp = feature_ablation(f, jnp.ones((1, 4)), groups=jnp.array([0, 0, 1, 1]))
        >>> exp.values.tolist(), exp.extras["group_values"].tolist()
        ([[3.0, 3.0, 7.0, 7.0]], [[3.0, 7.0]])
    """
    problem = prepare(f, X, targets, batch_size=batch_size, mesh=mesh)
    n, input_shape = problem.X.shape[0], problem.input_shape
    if groups is None:
        groups = np.arange(math.prod(input_shape), dtype=np.int32).reshape(input_shape)
    checked = as_groups(groups, input_shape, n, name="groups")
    fill = as_baseline(baseline, problem.X)
    ids = np.broadcast_to(checked.ids, (n,) + checked.ids.shape[1:])
    counts = np.broadcast_to(np.asarray(checked.counts, np.int32), (n,))
    plan = _Groups(input_shape, checked.num_groups)
    values, extras, finite = run(problem, fill, (jnp.asarray(ids), jnp.asarray(counts)), plan)
    extras["groups"] = checked.ids
    return finish(problem, values, extras, finite, method="feature_ablation")
