"""Partition SHAP: Owen values over a hierarchy of feature groups, as ``shap.PartitionExplainer``.

The recursion (shap's ``PartitionExplainer.owen``): an entry ``(node, off, on, weight)`` stands
for a node of the hierarchy in one context, ``off`` the features on outside it and ``on = off +
node``. Expanding an internal entry scores ``off + left`` and ``off + right`` (two model
evaluations) and queues its four children: each child with its sibling off and with its sibling
on, at half the weight. An entry that is not expanded (a leaf, a node with a negative distance,
or any entry left when the budget ``max_evals`` runs out) credits ``weight * (v(on) - v(off))``
to its node, and a node's credit is shared equally by the leaves under it. Expanding every entry
gives the Owen values of the binary hierarchy; a smaller budget expands the entries with the
largest ``weight * max|v(on) - v(off)|`` first, best-first from a priority queue.

Two compiled programs:

* **full budget** (``max_evals`` covers every expansion): the entries are known from the
  hierarchy alone, so every mask is planned on the host and scored in chunks of ``batch_size``
  model rows, and the values are a fixed linear combination of the scores;
* **partial budget**: the expansion order depends on the scores. Each instance keeps its queue
  as fixed-size arrays; each step takes its best ``evals_per_step / 2`` queued entries
  (``lax.top_k``), scores their ``evals_per_step`` masks, and queues their children, exactly as
  shap's loop takes its batch of ``batch_size`` masks from its heap. One ``lax.while_loop``
  steps a chunk of instances together (the step vmapped, the model called once per step for
  all of them) until every instance has spent its budget or emptied its queue.

A context (the features on outside an entry's node) is the union of the siblings switched on
along the path from the root, at most one per level. Leaves are numbered in depth-first order,
so every node covers one interval of leaves and a context is at most ``depth`` intervals; masks
are built from intervals on the fly, never stored. In shap's image hierarchy every node is a
box of pixels and channels, so an image mask is the union of at most ``depth + 1`` boxes, built
from one bit set per row, column and channel (:func:`_box_masks`) instead of comparing every
element's leaf position with every interval.
"""

# jaxtyping shape strings such as "*n m" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import ArrayLike, Float

from xaijax.core import contract
from xaijax.core.batching import balanced_chunk, check_mesh, map_instances, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.hierarchy import (
    Tree,
    check_clustering,
    feature_hierarchy,
    image_hierarchy,
    sequence_hierarchy,
    tree_tables,
)
from xaijax.core.masking import Masker, as_background, as_masker, coalition_values
from xaijax.core.model import float_dtype
from xaijax.core.registry import explainer, register_cache
from xaijax.core.targets import Targets
from xaijax.shapley.coalitions import check_work, finish, output_status, prepare

__all__ = ["partition_shap", "full_budget", "owen_plan", "OwenPlan"]


DEFAULT_MAX_EVALS = 500  # shap's PartitionExplainer default


