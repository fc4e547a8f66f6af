"""Matplotlib figures of explanations. Every function returns the Figure (PNG via ``savefig``).

matplotlib is imported inside the figure functions, never at import, and the backend is never
set: figures appear in notebooks and GUIs as the user configured (``MPLBACKEND``, ``%matplotlib``,
``matplotlib.use``), and ``import xaijax.plots`` costs nothing.

The tabular figures are the ones shap offers, drawn without shap: :func:`bar`, :func:`beeswarm`,
:func:`waterfall`, :func:`force` (static), :func:`scatter` (dependence), :func:`heatmap` and
:func:`decision`, with shap's orderings (features by mean ``|value|``, instances by hierarchical
clustering, decision paths from the least to the most important feature). Interaction values
(kind ``"interaction"``) have :func:`interaction_matrix` and :func:`interaction_network`.

Where an explanation has several outputs, ``targets`` (an int, or an output name) picks the one
shown, the position on the Explanation's output axis (for LIME, among the explained labels); the
default title and axis label name it. The additive plots (:func:`waterfall`, :func:`beeswarm`,
:func:`force`, :func:`scatter`, :func:`heatmap`, :func:`decision`) draw values that add up to the
model's output, so they refuse maps, surrogate coefficients and prototype evidence; :func:`bar`
and :func:`lime_bar` draw any attributions over one feature axis.

Feature values are shown as the model received them (often standardised) unless
``display_data=`` gives the same rows in the units people read (like shap's
``Explanation.display_data``; ``exp.extras["display_data"]`` is used when present); a figure
that shows model-unit values says so.
"""

# jaxtyping shape strings such as "n H W C" are not Python expressions:

from __future__ import annotations

import math
import numbers
import textwrap
import warnings

import numpy as np
from jaxtyping import ArrayLike, Float

from xaijax.core.contract import MISSING, check_int, renamed
from xaijax.core.explanation import Explanation, require_kind
from xaijax.core.masking import get_image_and_mask

__all__ = [
    "bar",
    "waterfall",
    "compare",
    "metric_table",
    "beeswarm",
    "force",
    "scatter",
    "heatmap",
    "decision",
    "hclust_order",
    "interaction_matrix",
    "interaction_network",
    "overlay",
    "image_grid",
    "lime_bar",
    "lime_segments",
    "text",
    "text_html",
]

_POS, _NEG = "#d62728", "#1f77b4"
_ADDITIVE = ("additive", "path")
_MODEL_UNITS = "feature values as the model received them; display_data= shows raw units"


def _pyplot():
    import matplotlib.pyplot as plt

    return plt


def _names(exp: Explanation, M: int):
    if isinstance(exp.feature_names, tuple) and len(exp.feature_names) == M:
        return list(exp.feature_names)
    return [f"x{i}" for i in range(M)]


def _output_index(exp: Explanation, targets, name: str = "targets") -> int | None:
    """The position on ``exp``'s output axis that ``targets`` picks (``None``: no output axis)."""
    if not exp.has_output_axis:
        if targets is None or (isinstance(targets, numbers.Integral) and targets == 0):
            return None
        raise ValueError(
            f"{name} picks one output of a multi-output Explanation; this one has no output "
            f"axis (one model output, or already indexed to one), so {name} must be None or 0; "
            f"got {targets!r}"
        )
    K = len(exp.output_names)
    if targets is None:
        return 0
    if isinstance(targets, str):
        if targets not in exp.output_names:
            raise ValueError(f"{name} {targets!r} is not one of the outputs {exp.output_names}")
        return exp.output_names.index(targets)
    if isinstance(targets, bool) or not isinstance(targets, numbers.Integral):
        raise TypeError(
            f"{name} must be an int in [0, {K}) or one of the output names {exp.output_names}; "
            f"got {targets!r} ({type(targets).__name__})"
        )
    if not 0 <= int(targets) < K:
        raise ValueError(
            f"{name} must be an int in [0, {K}) (the Explanation has {K} outputs "
            f"{exp.output_names}); got {targets}"
        )
    return int(targets)


def _output_label(exp: Explanation, k: int | None) -> str | None:
    """How a figure names the output it shows: its name, ``output 1`` for a number, or None."""
    if k is None:
        name = exp.output_names if isinstance(exp.output_names, str) else None
    else:
        name = exp.output_names[k]
    if name is None:
        return None
    return f"output {name}" if str(name).lstrip("-").isdigit() else str(name)


def _one_output(exp: Explanation, targets, name: str = "targets"):
    """``(values, base_values, output label)`` of the chosen output, values as NumPy arrays."""
    k = _output_index(exp, targets, name)
    values, base = np.asarray(exp.values), np.asarray(exp.base_values)
    if k is not None:
        values, base = values[..., k], base[..., k]
    return values, base, _output_label(exp, k)


def _one_feature_axis(exp: Explanation, what: str) -> None:
    if len(exp.feature_shape) != 1:
        raise ValueError(
            f"{what} draws attributions over one feature axis (tabular features, words, "
            f"segments); got feature shape {exp.feature_shape}: draw maps with overlay or "
            "image_grid"
        )


def _title(title, what: str, exp: Explanation, output: str | None) -> str:
    if title is not None:
        return title
    shown = f"{exp.method or 'attributions'}: {what}"
    return f"{shown} ({output})" if output else shown


def _axis_label(what: str, output: str | None) -> str:
    return f"{what} for {output}" if output else what


def _display_values(exp: Explanation, display_data, shape, name: str = "display_data"):
    """The feature values to show, shaped ``shape``, and whether they are in display units.

    ``display_data`` (or ``exp.extras["display_data"]``) holds the explained rows in the units
    people read; without it the Explanation's own ``data`` is shown, in the model's units.
    """
    given = display_data is not None
    if not given and "display_data" in exp.extras:
        display_data, given = exp.extras["display_data"], True
    if given:
        shown = np.asarray(display_data)
        if shown.size != math.prod(shape):
            raise ValueError(
                f"{name} must hold the explained rows in display units, shape {tuple(shape)} "
                f"like the Explanation's data; got shape {shown.shape}"
            )
        return shown.reshape(shape), True
    data = np.asarray(exp.data)
    if data.size != math.prod(shape):
        return None, False
    return data.reshape(shape), False


def _needs_units_note(values) -> bool:
    """Whether shown feature values are model-unit floats (so the figure says so)."""
    values = np.asarray(values)
    return (
        np.issubdtype(values.dtype, np.floating)
        and values.size > 0
        and not np.all(values == np.round(values))
    )


def number_format(*arrays):
    """A formatter for numbers on the common scale of ``arrays``: three significant digits there.

    A probability output shows as ``0.982`` and a rounding residue as ``0.000`` (not
    ``-5.96e-08``); very large or very small scales fall back to ``%.3g``. Returns
    ``fmt(x, sign=False)``.

    Example:
        >>> fmt = number_format([0.98, -5.96e-08])
        >>> fmt(0.98), fmt(-5.96e-08), fmt(0.25, sign=True)
        ('0.980', '0.000', '+0.250')
    """
    finite = [np.abs(np.asarray(a, float)).ravel() for a in arrays if np.size(a)]
    finite = [a[np.isfinite(a)] for a in finite]
    scale = max((float(a.max()) for a in finite if a.size), default=0.0)
    if scale == 0.0:
        scale = 1.0
    if not 1e-3 <= scale < 1e5:

        def general(x, sign=False):
            return f"{x:{'+' if sign else ''}.3g}"

        return general
    decimals = max(0, 2 - math.floor(math.log10(scale)))

    def fixed(x, sign=False):
        text = f"{float(x):{'+' if sign else ''}.{decimals}f}"
        if float(text) == 0.0:  # no "-0.000" for a rounding residue
            text = f"{0.0:.{decimals}f}"
        return text

    return fixed


def _value_text(v) -> str:
    """A feature value as people write it: integers whole, others to four significant digits."""
    v = np.asarray(v).item() if np.ndim(v) == 0 else v
    if isinstance(v, str):
        return v
    if float(v) == round(float(v)) and abs(v) < 1e6:
        return str(int(round(float(v))))
    return f"{float(v):.4g}"


