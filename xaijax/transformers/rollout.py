"""Attention rollout (Abnar & Zuidema 2020) and gradient-weighted rollout (Chefer et al. 2021).

The attention matrices are read by layer path (every ``.../attn/weights`` submodule of the zoo's
transformers outputs ``(n, heads, L, L)``) with the layer hooks of :mod:`xaijax.core.layers`;
the model is never modified. ``method="gradient"`` also perturbs them, so one ``jax.vjp`` per
chunk gives ``d score / d A`` for every layer at once.
"""

# jaxtyping shape strings are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike

from xaijax.core import contract
from xaijax.core.batching import balanced_chunk, check_mesh, map_row_chunks, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.layers import layers_model, module_paths
from xaijax.core.model import cached_eval_shape, is_nnx_module
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets, check_target_fn, resolve_targets, target_scores

__all__ = ["attention_rollout", "attention_layer_paths", "rollout_matrices"]

HEAD_FUSIONS = ("mean", "max", "min")
METHODS = ("rollout", "gradient")


def attention_layer_paths(module) -> list[str]:
    """Every ``.../attn/weights`` submodule path of an NNX module, in block order.

    Example:
        >>> from xaijax.zoo import build
        >>> from xaijax.zoo.transformers import ViT
        >>> attention_layer_paths(build(lambda rngs: ViT(8, 4, 3, 2, depth=2, rngs=rngs)))
        ['blocks/0/attn/weights', 'blocks/1/attn/weights']
    """
    paths = [p for p in module_paths(module) if p[-2:] == ("attn", "weights")]
    order = sorted(
        paths, key=lambda p: tuple((0, k, "") if isinstance(k, int) else (1, 0, k) for k in p)
    )
    return ["/".join(map(str, p)) for p in order]


def _fuse(A, head_fusion):
    return {"mean": A.mean, "max": A.max, "min": A.min}[head_fusion](axis=1)


def _discard(fused, discard_ratio):
    """Zero the lowest ``discard_ratio`` fraction of each matrix, except entry ``(0, 0)``."""
    n, length, _ = fused.shape
    k = int(length * length * discard_ratio)
    if k == 0:
        return fused
    flat = fused.reshape(n, -1)
    ranks = jnp.argsort(jnp.argsort(flat, axis=-1, stable=True), axis=-1, stable=True)
    drop = (ranks < k).at[:, 0].set(False)
    return jnp.where(drop, 0.0, flat).reshape(fused.shape)


def rollout_matrices(attentions, *, head_fusion="mean", discard_ratio=0.0, residual=True):
    """Abnar & Zuidema's rollout of a list of attention matrices ``(n, heads, L, L)``.

    Per layer: fuse the heads, zero the lowest ``discard_ratio`` fraction (not the class
    token's own entry, as jacobgil's vit-explain), add the identity and halve (``residual``),
    renormalise the rows; then multiply, later layers on the left: ``R = a_l ... a_1``.

    Example:
        >>> import jax.numpy as jnp
        >>> A = jnp.full((1, 1, 2, 2), 0.5)
        >>> rollout_matrices([A, A])[0].tolist()
        [[0.625, 0.375], [0.375, 0.625]]
    """
    n, _, length, _ = attentions[0].shape
    eye = jnp.eye(length, dtype=attentions[0].dtype)
    R = jnp.broadcast_to(eye, (n, length, length))
    for A in attentions:
        a = _discard(_fuse(A, head_fusion), discard_ratio)
        if residual:
            a = (a + eye[None]) / 2
        rows = a.sum(axis=-1, keepdims=True)
        a = a / jnp.where(rows == 0, jnp.ones((), rows.dtype), rows)
        R = jnp.einsum("nij,njk->nik", a, R)
    return R


def _gradient_rollout(attentions, gradients):
    """Chefer et al. 2021: ``R = I``; per layer ``R = R + E_h[(grad A * A)^+] R``."""
    n, _, length, _ = attentions[0].shape
    R = jnp.broadcast_to(jnp.eye(length, dtype=attentions[0].dtype), (n, length, length))
    for A, G in zip(attentions, gradients, strict=True):
        a_bar = jax.nn.relu(G * A).mean(axis=1)
        R = R + jnp.einsum("nij,njk->nik", a_bar, R)
    return R


def _finite_rows(a):
    return jnp.isfinite(a).reshape(a.shape[0], -1).all(axis=1)


