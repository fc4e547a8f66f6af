"""Deep SHAP and Max SHAP: DeepLIFT's rules on any JAX function, averaged over references.

DeepLIFT (Shrikumar et al. 2017) explains ``f(x) - f(r)`` for a reference ``r`` by propagating
*multipliers* ``m = dy/dx`` in which every derivative is replaced by a ratio of differences, chosen
so that each equation of the network satisfies ``Δy = sum_i m_i Δx_i`` exactly. By the chain rule
for multipliers the attributions ``(x - r) * m`` then add up to ``f(x) - f(r)`` exactly
(summation-to-delta). Deep SHAP (Lundberg & Lee 2017) averages them over a background of
references, so they add up to ``f(x) - E[f(r)]`` like Shapley values.

The model is not rewritten: it is traced to a jaxpr and re-evaluated (:mod:`xaijax.interpreter`)
on the pair ``(x, r)``. Every value depending on the input becomes a :class:`Pair`; the ``x``
side carries gradients and the ``r`` side does not, so ``jax.vjp`` of the ``x`` side returns the
DeepLIFT multipliers. Each equation gets the rule of its kind:

* affine primitives (add, dot/conv with a constant operand, reshapes, sums, pads, ...) keep their
  own derivative, which is exact for differences;
* element-wise nonlinearities of one input (ReLU, sigmoid, tanh, exp, log, ...) get the rescale
  rule: the secant ``(y - y_r) / (x - x_r)``, or the derivative at the midpoint where
  ``x ≈ x_r``;
* element-wise functions of two inputs (``a / b``, ``max(a, b)``, ...) and bilinear ones
  (``a * b``, ``dot(a, b)``, attention) split ``Δy`` between the inputs by their exact two-player
  Shapley values, e.g. ``Δ(ab) = Δa (b + b_r)/2 + (a + a_r)/2 Δb``; so softmax, decomposed into
  ``exp``, ``sum`` and ``div``, keeps summation-to-delta;
* maxima (``reduce_max``, max pooling's ``reduce_window_max``) get Max SHAP: the exact Shapley
  values of ``max`` between ``x`` and ``r`` (:func:`max_shapley_pairs`).

Each such value is realised as ``stop_gradient(y) + stop_gradient(m) * (a - stop_gradient(a))``:
the forward value is unchanged and the gradient is the multiplier. Any primitive without a rule
raises :class:`UnsupportedPrimitiveError` naming it.
"""

# jaxtyping shape strings such as "*n m" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import ArrayLike, Float

from xaijax.core import contract
from xaijax.core.batching import check_mesh, map_instances, map_row_chunks, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.interpreter import bind_eqn, eval_jaxpr, inlinable_jaxpr
from xaijax.core.masking import Background
from xaijax.core.registry import explainer, register_cache
from xaijax.core.targets import Targets
from xaijax.shapley.coalitions import finish, prepare

__all__ = [
    "deep_shap",
    "deeplift_multipliers",
    "max_shap",
    "max_shapley_pairs",
    "Pair",
    "UnsupportedPrimitiveError",
]


class UnsupportedPrimitiveError(NotImplementedError):
    """A primitive of the model has no DeepLIFT rule."""


class Pair(NamedTuple):
    """A value that depends on the input: at the explained ``x`` and at the reference ``ref``."""

    x: Any
    ref: Any