def _additive_batch(exp, what, targets, name="targets"):
    require_kind(exp, _ADDITIVE, what)
    _one_feature_axis(exp, what)
    values, base, output = _one_output(exp, targets, name)
    if values.ndim != 2:
        raise ValueError(
            f"{what} needs a batch of attributions (n, M); got values of shape {values.shape}"
        )
    return values, base, output


def _additive_one(exp, what, targets, name="targets"):
    require_kind(exp, _ADDITIVE, what)
    _one_feature_axis(exp, what)
    values, base, output = _one_output(exp, targets, name)
    if values.ndim != 1:
        raise ValueError(
            f"{what} shows one instance; got values of shape {values.shape} "
            "(index the Explanation first, e.g. exp[0])"
        )
    return values, float(base), output


def _feature_index(exp: Explanation, feature, M: int, name: str = "feature") -> int:
    if isinstance(feature, str):
        names = _names(exp, M)
        if feature not in names:
            raise ValueError(f"{name} {feature!r} is not one of the feature names {names}")
        return names.index(feature)
    return check_int(name, feature, minimum=0, maximum=M - 1)


def _label_bars(ax, ends, rows, fmt, *, sign: bool) -> None:
    """Write each bar's value just past its end, with room kept inside the axes for the text."""
    ends = np.asarray(ends, float)
    if not ends.size:
        return
    lo, hi = min(0.0, float(ends.min())), max(0.0, float(ends.max()))
    span = (hi - lo) or 1.0
    ax.set_xlim(lo - (0.22 * span if lo < 0 else 0.0), hi + (0.22 * span if hi > 0 else 0.0))
    for row, end in zip(rows, ends, strict=True):
        ax.text(
            end,
            row,
            f" {fmt(end, sign=sign)} ",
            va="center",
            ha="left" if end >= 0 else "right",
            fontsize=8,
        )


def bar(
    exp: Explanation,
    *,
    targets: int | str | None = None,
    max_display: int = 10,
    title: str | None = None,
    output=MISSING,
):
    """Mean ``|value|`` per feature over a batch (global importance), or one instance's ``|value|``.

    Args:
        exp: any Explanation with one feature axis (Shapley values, gradients of tabular
            models, LIME coefficients), batched or one instance.
        targets: the output shown, an int position or an output name; default the first.
            ``output=`` is its deprecated alias.
        max_display: most features drawn, largest first.
        title: the figure title (default: the method and the output shown).

    Returns:
        The matplotlib Figure.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> fig = bar(Explanation(np.ones((2, 3)), np.zeros(2), np.zeros((2, 3))))
    """
    targets = renamed("output", output, "targets", targets)
    max_display = check_int("max_display", max_display)
    _one_feature_axis(exp, "bar")
    values, _, shown = _one_output(exp, targets, "targets" if output is MISSING else "output")
    importance = np.abs(values).mean(0) if values.ndim == 2 else np.abs(values)
    names = _names(exp, importance.shape[0])
    order = np.argsort(importance)[::-1][:max_display][::-1]
    fig, ax = _pyplot().subplots(figsize=(6.5, 0.35 * len(order) + 1.3))
    ax.barh([names[i] for i in order], importance[order], color=_POS)
    _label_bars(ax, importance[order], range(len(order)), number_format(importance), sign=False)
    what = "mean |attribution|" if values.ndim == 2 else "|attribution|"
    ax.set_xlabel(_axis_label(what, shown))
    ax.set_title(_title(title, "feature importance", exp, shown), fontsize=10)
    fig.tight_layout()
    return fig


def waterfall(
    exp: Explanation,
    *,
    targets: int | str | None = None,
    max_display: int = 10,
    display_data: ArrayLike | None = None,
    title: str | None = None,
    output=MISSING,
):
    """How one instance's attributions add up from the base value to the model output.

    Args:
        exp: one instance (``exp[i]`` of a batch) of kind ``"additive"`` or ``"path"``.
        targets: the output shown, an int position or an output name; default the first.
            ``output=`` is its deprecated alias.
        max_display: most features drawn; the rest are summed into one bar.
        display_data: the instance's feature values in the units people read ``(M,)`` (e.g.
            before standardising), shown in the labels instead of the model's inputs.
        title: the figure title (default: the method and the output shown).

    Returns:
        The matplotlib Figure.

    Raises:
        TypeError: for maps, surrogate coefficients and prototype evidence, which do not add
            up to the model's output.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> fig = waterfall(Explanation(np.array([1.0, -2.0]), np.array(0.5), np.zeros(2)))
    """
    targets = renamed("output", output, "targets", targets)
    max_display = check_int("max_display", max_display)
    values, base, shown_output = _additive_one(
        exp, "waterfall", targets, "targets" if output is MISSING else "output"
    )
    names = _names(exp, values.shape[0])
    data, raw = _display_values(exp, display_data, values.shape)
    order = np.argsort(np.abs(values))[::-1]
    shown, rest = order[:max_display], order[max_display:]
    labels = [names[i] if data is None else f"{names[i]} = {_value_text(data[i])}" for i in shown]
    contrib = list(values[shown])
    if len(rest):
        labels.append(f"{len(rest)} other features")
        contrib.append(float(values[rest].sum()))
    labels, contrib = labels[::-1], np.asarray(contrib[::-1], float)
    # Bars stack from the base value (bottom) to the output (top), shap's layout.
    starts = base + np.concatenate([[0.0], np.cumsum(contrib)[:-1]])
    fx = base + float(values.sum())
    fmt = number_format(np.concatenate([[base, fx], starts, starts + contrib]))
    ends = np.concatenate([starts, starts + contrib])
    lo, hi = float(ends.min()), float(ends.max())
    span = (hi - lo) or 1.0
    fig, ax = _pyplot().subplots(figsize=(7.5, 0.42 * len(labels) + 1.8))
    for row, (c, s) in enumerate(zip(contrib, starts, strict=True)):
        ax.barh(row, c, left=s, color=_POS if c >= 0 else _NEG, height=0.7)
        ax.text(
            s + c,
            row,
            f" {fmt(c, sign=True)} ",
            va="center",
            ha="left" if c >= 0 else "right",
            fontsize=8,
        )
    ax.set_xlim(lo - 0.25 * span, hi + 0.25 * span)
    ax.set_ylim(-0.7, len(labels) - 0.3)
    ax.set_yticks(range(len(labels)), labels, fontsize=9)
    ax.axvline(base, color="grey", lw=0.8, ls="--")
    ax.axvline(fx, color="black", lw=0.8, ls=":")
    xlabel = _axis_label(f"base value {fmt(base)}  ->  output {fmt(fx)}", shown_output)
    if data is not None and not raw and _needs_units_note(data[shown]):
        xlabel += f"\n({_MODEL_UNITS})"
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_title(_title(title, "one prediction", exp, shown_output), fontsize=10)
    fig.tight_layout()
    return fig


def beeswarm(
    exp: Explanation,
    *,
    targets: int | str | None = None,
    max_display: int = 10,
    title: str | None = None,
    output=MISSING,
):
    """Every instance's attribution per feature, coloured by the feature's value (a summary plot).

    Args:
        exp: a batch of kind ``"additive"`` or ``"path"`` with one feature axis, ``(n, M)``
            values (``(n, M, K)`` with ``targets``) and ``(n, M)`` data.
        targets: the output shown, an int position or an output name; default the first.
            ``output=`` is its deprecated alias.
        max_display: most features drawn, by mean ``|value|``.
        title: the figure title (default: the method and the output shown).

    Returns:
        The matplotlib Figure.

    Raises:
        TypeError: for maps, surrogate coefficients and prototype evidence.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(20, 3))
        >>> fig = beeswarm(Explanation(X * 2, np.zeros(20), X))
    """
    targets = renamed("output", output, "targets", targets)
    max_display = check_int("max_display", max_display)
    values, _, shown = _additive_batch(
        exp, "beeswarm", targets, "targets" if output is MISSING else "output"
    )
    data = np.asarray(exp.data).reshape(values.shape)
    names = _names(exp, values.shape[1])
    order = np.argsort(np.abs(values).mean(0))[::-1][:max_display][::-1]
    rng = np.random.default_rng(0)
    fig, ax = _pyplot().subplots(figsize=(7.5, 0.4 * len(order) + 1.5))
    for row, j in enumerate(order):
        col = data[:, j].astype(float)
        # shap's colour range: the 5th to 95th percentile, so one outlier does not wash out
        # the rest (the full range where those coincide).
        lo, hi = np.nanpercentile(col, [5, 95])
        if hi <= lo:
            lo, hi = col.min(), col.max()
        colour = np.clip((col - lo) / (hi - lo), 0, 1) if hi > lo else np.full_like(col, 0.5)
        jitter = rng.uniform(-0.25, 0.25, size=len(col))
        points = ax.scatter(
            values[:, j], row + jitter, c=colour, cmap="coolwarm", s=10, vmin=0, vmax=1
        )
    ax.set_yticks(range(len(order)), [names[j] for j in order])
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel(_axis_label("attribution", shown))
    bar_ = fig.colorbar(points, ax=ax, ticks=[0, 1], aspect=30)
    bar_.ax.set_yticklabels(["low", "high"])
    bar_.set_label("feature value", labelpad=-8)
    ax.set_title(_title(title, "summary", exp, shown), fontsize=10)
    fig.tight_layout()
    return fig