@explainer(kind="additive", reference="masker")
def partition_shap(
    f: Callable,
    X: Float[ArrayLike, "*n ..."],
    masker: Masker,
    *,
    max_evals: int = DEFAULT_MAX_EVALS,
    targets: Targets = None,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    groups: ArrayLike | None = None,
    evals_per_step: int = 10,
    feature_names: Sequence[str] | None = None,
) -> Explanation:
    """Owen values of ``f`` at ``X`` over a hierarchy of features, as ``shap.PartitionExplainer``.

    Shapley values computed recursively down a binary hierarchy (the masker's): at each split
    the two halves are the players, scored with the features outside the node off and on, so
    groups of features get the credit they would get as one player (Owen values). With a budget
    that covers the whole recursion (:func:`full_budget` ``+ 2`` evaluations: for a balanced
    hierarchy over ``G`` leaves about ``2 G^2 / 3``) the values are the exact Owen values of the
    binary hierarchy. A smaller ``max_evals`` expands the node-context pairs with the largest
    effect first (shap's best-first queue, ``evals_per_step`` masks at a time) and shares the
    effect of each pair left unexpanded equally among its leaves. The values equal shap's, at
    any budget, up to the order of exactly tied effects (shap breaks ties at random, this
    function by queue order). Local accuracy holds at every budget:
    ``values.sum(1) + base_values == f(X)``.

    Args:
        f: the model, ``f(X: (n, *input_shape)) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX or Equinox module, or a NumPy callable (run on
            the host).
        X: one instance or a batch ``(n, *input_shape)``.
        masker: a masker with a hierarchy: :func:`xaijax.maskers.partition` (background rows
            and a SciPy linkage over the features, as ``shap.maskers.Partition``),
            :func:`xaijax.maskers.image` (a constant or blur, and shap's recursive halving of
            the image into rectangles, as ``shap.maskers.Image``), or any masker built with
            ``clustering=``. Background rows ``(B, M)`` (or a :class:`~xaijax.Background`)
            get shap's default hierarchy for them, the single-linkage clustering of their
            columns' correlation distances
            (:func:`~xaijax.core.hierarchy.feature_hierarchy`). A token masker
            (:func:`xaijax.maskers.token`) over ids ``(n, L)`` splits the sequence into halves,
            recursively (contiguous spans: :func:`~xaijax.core.hierarchy.sequence_hierarchy`),
            unless built with ``clustering=``.
        max_evals: model evaluations per instance (each averaged over the masker's rows),
            ``f(x)`` and the base value included, as shap counts them (default 500).
        targets: which output to explain: ``None`` (all outputs; the queue follows the largest
            effect over them, as shap's), an int, ``(n,)`` ints (the queue follows that output,
            as shap's ``outputs=``), or a callable on the model outputs.
        batch_size: most model rows evaluated at once (per device); ``None`` picks a default.
        mesh: optional :class:`jax.sharding.Mesh` to shard the instances over.
        groups: optional group ids (:func:`~xaijax.core.masking.as_groups`): the hierarchy's
            leaves are then these ``G`` groups (``clustering`` must be over ``G``); by default
            every input element is a leaf (the features of a row, or each pixel and channel of
            an image, as shap's maskers).
        evals_per_step: masks scored per step of the best-first expansion (shap's
            ``batch_size``, default 10). Below the full budget, the order of expansion, and so
            the values, depend on it; set it as shap's to reproduce shap's values.
        feature_names: optional names of the leaves (features or groups).

    Returns:
        An :class:`Explanation` of kind ``"additive"``: ``values (n, G)`` or ``(n, G, K)`` per
        leaf, ``base_values`` ``(n,)`` or ``(n, K)`` (the model with every leaf hidden).
        Extras: ``num_evals`` (model evaluations per instance, ``f(x)`` and the base value
        included), and for inputs that are not flat rows (or with ``groups``)
        ``element_values``, the values on the input's elements ``(n, *input_shape[, K])`` (the
        shape of shap's values for images).

    Raises:
        TypeError: a non-integer ``max_evals`` or ``evals_per_step``; a masker of another type.
        ValueError: a masker without a hierarchy, a ``clustering`` that is not a linkage matrix
            over the leaves (naming ``clustering``), ``max_evals < 4``, an image masker built
            for another shape (naming ``masker``), bad shapes or NaN inputs, or a model that
            returns NaN or inf (naming the instances).

    References:
        Owen, "Values of games with a priori unions", 1977. Lundberg & Lee, "A Unified Approach
        to Interpreting Model Predictions", NeurIPS 2017 (shap's Partition explainer).

    Example:
        >>> import jax.numpy as jnp, numpy as np, xaijax as xj
        >>> f = lambda X: X[:, 0] * X[:, 1] + X[:, 2]
        >>> Z = np.array([[0, 1, 0.5, 2], [2, 3, 1.0, 3]])  # (0, 1) merged first, then 2
        >>> masker = xj.maskers.partition(np.zeros((1, 3)), clustering=Z)
        >>> exp = xj.partition_shap(f, np.array([1.0, 2.0, 3.0]), masker)
        >>> [round(float(v), 4) for v in exp.values]
        [1.0, 1.0, 3.0]
    """
    max_evals = _check_int("max_evals", max_evals, 4)
    evals_per_step = _check_int("evals_per_step", evals_per_step, 1)
    masker = _with_hierarchy(masker, groups)
    if masker.hierarchy == "image" and groups is not None:
        raise ValueError(
            "groups cannot be combined with an image masker, whose hierarchy's leaves are the "
            "image's elements; pass a masker with clustering= over the groups instead"
        )
    if masker.kind == "token":
        X_arr = np.asarray(X)  # integer token ids, checked by prepare
        if X_arr.ndim not in (1, 2):
            raise ValueError(f"X must be token ids (L,) or (n, L); got shape {X_arr.shape}")
    else:
        X_arr = contract.as_float_array("X", X, dtype=np.dtype(float_dtype()))
    if masker.kind == "token":
        element_shape = X_arr.shape[-1:]
    elif masker.has_rows:
        element_shape = as_background(masker.value, masker.weights)[0].shape[1:]
    elif masker.shape is not None:
        element_shape = tuple(masker.shape)
        if X_arr.shape[-len(element_shape) :] != element_shape:
            raise ValueError(
                f"masker was built for images of shape {element_shape}; X has shape {X_arr.shape}"
            )
    else:
        element_shape = X_arr.shape[1:] if X_arr.ndim == 4 else X_arr.shape
    if groups is None and len(element_shape) != 1:
        # Every element is a leaf, numbered in flat (C) order as shap's maskers number them.
        groups = np.arange(int(np.prod(element_shape)), dtype=np.int32).reshape(element_shape)
    problem = prepare(
        f,
        X_arr,
        None,
        feature_names=feature_names,
        targets=targets,
        batch_size=batch_size,
        tabular=groups is None,
        masker=masker,
        groups=groups,
    )
    G = problem.num_players
    if masker.hierarchy == "image":
        Z = image_hierarchy(problem.X.shape[1:])
    elif masker.kind == "token" and masker.clustering is None:
        Z = sequence_hierarchy(G)  # contiguous spans of tokens (or of groups), halved
    else:
        Z = check_clustering(masker.clustering, G)
    ids = problem.groups.ids if problem.groups is not None else np.arange(G)[None]
    mesh = check_mesh(mesh)
    values, base, status, evals = contract.call(
        _owen_values,
        problem.model,
        problem.params,
        problem.X,
        problem.fill,
        Z,
        ids,
        problem.targets.indices,
        max_evals=max_evals,
        evals_per_step=evals_per_step,
        batch_size=problem.batch_size,
        mesh=mesh,
    )
    out_shape = problem.model.output_shape
    values = np.asarray(values).reshape(values.shape[:2] + out_shape)
    base = np.asarray(base).reshape(base.shape[:1] + out_shape)
    extras = {"num_evals": np.asarray(evals) + 2}
    return finish(problem, values, base, method="partition_shap", extras=extras, finite=status)


