"""Faithfulness metrics of Quantus (Hedström et al., JMLR 2023), compiled and batched.

Each metric takes ``(model, X, attributions, *, targets=None, batch_size=None, key=None,
...)`` with Quantus's option names, works on tabular ``(n, M)`` inputs with ``(n, M)``
attributions and on ``(n, H, W, C)`` images with ``(n, H, W)`` maps (a pixel's channels are
perturbed together) or maps of the image's own shape, and evaluates every perturbed row of
every instance in one jitted call through the chunked evaluator (:mod:`xaijax.metrics.perturb`).
``targets=None`` scores the class predicted for the unperturbed input. ``abs`` and
``normalise`` (divide by the largest ``|a|`` of each instance) default as in Quantus.
Curves come back as :class:`~xaijax.metrics.faithfulness.Curve` with Quantus's AUC
(``np.trapezoid(scores, dx=1)``).
"""

# jaxtyping shape strings such as "n H W" are not Python expressions:

from __future__ import annotations

import math

import numpy as np

from xaijax.core.contract import check_choice, check_int, check_number, one_blas_thread
from xaijax.core.masking import superpixel_groups
from xaijax.metrics.faithfulness import Curve
from xaijax.metrics.perturb import Setup, baseline_values, prepare, ranks, run

__all__ = [
    "faithfulness_correlation",
    "faithfulness_estimate",
    "monotonicity",
    "monotonicity_correlation",
    "pixel_flipping",
    "region_perturbation",
    "selectivity",
    "sensitivity_n",
    "irof",
    "sufficiency",
    "road",
    "infidelity",
]


def _pearson(a, b):
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(-1) / np.where(den > 0, den, 1), np.nan)


def _spearman(a, b):
    import scipy.stats  # here, not at import: scipy.stats alone takes ~0.9 s to import

    return _pearson(scipy.stats.rankdata(a, axis=-1), scipy.stats.rankdata(b, axis=-1))


def _trapz(y):
    return y.sum(-1) - 0.5 * (y[..., 0] + y[..., -1]) if y.shape[-1] > 1 else np.zeros(y.shape[:-1])


def _steps(setup: Setup, features_in_step):
    F = setup.A.shape[1]
    k = check_int("features_in_step", features_in_step, maximum=F)
    T = math.ceil(F / k)
    return k, T, F


def _bands(k, T, F, cumulative):
    hi = np.minimum((np.arange(T) + 1) * k, F)
    lo = np.zeros(T, int) if cumulative else np.arange(T) * k
    return lo, hi


def _f64(a):
    return np.asarray(a, np.float64)


def faithfulness_correlation(
    model,
    X,
    attributions,
    *,
    targets=None,
    batch_size=None,
    key=None,
    nr_runs=100,
    subset_size=224,
    perturb_baseline="black",
    abs=False,
    normalise=True,
) -> np.ndarray:
    """Pearson correlation of ``sum(a_S)`` and ``f(x) - f(x with S replaced)`` over random ``S``.

    Each of ``nr_runs`` runs replaces a uniformly random subset of ``subset_size`` features by
    the baseline (higher: better; a linear model with its exact attribution ``w * (x - b)``
    scores 1).

    Args:
        model: ``(n, ...) -> (n, K)`` or ``(n,)``; any form :func:`xaijax.as_model` accepts.
        X: ``(n, M)`` rows or ``(n, H, W, C)`` images.
        attributions: ``(n, M)``, ``(n, H, W)`` or ``X``'s shape, or an Explanation.
        targets: ``None`` (predicted class), an int, ``(n,)`` ints or a callable on outputs.
        batch_size: most model rows evaluated at once; the result does not depend on it.
        key: ``jax.random.key``; one, or ``(n,)``, one per instance.
        nr_runs, subset_size, perturb_baseline, abs, normalise: as in Quantus.

    Returns:
        ``(n,)`` float64 correlations.

    References:
        Bhatt, Weller & Moura, "Evaluating and Aggregating Feature-based Model Explanations",
        IJCAI 2020.

    Example:
        >>> import jax, numpy as np
        >>> X = np.random.default_rng(0).normal(size=(2, 6)); w = np.arange(6.0)
        >>> r = faithfulness_correlation(lambda x: x @ w, X, w * (X - X.min(1, keepdims=True)),
        ...                              key=jax.random.key(0), nr_runs=20, subset_size=3)
        >>> np.round(r, 4).tolist()
        [1.0, 1.0]
    """
    s = prepare(
        model, X, attributions, targets=targets, batch_size=batch_size, abs=abs, normalise=normalise
    )
    F = s.A.shape[1]
    nr_runs = check_int("nr_runs", nr_runs, minimum=2)
    subset_size = check_int("subset_size", subset_size, maximum=F)
    base, span = baseline_values(perturb_baseline, s)
    out = run(
        s, base=base, span=span, lo=[0], hi=[subset_size], rule="random", repeats=nr_runs, key=key
    )
    return _pearson(_f64(out.att_sums), _f64(out.y0)[:, None] - _f64(out.scores))


