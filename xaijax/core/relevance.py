"""Layer-wise relevance propagation on any JAX function: rules attached to primitives.

LRP (Bach et al. 2015) redistributes a model output backwards, layer by layer, with a *rule* per
layer. Every rule zennit implements has the form "relevance of a layer's input = a product of the
input (or a stand-in for it) with a linear map of ``R / z'``", so here each rule is realised as a
value whose *forward* is the layer's output and whose *gradient* is the rule:

``out = stop_gradient(z) + h(x) - stop_gradient(h(x))``, ``h(x) = sg(R-scale) * M(sg(x) * x)``,

and one ``jax.vjp`` of the re-interpreted model, started from the target logit, is the whole
backward pass (as zennit's hooks on autograd). The model is traced to a jaxpr and re-evaluated
(:mod:`xaijax.core.interpreter`); values that depend on the input are wrapped, and

* a *layer* is a ``dot_general``/``conv_general_dilated`` with one constant operand (the weight),
  followed by any element-wise affine ops with constant operands (bias add, batch-norm's
  ``(z - mean) * scale + beta``, a division by a constant): those are folded into the layer as
  ``z = a * (W x) + b`` before the layer's rule is applied, which is zennit's batch-norm
  canonizer. Layers are numbered in the order the interpreter meets them (index 0 is the first
  layer the input goes through); :class:`Composite` picks a rule by kind (``"dense"``, ``"conv"``)
  and position, or by that index;
* sums (``reduce_sum``, average pooling's ``reduce_window_sum``, ``add`` of two inputs) get the
  ``norm`` rule (epsilon with the stabiliser only), as zennit's ``Sum``/``AvgPool`` layers;
* element-wise nonlinearities (ReLU, GELU, tanh, ... whether a primitive or a jitted/custom-JVP
  function of one input) and element-wise affine maps outside a layer pass relevance through
  (zennit's ``Pass``; AttnLRP's identity rule);
* products of two input-dependent values (``mul``, ``dot_general`` as in attention) get
  AttnLRP's uniform rule (half to each factor), softmax (a call computing ``exp``/``sum``/``div``)
  the softmax rule ``R_in = x (R - s sum R)``, and ``rsqrt``/``sqrt`` of an input-dependent
  value (layer norm's ``1/std``) is held constant (AttnLRP's identity rule for layer norm, as
  lxt's ``stop_gradient(std)``);
* structural ops (reshape, transpose, slices, concatenation, gathers, ``where`` with any
  predicate) and maxima (max pooling) keep their gradient: relevance is routed, as in zennit;
* a shift by a value computed from the input (softmax's, log-softmax's and ``logsumexp``'s
  ``- stop_gradient(max)``) passes relevance and is never folded into a layer's bias (there
  it would make the target's shifted logit 0 and the epsilon rule divide by epsilon: 2e5 on a
  log-softmax head); ``jax.nn.log_softmax`` gets the softmax rule ``R_in = x J^T (R / y)``;
* an element-wise affine map of the model's input (a standardisation ``(x - mu) / sigma``)
  passes relevance (:attr:`Composite.input_affine`): the relevance of the standardised input,
  as zennit's with the standardisation outside the model (the norm rule ``x R_z / z`` would
  divide by ``z ~ 0`` where ``x ~ mu`` under flat, z+ or gamma first layers);
* ``cond``/``switch`` whose index does not depend on the input: a constant index picks its
  branch while tracing (the relevance is that of the model without the ``cond``, bit for bit);
  an index computed from parameters re-interprets every branch inside ``lax.switch``.

Comparisons and other non-float results are constants (relevance does not flow through a
predicate), marked as computed from the input (:class:`Dep`): control flow whose index depends
on the input raises, naming the equation and its source line. A primitive without a rule raises
:class:`UnsupportedPrimitiveError` naming it and its equation.

References:
    Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by Layer-Wise
    Relevance Propagation", PLoS ONE 2015. Montavon et al., "Layer-Wise Relevance Propagation:
    An Overview", 2019. Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance
    Propagation for Transformers", ICML 2024. Anders et al., "Software for Dataset-wide XAI:
    From Local Explanations to Global Insights with Zennit, CoRelAy, and ViRelAy", 2021.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.interpreter import (
    bind_eqn,
    describe_equation,
    eval_jaxpr,
    inlinable_jaxpr,
    is_zero_literal,
    sub_jaxprs,
)
from xaijax.core.propagation import UnsupportedPrimitiveError, eval_inlined

__all__ = [
    "COMPOSITES",
    "Composite",
    "Rule",
    "alpha_beta",
    "composite",
    "epsilon",
    "flat",
    "gamma",
    "layer_kinds",
    "lrp_relevance",
    "norm",
    "pass_rule",
    "w_square",
    "z_box",
    "z_plus",
]

_sg = jax.lax.stop_gradient


# --- rules -------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Rule:
    """An LRP rule for a linear layer: its ``name`` and hashable parameters.

    Build with :func:`epsilon`, :func:`gamma`, :func:`z_plus`, :func:`alpha_beta`, :func:`flat`,
    :func:`w_square`, :func:`z_box`, :func:`norm` or :func:`pass_rule`.
    """

    name: str
    params: tuple = ()
    stabilizer: float = 1e-6

    def param(self, key, default=None):
        return dict(self.params).get(key, default)


def epsilon(eps: float = 1e-6) -> Rule:
    """LRP-epsilon: ``R_i = x_i sum_j w_ij R_j / (z_j + eps sign z_j)`` (bias in ``z``).

    Example:
        >>> epsilon(0.1).name
        'epsilon'
    """
    return Rule("epsilon", (("epsilon", float(eps)),), float(eps))


def gamma(gamma: float = 0.25, stabilizer: float = 1e-6) -> Rule:
    """Generalised LRP-gamma (zennit's ``Gamma``): positive weights favoured by ``gamma``.

    Example:
        >>> gamma(0.5).param("gamma")
        0.5
    """
    return Rule("gamma", (("gamma", float(gamma)),), float(stabilizer))


def z_plus(stabilizer: float = 1e-6) -> Rule:
    """LRP-z+ (alpha=1, beta=0), zennit's ``ZPlus`` (negative inputs with negative weights).

    Example:
        >>> z_plus().name
        'z_plus'
    """
    return Rule("z_plus", (), float(stabilizer))


def alpha_beta(alpha: float = 2.0, beta: float = 1.0, stabilizer: float = 1e-6) -> Rule:
    """LRP-alpha-beta: positive contributions weighted ``alpha``, negative ``beta``.

    Example:
        >>> alpha_beta(2, 1).param("alpha")
        2.0
    """
    if alpha < 0 or beta < 0 or abs(alpha - beta - 1.0) > 1e-12:
        raise ValueError(
            f"alpha_beta needs alpha, beta >= 0 and alpha - beta == 1; got {alpha}, {beta}"
        )
    return Rule("alpha_beta", (("alpha", float(alpha)), ("beta", float(beta))), float(stabilizer))


def flat(stabilizer: float = 1e-6) -> Rule:
    """LRP-flat: relevance spread uniformly over each output's receptive field.

    Example:
        >>> flat().name
        'flat'
    """
    return Rule("flat", (), float(stabilizer))


def w_square(stabilizer: float = 1e-6) -> Rule:
    """LRP-w^2: relevance spread in proportion to the squared weights (unbounded inputs).

    Example:
        >>> w_square().name
        'w_square'
    """
    return Rule("w_square", (), float(stabilizer))


def z_box(low, high, stabilizer: float = 1e-6) -> Rule:
    """LRP-z^B for inputs bounded by ``low <= x <= high`` (numbers or arrays broadcast like
    one input, e.g. per-channel ``(1, 1, C)``).

    Example:
        >>> z_box(0.0, 1.0).param("low")
        0.0
    """
    if low is None or high is None:
        raise ValueError("z_box needs the input bounds low= and high=")
    low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
        raise ValueError("low and high must be finite")
    if np.any(low > high):
        raise ValueError("low must be <= high")

    def enc(a):
        return float(a) if a.ndim == 0 else (a.shape, tuple(a.ravel().tolist()))

    return Rule("z_box", (("low", enc(low)), ("high", enc(high))), float(stabilizer))


def norm(stabilizer: float = 1e-6) -> Rule:
    """Relevance in proportion to each input's contribution (epsilon with a stabiliser only).

    Example:
        >>> norm().name
        'norm'
    """
    return Rule("norm", (), float(stabilizer))


def pass_rule() -> Rule:
    """Relevance passed through unchanged (element-wise layers).

    Example:
        >>> pass_rule().name
        'pass'
    """
    return Rule("pass")


_RULE_NAMES = ("epsilon", "gamma", "z_plus", "alpha_beta", "flat", "w_square", "z_box", "norm")


@dataclasses.dataclass(frozen=True)
class Composite:
    """Which rule each linear layer gets.

    Args:
        dense: rule of ``dot_general`` layers (with a constant weight).
        conv: rule of ``conv_general_dilated`` layers.
        first_dense, first_conv: rule of the first layer (layer index 0) when it is of that kind;
            ``None`` keeps ``dense``/``conv``.
        layers: ``((index, rule), ...)`` overrides by layer index, in the order the layers are
            met (0 = first layer the input goes through; negative counts from the last).
        stabilizer: of the ``norm`` rule on sums and pooling, the softmax and bilinear rules.
        input_affine: the rule of an element-wise affine map of the model's input with
            constants (a standardisation ``(x - mu) / sigma`` inside the model): ``"pass"``
            (the standardised input's relevance, as zennit with the standardisation outside
            the model) or ``"norm"`` (gradient x input at the raw input, as lxt).

    Example:
        >>> c = Composite(dense=epsilon(), conv=z_plus(), layers=((0, flat()),))
        >>> c.rule_for(0, "conv", 3).name, c.rule_for(1, "conv", 3).name
        ('flat', 'z_plus')
    """

    dense: Rule
    conv: Rule
    first_dense: Rule | None = None
    first_conv: Rule | None = None
    layers: tuple = ()
    stabilizer: float = 1e-6
    input_affine: str = "pass"

    def __post_init__(self):
        if self.input_affine not in ("pass", "norm"):
            raise ValueError(f"input_affine must be 'pass' or 'norm'; got {self.input_affine!r}")

    def rule_for(self, index: int, kind: str, count: int | None = None) -> Rule:
        for i, rule in self.layers:
            if i == index or (count is not None and i < 0 and i + count == index):
                return rule
        if index == 0:
            first = self.first_dense if kind == "dense" else self.first_conv
            if first is not None:
                return first
        return self.dense if kind == "dense" else self.conv


#: The composites by name (zennit's, and AttnLRP's epsilon everywhere).
COMPOSITES = (
    "epsilon_plus_flat",
    "epsilon_gamma_box",
    "epsilon_alpha2_beta1",
    "epsilon",
    "attn_lrp",
)


def composite(
    name: str,
    *,
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    low=None,
    high=None,
    stabilizer: float = 1e-6,
    layers: Mapping[int, Rule] | None = None,
) -> Composite:
    """A :class:`Composite` by name, with zennit's choice of rules.

    * ``"epsilon_plus_flat"``: flat on the first layer, z+ on convolutions, epsilon on dense;
    * ``"epsilon_gamma_box"``: z^B (``low``, ``high``) on a first convolution, gamma on
      convolutions, epsilon on dense;
    * ``"epsilon_alpha2_beta1"``: alpha2-beta1 on convolutions, epsilon on dense;
    * ``"epsilon"``: epsilon on every layer; ``"attn_lrp"``: the same with ``epsilon`` also the
      stabiliser of sums, softmax and products (AttnLRP is gradient x input, epsilon -> 0; its
      softmax, uniform and identity rules are on in every composite).

    Example:
        >>> composite("epsilon_plus_flat").first_dense.name
        'flat'
    """
    eps_rule = globals()["epsilon"](epsilon)
    layers = tuple(sorted((int(k), v) for k, v in (layers or {}).items()))
    if name == "epsilon_plus_flat":
        f = flat(stabilizer)
        return Composite(eps_rule, z_plus(stabilizer), f, f, layers, stabilizer)
    if name == "epsilon_gamma_box":
        if low is None or high is None:
            raise ValueError(
                "composite 'epsilon_gamma_box' needs the input bounds low= and high= "
                "(e.g. low=0.0, high=1.0 for images in [0, 1])"
            )
        g = globals()["gamma"](gamma, stabilizer)
        return Composite(eps_rule, g, None, z_box(low, high, stabilizer), layers, stabilizer)
    if name == "epsilon_alpha2_beta1":
        return Composite(eps_rule, alpha_beta(2.0, 1.0, stabilizer), None, None, layers, stabilizer)
    if name == "epsilon":
        return Composite(eps_rule, eps_rule, None, None, layers, stabilizer)
    if name == "attn_lrp":
        # AttnLRP (lxt) is gradient x input: epsilon -> 0 for every division, sums included.
        stab = min(stabilizer, float(epsilon))
        return Composite(eps_rule, eps_rule, None, None, layers, stab, input_affine="norm")
    raise ValueError(f"composite must be one of {COMPOSITES} or a Composite; got {name!r}")


# --- interpreter values ------------------------------------------------------------------------


class Rel(NamedTuple):
    """A value that depends on the input (relevance flows back through it as the cotangent).

    ``tag`` marks the pieces of a softmax written out (``exp(a - c) / sum(exp(a - c))``, as
    ``jax.nn.softmax`` traces): ``("exp", a)`` on the exponential of ``a - c`` (``Layer.src``),
    ``("sumexp", e, axes)`` on its sum (and broadcasts of it), so ``div`` applies the softmax rule.
    """

    value: Any
    tag: Any = None


class Dep(NamedTuple):
    """A value computed from the input that relevance does not flow through (a comparison, a
    ``stop_gradient``, layer norm's held ``1/std``): a constant to every rule, kept apart so
    that control flow on it is recognised and a shift by it (softmax's ``- max``) is not
    mistaken for a bias."""

    value: Any


class Layer(NamedTuple):
    """A linear layer not yet closed: ``z = a * lin(x, w) + b`` with ``a``/``b`` constants."""

    x: Any
    lin: Callable
    w: Any
    a: Any
    b: Any
    kind: str  # "dense", "conv" or "sum" (sums, pooling, element-wise affine maps)
    index: int
    shape: tuple
    src: Any = None  # for an element-wise ``a - c``: ``a`` (the softmax pattern)
    x_nonneg: bool = False  # x is known >= 0 (after a ReLU): its negative part is skipped


def _stab(z, eps):
    # zennit's Stabilizer: z + eps * sign(z), sign(0) = +1.
    return z + eps * jnp.where(z >= 0, 1.0, -1.0).astype(z.dtype)


def _relevant(z, h):
    """Forward value ``z`` (exactly: ``h - sg(h)`` is 0), gradient the gradient of ``h``."""
    return _sg(z) + (h - _sg(h))


def _relevant_linear(z, h_of, x):
    """Forward value ``z``, gradient that of the linear ``h_of`` at ``x``: a custom JVP, so
    the forward pass never evaluates ``h_of`` (only its transpose runs, in the backward)."""

    @jax.custom_jvp
    def node(x):
        return z

    @node.defjvp
    def node_jvp(primals, tangents):
        return z, h_of(tangents[0])

    return node(x)


class _State:
    def __init__(self, comp: Composite, count: int | None):
        self.comp = comp
        self.count = count
        self.next_index = 0
        self.kinds: list = []
        # Inside a traced lax.switch branch: a custom JVP would close over the branch's
        # tracers, which are gone when the cond is differentiated.
        self.in_branch = False


def _apply_rule(layer: Layer, rule: Rule, custom: bool = True):
    """Close ``layer`` with ``rule``: the forward output, with the rule as its gradient."""
    x, w, a, b = layer.x, layer.w, layer.a, layer.b
    sx = _sg(x)
    z = a * layer.lin(sx, w) + b

    def lin(u, weight):
        return layer.lin(u, weight)

    def m_id(u):
        return a * lin(u, w)

    # The sign of the folded scale decides which part of W is (a W)^+; a known sign picks one
    # branch statically (XLA would otherwise constant-fold a convolution of the other
    # branch's zero cotangent, seconds per layer at 224 px).
    sign = _known_sign(a)

    def signed(u, first, second):
        if sign == 1:
            return a * lin(u, first)
        if sign == -1:
            return a * lin(u, second)
        return jnp.where(a > 0, a * lin(u, first), a * lin(u, second))

    def m_pos(u):  # (a W)^+ u, row by row
        return signed(u, jnp.maximum(w, 0), jnp.minimum(w, 0))

    def m_neg(u):
        return signed(u, jnp.minimum(w, 0), jnp.maximum(w, 0))

    b_pos, b_neg = jnp.maximum(b, 0), jnp.minimum(b, 0)
    eps = rule.stabilizer
    name = rule.name
    xp, xn = jnp.maximum(sx, 0), jnp.minimum(sx, 0)
    if layer.x_nonneg:  # after a ReLU: x = x+, and every x- term is zero (not computed)

        def m_zero(u):
            return 0.0

        m_pos_n = m_neg_n = m_zero
    else:
        m_pos_n, m_neg_n = m_pos, m_neg
    if layer.kind == "sum" or name in ("epsilon", "norm"):
        c = 1.0 / _stab(z, eps)

        def h_of(x):
            return _sg(c) * m_id(sx * x)
    elif name == "z_plus":
        c = 1.0 / _stab(m_pos(xp) + b_pos + m_neg_n(xn), eps)

        def h_of(x):
            return _sg(c) * (m_pos(xp * x) + m_neg_n(xn * x))
    elif name == "alpha_beta":
        al, be = rule.param("alpha"), rule.param("beta")
        c1 = 1.0 / _stab(m_pos(xp) + b_pos + m_neg_n(xn), eps)
        c2 = 1.0 / _stab(m_neg(xp) + b_neg + m_pos_n(xn), eps)

        def h_of(x):
            h = al * _sg(c1) * (m_pos(xp * x) + m_neg_n(xn * x))
            return h - be * _sg(c2) * (m_neg(xp * x) + m_pos_n(xn * x))
    elif name == "gamma":
        g = rule.param("gamma")

        def m_gp(u):
            return m_id(u) + g * m_pos(u)

        def m_gn(u):
            return m_id(u) + g * m_neg(u)

        c1 = jnp.where(z > 0, 1.0 / _stab(m_gp(xp) + b + g * b_pos + m_gn(xn), eps), 0.0)
        c2 = jnp.where(z < 0, 1.0 / _stab(m_gn(xp) + b + g * b_neg + m_gp(xn), eps), 0.0)

        def h_of(x):
            h = _sg(c1) * (m_gp(xp * x) + m_gn(xn * x))
            return h + _sg(c2) * (m_gn(xp * x) + m_gp(xn * x))
    elif name == "z_box":
        low = _bound(rule.param("low"), x)
        high = _bound(rule.param("high"), x)
        c = 1.0 / _stab(m_id(sx) - m_pos(low) - m_neg(high), eps)

        def h_of(x):
            return _sg(c) * (m_id(sx * x) - m_pos(low * x) - m_neg(high * x))
    elif name == "w_square":
        c = 1.0 / _stab(a * a * lin(_ones_like(sx), w * w) + b * b, eps)

        def h_of(x):
            return _sg(c) * a * a * lin(x, w * w)
    elif name == "flat":
        ones = jnp.ones_like(w)
        c = 1.0 / _stab(jnp.broadcast_to(lin(_ones_like(sx), ones), z.shape), eps)

        def h_of(x):
            return _sg(c) * lin(x, ones)
    elif name == "pass":
        return _relevant(z, jnp.broadcast_to(x, z.shape)) if x.shape == z.shape else z
    else:  # pragma: no cover - Rule objects come from the constructors above
        raise ValueError(f"unknown rule {name!r}")
    if not custom:
        return _relevant(z, jnp.broadcast_to(h_of(x), z.shape))
    return _relevant_linear(z, lambda u: jnp.broadcast_to(h_of(u), z.shape), x)


def _known_sign(a):
    """+1 or -1 when the concrete ``a`` has that sign everywhere, else 0."""
    if isinstance(a, jax.core.Tracer):
        return 0
    a = np.asarray(a)
    return 1 if np.all(a > 0) else -1 if np.all(a < 0) else 0


def _ones_like(x):
    # Not a constant to XLA: its convolutions with constant weights would be folded at compile.
    return jax.lax.optimization_barrier(jnp.ones_like(x))


def _bound(enc, x):
    if isinstance(enc, float):
        return jnp.full_like(x, enc)
    shape, flat_values = enc
    return jnp.broadcast_to(jnp.asarray(flat_values, x.dtype).reshape(shape), x.shape)


def _close(v, state: _State):
    """An input-dependent value as a plain array (closing a pending layer with its rule)."""
    if isinstance(v, Layer):
        if v.kind == "input":
            # An element-wise affine map of the model's input (a standardisation
            # ``(x - mu) / sigma``): relevance passes, i.e. the relevance is the standardised
            # input's, as zennit's with the standardisation outside the model. The norm rule
            # ``R_x = x R_z / z`` divides by ``z ~ 0`` where ``x ~ mu`` (flat, z+ first layers).
            z = v.a * v.lin(_sg(v.x), v.w) + v.b
            return _relevant(z, jnp.broadcast_to(v.x, z.shape))
        if v.kind == "sum":
            rule = norm(state.comp.stabilizer)
        else:
            rule = state.comp.rule_for(v.index, v.kind, state.count)
        return _apply_rule(v, rule, custom=not state.in_branch)
    if isinstance(v, Rel):
        return v.value
    return v


# --- the interpreter rule ----------------------------------------------------------------------

_STRUCTURAL = frozenset(
    {
        "reshape",
        "broadcast_in_dim",
        "transpose",
        "squeeze",
        "expand_dims",
        "slice",
        "concatenate",
        "pad",
        "convert_element_type",
        "copy",
        "copy_p",
        "rev",
        "reduce_precision",
        "split",
        "tile",
        "gather",
        "dynamic_slice",
        "dynamic_update_slice",
        "select_n",
        "sharding_constraint",
        "optimization_barrier",
        "reduce_max",
        "reduce_min",
        "reduce_window_max",
        "reduce_window_min",
        "argmax",
        "argmin",
        "sort",
        "scatter-add",
        "scatter_add",
        "stack",
    }
)
_RESHAPES = frozenset({"reshape", "broadcast_in_dim", "transpose", "squeeze", "expand_dims"})
_SUMS = frozenset({"reduce_sum", "reduce_window_sum", "cumsum"})
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
        "atan",
        "sinh",
        "cosh",
        "asinh",
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
        "cbrt",
        "max",
        "min",
        "clamp",
        "neg",
        "erf_inv",
    }
)
_HELD = frozenset({"rsqrt", "sqrt"})  # layer norm's 1/std: a constant (identity rule)
_FOLDABLE = frozenset({"add", "sub", "mul", "div", "neg", "convert_element_type", "add_any"})


def _unsupported(eqn, why):
    return UnsupportedPrimitiveError(
        f"no LRP rule (lrp) for the primitive '{eqn.primitive.name}' {why}; equation: "
        f"{describe_equation(eqn)}"
    )


_KEEPS_SIGN = frozenset(
    {
        "reshape",
        "broadcast_in_dim",
        "transpose",
        "squeeze",
        "expand_dims",
        "slice",
        "rev",
        "copy",
        "copy_p",
        "reduce_max",
        "reduce_window_max",
        "concatenate",
        "gather",
    }
)


def _is_zero(v) -> bool:
    a = np.asarray(v) if not isinstance(v, jax.core.Tracer) else None
    return a is not None and a.size == 1 and float(a.reshape(())) == 0.0


def _is_relu(jaxpr) -> bool:
    """Whether a call body is ``max(x, 0)`` (``jax.nn.relu``)."""
    if len(jaxpr.eqns) != 1:
        return False
    (eqn,) = jaxpr.eqns
    for sub in sub_jaxprs(eqn):  # jit / custom_jvp wrappers
        return _is_relu(getattr(sub, "jaxpr", sub))
    return eqn.primitive.name == "max" and any(is_zero_literal(v) for v in eqn.invars)


def _tag(v):
    return v.tag[0] if isinstance(v, Rel) and v.tag is not None else None


def _is_float(a) -> bool:
    return jnp.issubdtype(jnp.result_type(a), jnp.inexact)


def _body_primitives(jaxpr, acc):
    for e in jaxpr.eqns:
        acc.add(e.primitive.name)
        for p in e.params.values():
            inner = getattr(p, "jaxpr", None)
            if inner is not None and hasattr(inner, "eqns"):
                _body_primitives(inner, acc)
            elif hasattr(p, "eqns"):
                _body_primitives(p, acc)
    return acc


_EW_BODY = (
    _ELEMENTWISE
    | _HELD
    | {
        "mul",
        "add",
        "sub",
        "div",
        "select_n",
        "gt",
        "ge",
        "lt",
        "le",
        "eq",
        "ne",
        "and",
        "or",
        "not",
        "broadcast_in_dim",
        "convert_element_type",
        "stop_gradient",
        "pjit",
        "jit",
        "custom_jvp_call",
        "is_finite",
        "log",
        "logistic",
        "copy",
        "copy_p",
    }
)


def _call_kind(eqn, inner, invals) -> str:
    """``"elementwise"`` (one varying input shaped as the one output, an element-wise body),
    ``"softmax"`` or ``"inline"``."""
    varying = [i for i, v in enumerate(invals) if isinstance(v, (Rel, Layer))]
    outs = eqn.outvars
    if len(varying) != 1 or len(outs) != 1:
        return "inline"
    shape = outs[0].aval.shape
    if tuple(eqn.invars[varying[0]].aval.shape) != tuple(shape):
        return "inline"
    prims = _body_primitives(inner.jaxpr, set())
    if {"exp", "reduce_sum", "div"} <= prims and prims & {"reduce_max", "stop_gradient"}:
        return "softmax"
    if {"exp", "reduce_sum", "log", "stop_gradient"} <= prims:
        # jax.nn.log_softmax: the same rule as softmax, R_in = x J^T (R / y) (gradient x
        # input at the logits, as lxt); its ``- log sum exp`` read as a sum would give the
        # logits' relevance by the norm rule of a near-cancelling difference.
        return "log_softmax"
    if prims <= _EW_BODY:
        shapes_ok = all(
            tuple(getattr(v.aval, "shape", ())) in (tuple(shape), ())
            for e in inner.jaxpr.eqns
            for v in e.outvars
        )
        if shapes_ok:
            return "elementwise"
    return "inline"


def lrp_rule(eqn, invals, *, state: _State):
    """The LRP interpreter rule for one equation (see the module docstring)."""
    if eqn.primitive.name == "cond":
        return _cond(eqn, invals, state)
    plain = [v.value if isinstance(v, Dep) else v for v in invals]
    outs = _lrp_rule(eqn, plain, invals, state)
    if any(isinstance(v, (Rel, Layer, Dep)) for v in invals):
        # Outputs computed from the input that carry no relevance stay marked as such.
        outs = [o if isinstance(o, (Rel, Layer, Dep)) else Dep(o) for o in outs]
    return outs


def _cond(eqn, invals, state: _State):
    """``cond``/``switch`` whose branch index does not depend on the input: a constant index
    picks its branch while tracing (re-interpreted in place, as if the model had no ``cond``);
    an index computed from parameters re-interprets every branch inside ``lax.switch`` (their
    outputs closed with their rules, each branch numbering its layers from the same index)."""
    index, ops = invals[0], list(invals[1:])
    plain = [v.value if isinstance(v, Dep) else v for v in invals]
    if not any(isinstance(v, (Rel, Layer)) for v in ops):  # no relevance flows through it
        outs = bind_eqn(eqn, plain)
        return [Dep(o) for o in outs] if any(isinstance(v, Dep) for v in invals) else outs
    if isinstance(index, (Rel, Layer, Dep)):
        raise _unsupported(
            eqn,
            "with a branch index that depends on the input (relevance is not routed through "
            "data-dependent control flow); write it with jnp.where",
        )
    branches = eqn.params["branches"]
    rule = functools.partial(lrp_rule, state=state)

    def interpret(closed):
        return eval_inlined(eqn, closed, ops, rule)

    if not isinstance(index, jax.core.Tracer):
        # lax.switch clamps its index; so does this.
        return interpret(branches[int(np.clip(np.asarray(index), 0, len(branches) - 1))])
    start, kinds, in_branch = state.next_index, list(state.kinds), state.in_branch
    ends, marks = [], []

    def branch(closed):
        def run(_):
            state.next_index, state.kinds, state.in_branch = start, list(kinds), True
            outs = interpret(closed)
            ends.append((state.next_index, state.kinds))
            marks.append([Rel if isinstance(o, (Rel, Layer)) else type(o) for o in outs])
            return [
                jnp.broadcast_to(
                    jnp.asarray(o.value if isinstance(o, Dep) else _close(o, state), v.aval.dtype),
                    v.aval.shape,
                )
                for o, v in zip(outs, eqn.outvars, strict=True)
            ]

        return run

    try:
        outs = jax.lax.switch(index, [branch(b) for b in branches], None)
    finally:
        state.in_branch = in_branch
    state.next_index, state.kinds = max(ends, key=lambda e: e[0])
    wrapped = []
    for o, kinds_of in zip(outs, zip(*marks, strict=True), strict=True):
        if Rel in kinds_of:
            o = Rel(o)
        elif Dep in kinds_of:
            o = Dep(o)
        wrapped.append(o)
    return wrapped


def _is_concrete(v) -> bool:
    return not isinstance(v, (jax.core.Tracer, Rel, Layer, Dep))


def _lrp_rule(eqn, invals, originals, state: _State):
    varying = [i for i, v in enumerate(invals) if isinstance(v, (Rel, Layer))]
    if not varying:
        outs = eqn.outvars
        if (
            all(_is_concrete(v) for v in invals)
            and all(v.aval.shape == () and not _is_float(v.aval) for v in outs)
            and inlinable_jaxpr(eqn) is None
        ):
            # Scalar integer/boolean constants (a cond's branch index from a constant flag):
            # computed now, so that the branch is picked while tracing. Exact, no float math.
            with jax.ensure_compile_time_eval():
                return bind_eqn(eqn, invals)
        return bind_eqn(eqn, invals)
    name = eqn.primitive.name
    rule = functools.partial(lrp_rule, state=state)
    inner = inlinable_jaxpr(eqn)
    if inner is not None:
        kind = _call_kind(eqn, inner, invals)
        if kind == "inline":
            return eval_inlined(eqn, inner, originals, rule)
        vals = [_close(v, state) for v in invals]
        y = bind_eqn(eqn, [_sg(v) for v in vals])[0]
        (i,) = varying
        x = vals[i]
        if kind == "elementwise":
            return [Rel(_relevant(y, x), ("nonneg",) if _is_relu(inner.jaxpr) else None)]

        def f(u):
            return bind_eqn(eqn, [u if k == i else _sg(v) for k, v in enumerate(vals)])[0]

        # Softmax rule: R_in = x J^T (R / y) = x (R - y sum R); log-softmax: x (R/y - p sum R/y).
        c = 1.0 / _stab(y, state.comp.stabilizer)
        h = _sg(c) * jax.jvp(f, (_sg(x),), (_sg(x) * x,))[1]
        return [Rel(_relevant(y, h))]
    if name == "stop_gradient":
        return [_sg(_close(invals[0], state))]
    if name in ("while", "scan"):
        raise _unsupported(
            eqn, "(a loop over values that depend on the input is not re-interpreted; unroll it)"
        )
    if not all(_is_float(v.aval) for v in eqn.outvars):
        # Comparisons, argmax, integer casts: constants (relevance does not flow through them).
        return bind_eqn(eqn, [_sg(_close(v, state)) for v in invals])
    out_shape = tuple(eqn.outvars[0].aval.shape)

    if name in ("add", "sub") and len(varying) == 1:
        k = varying[0]
        if isinstance(originals[1 - k], Dep):
            # A shift by a value computed from the input (softmax's and log-sum-exp's
            # ``- stop_gradient(max)``) is no bias: folded into the layer before it, the
            # target logit's shifted value is 0 and the epsilon rule divides by epsilon.
            # Relevance passes it (AttnLRP's identity rule); the softmax rule keeps the
            # unshifted value.
            x = _close(invals[k], state)
            y = bind_eqn(eqn, [_sg(_close(v, state)) for v in invals])[0]
            src = _source(invals[k], x)
            return [Rel(_relevant(y, jnp.broadcast_to(x, y.shape)), ("shift", src))]

    # A pending layer followed by an element-wise affine op with constants: folded into it.
    if name in _FOLDABLE and len(varying) == 1 and isinstance(invals[varying[0]], Layer):
        layer = invals[varying[0]]
        others = [v for k, v in enumerate(invals) if k != varying[0]]
        consts_ok = (
            all(np.broadcast_shapes(np.shape(c), out_shape) == out_shape for c in others)
            and out_shape == layer.shape
        )
        if consts_ok:
            folded = _fold(name, layer, invals, varying[0], eqn)
            if folded is not None and name in ("add", "sub") and varying[0] == 0:
                # A shift (softmax's ``- max``): the softmax rule goes to the unshifted value.
                folded = folded._replace(src=_unshifted(layer, state))
            if folded is not None:
                return [folded]

    if name in _FOLDABLE and len(varying) == 1 and name != "convert_element_type":
        # An element-wise affine map with constants (layer norm's scale and shift, an input
        # standardisation): a layer of its own, closed with the norm rule as lxt's
        # gradient x input does, unless it folds on into a following op.
        k = varying[0]
        consts_ok = all(
            np.broadcast_shapes(np.shape(c), out_shape) == out_shape
            for j, c in enumerate(invals)
            if j != k
        )
        if consts_ok:
            x = _close(invals[k], state)

            def ident(u, _w, shape=out_shape):
                return jnp.broadcast_to(u, shape)

            src = _source(invals[k], x) if name in ("add", "sub") and k == 0 else None
            kind = "input" if _tag(invals[k]) == "input" else "sum"
            start = Layer(x, ident, None, 1.0, 0.0, kind, -1, out_shape, src)
            folded = _fold(name, start, invals, k, eqn)
            if folded is not None:
                return [folded._replace(src=src)]
    if name in ("dot_general", "conv_general_dilated") and len(varying) == 1:
        i = varying[0]
        x = _close(invals[i], state)
        w = invals[1 - i]

        def lin(u, weight, eqn=eqn, i=i):
            return bind_eqn(eqn, [u, weight] if i == 0 else [weight, u])[0]

        kind = "dense" if name == "dot_general" else "conv"
        index = state.next_index
        state.next_index += 1
        state.kinds.append(kind)
        nonneg = _tag(invals[i]) == "nonneg"
        return [Layer(x, lin, w, 1.0, 0.0, kind, index, out_shape, None, nonneg)]
    if name == "reduce_sum" and _tag(invals[0]) == "exp":
        x = invals[0].value
        y = bind_eqn(eqn, [_sg(x)])[0]
        h = _sg(1.0 / _stab(y, state.comp.stabilizer)) * bind_eqn(eqn, [_sg(x) * x])[0]
        return [Rel(_relevant(y, h), ("sumexp", x, tuple(eqn.params["axes"]), invals[0].tag[1]))]
    if name == "broadcast_in_dim" and _tag(invals[0]) == "sumexp":
        return [Rel(bind_eqn(eqn, [invals[0].value] + list(invals[1:]))[0], invals[0].tag)]
    if name in _SUMS and len(varying) == 1:
        x = _close(invals[0], state)

        def lin(u, _w, eqn=eqn):
            return bind_eqn(eqn, [u] + list(invals[1:]))[0]

        return [Layer(x, lin, None, 1.0, 0.0, "sum", -1, out_shape)]

    vals = [_close(v, state) for v in invals]
    y = bind_eqn(eqn, [_sg(v) for v in vals])[0]
    eps = state.comp.stabilizer
    if name in ("add", "sub", "add_any") and len(varying) == 2:
        # Sum of two inputs: proportional (zennit's Sum layer with the Norm rule).
        args = [_sg(v) * v if k in varying else jnp.zeros_like(v) for k, v in enumerate(vals)]
        h = _sg(1.0 / _stab(y, eps)) * bind_eqn(eqn, args)[0]
        return [Rel(_relevant(y, jnp.broadcast_to(h, y.shape)))]
    if name in ("mul", "dot_general", "conv_general_dilated") and len(varying) == 2:
        # AttnLRP's uniform rule: each factor gets half, x_k dB/dx_k^T (R / z) / 2.
        c = _sg(1.0 / _stab(y, eps))
        h = 0.0
        for k in varying:
            args = [_sg(v) * v if j == k else _sg(v) for j, v in enumerate(vals)]
            h = h + 0.5 * c * bind_eqn(eqn, args)[0]
        return [Rel(_relevant(y, h))]
    if name in _HELD:
        return [_sg(y)]
    if name == "div" and 1 in varying:
        num, den = invals
        if (
            _tag(num) == "exp"
            and _tag(den) == "sumexp"
            and den.tag[1] is num.value
            and tuple(np.shape(den.tag[3])) == tuple(y.shape)
        ):
            return [Rel(_softmax_rule(y, den.tag[3], den.tag[2], eps))]
        if 0 in varying:  # x / (input-dependent): the denominator held constant
            return [Rel(_relevant(y, jnp.broadcast_to(vals[0], y.shape)))]
        return [Rel(_relevant(y, jnp.broadcast_to(vals[1], y.shape)))]
    if name in _ELEMENTWISE and len(varying) == 1:
        # Element-wise nonlinearities: relevance passes (zennit's Pass, AttnLRP's identity).
        k = varying[0]
        tag = None
        if name == "exp" and vals[k].shape == y.shape:
            tag = ("exp", _source(invals[k], vals[k]))
        elif name == "max" and any(_is_zero(v) for v in invals if not isinstance(v, (Rel, Layer))):
            tag = ("nonneg",)
        return [Rel(_relevant(y, jnp.broadcast_to(vals[k], y.shape)), tag)]
    if name in _FOLDABLE:  # x / (constant) and friends not folded above: relevance passes
        k = varying[0]
        return [Rel(_relevant(y, jnp.broadcast_to(vals[k], y.shape)))]
    if name in _STRUCTURAL or name in _ELEMENTWISE:
        # Routing (reshapes, slices, where, max pooling): the gradient.
        outs = bind_eqn(eqn, vals)
        keeps = name in _KEEPS_SIGN and all(_tag(invals[k]) == "nonneg" for k in varying)
        tag = ("nonneg",) if keeps else None
        if name in _RESHAPES and all(_tag(invals[k]) == "input" for k in varying):
            tag = ("input",)
        return [Rel(o, tag) if _is_float(o) else o for o in outs]
    raise _unsupported(eqn, "on a value that depends on the input")


def _softmax_rule(y, a, axes, eps):
    """AttnLRP's softmax rule ``R_a = a (R - y sum R)``: ``a J^T (R / y)`` as a gradient."""

    def softmax(u):
        return jax.nn.softmax(u, axis=axes)

    # Masked logits (a huge negative number, y exactly 0) would overflow a * a to inf; their
    # terms y_i a_i vanish in the rule anyway, so the tangent drops them exactly.
    w = jnp.where(_sg(y) > 0, _sg(a), jnp.zeros((), a.dtype))
    h = _sg(1.0 / _stab(y, eps)) * jax.jvp(softmax, (_sg(a),), (w * a,))[1]
    return _relevant(y, h)


def _source(v, value):
    """The value a shifted input ``a - c`` came from (for the softmax pattern)."""
    if isinstance(v, Layer) and v.src is not None:
        return v.src
    if _tag(v) == "shift":
        return v.tag[1]
    return value


def _unshifted(layer, state):
    return layer.src if layer.src is not None else _close(layer, state)


def _fold(name, layer: Layer, invals, i, eqn):
    """``layer`` composed with the element-wise affine ``eqn`` (constants elsewhere)."""
    a, b = layer.a, layer.b
    if name == "convert_element_type":
        if not _is_float(eqn.outvars[0].aval):
            return None
        return layer
    if name == "neg":
        return layer._replace(a=-a, b=-b, src=None)
    (c,) = [v for k, v in enumerate(invals) if k != i]
    if name in ("add", "add_any"):
        return layer._replace(b=b + c)
    if name == "sub":
        return layer._replace(b=b - c) if i == 0 else layer._replace(a=-a, b=c - b, src=None)
    if name == "mul":
        return layer._replace(a=a * c, b=b * c, src=None)
    if name == "div" and i == 0:
        return layer._replace(a=a / c, b=b / c, src=None)
    return None


def lrp_relevance(fn, x, cotangent, comp: Composite, *, model_input: bool = False):
    """Relevance of each entry of ``x`` for ``fn(x)`` weighted by ``cotangent``.

    Args:
        fn: a JAX function of one array.
        x: the input.
        cotangent: the output relevance, shaped like ``fn(x)`` (e.g. one-hot times the logit),
            or a function of ``fn(x)`` returning it (read off the re-interpreted forward pass,
            so the model is not run twice).
        comp: the :class:`Composite` of rules.
        model_input: ``x`` is the model's raw input: an element-wise affine map of it with
            constants (a standardisation ``(x - mu) / sigma``) gets ``comp.input_affine``
            (``"pass"``: the result is the standardised input's relevance, zennit's with the
            standardisation outside the model). Otherwise (an intermediate layer: token
            embeddings plus positions) such a map gets the norm rule, as everywhere else.

    Returns:
        ``(relevance shaped like x, fn(x))``.

    Example:
        >>> import jax.numpy as jnp
        >>> W = jnp.array([[1.0], [3.0]])
        >>> r, y = lrp_relevance(lambda v: v @ W, jnp.array([[1.0, 1.0]]), jnp.array([[4.0]]),
        ...                      composite("epsilon", epsilon=0.0))
        >>> r.tolist()
        [[1.0, 3.0]]
    """
    closed = jax.make_jaxpr(fn)(x)
    count = _count_layers(closed, x, comp)

    def run(v):
        state = _State(comp, count)
        passes = model_input and comp.input_affine == "pass"
        start = Rel(v, ("input",) if passes else None)
        (out,) = eval_jaxpr(
            closed.jaxpr, closed.consts, [start], functools.partial(lrp_rule, state=state)
        )
        if isinstance(out, (Rel, Layer)):
            return _close(out, state)
        return out.value if isinstance(out, Dep) else out

    y, vjp = jax.vjp(run, x)
    return vjp(cotangent(y) if callable(cotangent) else cotangent)[0], y


def _count_layers(closed, x, comp) -> int | None:
    if not any(i < 0 for i, _ in comp.layers):
        return None
    state = _State(comp, None)

    def run(v):
        eval_jaxpr(closed.jaxpr, closed.consts, [Rel(v)], functools.partial(lrp_rule, state=state))
        return 0.0

    jax.eval_shape(run, x)
    return state.next_index


def layer_kinds(fn, x, comp: Composite | None = None) -> list:
    """The linear layers of ``fn`` in index order: ``"dense"`` or ``"conv"`` each.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda v: jnp.tanh(v @ jnp.ones((2, 3))) @ jnp.ones((3, 1))
        >>> layer_kinds(f, jnp.ones((1, 2)))
        ['dense', 'dense']
    """
    comp = comp or composite("epsilon")
    closed = jax.make_jaxpr(fn)(x)
    state = _State(comp, None)

    def run(v):
        eval_jaxpr(closed.jaxpr, closed.consts, [Rel(v)], functools.partial(lrp_rule, state=state))
        return 0.0

    jax.eval_shape(run, x)
    return list(state.kinds)
