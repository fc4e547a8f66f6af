"""Shapley interaction indices (SII, k-SII, STII, FSII, BII), exact or sampled.

Every index here is linear in the coalition values and symmetric in the players, so each one is
a weighted sum of the Möbius coefficients ``m(T) = sum_{L ⊆ T} (-1)^{|T|-|L|} v(L)`` over the
supersets of the interaction: ``I(S) = sum_{T ⊇ S} w[|S|, |T|] m(T)``
(:func:`moebius_weights`). The exact method scores all ``2^M`` coalitions once, takes the Möbius
transform and one weighted superset sum per order; the sampling methods estimate the same
numbers from random permutations (SII, k-SII, STII), a weighted regression (FSII) or
stratified coalition samples (SII, STII, BII).

Results are :class:`~xaijax.core.explanation.Explanation` of kind ``"interaction"``: ``values``
is the pairwise matrix in shap's layout (``shap_interaction_values``): ``(n, M, M[, K])``, the
order-1 values on the diagonal and half of each pair's value off it, so the matrix of an
efficient index at ``max_order=2`` sums to ``f(x) - base``. Every order ``k`` is in
``extras["order_k"]``, a dense symmetric ``(n, M, ..., M[, K])`` tensor with ``k`` player axes
(zero where a player repeats); ``extras["order_0"]`` is the index's value of the empty set.
"""

# jaxtyping shape strings such as "*n m" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import ArrayLike, Float, Key, UInt32

from xaijax.core import contract
from xaijax.core.batching import check_mesh, map_instances, over_instances
from xaijax.core.contract import check_choice, check_int, instance_keys
from xaijax.core.explanation import Explanation
from xaijax.core.lstsq import weighted_lstsq
from xaijax.core.masking import Background, Masker, coalition_values
from xaijax.core.registry import explainer, register_cache
from xaijax.core.targets import Targets, select_outputs
from xaijax.shapley.coalitions import (
    apply_link,
    check_work,
    group_args,
    on_elements,
    output_status,
    prepare,
    random_orders,
    random_subsets,
    ranks_of,
    usable_outputs,
)
from xaijax.shapley.exact import MAX_EXACT_FEATURES
from xaijax.shapley.kernel import coalition_plan

__all__ = [
    "INDICES",
    "METHODS",
    "shapley_interactions",
    "moebius_weights",
    "moebius_transform",
    "aggregate_k_sii",
    "svarm_coefficients",
]

INDICES = ("SII", "k-SII", "STII", "FSII", "BII")
# The indices each method estimates; "exact" computes them all.
METHODS = {
    "exact": INDICES,
    "permutation": ("SII", "k-SII", "STII"),
    "kernel": ("FSII",),
    "svarm": ("SII", "STII", "BII"),
}
# Indices whose orders 1..max_order sum to v(N) - v(empty) (their order 0 is v(empty)).
EFFICIENT = ("k-SII", "STII", "FSII")
# Most bytes of dense order tensors per instance (M^k entries for order k).
_HOST_CHUNK_BYTES = 2**28


@register_cache
@functools.lru_cache(maxsize=64)
def moebius_weights(index: str, M: int, max_order: int) -> np.ndarray:
    """``w[s, t]``: an index as Möbius sums, ``I(S) = sum_{T ⊇ S} w[|S|, |T|] m(T)``.

    Exact rationals (Bernoulli numbers and binomials), returned as float64 ``(max_order + 1,
    M + 1)``; rows ``s`` are the interaction sizes ``0..max_order``, columns the superset sizes.

    * SII (Grabisch & Roubens): ``1 / (t - s + 1)``; BII: ``2^-(t - s)``.
    * k-SII: the Bernoulli aggregation of SII up to order ``k``,
      ``sum_{j=0}^{min(k, t) - s} C(t - s, j) B_j / (t - s - j + 1)``; order 0 is ``v(∅)``.
    * STII of order ``k``: ``m(S)`` below ``k``, ``1 / C(t, k)`` at ``k``.
    * FSII of order ``k`` (Tsai et al., Theorem 19): ``m(S)`` plus, for ``t > k``,
      ``(-1)^(k-s) s / (k + s) C(k, s) C(t - 1, k) / C(t + k - 1, k + s)``.

    Example:
        >>> moebius_weights("SII", 3, 2)[2].tolist()
        [0.0, 0.0, 1.0, 0.5]
    """
    w = [[Fraction(0)] * (M + 1) for _ in range(max_order + 1)]
    k = max_order
    bern = _bernoulli(k)
    for s in range(max_order + 1):
        for t in range(s, M + 1):
            if index == "SII":
                w[s][t] = Fraction(1, t - s + 1)
            elif index == "BII":
                w[s][t] = Fraction(1, 2 ** (t - s))
            elif s == 0:
                w[s][t] = Fraction(int(t == 0))  # efficient indices: order 0 is v(empty)
            elif index == "k-SII":
                w[s][t] = sum(
                    (
                        math.comb(t - s, j) * bern[j] / (t - s - j + 1)
                        for j in range(min(k, t) - s + 1)
                    ),
                    Fraction(0),
                )
            elif index == "STII":
                w[s][t] = Fraction(int(t == s)) if s < k else Fraction(1, math.comb(t, k))
            elif index == "FSII":
                if t <= k:
                    w[s][t] = Fraction(int(t == s))
                else:
                    w[s][t] = (
                        (-1) ** (k - s)
                        * Fraction(s, k + s)
                        * math.comb(k, s)
                        * Fraction(math.comb(t - 1, k), math.comb(t + k - 1, k + s))
                    )
            else:
                raise ValueError(f"index must be one of {INDICES}; got {index!r}")
    return np.array([[float(x) for x in row] for row in w])


