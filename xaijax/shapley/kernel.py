"""Kernel SHAP: Shapley values as a weighted linear regression over sampled coalitions."""

# jaxtyping shape strings such as "*n m" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import functools
import itertools
import math
import numbers
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import ArrayLike, Float, Key, UInt32

from xaijax.core import contract
from xaijax.core.batching import (
    balanced_chunk,
    check_mesh,
    evaluate,
    map_instances,
    over_instances,
)
from xaijax.core.contract import instance_keys
from xaijax.core.explanation import Explanation
from xaijax.core.lstsq import fit_surrogate, lars_active_set
from xaijax.core.masking import Background, Masker, coalition_values
from xaijax.core.model import float_dtype
from xaijax.core.registry import explainer, register_cache
from xaijax.core.targets import Targets
from xaijax.shapley.coalitions import (
    WORK_BYTES,
    apply_link,
    check_work,
    finish,
    group_args,
    on_elements,
    output_status,
    prepare,
    random_subsets,
    varying_players,
)

__all__ = [
    "kernel_shap",
    "coalition_plan",
    "planned_samples",
    "shapley_kernel_weights",
    "CoalitionPlan",
    "MAX_PLAN_ENTRIES",
]


class CoalitionPlan(NamedTuple):
    """Which coalitions Kernel SHAP enumerates and how it samples the rest (static, per ``M``).

    Attributes:
        num_samples: total coalitions scored (excluding the empty and full ones).
        num_full_sizes: coalition sizes enumerated completely (``s`` and ``M - s`` count once).
        fixed_masks: ``(F, M)`` the enumerated coalitions (True = feature present).
        fixed_weights: ``(F,)`` their kernel weights.
        num_random: coalitions sampled at random (in complementary pairs).
        random_sizes: the coalition sizes left to sample from.
        random_probs: probability of drawing each of ``random_sizes`` (a pair is drawn at a time).
        random_weight: total kernel weight shared equally by the random coalitions.
    """

    num_samples: int
    num_full_sizes: int
    fixed_masks: np.ndarray
    fixed_weights: np.ndarray
    num_random: int
    random_sizes: np.ndarray
    random_probs: np.ndarray
    random_weight: float


def shapley_kernel_weights(M: int, sizes) -> np.ndarray:
    """The Shapley kernel ``(M - 1) / (C(M, s) s (M - s))`` of coalitions of the given sizes.

    Infinite for ``s = 0`` and ``s = M``, which Kernel SHAP imposes as exact constraints instead.

    Example:
        >>> [round(float(w), 4) for w in shapley_kernel_weights(4, [1, 2, 3])]
        [0.25, 0.125, 0.25]
    """
    sizes = np.asarray(sizes)
    with np.errstate(divide="ignore"):
        return np.array(
            [
                (M - 1) / (math.comb(M, int(s)) * s * (M - s)) if 0 < s < M else np.inf
                for s in sizes.ravel()
            ]
        ).reshape(sizes.shape)


# Enumerated coalitions are compile-time constants of the program; past this many mask entries
# (a 2^28-byte constant) a plan is refused before anything is built.
MAX_PLAN_ENTRIES = 2**28


def _num_samples(num_samples):
    """``num_samples`` checked: ``"auto"`` or an int >= 1 (before any planning)."""
    if isinstance(num_samples, str):
        if num_samples != "auto":
            raise ValueError(f"num_samples must be 'auto' or an int >= 1; got {num_samples!r}")
        return num_samples
    if isinstance(num_samples, bool) or not isinstance(num_samples, numbers.Integral):
        raise TypeError(
            f"num_samples must be 'auto' or an int >= 1; got {num_samples!r} "
            f"({type(num_samples).__name__})"
        )
    if num_samples < 1:
        raise ValueError(f"num_samples must be 'auto' or an int >= 1; got {num_samples}")
    return int(num_samples)


def planned_samples(M: int, num_samples="auto") -> int:
    """How many coalitions :func:`coalition_plan` scores per instance, without planning them.

    Example:
        >>> planned_samples(10), planned_samples(40), planned_samples(40, 500)
        (1022, 2128, 500)
    """
    ns = 2 * M + 2**11 if _num_samples(num_samples) == "auto" else int(num_samples)
    return min(ns, 2**M - 2)


