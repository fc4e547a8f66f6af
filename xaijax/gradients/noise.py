"""SmoothGrad: the input gradient averaged over noisy copies of the input."""

# jaxtyping shape strings such as "m ..." are not Python expressions:
# ruff: noqa: F722, UP037

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from xaijax.core import contract
from xaijax.core.batching import over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets, target_scores
from xaijax.gradients.layer import (
    NoisyLayer,
    layer_gradient_x_input,
    layer_integrated_gradients,
    layer_rows_shape,
)
from xaijax.gradients.score_gradients import finish, finite_rows, gradient_sum, outputs_at, prepare

__all__ = ["smoothgrad", "noise_tunnel", "NT_TYPES"]


@functools.partial(
    jax.jit, static_argnames=("model", "target_fn", "num_samples", "batch_size", "mesh")
)
def _smoothgrad(
    model, params, X, indices, keys, noise_level, *, target_fn, num_samples, batch_size, mesh
):
    def local(sharded, shared):
        X, indices, keys = sharded
        params, noise_level = shared
        n = X.shape[0]
        outputs = outputs_at(model, params, X, batch_size)
        scores, t = target_scores(outputs, indices, target_fn)
        fixed = None if target_fn is not None or outputs.ndim == 1 else t
        axes = tuple(range(1, X.ndim))
        sigma = noise_level * (X.max(axis=axes) - X.min(axis=axes))

        def point(i, s):
            # Sample s of instance i comes from instance i's key alone, so a batch equals a loop
            # over its instances (given the same per-instance keys), whatever the chunking.
            noise = jax.random.normal(jax.random.fold_in(keys[i], s), X.shape[1:], X.dtype)
            return X[i] + sigma[i] * noise, None

        total, points_ok, grads_ok = gradient_sum(
            model,
            params,
            point,
            lambda g, aux, i, s: g,
            fixed,
            target_fn,
            n=n,
            num_points=num_samples,
            batch_size=batch_size,
        )
        extras = {"targets": t, "scores": scores, "logits": outputs, "sigma": sigma}
        return total / num_samples, extras, finite_rows(outputs) & points_ok, grads_ok

    return over_instances(local, (X, indices, keys), (params, noise_level), mesh=mesh)


@explainer(kind="map", random=True, needs_jax=True)
def smoothgrad(
    f,
    X: Float[ArrayLike, "..."],
    targets: Targets = None,
    *,
    key,
    num_samples: int = 50,
    noise_level: float = 0.15,
    batch_size: int | None = None,
    mesh=None,
    batched=contract.MISSING,
) -> Explanation:
    """SmoothGrad: the input gradient averaged over ``x + N(0, sigma^2)`` noise samples.

    ``sigma = noise_level * (max(x) - min(x))`` per instance, as in the paper. Noise sample
    ``s`` of instance ``i`` is drawn from instance ``i``'s key only, so explaining a slice of the
    instances with the matching slice of ``(n,)`` keys gives that slice of the whole.

    Args:
        f: the model ``X (n, *input_shape) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX or Equinox module (not a host NumPy model).
        X: one instance or a batch ``(n, *input_shape)``, decided by the model's input shape.
        targets: the explained score: ``None`` (the predicted class at ``x``, kept for every
            noise sample), an int, ``(n,)`` ints, or a callable ``fn(outputs) -> (n,)``.
        key: a ``jax.random.key`` or raw ``PRNGKey``, one for the call or ``(n,)``, one per
            instance; the same key gives the same values, bit for bit.
        num_samples: noise samples per instance (an int >= 1).
        noise_level: noise standard deviation relative to each instance's value range (a
            finite number >= 0).
        batch_size: most rows passed to the model at once (the ``n * num_samples`` noisy rows
            run in chunks of it); ``None`` picks a default.
        mesh: optional :class:`jax.sharding.Mesh` to shard the instances over.
        batched: deprecated; ``X``'s shape decides.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values`` shaped like ``X``,
        ``base_values`` zeros and extras ``sigma (n,)``, ``targets``, ``scores``, ``logits``.

    Raises:
        ValueError: for bad shapes, targets or options, or when the model's outputs or
            gradients are NaN or inf at the inputs or at any noise sample.

    References:
        Smilkov et al. 2017, SmoothGrad: removing noise by adding noise, arXiv:1706.03825.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> exp = smoothgrad(lambda X: X @ jnp.array([1.0, 2.0]), jnp.ones((3, 2)),
        ...                  key=jax.random.key(0), num_samples=4)
        >>> exp.values[0].tolist()
        [1.0, 2.0]
    """
    num_samples = contract.check_int("num_samples", num_samples, minimum=1)
    noise_level = contract.check_number("noise_level", noise_level, minimum=0.0)
    problem = prepare(f, X, targets, batch_size=batch_size, mesh=mesh, batched=batched)
    keys = contract.instance_keys(key, problem.X.shape[0])
    values, extras, outputs_ok, grads_ok = contract.call(
        _smoothgrad,
        problem.model,
        problem.params,
        problem.X,
        problem.targets.indices,
        keys,
        jnp.asarray(noise_level, problem.X.dtype),
        target_fn=problem.targets.fn,
        num_samples=num_samples,
        batch_size=problem.batch_size,
        mesh=problem.mesh,
    )
    base = jnp.zeros(problem.X.shape[:1], problem.X.dtype)
    return finish(
        problem, values, base, extras, outputs_ok, grads_ok, method="smoothgrad", kind="map"
    )


NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


def noise_tunnel(
    explainer,
    model,
    X: Float[ArrayLike, "n ..."],
    *,
    nt_type: str = "smoothgrad",
    nt_samples: int = 5,
    stdevs: float = 1.0,
    key,
    **explainer_kwargs,
):
    """Any gradient explainer averaged over noisy copies of the input (captum's ``NoiseTunnel``).

    Each instance is explained at ``nt_samples`` copies ``x + N(0, stdevs^2)`` (absolute noise,
    as captum) in one call of ``explainer`` on the stacked copies, and the attributions are
    aggregated: ``"smoothgrad"`` their mean, ``"smoothgrad_sq"`` the mean of their squares,
    ``"vargrad"`` their variance (``E[a^2] - E[a]^2``). Copy ``s`` of instance ``i`` draws from
    instance ``i``'s key only.

    Layer explainers (``layer_integrated_gradients``, ``layer_gradient_x_input``) take
    ``layer=`` among ``explainer_kwargs``. For float ``X`` the noise is added to ``X``. For
    integer token ids ``X`` (which cannot be noised) it is added at the layer instead: each copy
    is explained with the layer's output ``A + N(0, stdevs^2)`` (e.g. the embeddings plus
    noise, shaped like the layer's output per instance) both in the forward pass and as the
    point of attribution, so layer IG's path runs from the baseline to the noisy ``A``. No noise
    is added at padding tokens (``pad_id``), which keep exactly 0 attribution;
    ``extras["noise"]`` is the noise added. Other explainers refuse integer ``X``.

    Args:
        explainer: a gradient explainer ``explainer(model, X, **kw)`` (or ``(model, layer, X)``).
        model: its model.
        X: a batch ``(n, *input_shape)`` of floats, or int token ids ``(n, L)`` for a layer
            explainer (one instance: ``X[None]``).
        nt_type: ``"smoothgrad"``, ``"smoothgrad_sq"`` or ``"vargrad"``.
        nt_samples: noisy copies per instance (an int >= 1).
        stdevs: the noise standard deviation (a finite number >= 0).
        key: a ``jax.random.key`` or raw ``PRNGKey``, one or ``(n,)``.
        **explainer_kwargs: passed on (``targets``, ``num_steps``, ``batch_size``, ...).

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` (``base_values`` 0) with the
        aggregated values; extras ``samples`` (``(nt_samples, n, ...)``, every copy's values)
        and ``noise`` (``(nt_samples, n, *input_shape)``, or ``(nt_samples, n, *layer_row)``
        at the layer for token ids).

    References:
        Smilkov et al. 2017 (SmoothGrad); Adebayo et al. 2018, Local Explanation Methods for
        Deep Neural Networks Lack Sensitivity to Parameter Values (VarGrad); captum's
        ``NoiseTunnel``.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from xaijax.gradients.local import gradient_x_input
        >>> f = lambda X: X @ jnp.array([1.0, 2.0])
        >>> exp = noise_tunnel(gradient_x_input, f, jnp.ones((1, 2)), nt_samples=4,
        ...                    stdevs=0.0, key=jax.random.key(0))
        >>> exp.values.tolist()
        [[1.0, 2.0]]

        Token ids, noise at the embeddings:

        >>> from xaijax.gradients.layer import layer_gradient_x_input
        >>> from xaijax.zoo import build
        >>> from xaijax.zoo.transformers import TextTransformer
        >>> net = build(lambda rngs: TextTransformer(30, 2, max_len=8, dim=16, depth=1, rngs=rngs))
        >>> exp = noise_tunnel(layer_gradient_x_input, net, jnp.array([[1, 5, 7, 0]]),
        ...                    layer="embed", nt_samples=2, stdevs=0.1, key=jax.random.key(0))
        >>> exp.values.shape, exp.extras["noise"].shape, float(exp.values[0, 3])
        ((1, 4), (2, 1, 4, 16), 0.0)
    """
    from xaijax.core.registry import explainers

    nt_type = contract.check_choice("nt_type", nt_type, NT_TYPES)
    nt_samples = contract.check_int("nt_samples", nt_samples, minimum=1)
    stdevs = contract.check_number("stdevs", stdevs, minimum=0.0)
    if not callable(explainer):
        raise TypeError(f"explainer must be a gradient explainer function; got {explainer!r}")
    raw = np.asarray(X)
    if np.issubdtype(raw.dtype, np.integer):
        return _at_the_layer(
            explainer, model, raw, nt_type, nt_samples, stdevs, key, explainer_kwargs
        )
    X = contract.as_float_array("X", X)
    if X.ndim < 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a batch (n, *input_shape); got shape {X.shape}")
    n = X.shape[0]
    keys = contract.instance_keys(key, n)
    noise = _tunnel_noise(keys, jnp.asarray(stdevs, X.dtype), X.shape[1:], nt_samples)
    noisy = (jnp.asarray(X)[None] + noise).reshape((nt_samples * n,) + X.shape[1:])
    info = explainers().get(getattr(explainer, "__name__", ""))
    kwargs = dict(explainer_kwargs)
    targets = _tiled_targets(kwargs.pop("targets", None), nt_samples)
    if info is not None and info.random:
        kwargs["key"] = jax.vmap(jax.random.fold_in, (None, 0))(keys[0], jnp.arange(nt_samples * n))
    if info is not None and info.model_form == "layer":
        layer = kwargs.pop("layer")
        exp = explainer(model, layer, noisy, targets=targets, **kwargs)
    else:
        exp = explainer(model, noisy, targets=targets, **kwargs)
    return _aggregate(exp, X, noise, explainer, nt_type, nt_samples)


