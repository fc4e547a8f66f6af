"""Guided backpropagation and Guided Grad-CAM for any JAX function, by jaxpr re-interpretation.

Guided backpropagation (Springenberg et al. 2015) changes only the backward pass of ReLU: a
gradient passes a ReLU where the input was positive *and* the incoming gradient is positive. To do
that without asking users to change their model, :func:`with_guided_relu` traces the model to a
jaxpr and evaluates that jaxpr again, equation by equation, binding every primitive as is except
ReLUs, which it replaces by a ``jax.custom_vjp`` function with the guided backward rule. The result
is an ordinary JAX function, so ``jax.vjp``, ``jit`` and ``vmap`` apply to it as usual.

A ReLU is recognised as ``max(x, 0)`` with a literal (or broadcast) zero: this is what
``jax.nn.relu``, ``nnx.relu`` and ``jnp.maximum(x, 0)`` trace to. The interpreter descends into
``jit`` sub-jaxprs and into ``custom_jvp`` calls that contain a ReLU (``jax.nn.relu`` itself is a
``custom_jvp`` function); other higher-order primitives (``scan``, ``cond``, ``while``) are bound
unchanged, so ReLUs inside a ``lax.scan`` body keep their ordinary gradient.
"""

# jaxtyping shape strings such as "*n H W C" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import core as jcore
from jaxtyping import ArrayLike, Float

from xaijax.cam import activation_maps
from xaijax.core import contract
from xaijax.core.batching import balanced_chunk, check_mesh, map_row_chunks, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.interpreter import bind_eqn, eval_jaxpr, is_zero_literal, sub_jaxprs
from xaijax.core.model import as_model
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets, check_target_fn, resolve_targets, target_scores

__all__ = ["guided_relu", "with_guided_relu", "guided_backprop", "guided_grad_cam"]


@jax.custom_vjp
def guided_relu(x):
    """``max(x, 0)`` whose gradient is passed only where ``x > 0`` and the gradient is positive.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> jax.vjp(guided_relu, jnp.array([-1.0, 2.0, 3.0]))[1](jnp.array([1.0, -1.0, 2.0]))
        (Array([0., 0., 2.], dtype=float32),)
    """
    return jnp.maximum(x, jnp.zeros((), x.dtype))


def _guided_relu_fwd(x):
    return guided_relu(x), x


def _guided_relu_bwd(x, g):
    return (jnp.where((x > 0) & (g > 0), g, jnp.zeros((), g.dtype)),)


guided_relu.defvjp(_guided_relu_fwd, _guided_relu_bwd)


def _relu_operand(eqn, zeros):
    """The non-zero operand index if ``eqn`` is ``max(x, 0)``, else ``None``."""
    if eqn.primitive.name != "max" or len(eqn.invars) != 2:
        return None
    for i, v in enumerate(eqn.invars):
        if is_zero_literal(v) or (not isinstance(v, jcore.Literal) and v in zeros):
            return 1 - i
    return None


def _contains_relu(jaxpr) -> bool:
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    zeros = _zero_vars(jaxpr)
    for eqn in jaxpr.eqns:
        if _relu_operand(eqn, zeros) is not None:
            return True
        for sub in sub_jaxprs(eqn):
            if _contains_relu(sub):
                return True
    return False


def _zero_vars(jaxpr) -> set:
    """Variables holding a broadcast literal zero (``jnp.maximum(x, jnp.zeros_like(x))``)."""
    zeros = set()
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "broadcast_in_dim" and is_zero_literal(eqn.invars[0]):
            zeros.add(eqn.outvars[0])
    return zeros


def _eval_guided(jaxpr, consts, *args):
    zeros = _zero_vars(jaxpr)

    def rule(eqn, invals):
        name = eqn.primitive.name
        relu_arg = _relu_operand(eqn, zeros)
        if relu_arg is not None:
            return [guided_relu(invals[relu_arg])]
        if name in ("jit", "pjit") or (
            name == "custom_jvp_call" and _contains_relu(eqn.params["call_jaxpr"])
        ):
            inner = eqn.params["jaxpr" if name != "custom_jvp_call" else "call_jaxpr"]
            return _eval_guided(inner.jaxpr, inner.consts, *invals)
        return bind_eqn(eqn, invals)

    return eval_jaxpr(jaxpr, consts, args, rule)


