"""LIME for tabular data: discretized (quartile/decile/entropy) or standardised-normal sampling.

The host computes the training statistics (:func:`fit_discretizer`: bin edges, per-bin moments
and frequencies, categorical values). They are a value the caller holds, as ``lime``'s
``LimeTabularExplainer`` holds them: pass them as ``training_data`` to explain many batches
against one training set without recomputing them (13 ms per call on breast cancer, 15% of
explaining 40 instances on 2 CPU cores). Everything per instance (sampling, mapping back to feature
values, the model evaluation in chunks, the kernel and the surrogate fits for every label) runs
in one compiled call, a few instances at a time.
"""

# jaxtyping shape strings such as "*n m" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import ArrayLike, Float, Int, Key, UInt32

from xaijax.core import contract
from xaijax.core.batching import check_mesh, evaluate, map_instances, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.model import as_model, float_dtype
from xaijax.core.random import fast_bits, fast_normal
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets, check_target_fn
from xaijax.lime.labels import fitted_labels, pack_fits, resolve_labels
from xaijax.lime.selection import FEATURE_SELECTION_METHODS
from xaijax.lime.surrogate import explain_with_data

__all__ = ["TabularStats", "fit_discretizer", "lime_tabular", "sample_neighbourhood"]

# Feature kinds: sampled from a normal, from the training values, or by bin.
CONTINUOUS, CATEGORICAL, DISCRETIZED = 0, 1, 2
DISCRETIZERS = ("quartile", "decile", "entropy")


class TabularStats(NamedTuple):
    """Training-data statistics LIME samples from, padded to a common number of values per feature.

    Attributes:
        kind: ``(M,)`` int, CONTINUOUS / CATEGORICAL / DISCRETIZED.
        edges: ``(M, E)`` bin edges (``+inf`` padded); bin ``b`` is ``edges[b-1] < x <= edges[b]``.
        values: ``(M, V)`` the values a feature is sampled from: bin ids or categories.
        freqs: ``(M, V)`` their training frequencies (0 for padding).
        bin_mean, bin_std, bin_min, bin_max: ``(M, V)`` per-bin moments and boundaries.
        quantiles: ``(M, V, Q)`` each bin's truncated-normal quantile table (see
            :func:`truncnorm_table`), what a discretized value is drawn from.
        mean, scale: ``(M,)`` the standardisation (0 and 1 for categorical/discretized features).
        names: ``M`` feature names; ``bin_names``: per discretized feature, one label per bin.
    """

    kind: np.ndarray
    edges: np.ndarray
    values: np.ndarray
    freqs: np.ndarray
    bin_mean: np.ndarray
    bin_std: np.ndarray
    bin_min: np.ndarray
    bin_max: np.ndarray
    quantiles: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    names: tuple[str, ...]
    bin_names: tuple[tuple[str, ...], ...]

    def on_device(self, dtype=None) -> TabularStats:
        """These statistics with their arrays on the default device, in the explainer dtype.

        :func:`lime_tabular` copies host statistics to the device on every call (0.5 ms for
        breast cancer's 30 features on a CPU); statistics already there are used as they are.

        Example:
            >>> import numpy as np
            >>> stats = fit_discretizer(np.random.default_rng(0).normal(size=(50, 3)))
            >>> type(stats.on_device().quantiles).__name__
            'ArrayImpl'
        """
        return _arrays(self, dtype or float_dtype())._replace(
            names=self.names, bin_names=self.bin_names
        )


def _bin_edges(column, discretizer, labels):
    if discretizer == "quartile":
        return np.unique(np.percentile(column, [25, 50, 75]))
    if discretizer == "decile":
        return np.unique(np.percentile(column, [10, 20, 30, 40, 50, 60, 70, 80, 90]))
    # Entropy: the thresholds of a depth-3 entropy tree on this feature alone, as the reference.
    from sklearn.tree import DecisionTreeClassifier

    tree = DecisionTreeClassifier(criterion="entropy", max_depth=3, random_state=0)
    tree.fit(column.reshape(-1, 1), labels)
    edges = tree.tree_.threshold[tree.tree_.children_left > -1]
    return np.unique(edges) if edges.size else np.array([np.median(column)])