def _bernoulli(k: int) -> list[Fraction]:
    """Bernoulli numbers ``B_0..B_k`` with ``B_1 = -1/2`` (as k-SII uses them)."""
    B = [Fraction(1)]
    for m in range(1, k + 1):
        B.append(-sum((math.comb(m + 1, j) * B[j] for j in range(m)), Fraction(0)) / (m + 1))
    return B


def moebius_transform(v: np.ndarray, M: int) -> np.ndarray:
    """The Möbius transform of coalition values over the last-but-output axes, in float64.

    ``v``: ``(n, 2^M, *out)``, coalition ``c``'s player ``j`` present when bit ``M - 1 - j`` of
    ``c`` is set. Returns ``m`` of the same shape.

    Example:
        >>> import numpy as np
        >>> v = np.array([[0.0, 1.0, 2.0, 5.0]])  # v(∅), v({1}), v({0}), v({0, 1})
        >>> moebius_transform(v, 2).tolist()
        [[0.0, 1.0, 2.0, 2.0]]
    """
    n, out = v.shape[0], v.shape[2:]
    g = np.array(v, np.float64).reshape((n,) + (2,) * M + out)
    for j in range(M):
        lo = (slice(None),) * (j + 1) + (0,)
        hi = (slice(None),) * (j + 1) + (1,)
        g[hi] -= g[lo]
    return g.reshape(v.shape)


def _superset_sums(u: np.ndarray, M: int) -> np.ndarray:
    """``out[S] = sum_{T ⊇ S} u[T]`` over the coalition axis (axis 1), in place on a copy."""
    n, out = u.shape[0], u.shape[2:]
    g = np.array(u, np.float64).reshape((n,) + (2,) * M + out)
    for j in range(M):
        lo = (slice(None),) * (j + 1) + (0,)
        hi = (slice(None),) * (j + 1) + (1,)
        g[lo] += g[hi]
    return g.reshape(u.shape)


@register_cache
@functools.lru_cache(maxsize=64)
def _dense_positions(M: int, s: int) -> tuple[np.ndarray, np.ndarray]:
    """For the dense order-``s`` tensor ``(M,)*s``: each entry's coalition index and whether
    its players are distinct."""
    grids = np.indices((M,) * s).reshape(s, -1)
    pos = np.zeros(grids.shape[1], np.int64)
    for g in grids:
        pos = pos | (np.int64(1) << (M - 1 - g).astype(np.int64))  # repeats: a smaller set
    distinct = np.ones(grids.shape[1], bool)
    for a, b in itertools.combinations(range(s), 2):
        distinct &= grids[a] != grids[b]
    return pos.reshape((M,) * s), distinct.reshape((M,) * s)


def _popcounts(M: int) -> np.ndarray:
    return np.indices((2,) * M).reshape(M, -1).sum(axis=0)


def _exact_orders(v: np.ndarray, M: int, index: str, max_order: int) -> list[np.ndarray]:
    """Every order ``0..max_order`` of ``index`` from coalition values ``v: (n, 2^M, *out)``,
    float64: ``[(n, *out), (n, M, *out), (n, M, M, *out), ...]``."""
    n, out = v.shape[0], v.shape[2:]
    m = moebius_transform(v, M)
    w = moebius_weights(index, M, max_order)
    sizes = _popcounts(M)
    orders = []
    for s in range(max_order + 1):
        weight = w[s][sizes].reshape((1, -1) + (1,) * len(out))
        sums = _superset_sums(m * weight, M)
        if s == 0:
            orders.append(sums[:, 0])
            continue
        pos, distinct = _dense_positions(M, s)
        dense = sums[:, pos.reshape(-1)].reshape((n,) + pos.shape + out)
        orders.append(dense * distinct.reshape((1,) + distinct.shape + (1,) * len(out)))
    return orders


def aggregate_k_sii(sii: Sequence, max_order: int) -> list:
    """k-SII from SII orders ``0..k`` (dense symmetric tensors with the instance axis first):
    ``k-SII(S) = sum_{S' ⊇ S, |S'| <= k} B_{|S'| - |S|} SII(S')``; order 0 becomes ``sii[0]``'s
    place-holder unchanged (the caller sets ``v(∅)``).

    Example:
        >>> import numpy as np
        >>> sii = [np.zeros(1), np.array([[1.0, 2.0]]), np.array([[[0.0, 0.4], [0.4, 0.0]]])]
        >>> [a.tolist() for a in aggregate_k_sii(sii, 2)[1:]]
        [[[0.8, 1.8]], [[[0.0, 0.4], [0.4, 0.0]]]]
    """
    bern = [float(b) for b in _bernoulli(max_order)]
    out = [sii[0]]
    for s in range(1, max_order + 1):
        total = sii[s]
        for extra in range(1, max_order - s + 1):
            higher = sii[s + extra]
            # The s + extra player axes follow the instance axis; sum the last `extra` of them.
            axes = tuple(range(1 + s, 1 + s + extra))
            total = total + bern[extra] / math.factorial(extra) * higher.sum(axis=axes)
        out.append(total)
    return out


