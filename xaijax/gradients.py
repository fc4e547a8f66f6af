"""Gradient attributions: saliency, gradient x input, SmoothGrad, Integrated and Expected Gradients.

Every method is built from one primitive, the gradient of each instance's target score with
respect to its input, computed for a whole batch with one ``jax.vjp`` (the model treats rows
independently, so the gradient of the summed scores holds each row's own gradient). The
path/noise methods loop over their samples with ``lax.scan``, one batch-sized model call per
step, so memory does not grow with the number of samples. Each explainer is one jitted function;
the model and the sample counts are static, so same-shaped calls compile once.

The explained score is the logit of ``targets`` (``None``: the predicted class, fixed at the input
``X`` for every point of a path or noise sample), or ``fn(logits) -> (n,)`` for a callable.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.explanation import Explanation
from xaijax.core.model import as_model
from xaijax.core.registry import explainer
from xaijax.core.targets import resolve_targets, target_scores

__all__ = [
    "saliency",
    "gradient_x_input",
    "smoothgrad",
    "integrated_gradients",
    "expected_gradients",
    "path_weights",
]


def _scores_and_grads(model, params, X, t, target_fn):
    def scored(x):
        scores, _ = target_scores(model.apply(params, x), t, target_fn)
        return scores

    scores, vjp = jax.vjp(scored, X)
    return scores, vjp(jnp.ones_like(scores))[0]


def _fixed_targets(model, params, X, t, target_fn):
    logits = model.apply(params, X)
    scores, t_resolved = target_scores(logits, t, target_fn)
    # A callable defines the score directly; integer targets are frozen at X.
    return logits, scores, (None if target_fn is not None or logits.ndim == 1 else t_resolved)


def _sum_features(a):
    return a.reshape(a.shape[0], -1).sum(axis=1)


def _bcast(a, X):
    """Broadcast per-row ``(n,)`` values against ``X (n, ...)`` without rank promotion."""
    return a.reshape(a.shape + (1,) * (X.ndim - 1))


# -- compiled cores --
@functools.partial(jax.jit, static_argnames=("model", "target_fn", "kind"))
def _local_gradient(model, params, X, t, *, target_fn, kind):
    logits, _, t = _fixed_targets(model, params, X, t, target_fn)
    scores, grads = _scores_and_grads(model, params, X, t, target_fn)
    values = jnp.abs(grads) if kind == "saliency" else grads * X
    return values, {"targets": _report(t, target_fn, X), "scores": scores, "logits": logits}


@functools.partial(jax.jit, static_argnames=("model", "target_fn", "num_samples"))
def _smoothgrad(model, params, X, t, key, noise_level, *, target_fn, num_samples):
    logits, scores, t = _fixed_targets(model, params, X, t, target_fn)
    axes = tuple(range(1, X.ndim))
    sigma = noise_level * (X.max(axis=axes, keepdims=True) - X.min(axis=axes, keepdims=True))

    def step(total, k):
        noisy = X + sigma * jax.random.normal(k, X.shape, X.dtype)
        return total + _scores_and_grads(model, params, noisy, t, target_fn)[1], None

    total, _ = jax.lax.scan(step, jnp.zeros_like(X), jax.random.split(key, num_samples))
    values = total / num_samples
    return values, {
        "targets": _report(t, target_fn, X),
        "scores": scores,
        "logits": logits,
        "sigma": sigma.reshape(X.shape[0]),
    }


@functools.partial(jax.jit, static_argnames=("model", "target_fn"))
def _integrated(model, params, X, baseline, t, alphas, weights, *, target_fn):
    logits, scores, t = _fixed_targets(model, params, X, t, target_fn)
    diff = X - baseline

    def step(total, aw):
        alpha, weight = aw
        grads = _scores_and_grads(model, params, baseline + alpha * diff, t, target_fn)[1]
        return total + weight * grads, None

    total, _ = jax.lax.scan(step, jnp.zeros_like(X), (alphas, weights))
    values = diff * total
    base, _ = target_scores(model.apply(params, baseline), t, target_fn)
    gap = _sum_features(values) - (scores - base)
    extras = {"targets": _report(t, target_fn, X), "scores": scores, "logits": logits}
    return values, base, {**extras, "completeness_gap": gap}


@functools.partial(jax.jit, static_argnames=("model", "target_fn", "num_samples"))
def _expected(model, params, X, background, t, key, *, target_fn, num_samples):
    logits, scores, t = _fixed_targets(model, params, X, t, target_fn)
    n, m = X.shape[0], background.shape[0]

    def step(total, k):
        k_row, k_alpha = jax.random.split(k)
        ref = background[jax.random.randint(k_row, (n,), 0, m)]
        alpha = _bcast(jax.random.uniform(k_alpha, (n,), X.dtype), X)
        grads = _scores_and_grads(model, params, ref + alpha * (X - ref), t, target_fn)[1]
        return total + grads * (X - ref), None

    total, _ = jax.lax.scan(step, jnp.zeros_like(X), jax.random.split(key, num_samples))
    values = total / num_samples
    bg_logits = model.apply(params, background)
    if target_fn is not None:
        base = jnp.broadcast_to(jnp.mean(target_fn(bg_logits)), (n,))
    elif bg_logits.ndim == 1:
        base = jnp.broadcast_to(bg_logits.mean(), (n,))
    else:
        base = bg_logits.mean(axis=0)[t]
    gap = _sum_features(values) - (scores - base)
    extras = {"targets": _report(t, target_fn, X), "scores": scores, "logits": logits}
    return values, base, {**extras, "completeness_gap": gap}


def _report(t, target_fn, X):
    return (
        jnp.full((X.shape[0],), -1 if target_fn is not None else 0, jnp.int32) if t is None else t
    )


# -- input handling --
def _prepare(f, X, targets, batched):
    X = jnp.asarray(X)
    if not jnp.issubdtype(X.dtype, jnp.floating):
        X = X.astype(jnp.zeros((), dtype=float).dtype)
    if batched is None:
        # (M,) rows and (H, W, C) images are single instances; (n, M) and (n, H, W, C) batches.
        batched = X.ndim in (2, 4)
    single = not batched
    if single:
        X = X[None]
    if X.ndim < 2:
        raise ValueError(f"X must be (n, *input_shape) or one instance; got shape {X.shape}")
    if not bool(jnp.isfinite(X).all()):
        raise ValueError("X contains NaN or inf")
    model, params = as_model(f, np.asarray(X[: min(2, X.shape[0])]))
    if model.kind == "host":
        raise ValueError("f must be a differentiable JAX function or NNX module, not a host model")
    t, target_fn = resolve_targets(targets, X.shape[0], model.num_outputs)
    return model, params, X, t, target_fn, single


def _finish(method, values, base, X, extras, single):
    if not bool(jnp.isfinite(extras["logits"]).all()):
        raise ValueError("the model's outputs contain NaN or inf for these inputs")
    kind = "path" if method in ("integrated_gradients", "expected_gradients") else "map"
    exp = Explanation(
        values=values, base_values=base, data=X, method=method, kind=kind, extras=extras
    )
    return exp[0] if single else exp


def _zeros_base(X):
    return jnp.zeros(X.shape[:1], X.dtype)


_ARGS = """Args:
        f: the model ``X (n, *input_shape) -> (n,)`` or ``(n, K)``: a JAX function or an NNX module.
        X: ``(n, *input_shape)`` or one instance (``(M,)`` rows and ``(H, W, C)`` images are read
            as single instances; pass ``batched`` to override).
        targets: ``None`` (the predicted class), an int, ``(n,)`` ints, or
            ``fn(logits) -> (n,)``."""


# -- public explainers --
@explainer(kind="map", needs_jax=True)
def saliency(f, X, targets=None, *, batched=None) -> Explanation:
    """Saliency: ``|d score / d x|``, the absolute input gradient of the target score.

    {args}

    Returns:
        :class:`~xaijax.Explanation` with ``values`` shaped like ``X``, ``base_values`` zeros and
        extras ``targets``, ``scores``, ``logits``.

    References:
        Simonyan et al. 2014, Deep Inside Convolutional Networks: Visualising Image Classification
        Models and Saliency Maps, ICLR workshop.

    Example:
        >>> import jax.numpy as jnp
        >>> exp = saliency(lambda X: X ** 2 @ jnp.ones((3, 2)), jnp.array([[1.0, -2.0, 3.0]]), 0)
        >>> exp.values.tolist()
        [[2.0, 4.0, 6.0]]
    """
    model, params, X, t, target_fn, single = _prepare(f, X, targets, batched)
    values, extras = _local_gradient(model, params, X, t, target_fn=target_fn, kind="saliency")
    return _finish("saliency", values, _zeros_base(X), X, extras, single)


@explainer(kind="map", needs_jax=True)
def gradient_x_input(f, X, targets=None, *, batched=None) -> Explanation:
    """Gradient x input: ``x * d score / d x`` (exact for linear models without intercept).

    {args}

    Returns:
        :class:`~xaijax.Explanation` with ``values`` shaped like ``X``, ``base_values`` zeros.

    References:
        Shrikumar et al. 2016, Not Just a Black Box: Learning Important Features Through
        Propagating Activation Differences, arXiv:1605.01713.

    Example:
        >>> import jax.numpy as jnp
        >>> exp = gradient_x_input(lambda X: X @ jnp.array([1.0, 2.0]), jnp.array([[3.0, 4.0]]))
        >>> exp.values.tolist()
        [[3.0, 8.0]]
    """
    model, params, X, t, target_fn, single = _prepare(f, X, targets, batched)
    values, extras = _local_gradient(model, params, X, t, target_fn=target_fn, kind="x_input")
    return _finish("gradient_x_input", values, _zeros_base(X), X, extras, single)


@explainer(kind="map", random=True, needs_jax=True)
def smoothgrad(
    f, X, targets=None, *, key, num_samples=50, noise_level=0.15, batched=None
) -> Explanation:
    """SmoothGrad: the input gradient averaged over ``x + N(0, sigma^2)`` noise samples.

    ``sigma = noise_level * (max(x) - min(x))`` per instance, as in the paper.

    {args}
        key: a ``jax.random.key``; the same key gives the same result.
        num_samples: noise samples (one batched gradient each, run in a ``lax.scan``).
        noise_level: noise standard deviation relative to each instance's value range.

    Returns:
        :class:`~xaijax.Explanation` with ``values`` shaped like ``X``; extras ``sigma (n,)``.

    References:
        Smilkov et al. 2017, SmoothGrad: removing noise by adding noise, arXiv:1706.03825.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> exp = smoothgrad(lambda X: X @ jnp.array([1.0, 2.0]), jnp.ones((3, 2)),
        ...                  key=jax.random.key(0), num_samples=4)
        >>> exp.values[0].tolist()
        [1.0, 2.0]
    """
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be a positive int; got {num_samples!r}")
    model, params, X, t, target_fn, single = _prepare(f, X, targets, batched)
    values, extras = _smoothgrad(
        model,
        params,
        X,
        t,
        key,
        jnp.asarray(noise_level, X.dtype),
        target_fn=target_fn,
        num_samples=int(num_samples),
    )
    return _finish("smoothgrad", values, _zeros_base(X), X, extras, single)


def path_weights(num_steps: int, method: str = "gausslegendre"):
    """Quadrature nodes ``alphas`` and weights on ``[0, 1]`` for the Integrated Gradients path.

    Example:
        >>> a, w = path_weights(4, "riemann_trapezoid")
        >>> a.tolist(), w.tolist()
        ([0.0, 0.3333333333333333, 0.6666666666666666, 1.0], [0.16666666666666666, 0.3333333333333333, 0.3333333333333333, 0.16666666666666666])
    """  # noqa: E501
    n = int(num_steps)
    if n < 1 or (method == "riemann_trapezoid" and n < 2):
        raise ValueError(f"num_steps must be >= 1 (>= 2 for the trapezoid rule); got {num_steps}")
    if method == "gausslegendre":
        x, w = np.polynomial.legendre.leggauss(n)
        return (x + 1.0) / 2.0, w / 2.0
    if method == "riemann_trapezoid":
        a = np.linspace(0.0, 1.0, n)
        w = np.full(n, 1.0 / (n - 1))
        w[[0, -1]] /= 2.0
        return a, w
    if method == "riemann_middle":
        return (np.arange(n) + 0.5) / n, np.full(n, 1.0 / n)
    if method == "riemann_left":
        return np.arange(n) / n, np.full(n, 1.0 / n)
    raise ValueError(
        "method must be 'gausslegendre', 'riemann_trapezoid', 'riemann_middle' or "
        f"'riemann_left'; got {method!r}"
    )


@explainer(kind="path", needs_jax=True)
def integrated_gradients(
    f, X, targets=None, *, baseline=None, num_steps=50, method="gausslegendre", batched=None
) -> Explanation:
    """Integrated Gradients: ``(x - x') * integral_0^1 grad S(x' + a (x - x')) da``.

    The integral is a quadrature on ``num_steps`` points (Gauss-Legendre by default, as captum),
    one batched gradient per point. Completeness says ``sum(values) = S(x) - S(x')``; the
    quadrature error is reported per instance as ``extras["completeness_gap"]`` and shrinks with
    ``num_steps``.

    {args}
        baseline: ``x'``, zeros by default; shaped like one instance or like ``X``.
        num_steps: quadrature points.
        method: ``"gausslegendre"``, ``"riemann_trapezoid"``, ``"riemann_middle"``,
            ``"riemann_left"``.

    Returns:
        :class:`~xaijax.Explanation` with ``values`` shaped like ``X``, ``base_values = S(x')``
        ``(n,)`` and extras ``completeness_gap (n,)``, ``targets``, ``scores``, ``logits``.

    References:
        Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks, ICML.

    Example:
        >>> import jax.numpy as jnp
        >>> exp = integrated_gradients(lambda X: (X ** 2).sum(axis=1), jnp.array([[1.0, 2.0]]))
        >>> [round(v, 4) for v in exp.values[0].tolist()], round(float(exp.base_values[0]), 4)
        ([1.0, 4.0], 0.0)
    """
    model, params, X, t, target_fn, single = _prepare(f, X, targets, batched)
    alphas, weights = path_weights(num_steps, method)
    if baseline is None:
        base_x = jnp.zeros_like(X)
    else:
        base_x = jnp.asarray(baseline, X.dtype)
        if base_x.shape not in (X.shape, X.shape[1:]):
            raise ValueError(
                f"baseline must have shape {X.shape[1:]} or {X.shape}; got {base_x.shape}"
            )
        base_x = jnp.broadcast_to(base_x, X.shape)
    values, base, extras = _integrated(
        model,
        params,
        X,
        base_x,
        t,
        jnp.asarray(alphas, X.dtype),
        jnp.asarray(weights, X.dtype),
        target_fn=target_fn,
    )
    return _finish("integrated_gradients", values, base, X, extras, single)


@explainer(kind="path", reference="background", random=True, needs_jax=True)
def expected_gradients(
    f, X, background, targets=None, *, key, num_samples=200, batched=None
) -> Explanation:
    """Expected Gradients: ``E_{x'~background, a~U(0,1)}[(x - x') * grad S(x' + a (x - x'))]``.

    Integrated Gradients averaged over baselines drawn from a background set, estimated with
    ``num_samples`` joint draws of ``(x', a)`` per instance; the analogue of
    ``shap.GradientExplainer``. In expectation ``sum(values) = S(x) - E[S(x')]``; the Monte-Carlo
    error is reported as ``extras["completeness_gap"]``.

    {args}
        background: ``(m, *input_shape)`` reference rows.
        key: a ``jax.random.key``; the same key gives the same result.
        num_samples: draws per instance (one batched gradient each, run in a ``lax.scan``).

    Returns:
        :class:`~xaijax.Explanation` with ``values`` shaped like ``X``, ``base_values = E[S(x')]``
        ``(n,)`` and extras ``completeness_gap (n,)``, ``targets``, ``scores``, ``logits``.

    References:
        Erion et al. 2021, Improving performance of deep learning models with axiomatic
        attribution priors and expected gradients, Nature Machine Intelligence; Lundberg & Lee
        2017, A Unified Approach to Interpreting Model Predictions, NeurIPS.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> f = lambda X: X @ jnp.array([1.0, 2.0])
        >>> exp = expected_gradients(f, jnp.ones((1, 2)), jnp.zeros((5, 2)),
        ...                          key=jax.random.key(0), num_samples=8)
        >>> exp.values.tolist()
        [[1.0, 2.0]]
    """
    if int(num_samples) < 1:
        raise ValueError(f"num_samples must be a positive int; got {num_samples!r}")
    model, params, X, t, target_fn, single = _prepare(f, X, targets, batched)
    bg = jnp.asarray(background, X.dtype)
    if bg.ndim != X.ndim or bg.shape[1:] != X.shape[1:] or bg.shape[0] < 1:
        raise ValueError(
            f"background must have shape (m, {', '.join(map(str, X.shape[1:]))}) with m >= 1; "
            f"got {bg.shape}"
        )
    if not bool(jnp.isfinite(bg).all()):
        raise ValueError("background contains NaN or inf")
    values, base, extras = _expected(
        model, params, X, bg, t, key, target_fn=target_fn, num_samples=int(num_samples)
    )
    return _finish("expected_gradients", values, base, X, extras, single)


for _fn in (saliency, gradient_x_input, smoothgrad, integrated_gradients, expected_gradients):
    _fn.__doc__ = _fn.__doc__.replace("{args}", _ARGS)
del _fn
