"""DeepLIFT's rules on any JAX function: the propagation interpreter shared by every family.

DeepLIFT (Shrikumar et al. 2017) explains ``f(x) - f(r)`` for a reference ``r`` by propagating
*multipliers* ``m = dy/dx`` in which every derivative is replaced by a ratio of differences, chosen
so that each equation of the network satisfies ``Δy = sum_i m_i Δx_i`` exactly. By the chain rule
for multipliers the attributions ``(x - r) * m`` then add up to ``f(x) - f(r)`` exactly
(summation-to-delta). Deep SHAP (:mod:`xaijax.shapley.deep`) averages them over a background of
references; :func:`xaijax.deep_lift` uses one reference.

The model is not rewritten: it is traced to a jaxpr and re-evaluated
(:mod:`xaijax.core.interpreter`) on the pair ``(x, r)``. A rule is attached to a *primitive*
(never to a module class), so any JAX function or NNX module works unchanged. Every value
depending on the input becomes a :class:`Pair` (rescale) or a :class:`Split` (RevealCancel: the
difference also split into its positive and negative parts); the ``x`` side carries gradients
and the ``r`` side does not, so ``jax.vjp`` of the ``x`` side returns the multipliers. Each
equation gets the rule of its kind (:func:`primitive_kind`):

* affine primitives (add, dot/conv with a constant operand, reshapes, sums, pads, stack, split,
  tile, ...) keep their own derivative, which is exact for differences;
* element-wise nonlinearities of one input (ReLU, sigmoid, tanh, exp, log, ...) get the rescale
  rule: the secant ``(y - y_r) / (x - x_r)``, or the derivative at the midpoint where
  ``x ≈ x_r``; or, with ``rule="reveal_cancel"``, the RevealCancel rule on the positive and
  negative parts of ``Δx`` (:func:`reveal_cancel_rule`);
* ``select_n`` (``jnp.where``) with a predicate that depends on the input (ELU, leaky ReLU,
  softplus written with ``where``): the rescale rule on the selected branch, ``Δy / Δc`` for the
  branch ``c`` chosen at ``x`` (at ``r`` if that one is a constant);
* element-wise functions of two inputs (``a / b``, ``max(a, b)``, ...) and bilinear ones
  (``a * b``, ``dot(a, b)``, attention) split ``Δy`` between the inputs by their exact two-player
  Shapley values, e.g. ``Δ(ab) = Δa (b + b_r)/2 + (a + a_r)/2 Δb``; so softmax, decomposed into
  ``exp``, ``sum`` and ``div``, keeps summation-to-delta;
* maxima (``reduce_max``, max pooling's ``reduce_window_max``) get Max SHAP: the exact Shapley
  values of ``max`` between ``x`` and ``r`` (:func:`max_shapley_pairs`);
* calls (``jit``, ``custom_jvp``/``custom_vjp``, remat) are inlined, ``cond`` with a predicate
  that does not depend on the input re-interprets its branches; loops (``scan``, ``while``)
  over input-dependent values are not re-interpreted.

Each such value is realised as ``stop_gradient(y) + stop_gradient(m) * (a - stop_gradient(a))``:
the forward value is unchanged and the gradient is the multiplier. Any primitive without a rule
raises :class:`UnsupportedPrimitiveError` naming it and the equation (with its source line).
"""

# jaxtyping shape strings such as "*n m" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.interpreter import (
    bind_eqn,
    describe_equation,
    eval_jaxpr,
    inlinable_jaxpr,
    source_line,
)
from xaijax.core.registry import register_cache

