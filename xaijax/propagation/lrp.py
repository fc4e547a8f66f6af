"""Layer-wise relevance propagation (LRP) with zennit's composites, and AttnLRP.

The model's jaxpr is re-interpreted with the rules of :mod:`xaijax.core.relevance`: a rule is
attached to a primitive (``dot_general``, ``conv_general_dilated``, sums, products, softmax, ...),
never to a module class, so any JAX function or NNX module is explained in one backward pass.
"""

# jaxtyping shape strings such as "*n m" are not Python expressions:
# ruff: noqa: F722, UP037

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import ArrayLike, Float

from xaijax.core import contract
from xaijax.core.batching import check_mesh, map_instances, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.layers import layer_model
from xaijax.core.model import cached_eval_shape, float_dtype, is_nnx_module
from xaijax.core.registry import explainer
from xaijax.core.relevance import COMPOSITES, Composite, Rule, lrp_relevance
from xaijax.core.relevance import composite as _composite
from xaijax.core.targets import Targets, check_target_fn, resolve_targets

__all__ = ["lrp"]


def _relevances(model, params, X, target, comp):
    """``(values (c, *in), y (c, *out), target)`` for rows ``X``; relevance starts at the
    target logit (``target=None``: the predicted class)."""

    def fn(rows):
        return model.apply(params, rows)

    # The starting relevance is read off the re-interpreted forward pass: a separate forward
    # pass of the model for it cost 0.3 gradients at 224 px (its convolutions do not merge
    # with the interpreter's, whose batch norm is folded into the layer).
    out_shape = model.output_shape
    if out_shape:

        def pick(y):
            return jnp.argmax(y[0]) if target is None else target

        def cot(y):
            return jax.nn.one_hot(pick(y), out_shape[0], dtype=X.dtype)[None] * y

        values, y = lrp_relevance(fn, X, cot, comp, model_input=True)
        return values, y, pick(y)
    return (*lrp_relevance(fn, X, lambda y: y, comp, model_input=True), -1)


@functools.partial(jax.jit, static_argnames=("model", "targeted", "comp", "batch_size", "mesh"))
def _lrp(model, params, X, targets, *, targeted, comp, batch_size, mesh):
    def local(instances, params):
        def one(args):
            x, t = args
            values, y, t = _relevances(model, params, x[None], t if targeted else None, comp)
            score = y[0][t] if model.output_shape else y[0]
            return values[0], jnp.zeros_like(score), (t, score), jnp.all(jnp.isfinite(y))

        return map_instances(one, instances, 1, batch_size)

    return over_instances(local, (X, targets), params, mesh=mesh)


@functools.partial(jax.jit, static_argnames=("targeted", "comp", "batch_size"))
def _lrp_layer(lm, X, targets, *, targeted, comp, batch_size):
    """LRP from the logits down to the output ``A`` of ``lm``'s layer (e.g. token embeddings):
    the rest of the model is re-interpreted as a function of ``A`` with ``X`` held fixed."""

    def one(args):
        x, t = args
        x = x[None]
        A = lm.forward(x)[1]

        def fn(a):
            return lm.logits_from(x, a)

        def pick(y):
            return t if targeted else jnp.argmax(y[0])

        def cot(y):
            return jax.nn.one_hot(pick(y), y.shape[-1], dtype=A.dtype)[None] * y

        full, y = lrp_relevance(fn, A, cot, comp)
        t = pick(y)
        return full[0], y[0][t], t, jnp.all(jnp.isfinite(y))

    return map_instances(one, (X, targets), 1, batch_size)


