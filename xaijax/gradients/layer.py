"""Layer attributions: Integrated Gradients and gradient x activation at a layer's output.

The model is an NNX module and the path of a submodule (``"embed"``, ``"blocks/0/norm1"``), or
``(features, head)`` functions. The layer's output ``A`` is replaced inside the traced forward
pass (:mod:`xaijax.core.layers`), so the rest of the network, including connections that bypass
the layer and masks computed from the token ids, runs on the real input: this is captum's
``LayerIntegratedGradients`` / ``LayerGradientXActivation``. For a transformer's token embedding
``A`` is ``(n, L, d)`` and the attribution of each token is reduced over the hidden dimension.

Padding tokens (``X == pad_id`` for integer ``X``) get exactly 0, in the reduced values and in
``extras["attributions"]``.

:func:`~xaijax.gradients.noise.noise_tunnel` on token ids passes ``layer`` as a
:class:`NoisyLayer`: an additive offset to the layer's output (its noise), so each noisy copy is
explained at ``A + noise``, in the forward pass and as the point of attribution.
"""

# jaxtyping shape strings such as "n L" are not Python expressions:
# ruff: noqa: F722, UP037

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from xaijax.core import contract
from xaijax.core.batching import balanced_chunk, check_mesh, map_row_chunks, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.layers import LayerModel, layer_model
from xaijax.core.model import cached_eval_shape, is_nnx_module
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets, TargetSpec, check_target_fn, resolve_targets, target_scores
from xaijax.gradients.paths import path_weights
from xaijax.gradients.score_gradients import finish

__all__ = ["layer_integrated_gradients", "layer_gradient_x_input", "REDUCTIONS"]

REDUCTIONS = ("sum", "l2", None)


class NoisyLayer(NamedTuple):
    """A layer whose output gets an additive offset: ``A + noise`` replaces ``A`` everywhere (the
    forward pass, the targets, the point of attribution; IG's path runs from the baseline to it).

    Private to the gradients family: :func:`~xaijax.gradients.noise.noise_tunnel` passes it as
    ``layer`` to add its noise at the layer for token-id inputs. No offset is added at padding
    positions, which keep exactly 0 attribution; the offset added is ``extras["layer_noise"]``.
    """

    layer: Any  # the submodule path or head function
    noise: Any  # (n, *layer_row), one offset per row of X


class LayerProblem(NamedTuple):
    """Validated inputs of a layer explainer (host side, before compilation)."""

    lm: LayerModel
    X: np.ndarray  # (n, *input_shape): int32 token ids or floats
    single: bool
    targets: TargetSpec
    batch_size: int
    mesh: Any
    logits_shape: tuple
    a_shape: tuple  # (n, *layer_row)
    keep: np.ndarray | None  # (n, L) bool: False at padding tokens; None without padding
    noise: np.ndarray | None  # (n, *layer_row) offset added to the layer's output; None: none


def _inputs(X) -> np.ndarray:
    arr = np.asarray(X)
    if arr.dtype == bool:
        raise TypeError("X must be int token ids or a float array; got booleans")
    if np.issubdtype(arr.dtype, np.integer):
        return arr.astype(np.int32)
    return contract.as_float_array("X", X)


def _shapes(lm: LayerModel, X: np.ndarray):
    spec = jax.ShapeDtypeStruct(X.shape, X.dtype)
    logits, A = cached_eval_shape(LayerModel.forward, lm, spec)
    return tuple(np.shape(logits)), tuple(np.shape(A))


def _split(lm: LayerModel, X: np.ndarray):
    """``(X batch, single, logits_shape, a_shape)``: a batch if the model takes it, else one."""
    if X.ndim == 0:
        raise ValueError("X must be one input or a batch of inputs; got a scalar")
    errors = []
    for batch, single in ((X, False), (X[None], True)):
        if batch.ndim < 2 or batch.shape[0] == 0:
            continue
        try:
            logits_shape, a_shape = _shapes(lm, batch)
        except Exception as err:  # the model's own message says what it expects
            errors.append(f"{type(err).__name__}: {err}")
            continue
        if logits_shape[:1] == batch.shape[:1] and a_shape[:1] == batch.shape[:1]:
            return batch, single, logits_shape, a_shape
        errors.append(f"outputs {logits_shape} and layer {a_shape} for {batch.shape[0]} rows")
    raise ValueError(
        f"X of shape {X.shape} is neither a batch nor one input the model accepts: "
        + "; ".join(errors)
    )