@explainer(kind="interaction", inputs="tabular", reference="background", random=True)
def shapley_interactions(
    f: Callable,
    X: Float[ArrayLike, "*n m"],
    background: Float[ArrayLike, "b m"] | Background | None = None,
    *,
    index: str = "SII",
    max_order: int = 2,
    method: str = "exact",
    key: Key[ArrayLike, "*n"] | UInt32[ArrayLike, "*n 2"] | None = None,
    budget: int | None = None,
    targets: Targets = None,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    link: str = "identity",
    background_weights: Float[ArrayLike, " b"] | None = None,
    feature_names: Sequence[str] | None = None,
    groups: ArrayLike | None = None,
    masker: Masker | None = None,
) -> Explanation:
    """Shapley interaction indices of ``f`` at ``X`` for every order up to ``max_order``.

    The game is exact_shapley's interventional one, ``v(S) = E_b[f(x_S, b_rest)]``. Indices
    (shapiq's names): ``"SII"`` the Shapley interaction index (its pairs are shap's interaction
    values, its order 1 the Shapley values), ``"k-SII"`` its efficient aggregation to order
    ``k = max_order`` (``"2-SII"`` is exactly shap's ``shap_interaction_values`` layout),
    ``"STII"`` Shapley-Taylor, ``"FSII"`` Faith-Shap and ``"BII"`` the Banzhaf interaction
    index. k-SII, STII and FSII are efficient: all their orders sum to ``v(N) - v(∅)``.

    Methods:

    * ``"exact"``: one enumeration of the ``2^M`` coalitions (``M <= 20``, model rows in chunks
      of ``batch_size``), the Möbius transform and one weighted superset sum per order, in
      float64 on the host: in float32 the transform's alternating sums would lose about
      ``3^(M/2)`` ulps (4e-4 relative at ``M = 16``), while model evaluation dominates the cost.
    * ``"permutation"`` (SII, k-SII, STII; needs ``key``): random feature orders. SII of order
      ``s`` is ``M! / (s! (M - s + 1)!)`` times the mean discrete derivative over the ``s``
      consecutive players of each window; k-SII aggregates those, and its efficiency is exact
      for every sample (the order-1 estimates telescope). STII's orders below ``k`` are exact
      Möbius coefficients, its top order the mean derivative at the players preceding the set.
    * ``"kernel"`` (FSII; needs ``key``): FSII's defining weighted regression on coalitions
      planned as Kernel SHAP plans them (sizes enumerated while the budget allows, the rest
      sampled), efficiency imposed exactly; equals the exact FSII once the budget covers
      every coalition. This is the Faith-Shap regression (shapiq's ``RegressionFSII``), not
      KernelSHAP-IQ's SII regression.
    * ``"svarm"`` (SII, STII, BII; needs ``key``): SVARM-IQ's stratification. Each index is a
      fixed combination of the mean values of the strata ``|A ∩ S| = l``, ``|A - S| = k``
      (:func:`svarm_coefficients`); every coalition scored updates the stratum it falls in for
      every interaction ``S`` at once. Coalitions as ``"kernel"`` plans them (complete sizes
      from the edges, the rest drawn by size, uniform within a size, so within a stratum); a
      stratum never drawn counts as 0. Exact once the budget covers every coalition.

    Args:
        f: the model, ``f(X: (n, M)) -> (n,)`` or ``(n, K)`` (any form exact_shapley takes).
        X: one instance ``(M,)`` or a batch ``(n, M)``.
        background: ``(B, M)`` rows or a :class:`Background`.
        index: ``"SII"``, ``"k-SII"``, ``"STII"``, ``"FSII"`` or ``"BII"``.
        max_order: the highest interaction order ``1 <= max_order <= M`` (the ``k`` of k-SII,
            STII and FSII).
        method: ``"exact"``, ``"permutation"``, ``"kernel"`` or ``"svarm"`` (see above).
        key: for the sampling methods, a ``jax.random.key`` (or raw key), or ``(n,)`` keys;
            unused by ``"exact"``.
        budget: coalitions scored per instance by a sampling method (each over the
            background); ``None``: 10 permutations, or Kernel SHAP's ``2M + 2048`` (capped at
            ``2^M``).
        targets, batch_size, mesh, link, background_weights, feature_names, groups, masker: as
            in :func:`~xaijax.exact_shapley` (with ``groups`` the groups are the players).

    Returns:
        An :class:`Explanation` of kind ``"interaction"``: ``values`` ``(n, M, M)`` or
        ``(n, M, M, K)`` (diagonal: order 1; off the diagonal: half the pair's value, as shap);
        ``base_values`` ``link(E_b f(b))`` ``(n,)``/``(n, K)``; ``extras["order_k"]`` for
        ``k = 0..max_order`` (order ``k``: ``(n,) + (M,) * k [+ (K,)]``, symmetric, zero where
        a player repeats); ``extras["index"]``, ``extras["max_order"]``, ``extras["efficient"]`` and
        ``extras["num_evaluations"]`` (coalitions scored per instance).

    Raises:
        ValueError: an unknown ``index`` or ``method``, an index the method does not estimate,
            ``max_order`` out of range, ``M > 20`` for ``"exact"``, a budget too small or too
            large to hold, bad shapes, NaN inputs or a model returning NaN/inf.
        TypeError: a missing ``key`` for a sampling method, non-integer ``max_order`` or
            ``budget``.

    References:
        Grabisch & Roubens, "An axiomatic approach to the concept of interaction among players
        in cooperative games", 1999 (SII, BII). Sundararajan et al., "The Shapley Taylor
        Interaction Index", ICML 2020. Tsai et al., "Faith-Shap", JMLR 2023. Bordt & von
        Luxburg, "From Shapley Values to Generalized Additive Models and back", AISTATS 2023
        (k-SII). Fumagalli et al., "SHAP-IQ", NeurIPS 2023. Kolpaczki et al., "SVARM-IQ",
        AISTATS 2024. Muschalik et al., "shapiq", 2024.

    Example:
        >>> import numpy as np
        >>> f = lambda X: X[:, 0] * X[:, 1] + X[:, 2]
        >>> exp = shapley_interactions(f, np.array([1.0, 2.0, 3.0]), np.zeros((1, 3)))
        >>> np.round(exp.values, 4).tolist()  # x0 x1 splits 1 + 1, its pair value 2 halved
        [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 3.0]]
        >>> float(exp.extras["order_2"][0, 1])
        2.0
    """
    index = check_choice("index", index, INDICES)
    method = check_choice("method", method, tuple(METHODS))
    if index not in METHODS[method]:
        raise ValueError(
            f"method={method!r} estimates index in {METHODS[method]}; got index={index!r} "
            "(method='exact' computes every index)"
        )
    max_order = check_int("max_order", max_order, minimum=1)
    if budget is not None:
        budget = check_int("budget", budget, minimum=1)
    problem = prepare(
        f,
        X,
        background,
        background_weights=background_weights,
        feature_names=feature_names,
        link=link,
        targets=targets,
        batch_size=batch_size,
        masker=masker,
        groups=groups,
        max_groups=MAX_EXACT_FEATURES if method == "exact" else None,
        max_groups_why="shapley_interactions(method='exact') enumerates 2^G coalitions and "
        "supports at most",
    )
    n, M = problem.X.shape[0], problem.num_players
    if max_order > M:
        raise ValueError(f"max_order must be between 1 and M={M} (the players); got {max_order}")
    outputs = max(1, problem.model.num_outputs or 1)
    dense_bytes = sum(M**s for s in range(max_order + 1)) * outputs * 8
    if dense_bytes > _HOST_CHUNK_BYTES:
        raise ValueError(
            f"max_order={max_order} for M={M} players needs {dense_bytes / 2**20:.0f} MiB of "
            f"dense order tensors per instance (M^k entries for order k); lower max_order"
        )
    mesh = check_mesh(mesh)
    # "exact" draws nothing, but a key passed to it is still checked.
    keys = None if method == "exact" and key is None else instance_keys(key, n)
    itemsize = problem.X.dtype.itemsize
    if method == "exact":
        if M > MAX_EXACT_FEATURES:
            raise ValueError(
                f"X has {M} features; method='exact' enumerates 2^M coalitions and supports at "
                f"most {MAX_EXACT_FEATURES}. Use method='permutation' or 'kernel', or groups= "
                "to make fewer players."
            )
        orders, base, finite, evaluations = _exact_call(problem, M, index, max_order, link, mesh)
    elif method == "permutation":
        orders, base, finite, evaluations = _permutation_call(
            problem, M, index, max_order, link, mesh, keys, budget, outputs, itemsize
        )
    elif method == "kernel":
        orders, base, finite, evaluations = _kernel_call(
            problem, M, max_order, link, mesh, keys, budget, outputs, itemsize
        )
    else:
        orders, base, finite, evaluations = _svarm_call(
            problem, M, index, max_order, link, mesh, keys, budget, outputs, itemsize
        )
    return _finish(problem, orders, base, finite, index, max_order, evaluations)


