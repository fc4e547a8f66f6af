"""Path attributions: Integrated Gradients and Expected Gradients.

Both integrate the gradient along straight paths from a reference ``x'`` to the input ``x``;
the attributions sum to ``S(x) - S(x')`` up to a quadrature (IG) or Monte-Carlo (EG) error,
which is reported per instance as ``extras["completeness_gap"]`` so that, exactly,
``values.sum() + base_values == scores - completeness_gap`` (the ``"path"`` kind's invariant).
"""

# jaxtyping shape strings such as "m ..." are not Python expressions:
# ruff: noqa: F722, UP037

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from xaijax.core import contract
from xaijax.core.batching import over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets, target_scores
from xaijax.gradients.score_gradients import finish, finite_rows, gradient_sum, outputs_at, prepare

__all__ = ["integrated_gradients", "expected_gradients", "path_weights", "PATH_METHODS"]

PATH_METHODS = (
    "gausslegendre",
    "riemann_trapezoid",
    "riemann_middle",
    "riemann_left",
    "riemann_right",
)


def path_weights(num_steps: int, method: str = "gausslegendre") -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes ``alphas`` and weights on ``[0, 1]`` for the Integrated Gradients path.

    Args:
        num_steps: the number of nodes, an int >= 1 (>= 2 for ``"riemann_trapezoid"``).
        method: one of :data:`PATH_METHODS` (captum's names).

    Returns:
        ``(alphas, weights)``, two ``(num_steps,)`` float64 arrays; the weights sum to 1.

    Example:
        >>> a, w = path_weights(4, "riemann_trapezoid")
        >>> a.tolist(), w.tolist()
        ([0.0, 0.3333333333333333, 0.6666666666666666, 1.0], [0.16666666666666666, 0.3333333333333333, 0.3333333333333333, 0.16666666666666666])
    """  # noqa: E501
    method = contract.check_choice("method", method, PATH_METHODS)
    n = contract.check_int(
        "num_steps", num_steps, minimum=2 if method == "riemann_trapezoid" else 1
    )
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
    if method == "riemann_right":
        return (np.arange(n) + 1.0) / n, np.full(n, 1.0 / n)
    return np.arange(n) / n, np.full(n, 1.0 / n)


def _fixed(outputs, t, target_fn):
    """The explained outputs kept for every path point: none for a callable or scalar output."""
    return None if target_fn is not None or outputs.ndim == 1 else t


def _sum_rows(a):
    return a.reshape(a.shape[0], -1).sum(axis=1)


@functools.partial(
    jax.jit, static_argnames=("model", "target_fn", "batch_size", "mesh", "multiply")
)
def _integrated(
    model,
    params,
    X,
    baseline,
    indices,
    alphas,
    weights,
    *,
    target_fn,
    batch_size,
    mesh,
    multiply=True,
):
    def local(sharded, shared):
        X, baseline, indices = sharded
        params, alphas, weights = shared
        outputs = outputs_at(model, params, X, batch_size)
        scores, t = target_scores(outputs, indices, target_fn)
        fixed = _fixed(outputs, t, target_fn)
        base_outputs = outputs_at(model, params, baseline, batch_size)
        base, _ = target_scores(base_outputs, fixed, target_fn)
        diff = X - baseline

        total, points_ok, grads_ok = gradient_sum(
            model,
            params,
            lambda i, s: (baseline[i] + alphas[s] * diff[i], None),
            lambda g, aux, i, s: weights[s] * g,
            fixed,
            target_fn,
            n=X.shape[0],
            num_points=alphas.shape[0],
            batch_size=batch_size,
        )
        values = diff * total if multiply else total
        extras = {
            "targets": t,
            "scores": scores,
            "logits": outputs,
            "completeness_gap": (scores - base) - _sum_rows(values),
        }
        outputs_ok = finite_rows(outputs) & finite_rows(base_outputs) & points_ok
        return values, base, extras, outputs_ok, grads_ok

    return over_instances(local, (X, baseline, indices), (params, alphas, weights), mesh=mesh)


@explainer(kind="path", needs_jax=True)
def integrated_gradients(
    f,
    X: Float[ArrayLike, "..."],
    targets: Targets = None,
    *,
    baseline: Float[ArrayLike, "..."] | float | None = None,
    num_steps: int = 50,
    method: str = "gausslegendre",
    multiply_by_inputs: bool = True,
    batch_size: int | None = None,
    mesh=None,
    batched=contract.MISSING,
) -> Explanation:
    """Integrated Gradients: ``(x - x') * integral_0^1 grad S(x' + a (x - x')) da``.

    The integral is a quadrature on ``num_steps`` points (Gauss-Legendre by default, as captum).
    Completeness says ``sum(values) = S(x) - S(x')``; the quadrature error is reported per
    instance as ``extras["completeness_gap"] = S(x) - S(x') - sum(values)``, which shrinks with
    ``num_steps``.

    Args:
        f: the model ``X (n, *input_shape) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX or Equinox module (not a host NumPy model).
        X: one instance or a batch ``(n, *input_shape)``, decided by the model's input shape.
        targets: the explained score: ``None`` (the predicted class at ``x``, kept along the
            path), an int, ``(n,)`` ints, or a callable ``fn(outputs) -> (n,)``.
        baseline: ``x'``, broadcast as in captum: zeros by default, a number, one input
            (``input_shape`` or ``(1, *input_shape)``) or one per instance ``(n,
            *input_shape)``; finite.
        num_steps: quadrature points (an int >= 1; >= 2 for ``"riemann_trapezoid"``).
        method: ``"gausslegendre"``, ``"riemann_trapezoid"``, ``"riemann_middle"``,
            ``"riemann_left"`` or ``"riemann_right"`` (captum's names and nodes).
        multiply_by_inputs: ``False`` returns the path-averaged gradient
            ``integral grad S(x' + a (x - x')) da`` without the ``(x - x')`` factor (captum's
            ``multiply_by_inputs=False``); the result is then of kind ``"map"`` (no
            completeness, ``base_values`` 0).
        batch_size: most rows passed to the model at once (the ``n * num_steps`` path points
            run in chunks of it); ``None`` picks a default.
        mesh: optional :class:`jax.sharding.Mesh` to shard the instances over.
        batched: deprecated; ``X``'s shape decides.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"path"`` with ``values`` shaped like ``X``,
        ``base_values = S(x')`` ``(n,)`` and extras ``completeness_gap (n,)``, ``targets``,
        ``scores`` (``S(x)``) and ``logits``.

    Raises:
        ValueError: for bad shapes, targets, baselines or options, or when the model's outputs
            or gradients are NaN or inf at the inputs, the baselines or any path point.

    References:
        Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks, ICML.

    Example:
        >>> import jax.numpy as jnp
        >>> exp = integrated_gradients(lambda X: (X ** 2).sum(axis=1), jnp.array([[1.0, 2.0]]))
        >>> [round(v, 4) for v in exp.values[0].tolist()], round(float(exp.base_values[0]), 4)
        ([1.0, 4.0], 0.0)
    """
    if not isinstance(multiply_by_inputs, bool | np.bool_):
        raise TypeError(f"multiply_by_inputs must be True or False; got {multiply_by_inputs!r}")
    alphas, weights = path_weights(num_steps, method)
    problem = prepare(f, X, targets, batch_size=batch_size, mesh=mesh, batched=batched)
    base_x = contract.baseline_rows(baseline, problem.X)
    dtype = problem.X.dtype
    values, base, extras, outputs_ok, grads_ok = contract.call(
        _integrated,
        problem.model,
        problem.params,
        problem.X,
        base_x,
        problem.targets.indices,
        jnp.asarray(alphas, dtype),
        jnp.asarray(weights, dtype),
        target_fn=problem.targets.fn,
        batch_size=problem.batch_size,
        mesh=problem.mesh,
        multiply=bool(multiply_by_inputs),
    )
    kind = "path"
    if not multiply_by_inputs:
        kind, base = "map", jnp.zeros_like(base)
        extras.pop("completeness_gap")
    return finish(
        problem,
        values,
        base,
        extras,
        outputs_ok,
        grads_ok,
        method="integrated_gradients",
        kind=kind,
    )


@functools.partial(
    jax.jit, static_argnames=("model", "target_fn", "num_samples", "batch_size", "mesh")
)
def _expected(
    model, params, X, background, indices, keys, *, target_fn, num_samples, batch_size, mesh
):
    background_outputs = outputs_at(model, params, background, batch_size)

    def local(sharded, shared):
        X, indices, keys = sharded
        params, background, background_outputs = shared
        outputs = outputs_at(model, params, X, batch_size)
        scores, t = target_scores(outputs, indices, target_fn)
        fixed = _fixed(outputs, t, target_fn)
        n, m = X.shape[0], background.shape[0]
        if target_fn is not None:
            base = jnp.broadcast_to(jnp.mean(target_fn(background_outputs)), (n,))
        elif background_outputs.ndim == 1:
            base = jnp.broadcast_to(background_outputs.mean(), (n,))
        else:
            base = background_outputs.mean(axis=0)[t]

        def point(i, s):
            # Draw s of instance i (a background row and a path position) comes from instance
            # i's key alone: a batch equals a loop over instances with the same keys.
            k_row, k_alpha = jax.random.split(jax.random.fold_in(keys[i], s))
            ref = background[jax.random.randint(k_row, (), 0, m)]
            alpha = jax.random.uniform(k_alpha, (), X.dtype)
            return ref + alpha * (X[i] - ref), X[i] - ref

        total, points_ok, grads_ok = gradient_sum(
            model,
            params,
            point,
            lambda g, diff, i, s: g * diff,
            fixed,
            target_fn,
            n=n,
            num_points=num_samples,
            batch_size=batch_size,
        )
        values = total / num_samples
        extras = {
            "targets": t,
            "scores": scores,
            "logits": outputs,
            "completeness_gap": (scores - base) - _sum_rows(values),
        }
        background_ok = jnp.isfinite(background_outputs).all()
        return values, base, extras, finite_rows(outputs) & background_ok & points_ok, grads_ok

    return over_instances(
        local, (X, indices, keys), (params, background, background_outputs), mesh=mesh
    )


@explainer(kind="path", reference="background", random=True, needs_jax=True)
def expected_gradients(
    f,
    X: Float[ArrayLike, "..."],
    background: Float[ArrayLike, "m ..."],
    targets: Targets = None,
    *,
    key,
    num_samples: int = 200,
    batch_size: int | None = None,
    mesh=None,
    batched=contract.MISSING,
) -> Explanation:
    """Expected Gradients: ``E_{x'~background, a~U(0,1)}[(x - x') * grad S(x' + a (x - x'))]``.

    Integrated Gradients averaged over baselines drawn from a background set, estimated with
    ``num_samples`` joint draws of ``(x', a)`` per instance; the analogue of
    ``shap.GradientExplainer``. In expectation ``sum(values) = S(x) - E[S(x')]``; the
    Monte-Carlo error is reported as ``extras["completeness_gap"]``. Draw ``s`` of instance
    ``i`` comes from instance ``i``'s key only.

    Args:
        f: the model ``X (n, *input_shape) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX or Equinox module (not a host NumPy model).
        X: one instance or a batch ``(n, *input_shape)``, decided by the model's input shape.
        background: ``(m, *input_shape)`` reference rows (or one row), finite.
        targets: the explained score: ``None`` (the predicted class at ``x``), an int,
            ``(n,)`` ints, or a callable ``fn(outputs) -> (n,)``.
        key: a ``jax.random.key`` or raw ``PRNGKey``, one for the call or ``(n,)``, one per
            instance; the same key gives the same values, bit for bit.
        num_samples: draws per instance (an int >= 1).
        batch_size: most rows passed to the model at once (the ``n * num_samples`` path points
            run in chunks of it); ``None`` picks a default.
        mesh: optional :class:`jax.sharding.Mesh` to shard the instances over.
        batched: deprecated; ``X``'s shape decides.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"path"`` with ``values`` shaped like ``X``,
        ``base_values = E[S(x')]`` ``(n,)`` and extras ``completeness_gap (n,)``, ``targets``,
        ``scores``, ``logits``.

    Raises:
        ValueError: for bad shapes, targets or options, or when the model's outputs or
            gradients are NaN or inf at the inputs, the background or any sampled point.

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
    num_samples = contract.check_int("num_samples", num_samples, minimum=1)
    problem = prepare(f, X, targets, batch_size=batch_size, mesh=mesh, batched=batched)
    row = problem.X.shape[1:]
    bg = contract.as_float_array("background", background, dtype=problem.X.dtype)
    if bg.shape == row:
        bg = bg[None]
    if bg.shape[1:] != row or bg.shape[0] < 1:
        dims = ", ".join(map(str, row))
        raise ValueError(
            f"background must have shape (m, {dims}) with m >= 1, like the inputs; got {bg.shape}"
        )
    keys = contract.instance_keys(key, problem.X.shape[0])
    values, base, extras, outputs_ok, grads_ok = contract.call(
        _expected,
        problem.model,
        problem.params,
        problem.X,
        bg,
        problem.targets.indices,
        keys,
        target_fn=problem.targets.fn,
        num_samples=num_samples,
        batch_size=problem.batch_size,
        mesh=problem.mesh,
    )
    return finish(
        problem,
        values,
        base,
        extras,
        outputs_ok,
        grads_ok,
        method="expected_gradients",
        kind="path",
    )
