"""FullGrad (Srinivas & Fleuret 2019), as pytorch-grad-cam's ``FullGrad``.

The map is the sum of an input term and one term per biased layer:

* ``|x * dS/dx|``, each input channel min-max scaled, summed over channels;
* for every ``nnx.Conv`` with a bias and every ``nnx.BatchNorm`` with a bias (the layers
  pytorch-grad-cam picks: ``Conv2d`` and ``BatchNorm2d``; dense layers are not included),
  ``|b_c * dS/dO_c|`` with ``O`` the layer's output and ``b`` its bias (for batch norm the
  effective bias ``beta - mu * gamma / sqrt(var + eps)``), each channel min-max scaled,
  upsampled to the image and summed over channels;

(each channel scaled as pytorch-grad-cam: ``(m - min) / (max - min + 1e-7)``, so a channel with
next to no evidence adds next to nothing)

and the total is min-max normalised. The layers are found by walking the module; each is hooked
through :class:`xaijax.core.layers.LayerModel` (one gradient pass per biased layer, in one
compiled function).
"""

# jaxtyping shape strings such as "*n H W C" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from xaijax.core import contract
from xaijax.core.batching import balanced_chunk, check_mesh, map_row_chunks, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.layers import layer_model
from xaijax.core.model import is_nnx_module
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets, check_target_fn, resolve_targets, target_scores

__all__ = ["full_grad", "bias_layers"]


def bias_layers(module) -> list[tuple]:
    """Paths of the layers FullGrad uses: ``nnx.Conv`` and ``nnx.BatchNorm`` with a bias.

    Example:
        >>> from flax import nnx
        >>> class Net(nnx.Module):
        ...     def __init__(self):
        ...         self.conv = nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))
        ...         self.fc = nnx.Linear(4, 2, rngs=nnx.Rngs(0))
        >>> bias_layers(Net())
        [('conv',)]
    """
    from flax import nnx

    found = []
    for path, sub in nnx.iter_modules(module):
        if isinstance(sub, nnx.Conv | nnx.BatchNorm) and getattr(sub, "bias", None) is not None:
            found.append(tuple(path))
    return found


def _effective_bias(module, path):
    from flax import nnx

    layer = module
    for key in path:
        layer = layer[key] if isinstance(key, int) else getattr(layer, key)
    bias = jnp.asarray(layer.bias[...])
    if isinstance(layer, nnx.BatchNorm):
        scale = 1.0 if layer.scale is None else jnp.asarray(layer.scale[...])
        mean, var = jnp.asarray(layer.mean[...]), jnp.asarray(layer.var[...])
        bias = bias - mean * scale / jnp.sqrt(var + layer.epsilon)
    return bias


def _channel_minmax(a):
    """Min-max scale each ``(n, h, w, c)`` channel map over ``h, w`` as pytorch-grad-cam's
    ``scale_cam_image``: ``(a - min) / (span + 1e-7)``, so that a channel with (almost) no
    evidence stays (almost) zero instead of being blown up to 1."""
    lo = a.min(axis=(1, 2), keepdims=True)
    span = a.max(axis=(1, 2), keepdims=True) - lo
    return (a - lo) / (span + 1e-7)


def _rows_ok(a):
    return jnp.isfinite(a).reshape(a.shape[0], -1).all(axis=1)


@functools.partial(
    jax.jit, static_argnames=("target_fn", "resize", "normalize", "batch_size", "mesh")
)
def _full_grad(lms, biases, X, indices, *, target_fn, resize, normalize, batch_size, mesh):
    def local(sharded, replicated):
        X, indices = sharded
        lms, biases = replicated
        n, height, width = X.shape[:3]

        def chunk(rows):
            x = X[rows]
            t = None if indices is None else indices[rows]

            def gradients(lm):
                a_shape = jax.eval_shape(lambda x: lm.forward(x)[1], x)

                def scored(x, delta):
                    logits, _ = lm.forward(x, delta)
                    scores, tt = target_scores(logits, t, target_fn)
                    return scores, (logits, tt, scores)

                delta0 = jnp.zeros(a_shape.shape, a_shape.dtype)
                _, vjp, aux = jax.vjp(scored, x, delta0, has_aux=True)
                gx, g = vjp(jnp.ones(aux[2].shape, aux[2].dtype))
                return gx, g, aux

            gx, g0, (logits, tt, scores) = gradients(lms[0])
            gs = [g0] + [gradients(lm)[1] for lm in lms[1:]]
            total = _channel_minmax(jnp.abs(x * gx)).sum(axis=-1)
            ok = _rows_ok(logits) & _rows_ok(gx)
            for g, b in zip(gs, biases, strict=True):
                ok = ok & _rows_ok(g)
                terms = _channel_minmax(jnp.abs(g * b.reshape((1, 1, 1, -1))))
                up = jax.image.resize(
                    terms, terms.shape[:1] + (height, width) + terms.shape[3:], resize
                )
                total = total + up.sum(axis=-1)
            return total, logits, tt, scores, ok

        total, logits, t, scores, ok = map_row_chunks(chunk, n, balanced_chunk(n, batch_size))
        if normalize:
            lo = total.min(axis=(1, 2), keepdims=True)
            span = total.max(axis=(1, 2), keepdims=True) - lo
            total = (total - lo) / jnp.where(span == 0, jnp.ones((), span.dtype), span)
        return total, {"targets": t, "scores": scores, "logits": logits}, ok

    return over_instances(local, (X, indices), (lms, biases), mesh=mesh)