# Primitives affine in all their operands jointly: their derivative is exact for differences.
_AFFINE = frozenset(
    {
        "add",
        "add_any",
        "sub",
        "neg",
        "reshape",
        "broadcast_in_dim",
        "transpose",
        "reduce_sum",
        "squeeze",
        "expand_dims",
        "slice",
        "concatenate",
        "stack",
        "pad",
        "convert_element_type",
        "copy",
        "copy_p",
        "rev",
        "reduce_precision",
        "cumsum",
        "reduce_window_sum",
        "sharding_constraint",
        "optimization_barrier",
    }
)
# Linear in the operands listed; the others (indices, predicates) must not depend on the input.
_LINEAR_IN = {
    "gather": (0,),
    "dynamic_slice": (0,),
    "dynamic_update_slice": (0, 1),
    "select_n": None,  # all but the predicate (operand 0)
}
# Bilinear: linear in each operand; with both depending on the input, a two-player Shapley split.
_BILINEAR = frozenset({"mul", "dot_general", "conv_general_dilated"})
# Element-wise nonlinear primitives (operands and output of one shape, or scalar constants).
_ELEMENTWISE = frozenset(
    {
        "exp",
        "exp2",
        "log",
        "log1p",
        "expm1",
        "tanh",
        "logistic",
        "sin",
        "cos",
        "tan",
        "asin",
        "acos",
        "atan",
        "sinh",
        "cosh",
        "asinh",
        "acosh",
        "atanh",
        "sqrt",
        "rsqrt",
        "cbrt",
        "abs",
        "sign",
        "floor",
        "ceil",
        "round",
        "integer_pow",
        "square",
        "pow",
        "erf",
        "erfc",
        "erf_inv",
        "lgamma",
        "digamma",
        "max",
        "min",
        "div",
        "rem",
        "atan2",
        "clamp",
    }
)
_MAXIMA = frozenset({"reduce_max", "reduce_min", "reduce_window_max", "reduce_window_min"})

_sg = jax.lax.stop_gradient


def _is_float(a) -> bool:
    return jnp.issubdtype(jnp.result_type(a), jnp.inexact)


def _safe_ratio(num, den, fallback, scale):
    """``num / den`` where ``|den|`` is clearly above rounding, else ``fallback``.

    Below ``1024 eps * scale`` the secant is mostly rounding error; the midpoint derivative
    there differs from it by O(den^2), and the contribution ``m * den`` is negligible either way.
    """
    tol = 1024 * jnp.finfo(den.dtype).eps * scale
    big = jnp.abs(den) > tol
    return jnp.where(big, num / jnp.where(big, den, jnp.ones_like(den)), fallback)


def _with_multipliers(y, operands, multipliers):
    """``y`` whose derivative with respect to each operand is its (stopped) multiplier."""
    out = _sg(y)
    for a, m in zip(operands, multipliers, strict=True):
        out = out + _sg(m) * (a - _sg(a))
    return out


def _unsupported(eqn, why: str):
    return UnsupportedPrimitiveError(
        f"deep_shap has no DeepLIFT rule for the primitive '{eqn.primitive.name}' {why} "
        f"(equation: {eqn}). Supported: affine ops, dot/conv, element-wise nonlinearities "
        f"({', '.join(sorted(_ELEMENTWISE))}), mul, reduce_max/min and max pooling."
    )


def _sides(invals):
    xs = [v.x if isinstance(v, Pair) else v for v in invals]
    refs = [v.ref if isinstance(v, Pair) else v for v in invals]
    return xs, refs


