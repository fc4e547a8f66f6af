"""The mechanism every model-agnostic Shapley explainer shares.

A coalition ``S`` of features is scored by the interventional value function
``v(S) = sum_b w_b f(x_S, b_{not S})`` over a weighted background
(:func:`xaijax.core.masking.coalition_values`). Exact enumeration, Kernel SHAP and permutation
sampling differ only in which masks they score and how they combine the scores:

* :func:`prepare` validates the inputs on the host (before anything compiles) through the
  contract of :mod:`xaijax.core.contract` and adapts the model;
* the explainers score masks per instance and loop over instances with
  :func:`xaijax.core.batching.map_instances`;
* the compiled call reports, per instance, whether every model output it scored was finite, and
  runs through :func:`xaijax.core.contract.call` (a host model's failure becomes a ``ValueError``);
* :func:`finish` picks the explained outputs (``targets``), raises on non-finite model outputs
  (naming the instances) and packs an :class:`~xaijax.core.explanation.Explanation` of kind
  ``"additive"``.

Work and memory are bounded by ``batch_size`` (model rows at once); what an explainer holds per
instance besides (Kernel SHAP's coalition design, permutation orders) is checked up front by
:func:`check_work`, and a budget beyond it is refused with its cost named.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core import contract
from xaijax.core.explanation import Explanation
from xaijax.core.masking import (
    Fill,
    Groups,
    as_background,
    as_groups,
    as_masker,
    element_values,
    expand_groups,
    group_any,
)
from xaijax.core.model import Model, as_model, float_dtype
from xaijax.core.random import random_bits
from xaijax.core.targets import TargetSpec, check_target_fn, resolve_targets, select_outputs

__all__ = [
    "LINKS",
    "WORK_BYTES",
    "Problem",
    "check_work",
    "prepare",
    "finish",
    "usable_outputs",
    "apply_link",
    "output_status",
    "random_orders",
    "random_subsets",
    "ranks_of",
]

LINKS = ("identity", "logit")

# Per instance in flight, the memory an explainer may hold besides its chunk of model rows (Kernel
# SHAP's S x M coalition design, the QR of it, permutation orders) unless ``batch_size`` rows of
# the same width are larger. Instances are vectorised only while their model rows fit in
# ``batch_size``, so only a single instance's own work can exceed it; this caps that.
WORK_BYTES = 2**27


class Problem(NamedTuple):
    """Validated inputs of a Shapley explainer (host side, before compilation)."""

    model: Model
    params: Any
    X: np.ndarray  # (n, *input_shape), float (int for token inputs)
    background: np.ndarray | None  # (B, *input_shape) rows of a background masker, else None
    weights: np.ndarray | None  # (B,), normalised to sum to 1
    single: bool  # X was one instance
    feature_names: tuple[str, ...] | None
    output_names: tuple[str, ...] | None
    targets: TargetSpec
    batch_size: int
    fill: Fill | None = None  # what hidden elements become (the background rows by default)
    groups: Groups | None = None  # feature groups, or None: each feature its own player

    @property
    def num_players(self) -> int:
        """The players of the game: ``G`` groups, or the ``M`` features of flat rows."""
        return self.groups.num_groups if self.groups is not None else int(self.X.shape[1])


def prepare(
    f,
    X,
    background,
    *,
    background_weights=None,
    feature_names=None,
    link: str = "identity",
    targets=None,
    batch_size=None,
    tabular: bool = True,
    masker=None,
    groups=None,
    max_groups: int | None = None,
    max_groups_why: str = "",
) -> Problem:
    """Validate ``X``, the masker (or ``background``) and the options, adapt ``f``.

    With a background (or a background masker), ``X`` is one instance exactly when its shape is
    one background row's; with ``tabular`` (and no ``groups``) rows must be ``(M,)``. With
    another masker the model decides (:func:`~xaijax.core.contract.split_instances_by_model`).
    ``groups`` (:func:`~xaijax.core.masking.as_groups`) makes groups of elements the players;
    inputs that are not flat rows need them. ``feature_names`` name the players. A callable
    ``targets`` is composed with the model (the explained output is ``targets(f(X))``); int
    targets pick outputs after the fit, which is the same since Shapley values are linear in
    the model output.

    Raises ``TypeError``/``ValueError`` naming the offending argument, before any compilation.
    """
    dtype = np.dtype(float_dtype())
    mk = as_masker(masker, background, background_weights)
    flat_rows = tabular and groups is None and masker is None
    if mk.kind == "token":
        X = _token_array(X)
    else:
        X = contract.as_float_array("X", X, dtype=dtype)
    if mk.has_rows:
        rows, weights = as_background(mk.value, mk.weights, dtype=dtype)
        if flat_rows and rows.ndim == 1:
            rows = rows[None]
        if flat_rows and rows.ndim != 2:
            raise ValueError(f"background must have shape (B, M); got shape {rows.shape}")
        X, single = contract.split_instances(X, rows.shape[1:], reference="background")
        fill = Fill("rows", (rows, weights))
        model, params = None, None
    else:
        rows = weights = None
        X, single, model, params = contract.split_instances_by_model(
            f, X, integer=mk.kind == "token"
        )
        fill = mk.fill_for(X.shape[1:], X.dtype)
    contract.check_choice("link", link, LINKS)
    input_shape = X.shape[1:]
    M = int(np.prod(input_shape))
    if M == 0:
        raise ValueError(f"X must have at least one feature; got instances of shape {input_shape}")
    if groups is not None:
        groups = as_groups(
            groups, input_shape, X.shape[0], max_groups=max_groups, why=max_groups_why
        )
        players = groups.num_groups
    elif len(input_shape) != 1 and tabular:
        if masker is None:
            raise ValueError(f"background must have shape (B, M); got shape {rows.shape}")
        raise ValueError(
            f"groups are needed for inputs of shape {input_shape} (the players of the game): "
            "e.g. groups=xaijax.patch_groups((H, W), 8) or xaijax.superpixel_groups(images)"
        )
    else:
        players = M
    if tabular or groups is not None:
        feature_names = contract.check_names("feature_names", feature_names, players)
    elif feature_names is not None:
        raise ValueError("feature_names are only meaningful for tabular rows (n, M)")
    batch_size = contract.resolve_batch_size(batch_size, input_shape, dtype)
    if model is None:
        model, params = as_model(f, rows)
    spec = resolve_targets(targets, X.shape[0], model.num_outputs)
    if spec.fn is not None:
        check_target_fn(spec.fn, jax.ShapeDtypeStruct((2,) + model.output_shape, dtype))
        model = model.scored_by(spec.fn)
    K = model.num_outputs if spec.is_default else None
    output_names = None if K is None else tuple(str(k) for k in range(K))
    return Problem(
        model,
        params,
        X,
        rows,
        weights,
        single,
        feature_names,
        output_names,
        spec,
        batch_size,
        fill,
        groups,
    )


def _token_array(X) -> np.ndarray:
    """Token ids ``X`` checked integer (a token masker's inputs)."""
    arr = np.asarray(X)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"X must be integer token ids with a token masker; got dtype {arr.dtype}")
    return arr.astype(np.int32)


