"""Occlusion: a window slid over the input, set to a baseline; captum's ``Occlusion``."""

# jaxtyping shape strings such as "..." are not Python expressions:
# ruff: noqa: F722, UP037

from __future__ import annotations

import dataclasses
import math
import numbers

import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float

from xaijax.core.explanation import Explanation
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets
from xaijax.perturbation.scoring import as_baseline, finish, prepare, run

__all__ = ["occlusion", "window_counts"]


def window_counts(input_shape, window, strides) -> tuple[int, ...]:
    """Window positions per axis, as captum counts them: ``ceil((D - w) / s) + 1``.

    The last position may run past the end of an axis (when the stride does not divide
    ``D - w``); that window is cut at the border.

    Example:
        >>> window_counts((8, 8, 3), (3, 3, 3), (2, 2, 3))
        (4, 4, 1)
    """
    return tuple(
        math.ceil((d - w) / s) + 1 for d, w, s in zip(input_shape, window, strides, strict=True)
    )


def _cover(size: int, window: int, stride: int, count: int) -> np.ndarray:
    """``(size, count)``: whether element ``p`` of an axis lies in window position ``j``."""
    p, start = np.arange(size)[:, None], stride * np.arange(count)[None, :]
    return ((p >= start) & (p < start + window)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class _Windows:
    """The occluded copies of one input: one per window position (static, hashable)."""

    input_shape: tuple[int, ...]
    window: tuple[int, ...]
    strides: tuple[int, ...]

    @property
    def counts(self) -> tuple[int, ...]:
        return window_counts(self.input_shape, self.window, self.strides)

    @property
    def num_rows(self) -> int:
        return math.prod(self.counts)

    def perturb(self, x, fill, aux, rows):
        del aux
        c, rank = rows.shape[0], len(self.input_shape)
        starts = jnp.stack(jnp.unravel_index(rows, self.counts), axis=1)  # (c, rank)
        inside = jnp.ones((c,) + (1,) * rank, bool)
        for d, (size, w, s) in enumerate(
            zip(self.input_shape, self.window, self.strides, strict=True)
        ):
            p = jnp.arange(size)[None, :]
            start = (starts[:, d] * s)[:, None]
            axis = (p >= start) & (p < start + w)  # (c, size)
            shape = (c,) + tuple(size if e == d else 1 for e in range(rank))
            inside = inside & axis.reshape(shape)
        return jnp.where(inside, fill[None], x[None])

    def aggregate(self, drops, aux):
        del aux
        n = drops.shape[0]
        total = drops.reshape((n,) + self.counts)
        covered = np.ones((), np.float32)
        for d, (size, w, s, k) in enumerate(
            zip(self.input_shape, self.window, self.strides, self.counts, strict=True)
        ):
            cover = _cover(size, w, s, k)
            # The total over the windows covering each element, one axis at a time.
            total = jnp.moveaxis(
                jnp.tensordot(total, jnp.asarray(cover, drops.dtype), ((1 + d,), (1,))),
                -1,
                1 + d,
            )
            covered = np.multiply.outer(covered, cover.sum(axis=1))
        covered = covered.reshape(self.input_shape)
        mean = total / jnp.asarray(np.maximum(covered, 1.0), drops.dtype)[None]
        return mean, {"window_values": drops.reshape((n,) + self.counts)}


def _as_shape(name: str, value, rank: int, input_shape, *, allow_int: bool) -> tuple[int, ...]:
    what = f"{name} must be {'an int or ' if allow_int else ''}a tuple of {rank} ints"
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if allow_int or rank == 1:
            value = (int(value),) * (rank if allow_int else 1)
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"{what}, one per axis of the input {input_shape}; got {value!r}")
    value = tuple(value)
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in value):
        raise TypeError(f"{what}; got {value!r}")
    if len(value) != rank:
        raise ValueError(
            f"{what}, one per axis of one input {tuple(input_shape)} (captum's window "
            f"convention: a full per-instance shape); got {len(value)}: {value!r}"
        )
    if any(v < 1 for v in value):
        raise ValueError(f"{name} must be >= 1 on every axis; got {value!r}")
    return tuple(int(v) for v in value)