def with_guided_relu(fn):
    """Return ``fn`` with every ReLU's backward pass replaced by the guided rule.

    The forward values are unchanged; gradients through ReLUs keep only positive signals
    (Springenberg et al. 2015). Works on any traceable JAX function of arrays (pytrees allowed);
    see the module docstring for how ReLUs are found.

    Args:
        fn: a JAX function ``fn(*args) -> outputs``.

    Returns:
        A function with the same signature and forward values.

    References:
        Springenberg et al. 2015, Striving for Simplicity: The All Convolutional Net, ICLR
        workshop.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> f = lambda x: jnp.sum(jax.nn.relu(x) * jnp.array([1.0, -1.0]))
        >>> jax.grad(with_guided_relu(f))(jnp.array([1.0, 1.0])).tolist()
        [1.0, 0.0]
    """

    @functools.wraps(fn)
    def guided(*args):
        flat, tree = jax.tree.flatten(args)
        closed, out_shape = jax.make_jaxpr(
            lambda *leaves: fn(*jax.tree.unflatten(tree, leaves)), return_shape=True
        )(*flat)
        outs = _eval_guided(closed.jaxpr, closed.consts, *flat)
        return jax.tree.unflatten(jax.tree.structure(out_shape), outs)

    return guided


def _finite_rows(a):
    return jnp.isfinite(a).reshape(a.shape[0], -1).all(axis=1)


@functools.partial(jax.jit, static_argnames=("apply", "target_fn", "batch_size", "mesh"))
def _guided_gradients(apply, params, X, indices, *, target_fn, batch_size, mesh):
    """Guided gradients of the target scores, in chunks of ``batch_size`` images."""
    guided = with_guided_relu(apply)

    def local(sharded, params):
        X, indices = sharded

        def chunk(rows):
            t = None if indices is None else indices[rows]

            def scored(x):
                logits = guided(params, x)
                scores, t_out = target_scores(logits, t, target_fn)
                return scores, (t_out, scores, logits)

            _, vjp, (t_out, scores, logits) = jax.vjp(scored, X[rows], has_aux=True)
            (grads,) = vjp(jnp.ones_like(scores))
            return grads, t_out, scores, logits

        n = X.shape[0]
        grads, t, scores, logits = map_row_chunks(chunk, n, balanced_chunk(n, batch_size))
        extras = {"targets": t, "scores": scores, "logits": logits}
        return grads, extras, _finite_rows(logits), _finite_rows(grads)

    return over_instances(local, (X, indices), params, mesh=mesh)


@dataclasses.dataclass(frozen=True)
class _ModelLogits:
    """``model.apply`` as a hashable static argument (equal for equal models: compiles once)."""

    model: Any

    def __call__(self, params, X):
        return self.model.apply(params, X)


def _layer_logits(lm, X):
    return lm.logits(X)


def _report(X, single, values, extras, outputs_ok, grads_ok, method):
    outputs_ok, grads_ok = np.asarray(outputs_ok), np.asarray(grads_ok)
    what = "the model"
    if outputs_ok.all() and not grads_ok.all():
        what = "the guided gradient of the target score (the outputs are finite)"
    return contract.pack(
        values,
        np.zeros(X.shape[:1], np.asarray(values).dtype),
        X,
        single=single,
        kind="map",
        method=method,
        extras=extras,
        finite=outputs_ok & grads_ok,
        what=what,
    )


@explainer(kind="map", inputs="image", needs_jax=True)
def guided_backprop(
    f,
    images: Float[ArrayLike, "*n H W C"],
    targets: Targets = None,
    *,
    batch_size: int | None = None,
    mesh=None,
) -> Explanation:
    """Guided backpropagation: d score / d image with ReLU gradients restricted to positive ones.

    Args:
        f: the model, ``X (n, H, W, C) -> logits (n, K)``: a JAX function, an ``(apply_fn,
            params)`` pair, an NNX or Equinox module (re-interpreted, so not a host model).
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints,
            or a callable ``fn(logits) -> (n,)``.
        batch_size: most images passed to the model at once; ``None`` picks a default for the
            backend and the image size.
        mesh: optional :class:`jax.sharding.Mesh` to shard the images over.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values (n, H, W, C)``,
        ``data`` the images, ``base_values`` zeros and extras ``targets``, ``scores``,
        ``logits``.

    Raises:
        ValueError: for bad images or targets, or NaN or inf outputs or gradients.

    References:
        Springenberg et al. 2015, Striving for Simplicity: The All Convolutional Net, ICLR
        workshop.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> f = lambda X: jax.nn.relu(X).sum(axis=(1, 2)) - X.mean(axis=(1, 2))
        >>> guided_backprop(f, jnp.ones((2, 4, 4, 3)), targets=0).values.shape
        (2, 4, 4, 3)
    """
    X, single = activation_maps.prepare_images(images)
    batch_size = contract.resolve_batch_size(batch_size, X.shape[1:], X.dtype)
    mesh = check_mesh(mesh)
    model, params = as_model(f, X, name="images")
    if model.kind == "host":
        raise TypeError(
            "f must be a JAX function, (apply_fn, params) pair or NNX module; guided "
            "backpropagation re-interprets the model and cannot see inside a host (NumPy) model"
        )
    spec = resolve_targets(targets, X.shape[0], model.num_outputs)
    if spec.fn is not None:
        check_target_fn(spec.fn, jax.ShapeDtypeStruct((2,) + model.output_shape, X.dtype))
    grads, extras, outputs_ok, grads_ok = contract.call(
        _guided_gradients,
        _ModelLogits(model),
        params,
        X,
        spec.indices,
        target_fn=spec.fn,
        batch_size=batch_size,
        mesh=mesh,
    )
    return _report(X, single, grads, extras, outputs_ok, grads_ok, "guided_backprop")