@register_cache
@functools.lru_cache(maxsize=32)
def coalition_plan(M: int, num_samples="auto") -> CoalitionPlan:
    """Kernel SHAP's coalition budget for ``M`` features, as the reference implementation plans it.

    ``num_samples="auto"`` is ``2M + 2048``, capped at the ``2^M - 2`` non-trivial coalitions. Sizes
    ``s`` (with their complements ``M - s``) are enumerated completely, smallest first, while the
    budget left covers every coalition of that size at its share of the kernel weight; the
    remaining budget is drawn at random in complementary pairs, sizes in proportion to their
    kernel weight, and shares the remaining weight equally. Kernel weights sum to 1.

    The sizes to enumerate are chosen from counts alone (``O(M)`` work whatever ``num_samples``),
    so an enumeration too large to hold is refused before any coalition is built.

    Raises:
        TypeError: ``num_samples`` neither ``"auto"`` nor an int.
        ValueError: ``M < 2``, ``num_samples < 1``, or an enumeration of more than
            ``MAX_PLAN_ENTRIES`` mask entries.

    Example:
        >>> plan = coalition_plan(10)
        >>> plan.num_samples, plan.num_full_sizes, plan.num_random
        (1022, 5, 0)
    """
    if M < 2:
        raise ValueError(f"Kernel SHAP's coalition plan needs M >= 2 features; got M={M}")
    ns = planned_samples(M, num_samples)

    num_sizes = math.ceil((M - 1) / 2)
    num_paired = (M - 1) // 2
    sizes = np.arange(1, num_sizes + 1)
    weight = (M - 1) / (sizes * (M - sizes))
    weight[:num_paired] *= 2  # size s stands for s and M - s
    weight /= weight.sum()

    num_full = 0
    left = ns
    remaining = weight.copy()
    counts = []
    for s in sizes:
        count = math.comb(M, int(s)) * (2 if s <= num_paired else 1)
        if left * remaining[s - 1] / count < 1.0 - 1e-8:
            break
        num_full += 1
        counts.append(count)
        left -= count
        if remaining[s - 1] < 1.0:
            remaining /= 1.0 - remaining[s - 1]
    num_fixed = sum(counts)
    if num_fixed * M > MAX_PLAN_ENTRIES:
        raise ValueError(
            f"num_samples={num_samples!r} for M={M} features enumerates {num_fixed} coalitions "
            f"completely ({num_fixed * M / 2**30:.1f} GiB of masks); lower num_samples"
        )

    fixed_masks, fixed_weights = [], []
    for s, count in zip(sizes[:num_full], counts, strict=True):
        members = np.fromiter(
            itertools.chain.from_iterable(itertools.combinations(range(M), int(s))),
            dtype=np.intp,
            count=math.comb(M, int(s)) * int(s),
        ).reshape(-1, int(s))
        masks = np.zeros((members.shape[0], M), bool)
        masks[np.arange(members.shape[0])[:, None], members] = True
        if s <= num_paired:  # each coalition followed by its complement
            masks = np.stack([masks, ~masks], axis=1).reshape(-1, M)
        fixed_masks.append(masks)
        fixed_weights.append(np.full(count, weight[s - 1] / count))

    num_random = 0 if num_full == num_sizes else max(0, ns - num_fixed)
    rest = weight[num_full:]
    return CoalitionPlan(
        num_samples=num_fixed + num_random,
        num_full_sizes=num_full,
        fixed_masks=np.concatenate(fixed_masks) if fixed_masks else np.zeros((0, M), bool),
        fixed_weights=np.concatenate(fixed_weights) if fixed_weights else np.zeros(0),
        num_random=num_random,
        random_sizes=sizes[num_full:],
        random_probs=rest / rest.sum() if rest.size else rest,
        random_weight=float(rest.sum()),
    )