def force(
    exp: Explanation,
    *,
    targets: int | str | None = None,
    max_display: int = 12,
    display_data: ArrayLike | None = None,
    title: str | None = None,
):
    """shap's force plot, static: one instance's attributions as forces pushing to the output.

    Positive attributions (red) push from the left up to ``f(x)``, negative ones (blue) push
    back from the right; the red and blue bars meet at ``f(x)`` and their difference is
    ``f(x) - base value``. The largest forces sit next to ``f(x)``, as in shap. Segments are
    labelled ``name = value`` where there is room, largest first, at most ``max_display``.

    Args:
        exp: one instance (``exp[i]`` of a batch) of kind ``"additive"`` or ``"path"``.
        targets: the output shown, an int position or an output name; default the first.
        max_display: most segments labelled.
        display_data: the instance's feature values in display units ``(M,)``.
        title: the figure title (default: the method and the output shown).

    Returns:
        The matplotlib Figure: ``fig.axes[0].patches`` are the segments, red then blue, each
        spanning its feature's ``|value|``.

    Raises:
        TypeError: for maps, surrogate coefficients and prototype evidence.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> fig = force(Explanation(np.array([1.0, -2.0, 0.5]), np.array(0.5), np.ones(3)))
    """
    max_display = check_int("max_display", max_display)
    values, base, shown_output = _additive_one(exp, "force", targets)
    names = _names(exp, values.shape[0])
    data, raw = _display_values(exp, display_data, values.shape)
    fx = base + float(values.sum())
    pos = [int(j) for j in np.argsort(-values) if values[j] > 0]
    neg = [int(j) for j in np.argsort(values) if values[j] < 0]
    segments = []  # (feature, left, width)
    cursor = fx
    for j in pos:  # largest next to f(x), smaller further left
        segments.append((j, cursor - values[j], values[j]))
        cursor -= values[j]
    cursor = fx
    for j in neg:
        segments.append((j, cursor, -values[j]))
        cursor -= values[j]
    lefts = [s[1] for s in segments] + [fx, base]
    rights = [s[1] + s[2] for s in segments] + [fx, base]
    lo, hi = min(lefts), max(rights)
    span = (hi - lo) or 1.0
    fmt = number_format([base, fx, lo, hi])
    fig, ax = _pyplot().subplots(figsize=(10, 3.2))
    for j, left, width in segments:
        ax.barh(
            0,
            width,
            left=left,
            height=0.35,
            color=_POS if values[j] > 0 else _NEG,
            edgecolor="white",
            linewidth=0.8,
        )
    ax.set_xlim(lo - 0.05 * span, hi + 0.05 * span)
    ax.set_ylim(-2.2, 1.1)
    # Labels below the bar at 35 degrees; one is kept only where it clears the ones already
    # placed (3% of the axis: parallel labels then sit a text height apart), largest first.
    placed = []
    for j, left, width in sorted(segments, key=lambda s: -s[2]):
        centre = left + width / 2
        if len(placed) == max_display:
            break
        if any(abs(centre - c) < 0.03 * span for c in placed):
            continue
        placed.append(centre)
        text = names[j] if data is None else f"{names[j]} = {_value_text(data[j])}"
        ax.text(
            centre,
            -0.25,
            text,
            rotation=35,
            ha="right",
            va="top",
            fontsize=8,
            color=_POS if values[j] > 0 else _NEG,
            rotation_mode="anchor",
        )
    ax.annotate(
        f"f(x) = {fmt(fx)}",
        (fx, 0.2),
        (fx, 0.75),
        ha="center",
        fontsize=9,
        fontweight="bold",
        arrowprops=dict(arrowstyle="-", lw=0.8),
    )
    ax.annotate(
        f"base value {fmt(base)}",
        (base, 0.2),
        (base, 0.5),
        ha="center",
        fontsize=8,
        color="grey",
        arrowprops=dict(arrowstyle="-", lw=0.6, color="grey"),
    )
    ax.text(lo, 0.95, "higher", color=_POS, fontsize=8, ha="left")
    ax.text(hi, 0.95, "lower", color=_NEG, fontsize=8, ha="right")
    ax.set_yticks([])
    for side in ("left", "right", "top"):
        ax.spines[side].set_visible(False)
    xlabel = _axis_label("model output", shown_output)
    if data is not None and not raw and _needs_units_note(data):
        xlabel += f"   ({_MODEL_UNITS})"
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_title(_title(title, "forces on one prediction", exp, shown_output), fontsize=10)
    fig.tight_layout()
    return fig