def fit_discretizer(
    training_data: Float[ArrayLike, "N m"],
    *,
    discretize_continuous: bool = True,
    discretizer: str = "quartile",
    categorical_features: Sequence[int] = (),
    training_labels: Int[ArrayLike, " N"] | None = None,
    feature_names: Sequence[str] | None = None,
) -> TabularStats:
    """Compute the training statistics of ``lime.lime_tabular.LimeTabularExplainer``.

    Hold the result and pass it to :func:`lime_tabular` as ``training_data``, as lime's users
    hold the explainer: the statistics are then computed once for every batch explained against
    this training set.

    Args:
        training_data: ``(N, M)`` training rows.
        discretize_continuous: bin the non-categorical features (else: standardised normal).
        discretizer: ``"quartile"``, ``"decile"`` or ``"entropy"`` (needs ``training_labels``).
        categorical_features: indices of categorical columns, in ``0..M-1``.
        training_labels: ``(N,)`` class labels, for the entropy discretizer.
        feature_names: ``M`` names (default ``"0"``, ``"1"``, ...).

    Returns:
        A :class:`TabularStats` (NumPy arrays on the host).

    Raises:
        TypeError: for non-numeric ``training_data``.
        ValueError: on a non-2-D or non-finite ``training_data``, an unknown discretizer, missing
            labels for the entropy discretizer, or a categorical index out of range.

    References:
        Ribeiro, Singh & Guestrin, "Why Should I Trust You?": Explaining the Predictions of Any
        Classifier, KDD 2016.

    Example:
        >>> import numpy as np
        >>> stats = fit_discretizer(np.arange(8.0).reshape(4, 2), feature_names=["a", "b"])
        >>> stats.bin_names[0]
        ('a <= 1.50', '1.50 < a <= 3.00', '3.00 < a <= 4.50', 'a > 4.50')
    """
    data = contract.as_float_array("training_data", training_data, dtype=np.float64)
    if data.ndim != 2 or data.shape[0] < 1 or data.shape[1] < 1:
        raise ValueError(
            f"training_data must have shape (N, M) with N >= 1 rows; got shape {data.shape}"
        )
    N, M = data.shape
    categorical = [int(c) for c in categorical_features]
    bad = [c for c in categorical if not 0 <= c < M]
    if bad:
        raise ValueError(f"categorical_features must be column indices in 0..{M - 1}; got {bad}")
    if discretize_continuous:
        contract.check_choice("discretizer", discretizer, DISCRETIZERS)
    if discretize_continuous and discretizer == "entropy":
        if training_labels is None:
            raise ValueError("training_labels (N,) are required with discretizer='entropy'")
        if np.shape(training_labels) != (N,):
            raise ValueError(
                f"training_labels must have shape ({N},), one per training row; got "
                f"{np.shape(training_labels)}"
            )
    names = contract.check_names("feature_names", feature_names, M)
    names = names or tuple(str(j) for j in range(M))

    columns = []  # per feature: (kind, edges, values, freqs, mean, std, min, max, bin names)
    scaler_mean, scaler_scale = data.mean(axis=0), data.std(axis=0)
    scaler_scale = np.where(scaler_scale == 0, 1.0, scaler_scale)
    for j in range(M):
        col = data[:, j]
        if j in categorical:
            values, counts = np.unique(col, return_counts=True)
            zero = np.zeros_like(values)
            columns.append(
                (CATEGORICAL, np.zeros(0), values, counts, zero, zero + 1, zero, zero, ())
            )
        elif discretize_continuous:
            edges = _bin_edges(col, discretizer, training_labels)
            bins = np.searchsorted(edges, col)
            ids = np.arange(len(edges) + 1)
            counts = np.array([np.sum(bins == b) for b in ids])
            mean = np.array([col[bins == b].mean() if counts[b] else 0.0 for b in ids])
            # The reference adds 1e-11 so a one-valued bin still has a (tiny) spread.
            std = np.array([col[bins == b].std() if counts[b] else 0.0 for b in ids]) + 1e-11
            lo = np.concatenate([[col.min()], edges])
            hi = np.concatenate([edges, [col.max()]])
            n = names[j]
            labels = [f"{n} <= {edges[0]:.2f}"]
            labels += [
                f"{a:.2f} < {n} <= {b:.2f}" for a, b in zip(edges[:-1], edges[1:], strict=True)
            ]
            labels.append(f"{n} > {edges[-1]:.2f}")
            columns.append((DISCRETIZED, edges, ids, counts, mean, std, lo, hi, tuple(labels)))
        else:
            one = np.zeros(1)
            columns.append((CONTINUOUS, np.zeros(0), one, one + 1, one, one + 1, one, one, ()))
    E = max(1, max(len(c[1]) for c in columns))
    V = max(len(c[2]) for c in columns)

    def pad(i, width, fill):
        return np.stack(
            [np.pad(c[i], (0, width - len(c[i])), constant_values=fill) for c in columns]
        )

    kind = np.array([c[0] for c in columns])
    freqs = pad(3, V, 0).astype(np.float64)
    binned = kind != CONTINUOUS
    bin_mean, bin_std = pad(4, V, 0), pad(5, V, 1)
    bin_min, bin_max = pad(6, V, 0), pad(7, V, 0)
    quantiles = truncnorm_table(bin_mean, bin_std, bin_min, bin_max)

    return TabularStats(
        kind=kind,
        edges=pad(1, E, np.inf),
        values=pad(2, V, 0),
        freqs=freqs / freqs.sum(axis=1, keepdims=True),
        bin_mean=bin_mean,
        bin_std=bin_std,
        bin_min=bin_min,
        bin_max=bin_max,
        quantiles=quantiles,
        mean=np.where(binned, 0.0, scaler_mean),
        scale=np.where(binned, 1.0, scaler_scale),
        names=names,
        bin_names=tuple(c[8] for c in columns),
    )