def _rule(eqn, invals):
    """The DeepLIFT re-evaluation of one equation on ``Pair``/constant operands."""
    varying = [i for i, v in enumerate(invals) if isinstance(v, Pair)]
    if not varying:
        return bind_eqn(eqn, invals)
    name = eqn.primitive.name
    inner = inlinable_jaxpr(eqn)
    if inner is not None:
        return eval_jaxpr(inner.jaxpr, inner.consts, invals, _rule)
    if name == "stop_gradient":
        # Differences flow through it: softmax's stop_gradient(max(x)) shift is part of the
        # function, and summation-to-delta needs every difference accounted for.
        return invals
    xs, refs = _sides(invals)

    if not all(_is_float(v.aval) for v in eqn.outvars):
        # Comparisons, argmax: no difference to attribute; allowed only while they stay
        # out of float arithmetic (checked where they re-enter: select_n, convert).
        return [
            Pair(x, r)
            for x, r in zip(bind_eqn(eqn, [_sg(v) for v in xs]), bind_eqn(eqn, refs), strict=True)
        ]
    if not all(_is_float(invals[i].x) for i in varying):
        raise _unsupported(eqn, "on a non-float value that depends on the input (a step function)")

    if (
        name in _AFFINE
        or (name in _BILINEAR and len(varying) == 1)
        or (name == "div" and varying == [0])
    ):
        return [Pair(x, r) for x, r in zip(bind_eqn(eqn, xs), bind_eqn(eqn, refs), strict=True)]
    if name in _LINEAR_IN:
        linear = _LINEAR_IN[name] or tuple(range(1, len(invals)))
        if any(i not in linear for i in varying):
            raise _unsupported(eqn, "with an index or predicate operand that depends on the input")
        return [Pair(x, r) for x, r in zip(bind_eqn(eqn, xs), bind_eqn(eqn, refs), strict=True)]
    if name in _BILINEAR:
        return [_bilinear(eqn, invals)]
    if name in _ELEMENTWISE:
        return [_elementwise(eqn, invals, varying)]
    if name in _MAXIMA:
        return [_maximum(eqn, invals[0])]
    raise _unsupported(eqn, "on a value that depends on the input")


def _bilinear(eqn, invals):
    """``Δ B(a, b) = B(Δa, (b + b_r)/2) + B((a + a_r)/2, Δb)``: two-player Shapley, exact."""
    a, b = invals
    y = bind_eqn(eqn, [a.x, b.x])[0]
    y_ref = bind_eqn(eqn, [a.ref, b.ref])[0]
    b_mid = _sg((b.x + b.ref) / 2)
    a_mid = _sg((a.x + a.ref) / 2)
    out = (
        _sg(y)
        + bind_eqn(eqn, [a.x - _sg(a.x), b_mid])[0]
        + bind_eqn(eqn, [a_mid, b.x - _sg(b.x)])[0]
    )
    return Pair(out, y_ref)


def _elementwise(eqn, invals, varying):
    """Rescale rule for one varying operand; exact two-player Shapley split for two."""
    out_shape = eqn.outvars[0].aval.shape
    # Broadcasting is linear: widen varying operands to the output's shape (the gradient of
    # broadcast_to sums the multipliers back), so the rules below are truly element-wise.
    invals = [
        Pair(*(jnp.broadcast_to(s, out_shape) for s in v)) if isinstance(v, Pair) else v
        for v in invals
    ]
    if len(varying) > 2:
        raise _unsupported(eqn, "with more than two operands that depend on the input")
    xs, refs = _sides(invals)
    xs_sg = [_sg(v) for v in xs]
    y = bind_eqn(eqn, xs)[0]
    y_ref = bind_eqn(eqn, refs)[0]

    def value(args):
        return bind_eqn(eqn, args)[0]

    def partial(args, i):
        # The derivative with respect to an element-wise operand i, at args.
        def fi(t):
            return value([t if j == i else a for j, a in enumerate(args)])

        return jax.jvp(fi, (args[i],), (jnp.ones_like(args[i]),))[1]

    def replaced(base, i, v):
        return [v if j == i else a for j, a in enumerate(base)]

    multipliers = []
    for i in varying:
        delta = xs_sg[i] - refs[i]
        mid = (xs_sg[i] + refs[i]) / 2
        scale = jnp.maximum(jnp.abs(xs_sg[i]), jnp.abs(refs[i]))
        if len(varying) == 1:
            gain = _sg(y) - y_ref
            slope = partial(replaced(xs_sg, i, mid), i)
        else:
            (j,) = [k for k in varying if k != i]
            # Average of i's gain with the other operand at its reference and at x.
            at_ref = replaced(xs_sg, j, refs[j])
            gain = (value(at_ref) - y_ref + _sg(y) - value(replaced(xs_sg, i, refs[i]))) / 2
            slope = (partial(replaced(at_ref, i, mid), i) + partial(replaced(xs_sg, i, mid), i)) / 2
        multipliers.append(_safe_ratio(gain, delta, slope, scale))
    out = _with_multipliers(y, [xs[i] for i in varying], multipliers)
    return Pair(out, y_ref)