def approximate_interactions(values, data, feature: int) -> np.ndarray:
    """Other features ordered by how much they seem to interact with ``feature``, strongest first.

    shap's heuristic (``shap.utils.approximate_interactions``): sort the instances by the
    feature's value, cut them into bins of ``clip(n // 10, 1, 50)``, and score each other
    feature by the summed ``|correlation|`` of its values with ``feature``'s attributions
    within the bins.

    Args:
        values: ``(n, M)`` attributions.
        data: ``(n, M)`` feature values.
        feature: the feature whose attributions are explained.

    Returns:
        ``(M,)`` feature indices, strongest interaction first (``feature`` itself scores 0).

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 3))
        >>> V = X * X[:, [2]]  # every feature's effect is scaled by x2
        >>> int(approximate_interactions(V, X, 0)[0])
        2
    """
    values, data = np.asarray(values, float), np.asarray(data, float)
    srt = np.argsort(data[:, feature], kind="stable")
    ref = values[srt, feature]
    n = len(ref)
    inc = max(min(n // 10, 50), 1)
    scores = np.zeros(data.shape[1])
    for i in range(data.shape[1]):
        other = data[srt, i]
        if i == feature or np.sum(np.abs(other)) < 1e-8:
            continue
        for start in range(0, n, inc):
            a, b = ref[start : start + inc], other[start : start + inc]
            if np.std(b) > 0 and np.std(a) > 0:
                scores[i] += abs(np.corrcoef(a, b)[0, 1])
    return np.argsort(-scores, kind="stable")


def scatter(
    exp: Explanation,
    feature: int | str,
    *,
    targets: int | str | None = None,
    color: int | str | None = "auto",
    display_data: ArrayLike | None = None,
    title: str | None = None,
):
    """A dependence plot: one feature's attribution against its value, one point per instance.

    Like ``shap.plots.scatter``: the points are ``(value of the feature, its attribution)``; with
    ``color="auto"`` they are coloured by the feature that seems to interact most with it
    (:func:`approximate_interactions`), or by a named feature, or not at all (``None``).

    Args:
        exp: a batch of kind ``"additive"`` or ``"path"`` with one feature axis.
        feature: the feature shown, an index or a feature name.
        targets: the output shown, an int position or an output name; default the first.
        color: ``"auto"``, a feature index or name, or ``None``.
        display_data: the explained rows in display units ``(n, M)``, used for the x axis and
            the colours instead of the model's inputs.
        title: the figure title (default: the method and the output shown).

    Returns:
        The matplotlib Figure; ``fig.axes[0].collections[0]`` holds the points.

    Raises:
        TypeError: for maps, surrogate coefficients and prototype evidence.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> X = np.random.default_rng(0).normal(size=(30, 3))
        >>> fig = scatter(Explanation(X * 2, np.zeros(30), X, feature_names=["a", "b", "c"]), "b")
    """
    values, _, shown = _additive_batch(exp, "scatter", targets)
    n, M = values.shape
    j = _feature_index(exp, feature, M)
    names = _names(exp, M)
    data, raw = _display_values(exp, display_data, values.shape)
    if data is None:
        raise ValueError(
            f"scatter needs the feature values: the Explanation's data has shape "
            f"{np.shape(exp.data)}, not {values.shape}; pass display_data="
        )
    if isinstance(color, str) and color == "auto":
        ranked = [int(i) for i in approximate_interactions(values, data, j) if i != j]
        c = ranked[0] if ranked else None
    elif color is None:
        c = None
    else:
        c = _feature_index(exp, color, M, "color")
    fig, ax = _pyplot().subplots(figsize=(6.5, 4.5))
    if c is None:
        ax.scatter(data[:, j], values[:, j], s=14, color=_NEG)
    else:
        points = ax.scatter(data[:, j], values[:, j], s=14, c=data[:, c], cmap="coolwarm")
        fig.colorbar(points, ax=ax, label=names[c])
    ax.axhline(0, color="grey", lw=0.6)
    xlabel = names[j]
    if not raw and _needs_units_note(data[:, j]):
        xlabel += f"\n({_MODEL_UNITS})"
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(_axis_label(f"attribution of {names[j]}", shown), fontsize=9)
    ax.set_title(_title(title, f"dependence on {names[j]}", exp, shown), fontsize=10)
    fig.tight_layout()
    return fig


def hclust_order(values) -> np.ndarray:
    """Rows ordered so that similar rows sit together: shap's ``hclust_ordering``.

    Complete-linkage clustering on squared Euclidean distances, then SciPy's optimal leaf
    ordering (the order with the least distance between neighbours that the tree allows).

    Args:
        values: ``(n, M)``.

    Returns:
        ``(n,)`` row indices.

    Example:
        >>> import numpy as np
        >>> hclust_order(np.array([[0.0], [5.0], [0.1], [5.1]])).tolist()  # pairs together
        [3, 1, 2, 0]
    """
    from scipy.cluster import hierarchy
    from scipy.spatial.distance import pdist

    values = np.asarray(values, float)
    if len(values) < 2:
        return np.arange(len(values))
    distances = pdist(values, "sqeuclidean")
    tree = hierarchy.complete(distances)
    return hierarchy.leaves_list(hierarchy.optimal_leaf_ordering(tree, distances))


def heatmap(
    exp: Explanation,
    *,
    targets: int | str | None = None,
    max_display: int = 10,
    instance_order: str | ArrayLike | None = "hclust",
    title: str | None = None,
):
    """Every instance's attributions as one column of a heat map, with ``f(x)`` drawn above.

    Rows are features by mean ``|value|`` (largest on top); past ``max_display - 1`` the rest
    are summed into one row, as ``shap.plots.heatmap`` does. Columns are instances, ordered by
    ``instance_order``: ``"hclust"`` (:func:`hclust_order` of the attributions, shap's default),
    ``"output"`` (by ``f(x)``, ascending), ``None`` (as given) or explicit indices.

    Args:
        exp: a batch of kind ``"additive"`` or ``"path"`` with one feature axis.
        targets: the output shown, an int position or an output name; default the first.
        max_display: most rows, the last one summing the remaining features.
        instance_order: see above.
        title: the figure title (default: the method and the output shown).

    Returns:
        The matplotlib Figure: ``fig.axes[0]`` the ``f(x)`` line, ``fig.axes[1]`` the image
        (``(rows, n)``).

    Raises:
        TypeError: for maps, surrogate coefficients and prototype evidence.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> X = np.random.default_rng(0).normal(size=(30, 4))
        >>> fig = heatmap(Explanation(X, np.zeros(30), X))
    """
    max_display = check_int("max_display", max_display, minimum=2)
    values, base, shown = _additive_batch(exp, "heatmap", targets)
    n, M = values.shape
    fx = base + values.sum(1)
    if isinstance(instance_order, str):
        if instance_order == "hclust":
            columns = hclust_order(values)
        elif instance_order == "output":
            columns = np.argsort(fx, kind="stable")
        else:
            raise ValueError(
                f"instance_order must be 'hclust', 'output', None or indices; "
                f"got {instance_order!r}"
            )
    elif instance_order is None:
        columns = np.arange(n)
    else:
        columns = np.asarray(instance_order)
        if columns.shape != (n,) or sorted(columns.tolist()) != list(range(n)):
            raise ValueError(
                f"instance_order must be a permutation of the {n} instances; got {columns!r}"
            )
    names = _names(exp, M)
    rows = np.argsort(-np.abs(values).mean(0), kind="stable")
    shown_values = values[columns][:, rows]
    labels = [names[i] for i in rows]
    if M > max_display:
        rest = shown_values[:, max_display - 1 :].sum(1)
        shown_values = np.concatenate([shown_values[:, : max_display - 1], rest[:, None]], 1)
        labels = labels[: max_display - 1] + [f"sum of {M - max_display + 1} other features"]
    plt = _pyplot()
    fig, (top, ax) = plt.subplots(
        2,
        1,
        figsize=(8, 0.45 * len(labels) + 2.6),
        sharex=True,
        layout="constrained",
        gridspec_kw=dict(height_ratios=[1, max(2, len(labels) / 2)]),
    )
    top.plot(np.arange(n), fx[columns], color="black", lw=1.2)
    top.axhline(float(np.mean(base)), color="grey", lw=0.6, ls="--")
    top.set_ylabel("f(x)", fontsize=9)
    vmax = float(np.nanpercentile(np.abs(shown_values), 99)) or 1.0
    image = ax.imshow(
        shown_values.T,
        aspect="auto",
        interpolation="nearest",
        cmap="RdBu_r",
        vmin=-vmax,
        vmax=vmax,
    )
    ax.set_yticks(range(len(labels)), labels, fontsize=9)
    ax.set_xlabel(
        "instances"
        + (" (clustered)" if isinstance(instance_order, str) and instance_order == "hclust" else "")
    )
    fig.colorbar(image, ax=[top, ax], label=_axis_label("attribution", shown), aspect=30)
    top.set_title(_title(title, "attributions of every instance", exp, shown), fontsize=10)
    return fig


def decision(
    exp: Explanation,
    *,
    targets: int | str | None = None,
    max_display: int = 20,
    feature_order: str | ArrayLike | None = "importance",
    display_data: ArrayLike | None = None,
    title: str | None = None,
):
    """shap's decision plot: each instance's path from the base value to its output ``f(x)``.

    Features are rows, least important at the bottom (``feature_order="importance"``: by the sum
    of ``|value|`` over the instances, as shap orders them; ``"hclust"``: features clustered by
    their attributions; ``None``: as given; or explicit indices). Each line starts at the bottom
    at its base value plus the features not shown, moves by each shown feature's attribution
    row by row, and ends at the top at ``f(x)``.

    Args:
        exp: a batch or one instance, of kind ``"additive"`` or ``"path"``.
        targets: the output shown, an int position or an output name; default the first.
        max_display: most features shown (the most important ones).
        feature_order: see above.
        display_data: for one instance, its feature values in display units ``(M,)``, written
            next to the feature names.
        title: the figure title (default: the method and the output shown).

    Returns:
        The matplotlib Figure; ``fig.axes[0].lines[:n]`` are the paths, whose x data are the
        cumulative sums.

    Raises:
        TypeError: for maps, surrogate coefficients and prototype evidence.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> X = np.random.default_rng(0).normal(size=(10, 4))
        >>> fig = decision(Explanation(X, np.zeros(10), X))
    """
    max_display = check_int("max_display", max_display)
    require_kind(exp, _ADDITIVE, "decision")
    _one_feature_axis(exp, "decision")
    values, base, shown = _one_output(exp, targets)
    single = values.ndim == 1
    values, base = np.atleast_2d(values), np.atleast_1d(base).astype(float)
    n, M = values.shape
    if isinstance(feature_order, str) and feature_order == "importance":
        order = np.argsort(np.abs(values).sum(0), kind="stable")
    elif isinstance(feature_order, str) and feature_order == "hclust":
        order = hclust_order(values.T)
    elif feature_order is None:
        order = np.arange(M)
    elif isinstance(feature_order, str):
        raise ValueError(
            f"feature_order must be 'importance', 'hclust', None or indices; got {feature_order!r}"
        )
    else:
        order = np.asarray(feature_order)
        if order.shape != (M,) or sorted(order.tolist()) != list(range(M)):
            raise ValueError(
                f"feature_order must be a permutation of the {M} features; got {order!r}"
            )
    shown_features = order[-max_display:]
    hidden = order[: max(0, M - max_display)]
    start = base + values[:, hidden].sum(1)
    paths = start[:, None] + np.concatenate(
        [np.zeros((n, 1)), np.cumsum(values[:, shown_features], 1)], 1
    )
    names = _names(exp, M)
    labels = [names[i] for i in shown_features]
    if single:
        data, raw = _display_values(exp, display_data, (M,))
        if data is not None:
            labels = [f"{names[i]} = {_value_text(data[i])}" for i in shown_features]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(labels) + 2.0))
    fx = paths[:, -1]
    span = np.ptp(fx) or 1.0
    cmap = plt.get_cmap("coolwarm")
    y = np.arange(len(labels) + 1) - 0.5
    for i in range(n):
        colour = cmap((fx[i] - fx.min()) / span) if n > 1 else _POS
        ax.plot(paths[i], y, color=colour, lw=1.2, alpha=0.9 if n < 50 else 0.5)
    for row in range(len(labels)):
        ax.axhline(row, color="#dddddd", lw=0.5, zorder=0)
    ax.axvline(float(np.mean(base)), color="grey", lw=0.8, ls="--")
    ax.set_yticks(range(len(labels)), labels, fontsize=9)
    ax.set_ylim(-0.5, len(labels) - 0.5)
    ax.tick_params(axis="x", top=True, labeltop=True)  # f(x) is read at the top, as in shap
    ax.set_xlabel(_axis_label("model output", shown), fontsize=9)
    what = "decision path" if single else f"decision paths of {n} instances"
    ax.set_title(_title(title, what, exp, shown), fontsize=10)
    fig.tight_layout()
    return fig