# The truncated normal is drawn by inverse CDF from a 16-bit uniform ``u = (k + 1/2) / 65536``,
# reading a per-bin table of its quantile function: exact at the 256 extreme values at each end,
# where it is steep, then linear interpolation between quantiles every 32 values up to 2048 from
# either end, and every 256 values in the middle. The interpolation error stays below 1e-3 bin
# standard deviations (tests/test_lime_tabular.py checks it against scipy), far below LIME's
# sampling noise, at a fraction of the cost of evaluating ``ndtri`` per draw.
# Segments of the 16-bit range: (first value, end, log2 of the values per cell; 0 = exact).
_SEGMENTS = ((0, 256, 0), (256, 2048, 5), (2048, 63488, 8), (63488, 65280, 5), (65280, 65536, 0))


def _segment_grid():
    """Each segment's offset in a table row, and the uniforms ``u`` the row holds quantiles at."""
    offsets, grids, at = [], [], 0
    for first, end, shift in _SEGMENTS:
        if shift == 0:  # exact: every value's own u
            grid = (np.arange(first, end) + 0.5) / 65536
        else:  # cell boundaries, both ends included
            grid = np.arange(first, end + 1, 2**shift) / 65536
        offsets.append(at)
        grids.append(grid)
        at += len(grid)
    grid = np.concatenate(grids)
    grid.flags.writeable = False  # a module constant
    return tuple(offsets), grid


_OFFSETS, _GRID = _segment_grid()
TABLE_SIZE = len(_GRID)


