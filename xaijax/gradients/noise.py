"""SmoothGrad: the input gradient averaged over noisy copies of the input."""

# jaxtyping shape strings such as "m ..." are not Python expressions:
# ruff: noqa: F722, UP037

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxtyping import ArrayLike, Float

from xaijax.core import contract
from xaijax.core.batching import over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets, target_scores
from xaijax.gradients.score_gradients import finish, finite_rows, gradient_sum, outputs_at, prepare

__all__ = ["smoothgrad"]


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
