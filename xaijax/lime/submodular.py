"""SP-LIME: pick a few explanations that together cover the globally important features."""

from __future__ import annotations

import numpy as np

from xaijax.core import contract
from xaijax.core.explanation import Explanation

__all__ = ["submodular_pick", "global_importance"]


def _explanation_matrix(exp: Explanation):
    """``W: (n, d')``: each instance's weights summed over labels, one column per feature key.

    Features are keyed by ``extras["feature_labels"]`` when present (tabular bins such as
    ``"x <= 0.5"``, text words), as the reference keys them by their readable names; otherwise
    by feature index.
    """
    values = np.asarray(exp.values, dtype=np.float64)
    if not exp.is_batched:
        raise ValueError("submodular_pick needs a batch of explanations (n, M[, L]); got one")
    if values.ndim == 2:
        values = values[:, :, None]
    summed = values.sum(axis=2)  # (n, M)
    names = exp.extras.get("feature_labels")
    if names is None:
        return np.abs(summed)
    names = np.asarray(names)
    if names.shape != summed.shape:
        raise ValueError(
            f"extras['feature_labels'] must have shape {summed.shape}; got {names.shape}"
        )
    keys = {}
    for row in names:
        for name in row:
            if name != "":
                keys.setdefault(name, len(keys))
    W = np.zeros((len(values), len(keys)))
    for i, row in enumerate(names):
        for j, name in enumerate(row):
            if name != "":
                W[i, keys[name]] += summed[i, j]
    return np.abs(W)


def global_importance(exp: Explanation) -> np.ndarray:
    """SP-LIME's global importance ``I_j = sqrt(sum_i |W_ij|)`` per feature key: ``(d',)``.

    Example:
        >>> import numpy as np
        >>> from xaijax.core.explanation import Explanation
        >>> v = np.array([[4.0, 0.0], [5.0, -9.0]])
        >>> global_importance(Explanation(values=v, base_values=np.zeros(2), data=v)).tolist()
        [3.0, 3.0]
    """
    return np.sqrt(_explanation_matrix(exp).sum(axis=0))


def submodular_pick(exp: Explanation, budget: int = 5) -> np.ndarray:
    """Greedily pick ``budget`` instances maximising the importance-weighted feature coverage.

    Coverage of a set ``V`` is ``sum_j I_j [exists i in V: W_ij != 0]`` with
    ``I = global_importance(exp)``; each step adds the instance with the largest coverage (ties go
    to the later instance, as in the reference).

    Args:
        exp: a batch of LIME explanations (values ``(n, M)`` or ``(n, M, L)``).
        budget: number of instances to pick (at most ``n``).

    Returns:
        ``(min(budget, n),)`` int indices into the batch, in pick order.

    References:
        Ribeiro, Singh & Guestrin, "Why Should I Trust You?": Explaining the Predictions of Any
        Classifier, KDD 2016 (Algorithm 2).

    Example:
        >>> import numpy as np
        >>> from xaijax.core.explanation import Explanation
        >>> v = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.5]])
        >>> exp = Explanation(values=v, base_values=np.zeros(3), data=v)
        >>> submodular_pick(exp, budget=2).tolist()
        [1, 2]
    """
    budget = contract.check_int("budget", budget, minimum=1)
    W = _explanation_matrix(exp)
    importance = np.sqrt(W.sum(axis=0))
    covers = W > 0
    n = len(W)
    picked, covered = [], np.zeros(W.shape[1], bool)
    for _ in range(min(int(budget), n)):
        gain = (covered[None, :] | covers) @ importance
        gain[picked] = -np.inf
        # The reference keeps the last instance reaching the maximum (`>=` in its scan).
        best = n - 1 - int(np.argmax(gain[::-1]))
        picked.append(best)
        covered |= covers[best]
    return np.array(picked, dtype=int)
