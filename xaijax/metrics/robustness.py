"""Robustness: do the attributions stay put when the input moves a little?

Every metric here re-runs the explainer it evaluates, ``explainer(model, X, targets=...)``
(e.g. ``xj.saliency`` or any JAX function of the inputs), on perturbed copies of the inputs and
compares the attributions with those of the unperturbed inputs. All perturbations and instances
run in one compiled call when the explainer traces, chunked by ``batch_size`` rows; otherwise
the same chunks run in a Python loop (:mod:`xaijax.metrics.explaining`).

Randomness: sample ``s`` of instance ``i`` is drawn from ``jax.random.fold_in(keys[i], s)`` with
``keys = jax.random.split(key, n)`` (or the ``(n,)`` keys given), so an instance's score does
not depend on the batch it is in. The options follow Quantus's constructors (``nr_samples``,
``lower_bound``, ``upper_bound``, ``perturb_std``, ``norm_numerator``, ``abs``, ``normalise``,
``return_nan_when_prediction_changes``, ...); where Quantus 0.6 departs from the paper it
implements, the docstring says which one is followed.
"""

# jaxtyping shape strings such as "n ..." are not Python expressions:

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from xaijax.core.contract import (
    call,
    check_choice,
    check_int,
    check_number,
    instance_keys,
)
from xaijax.core.layers import layer_model
from xaijax.core.model import is_nnx_module
from xaijax.core.targets import Targets
from xaijax.metrics.explaining import (
    Phase,
    Setup,
    explained_model,
    predicted_class,
    prepare_attributions,
    rows_runner,
    run_rows,
    setup,
)

__all__ = [
    "max_sensitivity",
    "avg_sensitivity",
    "local_lipschitz_estimate",
    "continuity",
    "consistency",
    "relative_input_stability",
    "relative_output_stability",
    "relative_representation_stability",
]

Explainer = Callable[..., Any]  # explainer(model, X, targets=...) -> (n, ...) or Explanation
PerturbFunc = Callable[[jax.Array, jax.Array], jax.Array]  # (key, x) -> perturbed x


# -- shared pieces -----------------------------------------------------------------------------
def _row_targets(targets, per_instance: int):
    """The explainer's targets for rows ``r = i * per_instance + s``."""
    if isinstance(targets, np.ndarray):
        return np.repeat(targets, per_instance)
    return targets


def _explain_inputs(s: Setup, explainer, *, normalise: bool, absolute: bool):
    """The prepared attributions ``(n, m)`` of the unperturbed inputs."""
    model_of, params, model_key = explained_model(s)
    (a,), finite = run_rows(
        explainer,
        model_of,
        params,
        total=s.X.shape[0],
        batch_size=s.batch_size,
        make=lambda rows, ops: ops[rows],
        score=lambda rows, x, a, ops: (
            prepare_attributions(a, normalise=normalise, absolute=absolute),
        ),
        operands=jnp.asarray(s.X),
        targets=s.targets,
        cache_key=("inputs", normalise, absolute, model_key),
    )
    _check_finite(finite, "X")
    return a


def _check_finite(finite, what):
    if not np.all(finite):
        bad = np.flatnonzero(~finite).tolist()
        raise ValueError(f"explainer returned NaN or inf attributions for {what} (rows {bad[:10]})")


def _norm(name: str, value):
    if callable(value):
        return value
    value = check_choice(name, value, ("fro", "l2", "linf", "l1"))
    if value == "linf":
        return lambda v: jnp.max(jnp.abs(v), axis=-1)
    if value == "l1":
        return lambda v: jnp.sum(jnp.abs(v), axis=-1)
    return lambda v: jnp.sqrt(jnp.sum(v * v, axis=-1))


def _uniform_noise(lower_bound, upper_bound) -> PerturbFunc:
    lo, hi = (-lower_bound, lower_bound) if upper_bound is None else (lower_bound, upper_bound)

    def perturb(key, x):
        return x + jax.random.uniform(key, x.shape, x.dtype, lo, hi)

    return perturb


def _gaussian_noise(mean, std) -> PerturbFunc:
    def perturb(key, x):
        return x + mean + std * jax.random.normal(key, x.shape, x.dtype)

    return perturb


def _check_perturb(perturb_func):
    if perturb_func is not None and not callable(perturb_func):
        raise TypeError(
            "perturb_func must be a JAX function (key, x) -> perturbed x for one instance; "
            f"got {type(perturb_func).__name__}"
        )