def _layer_rows(name, value, a_shape, dtype) -> np.ndarray:
    """``value`` (a number, one layer row, ``(1, *row)`` or ``(n, *row)``) as ``a_shape``."""
    if value is None:
        return np.zeros(a_shape, dtype)
    b = contract.as_float_array(name, value, dtype=dtype)
    row = a_shape[1:]
    if b.ndim == 0 or b.shape == row or b.shape == (1,) + row:
        return np.broadcast_to(b.reshape((1,) + row if b.ndim else ()), a_shape).copy()
    if b.shape == a_shape:
        return b
    raise ValueError(
        f"{name} must be a number, one layer output of shape {row} or one per instance "
        f"{a_shape} (it lives at the layer, not at the input); got shape {b.shape}"
    )


def _prepare(model, layer, X, targets, *, reduce, pad_id, batch_size, mesh):
    """``(LayerProblem, reduce)``: everything checked on the host, before compiling."""
    noise = None
    if isinstance(layer, NoisyLayer):
        layer, noise = layer
    lm = layer_model(model, layer)
    reduce = contract.check_choice("reduce", reduce, REDUCTIONS)
    X = _inputs(X)
    integer = np.issubdtype(X.dtype, np.integer)
    if pad_id is not None:
        if isinstance(pad_id, bool) or not isinstance(pad_id, int | np.integer):
            raise TypeError(f"pad_id must be an int token id or None; got {pad_id!r}")
        if not integer:
            raise ValueError("pad_id needs integer token ids X; X is a float array")
    X, single, logits_shape, a_shape = _split(lm, X)
    if pad_id is None and integer and is_nnx_module(model):
        pad_id = getattr(model, "pad_id", None)
    keep = None
    if pad_id is not None:
        if X.ndim == 2 and len(a_shape) >= 3 and a_shape[:2] == X.shape:
            keep = X != int(pad_id)
    if len(logits_shape) > 2 and not callable(targets):
        raise ValueError(
            f"targets must be a callable fn(outputs) -> (n,) for model outputs of shape "
            f"{logits_shape} (e.g. xaijax.transformers.next_token_target)"
        )
    num_outputs = logits_shape[1] if len(logits_shape) == 2 else None
    spec = resolve_targets(targets, X.shape[0], num_outputs)
    if spec.fn is not None:
        check_target_fn(spec.fn, jax.ShapeDtypeStruct((2,) + logits_shape[1:], jnp.float32))
    batch_size = contract.resolve_batch_size(batch_size, a_shape[1:], np.float32)
    if noise is not None:
        noise = contract.as_float_array("layer noise", noise, dtype=np.float32)
        if noise.shape != a_shape:
            raise ValueError(
                f"layer noise must have the layer's shape {a_shape}; got {noise.shape}"
            )
    return LayerProblem(
        lm, X, single, spec, batch_size, check_mesh(mesh), logits_shape, a_shape, keep, noise
    ), reduce


def layer_rows_shape(model, layer, X) -> tuple:
    """``(n, *layer_row)``: the shape of ``layer``'s output on the batch ``X``, without compiling
    (what :func:`~xaijax.gradients.noise.noise_tunnel` draws its noise at the layer in)."""
    return _split(layer_model(model, layer), _inputs(X))[3]


def _finite_rows(a):
    return jnp.isfinite(a).reshape(a.shape[0], -1).all(axis=1)