@functools.partial(
    jax.jit,
    static_argnames=(
        "target_fn",
        "head_fusion",
        "discard_ratio",
        "residual",
        "method",
        "batch_size",
        "mesh",
    ),
)
def _rollout(
    lm, X, indices, *, target_fn, head_fusion, discard_ratio, residual, method, batch_size, mesh
):
    def local(sharded, lm):
        X, indices = sharded
        n = X.shape[0]

        def chunk(rows):
            x = X[rows]
            t = None if indices is None else indices[rows]
            if method == "rollout":
                logits, As = lm.forward(x)
                if logits.ndim in (1, 2):
                    scores, tt = target_scores(logits, t, target_fn)
                else:
                    scores, tt = jnp.zeros((x.shape[0],), logits.dtype), -jnp.ones(x.shape[0], int)
                R = rollout_matrices(
                    As, head_fusion=head_fusion, discard_ratio=discard_ratio, residual=residual
                )
                grads_ok = jnp.ones((x.shape[0],), bool)
            else:
                shapes = jax.eval_shape(lambda x: lm.forward(x)[1], x)
                zeros = tuple(jnp.zeros(s.shape, s.dtype) for s in shapes)

                def scored(deltas):
                    logits, As = lm.forward(x, deltas)
                    scores, tt = target_scores(logits, t, target_fn)
                    return scores, (logits, As, scores, tt)

                _, vjp, (logits, As, scores, tt) = jax.vjp(scored, zeros, has_aux=True)
                (Gs,) = vjp(jnp.ones_like(scores))
                R = _gradient_rollout(As, Gs)
                grads_ok = jnp.stack([_finite_rows(G) for G in Gs], axis=1).all(axis=1)
            outputs_ok = _finite_rows(logits) & jnp.stack(
                [_finite_rows(A) for A in As], axis=1
            ).all(axis=1)
            return R, logits, scores, tt, outputs_ok, grads_ok

        return map_row_chunks(chunk, n, balanced_chunk(n, batch_size))

    return over_instances(local, (X, indices), lm, mesh=mesh)


def _as_inputs(X):
    a = np.asarray(X)
    if a.dtype == object or not (
        np.issubdtype(a.dtype, np.number) or np.issubdtype(a.dtype, np.bool_)
    ):
        raise ValueError(f"X must be a numeric array (images or token ids); got dtype {a.dtype}")
    if np.issubdtype(a.dtype, np.integer):
        return a
    return contract.as_float_array("X", a)


def _probe(lm, X):
    """``(batch, single, logits_shape, attention_shapes)``: X as a batch or as one instance."""
    errors = []
    readings = [(X, False)] if X.ndim >= 2 else []
    readings.append((X[None], True))
    for batch, single in readings:
        try:
            spec = jax.ShapeDtypeStruct(batch.shape, batch.dtype)
            logits, As = cached_eval_shape(type(lm).forward, lm, spec)
            return batch, single, logits.shape, [A.shape for A in As]
        except Exception as err:  # the model refused this reading of X
            errors.append(f"as {'one input' if single else 'a batch'}: {type(err).__name__}: {err}")
    raise ValueError(
        f"X of shape {X.shape} is neither a batch nor one input the model accepts. "
        + " ".join(errors)
    )