__all__ = [
    "DEEPLIFT_RULES",
    "MAXIMA_RULES",
    "Pair",
    "Split",
    "UnsupportedPrimitiveError",
    "deeplift_attributions",
    "deeplift_multipliers",
    "eval_inlined",
    "max_shapley_pairs",
    "primitive_kind",
    "rescale_rule",
    "reveal_cancel_rule",
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
        "split",
        "tile",
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
    "scatter-add": (0, 2),
    "scatter_add": (0, 2),
    "select_n": None,  # all but the predicate (operand 0); a varying predicate: _select
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
# Loops: their bodies run a data-dependent number of times and are not re-interpreted.
_LOOPS = frozenset({"scan", "while"})


def primitive_kind(name: str) -> str:
    """How the propagation rules treat primitive ``name``.

    One of ``"affine"`` (exact derivative), ``"linear_in"`` (linear in some operands, the others
    indices or predicates), ``"bilinear"``, ``"elementwise"`` (nonlinear, element-wise),
    ``"maximum"``, ``"call"`` (a body inlined or re-interpreted), ``"loop"`` or ``"unsupported"``.
    Other propagation methods (LRP) attach their own rules to the same kinds.

    Example:
        >>> primitive_kind("dot_general"), primitive_kind("logistic"), primitive_kind("sort")
        ('bilinear', 'elementwise', 'unsupported')
    """
    if name in _AFFINE:
        return "affine"
    if name in _LINEAR_IN:
        return "linear_in"
    if name in _BILINEAR:
        return "bilinear"
    if name in _ELEMENTWISE:
        return "elementwise"
    if name in _MAXIMA:
        return "maximum"
    if name in _LOOPS:
        return "loop"
    if name in _CALLS or name == "cond" or name.startswith(("custom_jvp_call", "custom_vjp_call")):
        return "call"
    return "unsupported"


_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call", "remat", "checkpoint"})

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
        f"no DeepLIFT rule (deep_shap, deep_lift) for the primitive '{eqn.primitive.name}' "
        f"{why}; equation: {describe_equation(eqn)}. Supported: affine and structural ops, "
        f"dot/conv, select_n (jnp.where), element-wise nonlinearities "
        f"({', '.join(sorted(_ELEMENTWISE))}), mul, reduce_max/min and max pooling, calls and "
        "cond with a predicate that does not depend on the input."
    )


def _sides(invals):
    xs = [v.x if isinstance(v, Pair) else v for v in invals]
    refs = [v.ref if isinstance(v, Pair) else v for v in invals]
    return xs, refs


def rescale_rule(eqn, invals, *, maxima: str = "shapley"):
    """DeepLIFT's rescale rule for one equation on :class:`Pair`/constant operands.

    An :func:`~xaijax.core.interpreter.eval_jaxpr` rule: constants are bound as they are, a
    value depending on the input comes back as a :class:`Pair` whose ``x`` side has the
    multipliers as its derivative. ``maxima`` (:data:`MAXIMA_RULES`) picks the rule of
    ``reduce_max`` and max pooling: ``"shapley"`` (Max SHAP) or ``"routed"`` (captum's).
    """
    varying = [i for i, v in enumerate(invals) if isinstance(v, Pair)]
    if not varying:
        return bind_eqn(eqn, invals)
    name = eqn.primitive.name
    rule = functools.partial(rescale_rule, maxima=maxima)
    inner = inlinable_jaxpr(eqn)
    if inner is not None:
        return eval_inlined(eqn, inner, invals, rule)
    if name == "stop_gradient":
        # Differences flow through it: softmax's stop_gradient(max(x)) shift is part of the
        # function, and summation-to-delta needs every difference accounted for.
        return invals
    if name == "cond":
        return _cond(eqn, invals, rule, _lift_pair)
    if name in _LOOPS:
        raise _unsupported(
            eqn, "(a loop over values that depend on the input is not re-interpreted; unroll it)"
        )
    xs, refs = _sides(invals)

    if not all(_is_float(v.aval) for v in eqn.outvars):
        # Comparisons, argmax: no difference to attribute; allowed only while they stay
        # out of float arithmetic (checked where they re-enter: select_n, convert).
        return [
            Pair(x, r)
            for x, r in zip(bind_eqn(eqn, [_sg(v) for v in xs]), bind_eqn(eqn, refs), strict=True)
        ]
    if name == "select_n" and isinstance(invals[0], Pair):
        return [_select(eqn, invals)]
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
            raise _unsupported(eqn, "with an index operand that depends on the input")
        return [Pair(x, r) for x, r in zip(bind_eqn(eqn, xs), bind_eqn(eqn, refs), strict=True)]
    if name in _BILINEAR:
        return [_bilinear(eqn, invals)]
    if name in _ELEMENTWISE:
        return [_elementwise(eqn, invals, varying)]
    if name in _MAXIMA:
        return [_maximum(eqn, invals[0], maxima)]
    raise _unsupported(eqn, "on a value that depends on the input")