@explainer(kind="map", inputs="image", needs_jax=True, model_form="module")
def full_grad(
    model,
    images: Float[ArrayLike, "*n H W C"],
    targets: Targets = None,
    *,
    resize: str = "bilinear",
    normalize: bool = True,
    batch_size: int | None = None,
    mesh=None,
) -> Explanation:
    """FullGrad: input-gradient and bias-gradient saliency summed over every biased layer.

    ``|x * dS/dx|`` plus, for each ``nnx.Conv`` / ``nnx.BatchNorm`` with a bias,
    ``sum_c |b_c * dS/dO_c|`` (``O`` the layer's output), every channel min-max normalised and
    upsampled to the image before the sums, the total min-max normalised: pytorch-grad-cam's
    ``FullGrad`` (equal to it on a PyTorch twin, tests/test_cam_extras.py). Each biased layer
    must run once per forward pass.

    Args:
        model: a Flax NNX module ``X (n, H, W, C) -> logits (n, K)`` (its biased layers are
            found by walking it; it is never modified, batch norm runs in eval mode).
        images: ``(n, H, W, C)`` or one image ``(H, W, C)``.
        targets: ``None`` (the predicted class), an int, ``(n,)`` ints, or ``fn(logits)``.
        resize: ``"bilinear"`` (default) or ``"nearest"`` upsampling of the layer terms.
        normalize: min-max normalise each map to ``[0, 1]`` (pytorch-grad-cam always does).
        batch_size: most images passed to the model at once; ``None`` picks a default.
        mesh: optional :class:`jax.sharding.Mesh` to shard the images over.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values (n, H, W)`` and extras
        ``targets``, ``scores``, ``logits``.

    Raises:
        TypeError: if ``model`` is not an NNX module.
        ValueError: for bad images, targets or options, or NaN model outputs or gradients.

    References:
        Srinivas & Fleuret 2019, Full-Gradient Representation for Neural Network
        Visualization, NeurIPS.

    Example:
        >>> import jax.numpy as jnp
        >>> from flax import nnx
        >>> class Net(nnx.Module):
        ...     def __init__(self):
        ...         self.conv = nnx.Conv(3, 4, (3, 3), rngs=nnx.Rngs(0))
        ...         self.fc = nnx.Linear(4, 2, rngs=nnx.Rngs(0))
        ...     def __call__(self, x):
        ...         return self.fc(nnx.relu(self.conv(x)).mean(axis=(1, 2)))
        >>> full_grad(Net(), jnp.ones((2, 8, 8, 3)) / 2, targets=1).values.shape
        (2, 8, 8)
    """
    if not is_nnx_module(model):
        raise TypeError(
            f"model must be a Flax NNX module (FullGrad walks it for its biased layers); got "
            f"{type(model).__name__}"
        )
    if not isinstance(normalize, bool | np.bool_):
        raise TypeError(f"normalize must be True or False; got {normalize!r}")
    contract.check_choice("resize", resize, ("bilinear", "nearest"))
    X = contract.as_float_array("images", images)
    if X.ndim not in (3, 4):
        raise ValueError(
            f"images must be NHWC (n, H, W, C) or one image (H, W, C); got shape {X.shape}"
        )
    X, single = contract.split_instances(X, X.shape[-3:], name="images")
    batch_size = contract.resolve_batch_size(batch_size, X.shape[1:], X.dtype)
    mesh = check_mesh(mesh)
    paths = bias_layers(model)
    lms = tuple(layer_model(model, p) for p in paths)
    biases = tuple(_effective_bias(model, p) for p in paths)
    if not lms:
        raise ValueError(
            f"{type(model).__name__} has no nnx.Conv or nnx.BatchNorm layer with a bias; "
            "FullGrad needs at least one"
        )
    try:
        logits_shape = jax.eval_shape(lambda x: lms[0].forward(x)[0], X).shape
    except Exception as err:
        raise ValueError(
            f"the model failed on images of shape {tuple(X.shape)}: {type(err).__name__}: {err}"
        ) from err
    if len(logits_shape) not in (1, 2):
        raise ValueError(f"model must return logits (n,) or (n, K); got shape {logits_shape}")
    num_classes = logits_shape[1] if len(logits_shape) == 2 else None
    spec = resolve_targets(targets, X.shape[0], num_classes)
    if spec.fn is not None:
        check_target_fn(spec.fn, jax.ShapeDtypeStruct((2,) + tuple(logits_shape[1:]), X.dtype))
    maps, extras, ok = contract.call(
        _full_grad,
        lms,
        biases,
        X,
        spec.indices,
        target_fn=spec.fn,
        resize=resize,
        normalize=normalize,
        batch_size=batch_size,
        mesh=mesh,
    )
    return contract.pack(
        maps,
        np.zeros(X.shape[:1], np.asarray(maps).dtype),
        X,
        single=single,
        kind="map",
        method="full_grad",
        extras=extras,
        finite=ok,
        what="the model (its outputs or gradients)",
    )
