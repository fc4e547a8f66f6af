"""RISE: the score-weighted average of random smooth masks (Petsiuk et al., BMVC 2018)."""

# jaxtyping shape strings such as "..." are not Python expressions:
# ruff: noqa: F722, UP037

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from xaijax.core import contract
from xaijax.core.batching import balanced_chunk, map_instances, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets
from xaijax.perturbation.scoring import finish, instance_score, prepare, row_scores

__all__ = ["rise", "rise_masks", "rise_mask", "upsampling_matrix"]


# The paper's code draws an s x s grid with s = 8 (on 224-pixel ImageNet images).
DEFAULT_GRID = 8


def _layout(spatial, cell_size: int | None):
    """``(grid, cells)``: grid cells and pixels per cell on each axis.

    ``cell_size=None`` is the paper's ``s = 8`` cells per side, each ``ceil(D / s)`` pixels;
    an int is the cell's side in pixels, with ``ceil(D / cell_size)`` cells per axis.
    """
    if cell_size is None:
        grid = (DEFAULT_GRID,) * len(spatial)
        return grid, tuple(-(-int(d) // DEFAULT_GRID) for d in spatial)
    return tuple(-(-int(d) // cell_size) for d in spatial), (cell_size,) * len(spatial)


@functools.cache
def upsampling_matrix(grid: int, size: int) -> np.ndarray:
    """``(size, grid)``: linear interpolation of ``grid`` values onto ``size`` points.

    scikit-image's ``resize(order=1, mode="reflect", anti_aliasing=False)``, which the paper's
    code uses: output ``o`` reads input coordinate ``(o + 0.5) * grid / size - 0.5`` (pixel
    centres), and coordinates before the first or past the last value mirror about it.

    Example:
        >>> upsampling_matrix(2, 4).round(3).tolist()
        [[0.75, 0.25], [0.75, 0.25], [0.25, 0.75], [0.25, 0.75]]
    """
    c = (np.arange(size) + 0.5) * grid / size - 0.5
    lo = np.floor(c).astype(int)
    frac = c - lo

    def mirror(i):
        if grid == 1:
            return np.zeros_like(i)
        period = 2 * (grid - 1)
        i = np.abs(i) % period
        return np.where(i > grid - 1, period - i, i)

    A = np.zeros((size, grid), np.float64)
    np.add.at(A, (np.arange(size), mirror(lo)), 1 - frac)
    np.add.at(A, (np.arange(size), mirror(lo + 1)), frac)
    return A.astype(np.float32)


def rise_mask(grid, shift, spatial, cells=None) -> jax.Array:
    """One RISE mask: a binary ``grid`` (``s`` cells on an axis) upsampled and cropped.

    The grid is upsampled linearly to ``(s + 1) * c`` points per axis (``c`` pixels per cell,
    ``ceil(D / s)`` by default) and cropped to ``D`` starting at ``shift`` (in ``[0, c)``), as
    the paper's ``generate_masks``.

    Args:
        grid: ``(s,)`` or ``(s_h, s_w)`` values (0/1).
        shift: ``(1,)`` or ``(2,)`` int offsets of the crop.
        spatial: ``(L,)`` or ``(H, W)``, the mask's shape.
        cells: pixels per cell on each axis, or ``None`` for ``ceil(D / s)``.

    Returns:
        ``(*spatial)`` float32 mask values in ``[0, 1]``.
    """
    grid = jnp.asarray(grid, jnp.float32)
    if cells is None:
        cells = tuple(-(-int(d) // s) for d, s in zip(spatial, grid.shape, strict=True))
    mask = grid
    for axis, (d, cell) in enumerate(zip(spatial, cells, strict=True)):
        s = grid.shape[axis]
        A = jnp.asarray(upsampling_matrix(s, (s + 1) * cell))
        rows = jax.lax.dynamic_slice_in_dim(A, shift[axis], d, axis=0)  # (d, s)
        mask = jnp.moveaxis(jnp.tensordot(rows, mask, ((1,), (axis,))), 0, axis)
    return mask


def _draw(key, spatial, cell_size: int | None, p: float):
    """``(grid, shift)`` of one mask from its key."""
    grid_shape, cells = _layout(spatial, cell_size)
    k_grid, k_shift = jax.random.split(key)
    grid = jax.random.bernoulli(k_grid, p, grid_shape).astype(jnp.float32)
    shift = jax.random.randint(k_shift, (len(spatial),), 0, jnp.asarray(cells, jnp.int32))
    return grid, shift


def _masks(keys, spatial, cell_size, p):
    cells = _layout(spatial, cell_size)[1]

    def one(k):
        return rise_mask(*_draw(k, spatial, cell_size, p), spatial, cells)

    return jax.vmap(one)(keys)


def rise_masks(
    key, num_masks: int, spatial, cell_size: int | None = None, p: float = 0.5
) -> jax.Array:
    """The RISE masks one key draws: ``(num_masks, *spatial)`` float32 in ``[0, 1]``.

    Mask ``j`` comes from ``jax.random.split(key, num_masks)[j]``: a grid of independent
    Bernoulli(``p``) cells of ``cell_size`` pixels (default: 8 x 8 cells over the image) and
    a random crop offset (:func:`rise_mask`). :func:`rise` explains instance ``i`` of ``n``
    with the masks of ``jax.random.split(key, n)[i]`` (the contract's per-instance keys;
    ``n = 1`` for one instance), so ``rise_masks(jax.random.split(key, n)[i], ...)`` are the
    masks it used.

    Example:
        >>> import jax
        >>> m = rise_masks(jax.random.key(0), 3, (8, 8), cell_size=4)
        >>> m.shape, bool((m >= 0).all() & (m <= 1).all())
        ((3, 8, 8), True)
    """
    key = contract.instance_keys(key, None)
    if isinstance(spatial, (int, np.integer)):
        spatial = (spatial,)
    if not (
        isinstance(spatial, (tuple, list))
        and len(spatial) in (1, 2)
        and all(isinstance(d, (int, np.integer)) and d >= 1 for d in spatial)
    ):
        raise ValueError(f"spatial must be (H, W) or (L,) positive ints; got {spatial!r}")
    spatial, num_masks, cell_size, p = _check(spatial, num_masks, cell_size, p)
    return _masks_jit(key, num_masks, spatial, cell_size, p)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _masks_jit(key, num_masks, spatial, cell_size, p):
    return _masks(jax.random.split(key, num_masks), spatial, cell_size, p)


def _check(spatial, num_masks, cell_size, p):
    spatial = tuple(int(d) for d in spatial)
    num_masks = contract.check_int("num_masks", num_masks, minimum=1)
    if cell_size is not None:
        cell_size = contract.check_int("cell_size", cell_size, minimum=1)
    p = contract.check_number("p", p, minimum=0.0, maximum=1.0, strict=True)
    return spatial, num_masks, cell_size, p


@functools.partial(
    jax.jit,
    static_argnames=(
        "model",
        "target_fn",
        "fixed",
        "num_masks",
        "cell_size",
        "p",
        "batch_size",
        "mesh",
    ),
)
def _rise(
    model, params, X, keys, indices, *, target_fn, fixed, num_masks, cell_size, p, batch_size, mesh
):
    input_shape = X.shape[1:]
    spatial = input_shape[: min(len(input_shape), 2)]
    trailing = (1,) * (len(input_shape) - len(spatial))
    chunk = balanced_chunk(num_masks, batch_size)
    steps = math.ceil(num_masks / chunk)

    def local(sharded, params):
        def per_instance(args):
            x, key, index = args
            s0, t, ok0 = instance_score(model, params, x, index, target_fn, fixed)
            mask_keys = jax.random.split(key, num_masks)

            def step(carry, k):
                total, ok = carry
                j = k * chunk + jnp.arange(chunk)
                valid = j < num_masks
                masks = _masks(mask_keys[jnp.minimum(j, num_masks - 1)], spatial, cell_size, p)
                rows = x[None] * masks.reshape(masks.shape + trailing).astype(x.dtype)
                scores, finite = row_scores(model, params, rows, t, target_fn)
                scores = jnp.where(valid, scores, jnp.zeros((), scores.dtype))
                total = total + jnp.tensordot(scores, masks.astype(total.dtype), 1)
                return (total, ok & jnp.all(finite | ~valid)), None

            init = (jnp.zeros(spatial, X.dtype), ok0)
            if steps == 1:
                (total, ok), _ = step(init, 0)
            else:
                (total, ok), _ = jax.lax.scan(step, init, jnp.arange(steps))
            return total / (num_masks * p), s0, t, ok

        return map_instances(per_instance, sharded, num_masks + 1, batch_size)

    values, scores, targets, finite = over_instances(local, (X, keys, indices), params, mesh=mesh)
    return values, {"targets": targets, "scores": scores}, finite


@explainer(kind="map", inputs="image", random=True)
def rise(
    f,
    X: Float[ArrayLike, "..."],
    *,
    key,
    num_masks: int = 2000,
    cell_size: int | None = None,
    p: float = 0.5,
    targets: Targets = None,
    batch_size: int | None = None,
    mesh=None,
) -> Explanation:
    """RISE: the average of random smooth masks weighted by the target score of the masked input.

    ``saliency = sum_j f(x * M_j) M_j / (N p)`` over ``N = num_masks`` masks ``M_j``: an
    ``s_h x s_w`` grid of cells of ``cell_size`` pixels, each kept with probability ``p``,
    upsampled linearly to ``s + 1`` cells and cropped at a random offset (the paper's code,
    :func:`rise_masks`). Masks are drawn from ``key`` inside the compiled program,
    ``batch_size`` model rows at a time, and never stored: memory does not grow with ``N``.

    Images ``(H, W, C)`` (the mask covers every channel of a pixel) and ``(H, W)`` are the main
    case; rows or sequences ``(L,)`` get one-dimensional masks the same way.

    Args:
        f: the model ``X (n, *input_shape) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX module, or a host callable (NumPy in and out).
        X: one instance or a batch ``(n, *input_shape)``, decided by the model's input shape.
        key: a ``jax.random.key`` (or ``(n,)`` keys, one per instance); same key, same map.
        num_masks: ``N``. Default 2000 (the paper uses 4000 for ImageNet at 224 pixels; 2000 is
            the code's example and already smooth for small images).
        cell_size: the side of a grid cell in pixels (the paper's ``C_H = C_W``): the grid
            has ``ceil(H / cell_size) x ceil(W / cell_size)`` cells. ``None`` (default): the
            paper's code's ``s = 8`` cells per side, ``ceil(H / 8)`` pixels each (28 pixels on
            224-pixel images).
        p: the probability a cell is kept, in ``(0, 1]`` (the paper's 0.5).
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints, or
            a callable ``fn(outputs) -> (n,)``.
        batch_size: most rows passed to the model at once; ``None`` picks a default.
        mesh: optional :class:`jax.sharding.Mesh` to shard the instances over.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values`` ``(n, H, W)`` for
        images (``(n, L)`` for sequences), ``base_values`` zeros and extras ``targets (n,)``
        (-1 for a callable) and ``scores (n,)``.

    Raises:
        ValueError: inputs of rank other than 1 to 3, ``num_masks < 1``, ``cell_size < 1``,
            ``p`` outside ``(0, 1]``, bad keys or targets, or NaN/inf model outputs.

    References:
        Petsiuk, Das & Saenko 2018, RISE: Randomized Input Sampling for Explanation of
        Black-box Models, BMVC.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> f = lambda X: X.sum(axis=(1, 2, 3))
        >>> exp = rise(f, jnp.ones((8, 8, 3)), key=jax.random.key(0), num_masks=64, cell_size=4)
        >>> exp.values.shape
        (8, 8)
    """
    problem = prepare(f, X, targets, batch_size=batch_size, mesh=mesh)
    input_shape = problem.input_shape
    if not 1 <= len(input_shape) <= 3:
        raise ValueError(
            f"X must hold images (H, W, C) or (H, W), or sequences (L,): one input of rank 1 "
            f"to 3; got one input of shape {input_shape}"
        )
    spatial = input_shape[: min(len(input_shape), 2)]
    _, num_masks, cell_size, p = _check(spatial, num_masks, cell_size, p)
    keys = contract.instance_keys(key, problem.X.shape[0])
    values, extras, finite = contract.call(
        _rise,
        problem.model,
        problem.params,
        problem.X,
        keys,
        problem.indices,
        target_fn=problem.targets.fn,
        fixed=problem.targets.indices is not None,
        num_masks=num_masks,
        cell_size=cell_size,
        p=p,
        batch_size=problem.batch_size,
        mesh=problem.mesh,
    )
    return finish(problem, values, extras, finite, method="rise")