def eval_inlined(eqn, inner, invals, rule):
    """A call's (or a branch's) body re-interpreted in place; an error inside names the call's
    source line. Shared by the DeepLIFT and LRP interpreters."""
    try:
        return eval_jaxpr(inner.jaxpr, inner.consts, invals, rule)
    except UnsupportedPrimitiveError as err:
        where = source_line(eqn)
        if not where or "called from" in str(err):
            raise
        label = eqn.params.get("name", eqn.primitive.name)
        raise UnsupportedPrimitiveError(f"{err} (called from {label} at {where})") from None


def _lift_pair(v, like):
    """``v`` as a :class:`Pair` (a constant is equal on both sides)."""
    if isinstance(v, Pair):
        return v
    v = jnp.asarray(v, like.dtype)
    return Pair(v, v)


def _cond(eqn, invals, rule, lift):
    """``cond``/``switch`` whose branch index does not depend on the input: each branch body
    re-interpreted with ``rule``, the outputs lifted to one structure (``lift``)."""
    index, ops = invals[0], list(invals[1:])
    if isinstance(index, (Pair, Split)):
        raise _unsupported(
            eqn,
            "with a branch index that depends on the input (x and the reference may take "
            "different branches); write it with jnp.where",
        )
    outvars = eqn.outvars

    def branch(closed):
        def run(operands):
            outs = eval_jaxpr(closed.jaxpr, closed.consts, list(operands), rule)
            return [
                lift(o, v.aval) if _is_float(v.aval) else o
                for o, v in zip(outs, outvars, strict=True)
            ]

        return run

    return jax.lax.switch(index, [branch(b) for b in eqn.params["branches"]], ops)


def _select(eqn, invals) -> Pair:
    """``select_n`` with a predicate that depends on the input: the rescale rule on the branch
    selected at ``x`` (at the reference where that branch is a constant), ``Δy / Δbranch``."""
    out_shape = eqn.outvars[0].aval.shape
    xs, refs = _sides(invals)
    y = bind_eqn(eqn, xs)[0]
    y_ref = bind_eqn(eqn, refs)[0]
    cases = invals[1:]
    varying = [k for k, c in enumerate(cases) if isinstance(c, Pair) and _is_float(c.x)]
    if not varying:
        raise _unsupported(
            eqn,
            "choosing between constants with a predicate that depends on the input (a step "
            "function has no multipliers)",
        )
    idx_x = jnp.broadcast_to(jnp.asarray(invals[0].x, jnp.int32), out_shape)
    idx_r = jnp.broadcast_to(jnp.asarray(invals[0].ref, jnp.int32), out_shape)
    is_varying = jnp.asarray([k in varying for k in range(len(cases))])
    chosen = jnp.where(is_varying[idx_x], idx_x, idx_r)
    chosen = jnp.where(is_varying[chosen], chosen, varying[0])
    full = {k: Pair(*(jnp.broadcast_to(s, out_shape) for s in cases[k])) for k in varying}
    delta = sum(jnp.where(chosen == k, _sg(c.x) - c.ref, 0.0) for k, c in full.items())
    scale = sum(
        jnp.where(chosen == k, jnp.maximum(jnp.abs(_sg(c.x)), jnp.abs(c.ref)), 0.0)
        for k, c in full.items()
    )
    m = _safe_ratio(_sg(y) - y_ref, delta, jnp.ones_like(delta), scale)
    out = _sg(y)
    for k, c in full.items():
        out = out + _sg(jnp.where(chosen == k, m, 0.0)) * (c.x - _sg(c.x))
    return Pair(out, y_ref)


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


def _maximum(eqn, a: Pair, maxima: str = "shapley") -> Pair:
    """Multipliers for ``reduce_max``/``reduce_min`` and max/min pooling windows.

    ``"shapley"``: Max SHAP, the exact Shapley values of each window's max between ``x`` and
    the reference. ``"routed"`` (captum's ``DeepLift`` rule for ``MaxPool``): of
    ``Δ = max(x) - max(r)``, the part ``max(max(x), max(r)) - max(r)`` goes to the argmax at
    ``x`` and the rest to the argmax at ``r`` (first maximum on ties).
    """
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
    if maxima == "routed":
        y_x, y_r = jnp.max(sign * _sg(wx), axis=-1), jnp.max(sign * wr, axis=-1)
        top = jnp.maximum(y_x, y_r)
        k = wx.shape[-1]
        at_x = jax.nn.one_hot(jnp.argmax(sign * _sg(wx), axis=-1), k, dtype=wx.dtype)
        at_r = jax.nn.one_hot(jnp.argmax(sign * wr, axis=-1), k, dtype=wx.dtype)
        phi = sign * (at_x * (top - y_r)[..., None] + at_r * (y_x - top)[..., None])
    else:
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