@explainer(kind="map", inputs="image", needs_jax=True, model_form="layer")
def guided_grad_cam(
    features,
    head,
    images: Float[ArrayLike, "*n H W C"],
    targets: Targets = None,
    *,
    resize: str = "bilinear",
    reshape=None,
    batch_size: int | None = None,
    mesh=None,
) -> Explanation:
    """Guided Grad-CAM: guided backpropagation times the upsampled (unnormalised) Grad-CAM map.

    Args:
        features: ``X (n, H, W, C) -> A (n, h, w, c)``, or a Flax NNX module.
        head: ``A -> logits (n, K)``, or the path of the target layer in the module.
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints,
            or a callable ``fn(logits) -> (n,)``.
        resize: upsampling of the Grad-CAM map, ``"bilinear"`` or ``"nearest"`` (captum's).
        reshape: a token layer as a grid (``True`` for ViT tokens); see
            :func:`~xaijax.cam.cam`.
        batch_size: most images passed to the model at once; ``None`` picks a default for the
            backend and the image size.
        mesh: optional :class:`jax.sharding.Mesh` to shard the images over.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values (n, H, W, C)`` and
        extras ``grad_cam (n, H, W)``, ``guided_backprop (n, H, W, C)``, ``raw_maps``,
        ``targets``, ``scores``, ``logits``.

    Raises:
        ValueError: for bad images, layers or targets, or NaN or inf outputs, activations or
            gradients.

    References:
        Selvaraju et al. 2017, Grad-CAM, ICCV; Springenberg et al. 2015, Striving for
        Simplicity: The All Convolutional Net, ICLR workshop.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> w = jax.random.normal(jax.random.key(0), (3, 5))
        >>> head = lambda A: A.mean(axis=(1, 2)) @ w
        >>> exp = guided_grad_cam(jax.nn.relu, head, jnp.ones((2, 8, 8, 3)), targets=1)
        >>> exp.values.shape
        (2, 8, 8, 3)
    """
    contract.check_choice("resize", resize, activation_maps.RESIZE_METHODS)
    problem = activation_maps.prepare(
        features, head, images, targets, batch_size=batch_size, mesh=mesh, reshape=reshape
    )
    maps, cam_extras, cam_outputs_ok, cam_grads_ok = activation_maps.run(
        problem, "grad_cam", resize=resize, normalize=False, relu=True
    )
    # Explain the class Grad-CAM explained (its argmax when targets is None).
    indices = None if problem.targets.fn is not None else cam_extras["targets"]
    grads, extras, outputs_ok, grads_ok = contract.call(
        _guided_gradients,
        _layer_logits,
        problem.lm,
        problem.X,
        indices,
        target_fn=problem.targets.fn,
        batch_size=problem.batch_size,
        mesh=problem.mesh,
    )
    values = grads * maps[..., None]
    extras = {
        **extras,
        "grad_cam": maps,
        "guided_backprop": grads,
        "raw_maps": cam_extras["raw_maps"],
    }
    outputs_ok = np.asarray(outputs_ok) & np.asarray(cam_outputs_ok)
    grads_ok = np.asarray(grads_ok) & np.asarray(cam_grads_ok)
    return _report(
        problem.X, problem.single, values, extras, outputs_ok, grads_ok, "guided_grad_cam"
    )
