"""Hierarchies of feature groups: scipy linkage matrices, checked, and shap's image split.

A hierarchy over ``G`` leaf groups is a scipy-style linkage matrix ``Z`` of shape ``(G - 1, 4)``:
row ``i`` merges nodes ``Z[i, 0]`` and ``Z[i, 1]`` (leaves ``0..G-1``, row ``j``'s merge is node
``G + j``) at distance ``Z[i, 2]`` into a node of ``Z[i, 3]`` leaves; the root is node
``2G - 2``. This is what ``scipy.cluster.hierarchy.linkage`` returns and what
``shap.maskers.Partition(clustering=Z)`` and ``shap.PartitionExplainer`` read. A node with a
negative distance is not split further (shap's convention).

:func:`tree_tables` turns ``Z`` into the arrays the Owen-value recursion walks (children, depth,
the leaves under each node as one interval of a depth-first leaf order), and
:func:`image_hierarchy` builds ``shap.maskers.Image``'s recursive rectangle split.
"""

from __future__ import annotations

import functools
import heapq
from typing import NamedTuple

import numpy as np

from xaijax.core.registry import register_cache

__all__ = [
    "Tree",
    "check_clustering",
    "feature_hierarchy",
    "image_hierarchy",
    "sequence_hierarchy",
    "tree_tables",
]


class Tree(NamedTuple):
    """A binary hierarchy as arrays over its ``2G - 1`` nodes (host NumPy, static).

    Attributes:
        num_leaves: ``G``.
        left, right: ``(2G-1,)`` children of each node (a leaf's are itself).
        parent: ``(2G-1,)`` each node's parent (the root's is itself).
        depth: ``(2G-1,)`` edges from the root (root 0).
        size: ``(2G-1,)`` leaves under each node.
        lo, hi: ``(2G-1,)`` the leaves under a node are positions ``lo..hi-1`` of ``order``.
        position: ``(G,)`` each leaf's position in the depth-first leaf order.
        terminal: ``(2G-1,)`` whether the recursion stops at the node (a leaf, or a negative
            distance).
        max_depth: the largest depth of any node.
    """

    num_leaves: int
    left: np.ndarray
    right: np.ndarray
    parent: np.ndarray
    depth: np.ndarray
    size: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    position: np.ndarray
    terminal: np.ndarray
    max_depth: int


def check_clustering(clustering, num_leaves: int, *, name: str = "clustering") -> np.ndarray:
    """``clustering`` checked as a linkage matrix over ``num_leaves`` leaf groups.

    Raises:
        ValueError: naming ``name``: not a ``(G - 1, 4)`` numeric array, non-integer or
            out-of-range child ids, a node merged twice or never, or counts (column 3) that are
            not the number of leaves under the node.

    Example:
        >>> Z = np.array([[0, 1, 0.5, 2], [2, 3, 1.0, 3]])
        >>> check_clustering(Z, 3).shape
        (2, 4)
    """
    G = int(num_leaves)
    try:
        Z = np.asarray(clustering, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a scipy linkage matrix, a numeric array of shape ({G - 1}, 4); "
            f"got {type(clustering).__name__}"
        ) from None
    if G < 2:
        raise ValueError(f"{name}: a hierarchy needs at least 2 leaf groups; got {G}")
    if Z.shape != (G - 1, 4):
        raise ValueError(
            f"{name} must be a scipy linkage matrix of shape (G - 1, 4) = ({G - 1}, 4) for "
            f"G={G} leaf groups (features); got shape {Z.shape}"
        )
    if not np.all(np.isfinite(Z)):
        raise ValueError(f"{name} must be finite")
    kids = Z[:, :2]
    if np.any(kids != np.round(kids)):
        raise ValueError(f"{name}: columns 0 and 1 (the merged nodes) must hold integer ids")
    kids = kids.astype(np.int64)
    row_node = G + np.arange(G - 1)
    if np.any(kids < 0) or np.any(kids >= row_node[:, None]):
        raise ValueError(
            f"{name}: row i may merge only leaves (0..{G - 1}) and nodes of earlier rows "
            f"(< {G} + i), as scipy's linkage does"
        )
    used = np.bincount(kids.ravel(), minlength=2 * G - 1)
    if np.any(used[: 2 * G - 2] != 1):
        bad = int(np.flatnonzero(used[: 2 * G - 2] != 1)[0])
        raise ValueError(
            f"{name}: every node but the root must be merged exactly once; node {bad} is merged "
            f"{int(used[bad])} times"
        )
    size = np.ones(2 * G - 1, np.int64)
    for i in range(G - 1):
        size[G + i] = size[kids[i, 0]] + size[kids[i, 1]]
    if not np.array_equal(Z[:, 3], size[G:]):
        bad = int(np.flatnonzero(Z[:, 3] != size[G:])[0])
        raise ValueError(
            f"{name}: column 3 must count the leaves under each merge; row {bad} says "
            f"{Z[bad, 3]:g}, its children hold {int(size[G + bad])}"
        )
    return Z


