"""The perturbation engine shared by the Quantus-style faithfulness metrics.

Every metric in :mod:`xaijax.metrics.perturbation` replaces some *features* of each instance by
a baseline and scores the model on the result. A feature is a column of a tabular ``(n, M)``
input, a pixel (all its channels together) of an ``(n, H, W, C)`` image with ``(n, H, W)``
attributions, or one element when the attributions have the input's own shape. The instance is
viewed as ``(n, F, C)`` and each perturbed row ``t`` of instance ``i`` is described by a rule
evaluated inside the compiled loop, so no ``(n, T, F)`` mask tensor is ever materialised:

- ``"band"``: feature ``f`` is replaced when ``lo[t] <= g[i, f] < hi[t]`` (``g``: the step at
  which ``f`` is perturbed, e.g. its rank in attribution order; cumulative curves use
  ``lo = 0``);
- ``"random"``: a uniformly random subset of ``hi[t]`` features, drawn from
  ``fold_in(keys[i], t)`` (:func:`random_subset`), so it does not depend on ``batch_size``.

All rows of all instances go through :func:`~xaijax.core.batching.map_row_chunks` in chunks of
``batch_size`` model rows, in one jitted call; with ``invert`` the kept and replaced features
swap (insertion from a baseline).
"""

# jaxtyping shape strings such as "n F" are not Python expressions:

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.batching import balanced_chunk, evaluate, map_row_chunks
from xaijax.core.contract import as_float_array, call, instance_keys, resolve_batch_size
from xaijax.core.model import as_model
from xaijax.core.targets import check_target_fn, resolve_targets
from xaijax.metrics.attributions import attribution_array

__all__ = [
    "Setup",
    "prepare",
    "baseline_values",
    "random_subset",
    "random_subset_mask",
    "noisy_linear_imputation",
    "masked_scores",
    "run",
]


class Setup(NamedTuple):
    """A checked metric call: the model, ``X`` as ``(n, F, C)``, attributions ``(n, F)``."""

    model: Any
    params: Any
    X: np.ndarray  # (n, F, C)
    A: np.ndarray  # (n, F), after abs / normalise
    indices: Any  # (n,) target indices, or None
    x_shape: tuple  # one instance's shape as the model takes it
    grid: tuple | None  # (H, W) when the features are pixels or a 2-d map
    batch_size: int


def prepare(
    f, X, attributions, *, targets, batch_size, abs=False, normalise=False, name="attributions"
) -> Setup:
    """Check the arguments of a metric and view ``X`` as ``(n, F, C)`` features."""
    X = as_float_array("X", X)
    if X.ndim < 2:
        raise ValueError(
            f"X must have a leading instance axis, (n, M) or (n, H, W, C); got {X.shape}"
        )
    A = attribution_array(attributions, name, dtype=X.dtype)
    n = X.shape[0]
    if A.shape == X.shape:
        feat, C = X.shape[1:], 1
    elif X.ndim == 4 and A.shape == X.shape[:3]:
        feat, C = X.shape[1:3], X.shape[3]
    else:
        expected = f"{X.shape}" + (f" or {X.shape[:3]} (n, H, W)" if X.ndim == 4 else "")
        raise ValueError(f"{name} must have shape {expected} to match X; got shape {A.shape}")
    F = int(np.prod(feat))
    grid = tuple(int(s) for s in feat[:2]) if len(feat) >= 2 else None
    A = A.reshape(n, F)
    if abs:
        A = np.abs(A)
    if normalise:  # Quantus's normalise_by_max: divide by the largest |a| of each instance
        top = np.abs(A).max(axis=1, keepdims=True)
        A = A / np.where(top == 0, 1, top)
    model, params = as_model(f, X)
    spec = resolve_targets(targets, n, model.num_outputs, name="targets")
    if spec.fn is not None:
        outputs = jax.ShapeDtypeStruct((n,) + model.output_shape, X.dtype)
        check_target_fn(spec.fn, outputs, name="targets")
        model = model.scored_by(spec.fn)
    batch_size = resolve_batch_size(batch_size, X.shape[1:], X.dtype)
    return Setup(model, params, X.reshape(n, F, C), A, spec.indices, X.shape[1:], grid, batch_size)