def faithfulness_estimate(
    model,
    X,
    attributions,
    *,
    targets=None,
    batch_size=None,
    features_in_step=1,
    perturb_baseline="black",
    abs=False,
    normalise=True,
) -> np.ndarray:
    """Pearson correlation of each feature group's attribution and the score drop when that
    group alone is replaced (groups of ``features_in_step`` in descending attribution order).

    Args: as :func:`faithfulness_correlation`, plus ``features_in_step`` (features per step).

    Returns:
        ``(n,)`` float64 correlations (higher: better).

    References:
        Alvarez-Melis & Jaakkola, "Towards Robust Interpretability with Self-Explaining Neural
        Networks", NeurIPS 2018.

    Example:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(2, 6)); w = np.arange(6.0)
        >>> r = faithfulness_estimate(lambda x: x @ w, X, w * (X - X.min(1, keepdims=True)))
        >>> np.round(r, 4).tolist()
        [1.0, 1.0]
    """
    s = prepare(
        model, X, attributions, targets=targets, batch_size=batch_size, abs=abs, normalise=normalise
    )
    k, T, F = _steps(s, features_in_step)
    base, span = baseline_values(perturb_baseline, s)
    lo, hi = _bands(k, T, F, cumulative=False)
    out = run(s, base=base, span=span, g=ranks(-s.A), lo=lo, hi=hi)
    return _pearson(_f64(out.att_sums), _f64(out.y0)[:, None] - _f64(out.scores))


def monotonicity(
    model,
    X,
    attributions,
    *,
    targets=None,
    batch_size=None,
    features_in_step=1,
    perturb_baseline="black",
    abs=True,
    normalise=True,
) -> np.ndarray:
    """Whether the score never decreases as features are added to the baseline in increasing
    order of attribution (Arya et al.): ``(n,)`` bools.

    Args: as :func:`faithfulness_estimate`.

    References:
        Arya et al., "One Explanation Does Not Fit All: A Toolkit and Taxonomy of AI
        Explainability Techniques", arXiv:1909.03012, 2019.

    Example:
        >>> import numpy as np
        >>> X = np.array([[1.0, 2.0, 3.0, 4.0]]); w = np.array([1.0, -1.0, 2.0, 0.5])
        >>> monotonicity(lambda x: x @ w, X, w * X, perturb_baseline=0.0).tolist()
        [False]
    """
    s = prepare(
        model, X, attributions, targets=targets, batch_size=batch_size, abs=abs, normalise=normalise
    )
    k, T, F = _steps(s, features_in_step)
    base, span = baseline_values(perturb_baseline, s)
    lo, hi = _bands(k, T, F, cumulative=True)
    out = run(s, base=base, span=span, g=ranks(s.A), lo=lo, hi=hi, invert=True)
    return np.all(np.diff(_f64(out.scores), axis=1) >= 0, axis=1)


