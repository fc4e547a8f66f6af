"""DeepLIFT with one reference per instance: the rescale and RevealCancel rules.

DeepLIFT (Shrikumar, Greenside & Kundaje, ICML 2017) explains ``f(x) - f(x')`` for a reference
(baseline) ``x'`` with multipliers propagated backwards through the network: linear operations
keep their weights, and each nonlinearity's derivative is replaced by a ratio of differences
(rescale: ``Δy / Δx``; RevealCancel: the positive and negative parts of ``Δx`` mapped apart).
Every equation splits its output difference exactly, so the attributions add up to
``f(x) - f(x')`` (summation-to-delta). The model's jaxpr is re-interpreted with the rules of
:mod:`xaijax.core.propagation`, the same as :func:`xaijax.deep_shap` (DeepLIFT rescale averaged
over a background): ``deep_shap(f, x, background=x'[None])`` equals
``deep_lift(f, x, x', rule="rescale")``.
"""

# jaxtyping shape strings such as "*n m" are not Python expressions:
# ruff: noqa: F722, UP037

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import ArrayLike, Float

from xaijax.core import contract
from xaijax.core.batching import check_mesh, map_instances, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.model import float_dtype
from xaijax.core.propagation import DEEPLIFT_RULES, MAXIMA_RULES, deeplift_attributions
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets, check_target_fn, resolve_targets

__all__ = ["deep_lift"]


@functools.partial(
    jax.jit, static_argnames=("model", "targeted", "rule", "maxima", "batch_size", "mesh")
)
def _deep_lift(model, params, X, R, targets, *, targeted, rule, maxima, batch_size, mesh):
    def local(instances, params):
        def one(args):
            x, r, t = args
            values, y, y_ref = deeplift_attributions(
                model, params, x[None], r[None], t if targeted else None, rule=rule, maxima=maxima
            )
            base = y_ref[0][t] if targeted else y_ref[0]
            ok = jnp.all(jnp.isfinite(y)) & jnp.all(jnp.isfinite(y_ref))
            return values[0], base, ok

        return map_instances(one, instances, 1, batch_size)

    return over_instances(local, (X, R, targets), params, mesh=mesh)