def baseline_values(perturb_baseline, setup: Setup):
    """``(base, span (n, 1, 1) or None)``: the replacement values of each instance.

    Quantus's names: ``"black"`` (the instance's minimum), ``"white"`` (maximum), ``"mean"``,
    ``"uniform"`` (uniform between minimum and maximum, drawn anew for each perturbed row:
    ``base + span * U``), a number, or an array broadcasting to ``X``. ``base`` is ``(n, F, C)``
    for an array, ``(n, 1, 1)`` for the named per-instance constants (broadcast in the compiled
    loop: a full copy of ``X`` per call cost more than the model on a small CNN).
    """
    X = setup.X
    n = X.shape[0]
    expected = (
        "perturb_baseline must be 'black', 'white', 'mean', 'uniform', a finite number or an "
        f"array that broadcasts to X {(n,) + setup.x_shape}"
    )
    if isinstance(perturb_baseline, str):
        table = {
            "black": lambda: X.min(axis=(1, 2), keepdims=True),
            "white": lambda: X.max(axis=(1, 2), keepdims=True),
            "mean": lambda: X.mean(axis=(1, 2), keepdims=True),
            "uniform": lambda: X.min(axis=(1, 2), keepdims=True),
        }
        if perturb_baseline not in table:
            raise ValueError(f"{expected}; got {perturb_baseline!r}")
        base = table[perturb_baseline]()
        span = X.max(axis=(1, 2), keepdims=True) - base if perturb_baseline == "uniform" else None
        return base, span
    base = as_float_array("perturb_baseline", perturb_baseline, dtype=X.dtype)
    try:
        base = np.broadcast_to(base, (n,) + setup.x_shape)
    except ValueError as err:
        raise ValueError(f"{expected}; got shape {base.shape}") from err
    return base.reshape(X.shape).copy(), None


# Up to this many features a random order is one sort of 32-bit words, the feature's index in
# the low bits under at least 20 random bits (4x faster than ``jax.random.permutation``'s
# key-value sort on XLA:CPU: 1,024 features x 3,264 rows in 144 ms instead of 640 ms).
_PACKED_FEATURES = 1 << 12


def random_subset(key, t, F: int) -> jax.Array:
    """The random order of ``F`` features for row ``t``: its first ``k`` are a ``k``-subset.

    ``key`` is the instance's key. Tests pass the same subsets to reference implementations.
    Up to 4,096 features the order sorts random 32-bit words whose low bits hold the feature's
    index (two features tie in their >= 20 random bits with probability <= 2^-20, and a tie
    keeps the index order); beyond that ``jax.random.permutation``.
    """
    key = jax.random.fold_in(key, t)
    if F > _PACKED_FEATURES:
        return jax.random.permutation(key, F)
    low, packed = _packed_order(key, F)
    return (jnp.sort(packed) & jnp.uint32((1 << low) - 1)).astype(jnp.int32)


def _packed_order(key, F: int):
    """Random 32-bit words whose order is :func:`random_subset`'s (the index in the low bits)."""
    low = max(1, (F - 1).bit_length())
    bits = jax.random.bits(key, (F,), jnp.uint32)
    return low, (bits >> low << low) | jnp.arange(F, dtype=jnp.uint32)


def random_subset_mask(key, t, F: int, k) -> jax.Array:
    """``(F,)`` bools: the first ``k`` features of :func:`random_subset` ``(key, t, F)``.

    Up to 4,096 features these are the ``k`` smallest packed words, found by a binary search
    for the ``k``-th smallest (32 counting passes) instead of a sort and a scatter (2.3x faster
    on 1,024 features: XLA:CPU's sort is ~30 us per row).
    """
    if F > _PACKED_FEATURES:
        perm = random_subset(key, t, F)
        return jnp.zeros(F, bool).at[perm].set(jnp.arange(F) < k)
    _, packed = _packed_order(jax.random.fold_in(key, t), F)

    def halve(_, bounds):  # the k-th smallest word lies in [lo, hi]
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        enough = jnp.sum(packed <= mid) >= k
        return jnp.where(enough, lo, mid + 1), jnp.where(enough, mid, hi)

    kth, _ = jax.lax.fori_loop(0, 32, halve, (jnp.uint32(0), jnp.uint32(2**32 - 1)))
    return (packed <= kth) & (k > 0)


