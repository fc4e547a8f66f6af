"""Which model outputs a LIME explanation fits: ``targets``, or lime's ``labels``/``top_labels``.

Every LIME explainer takes the contract's ``targets`` (:mod:`xaijax.core.targets`) and, as
aliases in the ``lime`` package's vocabulary, ``labels`` and ``top_labels``. One rule for all
three explainers:

========================== ======================================================================
argument                   fitted labels, and the shape of ``values``
========================== ======================================================================
``targets=None``           the explainer's default: every output (tabular, text) or the top 5
                           (image, lime's default); ``(n, M, L)``
``targets=k``              output ``k`` at every instance; ``(n, M)``
``targets=(n,) ints``      output ``targets[i]`` at instance ``i``; ``(n, M)``
``targets=fn``             the score ``fn(outputs) -> (n,)``; ``(n, M)``
``labels=(k1, k2, ...)``   those outputs (each in ``0..K-1``); ``(n, M, L)``
``top_labels=t``           the ``min(t, K)`` highest outputs at each instance (``t >= 1``; lime
                           takes ``argsort(...)[-t:]``, which clamps the same way); ``(n, M, L)``
========================== ======================================================================

A scalar-output model has one label (``K = 1``) and ``values`` of shape ``(n, M)``. Passing
``targets`` with ``labels``/``top_labels``, or ``labels`` with ``top_labels``, is a ``TypeError``
(lime silently ignores ``labels`` when ``top_labels`` is set).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core import contract
from xaijax.core.explanation import Explanation
from xaijax.core.targets import resolve_targets

__all__ = ["LabelPlan", "resolve_labels", "fitted_labels", "pack_fits"]


class LabelPlan(NamedTuple):
    """The checked choice of labels for ``n`` instances.

    Attributes:
        top: explain the ``top`` highest outputs at each instance (static), or ``None``.
        ids: ``(n, L)`` int32 output indices per instance when ``top`` is ``None``.
        score: a ``targets`` callable: the explained scalar is ``score(outputs)``.
        label_axis: whether ``values`` keeps a trailing label axis.
        output_names: names of the label axis (``None`` without one).
    """

    top: int | None
    ids: np.ndarray | None
    score: Callable | None
    label_axis: bool
    output_names: tuple[str, ...] | None


def resolve_labels(
    targets,
    labels,
    top_labels,
    n: int,
    num_outputs: int | None,
    *,
    default_top: int | None = None,
) -> LabelPlan:
    """Check ``targets``/``labels``/``top_labels`` for ``n`` instances of a ``K``-output model.

    Args:
        targets: the contract's ``targets`` (see the module docstring).
        labels: lime's ``labels``: a sequence of output indices, or ``None``.
        top_labels: lime's ``top_labels``: an int ``>= 1``, or ``None``.
        n: number of explained instances.
        num_outputs: ``K``, or ``None`` for a scalar-output model.
        default_top: the explainer's default with none of the three: ``None`` for every output,
            ``t`` for the top ``t`` (lime's image default is 5).

    Returns:
        A :class:`LabelPlan`.

    Raises:
        TypeError: for two ways of choosing at once, or arguments of the wrong type.
        ValueError: for indices out of range or ``top_labels < 1``.

    Example:
        >>> resolve_labels(None, None, 9, 2, 3).top
        3
        >>> resolve_labels(None, (2, 0), None, 2, 3).ids.tolist()
        [[2, 0], [2, 0]]
        >>> plan = resolve_labels(1, None, None, 2, 3)
        >>> plan.ids.tolist(), plan.label_axis
        ([[1], [1]], False)
    """
    if targets is not None and (labels is not None or top_labels is not None):
        given = "labels" if labels is not None else "top_labels"
        raise TypeError(
            f"pass targets= or lime's {given}=, not both (targets=None with labels= or "
            "top_labels= keeps lime's layout, one column per label)"
        )
    if labels is not None and top_labels is not None:
        raise TypeError(
            "pass labels= or top_labels=, not both (lime ignores labels when top_labels is set)"
        )
    K = 1 if num_outputs is None else int(num_outputs)
    vector = num_outputs is not None
    if targets is not None:
        spec = resolve_targets(targets, n, num_outputs)
        if spec.fn is not None:
            return LabelPlan(None, np.zeros((n, 1), np.int32), spec.fn, False, None)
        ids = np.asarray(spec.indices, np.int32)[:, None]
        return LabelPlan(None, ids, None, False, None)
    if labels is None and top_labels is None and default_top is not None:
        top_labels = default_top
    if top_labels is not None:
        top = min(contract.check_int("top_labels", top_labels, minimum=1), K)
        names = tuple(f"top{i}" for i in range(top)) if vector else None
        return LabelPlan(top, None, None, vector, names)
    if labels is None:
        chosen = np.arange(K)
    else:
        if isinstance(labels, (str, bytes)) or np.ndim(labels) != 1:
            raise TypeError(
                f"labels must be a sequence of output indices (lime's labels=(1,)); got "
                f"{labels!r} (for one output use targets={labels!r})"
            )
        chosen = np.asarray(labels)
        if chosen.size == 0:
            raise ValueError("labels must name at least one output index")
        if chosen.dtype == bool or not np.issubdtype(chosen.dtype, np.integer):
            raise TypeError(f"labels must be integer output indices; got {labels!r}")
        if chosen.min() < 0 or chosen.max() >= K:
            raise ValueError(f"labels must be output indices in 0..{K - 1}; got {list(labels)}")
    ids = np.broadcast_to(chosen.astype(np.int32)[None, :], (n, chosen.size)).copy()
    names = tuple(str(int(k)) for k in chosen) if vector else None
    return LabelPlan(None, ids, None, vector, names)


def fitted_labels(first_outputs, ids, top: int | None):
    """The label indices fitted at one instance, ``(L,)``, from its own outputs ``(K,)``.

    ``top``: the ``top`` highest outputs, highest first (ties: the higher index first, as lime's
    ``argsort(...)[-top:]`` reversed); else ``ids`` as given. Traced.
    """
    if top is not None:
        return jnp.argsort(first_outputs, stable=True)[::-1][:top].astype(jnp.int32)
    return ids


def pack_fits(
    fits, label_ids, prediction, finite, *, plan, data, single, method, feature_names, extras
) -> Explanation:
    """Check and pack per-instance LIME fits (``(n, L, ...)`` fields) into an Explanation.

    ``finite`` is the compiled call's per-instance report that the model outputs on the
    neighbourhood were finite; without a label axis (one target, a scalar model) the label axis
    is dropped from ``values`` and every fitted extra.
    """
    fits = jax.tree.map(np.asarray, fits)
    values = np.moveaxis(fits.coef, 1, 2)  # (n, L, M) -> (n, M, L)
    fitted = dict(
        intercept=fits.intercept,
        score=fits.score,
        local_pred=fits.local_pred,
        labels=np.asarray(label_ids),
        selected=np.moveaxis(fits.selected, 1, 2),
    )
    base_values = fits.intercept
    prediction = np.asarray(prediction)
    if not plan.label_axis:
        values, base_values = values[..., 0], base_values[:, 0]
        fitted = {k: v[..., 0] if k == "selected" else v[:, 0] for k, v in fitted.items()}
    prediction = (
        prediction[:, 0] if prediction.shape[1] == 1 and not plan.label_axis else prediction
    )
    return contract.pack(
        values,
        base_values,
        data,
        single=single,
        kind="surrogate",
        method=method,
        feature_names=feature_names,
        output_names=plan.output_names,
        extras={**fitted, "prediction": prediction, **extras},
        finite=finite,
        what="f",
    )
