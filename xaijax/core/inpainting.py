"""Inpainting in JAX: hidden pixels filled smoothly from the known ones, per channel.

Two schemes, both a linear system over the hidden pixels with the known pixels as a Dirichlet
boundary, solved matrix-free by conjugate gradients inside ``jit`` (vmapped over coalitions by
the maskers that use them):

``"harmonic"``
    ``Δu = 0`` on the hidden pixels: each hidden pixel is the mean of its 4 neighbours. ``Δ`` is
    the 5-point Laplacian with reflected (Neumann, zero-flux) image borders: a neighbour outside
    the image is the pixel itself, so ``Δ`` is the graph Laplacian of the 4-neighbour grid.
``"biharmonic"``
    ``Δ²u = 0`` on the hidden pixels with the same ``Δ`` applied twice (a 13-point stencil),
    the scheme of ``skimage.restoration.inpaint_biharmonic`` (its truncated border kernels,
    ``laplace(laplace(delta))`` with ``scipy.ndimage``'s reflect mode, are exactly the rows of
    ``Δ²`` with these borders), followed, as there, by clipping each channel to the range of its
    known values. Smoother than harmonic (no kinks at the boundary), slower to converge.

With ``h`` the hidden and ``k`` the known pixels and ``A = -Δ`` (harmonic) or ``Δ²``
(biharmonic), both symmetric positive semi-definite with the constants as null space, the
hidden values solve ``A[h, h] u_h = -A[h, k] x_k``. ``A[h, h]`` is symmetric positive definite
as soon as one pixel is known, so conjugate gradients apply; the operator is the stencil applied
to an image whose known pixels are zero, read back on the hidden pixels. An image (channel) with
no known pixel has no boundary: its hidden pixels become 0 (CG from zero on a zero right-hand
side). Channels are solved jointly (the operator is block-diagonal over channels).

Example:
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[0.0, 5.0, 2.0]])
    >>> keep = jnp.array([[True, False, True]])
    >>> [round(float(v), 4) for v in inpaint(x, keep, "harmonic")[0]]
    [0.0, 1.0, 2.0]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["INPAINT_METHODS", "default_iterations", "inpaint", "laplacian"]

INPAINT_METHODS = ("harmonic", "biharmonic")


def laplacian(u: jax.Array) -> jax.Array:
    """The 5-point Laplacian of ``u`` ``(H, W[, C])`` over its first two axes, image borders
    reflected (a neighbour outside the image is the pixel itself: zero flux).

    Example:
        >>> import jax.numpy as jnp
        >>> laplacian(jnp.array([[0.0, 1.0, 0.0]])).tolist()
        [[1.0, -2.0, 1.0]]
    """
    pad = [(1, 1), (1, 1)] + [(0, 0)] * (u.ndim - 2)
    p = jnp.pad(u, pad, mode="edge")
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * u


def default_iterations(shape, method: str) -> int:
    """The CG iteration cap used when ``iterations=None``: CG on ``-Δ`` needs about the hidden
    region's diameter in iterations, on ``Δ²`` about its square; the caps leave a wide margin
    (``4 (H + W)`` and ``(H + W)²``, at least 50) and the loop stops earlier at ``tol``.

    Example:
        >>> default_iterations((8, 8), "harmonic"), default_iterations((8, 8), "biharmonic")
        (64, 256)
    """
    H, W = int(shape[0]), int(shape[1])
    if method == "harmonic":
        return max(50, 4 * (H + W))
    return max(50, (H + W) ** 2)


def _operator(method):
    if method == "harmonic":
        return lambda u: -laplacian(u)
    return lambda u: laplacian(laplacian(u))


def _cg(apply, b, x0, hidden, iterations, tol):
    """Conjugate gradients for ``P A P u = b`` on the hidden entries (``P`` zeroes the known)."""

    def A(v):
        return jnp.where(hidden, apply(jnp.where(hidden, v, 0.0)), 0.0)

    def dot(a, c):
        return jnp.sum(a * c)

    r = b - A(x0)
    stop = (tol * jnp.sqrt(dot(b, b))) ** 2

    def cond(state):
        _, r, _, rr, i = state
        return (i < iterations) & (rr > stop)

    def body(state):
        u, r, p, rr, i = state
        Ap = A(p)
        pAp = dot(p, Ap)
        alpha = jnp.where(pAp > 0, rr / jnp.where(pAp > 0, pAp, 1.0), 0.0)
        u = u + alpha * p
        r = r - alpha * Ap
        rr_new = dot(r, r)
        p = r + (rr_new / jnp.where(rr > 0, rr, 1.0)) * p
        return u, r, p, rr_new, i + 1

    state = (x0, r, r, dot(r, r), jnp.zeros((), jnp.int32))
    return jax.lax.while_loop(cond, body, state)[0]


def inpaint(
    x: jax.Array,
    keep: jax.Array,
    method: str = "harmonic",
    *,
    iterations: int | None = None,
    tol: float = 1e-6,
) -> jax.Array:
    """``x`` ``(H, W[, C])`` with the pixels where ``keep`` is False inpainted (module docstring).

    Args:
        x: the image; values at hidden pixels are ignored.
        keep: boolean, broadcastable to ``x`` (``(H, W)`` for every channel, ``(H, W, 1)`` or
            per channel ``(H, W, C)``); True marks a known pixel.
        method: ``"harmonic"`` or ``"biharmonic"``.
        iterations: the most CG iterations (``None``: :func:`default_iterations`);
            ``biharmonic`` first runs harmonic CG (as many iterations) for its starting point.
        tol: CG stops when the residual norm falls to ``tol`` times the right-hand side's.

    Returns:
        The inpainted image, ``x``'s shape and dtype; known pixels unchanged.

    Example:
        >>> import jax.numpy as jnp
        >>> x = jnp.array([[1.0, 0.0, 0.0, 4.0]])
        >>> keep = jnp.array([[True, False, False, True]])
        >>> [round(float(v), 4) for v in inpaint(x, keep, "harmonic")[0]]
        [1.0, 2.0, 3.0, 4.0]
    """
    if method not in INPAINT_METHODS:
        raise ValueError(f"method must be one of {INPAINT_METHODS}; got {method!r}")
    if x.ndim not in (2, 3):
        raise ValueError(f"inpaint takes images (H, W) or (H, W, C); got shape {x.shape}")
    iterations = default_iterations(x.shape, method) if iterations is None else int(iterations)
    dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
    x = x.astype(dtype)
    keep = jnp.broadcast_to(keep.reshape(keep.shape + (1,) * (x.ndim - keep.ndim)), x.shape)
    hidden = ~keep
    known = jnp.where(keep, x, 0.0)

    def solve(m, x0):
        apply = _operator(m)
        b = -jnp.where(hidden, apply(known), 0.0)
        return _cg(apply, b, x0, hidden, iterations, tol)

    u = solve("harmonic", jnp.zeros_like(x))
    if method == "biharmonic":
        u = solve("biharmonic", u)
        # skimage clips each channel to the range of its known values.
        lo = jnp.min(jnp.where(keep, x, jnp.inf), axis=(0, 1), keepdims=True)
        hi = jnp.max(jnp.where(keep, x, -jnp.inf), axis=(0, 1), keepdims=True)
        u = jnp.where(jnp.isfinite(lo), jnp.clip(u, lo, hi), u)
    return jnp.where(keep, x, u)
