"""Matplotlib figures of explanations. Every function returns the Figure (PNG via ``savefig``).

matplotlib is imported inside the figure functions, never at import, and the backend is never
set: figures appear in notebooks and GUIs as the user configured (``MPLBACKEND``, ``%matplotlib``,
``matplotlib.use``), and ``import xaijax.plots`` costs nothing.

Where an explanation has several outputs, ``targets`` (an int, or an output name) picks the one
shown, the position on the Explanation's output axis (for LIME, among the explained labels).
The additive plots (:func:`waterfall`, :func:`beeswarm`) draw values that add up to the model's
output, so they refuse maps, surrogate coefficients and prototype evidence; :func:`bar` and
:func:`lime_bar` draw any attributions over one feature axis.
"""

# jaxtyping shape strings such as "n H W C" are not Python expressions:

from __future__ import annotations

import numbers
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
    "beeswarm",
    "overlay",
    "image_grid",
    "lime_bar",
    "lime_segments",
]

_POS, _NEG = "#d62728", "#1f77b4"
_ADDITIVE = ("additive", "path")


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


def _one_output(exp: Explanation, targets, name: str = "targets"):
    """``(values, base_values)`` of the chosen output, as NumPy arrays."""
    k = _output_index(exp, targets, name)
    values, base = np.asarray(exp.values), np.asarray(exp.base_values)
    if k is not None:
        values, base = values[..., k], base[..., k]
    return values, base