def _finish(problem, orders, base, finite, index, max_order, evaluations) -> Explanation:
    finite = usable_outputs(finite)
    orders = [np.asarray(o) for o in orders]
    base = np.asarray(base)
    indices = problem.targets.indices
    if indices is not None and base.ndim == 2:
        orders = [np.asarray(select_outputs(o, indices)) for o in orders]
        base = np.asarray(select_outputs(base, indices))
    if index in EFFICIENT:
        orders[0] = base.astype(orders[0].dtype)
    dtype = problem.X.dtype if np.issubdtype(problem.X.dtype, np.floating) else np.float32
    orders = [o.astype(dtype) for o in orders]
    first = orders[1]
    M = first.shape[1]
    eye = np.eye(M, dtype=bool).reshape((1, M, M) + (1,) * (first.ndim - 2))
    diagonal = first[:, :, None] * np.eye(M, dtype=dtype).reshape(eye.shape)
    values = diagonal + (orders[2] / 2 if max_order >= 2 else 0.0)
    extras = {f"order_{s}": o for s, o in enumerate(orders)}
    extras.update(
        index=index,
        max_order=max_order,
        efficient=index in EFFICIENT,
        num_evaluations=int(evaluations),
    )
    if problem.groups is not None:
        g = problem.groups
        extras["groups"] = g.ids[0] if g.shared else g.ids
    return contract.pack(
        values,
        base,
        problem.X,
        single=problem.single,
        kind="interaction",
        method="shapley_interactions",
        feature_names=problem.feature_names,
        output_names=problem.output_names,
        extras=extras,
        finite=finite,
    )