def monotonicity_correlation(
    model,
    X,
    attributions,
    *,
    targets=None,
    batch_size=None,
    key=None,
    nr_samples=100,
    features_in_step=1,
    eps=1e-5,
    perturb_baseline="uniform",
    abs=True,
    normalise=True,
) -> np.ndarray:
    """Spearman correlation of each group's attribution and the mean squared score change when
    the group alone is replaced ``nr_samples`` times (Nguyen & Rodríguez Martínez).

    The squared change is divided by ``f(x)^2`` (when ``|f(x)| >= eps``) as in Quantus. With a
    fixed baseline every sample is the same, so one row per group is evaluated.

    Returns:
        ``(n,)`` float64 correlations.

    References:
        Nguyen & Rodríguez Martínez, "On Quantitative Aspects of Model Interpretability",
        arXiv:2007.07584, 2020.

    Example:
        >>> import numpy as np
        >>> X = np.ones((1, 4)); w = np.array([1.0, 2.0, 3.0, 4.0])
        >>> monotonicity_correlation(lambda x: x @ w, X, w * X, perturb_baseline=0.0).tolist()
        [1.0]
    """
    s = prepare(
        model, X, attributions, targets=targets, batch_size=batch_size, abs=abs, normalise=normalise
    )
    k, T, F = _steps(s, features_in_step)
    nr_samples = check_int("nr_samples", nr_samples)
    eps = check_number("eps", eps, minimum=0.0)
    base, span = baseline_values(perturb_baseline, s)
    lo, hi = _bands(k, T, F, cumulative=False)
    reps = nr_samples if span is not None else 1
    out = run(s, base=base, span=span, g=ranks(s.A), lo=lo, hi=hi, repeats=reps, key=key)
    n = len(s.A)
    y0 = _f64(out.y0)
    inv = np.where(np.abs(y0) >= eps, 1.0 / np.where(np.abs(y0) >= eps, np.abs(y0), 1), 1.0) ** 2
    var = ((_f64(out.scores) - y0[:, None]) ** 2).reshape(n, T, reps).mean(-1) * inv[:, None]
    atts = _f64(out.att_sums).reshape(n, T, reps)[:, :, 0]
    return _spearman(atts, var)


def pixel_flipping(
    model,
    X,
    attributions,
    *,
    targets=None,
    batch_size=None,
    features_in_step=1,
    perturb_baseline="black",
    abs=False,
    normalise=True,
) -> Curve:
    """The target score as features are replaced cumulatively, most attributed first.

    Returns:
        :class:`Curve`: ``scores (n, ceil(F / features_in_step))`` after each step and ``auc
        (n,)``, their trapezoidal area (lower: better).

    References:
        Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by
        Layer-Wise Relevance Propagation", PLoS ONE 2015.

    Example:
        >>> import numpy as np
        >>> X = np.ones((1, 3)); w = np.array([1.0, 2.0, 3.0])
        >>> pixel_flipping(lambda x: x @ w, X, w * X, perturb_baseline=0.0).scores.tolist()
        [[3.0, 1.0, 0.0]]
    """
    s = prepare(
        model, X, attributions, targets=targets, batch_size=batch_size, abs=abs, normalise=normalise
    )
    k, T, F = _steps(s, features_in_step)
    base, span = baseline_values(perturb_baseline, s)
    lo, hi = _bands(k, T, F, cumulative=True)
    out = run(s, base=base, span=span, g=ranks(-s.A), lo=lo, hi=hi)
    scores = _f64(out.scores)
    return Curve(_trapz(scores), scores)