# Rong et al.'s neighbour weights: 1/6 for the 4 direct neighbours, 1/12 for the diagonals.
_OFFSETS = (
    (1, 1, 1 / 12), (0, 1, 1 / 6), (-1, 1, 1 / 12), (1, -1, 1 / 12),
    (0, -1, 1 / 6), (-1, -1, 1 / 12), (1, 0, 1 / 6), (-1, 0, 1 / 6),
)  # fmt: skip


def _neighbours(a):
    """``sum_o w_o * a[..., y + dy, x + dx]`` over the 8 neighbours (zero outside the image)."""
    H, W = a.shape[-2:]
    p = jnp.pad(a, ((0, 0),) * (a.ndim - 2) + ((1, 1), (1, 1)))
    return sum(w * p[..., 1 + dy : 1 + dy + H, 1 + dx : 1 + dx + W] for dy, dx, w in _OFFSETS)


def noisy_linear_imputation(x, removed, key, noise, *, maxiter: int):
    """ROAD's imputation: every removed pixel is the weighted mean of its 8 neighbours (a
    sparse linear system, solved by conjugate gradients), plus ``noise * N(0, 1)``.

    Args:
        x: one image ``(H, W, C)``; removed: ``(H, W)`` bools.

    References:
        Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods",
        ICML 2022.
    """
    # Channels first: the stencil then runs along W, the minor axis (25 % faster than along C).
    xc = jnp.moveaxis(x, -1, 0)
    m = removed[None]
    d = _neighbours(jnp.ones_like(m, x.dtype))
    rhs = jnp.where(m, _neighbours(jnp.where(m, 0, xc)), 0)

    def op(v):  # SPD: D - W on the removed block, the identity elsewhere
        return jnp.where(m, d * v - _neighbours(jnp.where(m, v, 0)), v)

    v, _ = jax.scipy.sparse.linalg.cg(op, rhs, tol=1e-7, maxiter=maxiter)
    v = jnp.moveaxis(v, 0, -1)
    return jnp.where(removed[:, :, None], v + noise * jax.random.normal(key, x.shape, x.dtype), x)


# ROAD's imputations solved at once: a CG step of this many 32x32x3 rows (2.4 MiB) stays in
# cache, and a group this small shares a stopping step (~2x faster than a 576-row chunk).
_IMPUTE_ROWS = 64


def uniform_at(key, flat) -> jax.Array:
    """``jax.random.uniform(key, shape).reshape(-1)[flat]`` (float32) without the other draws.

    Threefry under ``jax_threefry_partitionable`` draws element ``j`` from the counter ``j``
    alone (:func:`uniform_draws_by_index` says when that holds), so a band of 64 of 1,024
    pixels costs 1/16 of the full draw.
    """
    from jax.extend.random import threefry2x32_p

    data = jax.random.key_data(key)
    flat = flat.astype(jnp.uint32)
    hi, lo = threefry2x32_p.bind(data[0], data[1], jnp.zeros_like(flat), flat)
    # jax.random.uniform's float32 mantissa trick, on the same 32 bits.
    one = jnp.uint32(np.array(1.0, np.float32).view(np.uint32))
    return jax.lax.bitcast_convert_type(((hi ^ lo) >> 9) | one, jnp.float32) - 1.0


def uniform_draws_by_index(keys, dtype) -> bool:
    """Whether :func:`uniform_at` reproduces ``jax.random.uniform`` for ``keys`` and ``dtype``."""
    from jax.extend.random import threefry_prng_impl

    return (
        np.dtype(dtype) == np.float32
        and bool(jax.config.jax_threefry_partitionable)
        and str(jax.random.key_impl(keys)) == threefry_prng_impl.name
    )


class Scores(NamedTuple):
    """Per perturbed row ``(n, T)``: the target score, the predicted class, the attribution sum
    of the replaced features; per instance ``(n,)``: the unperturbed score and class."""

    scores: np.ndarray
    classes: np.ndarray | None
    att_sums: np.ndarray
    y0: np.ndarray
    class0: np.ndarray | None