@explainer(kind="additive", inputs="tabular", reference="background", random=True)
def kernel_shap(
    f: Callable,
    X: Float[ArrayLike, "*n m"],
    background: Float[ArrayLike, "b m"] | Background | None = None,
    *,
    targets: Targets = None,
    key: Key[ArrayLike, "*n"] | UInt32[ArrayLike, "*n 2"],
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    num_samples: int | str = "auto",
    l1_reg: bool | int | str = False,
    link: str = "identity",
    background_weights: Float[ArrayLike, " b"] | None = None,
    feature_names: Sequence[str] | None = None,
    groups: ArrayLike | None = None,
    masker: Masker | None = None,
) -> Explanation:
    """Kernel SHAP estimates of the interventional Shapley values of ``f`` at ``X``.

    The algorithm of the SHAP paper as ``shap.KernelExplainer`` runs it: coalitions are planned by
    :func:`coalition_plan` (small sizes enumerated, the rest sampled in complementary pairs), each
    scored by the model averaged over the background, and the attributions are the weighted
    least-squares fit of the linked scores with the Shapley kernel
    (:func:`~xaijax.core.lstsq.fit_surrogate` without intercept: LIME's surrogate with another
    kernel), under the efficiency constraint ``sum(phi) = link(f(x)) - link(E f(background))``
    imposed exactly by elimination. A feature equal to every background row is a dummy and gets
    exactly 0. All instances run in one compiled call; around a host model, in steps of
    instances, each step's coalition rows and its fit two compiled programs with the model called
    between them (no callback inside, so the persistent compilation cache keeps both).

    Departures from ``shap.KernelExplainer``, each for static shapes under ``jit``: coalitions
    are sampled over all ``M`` features (dummies included, then dropped from the fit) rather than
    the varying ones only; a coalition drawn twice is kept twice (shap adds its weight: the same
    fit) and no extra draws replace it; the middle size of an even ``M`` is paired with its
    complement too.
    With full enumeration the results equal shap's; ``l1_reg`` defaults to no selection (shap's
    default ``"num_features(10)"`` zeroes all but 10 features).

    Args:
        f: the model, ``f(X: (n, M)) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX or Equinox module, or a NumPy callable such as
            ``clf.predict_proba`` (run on the host, between two compiled programs that the
            persistent compilation cache keeps, so a second process compiles nothing).
        X: one instance ``(M,)`` or a batch ``(n, M)``.
        background: ``(B, M)`` background rows or a :class:`Background` from :func:`kmeans`.
        targets: which output to explain: ``None`` (all outputs), an int, ``(n,)`` ints, or
            a callable on the model outputs (see :mod:`xaijax.core.targets`).
        key: a ``jax.random.key`` or raw ``PRNGKey`` (instance ``i`` uses
            ``jax.random.split(key, n)[i]``), or ``(n,)`` keys, one per instance; the same key
            gives the same values.
        batch_size: most model rows evaluated at once (per device); ``None`` picks a default for
            the backend and the row size.
        mesh: optional :class:`jax.sharding.Mesh` (e.g. :func:`~xaijax.instance_mesh`) to shard
            the instances over; the values equal the one-device call's.
        num_samples: coalitions per instance, or ``"auto"`` (``2M + 2048``, capped at ``2^M - 2``).
            Each instance holds an ``(num_samples, M)`` design for the fit; a design larger than
            128 MiB (or than ``batch_size`` rows, if that is more) is refused up front.
        l1_reg: ``False``/``0`` (no selection), ``"num_features(k)"`` or an int ``k``: for each
            output, keep the first ``k`` features entering the LARS path of the augmented problem
            and fit that output on them alone, as shap does.
        link: ``"identity"`` or ``"logit"`` (attribute log-odds of a probability output;
            outputs outside ``(0, 1)``, including exactly 0 or 1, raise ``ValueError``).
        background_weights: optional ``(B,)`` weights of the background rows.
        feature_names: optional names of the ``M`` features (or ``G`` groups).
        groups: optional group ids per input element (:func:`~xaijax.core.masking.as_groups`:
            ``(M,)`` column groups, ``(H, W)`` superpixels or patches, ``(L,)`` token spans, or
            one map per instance): the ``G`` groups are the players (``M`` is ``G`` above).
            Needed for inputs that are not flat rows, e.g. images ``(n, H, W, C)``.
        masker: what hidden features become, instead of ``background``: a
            :mod:`xaijax.maskers` masker (``constant``, ``blur``, ``token``, ``background``).

    Returns:
        An :class:`Explanation` of kind ``"additive"``: ``values (n, M)`` or ``(n, M, K)``,
        ``base_values`` ``(n,)`` or ``(n, K)``; extras ``num_samples`` and ``num_full_sizes``;
        with ``groups``, values per group and ``extras["groups"]``,
        ``extras["element_values"]`` (each element's group value, ``(n, *E[, K])``).

    Raises:
        TypeError: a non-integer ``num_samples``, a bad ``key``, ``targets`` or ``batch_size``.
        ValueError: bad shapes or NaN inputs, a budget too large to hold, or a model that
            returns NaN or inf on any coalition (naming the instances), or outputs outside
            ``(0, 1)`` under ``link="logit"`` (naming ``link``).

    References:
        Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> f = lambda X: X @ jnp.array([1.0, 2.0, 3.0])
        >>> exp = kernel_shap(f, np.ones(3), np.zeros((4, 3)), key=jax.random.key(0))
        >>> [round(float(v), 4) for v in exp.values]
        [1.0, 2.0, 3.0]
    """
    num_samples = _num_samples(num_samples)
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
    )
    n, M = problem.X.shape[0], problem.num_players
    num_features = _parse_l1_reg(l1_reg, M)
    keys = instance_keys(key, n)
    mesh = check_mesh(mesh)
    plan = None
    if M >= 2:
        itemsize = problem.X.dtype.itemsize
        S = planned_samples(M, num_samples)
        check_work(
            "num_samples",
            num_samples,
            S * M * itemsize,
            problem.batch_size,
            int(np.prod(problem.X.shape[1:])) * itemsize,
            f"a {S} x {M} coalition design for the least-squares fit (several times that "
            "during the solve)",
        )
        plan = coalition_plan(M, num_samples)
    if plan is not None and _stages_host_model(problem, plan, mesh):
        values, base, finite = _kernel_staged(
            problem, keys, M=M, num_samples=num_samples, num_features=num_features, link=link
        )
    else:
        values, base, finite = contract.call(
            _kernel,
            problem.model,
            problem.params,
            problem.X,
            problem.fill,
            keys,
            *group_args(problem),
            M=M,
            num_samples=num_samples,
            num_features=num_features,
            link=link,
            batch_size=problem.batch_size,
            mesh=mesh,
        )
    extras = {
        "num_samples": plan.num_samples if plan else 0,
        "num_full_sizes": plan.num_full_sizes if plan else 0,
    }
    return finish(problem, values, base, method="kernel_shap", extras=extras, finite=finite)


