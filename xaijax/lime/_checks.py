"""Argument checks shared by the LIME explainers (run on the host, before any compilation)."""

from __future__ import annotations

import jax
import numpy as np


def check_key(key, n: int):
    """``key`` must be one typed/raw PRNG key or ``(n,)`` keys; returns ``(n,)`` keys."""
    if key is None:
        raise ValueError("key is required: pass key=jax.random.key(0)")
    if not jax.dtypes.issubdtype(getattr(key, "dtype", None), jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(np.asarray(key, dtype=np.uint32))
    if key.shape not in ((), (n,)):
        raise ValueError(
            f"key must be one PRNG key or ({n},) keys, one per instance; got {key.shape}"
        )
    # Always hand the compiled function (n,) keys, so both forms share one compilation.
    return jax.random.split(key, n) if key.shape == () else key
