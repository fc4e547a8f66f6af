"""Re-evaluating a traced jaxpr equation by equation, with per-primitive overrides.

Explainers that change how a model's primitives behave (guided backpropagation's ReLU, DeepLIFT's
rescale rule) do it without asking users to rewrite their model: they trace the model to a jaxpr
and evaluate it again, handing every equation to a ``rule`` that either binds the primitive as is
(:func:`bind_eqn`) or substitutes something else. This module holds that loop once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from jax.extend import core as jcore

__all__ = [
    "eval_jaxpr",
    "bind_eqn",
    "literal_value",
    "is_zero_literal",
    "sub_jaxprs",
    "inlinable_jaxpr",
    "describe_equation",
    "source_line",
]

# The parameter holding the body of a call-like primitive differs across primitives and JAX
# versions (``jit``/``pjit``: "jaxpr"; ``custom_jvp_call``: "call_jaxpr"; old ``custom_vjp``:
# "fun_jaxpr").
_BODY_PARAMS = ("jaxpr", "call_jaxpr", "fun_jaxpr")

Rule = Callable[[Any, list], Sequence[Any]]


def eval_jaxpr(jaxpr, consts: Sequence[Any], args: Sequence[Any], rule: Rule) -> list:
    """Evaluate ``jaxpr`` on ``args``, computing each equation's outputs as ``rule(eqn, invals)``.

    Args:
        jaxpr: an open ``Jaxpr`` (``closed_jaxpr.jaxpr``).
        consts: values of its ``constvars``.
        args: values of its ``invars``.
        rule: ``rule(eqn, invals) -> outputs`` (a sequence, one per ``eqn.outvars``); any value
            type the rule understands may flow through the environment. Literals are read as
            their (NumPy/Python) values.

    Returns:
        The values of ``jaxpr.outvars``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> closed = jax.make_jaxpr(lambda x: jnp.sin(x) * 2.0)(1.0)
        >>> eval_jaxpr(closed.jaxpr, closed.consts, [0.0], bind_eqn)
        [Array(0., dtype=float32, weak_type=True)]
    """
    env: dict = {}

    def read(v):
        return literal_value(v) if isinstance(v, jcore.Literal) else env[v]

    for v, val in zip(jaxpr.constvars, consts, strict=True):
        env[v] = val
    for v, val in zip(jaxpr.invars, args, strict=True):
        env[v] = val
    for eqn in jaxpr.eqns:
        outs = rule(eqn, [read(v) for v in eqn.invars])
        for v, val in zip(eqn.outvars, outs, strict=True):
            if not isinstance(v, jcore.DropVar):
                env[v] = val
    return [read(v) for v in jaxpr.outvars]


def bind_eqn(eqn, invals: Sequence[Any]) -> list:
    """Bind ``eqn``'s primitive with its own parameters to ``invals``; returns a list of outputs."""
    params = eqn.primitive.get_bind_params(eqn.params)
    # JAX < 0.7 returns (subfuns, params); newer versions return the params alone.
    subfuns = []
    if isinstance(params, tuple):
        subfuns, params = params
    outs = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(outs) if eqn.primitive.multiple_results else [outs]


def literal_value(v) -> Any:
    """The value of a jaxpr ``Literal``."""
    return v.val


def sub_jaxprs(eqn) -> Iterator[Any]:
    """The (closed) jaxprs in ``eqn``'s parameters that are bodies of a call."""
    for name in _BODY_PARAMS:
        sub = eqn.params.get(name)
        if sub is not None and hasattr(getattr(sub, "jaxpr", sub), "eqns"):
            yield sub


def inlinable_jaxpr(eqn):
    """The closed body of a call that evaluates its body once on its own inputs, else ``None``.

    ``jit``/``pjit`` calls and ``custom_jvp``/``custom_vjp`` calls (whose primal body computes
    the forward values) qualify; loops and conditionals do not.
    """
    name = eqn.primitive.name
    if name in (
        "jit",
        "pjit",
        "closed_call",
        "core_call",
        "remat",
        "checkpoint",
    ) or name.startswith(("custom_jvp_call", "custom_vjp_call")):
        for sub in sub_jaxprs(eqn):
            if hasattr(sub, "consts"):
                return sub
            return jcore.ClosedJaxpr(sub, ())
    return None


def is_zero_literal(v) -> bool:
    """Whether jaxpr atom ``v`` is a literal scalar zero."""
    if not isinstance(v, jcore.Literal):
        return False
    val = np.asarray(literal_value(v))
    return val.size == 1 and float(val.reshape(())) == 0.0


def source_line(eqn) -> str:
    """The user source line (``file:line (function)``) that emitted ``eqn``, or ``""``.

    Inside a jitted library function (``jnp.sort``, ``jax.nn.elu``) only the library frames are
    kept: the user line is on the enclosing call's equation.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> closed = jax.make_jaxpr(lambda x: x * 2.0)(1.0)
        >>> "(<lambda>)" in source_line(closed.jaxpr.eqns[0])
        True
    """
    try:  # JAX keeps the user frame of each equation; its helper is not public API.
        from jax._src import source_info_util

        return source_info_util.summarize(eqn.source_info)
    except Exception:  # pragma: no cover - a JAX without it: no line
        return ""


def describe_equation(eqn) -> str:
    """``eqn`` as text with the user source line that emitted it, for error messages.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> closed = jax.make_jaxpr(lambda x: jnp.sin(x))(1.0)
        >>> " = sin " in describe_equation(closed.jaxpr.eqns[0])
        True
    """
    text = str(eqn).strip()
    where = source_line(eqn)
    return f"{text}  [at {where}]" if where else text