def _one_feature_axis(exp: Explanation, what: str) -> None:
    if len(exp.feature_shape) != 1:
        raise ValueError(
            f"{what} draws attributions over one feature axis (tabular features, words, "
            f"segments); got feature shape {exp.feature_shape}: draw maps with overlay or "
            "image_grid"
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
        title: the figure title.

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
    values, _ = _one_output(exp, targets, "targets" if output is MISSING else "output")
    importance = np.abs(values).mean(0) if values.ndim == 2 else np.abs(values)
    names = _names(exp, importance.shape[0])
    order = np.argsort(importance)[::-1][:max_display][::-1]
    fig, ax = _pyplot().subplots(figsize=(6, 0.35 * len(order) + 1.2))
    ax.barh([names[i] for i in order], importance[order], color=_POS)
    ax.set_xlabel("mean |attribution|" if values.ndim == 2 else "|attribution|")
    ax.set_title(title or f"{exp.method or 'attributions'}: feature importance")
    fig.tight_layout()
    return fig


def waterfall(
    exp: Explanation,
    *,
    targets: int | str | None = None,
    max_display: int = 10,
    title: str | None = None,
    output=MISSING,
):
    """How one instance's attributions add up from the base value to the model output.

    Args:
        exp: one instance (``exp[i]`` of a batch) of kind ``"additive"`` or ``"path"``.
        targets: the output shown, an int position or an output name; default the first.
            ``output=`` is its deprecated alias.
        max_display: most features drawn; the rest are summed into one bar.
        title: the figure title.

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
    require_kind(exp, _ADDITIVE, "waterfall")
    _one_feature_axis(exp, "waterfall")
    values, base = _one_output(exp, targets, "targets" if output is MISSING else "output")
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
    with_data = data.size == values.size  # tabular rows; feature groups have no one value
    labels = [f"{names[i]} = {data[i]:.3g}" if with_data else names[i] for i in shown]
    contrib = list(values[shown])
    if len(rest):
        labels.append(f"{len(rest)} other features")
        contrib.append(float(values[rest].sum()))
    labels, contrib = labels[::-1], contrib[::-1]
    starts = base + np.concatenate([[0.0], np.cumsum(contrib[::-1])])[::-1][1:]
    fig, ax = _pyplot().subplots(figsize=(7, 0.4 * len(labels) + 1.5))
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
        title: the figure title.

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
    require_kind(exp, _ADDITIVE, "beeswarm")
    _one_feature_axis(exp, "beeswarm")
    values, _ = _one_output(exp, targets, "targets" if output is MISSING else "output")
    if values.ndim != 2:
        raise ValueError(f"beeswarm needs a batch of attributions (n, M); got {values.shape}")
    data = np.asarray(exp.data).reshape(values.shape)
    names = _names(exp, values.shape[1])
    order = np.argsort(np.abs(values).mean(0))[::-1][:max_display][::-1]
    rng = np.random.default_rng(0)
    fig, ax = _pyplot().subplots(figsize=(7, 0.4 * len(order) + 1.5))
    for row, j in enumerate(order):
        col = data[:, j]
        span = np.ptp(col)
        colour = (col - col.min()) / span if span > 0 else np.full_like(col, 0.5)
        jitter = rng.uniform(-0.25, 0.25, size=len(col))
        points = ax.scatter(
            values[:, j], row + jitter, c=colour, cmap="coolwarm", s=10, vmin=0, vmax=1
        )
    ax.set_yticks(range(len(order)), [names[j] for j in order])
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("attribution")
    fig.colorbar(points, ax=ax, label="feature value (low -> high)", ticks=[])
    ax.set_title(title or f"{exp.method or 'attributions'}: summary")
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


def image_grid(
    images: Float[ArrayLike, "n H W C"],
    maps: dict,
    *,
    alpha: float = 0.5,
    row_titles=None,
    title=None,
):
    """A grid of images (rows) by methods (columns), each map overlaid on its image.

    Args:
        images: ``(n, H, W, C)``.
        maps: method name -> ``(n, H, W)`` (or ``(n, H, W, C)``) maps, or a batched map
            Explanation.
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
    n = images.shape[0]
    cols = 1 + len(maps)
    fig, axes = _pyplot().subplots(n, cols, figsize=(1.6 * cols, 1.6 * n + 0.4), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i].squeeze(-1) if images.shape[-1] == 1 else images[i])
        axes[i, 0].set_axis_off()
        if row_titles is not None:
            axes[i, 0].set_title(str(row_titles[i]), fontsize=7)
        for j, (name, m) in enumerate(maps.items(), start=1):
            m = m.values if isinstance(m, Explanation) else m
            overlay(
                images[i],
                np.asarray(m)[i],
                alpha=alpha,
                ax=axes[i, j],
                title=name if i == 0 else None,
            )
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def lime_bar(
    exp: Explanation,
    *,
    instance: int = 0,
    targets: int | str | None = None,
    num_features: int = 10,
    title: str | None = None,
    label=MISSING,
):
    """LIME's signed bar chart: one instance's top features by ``|weight|`` with readable labels.

    Uses ``extras["feature_labels"]`` (e.g. ``"0.12 < mean radius <= 0.57"`` or words) when the
    explanation has them. Draws any attributions over one feature axis, signed.

    Args:
        exp: a batch or one instance, e.g. from :func:`xaijax.lime_tabular`.
        instance: which instance of a batch.
        targets: the explained label shown: its position among the explained labels (the
            output axis), or an output name; default the first. ``label=`` is its deprecated
            alias.
        num_features: most features drawn, by ``|weight|``.
        title: the figure title.

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
    values, _ = _one_output(exp, targets, "targets" if label is MISSING else "label")
    if not exp.is_batched:
        values = values[None]
    instance = check_int("instance", instance, minimum=0, maximum=values.shape[0] - 1)
    num_features = check_int("num_features", num_features)
    weights = values[instance]
    labels = exp.extras.get("feature_labels")
    if labels is not None and np.ndim(labels) == 1 and not exp.is_batched:
        labels = np.asarray(labels)[None]
    if labels is not None and np.ndim(labels) == 2:
        names = [str(s) for s in np.asarray(labels)[instance]]
    else:
        names = _names(exp, weights.shape[0])
    order = np.argsort(np.abs(weights))[::-1][:num_features][::-1]
    fig, ax = _pyplot().subplots(figsize=(6.5, 0.35 * len(order) + 1.2))
    ax.barh(
        [names[i] for i in order],
        weights[order],
        color=[_POS if weights[i] >= 0 else _NEG for i in order],
    )
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("surrogate weight")
    ax.set_title(title or f"{exp.method or 'LIME'}: instance {instance}")
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