@explainer(kind="additive", needs_jax=True)
def deep_lift(
    f: Callable,
    X: Float[ArrayLike, "*shape"],
    baseline: Float[ArrayLike, "..."] | float | None = None,
    *,
    targets: Targets = None,
    rule: str = "rescale",
    maxima: str = "shapley",
    batch_size: int | None = None,
    mesh: Mesh | None = None,
) -> Explanation:
    """DeepLIFT: attributions of ``f(x) - f(x')`` by propagated difference multipliers.

    The model's jaxpr is re-interpreted (no module registry: a rule is attached to each
    primitive, so any JAX function or NNX module works) with multipliers that are exact through
    linear operations and, through nonlinearities, follow ``rule``:

    * ``"rescale"``: ``Δy / Δx`` (the derivative at the midpoint where ``Δx ≈ 0``); products of
      two inputs, maxima (Max SHAP for max pooling) and ``where`` on the input use the rules of
      :mod:`xaijax.core.propagation`;
    * ``"reveal_cancel"``: the positive and negative terms of each linear map's output
      difference are mapped through the next nonlinearity apart,
      ``Δy⁺ = ½[f(r + Δx⁺) − f(r)] + ½[f(r + Δx⁻ + Δx⁺) − f(r + Δx⁻)]`` and symmetrically
      ``Δy⁻``, so inputs that cancel (``min(a, b)`` via a ReLU) share the credit.

    Either way ``values.sum() + base_values == f(x)`` to float rounding (summation-to-delta).

    Args:
        f: the model ``f(X: (n, *input_shape)) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX module (split in eval mode) or an Equinox
            module. Host (NumPy) models cannot be re-interpreted.
        X: one instance ``input_shape`` or a batch ``(n, *input_shape)``, decided by the
            model's input shape.
        baseline: the reference ``x'``, broadcast as in :func:`~xaijax.integrated_gradients`:
            zeros by default, a number, one input (``input_shape`` or ``(1, *input_shape)``) or
            one per instance ``(n, *input_shape)``; finite.
        targets: ``None`` (every output: values get a trailing ``K`` axis), an int or ``(n,)``
            ints (one backward pass), or a callable on the model outputs (re-interpreted with
            the model).
        rule: ``"rescale"`` or ``"reveal_cancel"``.
        maxima: the rule of ``reduce_max`` and max pooling: ``"shapley"`` (Max SHAP: the exact
            Shapley values of each window's max between ``x`` and ``x'``, as in
            :func:`~xaijax.deep_shap`) or ``"routed"`` (captum's ``DeepLift``: of
            ``Δ = max(x) - max(x')``, ``max(max(x), max(x')) - max(x')`` goes to the argmax at
            ``x``, the rest to the argmax at ``x'``). Both add up to ``Δ``.
        batch_size: most instances pushed through the model at once; ``None`` picks a default.
        mesh: optional :class:`jax.sharding.Mesh` (e.g. :func:`~xaijax.instance_mesh`) to shard
            the instances over; the values equal the one-device call's.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"additive"`` with ``values`` shaped like ``X``
        (``(n, *input_shape, K)`` for every output) and ``base_values = f(x')`` ``(n,)`` or
        ``(n, K)``; no leading ``n`` for one instance.

    Raises:
        ValueError: bad shapes, NaN/inf inputs or baselines, an unknown ``rule``, or a model
            that returns NaN or inf at an instance or its baseline.
        TypeError: a host model, which cannot be traced.
        UnsupportedPrimitiveError: ``f`` uses a primitive with no DeepLIFT rule (named, with
            its equation).

    References:
        Shrikumar, Greenside & Kundaje, "Learning Important Features Through Propagating
        Activation Differences", ICML 2017.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> f = lambda X: X[:, 0] - jax.nn.relu(X[:, 0] - X[:, 1])  # min(a, b)
        >>> deep_lift(f, np.array([3.0, 1.0])).values.tolist()  # rescale: all to b
        [0.0, 1.0]
        >>> deep_lift(f, np.array([3.0, 1.0]), rule="reveal_cancel").values.round(4).tolist()
        [0.5, 0.5]
    """
    rule = contract.check_choice("rule", rule, DEEPLIFT_RULES)
    maxima = contract.check_choice("maxima", maxima, MAXIMA_RULES)
    X = contract.as_float_array("X", X, dtype=np.dtype(float_dtype()))
    X, single, model, params = contract.split_instances_by_model(f, X)
    if model.kind == "host":
        raise TypeError(
            "f must be a JAX function, (apply_fn, params) pair or NNX module for deep_lift (its "
            "jaxpr is re-interpreted); a host/NumPy model cannot be traced"
        )
    R = contract.baseline_rows(baseline, X)
    n = X.shape[0]
    spec = resolve_targets(targets, n, model.num_outputs)
    if spec.fn is not None:
        check_target_fn(spec.fn, jax.ShapeDtypeStruct((2,) + model.output_shape, X.dtype))
        model = model.scored_by(spec.fn)
    batch_size = contract.resolve_batch_size(batch_size, X.shape[1:], X.dtype)
    targeted = spec.indices is not None and bool(model.output_shape)
    values, base, finite = contract.call(
        _deep_lift,
        model,
        params,
        X,
        R,
        spec.indices if targeted else np.zeros(n, np.int32),
        targeted=targeted,
        rule=rule,
        maxima=maxima,
        batch_size=batch_size,
        mesh=check_mesh(mesh),
    )
    K = model.num_outputs if spec.is_default else None
    return contract.pack(
        values,
        base,
        X,
        single=single,
        kind="additive",
        method="deep_lift",
        output_names=None if K is None else tuple(str(k) for k in range(K)),
        finite=finite,
    )