@explainer(kind="map")
def occlusion(
    f,
    X: Float[ArrayLike, "..."],
    *,
    window,
    strides=1,
    baseline=0.0,
    targets: Targets = None,
    batch_size: int | None = None,
    mesh=None,
) -> Explanation:
    """Occlusion: the drop of the target score when a sliding window is set to a baseline.

    Every position of the window (``window`` elements per axis, moved ``strides`` at a time)
    gives one copy of ``x`` with that box set to ``baseline``; an element's attribution is the
    mean, over the windows covering it, of ``f(x) - f(x with the window occluded)``. Positions
    are counted as captum's ``Occlusion`` counts them (``ceil((D - w) / s) + 1`` per axis, the
    last one cut at the border), so the values equal captum's on the same model.

    Args:
        f: the model ``X (n, *input_shape) -> (n,)`` or ``(n, K)``: a JAX function, an
            ``(apply_fn, params)`` pair, an NNX module, or a host callable (NumPy in and out).
        X: one instance or a batch ``(n, *input_shape)``, decided by the model's input shape.
        window: the window's full per-instance shape, one size per input axis: ``(h, w, c)``
            over ``(H, W, C)`` images (``c = C`` occludes all channels), ``(k,)`` over rows.
        strides: the step per axis, an int or a tuple like ``window``; at most the window, so
            every element is covered (as captum requires).
        baseline: what an occluded element becomes: a number, or an array broadcastable to one
            input or to ``X``.
        targets: the explained score: ``None`` (the predicted class), an int, ``(n,)`` ints, or
            a callable ``fn(outputs) -> (n,)``.
        batch_size: most rows passed to the model at once (instances and their copies);
            ``None`` picks a default for the backend and the row size.
        mesh: optional :class:`jax.sharding.Mesh` to shard the instances over.

    Returns:
        An :class:`~xaijax.Explanation` of kind ``"map"`` with ``values`` shaped like ``X``,
        ``base_values`` zeros and extras ``targets (n,)`` (-1 for a callable), ``scores (n,)``
        (the explained score at ``x``) and ``window_values (n, *counts)`` (each window's drop).

    Raises:
        ValueError: a window of the wrong rank or larger than the input, strides below 1 or
            above the window, a baseline that does not broadcast, bad targets, or NaN/inf
            model outputs.

    References:
        Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks, ECCV;
        captum's ``Occlusion``.

    Example:
        >>> import jax.numpy as jnp
        >>> f = lambda X: X @ jnp.array([1.0, 2.0, 3.0, 4.0])
        >>> exp = occlusion(f, jnp.ones((1, 4)), window=(2,), strides=2)
        >>> exp.values.tolist()
        [[3.0, 3.0, 7.0, 7.0]]
    """
    problem = prepare(f, X, targets, batch_size=batch_size, mesh=mesh)
    input_shape, rank = problem.input_shape, len(problem.input_shape)
    window = _as_shape("window", window, rank, input_shape, allow_int=False)
    strides = _as_shape("strides", strides, rank, input_shape, allow_int=True)
    if any(w > d for w, d in zip(window, input_shape, strict=True)):
        raise ValueError(
            f"window {window} is larger than one input {input_shape} on some axis; it must fit"
        )
    if any(s > w for s, w in zip(strides, window, strict=True)):
        raise ValueError(
            f"strides {strides} must be at most the window {window} on every axis, so that "
            "every element is occluded by some window (captum's rule)"
        )
    fill = as_baseline(baseline, problem.X)
    plan = _Windows(input_shape, window, strides)
    values, extras, finite = run(problem, fill, jnp.zeros((problem.X.shape[0],)), plan)
    return finish(problem, values, extras, finite, method="occlusion")
