"""Matplotlib figures of explanations. Every function returns the Figure (PNG via ``savefig``)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg", force=False)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from xaijax.core.explanation import Explanation  # noqa: E402

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


def beeswarm(exp: Explanation, *, output: int = 0, max_display: int = 10, title: str | None = None):
    """Every instance's attribution per feature, coloured by the feature's value (a summary plot).

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(20, 3))
        >>> fig = beeswarm(Explanation(X * 2, np.zeros(20), X))
    """
    values, _ = _output_slice(np.asarray(exp.values), exp.base_values, exp, output)
    if values.ndim != 2:
        raise ValueError(f"beeswarm needs a batch of attributions (n, M); got {values.shape}")
    data = np.asarray(exp.data).reshape(values.shape)
    names = _names(exp, values.shape[1])
    order = np.argsort(np.abs(values).mean(0))[::-1][:max_display][::-1]
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(order) + 1.5))
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
    a = np.asarray(a, np.float32)
    return np.abs(a).sum(-1) if a.ndim == 3 else a


def overlay(
    image, heatmap, *, alpha: float = 0.5, cmap: str = "jet", title: str | None = None, ax=None
):
    """Draw ``heatmap (H, W)`` (or ``(H, W, C)``, summed over ``|channels|``) over ``image``.

    Returns the Figure (a new one unless ``ax`` is given).

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
        fig, ax = plt.subplots(figsize=(3, 3))
    else:
        fig = ax.figure
    ax.imshow(image.squeeze(-1) if image.shape[-1] == 1 else image, cmap="gray")
    ax.imshow(heat, cmap=cmap, alpha=alpha)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=8)
    return fig


def image_grid(images, maps: dict, *, alpha: float = 0.5, row_titles=None, title=None):
    """A grid of images (rows) by methods (columns), each map overlaid on its image.

    Args:
        images: ``(n, H, W, C)``.
        maps: method name -> ``(n, H, W)`` (or ``(n, H, W, C)``) maps.

    Example:
        >>> import numpy as np
        >>> fig = image_grid(np.zeros((2, 8, 8, 3)), {"a": np.ones((2, 8, 8))})
    """
    images = np.asarray(images)
    n = images.shape[0]
    cols = 1 + len(maps)
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 1.6 * n + 0.4), squeeze=False)
    for i in range(n):
        axes[i, 0].imshow(images[i].squeeze(-1) if images.shape[-1] == 1 else images[i])
        axes[i, 0].set_axis_off()
        if row_titles is not None:
            axes[i, 0].set_title(str(row_titles[i]), fontsize=7)
        for j, (name, m) in enumerate(maps.items(), start=1):
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
    label: int = 0,
    num_features: int = 10,
    title: str | None = None,
):
    """LIME's signed bar chart: one instance's top features by ``|weight|`` with readable labels.

    Uses ``extras["feature_labels"]`` (e.g. ``"0.12 < mean radius <= 0.57"`` or words) when the
    explanation has them; ``label`` indexes the explained labels (the last axis of ``values``).

    Example:
        >>> import numpy as np
        >>> from xaijax import Explanation
        >>> fig = lime_bar(Explanation(np.array([[[0.5], [-0.2]]]), np.zeros((1, 1)),
        ...                            np.zeros((1, 2))))
    """
    values = np.asarray(exp.values)
    if not exp.is_batched:
        values = values[None]
    if values.ndim == 3:
        values = values[..., label]
    weights = values[instance]
    labels = exp.extras.get("feature_labels")
    if labels is not None and np.ndim(labels) == 2:
        names = [str(s) for s in np.asarray(labels)[instance]]
    else:
        names = _names(exp, weights.shape[0])
    order = np.argsort(np.abs(weights))[::-1][:num_features][::-1]
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(order) + 1.2))
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
    label: int | None = None,
    num_features: int = 5,
    positive_only: bool = True,
    title: str | None = None,
):
    """One image's LIME superpixels: all boundaries, and the top ``num_features`` segments kept.

    ``exp`` is a single image's :func:`xaijax.lime_image` explanation (index a batch first);
    ``label`` defaults to its first explained label.

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

    from xaijax.lime import get_image_and_mask

    labels = np.asarray(exp.extras["labels"]).reshape(-1)
    label = int(labels[0]) if label is None else int(label)
    image = np.asarray(exp.data, np.float32)
    segments = np.asarray(exp.extras["segments"])
    shown, mask = get_image_and_mask(
        exp, label, positive_only=positive_only, num_features=num_features, hide_rest=True
    )
    scale = 255.0 if image.max() > 1.0 else 1.0
    fig, axes = plt.subplots(1, 2, figsize=(6, 3.2))
    axes[0].imshow(mark_boundaries(image / scale, segments))
    axes[0].set_title("superpixels", fontsize=8)
    axes[1].imshow(mark_boundaries(np.asarray(shown, np.float32) / scale, mask.astype(int)))
    axes[1].set_title(f"top {num_features} segments, label {label}", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title or "LIME superpixels", fontsize=9)
    fig.tight_layout()
    return fig
