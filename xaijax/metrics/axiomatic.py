"""Axiomatic properties: do the attributions satisfy what their method promises?

:func:`local_accuracy_gap` reads an additive Explanation; Quantus's axiomatic metrics take the
model: :func:`completeness` (the attributions add up to ``f(x) - f(baseline)``),
:func:`non_sensitivity` (zero attribution exactly where replacing a feature leaves the output
unchanged) and :func:`input_invariance` (a constant shift of the input, absorbed by the model,
leaves the explanation unchanged).
"""

# jaxtyping shape strings such as "*n" are not Python expressions:

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Bool, Float, Int

from xaijax.core.contract import as_float_array, check_number
from xaijax.core.explanation import Explanation, require_kind
from xaijax.core.targets import Targets
from xaijax.metrics.explaining import setup as explainer_setup
from xaijax.metrics.explaining import traced_values
from xaijax.metrics.perturb import baseline_values, prepare, run

__all__ = ["local_accuracy_gap", "completeness", "non_sensitivity", "input_invariance"]


def local_accuracy_gap(
    exp: Explanation, outputs: Float[ArrayLike, "*n *k"]
) -> Float[np.ndarray, "*n *k"]:
    """``|sum_i values_i + base_value - f(x)|`` per instance (and output): completeness violation.

    The values are summed over all feature axes (``(M,)`` rows, ``(H, W, C)`` images), in
    float64. Local accuracy (Shapley values, Deep SHAP) and completeness (Integrated Gradients)
    say the gap is 0; for a ``"path"`` explanation it is the reported quadrature error.

    Args:
        exp: an Explanation of kind ``"additive"`` or ``"path"``, batched or one instance.
        outputs: the model's outputs on ``exp.data`` after the link, shaped like
            ``exp.base_values``: ``(n,)`` / ``(n, K)``, or ``()`` / ``(K,)`` for one instance.

    Returns:
        The gaps, shaped like ``exp.base_values``.

    Raises:
        TypeError: for maps, surrogate coefficients and prototype evidence, whose values are not
            meant to add up to the output.
        ValueError: if ``outputs`` is not shaped like ``exp.base_values`` or is not finite.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> e = Explanation(np.array([[1.0, 2.0]]), np.array([0.5]), np.zeros((1, 2)))
        >>> local_accuracy_gap(e, np.array([3.5])).tolist()
        [0.0]
    """
    require_kind(exp, ("additive", "path"), "local_accuracy_gap")
    values = np.asarray(exp.values, np.float64)
    lead = 1 if exp.is_batched else 0
    feature_axes = tuple(range(lead, lead + len(exp.feature_shape)))
    total = values.sum(axis=feature_axes) + np.asarray(exp.base_values, np.float64)
    outputs = as_float_array("outputs", outputs, dtype=np.float64)
    if outputs.shape != total.shape:
        raise ValueError(
            f"outputs must have shape {total.shape} like base_values; got shape {outputs.shape}"
        )
    return np.abs(total - outputs)


def completeness(
    model,
    X: Float[ArrayLike, "n ..."],
    attributions: Float[ArrayLike, "n ..."] | Explanation,
    *,
    targets: Targets = None,
    batch_size: int | None = None,
    perturb_baseline="black",
    abs: bool = False,
    normalise: bool = False,
) -> Float[np.ndarray, " n"]:
    """``|sum_i a_i - (f(x) - f(x'))|`` per instance: how far the attributions are from complete.

    ``x'`` replaces every feature by ``perturb_baseline`` (Quantus's names: ``"black"``, the
    instance's minimum; ``"white"``, ``"mean"``, a number or an array). Completeness (Integrated
    Gradients, DeepLIFT's summation-to-delta) says the gap is 0.

    Quantus 0.6's ``Completeness`` returns ``sum(a) == f(x) - f(x')`` compared exactly in
    floating point (and normalises the attributions by default), so it is False for nearly every
    complete explanation; this returns the gap, the number that comparison needed.

    Args:
        model: a JAX function or NNX module of ``X``.
        X: ``(n, M)`` or ``(n, H, W, C)`` inputs.
        attributions: ``X``-shaped (or ``(n, H, W)``) attributions, or a batched Explanation.
        targets: ``None`` (the predicted class), an int, ``(n,)`` ints or a callable on outputs.
        batch_size: model rows evaluated at once.
        perturb_baseline: what ``x'`` is.
        abs, normalise: Quantus's options (take ``|a|``; divide by each instance's max ``|a|``).

    Returns:
        ``(n,)`` float64 gaps, >= 0.

    References:
        Sundararajan, Taly & Yan, "Axiomatic Attribution for Deep Networks", ICML 2017.

    Example:
        >>> import numpy as np
        >>> X = np.array([[1.0, 2.0, 3.0]]); w = np.array([1.0, -1.0, 2.0])
        >>> exact = w * (X - X.min())  # the black baseline is the instance's minimum
        >>> completeness(lambda x: x @ w, X, exact).round(6).tolist()
        [0.0]
    """
    s = prepare(
        model, X, attributions, targets=targets, batch_size=batch_size, abs=abs, normalise=normalise
    )
    base, _ = baseline_values(perturb_baseline, s)
    out = run(s, base=base, lo=[0], hi=[1])  # every feature (all in band 0) replaced
    total = s.A.astype(np.float64).sum(1)
    return np.abs(total - (out.y0.astype(np.float64) - out.scores[:, 0].astype(np.float64)))