def _with_hierarchy(masker, groups) -> Masker:
    """``masker`` as a :class:`Masker` with a hierarchy: background rows (or a background
    masker) without one get shap's default, the correlation clustering of their columns."""
    if masker is None or isinstance(masker, (numbers.Number, str)):
        raise TypeError(
            "masker must be a masker with a hierarchy: xaijax.maskers.partition(rows, "
            "clustering=Z), xaijax.maskers.image(mask_value, shape), or background rows (B, M) "
            f"(clustered by correlation, as shap.maskers.Partition(rows)); got {masker!r}"
        )
    masker = as_masker(masker)
    if masker.clustering is not None or masker.hierarchy == "image" or masker.kind == "token":
        return masker
    if masker.has_rows and groups is None:
        rows, _ = as_background(masker.value, masker.weights)
        if rows.ndim == 2 and rows.shape[1] >= 2:
            return dataclasses.replace(masker, clustering=feature_hierarchy(rows))
    raise ValueError(
        "masker has no hierarchy: partition_shap needs xaijax.maskers.partition(rows, "
        "clustering=Z) (a SciPy linkage over the features or groups), background rows (B, M), "
        "or xaijax.maskers.image(...)"
    )


class OwenPlan(NamedTuple):
    """Every mask of the full-budget recursion and how the scores combine (host, static).

    Attributes:
        intervals: ``(T, J, 2)`` each scored mask as ``J`` leaf intervals ``[lo, hi)`` in
            depth-first leaf order (empty ones have ``lo == hi``); mask 0 is the empty
            coalition, mask 1 the full one.
        node: ``(F,)`` the node each final (unexpanded) entry credits.
        on, off: ``(F,)`` the indices of its two scored masks.
        weight: ``(F,)`` its weight ``2^-depth``.
    """

    intervals: np.ndarray
    node: np.ndarray
    on: np.ndarray
    off: np.ndarray
    weight: np.ndarray


def full_budget(clustering) -> float:
    """Model evaluations of the complete recursion over a (checked) linkage matrix, besides
    ``f(x)`` and the base value: two per expansion, and an internal node at depth ``d`` is
    expanded in ``2^d`` contexts. ``max_evals >= full_budget + 2`` gives exact Owen values.

    A float: a deep, unbalanced hierarchy needs exponentially many (``inf`` past float range).

    Example:
        >>> Z = np.array([[0, 1, 1, 2], [2, 3, 1, 2], [4, 5, 2, 4]], float)
        >>> full_budget(Z)  # the root once, its two children in 2 contexts each
        10.0
    """
    tree = tree_tables(np.asarray(clustering, np.float64))
    depth = tree.depth[_expanded_nodes(tree)]
    with np.errstate(over="ignore"):
        return float(2.0 * np.ldexp(1.0, depth).sum())


def _expanded_nodes(tree: Tree) -> np.ndarray:
    """The nodes the full recursion expands: non-terminal, with every ancestor expanded."""
    N = 2 * tree.num_leaves - 1
    reach = np.zeros(N, bool)
    reach[N - 1] = not tree.terminal[N - 1]
    for u in range(N - 2, tree.num_leaves - 1, -1):  # parents before children
        reach[u] = not tree.terminal[u] and reach[tree.parent[u]]
    return np.flatnonzero(reach)


