"""ProtoPNet's objective: cross-entropy + cluster - separation + L1 on wrong-class weights.

References:
    Chen et al. "This Looks Like That: Deep Learning for Interpretable Image Recognition."
    NeurIPS 2019, Sec. 2.2 and the reference code's ``train_and_test.py``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "LossCoefficients",
    "LossTerms",
    "cross_entropy",
    "cluster_cost",
    "separation_cost",
    "l1_wrong_class",
    "protopnet_loss",
]


@dataclasses.dataclass(frozen=True)
class LossCoefficients:
    """Weights of the loss terms; the paper's defaults (``settings.py``)."""

    cross_entropy: float = 1.0
    cluster: float = 0.8
    separation: float = -0.08
    l1: float = 1e-4


class LossTerms(NamedTuple):
    """The weighted total and every term before weighting (scalars)."""

    total: jax.Array
    cross_entropy: jax.Array
    cluster: jax.Array
    separation: jax.Array
    l1: jax.Array
    accuracy: jax.Array


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of ``logits (n, C)`` against integer ``labels (n,)``."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=1))


def cluster_cost(
    min_distances: jax.Array, labels: jax.Array, class_identity: jax.Array, max_dist: float
) -> jax.Array:
    """Mean over images of the smallest distance to a prototype of the image's own class.

    Written as the reference code does, ``max_dist - max_j (max_dist - d_j) * [j in class]``, so
    that it equals ``min_{j in class} d_j`` whenever distances are at most ``max_dist`` (= D, since
    latent patches and trained prototypes lie in [0, 1]^D).

    Args:
        min_distances: ``(n, P)`` each prototype's smallest distance over positions.
        labels: ``(n,)`` integer classes.
        class_identity: ``(P, C)`` one-hot class of each prototype.
        max_dist: ``D`` (prototype depth x 1 x 1).

    Returns:
        A scalar.

    Example:
        >>> import jax.numpy as jnp
        >>> ident = jnp.array([[1.0, 0.0], [0.0, 1.0]])
        >>> float(cluster_cost(jnp.array([[1.0, 3.0]]), jnp.array([1]), ident, 4.0))
        3.0
    """
    own = class_identity.T[labels]
    inverted = jnp.max((max_dist - min_distances) * own, axis=1)
    return jnp.mean(max_dist - inverted)


def separation_cost(
    min_distances: jax.Array, labels: jax.Array, class_identity: jax.Array, max_dist: float
) -> jax.Array:
    """Mean over images of the smallest distance to a prototype of any other class (subtracted).

    Args and Returns as :func:`cluster_cost`.

    Example:
        >>> import jax.numpy as jnp
        >>> ident = jnp.array([[1.0, 0.0], [0.0, 1.0]])
        >>> float(separation_cost(jnp.array([[1.0, 3.0]]), jnp.array([1]), ident, 4.0))
        1.0
    """
    other = 1.0 - class_identity.T[labels]
    inverted = jnp.max((max_dist - min_distances) * other, axis=1)
    return jnp.mean(max_dist - inverted)


def l1_wrong_class(last_layer: jax.Array, class_identity: jax.Array) -> jax.Array:
    """L1 norm of the last-layer weights ``(P, C)`` from prototypes to classes other than their own.

    Example:
        >>> import jax.numpy as jnp
        >>> float(l1_wrong_class(jnp.array([[1.0, -0.5], [2.0, 3.0]]), jnp.eye(2)))
        2.5
    """
    return jnp.sum(jnp.abs(last_layer * (1.0 - class_identity)))


def protopnet_loss(
    logits: jax.Array,
    min_distances: jax.Array,
    labels: jax.Array,
    last_layer: jax.Array,
    class_identity: jax.Array,
    *,
    max_dist: float,
    coefficients: LossCoefficients = LossCoefficients(),
) -> LossTerms:
    """ProtoPNet's loss ``CE + 0.8 cluster - 0.08 separation + 1e-4 L1`` and its terms.

    Args:
        logits: ``(n, C)``.
        min_distances: ``(n, P)``.
        labels: ``(n,)`` integers.
        last_layer: ``(P, C)`` weights.
        class_identity: ``(P, C)`` one-hot prototype classes.
        max_dist: the prototype depth D (largest distance between points of [0, 1]^D).
        coefficients: term weights; ``separation`` is negative (separation is rewarded).

    Returns:
        :class:`LossTerms` (``total`` is what is minimised).

    References:
        Chen et al. NeurIPS 2019, Eq. (1) and Sec. 2.2 (last-layer L1).
    """
    ce = cross_entropy(logits, labels)
    clst = cluster_cost(min_distances, labels, class_identity, max_dist)
    sep = separation_cost(min_distances, labels, class_identity, max_dist)
    l1 = l1_wrong_class(last_layer, class_identity)
    c = coefficients
    total = c.cross_entropy * ce + c.cluster * clst + c.separation * sep + c.l1 * l1
    accuracy = jnp.mean((jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32))
    return LossTerms(total, ce, clst, sep, l1, accuracy)