def truncnorm_table(mean, std, lo, hi) -> np.ndarray:
    """Quantile tables of the normals ``N(mean, std²)`` truncated to ``[lo, hi]``, ``(..., 867)``.

    Each row holds the quantiles at the uniforms :func:`_truncnorm_draw` reads (see
    ``_SEGMENTS``). Computed in float64, the upper half through the survival function, so a bin
    far in a tail keeps its precision. A bin with ``lo == hi`` is that one value (the reference
    returns the z-score there, a bug).
    """
    from scipy.special import ndtr, ndtri

    mean, std, lo, hi = (np.asarray(a, np.float64)[..., None] for a in (mean, std, lo, hi))
    a, b = (lo - mean) / std, (hi - mean) / std
    u = _GRID
    with np.errstate(divide="ignore", invalid="ignore"):
        # Lower half by the CDF, upper half by the survival function: no cancellation near 1.
        cdf = ndtr(a) + u * (ndtr(b) - ndtr(a))
        sf = ndtr(-b) + (1.0 - u) * (ndtr(-a) - ndtr(-b))
        z = np.where(cdf <= 0.5, ndtri(cdf), -ndtri(sf))
        x = np.clip(mean + std * z, lo, hi)
    x = np.where(u == 0.0, lo, np.where(u == 1.0, hi, x))
    return np.where(lo == hi, lo, x)


def _truncnorm_draw(table, row, u16):
    """Values from the quantile tables: ``table`` flat ``(R * TABLE_SIZE,)``, ints ``row``, ``u16``.

    Elementwise index arithmetic and two gathers: the quantile at ``u16``'s cell boundaries on
    either side (the same entry for an exact one), mixed by its position in the cell.
    """
    first = jnp.zeros_like(u16)
    shift = jnp.zeros_like(u16)
    offset = jnp.zeros_like(u16)
    for (start, _, bits), off in zip(_SEGMENTS[1:], _OFFSETS[1:], strict=True):
        above = u16 >= start
        first = jnp.where(above, jnp.uint32(start), first)
        shift = jnp.where(above, jnp.uint32(bits), shift)
        offset = jnp.where(above, jnp.uint32(off), offset)
    t = u16 - first
    rest = t & ((jnp.uint32(1) << shift) - 1)
    at = row * TABLE_SIZE + (offset + (t >> shift)).astype(row.dtype)
    left = jnp.take(table, at)
    right = jnp.take(table, jnp.where(shift == 0, at, at + 1))
    width = (jnp.uint32(1) << shift).astype(left.dtype)
    frac = (rest.astype(left.dtype) + 0.5) / width
    return left + frac * (right - left)


