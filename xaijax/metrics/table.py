"""``evaluate_explainers``: every explainer scored by every metric, as one tidy table.

Each explainer runs once on ``X``; each metric then reads what it needs, found from its
signature: attributions (complexity), attributions and ``masks`` (localisation), the model,
``X`` and the attributions (faithfulness, completeness, ...), or the model, ``X`` and the
explainer itself (robustness, randomisation, input invariance).
"""

# jaxtyping shape strings such as "n ..." are not Python expressions:

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from xaijax.core.explanation import Explanation
from xaijax.core.targets import Targets
from xaijax.metrics.attributions import attribution_array

__all__ = ["MetricTable", "evaluate_explainers"]

_ATTRIBUTIONS = ("attributions", "saliency")


@dataclasses.dataclass(frozen=True)
class MetricTable:
    """Scores of explainers by metrics: ``rows`` (one dict per explainer x metric: ``explainer``,
    ``metric``, ``mean``, ``std``, ``sem``, ``n``; NaN scores left out) and ``scores``
    (``(explainer, metric) -> (n,)`` per-instance scores)."""

    rows: list[dict]
    scores: dict[tuple[str, str], np.ndarray]

    @property
    def explainers(self) -> list[str]:
        return list(dict.fromkeys(r["explainer"] for r in self.rows))

    @property
    def metrics(self) -> list[str]:
        return list(dict.fromkeys(r["metric"] for r in self.rows))

    def mean(self) -> np.ndarray:
        """``(explainers, metrics)`` means."""
        cell = {(r["explainer"], r["metric"]): r["mean"] for r in self.rows}
        return np.array([[cell[e, m] for m in self.metrics] for e in self.explainers])

    def to_markdown(self, digits: int = 3) -> str:
        """A Markdown table: one row per explainer, ``mean ± sem`` per metric."""
        cell = {(r["explainer"], r["metric"]): r for r in self.rows}
        lines = [
            "| explainer | " + " | ".join(self.metrics) + " |",
            "|---|" + "---|" * len(self.metrics),
        ]
        for e in self.explainers:
            vals = [
                f"{cell[e, m]['mean']:.{digits}g} ± {cell[e, m]['sem']:.2g}" for m in self.metrics
            ]
            lines.append(f"| {e} | " + " | ".join(vals) + " |")
        return "\n".join(lines)

    def to_pandas(self):
        """The rows as a pandas DataFrame (pandas imported here, not a dependency)."""
        import pandas as pd

        return pd.DataFrame(self.rows)


def _kind(metric: Callable, name: str) -> str:
    params = list(inspect.signature(metric).parameters)
    if params and params[0] in _ATTRIBUTIONS:
        return "masks" if len(params) > 1 and params[1] == "masks" else "attributions"
    if len(params) >= 3 and params[1] in ("X", "images") and params[2] in _ATTRIBUTIONS:
        return "model"
    if len(params) >= 3 and params[1] == "X" and params[2] == "explainer":
        return "explainer"
    raise TypeError(
        f"metrics: {name} is not a metric of attributions (attributions[, masks]), of a model "
        f"(model, X, attributions) or of an explainer (model, X, explainer); got ({params})"
    )


def _per_instance(out: Any, n: int, name: str) -> np.ndarray:
    """A metric's result as ``(n,)`` float scores: a curve's ``auc``, the last randomised
    layer of ``LayerScores``, a ``(n, steps)`` curve's mean."""
    if hasattr(out, "auc"):
        out = out.auc
    elif hasattr(out, "layers") and hasattr(out, "scores"):
        out = np.asarray(out.scores)[-1]
    a = np.asarray(out, np.float64)
    if a.ndim == 2 and a.shape[0] == n:
        a = a.mean(1)
    if a.shape != (n,):
        raise ValueError(f"metric {name} returned shape {a.shape}; expected ({n},) scores")
    return a