def _maximum(eqn, a: Pair) -> Pair:
    """Max SHAP multipliers for ``reduce_max``/``reduce_min`` and max/min pooling windows."""
    name = eqn.primitive.name
    sign = -1.0 if name.endswith("_min") else 1.0
    if name.startswith("reduce_window"):
        p = eqn.params
        if any(d != 1 for d in (*p["base_dilation"], *p["window_dilation"])):
            raise _unsupported(eqn, "with dilation")
        strides = tuple(p["window_strides"])
        padding = [tuple(q) for q in p["padding"]]
        out_shape = eqn.outvars[0].aval.shape

        # Padding enters as null players: equal at x and r, and below every real entry of both
        # (above, for a minimum).
        low = sign * _sg(jnp.minimum(jnp.min(sign * a.x), jnp.min(sign * a.ref)))

        def windows(v):
            # (*out_shape, k): strided slices of the padded input, one per window offset.
            padded = jnp.pad(v, padding, constant_values=low)
            parts = [
                jax.lax.slice(
                    padded,
                    offset,
                    [
                        o + (n - 1) * s + 1
                        for o, n, s in zip(offset, out_shape, strides, strict=True)
                    ],
                    strides,
                )
                for offset in np.ndindex(*p["window_dimensions"])
            ]
            return jnp.stack(parts, axis=-1)

        wx, wr = windows(a.x), windows(a.ref)
    else:
        axes = tuple(eqn.params["axes"])
        keep = [d for d in range(a.x.ndim) if d not in axes]
        out_shape = tuple(a.x.shape[d] for d in keep)

        def windows(v):
            return jnp.transpose(v, keep + list(axes)).reshape(out_shape + (-1,))

        wx, wr = windows(a.x), windows(a.ref)
    phi = sign * max_shapley_pairs(sign * _sg(wx), sign * wr)
    delta = _sg(wx) - wr
    m = _safe_ratio(phi, delta, jnp.zeros_like(phi), jnp.maximum(jnp.abs(wx), jnp.abs(wr)))
    y = sign * jnp.max(sign * wx, axis=-1)
    y_ref = sign * jnp.max(sign * wr, axis=-1)
    out = _sg(y) + jnp.sum(_sg(m) * (wx - _sg(wx)), axis=-1)
    return Pair(out, y_ref)