def on_elements(masks, ids, input_shape):
    """Coalition masks over players (``idx -> (c, G)``) as masks over one instance's elements
    (``idx -> (c, *input_shape)``) through its group ``ids``; ``masks`` itself without groups."""
    if ids is None:
        return masks
    return lambda idx: expand_groups(masks(idx), ids, input_shape)


def group_args(problem: Problem):
    """``(instance_ids, shared_ids)``: the group map as a per-instance argument ``(n, *E)`` or a
    shared one ``(*E)`` (the other ``None``); both ``None`` without groups."""
    g = problem.groups
    if g is None:
        return None, None
    return (None, g.ids[0]) if g.shared else (g.ids, None)


def varying_players(x, rows, ids, num_players, *, mask_dependent: bool = False):
    """``(G,)`` players whose elements differ from some fill row: the others cannot change the
    model (dummies, exactly 0), and neither can an empty (padding) group. With a mask-dependent
    fill (inpainting) no player is a dummy by its values: only empty groups are."""
    if mask_dependent:
        differs = jnp.ones(x.shape, bool)
    else:
        differs = jnp.any(rows != x[None], axis=0)
    return differs if ids is None else group_any(differs, ids, num_players)


def check_work(argument: str, value, nbytes: int, batch_size: int, row_bytes: int, what: str):
    """Refuse a budget whose per-instance work exceeds ``max(WORK_BYTES, batch_size rows)``.

    Args:
        argument: the option that sets the budget (``"num_samples"``), for the message.
        value: its value; nbytes: what one instance would hold; what: what that memory is.
        batch_size: the resolved ``batch_size``; row_bytes: bytes of one model row.

    Raises:
        ValueError: naming ``argument``, the cost and the limit.

    Example:
        >>> check_work("num_samples", 10**9, 4 * 40 * 10**9, 8192, 160, "a design")
        Traceback (most recent call last):
        ...
        ValueError: num_samples=1000000000 needs a design: 149 GiB per instance, over this call's limit of 128 MiB (the larger of 128 MiB and batch_size=8192 rows of 160 bytes); lower num_samples, or raise batch_size to allow more
    """  # noqa: E501
    limit = max(WORK_BYTES, int(batch_size) * int(row_bytes))
    if nbytes > limit:
        raise ValueError(
            f"{argument}={value!r} needs {what}: {_size(nbytes)} per instance, over this "
            f"call's limit of {_size(limit)} (the larger of {_size(WORK_BYTES)} and "
            f"batch_size={batch_size} rows of {row_bytes} bytes); lower {argument}, or raise "
            "batch_size to allow more"
        )


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.0f} {unit}"
    return f"{nbytes} bytes"