@explainer(kind="map", inputs="any", needs_jax=True, model_form="attention")
def attention_rollout(
    model,
    X: ArrayLike,
    *,
    targets: Targets = None,
    layers=None,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    residual: bool = True,
    method: str = "rollout",
    batch_size: int | None = None,
    mesh=None,
) -> Explanation:
    """Attention rollout: how much each token flows into the first (class) token's output.

    ``method="rollout"`` (Abnar & Zuidema 2020): fuse each layer's heads (``head_fusion``),
    zero the lowest ``discard_ratio`` fraction of its entries (never the class token's own
    entry, as jacobgil's vit-explain), add the identity for the residual connection and
    renormalise the rows, then multiply the layers, ``R = a_L ... a_1``. Class-agnostic:
    ``targets`` only sets the reported scores.

    ``method="gradient"`` (Chefer et al. 2021, "Generic attention-model explainability"):
    ``R = I``, then per layer ``R = R + E_h[(dS/dA * A)^+] R`` for the target score ``S``
    (``head_fusion="mean"``, ``discard_ratio=0`` and ``residual`` are the rule's own).

    Args:
        model: a Flax NNX transformer whose attention matrices are submodule outputs
            ``(n, heads, L, L)`` (the zoo's :class:`~xaijax.zoo.transformers.ViT`,
            ``TextTransformer``, ``DecoderLM``: ``blocks/i/attn/weights``).
        X: images ``(n, H, W, C)``, token ids ``(n, L)``, or one instance.
        targets: the explained score for ``method="gradient"``: ``None`` (the predicted
            class), an int, ``(n,)`` ints, or a callable ``fn(logits) -> (n,)``.
        layers: the attention layers, first to last: ``None`` (every ``.../attn/weights``
            submodule, in block order) or a list of paths (``"blocks/-1/attn/weights"``).
        head_fusion: ``"mean"``, ``"max"`` or ``"min"`` over heads.
        discard_ratio: fraction in ``[0, 1)`` of each fused matrix's lowest entries set to 0.
        residual: add the identity (``(A + I) / 2``) before renormalising.
        method: ``"rollout"`` or ``"gradient"``.
        batch_size: most instances passed to the model at once; ``None`` picks a default.
        mesh: optional :class:`jax.sharding.Mesh` to shard the instances over.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"``: ``values (n, L)``, the first
        token's row of the rolled-out matrix (the class token's own entry included);
        ``base_values`` zeros; extras ``matrix (n, L, L)``, ``logits``, ``scores``,
        ``targets`` and, for images whose ``L - 1`` tokens make a square grid (a ViT),
        ``grid (n, h, w)``, the patch part of ``values``. Padding tokens (never attended to)
        get exactly 0.

    Raises:
        ValueError: for a non-NNX model, bad ``X``, ``layers`` that are not attention-weights
            layers, bad options or targets, or NaN/inf outputs, attentions or gradients.

    References:
        Abnar & Zuidema 2020, Quantifying Attention Flow in Transformers, ACL; Chefer, Gur &
        Wolf 2021, Generic Attention-model Explainability for Interpreting Bi-Modal and
        Encoder-Decoder Transformers, ICCV.

    Example:
        >>> import jax.numpy as jnp
        >>> from xaijax.zoo import build
        >>> from xaijax.zoo.transformers import ViT
        >>> vit = build(lambda rngs: ViT(8, 4, 3, 2, depth=2, rngs=rngs))
        >>> exp = attention_rollout(vit, jnp.ones((2, 8, 8, 3)))
        >>> exp.values.shape, exp.extras["matrix"].shape, exp.extras["grid"].shape
        ((2, 5), (2, 5, 5), (2, 2, 2))
    """
    if not is_nnx_module(model):
        raise TypeError(
            f"model must be a Flax NNX module whose attention weights are submodule outputs; "
            f"got {type(model).__name__}"
        )
    contract.check_choice("head_fusion", head_fusion, HEAD_FUSIONS)
    contract.check_choice("method", method, METHODS)
    discard_ratio = contract.check_number("discard_ratio", discard_ratio, minimum=0.0)
    if discard_ratio >= 1:
        raise ValueError(f"discard_ratio must be in [0, 1); got {discard_ratio}")
    if not isinstance(residual, bool | np.bool_):
        raise TypeError(f"residual must be True or False; got {residual!r}")
    if method == "gradient" and (head_fusion != "mean" or discard_ratio != 0):
        raise ValueError(
            "method='gradient' averages heads and discards nothing (Chefer et al.'s rule); "
            f"got head_fusion={head_fusion!r}, discard_ratio={discard_ratio}"
        )
    if layers is None:
        paths = attention_layer_paths(model)
        if not paths:
            raise ValueError(
                f"layers=None found no '.../attn/weights' submodule in {type(model).__name__}; "
                "pass the attention layers' paths as layers=[...]"
            )
    elif isinstance(layers, str) or not isinstance(layers, (list, tuple)) or not layers:
        raise ValueError(f"layers must be None or a non-empty list of layer paths; got {layers!r}")
    else:
        paths = list(layers)
    lm = layers_model(model, paths, name="layers")
    X = _as_inputs(X)
    batch, single, logits_shape, a_shapes = _probe(lm, X)
    n = batch.shape[0]
    for path, shape in zip(paths, a_shapes, strict=True):
        if len(shape) != 4 or shape[2] != shape[3] or shape[2:] != a_shapes[0][2:]:
            raise ValueError(
                f"layers: {path!r} is not an attention-weights layer: its output has shape "
                f"{tuple(shape)}, not (n, heads, L, L) with the L of the other layers"
            )
    batch_size = contract.resolve_batch_size(batch_size, batch.shape[1:], np.float32)
    mesh = check_mesh(mesh)
    if len(logits_shape) in (1, 2):
        num = logits_shape[1] if len(logits_shape) == 2 else None
        spec = resolve_targets(targets, n, num)
        if spec.fn is not None:
            check_target_fn(
                spec.fn, jax.ShapeDtypeStruct((2,) + tuple(logits_shape[1:]), np.float32)
            )
        indices, target_fn = spec.indices, spec.fn
    elif targets is not None or method == "gradient":
        raise ValueError(
            f"targets: the model's outputs have shape {tuple(logits_shape)}; targets and "
            "method='gradient' need logits (n,) or (n, K) (wrap the model to pick a score)"
        )
    else:
        indices, target_fn = None, None
    R, logits, scores, t, outputs_ok, grads_ok = contract.call(
        _rollout,
        lm,
        batch,
        indices,
        target_fn=target_fn,
        head_fusion=head_fusion,
        discard_ratio=float(discard_ratio),
        residual=bool(residual),
        method=method,
        batch_size=batch_size,
        mesh=mesh,
    )
    values = R[:, 0, :]
    extras = {"matrix": R, "logits": logits, "scores": scores, "targets": t}
    length = R.shape[-1]
    side = math.isqrt(max(length - 1, 0))
    if batch.ndim == 4 and side > 0 and side * side == length - 1:
        extras["grid"] = values[:, 1:].reshape(n, side, side)
    outputs_ok, grads_ok = np.asarray(outputs_ok), np.asarray(grads_ok)
    what = "the model (its outputs or attention weights)"
    if outputs_ok.all() and not grads_ok.all():
        what = "the gradient of the target score at the attention weights (outputs are finite)"
    return contract.pack(
        values,
        np.zeros((n,), np.asarray(values).dtype),
        batch,
        single=single,
        kind="map",
        method="attention_rollout",
        extras=extras,
        finite=outputs_ok & grads_ok,
        what=what,
    )