def _sample(stats, x, key, num_samples, sample_around_instance, kinds):
    """LIME's neighbourhood of ``x``: interpretable features ``(S, M)`` and model inputs ``(S, M)``.

    ``kinds`` (static) is the set of feature kinds present, so no random numbers are drawn for a
    kind that does not occur (random bits dominate the cost of sampling).
    """
    S, M = num_samples, x.shape[0]
    k_normal, k_choice = jax.random.split(key)
    dtype = x.dtype
    is_continuous = (stats.kind == CONTINUOUS)[None, :]
    is_discretized = (stats.kind == DISCRETIZED)[None, :]
    inputs = jnp.zeros((S, M), dtype)
    same = jnp.ones((S, M), dtype)

    if CONTINUOUS in kinds:
        # Standard normal scaled to the training spread, around the mean or the instance.
        centre = x if sample_around_instance else stats.mean
        normal = fast_normal(k_normal, (S, M), dtype) * stats.scale[None, :]
        inputs = jnp.where(is_continuous, normal + centre[None, :], inputs)

    if CATEGORICAL in kinds or DISCRETIZED in kinds:
        # One 32-bit word per entry gives two 16-bit uniforms: the top half picks the category
        # or bin by training frequency (inverse CDF), the bottom half places the value inside the
        # bin. 1/65536 resolution is far below LIME's sampling noise.
        bits = fast_bits(k_choice, (S, M))
        u_choice = ((bits >> 16).astype(dtype) + 0.5) / 65536.0
        cdf = jnp.cumsum(stats.freqs, axis=1)
        V = stats.freqs.shape[1]
        choice = jnp.sum(u_choice[:, :, None] >= cdf[None, :, :-1], axis=2)
        if CATEGORICAL in kinds:
            # (A flat ``take`` is several times faster on CPU than 2-D advanced indexing.)
            drawn = jnp.take(stats.values.T.reshape(-1), choice * M + jnp.arange(M)[None, :])
        else:
            drawn = choice.astype(dtype)  # a discretized feature's values are its bin ids

        instance_bin = jax.vmap(lambda e, v: jnp.searchsorted(e, v, side="left"))(stats.edges, x)
        instance_value = jnp.where(stats.kind == DISCRETIZED, instance_bin.astype(dtype), x)
        same = jnp.where(is_continuous, same, (drawn == instance_value[None, :]).astype(dtype))
        inputs = jnp.where(is_continuous, inputs, drawn)

        if DISCRETIZED in kinds:
            # A bin maps back to a value by a normal truncated to the bin's boundaries, read
            # from the bin's quantile table at the low 16 bits.
            row = jnp.arange(M)[None, :] * V + choice
            value = _truncnorm_draw(stats.quantiles.reshape(-1), row, bits & 0xFFFF)
            inputs = jnp.where(is_discretized, value, inputs)

    # Row 0 is the instance itself. Selected elementwise rather than written in afterwards
    # (``.at[0].set``), so that the whole sampler stays one pass over the (S, M) arrays.
    first = (jnp.arange(S) == 0)[:, None]
    inputs = jnp.where(first, x[None, :], inputs)
    if CONTINUOUS in kinds:
        scaled = (inputs - stats.mean[None, :]) / stats.scale[None, :]
        features = jnp.where(is_continuous, scaled, same)
    else:
        features = same
    at_instance = jnp.where(stats.kind == CONTINUOUS, (x - stats.mean) / stats.scale, 1.0)
    features = jnp.where(first, at_instance[None, :].astype(dtype), features)
    return features, inputs


def sample_neighbourhood(
    stats: TabularStats,
    x: ArrayLike,
    key: jax.Array,
    num_samples: int = 5000,
    *,
    sample_around_instance: bool = False,
) -> tuple[jax.Array, jax.Array]:
    """The neighbourhood :func:`lime_tabular` fits on for one instance, drawn by the same sampler.

    Args:
        stats: from :func:`fit_discretizer`.
        x: one instance, ``(M,)``.
        key: a ``jax.random.key`` or raw ``PRNGKey``; the key :func:`lime_tabular` uses for
            instance ``i`` is ``jax.random.split(key, n)[i]``.
        num_samples: rows, ``>= 2``; row 0 is ``x`` itself.
        sample_around_instance: as in :func:`lime_tabular`.

    Returns:
        ``(features, inputs)``, both ``(num_samples, M)``: the interpretable features the
        surrogate is fitted on (scaled continuous values, ``1.0`` where a binned or categorical
        feature equals the instance's) and the inputs the model is evaluated on.

    Example:
        >>> import jax, numpy as np
        >>> X = np.random.default_rng(0).normal(size=(100, 3)).astype(np.float32)
        >>> stats = fit_discretizer(X)
        >>> features, inputs = sample_neighbourhood(stats, X[0], jax.random.key(0), 50)
        >>> features.shape, inputs.shape, bool((inputs[0] == X[0]).all())
        ((50, 3), (50, 3), True)
    """
    if not isinstance(stats, TabularStats):
        raise TypeError(
            f"stats must be TabularStats from fit_discretizer, got {type(stats).__name__}"
        )
    num_samples = contract.check_int("num_samples", num_samples, minimum=2)
    dtype = float_dtype()
    x = jnp.asarray(contract.as_float_array("x", x, dtype=dtype))
    if x.shape != (stats.kind.shape[0],):
        raise ValueError(f"x must be one instance of shape ({stats.kind.shape[0]},), got {x.shape}")
    key = contract.instance_keys(key, None)
    kinds = tuple(sorted({int(k) for k in np.asarray(stats.kind)}))
    return _sample(_arrays(stats, dtype), x, key, num_samples, bool(sample_around_instance), kinds)