def owen_plan(clustering) -> OwenPlan:
    """The full-budget recursion of shap's ``owen`` unrolled on the host (cached per hierarchy).

    Entries are expanded level by level; with every entry expanded the order does not change
    the values.

    Example:
        >>> plan = owen_plan(np.array([[0, 1, 1.0, 2]]))
        >>> plan.intervals.shape[0], plan.node.tolist(), plan.weight.tolist()
        (4, [0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5])
    """
    Z = np.ascontiguousarray(clustering, dtype=np.float64)
    return _owen_plan(Z.shape[0] + 1, Z.tobytes())


@register_cache
@functools.lru_cache(maxsize=8)
def _owen_plan(G: int, data: bytes) -> OwenPlan:
    tree = tree_tables(np.frombuffer(data, np.float64).reshape(G - 1, 4))
    D = tree.max_depth
    J = D + 1  # a context has one interval per level; the last slot holds the scored child
    root = 2 * G - 2
    span = np.stack([tree.lo, tree.hi], axis=1)
    full = np.zeros((1, J, 2), np.int64)
    full[0, D] = span[root]
    masks = [np.zeros((1, J, 2), np.int64), full]
    count = 2
    node, ctx = np.array([root]), np.zeros((1, D, 2), np.int64)
    off, on = np.array([0]), np.array([1])
    final = []
    while node.size:
        stop = tree.terminal[node]
        final.append((node[stop], on[stop], off[stop]))
        node, ctx, off, on = node[~stop], ctx[~stop], off[~stop], on[~stop]
        k = node.size
        L, R, d = tree.left[node], tree.right[node], tree.depth[node]
        m10 = np.concatenate([ctx, span[L][:, None]], axis=1)
        m01 = np.concatenate([ctx, span[R][:, None]], axis=1)
        masks.append(np.stack([m10, m01], axis=1).reshape(2 * k, J, 2))
        i10 = count + 2 * np.arange(k)
        i01 = i10 + 1
        count += 2 * k
        # Children in shap's order: left and right with the sibling off, then with it on.
        sib = np.zeros((k, 4, 2), np.int64)
        sib[:, 2], sib[:, 3] = span[R], span[L]
        new_ctx = np.repeat(ctx[:, None], 4, axis=1)
        new_ctx[np.arange(k), :, d] = sib
        node = np.stack([L, R, L, R], axis=1).reshape(-1)
        ctx = new_ctx.reshape(4 * k, D, 2)
        off = np.stack([off, off, i01, i10], axis=1).reshape(-1)
        on = np.stack([i10, i01, on, on], axis=1).reshape(-1)
    fnode, fon, foff = (np.concatenate(a) for a in zip(*final, strict=True))
    return OwenPlan(
        np.concatenate(masks).astype(np.int32),
        fnode.astype(np.int32),
        fon.astype(np.int32),
        foff.astype(np.int32),
        np.ldexp(1.0, -tree.depth[fnode]),
    )


class _TreeArrays(NamedTuple):
    """The hierarchy as device arrays (traced: a new hierarchy of the same shape reuses the
    compiled program)."""

    left: Any
    right: Any
    depth: Any
    lo: Any
    hi: Any
    size: Any
    terminal: Any
    ancestors: Any  # (rounds, 2G) pointer-jumping ancestors, sentinel 2G - 1 (a zero row)


@register_cache
@functools.lru_cache(maxsize=8)
def _hierarchy_arrays(G: int, data: bytes) -> tuple[_TreeArrays, float]:
    """The device tables of a linkage matrix (its bytes) and its :func:`full_budget`."""
    Z = np.frombuffer(data, np.float64).reshape(G - 1, 4)
    return _tree_arrays(tree_tables(Z)), full_budget(Z)


@register_cache
@functools.lru_cache(maxsize=8)
def _element_layout(G: int, data: bytes, shape: tuple, ids: bytes):
    """How masks reach the elements, for leaf ids ``(1, *E)`` shared by every instance: the
    elements' depth-first positions ``(*E)``, or :class:`_Boxes` when every node is a box."""
    tree = tree_tables(np.frombuffer(data, np.float64).reshape(G - 1, 4))
    position = np.asarray(tree.position, np.int32)[np.frombuffer(ids, np.int64).reshape(shape)][0]
    return _leaf_boxes(tree, position) or position


def _tree_arrays(tree: Tree) -> _TreeArrays:
    N = 2 * tree.num_leaves - 1
    anc = np.where(tree.parent == np.arange(N), N, tree.parent)
    anc = np.append(anc, N)
    jumps = []
    for _ in range(max(1, math.ceil(math.log2(tree.max_depth + 1)))):
        jumps.append(anc)
        anc = anc[anc]
    i32 = functools.partial(np.asarray, dtype=np.int32)
    return _TreeArrays(
        i32(tree.left),
        i32(tree.right),
        i32(tree.depth),
        i32(tree.lo),
        i32(tree.hi),
        i32(tree.size),
        tree.terminal.copy(),
        i32(np.stack(jumps)),
    )