def _lrp_at_layer(f, layer, X, targets, comp, batch_size):
    if not is_nnx_module(f):
        raise TypeError(
            f"layer={layer!r} needs f to be a Flax NNX module (the layer is one of its "
            f"submodules, e.g. 'embed'); got {type(f).__name__}"
        )
    lm = layer_model(f, layer)
    X = np.asarray(X)
    if not (np.issubdtype(X.dtype, np.integer) or np.issubdtype(X.dtype, np.floating)):
        raise TypeError(f"X must be token ids (ints) or floats; got dtype {X.dtype}")
    single = X.ndim == 1
    X = X[None] if single else X
    if X.ndim < 2 or X.shape[0] == 0:
        raise ValueError(f"X must be one sequence (L,) or a batch (n, L); got shape {X.shape}")
    if np.issubdtype(X.dtype, np.floating) and not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or inf")
    logits, A = cached_eval_shape(type(lm).forward, lm, jax.ShapeDtypeStruct(X.shape, X.dtype))
    if len(logits.shape) != 2:
        raise ValueError(
            f"layer= needs a model returning logits (n, K); got outputs of shape {logits.shape}"
        )
    n = X.shape[0]
    spec = resolve_targets(targets, n, logits.shape[1])
    if spec.fn is not None:
        raise TypeError("targets must be None, an int or (n,) ints with layer=")
    targeted = spec.indices is not None
    batch_size = contract.resolve_batch_size(batch_size, A.shape[1:], np.dtype(A.dtype))
    full, scores, picked, finite = contract.call(
        _lrp_layer,
        lm,
        X,
        spec.indices if targeted else np.zeros(n, np.int32),
        targeted=targeted,
        comp=comp,
        batch_size=batch_size,
    )
    full = np.asarray(full)
    # Relevance per token: the sum over the layer's last (embedding) axis, as AttnLRP reports it.
    values = full.sum(axis=-1) if full.ndim > 2 else full
    return contract.pack(
        values,
        np.zeros(n, values.dtype),
        X,
        single=single,
        kind="map",
        method="lrp",
        finite=finite,
        extras={"attributions": full, "targets": picked, "scores": scores},
    )