def random_orders(key, num: int, M: int) -> jax.Array:
    """``num`` uniformly random orders of ``M`` features, ``(num, M)`` int32 (row = a permutation).

    Sorting random 32-bit keys (``jax.random.bits``'s, by
    :func:`~xaijax.core.random.random_bits`) is one key-value sort, about twice as fast on CPU as
    the ``argsort`` of uniform floats (which sorts (value, index) pairs and then gathers).
    """
    bits = random_bits(key, (num, M))
    index = jnp.broadcast_to(jnp.arange(M, dtype=jnp.int32), (num, M))
    return jax.lax.sort_key_val(bits, index, dimension=1)[1]


def random_subsets(key, sizes: jax.Array, M: int) -> jax.Array:
    """Uniformly random subsets of ``M`` features with the given sizes, ``(len(sizes), M)`` bool.

    For ``M <= 256``: 32-bit random keys (``jax.random.bits``'s, computed by
    :func:`~xaijax.core.random.random_bits`) whose low bits are replaced by the feature index (so
    keys are distinct), and a feature is in the subset when fewer than ``size`` keys are below
    its own (its rank in the row). Up to ``M = 32`` the ranks are counted by comparing every pair
    of keys (one fused pass, 4x faster on CPU than sorting rows of 20); above, by one value-only
    sort per row (the key below which the ``size`` smallest lie), 4x faster on CPU than ranking
    a random order (a key-value sort and a scatter). Both give the same subsets. Ties in the
    24+ random bits left are broken by index, a deviation from uniform below ``M * 2**-24`` per
    subset (far below any Monte Carlo noise). Larger ``M`` ranks a random order, exactly
    uniform.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> m = random_subsets(jax.random.key(0), jnp.array([0, 2, 5]), 5)
        >>> m.sum(axis=1).tolist()
        [0, 2, 5]
    """
    sizes = jnp.asarray(sizes, jnp.int32)
    if M > 256:
        return ranks_of(random_orders(key, sizes.shape[0], M)) < sizes[:, None]
    shift = max(1, (M - 1).bit_length())
    bits = random_bits(key, (sizes.shape[0], M))
    keys = (bits >> shift << shift) | jnp.arange(M, dtype=jnp.uint32)[None, :]
    if M <= 32:
        # M compares of (n, M) arrays: XLA fuses them into one pass (a broadcast (n, M, M)
        # comparison and reduction does not fuse, and is 3x slower).
        rank = sum((keys[:, j : j + 1] < keys).astype(jnp.int32) for j in range(M))
        return rank < sizes[:, None]
    kth = jnp.take_along_axis(jnp.sort(keys, axis=1), jnp.minimum(sizes, M - 1)[:, None], axis=1)
    return (keys < kth) | (sizes[:, None] >= M)


def ranks_of(orders: jax.Array) -> jax.Array:
    """The inverse permutations: ``rank[p, i]`` is the position of feature ``i`` in order ``p``."""
    num, M = orders.shape
    positions = jnp.broadcast_to(jnp.arange(M, dtype=orders.dtype), (num, M))
    return jnp.zeros_like(orders).at[jnp.arange(num)[:, None], orders].set(positions)


