"""Deep SHAP and Max SHAP: DeepLIFT's rules on any JAX function, averaged over references.

DeepLIFT (Shrikumar et al. 2017) explains ``f(x) - f(r)`` for a reference ``r`` by propagating
multipliers whose attributions ``(x - r) * m`` add up to ``f(x) - f(r)`` exactly
(summation-to-delta). Deep SHAP (Lundberg & Lee 2017) averages them over a background of
references, so they add up to ``f(x) - E[f(r)]`` like Shapley values. The rules (one per
primitive, on the model's traced jaxpr) live in :mod:`xaijax.core.propagation`, shared with
:func:`xaijax.deep_lift` (one reference): ``deep_shap`` with a one-row background equals
``deep_lift(..., rule="rescale")`` with that row as the baseline.
"""

# jaxtyping shape strings such as "*n m" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import ArrayLike, Float

from xaijax.core import contract
from xaijax.core.batching import (
    balanced_chunk,
    check_mesh,
    map_instances,
    map_row_chunks,
    over_instances,
)
from xaijax.core.explanation import Explanation
from xaijax.core.masking import Background
from xaijax.core.propagation import (
    Pair,
    UnsupportedPrimitiveError,
    deeplift_attributions,
    deeplift_multipliers,
    max_shapley_pairs,
)
from xaijax.core.registry import explainer
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

            phi = map_row_chunks(chunk, B, balanced_chunk(B, batch_size))
            return weights @ phi, weights @ background.max(axis=1)

        return map_instances(one, X, B, batch_size)

    return over_instances(local, X, (background, weights), mesh=mesh)


@functools.partial(jax.jit, static_argnames=("model", "targeted", "batch_size", "mesh"))
def _deep(model, params, X, targets, background, weights, *, targeted, batch_size, mesh):
    B = background.shape[0]

    def local(instances, shared):
        params, background, weights = shared

        def one(args):
            x, t = args

            def chunk(idx):
                refs = background[idx]
                values, y, y_ref = deeplift_attributions(
                    model,
                    params,
                    jnp.broadcast_to(x[None], refs.shape),
                    refs,
                    t if targeted else None,
                )
                ok = jnp.isfinite(y).reshape(y.shape[0], -1).all(axis=1)
                ok = ok & jnp.isfinite(y_ref).reshape(y.shape[0], -1).all(axis=1)
                return values, y_ref, ok

            values, y_ref, ok = map_row_chunks(chunk, B, balanced_chunk(B, batch_size))
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