def compare(reference: ArrayLike, estimates: dict, *, title: str = "estimates against reference"):
    """Scatter each estimator's attributions against reference values (e.g. exact Shapley).

    Args:
        reference: the reference attributions, any shape (flattened).
        estimates: estimator name -> attributions shaped like ``reference``; the legend shows
            each one's mean absolute error.
        title: the figure title.

    Returns:
        The matplotlib Figure.

    Example:
        >>> import numpy as np
        >>> fig = compare(np.arange(4.0), {"noisy": np.arange(4.0) + 0.1})
    """
    reference = np.asarray(reference).ravel()
    fig, ax = _pyplot().subplots(figsize=(5, 5))
    lo, hi = reference.min(), reference.max()
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
    for name, est in estimates.items():
        est = np.asarray(est).ravel()
        if est.shape != reference.shape:
            raise ValueError(
                f"estimates[{name!r}] must have {reference.size} values like reference; "
                f"got {est.size}"
            )
        err = np.abs(est - reference).mean()
        ax.scatter(reference, est, s=8, alpha=0.6, label=f"{name} (mean |err| {err:.2g})")
    ax.set_xlabel("reference")
    ax.set_ylabel("estimate")
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def metric_table(table, *, title: str = "explainers by metric", higher_is_better=None):
    """Draw a :class:`~xaijax.metrics.MetricTable`: one panel per metric, one bar per explainer
    (mean over instances, error bar one standard error).

    Args:
        table: what :func:`xaijax.metrics.evaluate_explainers` returned (anything with
            ``rows`` of dicts ``explainer, metric, mean, sem``).
        title: the figure title.
        higher_is_better: optional metric name -> bool; the best explainer's bar is outlined.

    Returns:
        The matplotlib Figure.

    Example:
        >>> rows = [dict(explainer=e, metric="auc", mean=m, sem=0.01) for e, m in
        ...         [("saliency", 0.7), ("random", 0.5)]]
        >>> fig = metric_table(type("T", (), {"rows": rows})(), higher_is_better={"auc": True})
    """
    rows = list(getattr(table, "rows", []))
    if not rows or not all({"explainer", "metric", "mean", "sem"} <= set(r) for r in rows):
        raise TypeError("table must be a MetricTable (rows of explainer, metric, mean, sem)")
    explainers = list(dict.fromkeys(r["explainer"] for r in rows))
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    cell = {(r["explainer"], r["metric"]): r for r in rows}
    higher_is_better = dict(higher_is_better or {})
    cols = min(4, len(metrics))
    nrows = -(-len(metrics) // cols)
    fig, axes = _pyplot().subplots(
        nrows,
        cols,
        figsize=(3.2 * cols, 0.35 * len(explainers) * nrows + 1.2 * nrows),
        squeeze=False,
    )
    y = np.arange(len(explainers))
    for ax, m in zip(axes.ravel(), metrics, strict=False):
        means = np.array([cell.get((e, m), {}).get("mean", np.nan) for e in explainers])
        sems = np.array([cell.get((e, m), {}).get("sem", np.nan) for e in explainers])
        bars = ax.barh(y, means, xerr=np.nan_to_num(sems), color="#7f7f7f", capsize=2)
        if m in higher_is_better and np.isfinite(means).any():
            best = np.nanargmax(means) if higher_is_better[m] else np.nanargmin(means)
            bars[best].set_color(_POS)
        ax.set_yticks(y, explainers if ax in axes[:, 0] else [""] * len(y), fontsize=8)
        ax.invert_yaxis()
        arrow = {True: " (higher better)", False: " (lower better)"}.get(
            higher_is_better.get(m), ""
        )
        ax.set_title(m + arrow, fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    for ax in axes.ravel()[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# -- interactions ----------------------------------------------------------------------------
def _interaction_matrix(exp: Explanation, targets, what: str):
    """``(matrix, mean_abs, output label)``: the order-1 values on the diagonal and each pair's
    whole value off it (twice shap's halved entry); a batch gives its mean and mean ``|.|``."""
    require_kind(exp, ("interaction",), what)
    values, _, shown = _one_output(exp, targets)
    if values.ndim not in (2, 3) or values.shape[-1] != values.shape[-2]:
        raise ValueError(
            f"{what} draws a pairwise matrix (M, M) or a batch (n, M, M); got values of shape "
            f"{values.shape}"
        )
    M = values.shape[-1]
    whole = np.where(np.eye(M, dtype=bool), values, 2 * values).astype(np.float64)
    if whole.ndim == 3:
        return whole.mean(0), np.abs(whole).mean(0), shown
    return whole, np.abs(whole), shown


def interaction_matrix(
    exp: Explanation,
    *,
    targets: int | str | None = None,
    max_display: int = 12,
    title: str | None = None,
):
    """The pairwise interaction matrix: order-1 values on the diagonal, pair values off it.

    One instance is drawn signed; a batch as the mean ``|value|`` of each entry (global
    strength, as :func:`bar` does for attributions). Off the diagonal each pair's whole index
    value is drawn, twice the halved entry of shap's layout that ``exp.values`` holds. Features
    are ordered by their total ``|interaction|``; the ``max_display`` strongest are drawn.

    Args:
        exp: an Explanation of kind ``"interaction"`` (:func:`~xaijax.shapley_interactions`),
            one instance ``(M, M[, K])`` or a batch ``(n, M, M[, K])``.
        targets: the output shown, an int position or an output name; default the first.
        max_display: most features drawn.
        title: the figure title (default: the method, the index and the output shown).

    Returns:
        The matplotlib Figure; ``fig.axes[0].images[0]`` holds the matrix drawn.

    Raises:
        TypeError: for kinds other than ``"interaction"``.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> values = np.array([[1.0, 0.5], [0.5, -2.0]])
        >>> fig = interaction_matrix(Explanation(values, 0.0, np.ones(2), kind="interaction"))
    """
    max_display = check_int("max_display", max_display, minimum=1)
    signed, strength, shown = _interaction_matrix(exp, targets, "interaction_matrix")
    batch = np.ndim(exp.base_values) > (1 if exp.has_output_axis else 0)
    matrix = strength if batch else signed
    M = matrix.shape[0]
    names = _names(exp, M)
    order = np.argsort(-strength.sum(1), kind="stable")[:max_display]
    drawn = matrix[np.ix_(order, order)]
    labels = [names[i] for i in order]
    size = 0.45 * len(order) + 2.2
    fig, ax = _pyplot().subplots(figsize=(size + 1.2, size))
    if batch:
        image = ax.imshow(drawn, cmap="Reds", vmin=0, vmax=float(drawn.max()) or 1.0)
    else:
        vmax = float(np.abs(drawn).max()) or 1.0
        image = ax.imshow(drawn, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    ax.set_xticks(range(len(order)), labels, rotation=90, fontsize=9)
    ax.set_yticks(range(len(order)), labels, fontsize=9)
    if len(order) <= 10:
        fmt = number_format(drawn)
        dark = 0.6 * (float(np.abs(drawn).max()) or 1.0)
        for (r, c), v in np.ndenumerate(drawn):
            colour = "white" if abs(v) > dark else "black"
            ax.text(c, r, fmt(v), ha="center", va="center", fontsize=7, color=colour)
    index = exp.extras.get("index", "interaction")
    what = f"mean |{index}|" if batch else str(index)
    fig.colorbar(image, ax=ax, label=_axis_label(what, shown), shrink=0.8)
    ax.set_title(
        _title(title, f"{index} (diagonal: order 1; off it: pairs)", exp, shown), fontsize=10
    )
    fig.tight_layout()
    return fig


def interaction_network(
    exp: Explanation,
    *,
    targets: int | str | None = None,
    max_edges: int = 10,
    title: str | None = None,
):
    """The strongest pairwise interactions as a network: features on a circle, one edge per pair.

    Edges are the ``max_edges`` pairs of largest ``|value|`` (a batch: mean ``|value|``), their
    width proportional to it, red where the (mean) pair value is positive and blue where
    negative; node areas are proportional to the order-1 ``|value|``. Drawn with matplotlib
    alone (no graph library).

    Args:
        exp: an Explanation of kind ``"interaction"``, one instance or a batch.
        targets: the output shown, an int position or an output name; default the first.
        max_edges: most pairs drawn, strongest first.
        title: the figure title (default: the method, the index and the output shown).

    Returns:
        The matplotlib Figure; ``fig.axes[0].lines`` are the edges, strongest first, each with
        ``get_label()`` ``"a-b"``.

    Raises:
        TypeError: for kinds other than ``"interaction"``.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> values = np.array([[1.0, 0.5, 0.0], [0.5, -2.0, -0.1], [0.0, -0.1, 0.3]])
        >>> fig = interaction_network(Explanation(values, 0.0, np.ones(3), kind="interaction"))
        >>> [line.get_label() for line in fig.axes[0].lines]
        ['x0-x1', 'x1-x2', 'x0-x2']
    """
    max_edges = check_int("max_edges", max_edges, minimum=1)
    signed, strength, shown = _interaction_matrix(exp, targets, "interaction_network")
    M = signed.shape[0]
    names = _names(exp, M)
    rows, cols = np.triu_indices(M, k=1)
    pairs = np.argsort(-strength[rows, cols], kind="stable")[:max_edges]
    angle = np.pi / 2 - 2 * np.pi * np.arange(M) / M
    xy = np.stack([np.cos(angle), np.sin(angle)], 1)
    fig, ax = _pyplot().subplots(figsize=(6, 6))
    top = float(strength[rows, cols].max()) or 1.0
    fmt = number_format(strength[rows[pairs], cols[pairs]])
    for p in pairs:
        a, b = rows[p], cols[p]
        ax.plot(
            xy[[a, b], 0],
            xy[[a, b], 1],
            color=_POS if signed[a, b] >= 0 else _NEG,
            lw=0.5 + 7.5 * strength[a, b] / top,
            alpha=0.75,
            zorder=1,
            label=f"{names[a]}-{names[b]}",
        )
        mid = xy[[a, b]].mean(0)
        ax.text(*mid, fmt(signed[a, b], sign=True), fontsize=7, ha="center", va="center")
    first = np.diagonal(strength)
    area = 200 + 1800 * first / (float(first.max()) or 1.0)
    ax.scatter(xy[:, 0], xy[:, 1], s=area, color="#dddddd", edgecolor="black", zorder=2)
    for i in range(M):
        ax.text(*(1.2 * xy[i]), names[i], ha="center", va="center", fontsize=9)
    ax.set_xlim(-1.45, 1.45)
    ax.set_ylim(-1.45, 1.45)
    ax.set_aspect("equal")
    ax.axis("off")
    index = exp.extras.get("index", "interaction")
    what = f"strongest {len(pairs)} pairs of {index}"
    ax.set_title(_title(title, what, exp, shown), fontsize=10)
    fig.tight_layout()
    return fig


def _as_heatmap(a):
    if isinstance(a, Explanation):
        a = a.values
    a = np.asarray(a, np.float32)
    return np.abs(a).sum(-1) if a.ndim == 3 else a


def overlay(
    image: Float[ArrayLike, "H W C"],
    heatmap: Float[ArrayLike, "H W *C"] | Explanation,
    *,
    alpha: float = 0.5,
    cmap: str = "jet",
    title: str | None = None,
    ax=None,
):
    """Draw ``heatmap (H, W)`` (or ``(H, W, C)``, summed over ``|channels|``) over ``image``.

    Args:
        image: ``(H, W, C)``.
        heatmap: ``(H, W)`` or ``(H, W, C)``, or a one-image map Explanation.
        alpha: the heatmap's opacity.
        cmap: the heatmap's colour map.
        title: the axes title.
        ax: draw into these axes instead of a new figure.

    Returns:
        The Figure (a new one unless ``ax`` is given).

    Example:
        >>> import numpy as np
        >>> fig = overlay(np.zeros((8, 8, 3)), np.eye(8))
    """
    image = np.asarray(image, np.float32)
    heat = _as_heatmap(heatmap)
    if heat.shape != image.shape[:2]:
        raise ValueError(
            f"heatmap must have shape {image.shape[:2]} like the image; got {heat.shape}"
        )
    if ax is None:
        fig, ax = _pyplot().subplots(figsize=(3, 3))
    else:
        fig = ax.figure
    ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray")
    ax.imshow(heat, cmap=cmap, alpha=alpha)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return fig


def _rgb(image, cmap: str = "gray"):
    """An image as matplotlib's ``imshow`` shows it, ``(H, W, 3)`` floats in [0, 1]: integers
    over 255, floats clipped to [0, 1], one channel min-max scaled through ``cmap``."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return _colour(a, cmap)
    a = a[..., :3].astype(np.float32)
    if np.issubdtype(np.asarray(image).dtype, np.integer):
        a = a / 255.0
    return np.clip(a, 0.0, 1.0)


def _colour(values, cmap: str):
    """``(H, W)`` values through ``cmap`` as ``imshow`` autoscales them (min to max)."""
    import matplotlib

    v = np.asarray(values, np.float64)
    lo, hi = float(v.min()), float(v.max())
    scaled = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    return matplotlib.colormaps[cmap](scaled)[..., :3]


def image_grid(
    images: Float[ArrayLike, "n H W C"],
    maps,
    *,
    alpha: float = 0.5,
    row_titles=None,
    title=None,
):
    """A grid of images (rows) by methods (columns), each map overlaid on its image.

    The grid is one picture: each cell is the map through the ``jet`` colour map (scaled from
    its minimum to its maximum, as :func:`overlay`) blended over the image with opacity
    ``alpha``, the cells laid out with white gaps in one axes, so a grid of dozens of maps
    draws as fast as one image.

    Args:
        images: ``(n, H, W, C)``.
        maps: method name -> ``(n, H, W)`` (or ``(n, H, W, C)``, summed over ``|channels|``)
            maps, or a batched map Explanation.
        alpha: the maps' opacity.
        row_titles: one title per image.
        title: the figure title.

    Returns:
        The matplotlib Figure.

    Example:
        >>> import numpy as np
        >>> fig = image_grid(np.zeros((2, 8, 8, 3)), {"a": np.ones((2, 8, 8))})
    """
    images = np.asarray(images)
    n, H, W = images.shape[:3]
    names = list(maps)
    cols = 1 + len(names)
    heats = {}
    for name in names:
        m = maps[name]
        m = np.asarray(m.values if isinstance(m, Explanation) else m, np.float32)
        heats[name] = np.abs(m).sum(-1) if m.ndim == 4 else m
        if heats[name].shape != (n, H, W):
            raise ValueError(
                f"maps[{name!r}] must have shape {(n, H, W)} (or with a channel axis) like "
                f"images; got {m.shape}"
            )
    inch = 1.6 / max(H, W)  # inches per pixel: the longer side of a cell is 1.6 in
    row_title = 0.16 if row_titles is not None else 0.0
    gx, gy = max(1, round(0.06 / inch)), max(1, round((0.08 + row_title) / inch))
    mosaic = np.ones((n * H + (n - 1) * gy, cols * W + (cols - 1) * gx, 3), np.float32)
    for i in range(n):
        image = _rgb(images[i])
        cells = [image] + [
            alpha * _colour(heats[name][i], "jet") + (1 - alpha) * image for name in names
        ]
        for j, cell in enumerate(cells):
            top, left = i * (H + gy), j * (W + gx)
            mosaic[top : top + H, left : left + W] = cell
    wrapped = ["\n".join(textwrap.wrap(name, 14)) for name in names]
    lines = max([1] + [w.count("\n") + 1 for w in wrapped]) if names else 1
    header = (0.32 if title else 0.04) + max(0.15 * lines, row_title) + 0.04
    margin = 0.05
    width, height = mosaic.shape[1] * inch, mosaic.shape[0] * inch
    fig = _pyplot().figure(figsize=(width + 2 * margin, height + header + margin))
    fw, fh = fig.get_size_inches()
    ax = fig.add_axes((margin / fw, margin / fh, width / fw, height / fh))
    ax.imshow(mosaic, aspect="auto")
    ax.set_axis_off()
    for j, label in enumerate(wrapped, start=1):
        ax.text(j * (W + gx) + W / 2, -0.5, label, ha="center", va="bottom", fontsize=8)
    if row_titles is not None:
        for i in range(n):
            ax.text(
                W / 2, i * (H + gy) - 0.5, str(row_titles[i]), ha="center", va="bottom", fontsize=7
            )
    if title:
        fig.suptitle(title, fontsize=9, y=1 - 0.06 / fh, va="top")
    return fig


def lime_bar(
    exp: Explanation,
    *,
    instance: int = 0,
    targets: int | str | None = None,
    num_features: int = 10,
    display_data: ArrayLike | None = None,
    title: str | None = None,
    label=MISSING,
):
    """LIME's signed bar chart: one instance's top features by ``|weight|`` with readable labels.

    Uses ``extras["feature_labels"]`` (e.g. ``"0.12 < mean radius <= 0.57"`` or words) when the
    explanation has them; padding (empty labels, as text LIME pads short documents) is never
    drawn. LIME's bins are in the units the model received: with ``display_data`` (the instance
    in display units) the labels read ``name = value`` in those units instead, and without it
    a figure with numeric bins says that its numbers are model units. Draws any attributions
    over one feature axis, signed.

    Args:
        exp: a batch or one instance, e.g. from :func:`xaijax.lime_tabular`.
        instance: which instance of a batch.
        targets: the explained label shown: its position among the explained labels (the
            output axis), or an output name; default the first. ``label=`` is its deprecated
            alias.
        num_features: most features drawn, by ``|weight|``.
        display_data: the explained rows in display units, ``(n, M)`` (or ``(M,)``: this
            instance).
        title: the figure title (default: the method, the instance and the label shown).

    Returns:
        The matplotlib Figure.

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> fig = lime_bar(Explanation(np.array([[[0.5], [-0.2]]]), np.zeros((1, 1)),
        ...                            np.zeros((1, 2)), output_names=("1",), kind="surrogate"))
    """
    targets = renamed("label", label, "targets", targets)
    _one_feature_axis(exp, "lime_bar")
    values, _, shown = _one_output(exp, targets, "targets" if label is MISSING else "label")
    if not exp.is_batched:
        values = values[None]
    instance = check_int("instance", instance, minimum=0, maximum=values.shape[0] - 1)
    num_features = check_int("num_features", num_features)
    weights = values[instance]
    M = weights.shape[0]
    labels = exp.extras.get("feature_labels")
    if labels is not None and np.ndim(labels) == 1 and not exp.is_batched:
        labels = np.asarray(labels)[None]
    if labels is not None and np.ndim(labels) == 2:
        names = [str(s) for s in np.asarray(labels)[instance]]
    else:
        names = _names(exp, M)
    plain = _names(exp, M)
    raw = None
    if display_data is None:
        display_data = exp.extras.get("display_data")
    if display_data is not None:
        rows = np.asarray(display_data)
        if rows.shape == (M,):
            raw = rows
        elif rows.shape == (values.shape[0], M):
            raw = rows[instance]
        else:
            raise ValueError(
                f"display_data must hold the explained rows in display units, shape "
                f"({values.shape[0]}, {M}) (or ({M},) for this instance); got {rows.shape}"
            )
        names = [f"{plain[j]} = {_value_text(raw[j])}" for j in range(M)]
    present = np.flatnonzero([bool(s.strip()) for s in names])  # text LIME pads with ""
    order = present[np.argsort(np.abs(weights[present]), kind="stable")[::-1]]
    order = order[:num_features][::-1]
    fig, ax = _pyplot().subplots(figsize=(7, 0.35 * len(order) + 1.4))
    ax.barh(
        range(len(order)),
        weights[order],
        color=[_POS if weights[i] >= 0 else _NEG for i in order],
    )
    ax.set_yticks(range(len(order)), [names[i] for i in order], fontsize=9)
    ax.set_ylim(-0.6, len(order) - 0.4)
    _label_bars(ax, weights[order], range(len(order)), number_format(weights[order]), sign=True)
    ax.axvline(0, color="grey", lw=0.8)
    xlabel = _axis_label("surrogate weight", shown)
    numeric_bins = raw is None and any(
        any(ch.isdigit() for ch in names[i]) and any(op in names[i] for op in "<>=") for i in order
    )
    if numeric_bins:
        xlabel += "\n(bin edges in the units the model received;\ndisplay_data= shows raw values)"
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_title(_title(title, f"instance {instance}", exp, shown), fontsize=10)
    fig.tight_layout()
    return fig


def lime_segments(
    exp: Explanation,
    *,
    targets: int | str | None = None,
    num_features: int = 5,
    positive_only: bool = True,
    title: str | None = None,
    label=MISSING,
):
    """One image's LIME superpixels: all boundaries, and the top ``num_features`` segments kept.

    Args:
        exp: a single image's :func:`xaijax.lime_image` explanation (``exp[i]`` of a batch).
        targets: the explained label shown: its position among the explained labels
            (``exp.extras["labels"]``), or an output name; default the first.
        num_features: segments kept.
        positive_only: keep only segments that raise the label's score.
        title: the figure title.
        label: deprecated: the model's class id (one of ``exp.extras["labels"]``); use
            ``targets``, its position among them.

    Returns:
        The matplotlib Figure.

    Example:
        >>> import jax, numpy as np, jax.numpy as jnp
        >>> from xaijax import lime_image
        >>> f = lambda X: jnp.stack([X[..., 0].mean((1, 2)), X[..., 1].mean((1, 2))], axis=1)
        >>> seg = np.repeat(np.arange(4), 4).reshape(4, 4)
        >>> exp = lime_image(f, np.random.rand(4, 4, 3), key=jax.random.key(0), segments=seg,
        ...                  num_samples=20, top_labels=1)
        >>> fig = lime_segments(exp, num_features=2)
    """
    from skimage.segmentation import mark_boundaries

    require_kind(exp, ("surrogate",), "lime_segments")
    num_features = check_int("num_features", num_features)
    if "segments" not in exp.extras or "labels" not in exp.extras:
        raise ValueError(
            f"lime_segments needs a lime_image explanation (extras 'segments' and 'labels'); "
            f"got method {exp.method!r}"
        )
    if exp.is_batched:
        raise ValueError("lime_segments shows one image: pass exp[i] of a batch")
    labels = [int(v) for v in np.asarray(exp.extras["labels"]).reshape(-1)]
    if label is not MISSING:
        if targets is not None:
            raise TypeError("pass targets= only; label= is its deprecated alias")
        warnings.warn(
            "label= is deprecated and will be removed in the next release; use targets=, the "
            "position of the label among exp.extras['labels']",
            DeprecationWarning,
            stacklevel=2,
        )
        if label is not None and int(label) not in labels:
            raise ValueError(f"label {label} was not explained; explained labels: {labels}")
        class_id = labels[0] if label is None else int(label)
    else:
        k = _output_index(exp, targets)
        class_id = labels[0 if k is None else k]
    image = np.asarray(exp.data, np.float32)
    segments = np.asarray(exp.extras["segments"])
    shown, mask = get_image_and_mask(
        exp, class_id, positive_only=positive_only, num_features=num_features, hide_rest=True
    )
    scale = 255.0 if image.max() > 1.0 else 1.0
    fig, axes = _pyplot().subplots(1, 2, figsize=(6, 3.2))
    axes[0].imshow(mark_boundaries(image / scale, segments))
    axes[0].set_title("superpixels", fontsize=8)
    axes[1].imshow(mark_boundaries(np.asarray(shown, np.float32) / scale, mask.astype(int)))
    axes[1].set_title(f"top {num_features} segments, label {class_id}", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title or "LIME superpixels", fontsize=9)
    fig.tight_layout()
    return fig


def _token_rows(values, tokens, targets, name="values"):
    """``(rows of tokens, rows of values)`` for the text figures, one row per instance."""
    k = None
    if isinstance(values, Explanation):
        k = _output_index(values, targets)
        v = np.asarray(values.values, np.float64)
        if k is not None:
            v = v[..., k]
    else:
        v = np.asarray(values, np.float64)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2:
        raise ValueError(
            f"{name} must be one score per token, (L,) or (n, L) (an Explanation's values with one "
            f"output picked by targets); got shape {v.shape}"
        )
    if tokens and isinstance(tokens[0], str):
        tokens = [tokens]
    tokens = [list(map(str, t)) for t in tokens]
    if len(tokens) != v.shape[0]:
        raise ValueError(
            f"tokens must give one token list per instance ({v.shape[0]}); got {len(tokens)}"
        )
    for i, t in enumerate(tokens):
        if len(t) > v.shape[1]:
            raise ValueError(
                f"tokens[{i}] has {len(t)} tokens but {name} has {v.shape[1]} positions"
            )
    if not np.isfinite(v).all():
        raise ValueError(f"{name} must be finite")
    return tokens, [v[i, : len(t)] for i, t in enumerate(tokens)]


def _shown_scale(tokens, rows, skip) -> float:
    shown = [
        abs(float(v))
        for t, r in zip(tokens, rows, strict=True)
        for s, v in zip(t, r, strict=True)
        if s not in skip
    ]
    return max(shown, default=0.0)


def _token_colour(value: float, scale: float):
    """White for 0, the positive (red) or negative (blue) colour at ``|value| == scale``."""
    from matplotlib.colors import to_rgb

    end = np.array(to_rgb(_POS if value >= 0 else _NEG))
    t = min(abs(value) / scale, 1.0) if scale > 0 else 0.0
    return tuple((1 - t) * np.ones(3) + t * end)


def text(
    values,
    tokens,
    *,
    targets: int | str | None = None,
    skip=("[PAD]",),
    width: int = 72,
    title: str | None = None,
):
    """Tokens highlighted by their attribution (red positive, blue negative), like shap's text plot.

    One block of wrapped lines per instance; a token's background goes from white (0) to full
    colour at the largest ``|value|`` shown (one scale for all instances, so blocks compare), and a
    colour bar gives the scale. Tokens in ``skip`` (padding) are not drawn.

    Args:
        values: one score per token, ``(L,)`` or ``(n, L)``, or an Explanation over tokens (its
            output picked by ``targets`` when it has several).
        tokens: the token strings of one instance (a list of str) or of each instance (a list of
            lists), in the order of ``values``' positions (e.g. a tokenizer's tokens).
        targets: which output of a multi-output Explanation to show.
        skip: token strings not drawn.
        width: line width in characters.
        title: the figure title.

    Returns:
        The matplotlib Figure.

    Example:
        >>> fig = text([0.5, -0.2, 0.0], ["not", "bad", "!"])
    """
    tokens, rows = _token_rows(values, tokens, targets)
    check_int("width", width, minimum=8)
    scale = _shown_scale(tokens, rows, skip)
    layout = []  # (instance, line, column, token, value)
    line = 0
    for i, (toks, vals) in enumerate(zip(tokens, rows, strict=True)):
        col = 0
        for tok, val in zip(toks, vals, strict=True):
            if tok in skip:
                continue
            if col and col + len(tok) > width:
                line, col = line + 1, 0
            layout.append((i, line, col, tok, float(val)))
            col += len(tok) + 1
        line += 2  # a blank line between instances
    lines = max(line - 1, 1)
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(0.095 * width + 1.2, 0.28 * lines + 0.9))
    for _, ln, col, tok, val in layout:
        ax.text(
            col,
            ln,
            tok,
            family="monospace",
            fontsize=9,
            va="center",
            ha="left",
            bbox=dict(facecolor=_token_colour(val, scale), edgecolor="none", pad=1.5),
        )
    ax.set_xlim(-0.5, width + 0.5)
    ax.set_ylim(lines - 0.5, -0.8)
    ax.set_axis_off()
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    cmap = LinearSegmentedColormap.from_list("xaijax_text", [_NEG, "#ffffff", _POS])
    bar = fig.colorbar(
        ScalarMappable(Normalize(-scale or -1.0, scale or 1.0), cmap),
        ax=ax,
        orientation="horizontal",
        fraction=0.25 / (lines + 2),
        pad=0.02,
        aspect=40,
    )
    bar.ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


def text_html(
    values,
    tokens,
    *,
    targets: int | str | None = None,
    skip=("[PAD]",),
    title: str | None = None,
) -> str:
    """An HTML fragment of tokens highlighted by their attribution, like ``shap.plots.text``.

    Each token is a ``<span>`` whose background is the colour :func:`text` uses and whose tooltip
    (``title``) gives the value; one paragraph per instance. Tokens are HTML-escaped. Open it in
    a browser, embed it in a report, or show it in a notebook with ``IPython.display.HTML``.

    Args:
        values, tokens, targets, skip: as for :func:`text`.
        title: a heading above the paragraphs.

    Returns:
        The HTML as a string.

    Example:
        >>> html = text_html([0.5, -0.2], ["good", "<b>"])
        >>> "&lt;b&gt;" in html and "0.5" in html
        True
    """
    import html as _html

    tokens, rows = _token_rows(values, tokens, targets)
    scale = _shown_scale(tokens, rows, skip)
    parts = ['<div class="xaijax-text" style="font-family:monospace;line-height:1.9">']
    if title:
        parts.append(f"<h3>{_html.escape(title)}</h3>")
    for toks, vals in zip(tokens, rows, strict=True):
        spans = []
        for tok, val in zip(toks, vals, strict=True):
            if tok in skip:
                continue
            r, g, b = (round(255 * c) for c in _token_colour(float(val), scale))
            spans.append(
                f'<span style="background:rgb({r},{g},{b});padding:1px 2px;border-radius:2px" '
                f'title="{float(val):.4g}">{_html.escape(tok)}</span>'
            )
        parts.append("<p>" + " ".join(spans) + "</p>")
    parts.append("</div>")
    return "\n".join(parts)