@functools.partial(
    jax.jit,
    static_argnames=(
        "model",
        "x_shape",
        "steps",
        "repeats",
        "rule",
        "invert",
        "batch_size",
        "impute",
        "grid",
        "band_width",
    ),
)
def masked_scores(
    model,
    params,
    X,
    base,
    span,
    A,
    g,
    lo,
    hi,
    keys,
    indices,
    bands=None,
    *,
    x_shape,
    steps,
    repeats,
    rule,
    invert,
    batch_size,
    impute=None,
    grid=None,
    band_width=None,
):
    """Scores of ``n * steps`` perturbed rows (see the module docstring); row ``t`` uses band
    or subset ``t // repeats`` and, with ``span``, its own uniform draw of the baseline.

    ``bands``: ``(order, position, start)`` of narrow bands (at most ``band_width`` features):
    each instance's features in ``g`` order, each feature's place in it, and where each band
    starts; the uniform draws are then made for the band's features alone."""
    n, F, C = X.shape
    out0 = evaluate(model, params, X.reshape((n,) + x_shape), batch_size=batch_size)
    vector = out0.ndim == 2
    if indices is None and vector:
        indices = jnp.argmax(out0, axis=1)

    def pick(y, idx):
        return jnp.take_along_axis(y, idx[:, None], axis=1)[:, 0] if vector else y

    y0 = pick(out0, indices)

    def chunk(rows):
        i, t = rows // steps, rows % steps
        s = t // repeats
        if rule == "band" and g is None:  # every feature in band 0
            band0 = (lo[s] <= 0) & (hi[s] > 0)
            mask = jnp.broadcast_to(band0[:, None], (rows.shape[0], F))
        elif rule == "band":
            mask = (g[i] >= lo[s][:, None]) & (g[i] < hi[s][:, None])
        else:
            mask = jax.vmap(random_subset_mask, (0, 0, None, 0))(keys[i], t, F, hi[s])
        b = base[i]
        if span is not None:
            # The noise stream of an instance is apart from its subset stream.
            noise_keys = jax.vmap(
                lambda k, r: jax.random.fold_in(jax.random.fold_in(k, 2**31 - 1), r)
            )(keys[i], t)
            if bands is None:
                u = jax.vmap(lambda k: jax.random.uniform(k, (F, C), b.dtype))(noise_keys)
            else:
                order, position, start = bands
                first = jnp.minimum(start[i, s], F - band_width)  # the window holds the band

                def draws(k, order_i, position_i, first_i):
                    feats = jax.lax.dynamic_slice(order_i, (first_i,), (band_width,))
                    flat = feats[:, None] * C + jnp.arange(C)[None]  # index in the (F, C) draw
                    u = uniform_at(k, flat)
                    return u[jnp.clip(position_i - first_i, 0, band_width - 1)]

                u = jax.vmap(draws)(noise_keys, order[i], position[i], first)
            b = b + span[i] * u
        m = mask[:, :, None]
        x = jnp.where(m, X[i], b) if invert else jnp.where(m, b, X[i])
        if impute is not None:  # (noise, CG iterations): ROAD's imputation replaces the baseline
            H, W = grid
            noise_keys = jax.vmap(lambda k, r: jax.random.fold_in(jax.random.fold_in(k, 7), r))(
                keys[i], t
            )

            def one(args):
                xi, mi, ki = args
                return noisy_linear_imputation(
                    xi.reshape(H, W, C), mi.reshape(H, W), ki, impute[0], maxiter=impute[1]
                )

            # A vmapped CG runs until its slowest row converges (90 % removed: ~50 steps, 10 %:
            # ~10), so rows with the same number of removed pixels are solved together.
            order = jnp.argsort(hi[s], stable=True)
            x = jax.lax.map(
                one, (X[i][order], mask[order], noise_keys[order]), batch_size=_IMPUTE_ROWS
            )
            x = x[jnp.argsort(order)].reshape(-1, F, C)
        y = model.apply(params, x.reshape((-1,) + x_shape))
        att = jnp.sum(jnp.where(mask, A[i], 0), axis=1)
        cls = jnp.argmax(y, axis=1) if vector else jnp.zeros(rows.shape, jnp.int32)
        return pick(y, indices[i]) if vector else y, cls, att

    cls0 = jnp.argmax(out0, axis=1) if vector else jnp.zeros((n,), jnp.int32)
    if steps == 0:  # the unperturbed outputs alone
        empty = jnp.zeros((n, 0), y0.dtype)
        return empty, jnp.zeros((n, 0), jnp.int32), empty, y0, cls0
    # The fewest, most even chunks: 800 rows at 682 per chunk run as 2 x 400, not 2 x 682.
    chunk_size = balanced_chunk(n * steps, batch_size)
    scores, classes, att = map_row_chunks(chunk, n * steps, chunk_size)
    return (
        scores.reshape(n, steps),
        classes.reshape(n, steps),
        att.reshape(n, steps),
        y0,
        cls0,
    )