def _parse_l1_reg(l1_reg, M: int) -> int | None:
    if l1_reg is False or l1_reg is None or (isinstance(l1_reg, (int, float)) and l1_reg == 0):
        return None
    if isinstance(l1_reg, bool):
        raise ValueError("l1_reg must be False, an int k or 'num_features(k)'; got True")
    if isinstance(l1_reg, numbers.Integral):
        k = int(l1_reg)
    elif isinstance(l1_reg, str) and (m := re.fullmatch(r"num_features\((\d+)\)", l1_reg)):
        k = int(m.group(1))
    else:
        raise ValueError(
            f"l1_reg must be False, an int k or 'num_features(k)'; got {l1_reg!r} "
            "(shap's 'aic', 'bic' and Lasso alphas are not supported)"
        )
    if k < 1:
        raise ValueError(f"l1_reg must select at least one feature; got {l1_reg!r}")
    return None if k >= M else k


@functools.partial(
    jax.jit,
    static_argnames=("model", "M", "num_samples", "num_features", "link", "batch_size", "mesh"),
)
def _kernel(model, params, X, fill, keys, instance_ids, shared_ids, *, mesh, **options):
    # options: M, num_samples, num_features, link, batch_size (static, passed through).
    def local(instances, shared):
        return _kernel_instances(model, *shared, *instances, **options)

    return over_instances(local, (X, keys, instance_ids), (params, fill, shared_ids), mesh=mesh)