@functools.partial(
    jax.jit,
    static_argnames=(
        "model",
        "num_samples",
        "num_features",
        "feature_selection",
        "top",
        "kernel_width",
        "sample_around_instance",
        "kinds",
        "batch_size",
        "mesh",
    ),
)
def _explain(model, params, stats, X, key, ids, *, mesh, **options):
    # options: the static keywords of _explain_instances, passed through.
    def local(instances, shared):
        return _explain_instances(model, *shared, *instances, **options)

    return over_instances(local, (X, key, ids), (params, stats), mesh=mesh)


def _explain_instances(
    model,
    params,
    stats,
    X,
    key,
    ids,
    *,
    num_samples,
    num_features,
    feature_selection,
    top,
    kernel_width,
    sample_around_instance,
    kinds,
    batch_size,
):
    M = X.shape[1]

    def one(args):
        # One instance: its neighbourhood, the model on it (chunked), and the surrogate fits.
        # Instances run a few at a time (map_instances), so memory is bounded by batch_size
        # model rows, not by the number of instances.
        x, k, label_ids = args
        features, inputs = _sample(stats, x, k, num_samples, sample_around_instance, kinds)
        y = evaluate(model, params, inputs.reshape(num_samples, M), batch_size=batch_size)
        y = y.reshape(num_samples, -1)
        label_ids = fitted_labels(y[0], label_ids, top)
        distances = jnp.sqrt(jnp.sum((features - features[:1, :]) ** 2, axis=1))
        fits = explain_with_data(
            features,
            y[:, label_ids],
            distances,
            kernel_width=kernel_width,
            num_features=num_features,
            feature_selection=feature_selection,
        )
        return fits, label_ids, y[0], jnp.all(jnp.isfinite(y))

    return map_instances(one, (X, key, ids), num_samples, batch_size)