class Split(NamedTuple):
    """A value depending on the input under RevealCancel: ``x``, ``ref`` and ``Δ = x - ref``
    split into positive-contribution and negative-contribution parts, ``pos + neg == Δ``."""

    x: Any
    ref: Any
    pos: Any
    neg: Any


def _sign_split(delta):
    """``(Δ⁺, Δ⁻)`` of a difference, differentiable in ``delta``: a zero difference counts half
    on each side, so its multiplier is the mean of both (as the DeepLIFT code does)."""
    half = 0.5 * (delta == 0)
    up = _sg((delta > 0) + half).astype(delta.dtype)
    down = _sg((delta < 0) + half).astype(delta.dtype)
    return delta * up, delta * down


def _split(x, ref) -> Split:
    """A value whose difference parts are re-split by the sign of the whole difference."""
    pos, neg = _sign_split(x - _sg(ref))
    return Split(x, ref, pos, neg)


def _lift_split(v, like):
    if isinstance(v, Split):
        return v
    v = jnp.asarray(v, like.dtype)
    zero = jnp.zeros_like(v)
    return Split(v, v, zero, zero)


def reveal_cancel_rule(eqn, invals, *, maxima: str = "shapley"):
    """DeepLIFT's RevealCancel rule for one equation on :class:`Split`/constant operands.

    A linear map with a constant weight (``dot_general``, ``conv``, ``mul``/``div`` by a
    constant) splits its output difference into the sum of its positive terms ``w_i Δx_i > 0``
    and of its negative ones (Shrikumar et al. 2017, Section 3.5.1); structural ops carry both
    parts along; an element-wise nonlinearity ``f`` of one input maps them with

    ``Δy⁺ = ½[f(r + Δx⁺) − f(r)] + ½[f(r + Δx⁻ + Δx⁺) − f(r + Δx⁻)]``,
    ``Δy⁻ = ½[f(r + Δx⁻) − f(r)] + ½[f(r + Δx⁺ + Δx⁻) − f(r + Δx⁺)]``

    (Section 3.5.3) with multipliers ``Δy⁺/Δx⁺`` and ``Δy⁻/Δx⁻``. Every other equation (products
    of two inputs, maxima, ``where`` on the input, ...) uses :func:`rescale_rule` and re-splits
    its output difference by sign. ``Δy⁺ + Δy⁻ = Δy`` for every equation, so summation-to-delta
    holds.
    """
    varying = [i for i, v in enumerate(invals) if isinstance(v, (Split, Pair))]
    if not varying:
        return bind_eqn(eqn, invals)
    name = eqn.primitive.name
    rule = functools.partial(reveal_cancel_rule, maxima=maxima)
    inner = inlinable_jaxpr(eqn)
    if inner is not None:
        return eval_inlined(eqn, inner, invals, rule)
    if name == "stop_gradient":
        return invals
    if name == "cond":
        return _cond(eqn, invals, rule, _lift_split)
    splits = [i for i in varying if isinstance(invals[i], Split)]
    one = len(varying) == 1 and len(splits) == 1
    floats = all(_is_float(v.aval) for v in eqn.outvars)
    if floats and one and name in _ELEMENTWISE:
        return [_reveal_cancel(eqn, invals, varying[0])]
    if (
        floats
        and one
        and (
            name in ("dot_general", "conv_general_dilated", "mul")
            or (name == "div" and varying == [0])
        )
    ):
        return [_signed_linear(eqn, invals, varying[0])]
    if (
        floats
        and len(splits) == len(varying)
        and (
            name in _AFFINE
            or (
                name in _LINEAR_IN
                and all(i in (_LINEAR_IN[name] or range(1, len(invals))) for i in varying)
            )
        )
    ):
        return _structural(eqn, invals)
    # Everything else: the rescale rule on (x, ref), the output difference re-split by sign.
    pairs = [Pair(v.x, v.ref) if isinstance(v, Split) else v for v in invals]
    outs = rescale_rule(eqn, pairs, maxima=maxima)
    return [_split(o.x, o.ref) if isinstance(o, Pair) and _is_float(o.x) else o for o in outs]