def max_shapley_pairs(x: jax.Array, reference: jax.Array) -> jax.Array:
    """Exact Shapley values of ``max`` over the last axis, between ``x`` and one ``reference``.

    The game is ``v(S) = max(x_S, reference_{not S})``. Writing
    ``max(z) = c + integral_c^inf (1 - prod_j 1[z_j < t]) dt``, for each level ``t`` the product
    is a unanimity-like game: it is 1 iff every player with ``x_j < t <= r_j`` ("P") is in ``S``
    and every player with ``r_j < t <= x_j`` ("N") is out, so a P player has Shapley value
    ``(p-1)! q! / (p+q)!`` and an N player ``-p! (q-1)! / (p+q)!``. The integrand is piecewise
    constant between the ``2k`` sorted values, so the integral is a finite sum: ``O(k^2)`` work
    per maximum instead of ``2^k`` coalitions.

    Args:
        x: ``(..., k)`` values of the explained instance.
        reference: ``(..., k)`` reference values (broadcast against ``x``).

    Returns:
        ``(..., k)`` Shapley values, summing to ``max(x) - max(reference)``.

    References:
        Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017
        (Max SHAP).

    Example:
        >>> import jax.numpy as jnp
        >>> max_shapley_pairs(jnp.array([3.0, 1.0]), jnp.array([0.0, 0.0])).tolist()
        [2.5, 0.5]
    """
    x, reference = jnp.broadcast_arrays(jnp.asarray(x), jnp.asarray(reference))
    shape = x.shape
    # Work on (rows, k): jax 0.10's XLA:CPU segfaulted lowering the rank-6 intermediates that
    # pooling windows (n, h, w, c, 2k, k) gave inside lax.map.
    x, reference = x.reshape(-1, shape[-1]), reference.reshape(-1, shape[-1])
    # The intervals between consecutive distinct values, found by comparisons rather than a
    # sort: O(k^2), like the level sums below.
    lo = jnp.concatenate([x, reference], axis=-1)  # (..., 2k) interval starts
    above = lo[..., None, :] > lo[..., :, None]  # above[j, i]: value i is above value j
    top = jnp.max(lo, axis=-1, keepdims=True)[..., None]  # the next value up, or lo if none
    hi = jnp.min(jnp.where(above, lo[..., None, :], top), axis=-1)
    n = lo.shape[-1]
    earlier_equal = (lo[..., None, :] == lo[..., :, None]) & np.tri(n, k=-1, dtype=bool)[None]
    hi = jnp.where(jnp.any(earlier_equal, axis=-1), lo, hi)  # count repeated values once
    t = ((lo + hi) / 2)[..., :, None]  # (..., 2k, 1)
    below_x = x[..., None, :] < t  # (..., 2k, k)
    below_r = reference[..., None, :] < t
    P = below_x & ~below_r
    N = below_r & ~below_x
    # A player at or above t on both sides keeps max >= t in every coalition: a null level.
    live = ~jnp.any(~below_x & ~below_r, axis=-1, keepdims=True)
    p = P.sum(axis=-1, keepdims=True)
    q = N.sum(axis=-1, keepdims=True)
    table = jnp.asarray(_unanimity_weights(x.shape[-1]), x.dtype)
    # Looked up by one-hot contractions of the table (float64-exact weights, no gather).
    sizes = jnp.arange(table.shape[0])[None, None, :]

    def lookup(a, b):
        rows = (a == sizes).astype(x.dtype)  # (rows, 2k, k+1)
        cols = (b == sizes).astype(x.dtype)
        return jnp.sum(rows * (cols @ table.T), axis=-1, keepdims=True)

    w_p = lookup(jnp.maximum(p - 1, 0), q)  # (p-1)! q! / (p+q)!
    w_n = lookup(jnp.maximum(q - 1, 0), p)  # p! (q-1)! / (p+q)!
    per_level = jnp.where(P, -w_p, 0.0) + jnp.where(N, w_n, 0.0)
    per_level = jnp.where(live, per_level, 0.0)
    return jnp.sum((hi - lo)[..., :, None] * per_level, axis=-2).reshape(shape)


@register_cache
@functools.cache
def _unanimity_weights(k: int) -> np.ndarray:
    """``w[a, b] = a! b! / (a + b + 1)!`` for ``a, b < k + 1``, in float64."""
    lg = np.vectorize(math.lgamma)
    a = np.arange(k + 1)[:, None]
    b = np.arange(k + 1)[None, :]
    return np.exp(lg(a + 1) + lg(b + 1) - lg(a + b + 2))


