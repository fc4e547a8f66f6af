"""Reading what a metric scores: an :class:`Explanation`'s values, or a plain array of them."""

from __future__ import annotations

import numpy as np

from xaijax.core.contract import as_float_array
from xaijax.core.explanation import Explanation

__all__ = ["attribution_array"]


def attribution_array(a, name: str, *, dtype=None) -> np.ndarray:
    """``a``'s attributions as a finite float array with a leading instance axis.

    ``a`` is an :class:`Explanation` (its ``values``; a single-instance Explanation gets an
    instance axis of 1) or an array, taken as it is. An Explanation with an output axis must be
    indexed down to one output first: a metric of attributions for several outputs at once
    would mix them.

    Args:
        a: an Explanation or an array ``(n, ...)``.
        name: the argument's name, for error messages.
        dtype: the float dtype (default the explainer dtype, float64 under ``jax_enable_x64``).

    Returns:
        A NumPy array ``(n, ...)``.

    Raises:
        ValueError: for an Explanation with an output axis, or NaN/inf values.
        TypeError: for non-numeric values.

    Example:
        >>> import numpy as np
        >>> exp = Explanation(np.ones(3), np.zeros(()), np.ones(3))
        >>> attribution_array(exp, "attributions").shape
        (1, 3)
    """
    if isinstance(a, Explanation):
        if a.has_output_axis:
            raise ValueError(
                f"{name} is an Explanation with an output axis ({len(a.output_names)} outputs "
                f"{a.output_names}): pick one output first, e.g. exp[:, :, k] for a batch or "
                "exp[:, k] for one instance"
            )
        values = as_float_array(name, a.values, dtype=dtype)
        return values if a.is_batched else values[None]
    return as_float_array(name, a, dtype=dtype)