def _structural(eqn, invals):
    """An affine op on :class:`Split` operands: its linear part applied to each difference part
    (a constant operand contributes no difference); ``neg``/``sub`` swap the subtracted parts."""
    name = eqn.primitive.name
    linear = range(len(invals)) if name in _AFFINE else (_LINEAR_IN[name] or range(1, len(invals)))

    def parts(which, flip=()):
        args = []
        for i, v in enumerate(invals):
            if isinstance(v, Split):
                args.append(v.neg if (which == "pos") == (i in flip) else v.pos)
            elif i in linear:
                args.append(jnp.zeros_like(v))
            else:
                args.append(v)
        return bind_eqn(eqn, args)

    flip = {"neg": (0,), "sub": (1,)}.get(name, ())
    xs = bind_eqn(eqn, [v.x if isinstance(v, Split) else v for v in invals])
    refs = bind_eqn(eqn, [v.ref if isinstance(v, Split) else v for v in invals])
    return [
        Split(*args) for args in zip(xs, refs, parts("pos", flip), parts("neg", flip), strict=True)
    ]


def _signed_linear(eqn, invals, i):
    """A linear map with constant weights: positive and negative terms ``w Δx`` summed apart."""
    a = invals[i]
    pos, neg = _sign_split(a.x - a.ref)
    (j,) = [k for k in range(len(invals)) if k != i] if len(invals) == 2 else [None]
    w = invals[j]

    def bound(v, weight):
        args = [v if k == i else weight for k in range(len(invals))]
        return bind_eqn(eqn, args)[0]

    y = bind_eqn(eqn, [a.x if k == i else v for k, v in enumerate(invals)])[0]
    y_ref = bind_eqn(eqn, [a.ref if k == i else v for k, v in enumerate(invals)])[0]
    if eqn.primitive.name == "div":  # x / c: the sign of the term is the sign of c
        w_pos = jnp.where(w > 0, w, jnp.inf)
        w_neg = jnp.where(w < 0, w, jnp.inf)
    else:
        w_pos = jnp.maximum(w, 0)
        w_neg = jnp.minimum(w, 0)
    up = bound(pos, w_pos) + bound(neg, w_neg)
    down = bound(neg, w_pos) + bound(pos, w_neg)
    return Split(y, y_ref, up, down)


def _reveal_cancel(eqn, invals, i):
    """RevealCancel for an element-wise nonlinearity of one input ``invals[i]``."""
    out_shape = eqn.outvars[0].aval.shape
    a = Split(*(jnp.broadcast_to(s, out_shape) for s in invals[i]))

    def f(v):
        return bind_eqn(eqn, [v if k == i else c for k, c in enumerate(invals)])[0]

    ref, p, n = a.ref, _sg(a.pos), _sg(a.neg)
    y, y_ref = f(_sg(a.x)), f(ref)
    f_p, f_n = f(ref + p), f(ref + n)
    # Where a part is ~0 its multiplier hardly matters: the rescale multiplier of the whole.
    scale = jnp.maximum(jnp.abs(_sg(a.x)), jnp.abs(ref))
    whole = _safe_ratio(y - y_ref, _sg(a.x) - ref, _midpoint_slope(f, _sg(a.x), ref), scale)
    # r + Δx⁺ and r + Δx⁻ are not values the network takes: where f is undefined there (rsqrt
    # of a variance, log of a sum), the rescale rule.
    ok = jnp.isfinite(f_p) & jnp.isfinite(f_n)
    up = jnp.where(ok, 0.5 * (f_p - y_ref) + 0.5 * (y - f_n), whole * p)
    # Δy⁻ = ½[f(r + Δx⁻) − f(r)] + ½[f(x) − f(r + Δx⁺)] = Δy − Δy⁺: taken as the difference, so
    # the parts add up to Δy exactly even where f(r + Δx±) is large.
    # A part too small to divide by gets the rescale multiplier, the other part the rest.
    tol = 1024 * jnp.finfo(p.dtype).eps * scale
    up = jnp.where(
        jnp.abs(p) <= tol, whole * p, jnp.where(jnp.abs(n) <= tol, y - y_ref - whole * n, up)
    )
    down = (y - y_ref) - up
    m_up = _safe_ratio(up, p, whole, scale)
    m_down = _safe_ratio(down, n, whole, scale)
    pos = _sg(up) + _sg(m_up) * (a.pos - _sg(a.pos))
    neg = _sg(down) + _sg(m_down) * (a.neg - _sg(a.neg))
    x = y + (pos - _sg(pos)) + (neg - _sg(neg))
    return Split(x, y_ref, pos, neg)