def _interval_masks(intervals, position, input_shape):
    """Masks ``(c, *input_shape)`` (True keeps ``x``) from leaf intervals ``(c, J, 2)``.

    ``position`` maps each element (a prefix ``E`` of the input shape) to its leaf's depth-first
    position; trailing input axes follow their element. Two compares per interval and element
    (a difference array and ``cumsum`` would be fewer operations, but XLA:CPU's ``cumsum`` is a
    reduce-window, 7x slower for 10 masks over 3,072 leaves).
    """
    c, J = intervals.shape[:2]
    shape = (c, J) + (1,) * position.ndim
    lo, hi = intervals[..., 0].reshape(shape), intervals[..., 1].reshape(shape)
    at = position[None, None]
    keep = jnp.any((lo <= at) & (at < hi), axis=1)  # (c, *E)
    keep = keep.reshape(keep.shape + (1,) * (len(input_shape) - position.ndim))
    return jnp.broadcast_to(keep, (c,) + tuple(input_shape))


class _Boxes(NamedTuple):
    """The elements of a hierarchy whose every node is a box of elements (shap's image
    hierarchy: recursive halving into rectangles, down to single elements).

    ``corner``: ``(G, k)`` the coordinates (over the first ``k`` input axes) of the element at
    each depth-first leaf position; a node's interval ``[lo, hi)`` is then the box between the
    corners of its first and last leaves (checked on the host by :func:`_leaf_boxes`).
    """

    corner: Any


def _leaf_boxes(tree: Tree, position: np.ndarray) -> _Boxes | None:
    """:class:`_Boxes` when every node of ``tree`` covers the box between its first and last
    leaf's elements, with one element per leaf over ``k >= 2`` axes (``position``: ``(*E)``
    each element's depth-first leaf position); ``None`` otherwise.

    Proof by induction, checked for every internal node ``u``: the boxes of its children lie
    in ``u``'s box, are disjoint, and ``u``'s box holds ``size[u]`` elements, so the children's
    elements (their boxes) fill ``u``'s box exactly. A leaf's box is its element.
    """
    E = position.shape
    G = tree.num_leaves
    if len(E) < 2 or position.size != G:
        return None
    order = np.full(G, -1, np.int64)
    order[position.reshape(-1)] = np.arange(G)
    if (order < 0).any():
        return None  # not one element per leaf
    corner = np.stack(np.unravel_index(order, E), axis=1)  # (G, k)
    a, b = corner[tree.lo], corner[tree.hi - 1]
    lo, hi = np.minimum(a, b), np.maximum(a, b) + 1
    if (np.prod(hi - lo, axis=1) != tree.size).any():
        return None
    u = np.arange(G, 2 * G - 1)
    L, R = tree.left[u], tree.right[u]
    inside = (lo[L] >= lo[u]) & (hi[L] <= hi[u]) & (lo[R] >= lo[u]) & (hi[R] <= hi[u])
    apart = (hi[L] <= lo[R]) | (hi[R] <= lo[L])
    if not (inside.all() and apart.any(axis=1).all()):
        return None
    return _Boxes(corner.astype(np.int32))


def _box_masks(intervals, boxes: _Boxes, input_shape):
    """:func:`_interval_masks` for a hierarchy of boxes (the same booleans).

    Each interval's box comes from its first and last leaf's corners; along each axis ``i``
    every index gets the bit set of the ``J`` boxes that span it (``(c, E_i)`` words), and an
    element is kept when one box spans it along every axis: the ``AND`` of its indices' bit
    sets is not zero. Per element that is ``k - 1`` ``AND`` and one compare per 32 intervals,
    fused by XLA into the masker's ``where`` (no mask is stored), where the compares against
    every element's position cost ``2 J`` (224 x 224 x 3 images, ``J = 19``: 10 masks in 0.35
    ms instead of 3.5 ms on 2 CPU cores).
    """
    corner = boxes.corner
    G, k = corner.shape
    E = tuple(input_shape[:k])
    lo, hi = intervals[..., 0], intervals[..., 1]  # (c, J)
    batch, J = lo.shape[:-1], lo.shape[-1]
    a = corner[jnp.clip(lo, 0, G - 1)]
    b = corner[jnp.clip(hi - 1, 0, G - 1)]
    start = jnp.minimum(a, b)  # (c, J, k)
    stop = jnp.where((hi > lo)[..., None], jnp.maximum(a, b) + 1, start)  # empty: no element
    keep = None
    for w in range(0, J, 32):
        m = min(32, J - w)
        bit = jnp.left_shift(jnp.uint32(1), jnp.arange(m, dtype=jnp.uint32))
        bit = bit.reshape((1,) * (lo.ndim - 1) + (m, 1))
        both = None
        for i, n in enumerate(E):
            at = jnp.arange(n).reshape((1,) * lo.ndim + (n,))
            first = start[..., w : w + 32, i, None]
            spans = (first <= at) & (at < stop[..., w : w + 32, i, None])  # (c, 32, E_i)
            bits = jnp.sum(jnp.where(spans, bit, jnp.uint32(0)), axis=-2)  # (c, E_i)
            bits = bits.reshape(batch + (1,) * i + (n,) + (1,) * (k - 1 - i))
            both = bits if both is None else both & bits
        hit = both != 0
        keep = hit if keep is None else keep | hit
    keep = keep.reshape(keep.shape + (1,) * (len(input_shape) - k))
    return jnp.broadcast_to(keep, batch + tuple(input_shape))


