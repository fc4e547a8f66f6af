"""Randomisation: do the attributions change when the model they explain is destroyed?"""

# jaxtyping shape strings such as "n ..." are not Python expressions:

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from xaijax.core.explanation import Explanation
from xaijax.metrics.attributions import attribution_array

__all__ = ["spearman", "cascading_randomization"]


def spearman(
    a: Float[ArrayLike, "n ..."] | Explanation, b: Float[ArrayLike, "n ..."] | Explanation
) -> Float[np.ndarray, " n"]:
    """Spearman rank correlation between rows of ``a`` and ``b`` (flattened), ties averaged.

    Args:
        a: ``(n, ...)`` attributions (a 1-D array is one instance) or a one-output Explanation.
        b: the same shape as ``a``.

    Returns:
        ``(n,)`` correlations in [-1, 1]; 0 where a row is constant.

    Example:
        >>> spearman([[1.0, 2.0, 3.0]], [[10.0, 20.0, 15.0]]).tolist()
        [0.5]
    """
    a, b = attribution_array(a, "a"), attribution_array(b, "b")
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same shape; got {a.shape} and {b.shape}")
    a = a.reshape(a.shape[0], -1) if a.ndim > 1 else a[None]
    b = b.reshape(a.shape)
    return np.asarray(_spearman(jnp.asarray(a), jnp.asarray(b)))


def _average_ranks(x):
    s = jnp.sort(x)
    lo = jnp.searchsorted(s, x, side="left")
    hi = jnp.searchsorted(s, x, side="right")
    return 0.5 * (lo + hi - 1).astype(x.dtype)


@jax.jit
def _spearman(a, b):
    def one(x, y):
        rx, ry = _average_ranks(x), _average_ranks(y)
        rx, ry = rx - rx.mean(), ry - ry.mean()
        denom = jnp.sqrt((rx * rx).sum() * (ry * ry).sum())
        return jnp.where(denom > 0, (rx * ry).sum() / jnp.where(denom > 0, denom, 1.0), 0.0)

    return jax.vmap(one)(a, b)


def _path_name(path) -> tuple:
    out = []
    for k in path:
        for attr in ("key", "name", "idx"):
            if hasattr(k, attr):
                out.append(getattr(k, attr))
                break
        else:
            out.append(str(k))
    return tuple(out)


def cascading_randomization(
    module, explain: Callable[[Any], Any], *, key, layers: Sequence[tuple] | None = None
) -> dict:
    """The model-parameter randomisation test: re-initialise layers from the top, cumulatively.

    For ``k = 1..L`` the top ``k`` layers of a copy of ``module`` (an NNX module) get fresh random
    weights (kernels LeCun-normal, biases 0, scales 1), ``explain(copy)`` recomputes the maps, and
    their Spearman rank correlation with the original maps is recorded, with and without absolute
    values. A method whose maps stay similar as the model is destroyed does not explain the model.

    Args:
        module: a Flax NNX module (left unchanged).
        explain: ``explain(module) -> (n, ...)`` attribution maps (or a one-output
            Explanation).
        key: a ``jax.random.key``.
        layers: paths of the layers in order from the output down, e.g. ``[("out",), ("hidden",
            1)]``; default every parameter-holding layer, last-defined first.

    Returns:
        ``{"layers": [names...], "spearman": (L, n), "spearman_abs": (L, n)}``.

    References:
        Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018.

    Example:
        >>> import jax, numpy as np
        >>> from flax import nnx
        >>> net = nnx.Sequential(nnx.Linear(3, 8, rngs=nnx.Rngs(0)), nnx.relu,
        ...                      nnx.Linear(8, 1, rngs=nnx.Rngs(1)))
        >>> X = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
        >>> grads = lambda m: jax.vmap(jax.grad(lambda x: m(x[None])[0, 0]))(X)
        >>> res = cascading_randomization(net, grads, key=jax.random.key(0))
        >>> res["layers"], res["spearman"].shape
        (['layers/2', 'layers/0'], (2, 5))
    """
    from flax import nnx

    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    # Some Flax versions end a parameter's path in the Variable's "value" field; drop it.
    names = [n[:-1] if n[-1] == "value" else n for n in (_path_name(p) for p, _ in leaves)]
    if layers is None:
        layers = []
        for name in names:
            if name[:-1] not in layers:
                layers.append(name[:-1])
        layers = layers[::-1]
    layers = [tuple(layer) for layer in layers]
    for layer in layers:
        if not any(name[: len(layer)] == layer for name in names):
            raise ValueError(f"layers: no parameters under {layer}; parameter paths are {names}")
    original = attribution_array(explain(module), "explain(module)")
    keys = jax.random.split(key, len(names))

    def fresh(name, value, k):
        value = jnp.asarray(value)
        if value.ndim >= 2:
            fan_in = int(np.prod(value.shape[:-1]))
            return jax.random.normal(k, value.shape, value.dtype) / np.sqrt(fan_in)
        return jnp.ones_like(value) if name[-1] == "scale" else jnp.zeros_like(value)

    current = [leaf for _, leaf in leaves]
    treedef = jax.tree_util.tree_structure(params)
    rho, rho_abs = [], []
    for layer in layers:
        for j, name in enumerate(names):
            if name[: len(layer)] == layer:
                current[j] = _replace_value(current[j], fresh(name, _value_of(current[j]), keys[j]))
        randomized = nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, current), rest)
        maps = attribution_array(explain(randomized), "explain(module)")
        rho.append(spearman(original, maps))
        rho_abs.append(spearman(np.abs(original), np.abs(maps)))
    return {
        "layers": ["/".join(map(str, layer)) for layer in layers],
        "spearman": np.stack(rho),
        "spearman_abs": np.stack(rho_abs),
    }


def _value_of(leaf):
    return leaf.value if hasattr(leaf, "value") else leaf


def _replace_value(leaf, value):
    if hasattr(leaf, "replace"):
        return leaf.replace(value)
    return value