@explainer(kind="additive", inputs="tabular", reference="background", model_form="none")
def max_shap(
    X: Float[ArrayLike, "*n m"],
    background: Float[ArrayLike, "b m"] | Background,
    *,
    targets=None,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    background_weights: Float[ArrayLike, " b"] | None = None,
    feature_names: Sequence[str] | None = None,
) -> Explanation:
    """Max SHAP: exact Shapley values of ``f(x) = max_i x_i`` at ``X`` over a background.

    The interventional game of the other explainers (``v(S) = E_b[max(x_S, b_{not S})]``),
    solved in closed form per background row by :func:`max_shapley_pairs` (``O(M^2)``, not
    ``2^M``) and averaged with the background weights. There is no model and one output, so
    there is no ``targets``.

    Args:
        X: one instance ``(M,)`` or a batch ``(n, M)``.
        background: ``(B, M)`` reference rows (or a :class:`Background`).
        targets: ``None`` or ``0``: the max has one output (accepted for the uniform
            signature; a callable is refused).
        batch_size: most (instance, reference) row pairs processed at once; ``None`` picks a
            default for the backend and the row size.
        mesh: optional :class:`jax.sharding.Mesh` (e.g. :func:`~xaijax.instance_mesh`) to shard
            the instances over; the values equal the one-device call's.
        background_weights: optional ``(B,)`` non-negative weights.
        feature_names: optional ``M`` names.

    Returns:
        An :class:`Explanation` of kind ``"additive"`` with ``values (n, M)`` and
        ``base_values = E_b[max(b)]`` ``(n,)``; ``values.sum(axis=1) + base_values ==
        X.max(axis=1)``.

    References:
        Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017
        (Max SHAP).

    Example:
        >>> import numpy as np
        >>> exp = max_shap(np.array([3.0, 1.0, 2.0]), np.zeros((1, 3)))
        >>> [round(v, 4) for v in exp.values.tolist()], float(exp.base_values)
        ([1.8333, 0.3333, 0.8333], 0.0)
    """
    problem = prepare(
        _row_max,
        X,
        background,
        background_weights=background_weights,
        feature_names=feature_names,
        targets=targets,
        batch_size=batch_size,
    )
    if problem.targets.fn is not None:
        raise TypeError(
            "targets must be None or 0 for max_shap (the max has one output); a callable on "
            "it is not a max: use exact_shapley or kernel_shap on that function"
        )
    values, base = contract.call(
        _max_shap,
        problem.X,
        problem.background,
        problem.weights,
        batch_size=problem.batch_size,
        mesh=check_mesh(mesh),
    )
    return finish(problem, values, base, method="max_shap")


def _row_max(X):
    return jnp.max(X, axis=1)


@functools.partial(jax.jit, static_argnames=("batch_size", "mesh"))
def _max_shap(X, background, weights, *, batch_size, mesh):
    B = background.shape[0]

    def local(X, shared):
        background, weights = shared

        def one(x):
            def chunk(idx):
                return max_shapley_pairs(x[None, :], background[idx])

            phi = map_row_chunks(chunk, B, max(1, batch_size))
            return weights @ phi, weights @ background.max(axis=1)

        return map_instances(one, X, B, batch_size)

    return over_instances(local, X, (background, weights), mesh=mesh)


def deeplift_multipliers(fn, x: jax.Array, reference: jax.Array, cotangent: jax.Array):
    """DeepLIFT multipliers of ``fn`` between ``x`` and ``reference``, weighted by ``cotangent``.

    Args:
        fn: a JAX function of one array, ``fn(x) -> y``.
        x: the explained input; ``reference``: the reference input, same shape.
        cotangent: weights of the outputs, shaped like ``y``.

    Returns:
        ``(m, y, y_ref)``: multipliers shaped like ``x`` with
        ``sum((x - reference) * m) == sum(cotangent * (y - y_ref))`` exactly (up to rounding),
        and ``fn`` at ``x`` and at ``reference``.

    Raises:
        UnsupportedPrimitiveError: if ``fn`` uses a primitive with no DeepLIFT rule.

    Example:
        >>> import jax.numpy as jnp
        >>> m, y, y_ref = deeplift_multipliers(jnp.exp, jnp.array([1.0]), jnp.array([0.0]),
        ...                                    jnp.array([1.0]))
        >>> round(float(m[0]), 4)  # (e - 1) / (1 - 0)
        1.7183
    """
    y, vjp, y_ref = jax.vjp(lambda v: _pair_call(fn, v, reference), x, has_aux=True)
    return vjp(cotangent)[0], y, y_ref