# -- a host model between compiled programs -----------------------------------------------------
# JAX 0.10 keeps no program holding a host callback in its persistent compilation cache (the
# callback is a pointer into the running process; 0.11 keeps them), so Kernel SHAP around a
# scikit-learn model, run as one program with ``pure_callback``, was compiled again in every
# process: 0.7-1.2 s of a 10-row job's 5 s. Staged, the model runs on the host between two
# callback-free programs (coalition rows; then the fit), both cacheable, and a second process
# compiles nothing. The values are the one-program path's, to the bit while one instance's rows
# fit in ``batch_size`` (the same operations on the same model outputs); beyond, that path sums
# the background in chunks of coalitions, and they agree to float rounding (1 ulp seen).
def _stages_host_model(problem, plan, mesh) -> bool:
    """Whether to run a host model between programs: unless something needs the one program (a
    mesh, a mask-dependent fill, a callable target composed with the model). A step holds the
    model rows of its instances: one instance's may exceed ``batch_size`` rows up to the
    per-instance work limit of :func:`check_work` (the host model still gets at most
    ``batch_size`` rows per call); beyond it the one program, whose rows stream in chunks."""
    model, fill, X = problem.model, problem.fill, problem.X
    row_bytes = int(np.prod(X.shape[1:])) * X.dtype.itemsize
    rows_bytes = plan.num_samples * fill.num_rows * row_bytes
    return (
        model.kind == "host"
        and model.score is None
        and mesh is None
        and not fill.mask_dependent
        and rows_bytes <= max(WORK_BYTES, problem.batch_size * row_bytes)
    )