@explainer(kind="surrogate", inputs="tabular", reference="training_data", random=True)
def lime_tabular(
    f: Callable,
    X: Float[ArrayLike, "*n m"],
    training_data: Float[ArrayLike, "N m"] | TabularStats,
    *,
    targets: Targets = None,
    key: Key[ArrayLike, "*n"] | UInt32[ArrayLike, "*n 2"],
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    num_samples: int = 5000,
    num_features: int = 10,
    feature_selection: str = "auto",
    labels: Sequence[int] | None = None,
    top_labels: int | None = None,
    discretize_continuous: bool = True,
    discretizer: str = "quartile",
    categorical_features: Sequence[int] = (),
    training_labels: Int[ArrayLike, " N"] | None = None,
    feature_names: Sequence[str] | None = None,
    kernel_width: float | None = None,
    sample_around_instance: bool = False,
) -> Explanation:
    """LIME attributions of ``f`` for tabular rows ``X``, as ``lime``'s ``LimeTabularExplainer``.

    Per instance: ``num_samples`` neighbours are drawn (by default each feature's quartile bin by
    its training frequency, mapped back to a value by a truncated normal; the interpretable
    feature is "same bin as the instance"), weighted by ``sqrt(exp(-d²/w²))`` with
    ``w = 0.75 sqrt(M)``, and a Ridge(alpha=1) surrogate is fitted on the selected features for
    each label. All instances are explained in one compiled call.

    Args:
        f: the model, ``f(X: (n, M)) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX or Equinox module, or a NumPy callable such as
            ``predict_proba``.
        X: one instance ``(M,)`` or a batch ``(n, M)``.
        training_data: ``(N, M)`` training rows, or their :func:`fit_discretizer` statistics
            (computed once: pass them when explaining many batches against one training set;
            the discretizer options below then come from the statistics).
        targets: which output to explain: ``None`` (every output: ``values (n, M, K)``), an int,
            ``(n,)`` ints, or a callable on the model outputs (``values (n, M)``); see
            :mod:`xaijax.lime.labels`.
        key: a ``jax.random.key`` or raw ``PRNGKey`` (instance ``i`` uses
            ``jax.random.split(key, n)[i]``), or ``(n,)`` keys, one per instance; the same key
            gives the same explanation.
        batch_size: most model rows evaluated at once (per device); ``None`` picks a default for
            the backend and the row size.
        mesh: optional :class:`jax.sharding.Mesh` (e.g. :func:`~xaijax.instance_mesh`) to shard
            the instances over; the values equal the one-device call's.
        num_samples: neighbourhood size ``>= 2`` (row 0 is the instance itself).
        num_features: features in each surrogate, ``>= 1``.
        feature_selection: ``"auto"``, ``"forward_selection"``, ``"highest_weights"``,
            ``"lasso_path"`` or ``"none"`` (see :mod:`xaijax.lime.selection`).
        labels: lime's alias: these output indices, one column each (``values (n, M, L)``).
        top_labels: lime's alias: the ``min(top_labels, K)`` highest outputs at each instance.
        discretize_continuous, discretizer, categorical_features, training_labels, feature_names:
            as in :func:`fit_discretizer` (only with training rows).
        kernel_width: kernel width ``> 0`` (default ``0.75 * sqrt(M)``).
        sample_around_instance: centre the normal sampling at the instance (continuous mode).

    Returns:
        An :class:`Explanation` of kind ``"surrogate"``: ``values`` the surrogate coefficients
        ``(n, M, L)`` for ``L`` labels (``(n, M)`` for one target or a scalar-output model),
        ``base_values`` the intercepts; ``extras``: ``intercept``, ``score`` (weighted R²),
        ``local_pred``, ``labels`` (the output indices fitted), ``selected`` (like ``values``),
        ``prediction`` (model output at the instance) and ``feature_labels`` ``(n, M)`` such as
        ``"0.12 < mean radius <= 0.57"``.

    Raises:
        TypeError: for arguments of the wrong type (named in the message), or ``targets`` with
            ``labels``/``top_labels``.
        ValueError: on shapes or values out of range (named in the message), or NaN/inf model
            outputs on an instance's neighbourhood.

    References:
        Ribeiro, Singh & Guestrin, "Why Should I Trust You?": Explaining the Predictions of Any
        Classifier, KDD 2016.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> train = np.random.default_rng(0).normal(size=(100, 3))
        >>> f = lambda X: jax.nn.softmax(jnp.stack([X[:, 0], -X[:, 0]], axis=1))
        >>> stats = fit_discretizer(train)
        >>> exp = lime_tabular(f, train[:4], stats, key=jax.random.key(0), num_samples=500)
        >>> exp.values.shape, exp.kind
        ((4, 3, 2), 'surrogate')
        >>> lime_tabular(f, train[:4], stats, targets=1, key=jax.random.key(0),
        ...              num_samples=500).values.shape
        (4, 3)
    """
    dtype = float_dtype()
    if isinstance(training_data, TabularStats):
        given = {
            "discretize_continuous": discretize_continuous is not True,
            "discretizer": discretizer != "quartile",
            "categorical_features": len(tuple(categorical_features)) > 0,
            "training_labels": training_labels is not None,
            "feature_names": feature_names is not None,
        }
        if any(given.values()):
            names = ", ".join(k for k, v in given.items() if v)
            raise TypeError(
                f"{names}: fixed by the fit_discretizer(...) statistics passed as "
                "training_data; pass them to fit_discretizer instead"
            )
        stats = training_data
    else:
        stats = fit_discretizer(
            training_data,
            discretize_continuous=bool(discretize_continuous),
            discretizer=discretizer,
            categorical_features=categorical_features,
            training_labels=training_labels,
            feature_names=feature_names,
        )
    kind = np.asarray(stats.kind)
    M = kind.shape[0]
    X = contract.as_float_array("X", X, dtype=dtype)
    X, single = contract.split_instances(X, (M,), reference="training_data")
    n = X.shape[0]
    num_samples = contract.check_int("num_samples", num_samples, minimum=2)
    num_features = contract.check_int("num_features", num_features, minimum=1)
    contract.check_choice("feature_selection", feature_selection, FEATURE_SELECTION_METHODS)
    if kernel_width is None:
        width = float(0.75 * np.sqrt(M))
    else:
        width = contract.check_number("kernel_width", kernel_width, minimum=0.0, strict=True)
    key = contract.instance_keys(key, n)
    batch_size = contract.resolve_batch_size(batch_size, (M,), dtype)
    mesh = check_mesh(mesh)
    model, params = as_model(f, X)
    plan = resolve_labels(targets, labels, top_labels, n, model.num_outputs)
    if plan.score is not None:
        check_target_fn(plan.score, jax.ShapeDtypeStruct((2,) + model.output_shape, dtype))
        model = model.scored_by(plan.score)
    ids = plan.ids if plan.ids is not None else np.zeros((n, 1), np.int32)

    fits, label_ids, prediction, finite = contract.call(
        _explain,
        model,
        params,
        _arrays(stats, dtype),
        jnp.asarray(X),
        key,
        jnp.asarray(ids),
        num_samples=num_samples,
        num_features=num_features,
        feature_selection=feature_selection,
        top=plan.top,
        kernel_width=width,
        sample_around_instance=bool(sample_around_instance),
        kinds=tuple(sorted({int(k) for k in kind})),
        batch_size=batch_size,
        mesh=mesh,
    )
    return pack_fits(
        fits,
        label_ids,
        prediction,
        finite,
        plan=plan,
        data=X,
        single=single,
        method="lime_tabular",
        feature_names=tuple(stats.names),
        extras={"feature_labels": _feature_labels(stats, X)},
    )


