"""Matplotlib figures of explanations. Every function returns the Figure (PNG via ``savefig``)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xaijax.explanation import Explanation  # noqa: E402

__all__ = ["bar", "waterfall", "compare"]

_POS, _NEG = "#d62728", "#1f77b4"


def _names(exp: Explanation, M: int):
    return list(exp.feature_names) if exp.feature_names else [f"x{i}" for i in range(M)]


def _output_slice(values, base, exp: Explanation, output):
    if exp.output_names is not None:
        values, base = values[..., output], np.asarray(base)[..., output]
    return values, base


def bar(exp: Explanation, *, output: int = 0, max_display: int = 10, title: str | None = None):
    """Mean ``|value|`` per feature over a batch (global importance), or one instance's ``|value|``.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> fig = bar(Explanation(np.ones((2, 3)), np.zeros(2), np.zeros((2, 3))))
    """
    values, _ = _output_slice(np.asarray(exp.values), exp.base_values, exp, output)
    importance = np.abs(values).mean(0) if values.ndim == 2 else np.abs(values)
    names = _names(exp, importance.shape[0])
    order = np.argsort(importance)[::-1][:max_display][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(order) + 1.2))
    ax.barh([names[i] for i in order], importance[order], color=_POS)
    ax.set_xlabel("mean |attribution|" if values.ndim == 2 else "|attribution|")
    ax.set_title(title or f"{exp.method or 'attributions'}: feature importance")
    fig.tight_layout()
    return fig


def waterfall(
    exp: Explanation, *, output: int = 0, max_display: int = 10, title: str | None = None
):
    """How one instance's attributions add up from the base value to the model output.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> fig = waterfall(Explanation(np.array([1.0, -2.0]), np.array(0.5), np.zeros(2)))
    """
    values, base = _output_slice(np.asarray(exp.values), exp.base_values, exp, output)
    if values.ndim != 1:
        raise ValueError(
            f"waterfall shows one instance; got values of shape {values.shape} "
            "(index the Explanation first, e.g. exp[0])"
        )
    base = float(base)
    names = _names(exp, values.shape[0])
    data = np.asarray(exp.data).reshape(-1)
    order = np.argsort(np.abs(values))[::-1]
    shown, rest = order[:max_display], order[max_display:]
    labels = [f"{names[i]} = {data[i]:.3g}" for i in shown]
    contrib = list(values[shown])
    if len(rest):
        labels.append(f"{len(rest)} other features")
        contrib.append(float(values[rest].sum()))
    labels, contrib = labels[::-1], contrib[::-1]
    starts = base + np.concatenate([[0.0], np.cumsum(contrib[::-1])])[::-1][1:]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(labels) + 1.5))
    for row, (c, s) in enumerate(zip(contrib, starts, strict=True)):
        ax.barh(row, c, left=s, color=_POS if c >= 0 else _NEG)
        ax.text(s + c, row, f" {c:+.3g}", va="center", ha="left" if c >= 0 else "right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels)
    ax.axvline(base, color="grey", lw=0.8, ls="--")
    ax.margins(x=0.2)
    ax.set_xlabel(f"base value {base:.3g}  ->  output {base + values.sum():.3g}")
    ax.set_title(title or f"{exp.method or 'attributions'}: one prediction")
    fig.tight_layout()
    return fig


def compare(reference, estimates: dict, *, title: str = "estimates against reference"):
    """Scatter each estimator's attributions against reference values (e.g. exact Shapley).

    Example:
        >>> import numpy as np
        >>> fig = compare(np.arange(4.0), {"noisy": np.arange(4.0) + 0.1})
    """
    reference = np.asarray(reference).ravel()
    fig, ax = plt.subplots(figsize=(5, 5))
    lo, hi = reference.min(), reference.max()
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
    for name, est in estimates.items():
        est = np.asarray(est).ravel()
        err = np.abs(est - reference).mean()
        ax.scatter(reference, est, s=8, alpha=0.6, label=f"{name} (mean |err| {err:.2g})")
    ax.set_xlabel("reference")
    ax.set_ylabel("estimate")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