def run(
    setup: Setup,
    *,
    base,
    span=None,
    g=None,
    lo,
    hi,
    rule="band",
    invert=False,
    repeats=1,
    key=None,
    impute=None,
) -> Scores:
    """Evaluate ``len(lo) * repeats`` perturbed rows of every instance (see the module docs)."""
    n, F, _ = setup.X.shape
    lo = np.asarray(lo, np.int32)
    hi = np.asarray(hi, np.int32)
    steps = int(len(hi)) * int(repeats)
    needs_key = rule == "random" or span is not None or (impute is not None and impute[0] > 0)
    # No keys, no ``g`` and a per-instance constant ``base`` when they are not needed: making and
    # copying them took longer than the model on 2 rows per instance of a small CNN.
    keys = instance_keys(key, n) if needs_key else None
    if keys is None and impute is not None:  # noise 0: the noise keys are drawn, then unused
        keys = jax.random.split(jax.random.key(0), n)
    bands, band_width = None, None
    if rule == "band" and g is not None and span is not None:
        bands, band_width = _narrow_bands(np.asarray(g, np.int32), lo, hi)
        if bands is not None and not uniform_draws_by_index(keys, setup.X.dtype):
            bands, band_width = None, None
    g = None if g is None else jnp.asarray(np.asarray(g, np.int32))
    out = call(
        masked_scores,
        setup.model,
        setup.params,
        jnp.asarray(setup.X),
        None if base is None else jnp.asarray(base),
        None if span is None else jnp.asarray(span),
        jnp.asarray(setup.A),
        g,
        jnp.asarray(lo),
        jnp.asarray(hi),
        keys,
        setup.indices,
        bands,
        x_shape=setup.x_shape,
        steps=steps,
        repeats=int(repeats),
        rule=rule,
        invert=invert,
        batch_size=setup.batch_size,
        impute=impute,
        grid=setup.grid if impute is not None else None,
        band_width=band_width,
    )
    scores, classes, att, y0, cls0 = (np.asarray(o) for o in out)
    if not (np.all(np.isfinite(scores)) and np.all(np.isfinite(y0))):
        bad = np.flatnonzero(~(np.isfinite(scores).all(1) & np.isfinite(y0))).tolist()
        raise ValueError(
            f"f returned NaN or inf on the (perturbed) inputs of instances {bad[:10]}: a metric "
            "of a non-finite score is meaningless"
        )
    vector = bool(setup.model.output_shape)
    return Scores(scores, classes if vector else None, att, y0, cls0 if vector else None)


def _narrow_bands(g, lo, hi):
    """``((order, position, start), width)`` when every band holds at most a quarter of the
    features (then the uniform baseline is drawn for the band alone), else ``(None, None)``."""
    n, F = g.shape
    order = np.argsort(g, axis=1, kind="stable")
    in_order = np.take_along_axis(g, order, axis=1)
    start = np.stack([np.searchsorted(row, lo, "left") for row in in_order]).astype(np.int32)
    end = np.stack([np.searchsorted(row, hi, "left") for row in in_order])
    width = int((end - start).max(initial=0))
    if not 0 < width <= F // 4:
        return None, None
    position = np.empty_like(order)
    np.put_along_axis(position, order, np.arange(F)[None].repeat(n, 0), axis=1)
    arrays = (order.astype(np.int32), position.astype(np.int32), start)
    return tuple(jnp.asarray(a) for a in arrays), width


def ranks(values: np.ndarray) -> np.ndarray:
    """``ranks[i, f]``: position of feature ``f`` when row ``i`` of ``values`` is sorted
    ascending (stable)."""
    order = np.argsort(values, axis=1, kind="stable")
    out = np.empty_like(order)
    np.put_along_axis(out, order, np.arange(values.shape[1])[None].repeat(len(values), 0), axis=1)
    return out