def non_sensitivity(
    model,
    X: Float[ArrayLike, "n ..."],
    attributions: Float[ArrayLike, "n ..."] | Explanation,
    *,
    targets: Targets = None,
    batch_size: int | None = None,
    eps: float = 1e-5,
    features_in_step: int = 1,
    perturb_baseline="black",
    abs: bool = True,
    normalise: bool = True,
) -> Int[np.ndarray, " n"]:
    """How many features break non-sensitivity: zero attribution XOR no effect on the output.

    Features are replaced by ``perturb_baseline`` in groups of ``features_in_step`` (in index
    order, one group at a time); a feature has no effect when replacing its group moves the
    target score by less than ``eps``, and zero attribution when ``a < eps`` (after ``abs`` and
    ``normalise``, Quantus's defaults). The score counts the features where exactly one holds:
    0 is best.

    Quantus 0.6 compares per-feature attributions with per-step effects, which only broadcasts
    for ``features_in_step=1``; here each feature takes its group's effect.

    Args:
        model: a JAX function or NNX module of ``X``.
        X: ``(n, M)`` or ``(n, H, W, C)`` inputs.
        attributions: ``X``-shaped (or ``(n, H, W)``) attributions, or a batched Explanation.
        targets: ``None`` (the predicted class), an int, ``(n,)`` ints or a callable on outputs.
        batch_size: model rows evaluated at once.
        eps: the threshold for "zero" attribution and "no" effect, >= 0.
        features_in_step: features replaced together.
        perturb_baseline: the replacement (``"black"``, ``"white"``, ``"mean"``, a number, ...).
        abs, normalise: Quantus's options.

    Returns:
        ``(n,)`` ints in ``[0, F]``.

    References:
        Nguyen & Martínez, "On quantitative aspects of model interpretability", 2020.

    Example:
        >>> import numpy as np
        >>> X = np.array([[1.0, 2.0, 3.0]]); w = np.array([0.0, -1.0, 2.0])
        >>> non_sensitivity(lambda x: x @ w, X, w * (X - 1.0)).tolist()
        [0]
    """
    eps = check_number("eps", eps, minimum=0.0)
    s = prepare(
        model, X, attributions, targets=targets, batch_size=batch_size, abs=abs, normalise=normalise
    )
    F = s.A.shape[1]
    if isinstance(features_in_step, bool) or not isinstance(features_in_step, int | np.integer):
        raise TypeError(f"features_in_step must be an int; got {features_in_step!r}")
    if not 1 <= features_in_step <= F:
        raise ValueError(f"features_in_step must be in [1, {F}]; got {features_in_step}")
    T = -(-F // features_in_step)
    base, span = baseline_values(perturb_baseline, s)
    if span is not None:
        raise ValueError("perturb_baseline='uniform' is random: non_sensitivity needs a fixed x'")
    group = np.broadcast_to(np.arange(F) // features_in_step, s.A.shape)
    out = run(s, base=base, g=group, lo=np.arange(T), hi=np.arange(T) + 1)
    unmoved = np.abs(out.scores - out.y0[:, None]) < eps  # (n, T)
    no_effect = np.take_along_axis(unmoved, group, axis=1)  # each feature: its group's effect
    return ((s.A < eps) ^ no_effect).sum(1)


def input_invariance(
    model,
    X: Float[ArrayLike, "n ..."],
    explainer,
    *,
    targets: Targets = None,
    batch_size: int | None = None,
    input_shift: float = -1.0,
    atol: float = 1e-4,
) -> Bool[np.ndarray, " n"]:
    """Whether the explanation survives a constant input shift the model absorbs.

    The shifted model ``f'(z) = f(z - input_shift)`` gives ``f'(x + input_shift) = f(x)`` for
    every ``x``; an input-invariant explainer gives the same attributions for ``f'`` at
    ``x + input_shift`` as for ``f`` at ``x`` (within ``atol``). Gradients are invariant;
    gradient x input and Integrated Gradients with a zero baseline are not (Kindermans et al.).
    Quantus shifts the bias of the first layer of a PyTorch model; wrapping the model is the
    same function for any JAX model.

    Args:
        model: a JAX function or NNX module of ``X``.
        X: ``(n, ...)`` inputs.
        explainer: ``explainer(model, X, targets=...)`` returning attributions or an
            Explanation (e.g. ``xj.saliency``).
        targets: ``None`` (the predicted class), an int, ``(n,)`` ints or a callable.
        batch_size: model rows evaluated at once.
        input_shift: the constant added to every input feature.
        atol: the tolerance of "the same".

    Returns:
        ``(n,)`` bool.

    References:
        Kindermans et al., "The (Un)reliability of Saliency Methods", 2019.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> grad = lambda f, X, targets=None: jax.vmap(jax.grad(lambda x: f(x[None])[0]))(X)
        >>> times_input = lambda f, X, targets=None: grad(f, X) * X
        >>> X = np.array([[1.0, 2.0]]); f = lambda x: jnp.tanh(x) @ jnp.array([1.0, 2.0])
        >>> input_invariance(f, X, grad).tolist(), input_invariance(f, X, times_input).tolist()
        ([True], [False])
    """
    input_shift = check_number("input_shift", input_shift)
    atol = check_number("atol", atol, minimum=0.0)
    s = explainer_setup(model, X, explainer, targets, batch_size)

    def shifted(Z):
        return s.model.apply(s.params, Z - input_shift)

    a = np.asarray(traced_values(explainer(model, s.X, targets=s.targets)), np.float64)
    Xs = jnp.asarray(s.X + input_shift)
    b = np.asarray(traced_values(explainer(shifted, Xs, targets=s.targets)), np.float64)
    if a.shape != b.shape or a.shape[0] != s.X.shape[0]:
        raise ValueError(f"explainer returned shapes {a.shape} and {b.shape}; expected (n, ...)")
    return np.all(np.isclose(a, b, rtol=0.0, atol=atol).reshape(a.shape[0], -1), axis=1)