def _element_masks(intervals, layout, input_shape):
    """Masks ``(c, *input_shape)`` from leaf intervals ``(c, J, 2)``: by boxes when ``layout``
    is :class:`_Boxes`, else by each element's leaf position (:func:`_interval_masks`)."""
    if isinstance(layout, _Boxes):
        return _box_masks(intervals, layout, input_shape)
    return _interval_masks(intervals, layout, input_shape)


def _lower(credit, tree: _TreeArrays, num_leaves: int):
    """shap's ``lower_credit``: a node's credit shared equally by the leaves under it.

    Leaf ``g`` gets ``sum over u above g (g included) of credit[u] / size[u]``, summed up the
    tree by pointer jumping (``log2(depth + 1)`` gathers). ``credit``: ``(2G - 1, K)``.
    """
    acc = credit / tree.size[:, None].astype(credit.dtype)
    acc = jnp.concatenate([acc, jnp.zeros_like(acc[:1])])
    for r in range(tree.ancestors.shape[0]):
        acc = acc + acc[tree.ancestors[r]]
    return acc[:num_leaves]


def _queue_order(diff, target):
    """``|diff|`` over the outputs as shap orders its queue: the explained output (``targets``)
    or, by default, the largest over all outputs."""
    a = jnp.abs(diff)
    if target is None:
        return a.max(axis=-1)
    return jnp.take(a, target, axis=-1)


def _scorer(model, params, x, fill, position, num_leaves, batch_size):
    rows, weights = fill(x)

    def score(intervals):
        c = intervals.shape[0]

        def masks(idx):
            return _element_masks(intervals[idx], position, x.shape)

        v = coalition_values(model, params, x, rows, weights, masks, c, batch_size, fill=fill)
        return v.reshape(c, -1), output_status("identity", v, rows=True)

    return score


@functools.partial(jax.jit, static_argnames=("model", "num_leaves", "batch_size", "mesh"))
def _full(model, params, fill, X, positions, position, plan, tree, *, num_leaves, batch_size, mesh):
    T = plan.intervals.shape[0]

    def local(sharded, shared):
        one = functools.partial(_full_one, model, shared, num_leaves, batch_size)
        return map_instances(one, sharded, T * fill.num_rows, batch_size)

    shared = (params, fill, position, plan, tree)
    return over_instances(local, (X, positions), shared, mesh=mesh)


def _full_one(model, shared, num_leaves, batch_size, args):
    params, fill, position, plan, tree = shared
    x, pos = args
    pos = position if pos is None else pos
    score = _scorer(model, params, x, fill, pos, num_leaves, batch_size)
    v, status = score(plan.intervals)  # (T, K)
    credit = jax.ops.segment_sum(
        plan.weight[:, None].astype(v.dtype) * (v[plan.on] - v[plan.off]),
        plan.node,
        num_segments=2 * num_leaves - 1,
    )
    values = _lower(credit, tree, num_leaves)
    return values, v[0], status.max(), jnp.full((), v.shape[0] - 2, jnp.int32)


class _Queue(NamedTuple):
    node: Any  # (cap,) int32
    ctx: Any  # (cap, D, 2) int32: the context's leaf interval at each level (empty if off)
    off: Any  # (cap, K) v(context)
    on: Any  # (cap, K) v(context + node)
    order: Any  # (cap,) the queue priority; -inf when not waiting to be expanded
    expanded: Any  # (cap,) bool
    count: Any  # entries used
    evals: Any  # model evaluations spent (shap's eval_count)
    status: Any  # output_status of every score used


@functools.partial(
    jax.jit,
    static_argnames=(
        "model",
        "num_leaves",
        "max_depth",
        "capacity",
        "per_step",
        "batch_size",
        "mesh",
    ),
)
def _budgeted(
    model,
    params,
    fill,
    X,
    positions,
    position,
    targets,
    tree,
    budget,
    *,
    num_leaves,
    max_depth,
    capacity,
    per_step,
    batch_size,
    mesh,
):
    static = _QueueShape(num_leaves, max_depth, capacity, per_step, batch_size)

    def local(sharded, shared):
        run = functools.partial(_run_queues, model, shared, static)
        return _map_instance_chunks(run, sharded, 2 * per_step * fill.num_rows, batch_size)

    shared = (params, fill, position, tree, budget)
    return over_instances(local, (X, positions, targets), shared, mesh=mesh)