def apply_link(link: str, y: jax.Array) -> jax.Array:
    """The link applied to model outputs before attribution (shap's ``link`` argument).

    ``"logit"`` is ``log(y) - log(1 - y)``, finite only for ``0 < y < 1``: outputs outside are
    reported by :func:`output_status` and refused by :func:`finish`, never clipped (a clipped
    probability of 1 became a log-odds of about 15.9, a number the model never produced).
    """
    if link == "identity":
        return y
    return jnp.log(y) - jnp.log1p(-y)


# Per-instance status of the outputs a compiled Shapley call scored (see output_status); the
# larger code wins when statuses are combined, so NaN/inf is reported before the link's range.
OK, OUTSIDE_LINK, NOT_FINITE = 0, 1, 2


def output_status(link: str, y: jax.Array, *, rows: bool = False) -> jax.Array:
    """``0`` if every output in ``y`` is usable under ``link``, ``1`` if all are finite but one
    lies outside ``(0, 1)`` under ``link="logit"``, ``2`` if one is NaN/inf.

    One int32 for all of ``y``, or one per leading row with ``rows``; combine statuses with
    ``jnp.maximum``. :func:`finish` turns them into errors.

    Example:
        >>> import jax.numpy as jnp
        >>> output_status("logit", jnp.array([0.2, 1.0, jnp.nan]), rows=True).tolist()
        [0, 1, 2]
    """
    flat = y.reshape(y.shape[0], -1) if rows else y.reshape(1, -1)
    finite = jnp.all(jnp.isfinite(flat), axis=1)
    if link == "logit":
        inside = jnp.all((flat > 0) & (flat < 1), axis=1)
    else:
        inside = jnp.ones_like(finite)
    status = jnp.where(finite, jnp.where(inside, OK, OUTSIDE_LINK), NOT_FINITE).astype(jnp.int32)
    return status if rows else status[0]


def usable_outputs(finite):
    """The per-instance ``finite`` flags from a compiled call's :func:`output_status` codes
    (booleans pass through).

    Raises:
        ValueError: naming ``link`` if outputs fell outside ``(0, 1)`` under ``link="logit"``
            (and none was NaN or inf, which :func:`~xaijax.core.contract.pack` reports).
    """
    status = np.asarray(finite)
    if status.dtype == bool:
        return status
    outside = status == OUTSIDE_LINK
    if np.any(outside) and not np.any(status == NOT_FINITE):
        rows = np.flatnonzero(outside.reshape(-1)).tolist() if status.ndim else []
        where = f" (instances {rows[:10]}{'...' if len(rows) > 10 else ''})" if rows else ""
        raise ValueError(
            f"link='logit' needs model outputs strictly between 0 and 1 (probabilities), "
            f"but f returned values outside (0, 1), or exactly 0 or 1{where}. A float32 "
            "probability within 6e-8 of 1 rounds to 1: explain the model's log-odds with "
            "link='identity' (e.g. decision_function, or a model returning logits), or "
            "enable jax_enable_x64; use link='identity' for outputs that are not "
            "probabilities."
        )
    return status == OK


def finish(
    problem: Problem, values, base_values, *, method: str, extras=None, finite=True
) -> Explanation:
    """Pick the explained outputs, check for non-finite model outputs, pack the Explanation.

    ``finite`` is the compiled call's flag (one per instance, or one for the call) that every
    model output it used was finite, or its :func:`output_status` codes.

    Raises:
        ValueError: naming ``link`` if outputs fell outside ``(0, 1)`` under ``link="logit"``,
            or naming the instances with NaN/inf outputs.
    """
    finite = usable_outputs(finite)
    values, base_values = np.asarray(values), np.asarray(base_values)
    indices = problem.targets.indices
    feature_axes = 1 if problem.groups is not None else problem.X.ndim - 1
    if indices is not None and values.ndim == feature_axes + 2:
        values = np.asarray(select_outputs(values, indices))
        base_values = np.asarray(select_outputs(base_values, indices))
    if problem.groups is not None:
        g = problem.groups
        extras = {
            **(extras or {}),
            "groups": g.ids[0] if g.shared else g.ids,
            "element_values": element_values(values, g),
        }
    return contract.pack(
        values,
        base_values,
        problem.X,
        single=problem.single,
        kind="additive",
        method=method,
        feature_names=problem.feature_names,
        output_names=problem.output_names,
        extras=extras,
        finite=finite,
    )