def _midpoint_slope(f, x, ref):
    mid = (x + ref) / 2
    return jax.jvp(f, (mid,), (jnp.ones_like(mid),))[1]


#: The rules :func:`deeplift_multipliers` accepts, by name.
DEEPLIFT_RULES = ("rescale", "reveal_cancel")
#: The rules for maxima (``reduce_max``, max pooling), by name.
MAXIMA_RULES = ("shapley", "routed")


def deeplift_multipliers(
    fn,
    x: jax.Array,
    reference: jax.Array,
    cotangent: jax.Array,
    *,
    rule: str = "rescale",
    maxima: str = "shapley",
):
    """DeepLIFT multipliers of ``fn`` between ``x`` and ``reference``, weighted by ``cotangent``.

    Args:
        fn: a JAX function of one array, ``fn(x) -> y``.
        x: the explained input; ``reference``: the reference input, same shape.
        cotangent: weights of the outputs, shaped like ``y``.
        rule: ``"rescale"`` or ``"reveal_cancel"`` (:data:`DEEPLIFT_RULES`).
        maxima: ``"shapley"`` or ``"routed"`` (:data:`MAXIMA_RULES`), the rule of maxima.

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
    if rule not in DEEPLIFT_RULES:
        raise ValueError(f"rule must be one of {DEEPLIFT_RULES}; got {rule!r}")
    if maxima not in MAXIMA_RULES:
        raise ValueError(f"maxima must be one of {MAXIMA_RULES}; got {maxima!r}")
    y, vjp, y_ref = jax.vjp(lambda v: _pair_call(fn, v, reference, rule, maxima), x, has_aux=True)
    return vjp(cotangent)[0], y, y_ref


def _pair_call(fn, x, reference, rule, maxima):
    closed = jax.make_jaxpr(fn)(x)
    if rule == "rescale":
        start, interpret = Pair(x, _sg(reference)), rescale_rule
    else:
        start, interpret = _split(x, _sg(reference)), reveal_cancel_rule
    interpret = functools.partial(interpret, maxima=maxima)
    (out,) = eval_jaxpr(closed.jaxpr, closed.consts, [start], interpret)
    if not isinstance(out, (Pair, Split)):  # fn does not depend on its input
        out = Pair(out, out)
    return out.x, out.ref


def deeplift_attributions(
    model, params, X, R, target, *, rule: str = "rescale", maxima: str = "shapley"
):
    """DeepLIFT attributions of each row of ``X`` against the same row of ``R`` (compiled side).

    Args:
        model, params: a :class:`~xaijax.core.model.Model` and its parameters.
        X, R: ``(c, *input_shape)`` instances and their references.
        target: ``None`` (every output) or an int output index (one backward pass, not ``K``).
        rule: ``"rescale"`` or ``"reveal_cancel"``; maxima: ``"shapley"`` or ``"routed"``.

    Returns:
        ``(values (c, *in[, K]), y (c, *out), y_ref (c, *out))``.

    Example:
        >>> import jax.numpy as jnp
        >>> from xaijax.core.model import as_model
        >>> model, params = as_model(lambda X: jnp.tanh(X).sum(axis=1), jnp.ones((1, 2)))
        >>> v, y, y_ref = deeplift_attributions(model, params, jnp.ones((1, 2)),
        ...                                     jnp.zeros((1, 2)), None)
        >>> [round(float(t), 4) for t in v[0]]  # tanh(1) - tanh(0) each
        [0.7616, 0.7616]
    """

    def fn(rows):
        return model.apply(params, rows)

    def pulled(cot):
        return deeplift_multipliers(fn, X, R, cot, rule=rule, maxima=maxima)

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