class _QueueShape(NamedTuple):
    num_leaves: int
    max_depth: int
    capacity: int
    per_step: int
    batch_size: int


def _map_instance_chunks(fn, xs, rows_per_instance: int, batch_size: int):
    """``fn`` (on a batch of instances) over chunks of as many instances as fit in
    ``batch_size`` model rows, in one compiled loop (:func:`map_instances`, with ``fn`` taking
    the chunk whole instead of vmapped)."""
    n = jax.tree.leaves(xs)[0].shape[0]
    per = max(1, int(batch_size) // max(1, int(rows_per_instance)))
    if per >= n:
        return fn(xs)
    per = balanced_chunk(n, per)
    chunks = -(-n // per)
    rows = jnp.minimum(jnp.arange(chunks * per), n - 1)
    xs = jax.tree.map(lambda a: a[rows].reshape((chunks, per) + a.shape[1:]), xs)
    out = jax.lax.map(fn, xs)
    return jax.tree.map(lambda a: a.reshape((chunks * per,) + a.shape[2:])[:n], out)


def _run_queues(model, shared, static: _QueueShape, xs):
    """The best-first recursion for a batch of instances in one ``while_loop``.

    The loop runs outside ``vmap`` and steps every instance while any has budget and queued
    entries (a finished instance's step changes nothing): a vmapped loop would carry a
    per-instance predicate and select the whole queue of every instance at every step.
    """
    params, fill, position, tree, budget = shared
    X, positions, targets = xs
    G, D, cap, P, batch_size = static
    root = 2 * G - 2
    span = jnp.stack([tree.lo, tree.hi], axis=1)  # (2G - 1, 2)

    def scorer(x, pos):
        pos = position if pos is None else pos
        return _scorer(model, params, x, fill, pos, G, batch_size)

    def start(x, pos):
        ends = jnp.zeros((2, D + 1, 2), jnp.int32).at[1, D].set(span[root])
        v0, status0 = scorer(x, pos)(ends)  # v(empty), v(all)
        K = v0.shape[1]
        return _Queue(
            node=jnp.zeros(cap, jnp.int32).at[0].set(root),
            ctx=jnp.zeros((cap, D, 2), jnp.int32),
            off=jnp.zeros((cap, K), v0.dtype).at[0].set(v0[0]),
            on=jnp.zeros((cap, K), v0.dtype).at[0].set(v0[1]),
            order=jnp.full(cap, -jnp.inf, v0.dtype)
            .at[0]
            .set(jnp.where(tree.terminal[root], -jnp.inf, 0.0)),
            expanded=jnp.zeros(cap, bool),
            count=jnp.ones((), jnp.int32),
            evals=jnp.zeros((), jnp.int32),
            status=status0.max(),
        )

    def waiting(q):
        return (q.evals < budget) & jnp.any(q.order > -jnp.inf)

    def step(q, x, pos, target):
        # shap pops entries while its batch holds fewer than `batch_size` masks and
        # evals + masks < budget; ties (equal priority) go to the earlier entry here, to a
        # random one in shap.
        num = jnp.minimum(jnp.sum(q.order > -jnp.inf), (budget - q.evals + 1) // 2)
        num = jnp.clip(num, 0, P)
        # NaN scores (refused after the call) must not stall the queue.
        _, idx = jax.lax.top_k(jnp.where(q.order > -jnp.inf, q.order, -jnp.inf), P)
        valid = jnp.arange(P) < num
        u = q.node[idx]
        L, R, d = tree.left[u], tree.right[u], tree.depth[u]
        ctx = q.ctx[idx]  # (P, D, 2)
        m10 = jnp.concatenate([ctx, span[L][:, None]], axis=1)
        m01 = jnp.concatenate([ctx, span[R][:, None]], axis=1)
        v, status = scorer(x, pos)(jnp.stack([m10, m01], axis=1).reshape(2 * P, D + 1, 2))
        K = q.on.shape[1]
        v = v.reshape(P, 2, K)
        f10, f01 = v[:, 0], v[:, 1]
        off, on = q.off[idx], q.on[idx]
        child = jnp.stack([L, R, L, R], axis=1)  # (P, 4)
        zero = jnp.zeros_like(span[L])
        sib = jnp.stack([zero, zero, span[R], span[L]], axis=1)  # (P, 4, 2)
        level = jnp.arange(D)[None, None, :, None] == d[:, None, None, None]
        cctx = jnp.where(level, sib[:, :, None, :], ctx[:, None])  # (P, 4, D, 2)
        coff = jnp.stack([off, off, f01, f10], axis=1)  # (P, 4, K)
        con = jnp.stack([f10, f01, on, on], axis=1)
        weight = jnp.exp2(-(d + 1).astype(v.dtype))
        corder = jnp.where(
            tree.terminal[child], -jnp.inf, _queue_order(con - coff, target) * weight[:, None]
        )
        slot = q.count + 4 * jnp.arange(P)[:, None] + jnp.arange(4)[None, :]
        dest = jnp.where(valid[:, None], slot, cap).reshape(-1)
        done = jnp.where(valid, idx, cap)

        def put(a, new):
            return a.at[dest].set(new.reshape((4 * P,) + a.shape[1:]), mode="drop")

        used = jnp.where(jnp.repeat(valid, 2), status, 0)
        return _Queue(
            node=put(q.node, child),
            ctx=put(q.ctx, cctx),
            off=put(q.off, coff),
            on=put(q.on, con),
            order=put(q.order.at[done].set(-jnp.inf, mode="drop"), corder),
            expanded=q.expanded.at[done].set(True, mode="drop"),
            count=q.count + 4 * num,
            evals=q.evals + 2 * num,
            status=jnp.maximum(q.status, used.max()),
        )

    def credit(q):
        final = (jnp.arange(cap) < q.count) & ~q.expanded
        weight = jnp.exp2(-tree.depth[q.node].astype(q.on.dtype))
        c = jax.ops.segment_sum(
            jnp.where(final, weight, 0.0)[:, None] * (q.on - q.off),
            q.node,
            num_segments=2 * G - 1,
        )
        return _lower(c, tree, G)

    q = jax.vmap(start)(X, positions)
    q = jax.lax.while_loop(
        lambda q: jnp.any(jax.vmap(waiting)(q)),
        lambda q: jax.vmap(step)(q, X, positions, targets),
        q,
    )
    return jax.vmap(credit)(q), q.off[:, 0], q.status, q.evals


def _check_int(name: str, value, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {least}; got {value!r}")
    if value < least:
        raise ValueError(f"{name} must be an int >= {least}; got {value}")
    return int(value)


def _owen_values(
    model,
    params,
    X,
    fill,
    Z,
    ids,
    target_indices,
    *,
    max_evals: int,
    evals_per_step: int,
    batch_size: int,
    mesh,
    plan: str | None = None,
):
    """Owen values ``(n, G, K)``, base values ``(n, K)``, output status ``(n,)`` and the model
    evaluations spent ``(n,)`` (besides ``f(x)`` and the base value).

    ``plan`` forces ``"full"`` or ``"budgeted"`` (tests); by default the full plan runs when
    ``max_evals`` covers it.
    """
    Z = np.ascontiguousarray(Z, dtype=np.float64)
    data = Z.tobytes()  # one key (copied and hashed once) for the two caches below
    tree = tree_tables(Z)
    G, D = tree.num_leaves, tree.max_depth
    budget = max_evals - 2  # shap counts f(x) and the base value in max_evals
    itemsize = X.dtype.itemsize
    row_bytes = int(np.prod(X.shape[1:])) * itemsize
    # The host tables of a large hierarchy (an image's, 300k nodes) take tens of ms to build:
    # cached, as the plan, so that repeated calls pay for the model only.
    arrays, total = _hierarchy_arrays(G, data)
    # Each element's leaf as its depth-first position: shared (*E) or per instance (n, *E).
    if ids.shape[0] == 1:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        positions, position = None, _element_layout(G, data, ids.shape, ids.tobytes())
    else:
        positions, position = np.asarray(tree.position, np.int32)[ids], None
    if plan is None:
        plan = "full" if budget >= total else "budgeted"
    if plan == "full":
        check_work(
            "max_evals",
            max_evals,
            int(min(total + 2, 2.0**62)) * (D + 1) * 2 * 4,
            batch_size,
            row_bytes,
            "a plan of every mask of the full recursion",
        )
        steps = owen_plan(Z)
        return _full(
            model,
            params,
            fill,
            X,
            positions,
            position,
            steps,
            arrays,
            num_leaves=G,
            batch_size=batch_size,
            mesh=mesh,
        )
    per_step = -(-evals_per_step // 2)
    expansions = min(-(-budget // 2), math.ceil(min(total, 2.0**62) / 2))
    # Room for every entry the budget can queue, rounded up to a power of two so that nearby
    # budgets share one compiled program (the budget itself is a traced argument).
    capacity = 1 + 4 * max(8, 1 << (max(1, expansions) - 1).bit_length())
    check_work(
        "max_evals",
        max_evals,
        capacity * (D * 2 * 4 + 4 * 4 + 8),
        batch_size,
        row_bytes,
        f"a queue of {capacity} entries with a context of {D} levels each",
    )
    targets = None if target_indices is None else np.asarray(target_indices, np.int32)
    return _budgeted(
        model,
        params,
        fill,
        X,
        positions,
        position,
        targets,
        arrays,
        np.int32(budget),
        num_leaves=G,
        max_depth=D,
        capacity=capacity,
        per_step=per_step,
        batch_size=batch_size,
        mesh=mesh,
    )