def _pair_call(fn, x, reference):
    closed = jax.make_jaxpr(fn)(x)
    (out,) = eval_jaxpr(closed.jaxpr, closed.consts, [Pair(x, _sg(reference))], _rule)
    if not isinstance(out, Pair):  # fn does not depend on its input
        out = Pair(out, out)
    return out.x, out.ref


def _attribute(model, params, X, R, target):
    """DeepLIFT attributions of each row of ``X`` against the same row of ``R``.

    ``target``: ``None`` (every output) or an int output index (one backward pass, not ``K``).
    Returns ``(values (c, *in[, K]), y (c, *out), y_ref (c, *out))``.
    """

    def fn(rows):
        return model.apply(params, rows)

    def pulled(cot):
        return deeplift_multipliers(fn, X, R, cot)

    out_shape = model.output_shape
    if out_shape and target is None:
        K = out_shape[0]
        eye = jnp.eye(K, dtype=X.dtype)
        cots = jnp.broadcast_to(eye[:, None, :], (K, X.shape[0], K))
        m, y, y_ref = jax.vmap(pulled)(cots)  # m (K, c, *in)
        values = jnp.moveaxis(m * (X - R)[None], 0, -1)
        return values, y[0], y_ref[0]
    if out_shape:
        cot = jax.nn.one_hot(target, out_shape[0], dtype=X.dtype)
        m, y, y_ref = pulled(jnp.broadcast_to(cot[None, :], (X.shape[0],) + out_shape))
        return m * (X - R), y, y_ref
    m, y, y_ref = pulled(jnp.ones(X.shape[:1], X.dtype))
    return m * (X - R), y, y_ref


@functools.partial(jax.jit, static_argnames=("model", "targeted", "batch_size", "mesh"))
def _deep(model, params, X, targets, background, weights, *, targeted, batch_size, mesh):
    B = background.shape[0]

    def local(instances, shared):
        params, background, weights = shared

        def one(args):
            x, t = args

            def chunk(idx):
                refs = background[idx]
                values, y, y_ref = _attribute(
                    model,
                    params,
                    jnp.broadcast_to(x[None], refs.shape),
                    refs,
                    t if targeted else None,
                )
                ok = jnp.isfinite(y).reshape(y.shape[0], -1).all(axis=1)
                ok = ok & jnp.isfinite(y_ref).reshape(y.shape[0], -1).all(axis=1)
                return values, y_ref, ok

            values, y_ref, ok = map_row_chunks(chunk, B, batch_size)
            base = jnp.tensordot(weights, y_ref, axes=1)
            if targeted:
                base = base[t]
            return jnp.tensordot(weights, values, axes=1), base, jnp.all(ok)

        return map_instances(one, instances, B, batch_size)

    return over_instances(local, (X, targets), (params, background, weights), mesh=mesh)