def _patch_ranks(s: Setup, patch_size, order, key):
    if s.grid is None:
        raise ValueError("patch metrics need images (n, H, W, C) or 2-d maps; X is tabular")
    H, W = s.grid
    p = check_int("patch_size", patch_size, maximum=max(H, W))
    per = s.A.shape[1] // (H * W)  # elements per pixel when the maps have X's shape
    rows, cols = np.meshgrid(np.arange(H) // p, np.arange(W) // p, indexing="ij")
    pid = np.repeat((rows * -(-W // p) + cols).reshape(-1), per)
    P = int(pid.max()) + 1
    n = len(s.A)
    sums = np.zeros((n, P))
    np.add.at(sums, (np.arange(n)[:, None], pid[None]), _f64(s.A))
    if order == "morf":
        r = ranks(-sums)
    elif order == "lerf":
        r = ranks(sums)
    else:
        import jax

        from xaijax.core.contract import instance_keys

        keys = instance_keys(key, n)
        r = ranks(np.stack([np.asarray(jax.random.permutation(k, P)) for k in keys]))
    return r[:, pid], P


def region_perturbation(
    model,
    X,
    attributions,
    *,
    targets=None,
    batch_size=None,
    key=None,
    patch_size=8,
    order="morf",
    regions_evaluation=100,
    perturb_baseline="black",
    abs=False,
    normalise=True,
) -> Curve:
    """The score drop ``f(x) - f(x')`` as square patches are replaced cumulatively, in order of
    their attribution sums (``"morf"``: most relevant first, ``"lerf"``, or ``"random"``).

    Returns:
        :class:`Curve`: ``scores (n, min(regions_evaluation, patches))`` and ``auc (n,)``.

    References:
        Samek et al., "Evaluating the Visualization of What a Deep Neural Network Has Learned",
        IEEE TNNLS 2017.

    Example:
        >>> import numpy as np
        >>> X = np.ones((1, 4, 4, 1)); f = lambda x: x.sum((1, 2, 3))
        >>> a = np.zeros((1, 4, 4)); a[0, :2, :2] = 1
        >>> region_perturbation(f, X, a, patch_size=2, perturb_baseline=0.0).scores.tolist()
        [[4.0, 8.0, 12.0, 16.0]]
    """
    s = prepare(
        model, X, attributions, targets=targets, batch_size=batch_size, abs=abs, normalise=normalise
    )
    order = check_choice("order", order, ("morf", "lerf", "random"))
    g, P = _patch_ranks(s, patch_size, order, key)
    R = min(check_int("regions_evaluation", regions_evaluation), P)
    base, span = baseline_values(perturb_baseline, s)
    out = run(s, base=base, span=span, g=g, lo=np.zeros(R), hi=np.arange(1, R + 1), key=key)
    scores = _f64(out.y0)[:, None] - _f64(out.scores)
    return Curve(_trapz(scores), scores)


def selectivity(
    model,
    X,
    attributions,
    *,
    targets=None,
    batch_size=None,
    patch_size=8,
    perturb_baseline="black",
    abs=False,
    normalise=True,
) -> Curve:
    """The score as square patches are replaced cumulatively, highest attribution sum first.

    Returns:
        :class:`Curve`: ``scores (n, patches)`` and ``auc (n,)`` (lower: better).

    References:
        Montavon, Samek & Müller, "Methods for Interpreting and Understanding Deep Neural
        Networks", Digital Signal Processing 2018.

    Example:
        >>> import numpy as np
        >>> X = np.ones((1, 4, 4, 1)); f = lambda x: x.sum((1, 2, 3))
        >>> a = np.zeros((1, 4, 4)); a[0, :2, :2] = 1
        >>> selectivity(f, X, a, patch_size=2, perturb_baseline=0.0).scores.tolist()
        [[12.0, 8.0, 4.0, 0.0]]
    """
    s = prepare(
        model, X, attributions, targets=targets, batch_size=batch_size, abs=abs, normalise=normalise
    )
    g, P = _patch_ranks(s, patch_size, "morf", None)
    base, span = baseline_values(perturb_baseline, s)
    out = run(s, base=base, span=span, g=g, lo=np.zeros(P), hi=np.arange(1, P + 1))
    scores = _f64(out.scores)
    return Curve(_trapz(scores), scores)


def sensitivity_n(
    model,
    X,
    attributions,
    *,
    targets=None,
    batch_size=None,
    key=None,
    n_max_percentage=0.8,
    features_in_step=1,
    nr_samples=100,
    perturb_baseline="black",
    abs=False,
    normalise=True,
) -> np.ndarray:
    """Sensitivity-n (the paper's definition): for each subset size ``n_s = features_in_step,
    2 * features_in_step, ...`` up to ``n_max_percentage * F``, the Pearson correlation over
    ``nr_samples`` random ``n_s``-subsets of ``sum(a_S)`` and ``f(x) - f(x with S replaced)``.

    Quantus's ``SensitivityN`` instead removes features cumulatively in attribution order and
    correlates across the instances of a batch; this follows Ancona et al.

    Returns:
        ``(n, len(subset sizes))`` float64 correlations.

    References:
        Ancona, Ceolini, Öztireli & Gross, "Towards Better Understanding of Gradient-based
        Attribution Methods for Deep Neural Networks", ICLR 2018.

    Example:
        >>> import jax, numpy as np
        >>> X = np.random.default_rng(0).normal(size=(1, 5)); w = np.arange(5.0)
        >>> r = sensitivity_n(lambda x: x @ w, X, w * (X - X.min()), key=jax.random.key(0),
        ...                   nr_samples=10)
        >>> np.round(r, 4).tolist()
        [[1.0, 1.0, 1.0, 1.0]]
    """
    s = prepare(
        model, X, attributions, targets=targets, batch_size=batch_size, abs=abs, normalise=normalise
    )
    k, T, F = _steps(s, features_in_step)
    frac = check_number("n_max_percentage", n_max_percentage, minimum=0.0, maximum=1.0)
    nr_samples = check_int("nr_samples", nr_samples, minimum=2)
    sizes = np.arange(k, int(frac * F) + 1, k)
    if len(sizes) == 0:
        raise ValueError(
            f"n_max_percentage * F = {frac * F:g} is below features_in_step = {k}: no subset size"
        )
    base, span = baseline_values(perturb_baseline, s)
    out = run(
        s,
        base=base,
        span=span,
        lo=np.zeros(len(sizes)),
        hi=sizes,
        rule="random",
        repeats=nr_samples,
        key=key,
    )
    n = len(s.A)
    att = _f64(out.att_sums).reshape(n, len(sizes), nr_samples)
    drop = (_f64(out.y0)[:, None] - _f64(out.scores)).reshape(n, len(sizes), nr_samples)
    return _pearson(att, drop)


def irof(
    model,
    X,
    attributions,
    *,
    targets=None,
    batch_size=None,
    segments=None,
    segmentation_method="slic",
    perturb_baseline="mean",
    abs=False,
    normalise=True,
) -> np.ndarray:
    """Iterative Removal of Features: the area over the curve of ``f(x') / f(x)`` as superpixels
    are replaced cumulatively in order of their mean attribution (higher: better).

    Args:
        segments: ``(n, H, W)`` int superpixel labels ``0..S_i-1``; default
            :func:`xaijax.core.masking.superpixel_groups` with ``segmentation_method``.

    Returns:
        ``(n,)`` float64: ``S_i - trapezoid(f(x') / f(x))`` over each instance's own ``S_i``
        steps (Quantus pads instances with fewer segments with zeros inside the area).

    References:
        Rieger & Hansen, "IROF: a Low Resource Evaluation Metric for Explanation Methods",
        ICLR 2020 workshop.

    Example:
        >>> import numpy as np
        >>> X = np.ones((1, 2, 2, 1)); f = lambda x: 1 + x.sum((1, 2, 3))
        >>> seg = np.array([[[0, 0], [1, 1]]])
        >>> a = np.array([[[1.0, 1.0], [0.0, 0.0]]])
        >>> irof(f, X, a, segments=seg, perturb_baseline=0.0).round(4).tolist()
        [1.6]
    """
    s = prepare(
        model, X, attributions, targets=targets, batch_size=batch_size, abs=abs, normalise=normalise
    )
    if s.grid is None:
        raise ValueError("irof needs images (n, H, W, C); X is tabular")
    n = len(s.A)
    if segments is None:
        segments = superpixel_groups(np.asarray(X), segmentation_method)
    seg = np.asarray(segments)
    if seg.shape != (n,) + s.grid or not np.issubdtype(seg.dtype, np.integer):
        raise ValueError(
            f"segments must be ints of shape {(n,) + s.grid}; got {seg.dtype} {seg.shape}"
        )
    per = s.A.shape[1] // (s.grid[0] * s.grid[1])
    seg = np.repeat(seg.reshape(n, -1), per, axis=1)
    S = seg.max(axis=1) + 1
    P = int(S.max())
    sums = np.zeros((n, P))
    counts = np.zeros((n, P))
    np.add.at(sums, (np.arange(n)[:, None], seg), _f64(s.A))
    np.add.at(counts, (np.arange(n)[:, None], seg), 1.0)
    means = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
    r = ranks(-means)
    g = np.take_along_axis(r, seg, axis=1)
    base, span = baseline_values(perturb_baseline, s)
    out = run(s, base=base, span=span, g=g, lo=np.zeros(P), hi=np.arange(1, P + 1))
    y = _f64(out.scores) / _f64(out.y0)[:, None]
    valid = np.arange(P)[None] < S[:, None]
    y = np.where(valid, y, 0.0)
    area = np.array([_trapz(y[i, : S[i]]) for i in range(n)])
    return S - area


def _distances(A, metric, *, exact_zeros=False):
    """``scipy.spatial.distance.cdist(A, A, metric)``; the (standardised) Euclidean ones by one
    matrix product of the centred rows (20x faster than ``cdist`` on 256 x 1,024; equal to
    ~1e-15 of the largest distance). ``exact_zeros``: leave it to ``cdist``."""
    import scipy.spatial.distance

    n = len(A)
    fast = metric in ("euclidean", "sqeuclidean", "seuclidean") and n > 1 and not exact_zeros
    C = A - A.mean(axis=0)  # distances do not move; the products lose less to cancellation
    if fast and metric == "seuclidean":
        # cdist's default V: the variance of its two inputs stacked, here [A; A].
        V = (C * C).sum(axis=0) * (2.0 / (2 * n - 1))
        fast = bool(np.all(V > 0))  # else cdist's 0/0 NaNs: left to cdist
        C = C / np.sqrt(np.where(V > 0, V, 1.0))
    if not fast:
        return scipy.spatial.distance.cdist(A, A, metric=metric)
    sq = np.einsum("ij,ij->i", C, C)
    with one_blas_thread():
        gram = C @ C.T
    d2 = np.maximum(sq[:, None] + sq[None] - 2.0 * gram, 0.0)
    # Near-equal rows lose their few significant digits to cancellation: those pairs directly.
    i, j = np.nonzero(d2 <= 1e-8 * d2.max())
    d2[i, j] = ((C[i] - C[j]) ** 2).sum(axis=1)
    return d2 if metric == "sqeuclidean" else np.sqrt(d2)


def sufficiency(
    model,
    X,
    attributions,
    *,
    targets=None,
    batch_size=None,
    threshold=0.6,
    distance_func="seuclidean",
    abs=True,
    normalise=True,
) -> np.ndarray:
    """The share of the other instances whose attributions lie within ``threshold`` (by
    ``distance_func``, a :func:`scipy.spatial.distance.cdist` metric, divided by the largest
    distance among the ``n`` instances as Quantus does) that the model predicts as the same
    class: ``(n,)`` (0 where no other instance is that close).

    References:
        Dasgupta, Frost & Moshkovitz, "Framework for Evaluating Faithfulness of Local
        Explanations", ICML 2022.

    Example:
        >>> import numpy as np
        >>> f = lambda x: np.stack([x[:, 0], -x[:, 0]], 1)
        >>> X = np.array([[1.0, 0], [2, 0], [-1, 0]])
        >>> a = np.array([[1.0, 0], [1, 0], [1, 0.1]])
        >>> sufficiency(f, X, a, distance_func="euclidean", threshold=0.5).tolist()
        [1.0, 1.0, 0.0]
    """
    s = prepare(
        model, X, attributions, targets=targets, batch_size=batch_size, abs=abs, normalise=normalise
    )
    threshold = check_number("threshold", threshold, minimum=0.0)
    out = run(s, base=None, lo=[], hi=[])  # the predicted classes alone
    if out.class0 is None:
        raise ValueError("sufficiency needs a model with class outputs (n, K)")
    dist = _distances(_f64(s.A), distance_func, exact_zeros=threshold == 0)
    # Quantus divides the distances by the largest of the batch, so ``threshold`` is relative.
    top = dist.max()
    close = (dist / top if top > 0 else dist) <= threshold
    np.fill_diagonal(close, False)
    same = out.class0[None] == out.class0[:, None]
    count = close.sum(-1)
    return np.where(count > 0, (same & close).sum(-1) / np.maximum(count, 1), 0.0)


def road(
    model,
    X,
    attributions,
    *,
    targets=None,
    batch_size=None,
    key=None,
    percentages=None,
    noise=0.01,
    order="morf",
    cg_iterations=None,
    abs=False,
    normalise=True,
) -> np.ndarray:
    """RemOve And Debias: whether the model still predicts the target class once the top
    ``p`` % of the pixels (``"morf"``; ``"lerf"``: the bottom) are imputed from their
    neighbours (noisy linear imputation), for each ``p`` in ``percentages``.

    The imputed pixels solve Rong et al.'s sparse system (each the 1/6, 1/12-weighted mean of
    its 8 neighbours) by conjugate gradients, plus ``noise * N(0, 1)`` drawn from ``key``.
    Quantus 0.6 averages over the instances (``scores.mean(0)``) and raises ``IndexError`` on
    RGB images; here every channel is imputed with the same system.

    Args:
        X: ``(n, H, W, C)`` images; attributions ``(n, H, W)`` maps.
        percentages: default ``range(1, 100, 2)`` as in Quantus.
        noise: the imputation noise's standard deviation (needs ``key`` when > 0).
        cg_iterations: most conjugate-gradient steps; default ``H * W`` (exact).

    Returns:
        ``(n, len(percentages))`` float64, 1.0 where the prediction is kept (ROAD's accuracy
        curve is its mean over instances).

    References:
        Rong, Leemann, Borisov, Kasneci & Kasneci, "A Consistent and Efficient Evaluation
        Strategy for Attribution Methods", ICML 2022.

    Example:
        >>> import numpy as np
        >>> f = lambda x: np.stack([x.mean((1, 2, 3)), 0.5 + 0 * x.mean((1, 2, 3))], 1)
        >>> X = np.ones((1, 4, 4, 1)); a = np.arange(16.0).reshape(1, 4, 4)
        >>> road(f, X, a, targets=0, percentages=[25, 50], noise=0.0).tolist()
        [[1.0, 1.0]]
    """
    s = prepare(
        model, X, attributions, targets=targets, batch_size=batch_size, abs=abs, normalise=normalise
    )
    if s.grid is None or s.A.shape[1] != s.grid[0] * s.grid[1]:
        raise ValueError("road needs images X (n, H, W, C) with attributions (n, H, W)")
    order = check_choice("order", order, ("morf", "lerf"))
    noise = check_number("noise", noise, minimum=0.0)
    F = s.A.shape[1]
    pct = np.asarray(list(range(1, 100, 2)) if percentages is None else percentages, float)
    if pct.ndim != 1 or len(pct) == 0 or np.any((pct < 0) | (pct > 100)):
        raise ValueError(f"percentages must be numbers in [0, 100]; got {percentages!r}")
    iters = F if cg_iterations is None else check_int("cg_iterations", cg_iterations)
    counts = (F * pct / 100).astype(int)
    g = ranks(-s.A if order == "morf" else s.A)
    out = run(
        s,
        base=np.zeros_like(s.X),
        g=g,
        lo=np.zeros(len(pct)),
        hi=counts,
        key=key,
        impute=(float(noise), int(iters)),
    )
    if out.classes is None:
        raise ValueError("road needs a model with class outputs (n, K)")
    target = out.class0 if s.indices is None else np.asarray(s.indices)
    return (out.classes == target[:, None]).astype(np.float64)


def infidelity(
    model,
    X,
    attributions,
    *,
    targets=None,
    batch_size=None,
    perturb_patch_sizes=None,
    perturb_baseline="black",
    abs=False,
    normalise=False,
) -> np.ndarray:
    """Infidelity with square-removal perturbations: the mean over patches ``S`` (each square
    patch of each size in ``perturb_patch_sizes`` replaced alone) of
    ``(sum(a * (x - x_S)) - (f(x) - f(x_S)))^2``, then averaged over the sizes (lower: better).

    Quantus 0.6 replaces the patches cumulatively (each perturbation keeps the previous ones)
    and fails unless the size divides the image; here each patch is removed alone, as in Yeh
    et al.'s square-removal ``I``. The perturbations are deterministic, so Quantus's
    ``n_perturb_samples`` repeats would all be equal and are left out. Tabular inputs use
    single features (``perturb_patch_sizes`` ignored).

    Returns:
        ``(n,)`` float64 (0 for the gradient ``a = w`` of a linear model ``w . x``).

    References:
        Yeh, Hsieh, Suggala, Inouye & Ravikumar, "On the (In)fidelity and Sensitivity of
        Explanations", NeurIPS 2019.

    Example:
        >>> import numpy as np
        >>> X = np.random.default_rng(0).normal(size=(2, 4, 4, 1)); w = np.arange(16.0)
        >>> f = lambda x: x.reshape(len(x), -1) @ w
        >>> a = np.broadcast_to(w.reshape(4, 4), (2, 4, 4))  # the gradient
        >>> infidelity(f, X, a, perturb_patch_sizes=[2], perturb_baseline=0.0).round(6).tolist()
        [0.0, 0.0]
    """
    s = prepare(
        model, X, attributions, targets=targets, batch_size=batch_size, abs=abs, normalise=normalise
    )
    base, span = baseline_values(perturb_baseline, s)
    if span is not None:
        raise ValueError("infidelity needs a fixed perturb_baseline, not 'uniform'")
    # a * (x - x_S) summed over a feature's channels: the kernel's attribution sum of S.
    s = s._replace(A=s.A * (s.X - base).sum(-1))
    n, F = s.A.shape
    if s.grid is None:
        groups = [(np.broadcast_to(np.arange(F), (n, F)), F)]
    else:
        H, W = s.grid
        sizes = [4] if perturb_patch_sizes is None else list(perturb_patch_sizes)
        if not sizes:
            raise ValueError("perturb_patch_sizes must hold at least one patch size")
        per = F // (H * W)
        groups = []
        for p in sizes:
            p = check_int("perturb_patch_sizes", p, maximum=max(H, W))
            rows, cols = np.meshgrid(np.arange(H) // p, np.arange(W) // p, indexing="ij")
            pid = np.repeat((rows * -(-W // p) + cols).reshape(-1), per)
            groups.append((np.broadcast_to(pid, (n, F)), int(pid.max()) + 1))
    losses = []
    for g, P in groups:
        out = run(s, base=base, g=g, lo=np.arange(P), hi=np.arange(1, P + 1))
        drop = _f64(out.y0)[:, None] - _f64(out.scores)
        losses.append(((_f64(out.att_sums) - drop) ** 2).mean(-1))
    return np.mean(losses, axis=0)