def _accepts(fn: Callable, name: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def evaluate_explainers(
    model,
    X,
    explainers: dict[str, Callable],
    metrics: Sequence[str | Callable],
    *,
    targets: Targets = None,
    masks=None,
    key: jax.Array | None = None,
    batch_size: int | None = None,
    metric_kwargs: dict[str, dict] | None = None,
) -> MetricTable:
    """Score every explainer with every metric: one tidy table (explainer x metric).

    Each explainer runs once, ``explainer(model, X, targets=targets)`` (plus ``key=`` when it
    takes one), returning attributions ``(n, ...)`` or an Explanation for one output per
    instance; metrics of an explainer (robustness, randomisation) re-run it themselves.

    Args:
        model: a JAX function or NNX module of ``X``.
        X: ``(n, ...)`` inputs.
        explainers: name -> ``explainer(model, X, targets=...)``, e.g. ``{"saliency":
            xj.saliency}`` (bind options with ``functools.partial``).
        metrics: names in :mod:`xaijax.metrics` (``"pixel_flipping"``, ``"auc"``, ...) or
            callables with a metric's signature.
        targets: ``None`` (the predicted class), an int, ``(n,)`` ints or a callable.
        masks: ``(n, ...)`` ground-truth masks, needed by the localisation metrics.
        key: for the explainers and metrics that draw random numbers (explainer ``i`` gets
            ``fold_in(key, i)``, metric ``j`` gets ``fold_in(key, 1000 + j)``).
        batch_size: model rows evaluated at once, passed to every metric that takes it.
        metric_kwargs: metric name -> extra keyword arguments, e.g.
            ``{"pixel_flipping": {"features_in_step": 4}}``.

    Returns:
        A :class:`MetricTable`; ``xaijax.plots.metric_table(table)`` draws it.

    Example:
        >>> import jax, jax.numpy as jnp, numpy as np
        >>> import xaijax as xj
        >>> X = np.random.default_rng(0).normal(size=(8, 4)); w = jnp.array([1.0, -2.0, 0.0, 3.0])
        >>> t = evaluate_explainers(
        ...     lambda x: jnp.tanh(x @ w), X, {"saliency": xj.saliency},
        ...     ["sparseness", "faithfulness_estimate"])
        >>> [r["metric"] for r in t.rows]
        ['sparseness', 'faithfulness_estimate']
    """
    from xaijax import metrics as registry  # the package: every metric joins by its name

    if not isinstance(explainers, dict) or not explainers:
        raise TypeError("explainers must be a non-empty dict name -> explainer(model, X, targets=)")
    for name, fn in explainers.items():
        if not callable(fn):
            raise TypeError(f"explainers[{name!r}] must be callable; got {type(fn).__name__}")
    if isinstance(metrics, str) or not metrics:
        raise TypeError("metrics must be a non-empty list of metric names or callables")
    metric_kwargs = dict(metric_kwargs or {})
    resolved = []
    for m in metrics:
        if isinstance(m, str):
            fn = getattr(registry, m, None)
            if m not in registry.__all__ or not callable(fn):
                raise ValueError(f"metrics: unknown metric {m!r}; see xaijax.metrics.__all__")
            resolved.append((m, fn))
        elif callable(m):
            resolved.append((getattr(m, "__name__", repr(m)), m))
        else:
            raise TypeError(f"metrics must hold names or callables; got {type(m).__name__}")
    kinds = {name: _kind(fn, name) for name, fn in resolved}
    if masks is None and "masks" in kinds.values():
        need = [n for n, k in kinds.items() if k == "masks"]
        raise ValueError(f"masks must be given for the localisation metrics {need}")
    unknown = set(metric_kwargs) - set(kinds)
    if unknown:
        raise ValueError(f"metric_kwargs names metrics not in metrics: {sorted(unknown)}")

    X = np.asarray(X)
    n = X.shape[0]
    rows, scores = [], {}
    for i, (ename, explainer) in enumerate(explainers.items()):
        extra = (
            {"key": jax.random.fold_in(key, i)}
            if key is not None and _accepts(explainer, "key")
            else {}
        )
        if extra:  # the metrics of an explainer re-run it with the same key
            explainer = functools.partial(explainer, **extra)
        out = explainer(model, X, targets=targets)
        if isinstance(out, Explanation) and not out.is_batched:
            raise ValueError(f"explainers[{ename!r}] returned one instance; X must be a batch")
        attributions = attribution_array(out, f"explainers[{ename!r}]'s attributions")
        for j, (mname, metric) in enumerate(resolved):
            kw = dict(metric_kwargs.get(mname, {}))
            if key is not None and _accepts(metric, "key"):
                kw.setdefault("key", jax.random.fold_in(key, 1000 + j))
            kind = kinds[mname]
            if kind != "attributions" and kind != "masks":
                for arg, value in (("targets", targets), ("batch_size", batch_size)):
                    if _accepts(metric, arg):
                        kw.setdefault(arg, value)
            if kind == "attributions":
                result = metric(attributions, **kw)
            elif kind == "masks":
                result = metric(attributions, masks, **kw)
            elif kind == "model":
                result = metric(model, X, attributions, **kw)
            else:
                result = metric(model, X, explainer, **kw)
            s = _per_instance(result, n, mname)
            scores[ename, mname] = s
            ok = s[np.isfinite(s)]
            m = len(ok)
            std = float(ok.std(ddof=1)) if m > 1 else float("nan")
            rows.append(
                dict(
                    explainer=ename,
                    metric=mname,
                    mean=float(ok.mean()) if m else float("nan"),
                    std=std,
                    sem=std / np.sqrt(m) if m > 1 else float("nan"),
                    n=m,
                )
            )
    return MetricTable(rows, scores)