def _kernel_staged(problem, keys, *, M, num_samples, num_features, link):
    """Kernel SHAP of a host model: per step of instances, the coalition rows (one program),
    the model on them (host), the fit (another program). Returns NumPy ``(values, base,
    status)`` for all instances."""
    model, fill, X, batch_size = problem.model, problem.fill, problem.X, problem.batch_size
    instance_ids, shared_ids = group_args(problem)
    plan = coalition_plan(M, num_samples)
    n, S, B = X.shape[0], plan.num_samples, fill.num_rows
    fx_raw = contract.host_outputs(model, X, batch_size=batch_size)
    if fill.kind == "rows":
        null_raw = contract.host_outputs(model, fill.arrays[0], batch_size=batch_size)
    else:
        null_raw = contract.host_outputs(model, _fill_rows_program(fill, X), batch_size=batch_size)
    # Equal steps, the last padded by repeating the final instance (as map_instances does):
    # one shape, so one program of each kind for any number of instances.
    per_step = balanced_chunk(n, max(1, batch_size // (S * B)))
    order = np.minimum(np.arange(-(-n // per_step) * per_step), n - 1)
    key_data = np.asarray(jax.random.key_data(keys))
    impl = str(jax.random.key_impl(keys))
    pieces = []
    for start in range(0, order.size, per_step):
        step = order[start : start + per_step]
        ids = None if instance_ids is None else instance_ids[step]
        rows, masks = contract.call(
            _kernel_rows,
            X[step],
            key_data[step],
            fill,
            ids,
            shared_ids,
            M=M,
            num_samples=num_samples,
            impl=impl,
        )
        v_raw = contract.host_outputs(
            model, np.asarray(rows).reshape((-1,) + X.shape[1:]), batch_size=batch_size
        )
        pieces.append(
            contract.call(
                _kernel_fit,
                X[step],
                masks,
                v_raw.reshape((step.size, S * B) + model.output_shape),
                fx_raw[step],
                null_raw if fill.kind == "rows" else null_raw[step],
                fill,
                ids,
                shared_ids,
                M=M,
                num_samples=num_samples,
                num_features=num_features,
                link=link,
            )
        )
    return tuple(np.concatenate([np.asarray(p[i]) for p in pieces])[:n] for i in range(3))


@jax.jit
def _fill_rows_program(fill, X):
    return _fill_rows(fill, X)


@functools.partial(jax.jit, static_argnames=("M", "num_samples", "impl"))
def _kernel_rows(X, key_data, fill, instance_ids, shared_ids, *, M, num_samples, impl):
    """``(rows (c, S, B, *E), masks (c, S, M))``: each instance's coalitions and the model rows
    scoring them (the instance where a coalition keeps it, each fill row elsewhere)."""
    plan = coalition_plan(M, num_samples)
    keys = jax.random.wrap_key_data(key_data, impl=impl)
    dtype = jnp.dtype(float_dtype())

    def one(x, key, ids):
        ids = shared_ids if ids is None else ids
        masks = _coalitions(plan, key, M, dtype)
        fill_rows, _ = fill(x)
        keep = on_elements(lambda i: masks[i], ids, x.shape)(jnp.arange(plan.num_samples))
        return jnp.where(keep[:, None], x[None, None], fill_rows[None]), masks

    return jax.vmap(one)(X, keys, instance_ids)


@functools.partial(jax.jit, static_argnames=("M", "num_samples", "num_features", "link"))
def _kernel_fit(
    X, masks, v_raw, fx_raw, null_raw, fill, instance_ids, shared_ids, *, M, num_samples,
    num_features, link,
):  # fmt: skip
    """``(values, base, status)`` of a step of instances from the model's outputs on their
    coalition rows ``v_raw: (c, S * B, *out)``, on them and on the fill rows."""
    fx, fnull, finite = _model_values(fill, link, fx_raw, null_raw)
    plan = coalition_plan(M, num_samples)
    B = fill.num_rows

    def one(args):
        x, m, y, fx_i, fnull_i, ids = args
        ids = shared_ids if ids is None else ids
        rows, weights = fill(x)
        y = y.reshape((plan.num_samples, B) + y.shape[1:])
        v = jnp.einsum("cb...,b->c...", y, weights, precision="highest")
        return _fit_one(plan, x, rows, ids, m, v, fx_i, fnull_i, M, num_features, link, fill)

    values, ok = jax.vmap(one)((X, masks, v_raw, fx, fnull, instance_ids))
    return values, fnull, jnp.maximum(finite, ok)


def _kernel_instances(
    model,
    params,
    fill,
    shared_ids,
    X,
    keys,
    instance_ids,
    *,
    M,
    num_samples,
    num_features,
    link,
    batch_size,
):
    fx_raw = evaluate(model, params, X, batch_size=batch_size)
    if fill.kind == "rows":  # one background for all: its mean output once
        rows, _ = fill(X[0])
        null_raw = evaluate(model, params, rows, batch_size=batch_size)
    else:  # one fill row per instance (a constant, a blurred copy): f of it
        null_raw = evaluate(model, params, _fill_rows(fill, X), batch_size=batch_size)
    fx, fnull, finite = _model_values(fill, link, fx_raw, null_raw)
    if M == 1:
        return (fx - fnull)[:, None], fnull, finite

    plan = coalition_plan(M, num_samples)
    S = plan.num_samples

    def one(args):
        x, key, fx_i, fnull_i, ids = args
        ids = shared_ids if ids is None else ids
        masks = _coalitions(plan, key, M, fx_i.dtype)
        rows, weights = fill(x)
        v = coalition_values(
            model,
            params,
            x,
            rows,
            weights,
            on_elements(lambda i: masks[i], ids, x.shape),
            S,
            batch_size,
            fill=fill,
        )
        return _fit_one(plan, x, rows, ids, masks, v, fx_i, fnull_i, M, num_features, link, fill)

    values, ok = map_instances(
        one, (X, keys, fx, fnull, instance_ids), S * fill.num_rows, batch_size
    )
    return values, fnull, jnp.maximum(finite, ok)


def _fill_rows(fill, X):
    """``(n, *E)``: each instance's one fill row (a fill that is not a shared background)."""
    return jax.vmap(lambda x: fill(x)[0][0])(X)


def _model_values(fill, link, fx_raw, null_raw):
    """``(fx, fnull, status)`` from the model's raw outputs on the instances and on the fill
    rows (the weighted background, or one fill row per instance); ``fnull`` is the base value."""
    if fill.kind == "rows":
        _, weights = fill(None)
        fnull_raw = jnp.einsum("b...,b->...", null_raw, weights, precision="highest")
        null_status = output_status(link, fnull_raw)
        fnull_raw = jnp.broadcast_to(fnull_raw, fx_raw.shape)
    else:
        fnull_raw = null_raw
        null_status = output_status(link, fnull_raw, rows=True)
    fx, fnull = apply_link(link, fx_raw), apply_link(link, fnull_raw)
    finite = jnp.maximum(output_status(link, fx_raw, rows=True), null_status)
    return fx, fnull, finite


def _kernel_weights(plan, dtype):
    fixed_w = jnp.asarray(plan.fixed_weights, dtype)
    random_w = jnp.full((plan.num_random,), plan.random_weight / max(plan.num_random, 1), dtype)
    # No zero-sized constants (a plan may enumerate no coalition size): under shard_map on
    # several devices (mesh=), JAX 0.11's partitioner crashes on one with signal 11.
    return jnp.concatenate([w for w in (fixed_w, random_w) if w.shape[0]])


def _coalitions(plan, key, M, dtype):
    """``(S, M)`` one instance's coalitions: the enumerated ones, then its random pairs."""
    fixed = jnp.asarray(plan.fixed_masks)
    if not plan.num_random:
        return fixed
    num_pairs = -(-plan.num_random // 2)
    size_key, order_key = jax.random.split(key)
    sizes = jax.random.choice(
        size_key,
        jnp.asarray(plan.random_sizes),
        (num_pairs,),
        p=jnp.asarray(plan.random_probs, dtype),
    )
    m = random_subsets(order_key, sizes, M)
    pairs = jnp.stack([m, ~m], axis=1).reshape(2 * num_pairs, M)[: plan.num_random]
    return jnp.concatenate([fixed, pairs]) if fixed.shape[0] else pairs  # (see _kernel_weights)


def _fit_one(plan, x, rows, ids, masks, v, fx_i, fnull_i, M, num_features, link, fill):
    """One instance's ``(phi, status)`` from its coalition values ``v: (S, *out)``."""
    dtype = fx_i.dtype
    kernel_w = _kernel_weights(plan, dtype)
    # Complementary pairs carry one equation between them once the constraint is imposed, so a
    # sampled design is full rank (QR, several times faster than SVD) only with ample samples;
    # below that the minimum-norm SVD solution degrades gracefully.
    solver = "qr" if plan.num_random == 0 or plan.num_samples >= 4 * M else "svd"

    def fit(A, y, d, active):
        """phi on the ``active`` features: the efficiency-constrained Shapley-kernel fit."""
        any_active = jnp.any(active)
        c = jnp.where(any_active, active, jnp.arange(M) == 0).astype(dtype)
        surrogate = fit_surrogate(
            A * c[None, :],
            y,
            kernel_w,
            fit_intercept=False,
            constraint=(c, d),
            solver=solver,
        )
        phi = surrogate.coef
        return jnp.where(any_active & active.reshape((M,) + (1,) * (phi.ndim - 1)), phi, 0.0)

    y = apply_link(link, v) - fnull_i[None]
    d = fx_i - fnull_i
    # A player whose elements equal every fill row cannot change the model: a dummy, fixed
    # at 0 (so is an empty group of an instance with fewer groups than G). Not so under
    # inpainting: a hidden element's value depends on the coalition, not on the fill row.
    varying = varying_players(x, rows, ids, M, mask_dependent=fill.mask_dependent)
    A = masks.astype(dtype) * varying.astype(dtype)[None, :]
    if num_features is None:
        phi = fit(A, y, d, varying)  # every output in one solve
    else:
        active = _l1_selection(A, y, kernel_w, d, varying, num_features)
        if y.ndim == 1:
            phi = fit(A, y, d, active)
        else:  # each output on its own selection, as shap solves output by output
            phi = jax.vmap(lambda yk, dk, ak: fit(A, yk, dk, ak), in_axes=(1, 0, 1), out_axes=1)(
                y, d, active
            )
    return phi, output_status(link, v)


def _l1_selection(A, y, kernel_w, d, varying, k):
    """shap's ``num_features(k)``: the first ``k`` features on the LARS path of the augmented fit.

    Each coalition appears twice, once as is (target ``y``) and once shifted by the efficiency
    constraint (features as ``mask - 1``, target ``y - d``), weighted ``w (M' - |S|)`` and
    ``w |S|``. Returns the ``(M,)`` selection for one output, ``(M, K)`` (one per output) for
    ``K`` outputs.
    """
    s = A.sum(axis=1)
    m_eff = varying.sum().astype(A.dtype)
    w_aug = jnp.concatenate([kernel_w * (m_eff - s), kernel_w * s])
    sw = jnp.sqrt(jnp.maximum(w_aug, 0.0))
    X_aug = sw[:, None] * jnp.concatenate([A, A - varying.astype(A.dtype)[None, :]])
    y2 = y if y.ndim == 2 else y[:, None]
    d2 = jnp.reshape(d, (1, -1))
    Y_aug = sw[:, None] * jnp.concatenate([y2, y2 - d2])
    selected = jax.vmap(lambda t: lars_active_set(X_aug, t, k), in_axes=1, out_axes=1)(Y_aug)
    selected = selected & varying[:, None]
    return selected if y.ndim == 2 else selected[:, 0]