def _path_sum(lm, X, A, B, alphas, weights, fixed, target_fn, batch_size):
    """``sum_s weights[s] * grad_A S_i(B + alphas[s] (A - B))`` per instance, in row chunks.

    A chunk holds ``p`` path points of ``m`` instances (``p * m <= batch_size`` model rows), one
    ``jax.vjp`` each, so memory is bounded whatever the sequence length and number of steps.
    """
    n, num_points = X.shape[0], alphas.shape[0]
    m = balanced_chunk(n, batch_size) if batch_size < n else n
    p = balanced_chunk(num_points, max(1, batch_size // n)) if batch_size >= n else 1
    steps = math.ceil(num_points / p)

    def over_points(i):
        Xi, Ai, Bi = X[i], A[i], B[i]
        rows_x = jnp.broadcast_to(Xi[None], (p,) + Xi.shape).reshape((p * m,) + Xi.shape[1:])
        t = None if fixed is None else jnp.tile(fixed[i], p)
        lead = (p,) + (1,) * Ai.ndim

        def scored(z):
            outputs = lm.logits_from(rows_x, z)
            return target_scores(outputs, t, target_fn)[0]

        def step(carry, k):
            total, out_ok, grad_ok = carry
            s = k * p + jnp.arange(p)
            valid = s < num_points
            sc = jnp.minimum(s, num_points - 1)
            z = Bi[None] + alphas[sc].reshape(lead) * (Ai - Bi)[None]
            scores, vjp = jax.vjp(scored, z.reshape((p * m,) + Ai.shape[1:]))
            (g,) = vjp(jnp.ones_like(scores))
            g = g.reshape(z.shape)
            c = jnp.where(valid.reshape(lead), weights[sc].reshape(lead) * g, 0.0)
            s_ok = jnp.isfinite(scores).reshape(p, m) | ~valid[:, None]
            g_ok = jax.vmap(_finite_rows)(g) | ~valid[:, None]
            return (total + c.sum(axis=0), out_ok & s_ok.all(0), grad_ok & g_ok.all(0)), None

        init = (jnp.zeros(Ai.shape, A.dtype), jnp.ones((m,), bool), jnp.ones((m,), bool))
        if steps == 1:
            return step(init, 0)[0]
        return jax.lax.scan(step, init, jnp.arange(steps))[0]

    return map_row_chunks(over_points, n, m)


@functools.partial(
    jax.jit, static_argnames=("target_fn", "batch_size", "mesh", "multiply", "reduce")
)
def _layer_path(
    lm,
    X,
    B,
    indices,
    keep,
    noise,
    alphas,
    weights,
    *,
    target_fn,
    batch_size,
    mesh,
    multiply,
    reduce,
):
    def local(sharded, shared):
        X, B, indices, keep, noise = sharded
        lm, alphas, weights = shared
        n = X.shape[0]
        chunk = balanced_chunk(n, batch_size)
        if noise is None:
            logits, A = map_row_chunks(lambda r: lm.forward(X[r]), n, chunk)
        else:
            if keep is not None:
                # Padding is not an input feature: no noise there (its attribution stays 0).
                at = keep.reshape(keep.shape + (1,) * (noise.ndim - keep.ndim))
                noise = jnp.where(at, noise, jnp.zeros((), noise.dtype))
            logits, A = map_row_chunks(lambda r: lm.forward(X[r], noise[r]), n, chunk)
            A = A + noise
        scores, t = target_scores(logits, indices, target_fn)
        fixed = None if target_fn is not None or logits.ndim == 1 else t
        base_logits = map_row_chunks(lambda r: lm.logits_from(X[r], B[r]), n, chunk)
        base, _ = target_scores(base_logits, fixed, target_fn)
        total, points_ok, grads_ok = _path_sum(
            lm, X, A, B, alphas, weights, fixed, target_fn, batch_size
        )
        full = (A - B) * total if multiply else total
        if keep is not None:
            mask = keep.reshape(keep.shape + (1,) * (full.ndim - keep.ndim))
            full = jnp.where(mask, full, jnp.zeros((), full.dtype))
        if reduce == "sum":
            values = full.sum(axis=-1)
        elif reduce == "l2":
            values = jnp.sqrt((full * full).sum(axis=-1))
        else:
            values = full
        extras = {
            "attributions": full,
            "targets": t,
            "scores": scores,
            "base_scores": base,
            "logits": logits,
            "completeness_gap": (scores - base) - full.reshape(n, -1).sum(axis=1),
        }
        if noise is not None:
            extras["layer_noise"] = noise
        outputs_ok = _finite_rows(logits) & _finite_rows(base_logits) & points_ok
        return values, base, extras, outputs_ok, grads_ok

    return over_instances(local, (X, B, indices, keep, noise), (lm, alphas, weights), mesh=mesh)


def _run(problem, reduce, B, alphas, weights, *, multiply):
    keep = problem.keep
    return contract.call(
        _layer_path,
        problem.lm,
        problem.X,
        B,
        problem.targets.indices,
        keep if keep is None else jnp.asarray(keep),
        problem.noise if problem.noise is None else jnp.asarray(problem.noise),
        jnp.asarray(alphas, jnp.float32),
        jnp.asarray(weights, jnp.float32),
        target_fn=problem.targets.fn,
        batch_size=problem.batch_size,
        mesh=problem.mesh,
        multiply=multiply,
        reduce=reduce,
    )


@explainer(kind="path", needs_jax=True, model_form="layer")
def layer_integrated_gradients(
    model,
    layer,
    X: ArrayLike,
    *,
    targets: Targets = None,
    baseline: ArrayLike | float | None = None,
    num_steps: int = 50,
    method: str = "gausslegendre",
    multiply_by_inputs: bool = True,
    reduce: str | None = "sum",
    pad_id: int | None = None,
    batch_size: int | None = None,
    mesh=None,
) -> Explanation:
    """Integrated Gradients at a layer: ``(A - A') * integral_0^1 grad_A S(A' + a (A - A')) da``.

    ``A`` is the layer's output on ``X`` and ``A'`` the baseline at the layer (zeros by
    default). The layer's output is replaced by each path point inside the forward pass on the
    real ``X`` (captum's ``LayerIntegratedGradients``: masks and connections that bypass the
    layer see the real input). Completeness: the per-dimension attributions sum to
    ``S(A) - S(A')`` up to the quadrature error ``extras["completeness_gap"]``.

    Args:
        model: an NNX module (with ``layer`` a submodule path such as ``"embed"`` or
            ``"blocks/0/norm1"``), or a function ``features: X -> A`` (with ``layer`` the
            function ``head: A -> outputs``).
        layer: the submodule path (``"a/b/0"`` or a tuple), or the ``head`` function.
        X: int token ids ``(n, L)`` / ``(L,)`` or float inputs, one instance or a batch.
        targets: ``None`` (the predicted class at ``X``), an int, ``(n,)`` ints, or a callable
            ``fn(outputs) -> (n,)``; required to be a callable for ``(n, L, V)`` LM outputs.
        baseline: ``A'``, at the layer: a number, one layer output or one per instance.
        num_steps: quadrature points; ``method`` one of
            :data:`~xaijax.gradients.paths.PATH_METHODS` (captum's names).
        multiply_by_inputs: ``False`` returns the averaged path gradient without the
            ``(A - A')`` factor (captum's option; the completeness gap is then meaningless).
        reduce: how each position's ``d`` hidden values become one score: ``"sum"`` (signed;
            completeness holds over tokens), ``"l2"`` (the Euclidean norm, unsigned; kind
            ``"map"`` with ``base_values`` 0) or ``None`` (the full ``(n, L, d)``).
        pad_id: the padding token id; default the model's ``pad_id`` attribute for int ``X``.
            Padding positions get exactly 0.
        batch_size: most model rows at once (the ``n * num_steps`` path points run in chunks).
        mesh: optional :class:`jax.sharding.Mesh` to shard the instances over.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"path"`` (``"map"`` for ``reduce="l2"``):
        ``values`` ``(n, L)`` (the layer's shape without its last axis; ``(n, L, d)`` for
        ``reduce=None``), ``base_values = S(A')``; extras ``attributions`` (the per-dimension
        ``(n, L, d)``), ``completeness_gap (n,)``, ``targets``, ``scores``, ``logits``.

    Raises:
        ValueError: for a ``layer`` that is not a submodule, inputs the model refuses (e.g.
            longer than its ``max_len``), bad baselines or options, non-finite outputs.

    References:
        Sundararajan et al. 2017, Axiomatic Attribution for Deep Networks, ICML; captum's
        ``LayerIntegratedGradients`` (Kokhlikyan et al. 2020).

    Example:
        >>> import jax.numpy as jnp
        >>> from xaijax.zoo import build
        >>> from xaijax.zoo.transformers import TextTransformer
        >>> net = build(lambda rngs: TextTransformer(30, 2, max_len=8, dim=16, depth=1, rngs=rngs))
        >>> exp = layer_integrated_gradients(net, "embed", jnp.array([[1, 5, 7, 0]]), num_steps=8)
        >>> exp.values.shape, float(exp.values[0, 3])
        ((1, 4), 0.0)
    """
    multiply = _check_bool("multiply_by_inputs", multiply_by_inputs)
    alphas, weights = path_weights(num_steps, method)
    problem, reduce = _prepare(
        model, layer, X, targets, reduce=reduce, pad_id=pad_id, batch_size=batch_size, mesh=mesh
    )
    B = _layer_rows("baseline", baseline, problem.a_shape, np.float32)
    values, base, extras, outputs_ok, grads_ok = _run(
        problem, reduce, B, alphas, weights, multiply=multiply
    )
    kind = "path"
    if reduce == "l2" or not multiply:
        kind = "map"
        base = jnp.zeros_like(base)
        if not multiply:
            extras.pop("completeness_gap")
    return finish(
        problem,
        values,
        base,
        extras,
        outputs_ok,
        grads_ok,
        method="layer_integrated_gradients",
        kind=kind,
        gradient_of="f at the layer",
    )


@explainer(kind="map", needs_jax=True, model_form="layer")
def layer_gradient_x_input(
    model,
    layer,
    X: ArrayLike,
    *,
    targets: Targets = None,
    reduce: str | None = "sum",
    pad_id: int | None = None,
    batch_size: int | None = None,
    mesh=None,
) -> Explanation:
    """Gradient x activation at a layer: ``A * grad_A S(A)``, reduced per position.

    captum's ``LayerGradientXActivation``; at the token embedding it equals ``InputXGradient``
    applied to the embeddings.

    Args:
        model, layer, X, targets, reduce, pad_id, batch_size, mesh: as
            :func:`layer_integrated_gradients`.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"``: ``values`` ``(n, L)`` (or
        ``(n, L, d)`` for ``reduce=None``), ``base_values`` 0; extras ``attributions``
        (per dimension), ``targets``, ``scores``, ``logits``.

    References:
        Shrikumar et al. 2016, Not Just a Black Box: Learning Important Features Through
        Propagating Activation Differences, arXiv:1605.01713.

    Example:
        >>> import jax.numpy as jnp
        >>> from xaijax.zoo import build
        >>> from xaijax.zoo.transformers import TextTransformer
        >>> net = build(lambda rngs: TextTransformer(30, 2, max_len=8, dim=16, depth=1, rngs=rngs))
        >>> layer_gradient_x_input(net, "embed", jnp.array([1, 5, 7, 0])).values.shape
        (4,)
    """
    problem, reduce = _prepare(
        model, layer, X, targets, reduce=reduce, pad_id=pad_id, batch_size=batch_size, mesh=mesh
    )
    B = np.zeros(problem.a_shape, np.float32)
    values, base, extras, outputs_ok, grads_ok = _run(
        problem, reduce, B, np.ones(1), np.ones(1), multiply=True
    )
    for name in ("completeness_gap", "base_scores"):
        extras.pop(name)
    return finish(
        problem,
        values,
        jnp.zeros_like(base),
        extras,
        outputs_ok,
        grads_ok,
        method="layer_gradient_x_input",
        kind="map",
        gradient_of="f at the layer",
    )


def _check_bool(name, value) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)