def _reduce(scores, how: str, *, nan_if_any: bool):
    """Max or mean over samples (axis 1): NaN rows are skipped (all NaN gives NaN), or, with
    ``nan_if_any``, make the instance's score NaN."""
    if nan_if_any:
        return scores.max(axis=1) if how == "max" else scores.mean(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN instances stay NaN
        return np.nanmax(scores, axis=1) if how == "max" else np.nanmean(scores, axis=1)


def _finish(s: Setup, scores):
    scores = np.asarray(scores, np.float64)
    return scores[0] if s.single else scores


def _perturbed_rows(
    s: Setup, explainer, nr_samples, perturbed, score, extra, *, normalise, absolute, settings
):
    """The explainer on ``X`` (phase 0), then on ``perturbed(ops, i, k)``, sample ``k`` of
    instance ``i`` (phase 1), in one compiled program when it traces; returns the
    ``(n, nr_samples)`` values of ``score(i, x, x', a', extra_i, y')``, where ``extra_i`` also
    holds the instance's prepared attributions ``"a0"`` and ``y'`` are the model's outputs.

    ``settings``: a hashable description of what ``perturbed`` and ``score`` close over, under
    which the program is kept for later calls (``None``: not kept)."""
    n = s.X.shape[0]
    model = s.model

    def make(rows, ops):
        return perturbed(ops, rows // nr_samples, rows % nr_samples)

    def rows_score(rows, x, a, ops):
        i = rows // nr_samples
        ex = jax.tree.map(lambda e: e[i], {**ops["extra"], "a0": ops["phases"][0]})
        a = prepare_attributions(a, normalise=normalise, absolute=absolute)
        return score(i, ops["X"][i], x, a, ex, model.apply(ops["params"], x))

    inputs = Phase(
        n,
        lambda rows, ops: ops["X"][rows],
        lambda rows, x, a, ops: prepare_attributions(a, normalise=normalise, absolute=absolute),
        s.targets,
    )
    rows = Phase(n * nr_samples, make, rows_score, _row_targets(s.targets, nr_samples))
    ops = dict(X=jnp.asarray(s.X), params=s.params, extra=extra)
    model_of, params, model_key = explained_model(s)
    cache_key = None
    if settings is not None:
        cache_key = (settings, nr_samples, normalise, absolute, model_key, s.model)
    run = rows_runner(
        explainer, model_of, params, ops, [inputs, rows], batch_size=s.batch_size,
        cache_key=cache_key,
    )  # fmt: skip
    (_, finite0), (out, finite) = run(params, ops)
    _check_finite(finite0, "X")
    _check_finite(finite, "the perturbed inputs")
    return np.asarray(out).reshape(n, nr_samples)


def _noise_rows(perturb):
    def perturbed(ops, i, k):
        sample_keys = jax.vmap(jax.random.fold_in)(ops["extra"]["keys"][i], k)
        return jax.vmap(perturb)(sample_keys, ops["X"][i])

    return perturbed


# -- sensitivity -------------------------------------------------------------------------------
def _sensitivity(
    how, f, X, explainer, *, targets, key, batch_size, nr_samples, lower_bound, upper_bound,
    perturb_func, norm_numerator, norm_denominator, normalise, abs, nan_when_changed,
):  # fmt: skip
    nr_samples = check_int("nr_samples", nr_samples)
    lower_bound = check_number("lower_bound", lower_bound)
    if upper_bound is not None:
        upper_bound = check_number("upper_bound", upper_bound)
        if upper_bound <= lower_bound:
            raise ValueError(
                f"upper_bound must be > lower_bound ({lower_bound}); got {upper_bound}"
            )
    _check_perturb(perturb_func)
    num, den = _norm("norm_numerator", norm_numerator), _norm("norm_denominator", norm_denominator)
    s = setup(f, X, explainer, targets, batch_size)
    keys = instance_keys(key, s.X.shape[0])
    perturb = perturb_func or _uniform_noise(lower_bound, upper_bound)

    def score(i, x, xp, a, extra, y):
        value = num(extra["a0"] - a) / den(extra["a0"])
        if nan_when_changed:
            value = jnp.where(predicted_class(y) == extra["pred"], value, jnp.nan)
        return value

    extra = dict(keys=keys, pred=jnp.asarray(s.predicted))
    settings = (
        "sensitivity", lower_bound, upper_bound, perturb_func, norm_numerator, norm_denominator,
        nan_when_changed,
    )  # fmt: skip
    scores = _perturbed_rows(
        s, explainer, nr_samples, _noise_rows(perturb), score, extra, normalise=normalise,
        absolute=abs, settings=settings,
    )  # fmt: skip
    return _finish(s, _reduce(scores, how, nan_if_any=nan_when_changed))


_SENSITIVITY_DOC = """{summary}

    For ``nr_samples`` perturbations ``x'`` of each input (uniform noise in
    ``[-lower_bound, lower_bound]``, or ``[lower_bound, upper_bound]`` when ``upper_bound`` is
    given, as Quantus's default ``batch_uniform_noise``), the score is the {how} of
    ``norm_numerator(a(x) - a(x')) / norm_denominator(a(x))`` over the perturbations. Lower is
    more robust; a constant explainer scores 0 (an all-zero one NaN).

    Args:
        f: the model (JAX function, NNX module, host callable), ``X -> (n,)`` or ``(n, K)``.
        X: ``(n, ...)`` inputs (or one input).
        explainer: ``explainer(f, X, targets=...) -> (n, ...)`` attributions or an
            Explanation, e.g. ``xj.saliency``; a JAX function of ``X`` runs compiled.
        targets: the explained output: ``None`` (the predicted class), an int, ``(n,)`` ints
            or a callable on the outputs; passed to ``explainer`` for every perturbation.
        key: a ``jax.random.key``, or ``(n,)`` keys, one per instance.
        batch_size: explainer rows (perturbed inputs) per chunk; ``None`` for the default.
        nr_samples: perturbations per input.
        lower_bound, upper_bound: the noise range (see above).
        perturb_func: ``(key, x) -> x'`` for one input, a JAX function, instead of the noise.
        norm_numerator, norm_denominator: ``"fro"`` (= ``"l2"``), ``"linf"``, ``"l1"`` or a
            JAX function ``(rows, m) -> (rows,)`` of flattened attributions.
        normalise: divide each attribution map by its largest magnitude first. Quantus's
            ``normalise_by_max`` divides by the largest magnitude of the whole batch, which
            makes an instance's score depend on its batch; here it is per instance.
        abs: take absolute attributions (after ``normalise``).
        return_nan_when_prediction_changes: an instance whose prediction (argmax) changes on
            any perturbation scores NaN (as Quantus); otherwise all perturbations count.

    Returns:
        ``(n,)`` scores (a 0-d array for one input).

    References:
        Yeh et al., "On the (In)fidelity and Sensitivity of Explanations", NeurIPS 2019;
        Bhatt et al., "Evaluating and Aggregating Feature-based Model Explanations", IJCAI 2020.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> f = lambda X: X @ jnp.array([[1.0, -1.0], [2.0, 0.5], [0.0, 1.0]])
        >>> grad = lambda f, X, targets: jax.vmap(jax.grad(lambda x, t: f(x[None])[0, t]))(
        ...     X, targets)
        >>> X = np.ones((4, 3), np.float32)
        >>> float({name}(f, X, grad, key=jax.random.key(0), nr_samples=8).max())
        0.0
    """


def max_sensitivity(
    f,
    X: Float[ArrayLike, "n ..."],
    explainer: Explainer,
    *,
    targets: Targets = None,
    key=None,
    batch_size: int | None = None,
    nr_samples: int = 200,
    lower_bound: float = 0.2,
    upper_bound: float | None = None,
    perturb_func: PerturbFunc | None = None,
    norm_numerator: str | Callable = "fro",
    norm_denominator: str | Callable = "fro",
    normalise: bool = False,
    abs: bool = False,
    return_nan_when_prediction_changes: bool = False,
) -> np.ndarray:
    return _sensitivity(
        "max", f, X, explainer, targets=targets, key=key, batch_size=batch_size,
        nr_samples=nr_samples, lower_bound=lower_bound, upper_bound=upper_bound,
        perturb_func=perturb_func, norm_numerator=norm_numerator,
        norm_denominator=norm_denominator, normalise=normalise, abs=abs,
        nan_when_changed=return_nan_when_prediction_changes,
    )  # fmt: skip


def avg_sensitivity(
    f,
    X: Float[ArrayLike, "n ..."],
    explainer: Explainer,
    *,
    targets: Targets = None,
    key=None,
    batch_size: int | None = None,
    nr_samples: int = 200,
    lower_bound: float = 0.2,
    upper_bound: float | None = None,
    perturb_func: PerturbFunc | None = None,
    norm_numerator: str | Callable = "fro",
    norm_denominator: str | Callable = "fro",
    normalise: bool = False,
    abs: bool = False,
    return_nan_when_prediction_changes: bool = False,
) -> np.ndarray:
    return _sensitivity(
        "mean", f, X, explainer, targets=targets, key=key, batch_size=batch_size,
        nr_samples=nr_samples, lower_bound=lower_bound, upper_bound=upper_bound,
        perturb_func=perturb_func, norm_numerator=norm_numerator,
        norm_denominator=norm_denominator, normalise=normalise, abs=abs,
        nan_when_changed=return_nan_when_prediction_changes,
    )  # fmt: skip


max_sensitivity.__doc__ = _SENSITIVITY_DOC.format(
    summary="Max-sensitivity: the largest relative change of the attributions under noise.",
    how="maximum",
    name="max_sensitivity",
)
avg_sensitivity.__doc__ = _SENSITIVITY_DOC.format(
    summary="Avg-sensitivity: the mean relative change of the attributions under noise.",
    how="mean",
    name="avg_sensitivity",
)


# -- local Lipschitz estimate ------------------------------------------------------------------
def local_lipschitz_estimate(
    f,
    X: Float[ArrayLike, "n ..."],
    explainer: Explainer,
    *,
    targets: Targets = None,
    key=None,
    batch_size: int | None = None,
    nr_samples: int = 200,
    perturb_mean: float = 0.0,
    perturb_std: float = 0.1,
    perturb_func: PerturbFunc | None = None,
    norm_numerator: str | Callable = "l2",
    norm_denominator: str | Callable = "l2",
    normalise: bool = True,
    abs: bool = False,
    return_nan_when_prediction_changes: bool = False,
) -> np.ndarray:
    """The local Lipschitz estimate: ``max ||a(x) - a(x')|| / ||x - x'||`` over noisy ``x'``.

    ``x' = x + N(perturb_mean, perturb_std^2)`` (Quantus's default ``batch_gaussian_noise``);
    ``1e-10`` is added to the denominator, as Quantus does. Lower is more robust; the gradient
    of a linear model (a constant map) scores 0.

    Args:
        f, X, explainer, targets, key, batch_size: as :func:`max_sensitivity`.
        nr_samples: perturbations per input.
        perturb_mean, perturb_std: the Gaussian noise.
        perturb_func: ``(key, x) -> x'`` for one input, a JAX function, instead of the noise.
        norm_numerator, norm_denominator: norms of the attribution and input differences
            (``"l2"``, ``"linf"``, ``"l1"`` or a JAX function ``(rows, m) -> (rows,)``).
        normalise: divide each attribution map by its largest magnitude (Quantus's default,
            per instance here, see :func:`max_sensitivity`).
        abs: take absolute attributions.
        return_nan_when_prediction_changes: see :func:`max_sensitivity`.

    Returns:
        ``(n,)`` estimates (a 0-d array for one input).

    References:
        Alvarez-Melis and Jaakkola, "On the Robustness of Interpretability Methods", ICML
        Workshop 2018; "Towards Robust Interpretability with Self-Explaining Neural
        Networks", NeurIPS 2018.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> f = lambda X: jnp.tanh(X) @ jnp.array([[1.0, -1.0], [2.0, 0.5]])
        >>> grad = lambda f, X, targets: jax.vmap(jax.grad(lambda x, t: f(x[None])[0, t]))(
        ...     X, targets)
        >>> X = np.random.default_rng(0).normal(size=(3, 2)).astype(np.float32)
        >>> local_lipschitz_estimate(f, X, grad, key=jax.random.key(0), nr_samples=8).shape
        (3,)
    """
    nr_samples = check_int("nr_samples", nr_samples)
    perturb_mean = check_number("perturb_mean", perturb_mean, minimum=None)
    perturb_std = check_number("perturb_std", perturb_std)
    _check_perturb(perturb_func)
    num, den = _norm("norm_numerator", norm_numerator), _norm("norm_denominator", norm_denominator)
    s = setup(f, X, explainer, targets, batch_size)
    keys = instance_keys(key, s.X.shape[0])
    perturb = perturb_func or _gaussian_noise(perturb_mean, perturb_std)

    def score(i, x, xp, a, extra, y):
        dx = (x - xp).reshape(x.shape[0], -1)
        value = num(extra["a0"] - a) / (den(dx) + 1e-10)
        if return_nan_when_prediction_changes:
            value = jnp.where(predicted_class(y) == extra["pred"], value, jnp.nan)
        return value

    extra = dict(keys=keys, pred=jnp.asarray(s.predicted))
    settings = (
        "lipschitz", perturb_mean, perturb_std, perturb_func, norm_numerator, norm_denominator,
        return_nan_when_prediction_changes,
    )  # fmt: skip
    scores = _perturbed_rows(
        s, explainer, nr_samples, _noise_rows(perturb), score, extra, normalise=normalise,
        absolute=abs, settings=settings,
    )  # fmt: skip
    return _finish(s, _reduce(scores, "max", nan_if_any=return_nan_when_prediction_changes))


# -- continuity --------------------------------------------------------------------------------
def _translate(x, shift, fill):
    """``x (H, W, ...)`` moved by ``shift`` pixels along W (right for > 0), ``fill`` behind."""
    W = x.shape[1]
    src = jnp.arange(W) - shift
    inside = (src >= 0) & (src < W)
    moved = jnp.take(x, jnp.clip(src, 0, W - 1), axis=1)
    inside = inside.reshape((1, W) + (1,) * (x.ndim - 2))
    return jnp.where(inside, moved, fill)


def continuity(
    f,
    X: Float[ArrayLike, "n H W ..."],
    explainer: Explainer,
    *,
    targets: Targets = None,
    key=None,
    batch_size: int | None = None,
    nr_steps: int = 28,
    perturb_baseline: str | float = "black",
    normalise: bool = True,
    abs: bool = True,
    return_nan_when_prediction_changes: bool = False,
) -> np.ndarray:
    """Continuity: ``max ||a(x) - a(x')||_1 / ||x - x'||_2`` over horizontal translations ``x'``.

    The image is moved along its width (axis 2 of ``(n, H, W)`` or ``(n, H, W, C)``) in
    ``nr_steps`` steps of ``dx = (2 W + 1) // nr_steps`` pixels, from ``dx - W`` on, the
    uncovered columns filled with ``perturb_baseline``, as Quantus 0.6 does (``1e-9`` added to
    the denominator). A translation that leaves the image unchanged (the zero shift) scores 0:
    Quantus divides the rounding difference of two runs of the explainer by ``1e-9`` there.
    Lower is more continuous.

    Args:
        f, X, explainer, targets, batch_size: as :func:`max_sensitivity`; ``X`` are images
            ``(n, H, W)`` or ``(n, H, W, C)``.
        key: unused (the translations are deterministic); accepted so every robustness metric
            takes the same arguments.
        nr_steps: number of translations.
        perturb_baseline: the fill: ``"black"`` (each image's minimum), ``"white"`` (its
            maximum), ``"mean"`` or a number. Quantus accepts the option but always fills with
            ``"black"``.
        normalise, abs: as :func:`max_sensitivity` (Quantus's defaults: both on).
        return_nan_when_prediction_changes: an instance whose prediction changes on any
            translation scores NaN (Quantus compares with ``y_batch``; here with the class
            predicted on ``X``).

    Returns:
        ``(n,)`` scores (a 0-d array for one image).

    References:
        Montavon, Samek and Müller, "Methods for Interpreting and Understanding Deep Neural
        Networks", Digital Signal Processing 73, 2018.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> f = lambda X: X.reshape(len(X), -1) @ jnp.ones((16, 2))
        >>> constant = lambda f, X, targets: jnp.ones(X.shape)
        >>> float(continuity(f, np.ones((2, 4, 4)), constant, nr_steps=4).max())
        0.0
    """
    nr_steps = check_int("nr_steps", nr_steps)
    s = setup(f, X, explainer, targets, batch_size)
    if s.X.ndim not in (3, 4):
        raise ValueError(f"X must be images (n, H, W) or (n, H, W, C); got shape {s.X.shape}")
    n, W = s.X.shape[0], s.X.shape[2]
    Xf = s.X.reshape(n, -1)
    if isinstance(perturb_baseline, str):
        fills = dict(black=Xf.min(1), white=Xf.max(1), mean=Xf.mean(1))
        check_choice("perturb_baseline", perturb_baseline, tuple(fills))
        fill = fills[perturb_baseline]
    else:
        fill = np.full(n, check_number("perturb_baseline", perturb_baseline, minimum=None))
    dx = (2 * W + 1) // nr_steps
    shifts = jnp.asarray(-W + dx * np.arange(1, nr_steps + 1), jnp.int32)

    def translated(ops, i, k):
        fill = ops["extra"]["fill"][i].astype(ops["X"].dtype)
        return jax.vmap(_translate)(ops["X"][i], shifts[k], fill)

    def score(i, x, xp, a, extra, y):
        dx_ = (x - xp).reshape(xp.shape[0], -1)
        dist = jnp.sqrt(jnp.sum(dx_ * dx_, axis=1))
        value = jnp.sum(jnp.abs(extra["a0"] - a), axis=1) / (dist + 1e-9)
        # An unchanged image (the zero translation) scores 0 however the explainer rounds: its
        # attributions from another pass may differ in the last bit, and divided by 1e-9 that
        # would be the maximum.
        value = jnp.where(dist > 0, value, 0.0)
        if return_nan_when_prediction_changes:
            value = jnp.where(predicted_class(y) == extra["pred"], value, jnp.nan)
        return value

    extra = dict(fill=jnp.asarray(fill), pred=jnp.asarray(s.predicted))
    settings = ("continuity", return_nan_when_prediction_changes)
    scores = _perturbed_rows(
        s, explainer, nr_steps, translated, score, extra, normalise=normalise, absolute=abs,
        settings=settings,
    )  # fmt: skip
    return _finish(s, scores.max(axis=1))


# -- consistency -------------------------------------------------------------------------------
def _discretise(name, n_top):
    if callable(name):
        return name
    name = check_choice("discretise_func", name, ("top_n_sign", "sign", "rank", "floating_points"))
    if name == "top_n_sign":
        return lambda a: jnp.sign(a[:n_top])
    if name == "sign":
        return jnp.sign
    if name == "rank":
        return lambda a: jnp.argsort(-a, stable=True).astype(a.dtype)
    return lambda a: jnp.round(a, 2)


def consistency(
    f,
    X: Float[ArrayLike, "n ..."],
    explainer: Explainer,
    *,
    targets: Targets = None,
    key=None,
    batch_size: int | None = None,
    discretise_func: str | Callable = "top_n_sign",
    n: int = 5,
    normalise: bool = True,
    abs: bool = True,
) -> np.ndarray:
    """Consistency: how often inputs with the same (discretised) explanation get the same class.

    Each attribution map is flattened and discretised; for instance ``i`` the score is the
    fraction of the other instances ``j`` with the same discretised map that the model also
    assigns ``i``'s predicted class: ``sum_j [c_i = c_j][d_i = d_j] / (sum_j [d_i = d_j] +
    1e-9)`` over ``j != i``. Instances are compared across all of ``X`` (Quantus compares only
    within each of its batches, so its scores depend on ``batch_size``). Higher is better.

    Args:
        f, X, explainer, targets, batch_size: as :func:`max_sensitivity`.
        key: unused; accepted so every robustness metric takes the same arguments.
        discretise_func: ``"top_n_sign"`` (the signs of the first ``n`` entries of the
            flattened map, Quantus's default, which despite its name takes the first entries,
            not the largest), ``"sign"``, ``"rank"`` (the order of the entries), or
            ``"floating_points"`` (rounded to 2 decimals), or a JAX function of one flattened
            map returning an array; two maps are equal when all entries are.
        n: the number of entries ``"top_n_sign"`` reads.
        normalise, abs: as :func:`max_sensitivity` (Quantus's defaults: both on).

    Returns:
        ``(n,)`` scores in [0, 1] (0 where no other instance shares the explanation).

    References:
        Dasgupta, Frost and Moshkovitz, "Framework for Evaluating Faithfulness of Local
        Explanations", ICML 2022.

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> f = lambda X: jnp.stack([X[:, 0], -X[:, 0]], axis=1)
        >>> sign_map = lambda f, X, targets: jnp.sign(X)
        >>> X = np.array([[1.0, 1.0], [2.0, 1.0], [-1.0, 1.0]])
        >>> consistency(f, X, sign_map, abs=False).tolist()
        [1.0, 1.0, 0.0]
    """
    n_top = check_int("n", n)
    _discretise(discretise_func, n_top)  # checks it before the explainer runs
    s = setup(f, X, explainer, targets, batch_size)
    a0 = jnp.asarray(_explain_inputs(s, explainer, normalise=normalise, absolute=abs))
    pred = jnp.asarray(s.predicted)
    try:  # one program, not one per operation (22 small compilations on a first call)
        scores = _consistency_scores_jit(a0, pred, discretise_func, n_top)
    except TypeError:  # an unhashable discretise_func
        scores = _consistency_scores(a0, pred, discretise_func, n_top)
    return _finish(s, np.asarray(scores))


def _consistency_scores(a0, pred, discretise_func, n_top):
    labels = jax.vmap(_discretise(discretise_func, n_top))(a0)
    labels = labels.reshape(labels.shape[0], -1)
    same = jnp.all(labels[:, None, :] == labels[None, :, :], axis=2)
    other = ~jnp.eye(a0.shape[0], dtype=bool)
    same = same & other
    agree = same & (pred[:, None] == pred[None, :])
    return agree.sum(axis=1) / (same.sum(axis=1) + 1e-9)


_consistency_scores_jit = jax.jit(_consistency_scores, static_argnums=(2, 3))


# -- relative stability ------------------------------------------------------------------------
def _relative(d, base, eps):
    """``||(base - d) / base||_2`` per row, a zero ``base`` entry replaced by ``eps``."""
    r = (base - d) / (base + (base == 0) * eps)
    return jnp.sqrt(jnp.sum(r * r, axis=1))


def _stability(
    kind, f, X, explainer, *, targets, key, batch_size, nr_samples, lower_bound, upper_bound,
    perturb_func, eps_min, normalise, abs, nan_when_changed, layer=None,
):  # fmt: skip
    nr_samples = check_int("nr_samples", nr_samples)
    lower_bound = check_number("lower_bound", lower_bound, minimum=None)
    upper_bound = None if upper_bound is None else check_number("upper_bound", upper_bound)
    if upper_bound is not None and upper_bound <= lower_bound:
        raise ValueError(f"upper_bound must be > lower_bound ({lower_bound}); got {upper_bound}")
    eps_min = check_number("eps_min", eps_min, strict=True)
    _check_perturb(perturb_func)
    s = setup(f, X, explainer, targets, batch_size)
    keys = instance_keys(key, s.X.shape[0])
    perturb = perturb_func or _uniform_noise(lower_bound, upper_bound)
    representation = None
    if kind == "representation":
        representation = _representation(f, layer, s.X)
    extra = dict(keys=keys, pred=jnp.asarray(s.predicted))
    if kind == "output":
        extra["h"] = jnp.asarray(s.outputs.reshape(s.X.shape[0], -1))
    if kind == "representation":
        # A layer function is a static argument, so its program is kept across calls too.
        rep = (_layer_rows, layer) if _hashable(layer) else (jax.jit(representation),)
        extra["L"] = call(*rep, jnp.asarray(s.X))

    def score(i, x, xp, a, ex, y):
        numerator = _relative(a, ex["a0"], eps_min)
        if kind == "input":
            c = x.shape[0]
            denominator = _relative(xp.reshape(c, -1), x.reshape(c, -1), eps_min)
        elif kind == "output":
            dh = ex["h"] - y.reshape(y.shape[0], -1)
            denominator = jnp.sqrt(jnp.sum(dh * dh, axis=1))
        else:
            denominator = _relative(representation(xp), ex["L"], eps_min)
        denominator = denominator + (denominator == 0) * eps_min
        value = numerator / denominator
        if nan_when_changed:
            value = jnp.where(predicted_class(y) == ex["pred"], value, jnp.nan)
        return value

    # A layer path captures the module's weights in the representation: not kept.
    settings = None
    if kind != "representation" or _hashable(layer):
        settings = (
            "stability", kind, lower_bound, upper_bound, perturb_func, eps_min,
            nan_when_changed, layer,
        )  # fmt: skip
    scores = _perturbed_rows(
        s, explainer, nr_samples, _noise_rows(perturb), score, extra, normalise=normalise,
        absolute=abs, settings=settings,
    )  # fmt: skip
    # The paper's maximum runs over the perturbations that keep the prediction: those that
    # change it are skipped, and an instance scores NaN only when all do.
    return _finish(s, _reduce(scores, "max", nan_if_any=False))


def _flat_rows(layer, X):
    return jnp.asarray(layer(X)).reshape(X.shape[0], -1)


_layer_rows = jax.jit(_flat_rows, static_argnums=0)


def _hashable(layer) -> bool:
    """Whether a layer function can key a kept program (a module's weights could change)."""
    if not callable(layer) or is_nnx_module(layer):
        return False
    try:
        hash(layer)
    except TypeError:
        return False
    return True


def _representation(f, layer, X):
    if layer is None:
        raise ValueError(
            "layer is required: a layer path of the NNX module f (e.g. 'hidden/0') or a JAX "
            "function X -> representation"
        )
    if isinstance(layer, (str, tuple, list)):
        if not is_nnx_module(f):
            raise ValueError(
                f"layer={layer!r} is a layer path, which needs f to be a Flax NNX module; got "
                f"{type(f).__name__}: pass layer as a JAX function X -> representation instead"
            )
        lm = layer_model(f, layer)

        def rep(x):
            return lm.forward(x)[1].reshape(x.shape[0], -1)

        return rep
    if not callable(layer):
        raise TypeError(
            f"layer must be a layer path or a JAX function X -> representation; got "
            f"{type(layer).__name__}"
        )

    def rep_fn(x):
        return _flat_rows(layer, x)

    try:
        jax.eval_shape(rep_fn, jax.ShapeDtypeStruct(X[:1].shape, X.dtype))
    except Exception as err:
        raise ValueError(f"layer failed on inputs of shape {X[:1].shape}: {err}") from err
    return rep_fn


_STABILITY_DOC = """{summary}

    {formula} The maximum runs over ``nr_samples`` perturbations ``x'`` (uniform noise in
    ``[lower_bound, upper_bound]``, Quantus's default, or ``perturb_func``); a zero entry of a
    divisor is replaced by ``eps_min``, as Quantus does. With
    ``return_nan_when_prediction_changes`` (the default), perturbations that change the predicted
    class are left out of the maximum, as the paper defines it (Quantus instead scores the
    instance NaN as soon as one does); NaN only when every perturbation changes it. Lower is
    more stable.

    Args:
        f, X, explainer, targets, key, batch_size: as :func:`max_sensitivity`.{layer_doc}
        nr_samples: perturbations per input.
        lower_bound, upper_bound: the uniform noise range; ``upper_bound=None`` gives
            ``[-lower_bound, lower_bound]``.
        perturb_func: ``(key, x) -> x'`` for one input, a JAX function, instead of the noise.
        eps_min: the stand-in for zero divisors.
        normalise, abs: as :func:`max_sensitivity` (off by default, as Quantus).
        return_nan_when_prediction_changes: see above.

    Returns:
        ``(n,)`` scores (a 0-d array for one input).

    References:
        Agarwal et al., "Rethinking Stability for Attribution-based Explanations", ICLR 2022
        workshop (arXiv:2203.06877).

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> f = lambda X: X @ jnp.array([[1.0, -1.0], [2.0, 0.5]])
        >>> grad_x_input = lambda f, X, targets: X * jax.vmap(
        ...     jax.grad(lambda x, t: f(x[None])[0, t]))(X, targets)
        >>> X = np.array([[1.0, 2.0], [0.5, 1.0]], np.float32)
        >>> {name}(f, X, grad_x_input, {example_args}key=jax.random.key(0), nr_samples=4).shape
        (2,)
    """


def relative_input_stability(
    f,
    X: Float[ArrayLike, "n ..."],
    explainer: Explainer,
    *,
    targets: Targets = None,
    key=None,
    batch_size: int | None = None,
    nr_samples: int = 200,
    lower_bound: float = 0.02,
    upper_bound: float | None = 0.2,
    perturb_func: PerturbFunc | None = None,
    eps_min: float = 1e-6,
    normalise: bool = False,
    abs: bool = False,
    return_nan_when_prediction_changes: bool = True,
) -> np.ndarray:
    return _stability(
        "input", f, X, explainer, targets=targets, key=key, batch_size=batch_size,
        nr_samples=nr_samples, lower_bound=lower_bound, upper_bound=upper_bound,
        perturb_func=perturb_func, eps_min=eps_min, normalise=normalise, abs=abs,
        nan_when_changed=return_nan_when_prediction_changes,
    )  # fmt: skip


def relative_output_stability(
    f,
    X: Float[ArrayLike, "n ..."],
    explainer: Explainer,
    *,
    targets: Targets = None,
    key=None,
    batch_size: int | None = None,
    nr_samples: int = 200,
    lower_bound: float = 0.02,
    upper_bound: float | None = 0.2,
    perturb_func: PerturbFunc | None = None,
    eps_min: float = 1e-6,
    normalise: bool = False,
    abs: bool = False,
    return_nan_when_prediction_changes: bool = True,
) -> np.ndarray:
    return _stability(
        "output", f, X, explainer, targets=targets, key=key, batch_size=batch_size,
        nr_samples=nr_samples, lower_bound=lower_bound, upper_bound=upper_bound,
        perturb_func=perturb_func, eps_min=eps_min, normalise=normalise, abs=abs,
        nan_when_changed=return_nan_when_prediction_changes,
    )  # fmt: skip


def relative_representation_stability(
    f,
    X: Float[ArrayLike, "n ..."],
    explainer: Explainer,
    *,
    layer: str | tuple | Callable | None = None,
    targets: Targets = None,
    key=None,
    batch_size: int | None = None,
    nr_samples: int = 200,
    lower_bound: float = 0.02,
    upper_bound: float | None = 0.2,
    perturb_func: PerturbFunc | None = None,
    eps_min: float = 1e-6,
    normalise: bool = False,
    abs: bool = False,
    return_nan_when_prediction_changes: bool = True,
) -> np.ndarray:
    return _stability(
        "representation", f, X, explainer, targets=targets, key=key, batch_size=batch_size,
        nr_samples=nr_samples, lower_bound=lower_bound, upper_bound=upper_bound,
        perturb_func=perturb_func, eps_min=eps_min, normalise=normalise, abs=abs,
        nan_when_changed=return_nan_when_prediction_changes, layer=layer,
    )  # fmt: skip


relative_input_stability.__doc__ = _STABILITY_DOC.format(
    summary="Relative input stability (RIS): attribution change relative to input change.",
    formula="``RIS(x) = max ||(a(x) - a(x')) / a(x)||_2 / ||(x - x') / x||_2``.",
    layer_doc="",
    name="relative_input_stability",
    example_args="",
)
relative_output_stability.__doc__ = _STABILITY_DOC.format(
    summary="Relative output stability (ROS): attribution change relative to output change.",
    formula="``ROS(x) = max ||(a(x) - a(x')) / a(x)||_2 / ||h(x) - h(x')||_2`` with ``h`` the "
    "model's outputs (logits).",
    layer_doc="",
    name="relative_output_stability",
    example_args="",
)
relative_representation_stability.__doc__ = _STABILITY_DOC.format(
    summary="Relative representation stability (RRS): attribution change relative to the "
    "change of an internal representation.",
    formula="``RRS(x) = max ||(a(x) - a(x')) / a(x)||_2 / ||(L(x) - L(x')) / L(x)||_2`` with "
    "``L`` a layer's output, flattened.",
    layer_doc="\n        layer: the representation ``L``: a layer path of the NNX module ``f`` "
    '(``"hidden/0"``,\n            captured with :func:`xaijax.core.layers.layer_model`) or a '
    "JAX function\n            ``X -> (n, ...)``.",
    name="relative_representation_stability",
    example_args="layer=lambda X: X @ jnp.ones((2, 3)), ",
)
