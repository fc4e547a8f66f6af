"""ProtoPNet's pruning step: drop prototypes whose nearest training patches are not their class's.

A prototype that sits on background (or on a part every class shares) is about as near to
images of other classes as to its own. The paper finds the ``k = 6`` training images nearest to
each prototype (each image by its nearest latent patch) and removes the prototype when fewer than
``threshold = 3`` of them are of its class; the last layer is then optimised again
(:func:`xaijax.protopnet.train_last_layer`).

References:
    Chen et al. "This Looks Like That: Deep Learning for Interpretable Image Recognition."
    NeurIPS 2019, Sec. 3 ("prototype pruning"); reference code ``prune.py``, ``run_pruning.py``
    and ``find_nearest.py``.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
from flax import nnx

from xaijax.protopnet.model import Buffer, ProtoPNet
from xaijax.protopnet.purity import nearest_images
from xaijax.protopnet.push import PushResult

__all__ = ["PruneResult", "prune_prototypes", "select_prototypes"]


class PruneResult(NamedTuple):
    """The pruned network and what was removed.

    Attributes:
        model: a new :class:`~xaijax.protopnet.ProtoPNet` holding the kept prototypes (the input
            model is left unchanged).
        push: the push result restricted to the kept prototypes (``None`` if none was given).
        kept: ``(P',)`` indices of the kept prototypes in the original network.
        pruned: indices of the removed ones.
        own_class_counts: ``(P,)`` how many of each prototype's ``k`` nearest images are of its
            class.
    """

    model: ProtoPNet
    push: PushResult | None
    kept: np.ndarray
    pruned: np.ndarray
    own_class_counts: np.ndarray


def select_prototypes(
    model: ProtoPNet, keep, push_result: PushResult | None = None
) -> tuple[ProtoPNet, PushResult | None]:
    """A copy of ``model`` with only the prototypes ``keep`` (and their last-layer rows).

    Args:
        model: a :class:`~xaijax.protopnet.ProtoPNet`.
        keep: indices of the prototypes to keep, in the order they should have.
        push_result: optional, restricted to the same prototypes.

    Returns:
        ``(model, push_result)``; the model's config lists each kept prototype's class.

    Example:
        >>> import jax
        >>> from xaijax.protopnet.model import ProtoPNetConfig
        >>> cfg = ProtoPNetConfig(img_size=24, num_classes=2, num_prototypes=4, channels=(4, 4))
        >>> small, _ = select_prototypes(ProtoPNet(cfg, key=jax.random.key(0)), [0, 2, 3])
        >>> small.config.prototype_classes, small.last_layer[...].shape
        ((0, 1, 1), (3, 2))
    """
    keep = np.asarray(keep, np.int64).reshape(-1)
    P = int(model.prototypes[...].shape[0])
    if keep.size == 0 or keep.min() < 0 or keep.max() >= P or len(set(keep.tolist())) != keep.size:
        raise ValueError(
            f"keep must be distinct prototype indices in [0, {P}); got {keep.tolist()}"
        )
    classes = np.argmax(np.asarray(model.class_identity[...]), axis=1)[keep]
    config = dataclasses.replace(
        model.config,
        num_prototypes=int(keep.size),
        prototype_classes=tuple(int(c) for c in classes),
    )
    config.validate()
    new = nnx.clone(model)
    new.config = config
    new.prototypes = nnx.Param(model.prototypes[...][keep])
    new.class_identity = Buffer(config.class_identity())
    new.last_layer = nnx.Param(model.last_layer[...][keep])
    if push_result is not None:
        push_result = PushResult(*(np.asarray(a)[keep] for a in push_result))
    return new, push_result


def prune_prototypes(
    model: ProtoPNet,
    images,
    labels,
    *,
    k: int = 6,
    threshold: int = 3,
    push_result: PushResult | None = None,
    keep_one_per_class: bool = True,
    batch_size: int = 64,
) -> PruneResult:
    """Remove the prototypes with fewer than ``threshold`` of their ``k`` nearest images in class.

    Args:
        model: a :class:`~xaijax.protopnet.ProtoPNet` after push (left unchanged).
        images: ``(N, H, W, C)`` the training (push) images.
        labels: ``(N,)`` their classes.
        k: nearest images per prototype (the paper's 6), each image by its nearest patch.
        threshold: the fewest of them that must share the prototype's class (the paper's 3).
        push_result: the last push, restricted to the kept prototypes in the result.
        keep_one_per_class: a departure from the reference: a class all of whose prototypes
            would go keeps the one with the most own-class neighbours, so every class can still
            be explained by "this looks like that".
        batch_size: images per compiled forward pass.

    Returns:
        :class:`PruneResult`; optimise its model's last layer again afterwards
        (:func:`~xaijax.protopnet.train_last_layer`).

    Raises:
        ValueError: naming ``labels``, ``k`` or ``threshold`` when out of range.

    References:
        Chen et al. NeurIPS 2019, Sec. 3; reference ``prune.py`` (k = 6, prune_threshold = 3).

    Example:
        >>> import jax, numpy as np
        >>> from xaijax.protopnet.model import ProtoPNetConfig
        >>> cfg = ProtoPNetConfig(img_size=24, num_classes=2, num_prototypes=4, channels=(4, 4))
        >>> net = ProtoPNet(cfg, key=jax.random.key(0))
        >>> X, y = np.random.default_rng(0).random((8, 24, 24, 3)), np.arange(8) % 2
        >>> res = prune_prototypes(net, X, y, k=4, threshold=2)
        >>> len(res.kept) + len(res.pruned), res.model.config.num_prototypes == len(res.kept)
        (4, True)
    """
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels)
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels must have shape ({images.shape[0]},); got {labels.shape}")
    k = int(k)
    threshold = int(threshold)
    if not 0 <= threshold <= k:
        raise ValueError(f"threshold must be in [0, k={k}]; got {threshold}")
    index, _, _ = nearest_images(model, images, k=k, batch_size=batch_size)
    classes = np.argmax(np.asarray(model.class_identity[...]), axis=1)
    own = (labels[index] == classes[:, None]).sum(axis=1)
    keep = own >= threshold
    if keep_one_per_class:
        for c in np.unique(classes):
            members = np.flatnonzero(classes == c)
            if not keep[members].any():
                keep[members[np.argmax(own[members])]] = True
    if not keep.any():  # nothing left to classify with: keep the best prototype
        keep[np.argmax(own)] = True
    kept = np.flatnonzero(keep)
    new, push = select_prototypes(model, kept, push_result)
    return PruneResult(new, push, kept, np.flatnonzero(~keep), own)