# -- exact -----------------------------------------------------------------------------------
def _exact_call(problem, M, index, max_order, link, mesh):
    n = problem.X.shape[0]
    instance_ids, shared_ids = group_args(problem)
    outputs = max(1, problem.model.num_outputs or 1)
    # The coalition values come back to the host for the float64 transforms: in chunks of
    # instances that keep each chunk's values (and their float64 copies) bounded.
    per_instance = 2**M * outputs * 8 * 3
    chunk = max(1, min(n, _HOST_CHUNK_BYTES // per_instance))
    chunk = -(-n // -(-n // chunk))  # equal chunks: one compiled shape
    orders, base, status = [], [], []
    for start in range(0, n, chunk):
        rows = np.minimum(np.arange(start, start + chunk), n - 1)
        ids = None if instance_ids is None else instance_ids[rows]
        v, b, s = contract.call(
            _coalition_grid,
            problem.model,
            problem.params,
            problem.X[rows],
            problem.fill,
            ids,
            shared_ids,
            M=M,
            link=link,
            batch_size=problem.batch_size,
            mesh=mesh,
        )
        keep = min(chunk, n - start)
        v = np.asarray(v)[:keep]
        status.append(np.asarray(s)[:keep])
        base.append(np.asarray(b)[:keep])
        if np.all(np.isfinite(v)):
            orders.append(_exact_orders(v, M, index, max_order))
        else:  # refused by the status check; keep shapes
            orders.append(_exact_orders(np.zeros_like(v), M, index, max_order))
    joined = [np.concatenate([o[s] for o in orders]) for s in range(max_order + 1)]
    return joined, np.concatenate(base), np.concatenate(status), 2**M


@functools.partial(jax.jit, static_argnames=("model", "M", "link", "batch_size", "mesh"))
def _coalition_grid(model, params, X, fill, instance_ids, shared_ids, *, M, link, batch_size, mesh):
    def local(instances, shared):
        return _grid_instances(model, *shared, *instances, M, link, batch_size)

    return over_instances(local, (X, instance_ids), (params, fill, shared_ids), mesh=mesh)


def _grid_instances(model, params, fill, shared_ids, X, instance_ids, M, link, batch_size):
    num = 2**M
    shifts = jnp.arange(M - 1, -1, -1, dtype=jnp.int32)  # bit M - 1 - j: player j

    def masks(idx):
        return ((idx[:, None] >> shifts[None, :]) & 1).astype(bool)

    def one(args):
        x, ids = args
        ids = shared_ids if ids is None else ids
        rows, weights = fill(x)
        raw = coalition_values(
            model,
            params,
            x,
            rows,
            weights,
            on_elements(masks, ids, x.shape),
            num,
            batch_size,
            fill=fill,
        )
        v = apply_link(link, raw)
        return v, v[0], output_status(link, raw)

    return map_instances(one, (X, instance_ids), num * fill.num_rows, batch_size)


# -- permutation sampling --------------------------------------------------------------------
def _permutation_call(problem, M, index, max_order, link, mesh, keys, budget, outputs, itemsize):
    k = max_order
    if index == "STII":
        lower = _lower_coalitions(M, k)
        per_order = math.comb(M, k) * 2**k
        fixed = lower.shape[0]
    else:
        lower = np.zeros((0, M), bool)
        per_order = M * 2**k
        fixed = 0
    if budget is None:
        P = 10
    else:
        P = (budget - fixed) // per_order
        if P < 1:
            raise ValueError(
                f"budget={budget} is below one permutation's {fixed + per_order} coalitions "
                f"for index={index!r}, M={M}, max_order={k}; raise budget"
            )
    evaluations = fixed + P * per_order
    check_work(
        "budget",
        budget,
        evaluations * outputs * itemsize + P * M * 4,
        problem.batch_size,
        int(np.prod(problem.X.shape[1:])) * itemsize,
        f"{evaluations} coalition values",
    )
    orders, base, status = contract.call(
        _permutation,
        problem.model,
        problem.params,
        problem.X,
        problem.fill,
        keys,
        *group_args(problem),
        jnp.asarray(lower),
        M=M,
        index=index,
        max_order=k,
        num_permutations=P,
        link=link,
        batch_size=problem.batch_size,
        mesh=mesh,
    )
    return list(orders), base, status, evaluations


def _lower_coalitions(M: int, k: int) -> np.ndarray:
    """Every coalition of fewer than ``k`` players, smallest first: ``(F, M)``."""
    rows = []
    for s in range(k):
        for c in itertools.combinations(range(M), s):
            row = np.zeros(M, bool)
            row[list(c)] = True
            rows.append(row)
    return np.stack(rows)


@functools.partial(
    jax.jit,
    static_argnames=(
        "model",
        "M",
        "index",
        "max_order",
        "num_permutations",
        "link",
        "batch_size",
        "mesh",
    ),
)
def _permutation(model, params, X, fill, keys, instance_ids, shared_ids, lower, *, mesh, **opts):
    def local(instances, shared):
        return _permutation_instances(model, *shared, *instances, **opts)

    return over_instances(
        local, (X, keys, instance_ids), (params, fill, shared_ids, lower), mesh=mesh
    )


def _permutation_instances(
    model,
    params,
    fill,
    shared_ids,
    lower,
    X,
    keys,
    instance_ids,
    *,
    M,
    index,
    max_order,
    num_permutations,
    link,
    batch_size,
):
    k, P = max_order, num_permutations
    L = 2**k
    bits = jnp.arange(k, dtype=jnp.int32)
    stii = index == "STII"
    combos = np.array(list(itertools.combinations(range(M), k)), np.int32).reshape(-1, k)
    C = combos.shape[0]
    per_perm = C * L if stii else M * L
    F = lower.shape[0]

    def one(args):
        x, key, ids = args
        ids = shared_ids if ids is None else ids
        order = random_orders(key, P, M)  # order[p, q]: the player at position q
        rank = ranks_of(order)  # rank[p, i]: the position of player i

        def window_masks(idx):
            # Window of k positions starting at q, subset `sub` of its players (bit j: the
            # player at q + j), on top of the players before q.
            p, rest = idx // per_perm, idx % per_perm
            q, sub = rest // L, rest % L
            r = rank[p]
            d = r - q[:, None]
            inside = (d >= 0) & (d < k)
            on = ((sub[:, None] >> jnp.clip(d, 0, k - 1)) & 1).astype(bool)
            return (d < 0) | (inside & on)

        def set_masks(idx):
            # The set S = combos[c], subset `sub` of it, on top of the players before all of S.
            p, rest = idx // per_perm, idx % per_perm
            c, sub = rest // L, rest % L
            r = rank[p]
            members = jnp.asarray(combos)[c]  # (n, k)
            first = jnp.min(jnp.take_along_axis(r, members, axis=1), axis=1)
            chosen = ((sub[:, None] >> bits[None, :]) & 1).astype(bool)  # (n, k)
            extra = jnp.zeros(r.shape, bool)
            extra = extra.at[jnp.arange(r.shape[0])[:, None], members].set(chosen)
            return (r < first[:, None]) | extra

        sampled = set_masks if stii else window_masks

        def masks(idx):
            if F == 0:
                return sampled(idx)
            fixed = lower[jnp.minimum(idx, F - 1)]
            return jnp.where((idx < F)[:, None], fixed, sampled(jnp.maximum(idx - F, 0)))

        rows, weights = fill(x)
        raw = coalition_values(
            model,
            params,
            x,
            rows,
            weights,
            on_elements(masks, ids, x.shape),
            F + P * per_perm,
            batch_size,
            fill=fill,
        )
        v = apply_link(link, raw)
        out = v.shape[1:]
        fixed_v, grid = v[:F], v[F:].reshape((P, per_perm // L, L) + out)
        signs = _derivative_signs(k)  # (k + 1, L): order-s alternating signs on bits < s
        if stii:
            orders = _stii_orders(fixed_v, grid, signs, combos, M, k, out)
            orders[0] = v[F]  # placeholder: replaced by v(empty) as the base
        else:
            orders = _sii_orders(grid, order, signs, M, k, out)
            if index == "k-SII":
                orders = [o[None] for o in orders]
                orders = [o[0] for o in aggregate_k_sii(orders, k)]
        base = grid[0, 0, 0]  # the empty coalition: the first window's prefix
        return tuple(orders), base, output_status(link, raw)

    return map_instances(
        one, (X, keys, instance_ids), (F + P * per_perm) * fill.num_rows, batch_size
    )


def _derivative_signs(k: int) -> jnp.ndarray:
    """``signs[s, sub]``: ``(-1)^(s - |sub|)`` for subsets of the first ``s`` bits, else 0."""
    signs = np.zeros((k + 1, 2**k), np.float32)
    for s in range(k + 1):
        for sub in range(2**s):
            signs[s, sub] = (-1) ** (s - bin(sub).count("1"))
    return jnp.asarray(signs)


def _scatter_symmetric(dense, players, values, s):
    """Add ``values[r]`` at every ordering of the ``s`` players ``players[r]``."""
    for perm in itertools.permutations(range(s)):
        dense = dense.at[tuple(players[:, j] for j in perm)].add(values)
    return dense


def _sii_orders(grid, order, signs, M, k, out):
    """SII orders ``0..k`` from window values ``grid: (P, M, 2^k, *out)``."""
    P = grid.shape[0]
    dtype = grid.dtype
    # Order 0: SII(∅) = E_p v(prefix_p) over the M + 1 prefixes (the last is everyone).
    prefixes = jnp.concatenate([grid[:, :, 0], grid[:, -1:, 1]], axis=1)
    orders = [prefixes.mean(axis=(0, 1))]
    for s in range(1, k + 1):
        delta = jnp.tensordot(grid, signs[s].astype(dtype), axes=([2], [0]))  # (P, M, *out)
        windows = M - s + 1
        delta = delta[:, :windows]
        players = jnp.stack([order[:, j : j + windows] for j in range(s)], axis=-1)
        scale = math.comb(M + 1, s) / (M + 1) / P
        dense = jnp.zeros((M,) * s + out, dtype)
        dense = _scatter_symmetric(
            dense, players.reshape(-1, s), delta.reshape((-1,) + out) * scale, s
        )
        orders.append(dense)
    return orders


def _stii_orders(fixed_v, grid, signs, combos, M, k, out):
    """STII orders: exact Möbius coefficients below ``k`` from the lower coalitions, the mean
    derivative at the preceding players at ``k``."""
    dtype = grid.dtype
    orders = [fixed_v[0]]
    offset = 0
    lookup = {}
    for s in range(k):
        for c in itertools.combinations(range(M), s):
            lookup[c] = offset
            offset += 1
    for s in range(1, k):
        sets = list(itertools.combinations(range(M), s))
        coef = np.zeros((len(sets), fixed_v.shape[0]), np.float32)
        for r, S in enumerate(sets):
            for size in range(s + 1):
                for sub in itertools.combinations(S, size):
                    coef[r, lookup[sub]] = (-1) ** (s - size)
        m = jnp.tensordot(jnp.asarray(coef, dtype), fixed_v, axes=1)
        dense = jnp.zeros((M,) * s + out, dtype)
        dense = _scatter_symmetric(dense, jnp.asarray(np.array(sets, np.int32)), m, s)
        orders.append(dense)
    delta = jnp.tensordot(grid, signs[k].astype(dtype), axes=([2], [0])).mean(axis=0)
    dense = jnp.zeros((M,) * k + out, dtype)
    orders.append(_scatter_symmetric(dense, jnp.asarray(combos), delta, k))
    return orders


# -- kernel (FSII regression) ----------------------------------------------------------------
def _kernel_call(problem, M, max_order, link, mesh, keys, budget, outputs, itemsize):
    sets = [c for s in range(1, max_order + 1) for c in itertools.combinations(range(M), s)]
    num_samples = "auto" if budget is None else budget - 2
    if M < 2 or (budget is not None and budget < 3):
        raise ValueError(
            f"method='kernel' needs M >= 2 players and budget >= 3 (the empty and full "
            f"coalitions and one more); got M={M}, budget={budget}"
        )
    plan = coalition_plan(M, num_samples)
    S = plan.num_samples + 2
    check_work(
        "budget",
        budget,
        S * (len(sets) + outputs) * itemsize,
        problem.batch_size,
        int(np.prod(problem.X.shape[1:])) * itemsize,
        f"a {S} x {len(sets)} regression design",
    )
    members = np.zeros((len(sets), M), bool)
    for r, c in enumerate(sets):
        members[r, list(c)] = True
    orders, base, status = contract.call(
        _kernel,
        problem.model,
        problem.params,
        problem.X,
        problem.fill,
        keys,
        *group_args(problem),
        jnp.asarray(members),
        M=M,
        max_order=max_order,
        num_samples=num_samples,
        link=link,
        batch_size=problem.batch_size,
        mesh=mesh,
    )
    return list(orders), base, status, S


@functools.partial(
    jax.jit,
    static_argnames=("model", "M", "max_order", "num_samples", "link", "batch_size", "mesh"),
)
def _kernel(model, params, X, fill, keys, instance_ids, shared_ids, members, *, mesh, **opts):
    def local(instances, shared):
        return _kernel_instances(model, *shared, *instances, **opts)

    return over_instances(
        local, (X, keys, instance_ids), (params, fill, shared_ids, members), mesh=mesh
    )


def _kernel_instances(
    model,
    params,
    fill,
    shared_ids,
    members,
    X,
    keys,
    instance_ids,
    *,
    M,
    max_order,
    num_samples,
    link,
    batch_size,
):
    plan = coalition_plan(M, num_samples)
    dtype = X.dtype
    ends = np.stack([np.zeros(M, bool), np.ones(M, bool)])
    fixed = jnp.asarray(np.concatenate([ends, plan.fixed_masks]))
    # The empty and full coalitions enter as the efficiency constraint, not as rows.
    weights = jnp.concatenate(
        [
            jnp.zeros(2, dtype),
            jnp.asarray(plan.fixed_weights, dtype),
            jnp.full((plan.num_random,), plan.random_weight / max(plan.num_random, 1), dtype),
        ]
    )
    S = plan.num_samples + 2

    def sample(key):
        num_pairs = -(-plan.num_random // 2)
        size_key, order_key = jax.random.split(key)
        sizes = jax.random.choice(
            size_key,
            jnp.asarray(plan.random_sizes),
            (num_pairs,),
            p=jnp.asarray(plan.random_probs, dtype),
        )
        m = random_subsets(order_key, sizes, M)
        return jnp.stack([m, ~m], axis=1).reshape(2 * num_pairs, M)[: plan.num_random]

    def one(args):
        x, key, ids = args
        ids = shared_ids if ids is None else ids
        masks = jnp.concatenate([fixed, sample(key)]) if plan.num_random else fixed
        rows, w = fill(x)
        raw = coalition_values(
            model,
            params,
            x,
            rows,
            w,
            on_elements(lambda i: masks[i], ids, x.shape),
            S,
            batch_size,
            fill=fill,
        )
        v = apply_link(link, raw)
        empty, full = v[0], v[1]
        # Column S of the design: every player of S present in the coalition.
        design = jnp.all(masks[:, None, :] | ~members[None, :, :], axis=-1).astype(dtype)
        y = v - empty[None]
        phi = weighted_lstsq(
            design, y, weights, constraint=(jnp.ones(members.shape[0], dtype), full - empty)
        )
        out = v.shape[1:]
        orders = [empty]
        start = 0
        for s in range(1, max_order + 1):
            count = math.comb(M, s)
            sets = np.array(list(itertools.combinations(range(M), s)), np.int32)
            dense = jnp.zeros((M,) * s + out, dtype)
            orders.append(
                _scatter_symmetric(dense, jnp.asarray(sets), phi[start : start + count], s)
            )
            start += count
        return tuple(orders), empty, output_status(link, raw)

    return map_instances(one, (X, keys, instance_ids), S * fill.num_rows, batch_size)


# -- svarm (stratified sampling) -------------------------------------------------------------
def svarm_coefficients(index: str, M: int, max_order: int) -> tuple[np.ndarray, ...]:
    """Per order ``s``, ``coef[l, k]``: what the mean value of the stratum of coalitions ``A``
    with ``|A ∩ S| = l`` and ``|A \\ S| = k`` contributes to ``I(S)``.

    Every index here is a weighted sum of discrete derivatives,
    ``I(S) = sum_{T ⊆ N \\ S} w_s(|T|) sum_{L ⊆ S} (-1)^(s - |L|) v(T ∪ L)``, so
    ``coef[l, k] = (-1)^(s - l) w_s(k) C(s, l) C(M - s, k)`` (the stratum's size times its
    weight). ``w_s``: SII ``k! (M - s - k)! / (M - s + 1)!``, BII ``2^-(M - s)``; STII at its top
    order ``s = max_order``: ``(s / M) / C(M - 1, k)``, below it the Möbius coefficient
    (``w_s(k) = [k = 0]``). Entries are bounded by ``C(s, l)``.

    Example:
        >>> svarm_coefficients("SII", 3, 1)[1].round(4).tolist()  # Shapley value: 1/3 per size
        [[-0.3333, -0.3333, -0.3333], [0.3333, 0.3333, 0.3333]]
    """
    out = []
    for s in range(max_order + 1):
        coef = np.zeros((s + 1, M - s + 1))
        for k in range(M - s + 1):
            if index == "SII":
                w = Fraction(
                    math.factorial(k) * math.factorial(M - s - k), math.factorial(M - s + 1)
                )
            elif index == "BII":
                w = Fraction(1, 2 ** (M - s))
            elif index == "STII" and s == max_order:
                w = Fraction(s, M) / math.comb(M - 1, k)
            elif index == "STII":
                w = Fraction(int(k == 0))
            else:
                raise ValueError(f"method='svarm' estimates SII, STII and BII; got {index!r}")
            for l in range(s + 1):  # noqa: E741
                coef[l, k] = float((-1) ** (s - l) * w * math.comb(s, l) * math.comb(M - s, k))
        out.append(coef)
    return tuple(out)


def _svarm_call(problem, M, index, max_order, link, mesh, keys, budget, outputs, itemsize):
    if M < 2 or (budget is not None and budget < 3):
        raise ValueError(
            f"method='svarm' needs M >= 2 players and budget >= 3 (the empty and full "
            f"coalitions and one more); got M={M}, budget={budget}"
        )
    num_samples = "auto" if budget is None else budget - 2
    plan = coalition_plan(M, num_samples)
    S = plan.num_samples + 2
    num_sets = sum(math.comb(M, s) for s in range(max_order + 1))
    check_work(
        "budget",
        budget,
        S * (num_sets * (outputs + 2) + M) * itemsize,
        problem.batch_size,
        int(np.prod(problem.X.shape[1:])) * itemsize,
        f"{S} coalitions x {num_sets} interactions",
    )
    orders, base, status = contract.call(
        _svarm,
        problem.model,
        problem.params,
        problem.X,
        problem.fill,
        keys,
        *group_args(problem),
        M=M,
        index=index,
        max_order=max_order,
        num_samples=num_samples,
        link=link,
        batch_size=problem.batch_size,
        mesh=mesh,
    )
    return list(orders), base, status, S


@functools.partial(
    jax.jit,
    static_argnames=(
        "model",
        "M",
        "index",
        "max_order",
        "num_samples",
        "link",
        "batch_size",
        "mesh",
    ),
)
def _svarm(model, params, X, fill, keys, instance_ids, shared_ids, *, mesh, **opts):
    def local(instances, shared):
        return _svarm_instances(model, *shared, *instances, **opts)

    return over_instances(local, (X, keys, instance_ids), (params, fill, shared_ids), mesh=mesh)


def _svarm_instances(
    model,
    params,
    fill,
    shared_ids,
    X,
    keys,
    instance_ids,
    *,
    M,
    index,
    max_order,
    num_samples,
    link,
    batch_size,
):
    plan = coalition_plan(M, num_samples)
    ends = np.stack([np.zeros(M, bool), np.ones(M, bool)])
    fixed = jnp.asarray(np.concatenate([ends, plan.fixed_masks]))
    S = plan.num_samples + 2
    coefficients = svarm_coefficients(index, M, max_order)
    dtype = X.dtype

    def sample(key):
        # Sizes as Kernel SHAP draws them (complementary pairs); given its size a coalition is
        # uniform, so given |A ∩ S| it is uniform in its stratum: stratum means are unbiased.
        num_pairs = -(-plan.num_random // 2)
        size_key, subset_key = jax.random.split(key)
        sizes = jax.random.choice(
            size_key,
            jnp.asarray(plan.random_sizes),
            (num_pairs,),
            p=jnp.asarray(plan.random_probs, dtype),
        )
        m = random_subsets(subset_key, sizes, M)
        return jnp.stack([m, ~m], axis=1).reshape(2 * num_pairs, M)[: plan.num_random]

    def one(args):
        x, key, ids = args
        ids = shared_ids if ids is None else ids
        masks = jnp.concatenate([fixed, sample(key)]) if plan.num_random else fixed
        rows, w = fill(x)
        raw = coalition_values(
            model,
            params,
            x,
            rows,
            w,
            on_elements(lambda i: masks[i], ids, x.shape),
            S,
            batch_size,
            fill=fill,
        )
        v = apply_link(link, raw)
        out = v.shape[1:]
        size = masks.sum(axis=1, dtype=jnp.int32)
        orders = []
        for s in range(max_order + 1):
            sets = np.array(list(itertools.combinations(range(M), s)), np.int32)
            sets = sets.reshape(len(sets), s)
            members = np.zeros((len(sets), M), np.int32)
            for r, c in enumerate(sets):
                members[r, c] = 1
            inside = masks.astype(jnp.int32) @ jnp.asarray(members).T  # (S, C): |A ∩ S|
            strata = (s + 1) * (M - s + 1)
            stratum = inside * (M - s + 1) + (size[:, None] - inside)
            segment = (jnp.arange(len(sets))[None, :] * strata + stratum).reshape(-1)
            total = len(sets) * strata
            values = jnp.broadcast_to(v[:, None], (S, len(sets)) + out).reshape((-1,) + out)
            sums = jax.ops.segment_sum(values, segment, total).reshape(
                (len(sets), s + 1, M - s + 1) + out
            )
            counts = jax.ops.segment_sum(jnp.ones(segment.shape, dtype), segment, total)
            counts = counts.reshape((len(sets), s + 1, M - s + 1) + (1,) * len(out))
            means = sums / jnp.maximum(counts, 1)  # an unsampled stratum counts as 0
            coef = jnp.asarray(coefficients[s], dtype).reshape(
                (1, s + 1, M - s + 1) + (1,) * len(out)
            )
            estimate = (means * coef).sum(axis=(1, 2))  # (C, *out)
            if s == 0:
                orders.append(estimate[0])
            else:
                dense = jnp.zeros((M,) * s + out, dtype)
                orders.append(_scatter_symmetric(dense, jnp.asarray(sets), estimate, s))
        return tuple(orders), v[0], output_status(link, raw)

    return map_instances(one, (X, keys, instance_ids), S * fill.num_rows, batch_size)
