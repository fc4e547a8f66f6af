"""TEMPORARY stand-in for xaijax.core.masking.as_groups until main lands it (then deleted)."""

from typing import NamedTuple

import numpy as np


class Groups(NamedTuple):
    ids: np.ndarray
    num_groups: int
    counts: np.ndarray
    shared: bool


def as_groups(groups, input_shape, n, *, name="groups", max_groups=None, why=""):
    a = np.asarray(groups)
    if a.dtype == bool or not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must be integer group ids; got dtype {a.dtype}")
    shape, inp = tuple(a.shape), tuple(int(s) for s in input_shape)

    def is_prefix(s):
        return 1 <= len(s) <= len(inp) and s == inp[: len(s)]

    if is_prefix(shape):
        ids, shared = a[None], True
    elif len(shape) >= 2 and shape[0] == n and is_prefix(shape[1:]):
        ids, shared = a, False
    else:
        raise ValueError(f"{name} must have a prefix shape of {inp}; got shape {shape}")
    flat = ids.reshape(ids.shape[0], -1)
    if flat.min() < 0:
        raise ValueError(f"{name} must hold ids >= 0; got {int(flat.min())}")
    counts = flat.max(axis=1).astype(np.int64) + 1
    for row, c in zip(flat, counts, strict=True):
        if np.any(np.bincount(row, minlength=int(c)) == 0):
            raise ValueError(f"{name} must use every id from 0 to G - 1; some groups are empty")
    return Groups(ids.astype(np.int32), int(counts.max()), counts, shared)