def tree_tables(Z: np.ndarray) -> Tree:
    """The :class:`Tree` of a checked linkage matrix (cached by value).

    Example:
        >>> t = tree_tables(np.array([[0, 1, 0.5, 2], [2, 3, 1.0, 3]]))
        >>> t.depth.tolist(), t.position.tolist()
        ([2, 2, 1, 1, 0], [1, 2, 0])
    """
    Z = np.ascontiguousarray(Z, dtype=np.float64)
    return _tree_tables(Z.shape[0] + 1, Z.tobytes())


@register_cache
@functools.lru_cache(maxsize=16)
def _tree_tables(G: int, data: bytes) -> Tree:
    Z = np.frombuffer(data, np.float64).reshape(G - 1, 4)
    N = 2 * G - 1
    kids = Z[:, :2].astype(np.int64)
    left = np.arange(N)
    right = np.arange(N)
    left[G:], right[G:] = kids[:, 0], kids[:, 1]
    parent = np.arange(N)
    parent[kids[:, 0]] = G + np.arange(G - 1)
    parent[kids[:, 1]] = G + np.arange(G - 1)
    size = np.ones(N, np.int64)
    size[G:] = Z[:, 3].astype(np.int64)
    depth = np.zeros(N, np.int64)
    lo = np.zeros(N, np.int64)
    # Children always have smaller ids than their parent, so one pass from the root down
    # visits every parent before its children.
    for u in range(N - 1, G - 1, -1):
        a, b = left[u], right[u]
        depth[a] = depth[b] = depth[u] + 1
        lo[a] = lo[u]
        lo[b] = lo[u] + size[a]
    hi = lo + size
    terminal = np.ones(N, bool)
    terminal[G:] = Z[:, 2] < 0
    return Tree(
        G, left, right, parent, depth, size, lo, hi, lo[:G].copy(), terminal, int(depth.max())
    )


@register_cache
@functools.lru_cache(maxsize=8)
def _image_hierarchy(shape: tuple[int, int, int]) -> np.ndarray:
    H, W, C = shape
    M = H * W * C
    Z = np.zeros((M - 1, 4))
    # shap's heap order: the largest box first, ties by (xmin, xmax, ymin, ...); each popped box
    # is numbered downwards from M - 2, leaves continuing below zero (ids ind + M).
    queue = [(0, 0, H, 0, W, 0, C, -1, False)]
    ind = M - 2
    while queue:
        _, x0, x1, y0, y1, z0, z1, parent, is_left = heapq.heappop(queue)
        if parent >= 0:
            Z[parent, 0 if is_left else 1] = ind + M
        xw, yw, zw = x1 - x0, y1 - y0, z1 - z0
        if xw > 1 or yw > 1 or zw > 1:
            a, b = [x0, x1, y0, y1, z0, z1], [x0, x1, y0, y1, z0, z1]
            if xw >= yw and xw > 1:
                a[1] = b[0] = x0 + xw // 2
            elif yw > 1:
                a[3] = b[2] = y0 + yw // 2
            else:
                a[5] = b[4] = z0 + zw // 2
            for box, is_l in ((a, True), (b, False)):
                size = (box[1] - box[0]) * (box[3] - box[2]) * (box[5] - box[4])
                heapq.heappush(queue, (-size, *box, ind, is_l))
        ind -= 1
    size = np.ones(2 * M - 1)
    for i in range(M - 1):
        size[M + i] = size[int(Z[i, 0])] + size[int(Z[i, 1])]
    Z[:, 3] = size[M:]
    Z.setflags(write=False)
    return Z