@explainer(kind="additive", reference="background", needs_jax=True)
def deep_shap(
    f: Callable,
    X: Float[ArrayLike, "*shape"],
    background: Float[ArrayLike, "b ..."] | Background,
    *,
    targets: Targets = None,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    background_weights: Float[ArrayLike, " b"] | None = None,
    feature_names: Sequence[str] | None = None,
) -> Explanation:
    """Deep SHAP: DeepLIFT (rescale rule) attributions averaged over background references.

    For each reference ``r`` in the background, DeepLIFT's multipliers ``m(x, r)`` are computed by
    re-interpreting ``f``'s jaxpr (see the module docstring for the rules) and the attributions
    are ``(x - r) * m(x, r)``; Deep SHAP averages them over the (weighted) background. Every rule
    splits each equation's output difference exactly, so ``values.sum() + base_values == f(x)``
    to float rounding, for any network built from supported primitives (dense, conv, ReLU,
    sigmoid, tanh, softmax, exp/log, max/avg pooling, products, attention). The values are
    Shapley values for linear models and for a single max; for deeper networks they approximate
    them (Lundberg & Lee 2017, Section 4.2).

    Args:
        f: the model ``f(X: (n, *input_shape)) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX module (split in eval mode) or an Equinox
            module. Host (NumPy) models cannot be re-interpreted.
        X: one instance ``input_shape`` (``(M,)``, an image ``(H, W, C)``, ...) or a batch
            ``(n, *input_shape)``.
        background: ``(B, *input_shape)`` reference rows (or a :class:`Background` of rows).
        targets: which output to explain: ``None`` (all outputs), an int or ``(n,)`` ints (one
            backward pass per reference instead of ``K``), or a callable on the model outputs,
            re-interpreted with the model (see :mod:`xaijax.core.targets`).
        batch_size: most (instance, reference) pairs pushed through the model at once (each
            model call gets that many rows); ``None`` picks a default for the backend and the
            row size.
        mesh: optional :class:`jax.sharding.Mesh` (e.g. :func:`~xaijax.instance_mesh`) to shard
            the instances over; the values equal the one-device call's.
        background_weights: optional ``(B,)`` non-negative weights of the references.
        feature_names: optional ``M`` names (tabular inputs).

    Returns:
        An :class:`Explanation` of kind ``"additive"`` with ``values (n, *input_shape)`` or
        ``(n, *input_shape, K)`` and ``base_values = E_b[f(b)]`` ``(n,)`` or ``(n, K)``; no
        leading ``n`` for one instance.

    Raises:
        ValueError: bad shapes, NaN/inf inputs, a host model, or a model that returns NaN or inf
            at an instance or a reference (naming the instances).
        UnsupportedPrimitiveError: ``f`` uses a primitive with no DeepLIFT rule (named).

    References:
        Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017
        (Deep SHAP, Max SHAP); Shrikumar, Greenside & Kundaje, "Learning Important Features
        Through Propagating Activation Differences", ICML 2017 (DeepLIFT); Ancona et al.,
        "Towards better understanding of gradient-based attribution methods for Deep Neural
        Networks", ICLR 2018 (DeepLIFT as a modified gradient).

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> f = lambda X: jax.nn.relu(X @ jnp.array([1.0, -1.0]))
        >>> exp = deep_shap(f, np.array([3.0, 1.0]), np.zeros((1, 2)))
        >>> exp.values.tolist(), float(exp.base_values)
        ([3.0, -1.0], 0.0)
    """
    tabular = np.ndim(getattr(background, "data", background)) <= 2
    problem = prepare(
        f,
        X,
        background,
        background_weights=background_weights,
        feature_names=feature_names,
        targets=targets,
        batch_size=batch_size,
        tabular=tabular,
    )
    if problem.model.kind == "host":
        try:  # say why it could not be traced
            jax.eval_shape(f, jax.ShapeDtypeStruct(problem.X.shape, problem.X.dtype))
            why = ""
        except Exception as err:
            why = f" Tracing it failed with {type(err).__name__}: {err}"
        raise ValueError(
            "f must be a JAX function or an NNX module for deep_shap (its jaxpr is "
            "re-interpreted); a host/NumPy model cannot be traced. Use kernel_shap instead." + why
        )
    indices = problem.targets.indices
    targeted = indices is not None and bool(problem.model.output_shape)
    n = problem.X.shape[0]
    values, base, finite = contract.call(
        _deep,
        problem.model,
        problem.params,
        problem.X,
        indices if targeted else np.zeros(n, np.int32),
        problem.background,
        problem.weights,
        targeted=targeted,
        batch_size=problem.batch_size,
        mesh=check_mesh(mesh),
    )
    return finish(problem, values, base, method="deep_shap", finite=finite)