_DEVICE_FIELDS = (
    "edges",
    "values",
    "freqs",
    "bin_mean",
    "bin_std",
    "bin_min",
    "bin_max",
    "quantiles",
    "mean",
    "scale",
)


def _arrays(stats: TabularStats, dtype) -> TabularStats:
    """The statistics the compiled sampler reads, as device arrays (no copy if already there)."""

    def on_device(a, dtype):
        # jnp.asarray of a device array is not free (a conversion dispatch per field per call).
        if isinstance(a, jax.Array) and a.dtype == dtype:
            return a
        return jnp.asarray(a, dtype)

    return stats._replace(
        **{name: on_device(getattr(stats, name), dtype) for name in _DEVICE_FIELDS},
        kind=on_device(stats.kind, np.dtype(np.int32)),
        names=None,
        bin_names=None,
    )


def _feature_labels(stats: TabularStats, X) -> np.ndarray:
    """The reference's readable feature names at each instance: its bin, ``name=value``, or name."""
    kind, all_edges = np.asarray(stats.kind), np.asarray(stats.edges)
    columns = []
    for j, name in enumerate(stats.names):
        if kind[j] == DISCRETIZED:
            edges = all_edges[j][np.isfinite(all_edges[j])]
            names = np.array(stats.bin_names[j], dtype=object)
            columns.append(names[np.searchsorted(edges, X[:, j])])
        elif kind[j] == CATEGORICAL:
            columns.append(np.array([f"{name}={int(v)}" for v in X[:, j]], dtype=object))
        else:
            columns.append(np.full(len(X), name, dtype=object))
    return np.stack(columns, axis=1).astype(str)