def image_hierarchy(shape) -> np.ndarray:
    """``shap.maskers.Image(mask_value, shape).clustering``: recursive halving into rectangles.

    The box ``(H, W, C)`` is split in half along its longest spatial side (rows on a tie,
    channels once it is a single pixel), recursively down to single elements, and the merges
    are numbered as shap numbers them. Leaf ``i`` stands for element ``i`` of the flattened
    image, as shap's masker reads a mask; shap's construction numbers the boxes it splits from
    the opposite corner, so the split is the recursive halving of the image rotated by 180
    degrees (a 5-row image is split 3 + 2 from the top, not 2 + 3). Reproduced exactly, so
    Owen values over it equal ``shap.PartitionExplainer``'s.

    Args:
        shape: ``(H, W, C)``.

    Returns:
        ``(H*W*C - 1, 4)`` float linkage matrix (read-only; cached per shape).

    Example:
        >>> image_hierarchy((1, 2, 1)).tolist()
        [[1.0, 0.0, 0.0, 2.0]]
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1 or shape[0] * shape[1] * shape[2] < 2:
        raise ValueError(
            f"shape must be an image shape (H, W, C) with at least 2 elements; got {shape}"
        )
    return _image_hierarchy(shape)


def sequence_hierarchy(length: int) -> np.ndarray:
    """Contiguous spans of a sequence of ``length`` tokens (or groups), halved recursively: the
    one-row case of :func:`image_hierarchy` (``(1, length, 1)``), so a span's halves are the
    players at each level.

    Example:
        >>> sequence_hierarchy(3).tolist()  # tokens 0 and 1 merge, then token 2 joins them
        [[1.0, 0.0, 0.0, 2.0], [2.0, 3.0, 0.0, 3.0]]
    """
    length = int(length)
    if length < 2:
        raise ValueError(f"a hierarchy needs at least 2 tokens; got {length}")
    return image_hierarchy((1, length, 1))


def feature_hierarchy(rows, *, metric: str = "correlation") -> np.ndarray:
    """``shap.maskers.Partition(rows)``'s default hierarchy of the ``M`` features: single
    linkage of the ``metric`` distances between the columns of ``rows`` (``(B, M)``).

    shap adds ``1e-8`` Gaussian noise to the rows first (from NumPy's global random state); here
    the distances are exact and a column with no variance (an undefined correlation) is at
    distance 1 from every other, so the hierarchy is the same on every call.

    Example:
        >>> rows = np.array([[0.0, 0.1, 5.0], [1.0, 1.1, 3.0], [2.0, 2.3, 4.0]])
        >>> feature_hierarchy(rows)[:, :2].tolist()  # columns 0 and 1 first
        [[0.0, 1.0], [2.0, 3.0]]
    """
    from scipy.cluster import hierarchy
    from scipy.spatial import distance

    X = np.asarray(rows, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] < 2:
        raise ValueError(
            f"a feature hierarchy needs rows (B, M) with M >= 2 features; got shape {X.shape}"
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        d = distance.pdist(X.T, metric)
    return hierarchy.single(np.nan_to_num(d, nan=1.0))