def _aggregate(exp, X, noise, explainer, nt_type, nt_samples):
    n = X.shape[0]
    samples = jnp.asarray(exp.values).reshape((nt_samples, n) + jnp.shape(exp.values)[1:])
    mean = samples.mean(axis=0)
    sq = (samples * samples).mean(axis=0)
    values = {"smoothgrad": mean, "smoothgrad_sq": sq, "vargrad": sq - mean * mean}[nt_type]
    name = getattr(explainer, "__name__", "explainer")
    return contract.pack(
        values,
        jnp.zeros((n,), values.dtype),
        X,
        single=False,
        kind="map",
        method=f"noise_tunnel({name})",
        extras={"samples": samples, "noise": noise},
    )


def _tiled_targets(targets, nt_samples):
    if targets is not None and not callable(targets) and np.ndim(targets) == 1:
        return np.tile(np.asarray(targets), nt_samples)
    return targets


def _at_the_layer(explainer, model, X, nt_type, nt_samples, stdevs, key, explainer_kwargs):
    """noise_tunnel on token ids: the noise is an offset to the layer's output (its
    :class:`~xaijax.gradients.layer.NoisyLayer`), the layer explainer's own mechanism."""
    if explainer not in (layer_integrated_gradients, layer_gradient_x_input):
        name = getattr(explainer, "__name__", repr(explainer))
        raise ValueError(
            f"X holds integer token ids, which noise_tunnel can only noise at a layer: use a "
            f"layer explainer (layer_integrated_gradients or layer_gradient_x_input with "
            f"layer=, e.g. 'embed'), not {name}; or explain a float model on the embeddings"
        )
    kwargs = dict(explainer_kwargs)
    if "layer" not in kwargs:
        raise TypeError(f"layer= is required for {explainer.__name__} (e.g. layer='embed')")
    layer = kwargs.pop("layer")
    if X.ndim < 2 or X.shape[0] == 0:
        raise ValueError(f"X must be a batch (n, L) of token ids; got shape {X.shape}")
    X = X.astype(np.int32)
    n = X.shape[0]
    keys = contract.instance_keys(key, n)
    row = layer_rows_shape(model, layer, X)[1:]
    noise = _tunnel_noise(keys, jnp.asarray(stdevs, jnp.float32), row, nt_samples)
    tiled = np.tile(X, (nt_samples,) + (1,) * (X.ndim - 1))
    offset = NoisyLayer(layer, noise.reshape((nt_samples * n,) + row))
    targets = _tiled_targets(kwargs.pop("targets", None), nt_samples)
    exp = explainer(model, offset, tiled, targets=targets, **kwargs)
    added = jnp.asarray(exp.extras["layer_noise"]).reshape(noise.shape)
    return _aggregate(exp, X, added, explainer, nt_type, nt_samples)


@functools.partial(jax.jit, static_argnames=("row", "nt_samples"))
def _tunnel_noise(keys, stdevs, row, nt_samples):
    def one(k):
        return jax.vmap(lambda s: jax.random.normal(jax.random.fold_in(k, s), row))(
            jnp.arange(nt_samples)
        )

    return stdevs * jnp.swapaxes(jax.vmap(one)(keys), 0, 1)