@explainer(kind="map", needs_jax=True)
def lrp(
    f: Callable,
    X: Float[ArrayLike, "*shape"],
    *,
    targets: Targets = None,
    composite: str | Composite = "epsilon_plus_flat",
    epsilon: float = 1e-6,
    gamma: float = 0.25,
    low: Float[ArrayLike, "..."] | float | None = None,
    high: Float[ArrayLike, "..."] | float | None = None,
    layer_rules: Mapping[int, Rule] | None = None,
    layer: str | None = None,
    batch_size: int | None = None,
    mesh: Mesh | None = None,
) -> Explanation:
    """Layer-wise relevance propagation: the target logit redistributed to the input by rules.

    Each linear layer (a ``dot_general`` or convolution with a constant weight, with its bias and
    any following batch norm folded in, as zennit's canonizer) gets a rule from ``composite`` by
    its kind (dense or conv) and position; element-wise nonlinearities pass relevance, sums and
    average pooling split it in proportion, max pooling routes it to the maximum. Transformers
    get AttnLRP's rules (softmax rule, uniform rule for products of two input-dependent values,
    layer norm's ``1/std`` held constant); ``composite="attn_lrp"`` uses epsilon for every layer,
    as the AttnLRP paper. Everything is one backward pass of the re-interpreted model.

    A standardisation ``(x - mu) / sigma`` inside the model passes relevance: ``values`` are the
    standardised input's relevance, as zennit's with the standardisation outside the model
    (``attn_lrp``: gradient x input at the raw input, as lxt). A ``jax.nn.log_softmax`` head
    gets the softmax rule: the logits receive ``z (onehot - p)``, gradient x input of the log
    probability (zennit would pass the gradient ``log p_t (onehot - p)``, which the epsilon
    rule then divides by each logit); for relevance from the logit itself, explain the logits.
    ``lax.cond``/``switch`` with an index that does not depend on the input is re-interpreted
    (an input-dependent index raises :class:`UnsupportedPrimitiveError`).

    Args:
        f: the model ``f(X: (n, *input_shape)) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX module (eval mode) or an Equinox module.
        X: one instance ``input_shape`` or a batch ``(n, *input_shape)``.
        targets: ``None`` (the predicted class), an int or ``(n,)`` ints, or a callable on the
            model outputs. The relevance starts at the target logit (``onehot * logit``).
        composite: ``"epsilon_plus_flat"`` (flat first layer, z+ conv, epsilon dense),
            ``"epsilon_gamma_box"`` (z^B first conv with ``low``/``high``, gamma conv, epsilon
            dense), ``"epsilon_alpha2_beta1"``, ``"epsilon"``, ``"attn_lrp"``, or a
            :class:`~xaijax.core.relevance.Composite`.
        epsilon: of the epsilon rule; gamma: of the gamma rule.
        low, high: input bounds of the z^B rule (numbers or arrays broadcast like one input),
            of the first layer's input: standardised values if the model standardises.
        layer_rules: ``{layer index: rule}`` overrides (rules from :mod:`xaijax.core.relevance`,
            e.g. ``{0: w_square()}``); layers are numbered in the order the input meets them,
            ``-1`` is the last one. ``xaijax.core.relevance.layer_kinds`` lists them.
        layer: explain at a submodule's output instead of the input (an NNX module ``f`` and a
            path such as ``"embed"``): for a text model ``X`` are token ids ``(n, L)``, the
            relevance reaching the token embeddings is summed over the embedding axis, so
            ``values`` is one number per token ``(n, L)`` (extras ``attributions`` keeps
            ``(n, L, d)``). Positions and everything that bypasses the layer are held fixed.
        batch_size: most instances pushed through the model at once; ``None`` picks a default.
        mesh: optional :class:`jax.sharding.Mesh` to shard the instances over.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"``: ``values`` shaped like ``X``,
        ``base_values`` zeros, extras ``targets`` (-1 for a callable) and ``scores`` (the
        target logits). The values sum to the score only on bias-free networks with small
        ``epsilon`` and conservative rules: biases and stabilisers absorb relevance.

    Raises:
        ValueError: bad shapes, NaN/inf inputs, an unknown composite, missing z^B bounds, or a
            model that returns NaN/inf.
        TypeError: a host model, which cannot be traced.
        UnsupportedPrimitiveError: a primitive with no LRP rule (named, with its equation).

    References:
        Bach et al., "On Pixel-Wise Explanations for Non-Linear Classifier Decisions by
        Layer-Wise Relevance Propagation", PLoS ONE 2015; Montavon et al., "Layer-Wise
        Relevance Propagation: An Overview", 2019; Achtibat et al., "AttnLRP: Attention-Aware
        Layer-Wise Relevance Propagation for Transformers", ICML 2024.

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> W = jnp.array([[1.0], [2.0]])
        >>> f = lambda X: X @ W
        >>> lrp(f, np.array([3.0, 1.0]), targets=0, composite="epsilon").values.round(4).tolist()
        [3.0, 2.0]
    """
    if layer_rules is not None:
        ok = isinstance(layer_rules, Mapping) and all(
            isinstance(k, (int, np.integer)) and not isinstance(k, bool) and isinstance(v, Rule)
            for k, v in layer_rules.items()
        )
        if not ok:
            raise TypeError(
                "layer_rules must map layer indices (ints) to rules from xaijax.core.relevance "
                f"(e.g. {{0: w_square()}}); got {layer_rules!r}"
            )
    if isinstance(composite, str):
        name = contract.check_choice("composite", composite, COMPOSITES)
        for arg, v in (("epsilon", epsilon), ("gamma", gamma)):
            if not isinstance(v, (int, float)) or not np.isfinite(v) or v < 0:
                raise ValueError(f"{arg} must be a finite number >= 0; got {v!r}")
        comp = _composite(
            name, epsilon=epsilon, gamma=gamma, low=low, high=high, layers=layer_rules
        )
    elif isinstance(composite, Composite):
        comp = composite
        if layer_rules:
            extra = tuple(sorted((int(k), v) for k, v in layer_rules.items()))
            comp = Composite(**{**comp.__dict__, "layers": extra + comp.layers})
    else:
        raise TypeError(
            f"composite must be one of {COMPOSITES} or a Composite; got {type(composite).__name__}"
        )
    if layer is not None:
        return _lrp_at_layer(f, layer, X, targets, comp, batch_size)
    X = contract.as_float_array("X", X, dtype=np.dtype(float_dtype()))
    X, single, model, params = contract.split_instances_by_model(f, X)
    if model.kind == "host":
        raise TypeError(
            "f must be a JAX function, (apply_fn, params) pair or NNX module for lrp (its jaxpr "
            "is re-interpreted); a host/NumPy model cannot be traced"
        )
    n = X.shape[0]
    spec = resolve_targets(targets, n, model.num_outputs)
    if spec.fn is not None:
        check_target_fn(spec.fn, jax.ShapeDtypeStruct((2,) + model.output_shape, X.dtype))
        model = model.scored_by(spec.fn)
    batch_size = contract.resolve_batch_size(batch_size, X.shape[1:], X.dtype)
    targeted = spec.indices is not None and bool(model.output_shape)
    values, base, (picked, scores), finite = contract.call(
        _lrp,
        model,
        params,
        X,
        spec.indices if targeted else np.zeros(n, np.int32),
        targeted=targeted,
        comp=comp,
        batch_size=batch_size,
        mesh=check_mesh(mesh),
    )
    return contract.pack(
        values,
        base,
        X,
        single=single,
        kind="map",
        method="lrp",
        finite=finite,
        extras={"targets": picked, "scores": scores},
    )
