"""ProtoPNet explanations: "this looks like that" for one input, and the gallery of all prototypes.

References:
    Chen et al. "This Looks Like That: Deep Learning for Interpretable Image Recognition."
    NeurIPS 2019, Fig. 1 and Fig. 3 (reasoning process); reference ``local_analysis.py``.
"""

from __future__ import annotations

from typing import NamedTuple

import matplotlib

matplotlib.use("Agg", force=False)

import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from xaijax.protopnet.model import ProtoPNet, log_similarity  # noqa: E402
from xaijax.protopnet.push import PushResult, high_activation_box, upsample  # noqa: E402

__all__ = ["PrototypeEvidence", "explain", "explain_figure", "prototype_gallery"]


class PrototypeEvidence(NamedTuple):
    """The top-k prototypes behind one prediction (NumPy arrays, ``k`` rows).

    Attributes:
        predicted: predicted class.
        logits: ``(C,)`` class logits.
        prototype: ``(k,)`` prototype indices, by decreasing contribution to ``predicted``.
        similarity: ``(k,)`` similarity (max over positions) of each prototype to the input.
        weight: ``(k,)`` last-layer weight from the prototype to ``predicted``.
        contribution: ``(k,)`` similarity x weight, its share of the predicted logit.
        activation: ``(k, H, W)`` bicubically upsampled similarity maps on the input.
        box: ``(k, 4)`` box ``(y0, y1, x0, x1)`` around each map's top 5%.
    """

    predicted: int
    logits: np.ndarray
    prototype: np.ndarray
    similarity: np.ndarray
    weight: np.ndarray
    contribution: np.ndarray
    activation: np.ndarray
    box: np.ndarray


def explain(model: ProtoPNet, image, *, top_k: int = 3, target: int | None = None):
    """The top-k prototypes by similarity x last-layer weight for one image.

    Args:
        model: a trained :class:`ProtoPNet`.
        image: ``(H, W, C)``.
        top_k: number of prototypes to return (at most P).
        target: class whose logit is decomposed (default: the predicted class).

    Returns:
        :class:`PrototypeEvidence`; ``contribution.sum()`` over all P prototypes is the logit.

    References:
        Chen et al. NeurIPS 2019, Fig. 3.
    """
    cfg = model.config
    image = np.asarray(image, np.float32)
    if image.shape != (cfg.img_size, cfg.img_size, cfg.in_channels):
        raise ValueError(
            f"image must have shape ({cfg.img_size}, {cfg.img_size}, {cfg.in_channels}); "
            f"got {image.shape}"
        )
    if not 1 <= top_k <= cfg.num_prototypes:
        raise ValueError(f"top_k must be in [1, {cfg.num_prototypes}]; got {top_k}")
    logits, min_d, d = model.forward(jnp.asarray(image[None]))
    logits = np.asarray(logits[0])
    cls = int(np.argmax(logits)) if target is None else int(target)
    if not 0 <= cls < cfg.num_classes:
        raise ValueError(f"target must be in [0, {cfg.num_classes}); got {target}")
    sim = np.asarray(log_similarity(min_d[0]))
    w = np.asarray(model.last_layer[...])[:, cls]
    contrib = sim * w
    order = np.argsort(-contrib, kind="stable")[:top_k]
    maps = log_similarity(jnp.moveaxis(d[0], -1, 0)[jnp.asarray(order)])
    up = np.asarray(upsample(maps, cfg.img_size))
    boxes = np.array([high_activation_box(m) for m in up], np.int32)
    return PrototypeEvidence(cls, logits, order, sim[order], w[order], contrib[order], up, boxes)


def _show(ax, image, title=None):
    image = np.asarray(image)
    if image.shape[-1] == 1:
        ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(image, 0, 1))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def _box(ax, box, colour="yellow"):
    y0, y1, x0, x1 = (int(v) for v in box)
    ax.add_patch(
        Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, lw=1.5)
    )


def explain_figure(
    model: ProtoPNet,
    image,
    push_result: PushResult,
    train_images,
    *,
    top_k: int = 3,
    class_names=None,
):
    """The paper's "this looks like that" figure for one image, as a matplotlib Figure.

    One row per top prototype: the input with the box around the prototype's top-5% activation,
    the upsampled activation map, the training image the prototype was pushed to (its receptive
    field boxed) and the prototype's patch, with similarity, weight and contribution.

    Args:
        model: a trained, pushed :class:`ProtoPNet`.
        image: ``(H, W, C)``.
        push_result: the :class:`PushResult` of the last push.
        train_images: ``(N, H, W, C)`` the images the push scanned.
        top_k: rows to draw.
        class_names: names of the classes (default: indices).

    Returns:
        A ``matplotlib.figure.Figure``.
    """
    ev = explain(model, image, top_k=top_k)
    names = class_names or [str(c) for c in range(model.config.num_classes)]
    fig, axes = plt.subplots(top_k, 4, figsize=(8, 2.2 * top_k), squeeze=False)
    fig.suptitle(
        f"predicted {names[ev.predicted]} (logit {ev.logits[ev.predicted]:.2f})", fontsize=10
    )
    for row, j in enumerate(ev.prototype):
        ax = axes[row]
        _show(ax[0], image, "this (input)")
        _box(ax[0], ev.box[row])
        _show(ax[1], image)
        ax[1].imshow(ev.activation[row], cmap="jet", alpha=0.5)
        ax[1].set_title(f"similarity {ev.similarity[row]:.2f}", fontsize=8)
        src = np.asarray(train_images)[int(push_result.image_index[j])]
        cls = int(push_result.classes[j])
        _show(ax[2], src, f"looks like that: proto {int(j)} ({names[cls]})")
        _box(ax[2], push_result.rf_box[j], "cyan")
        _box(ax[2], push_result.high_box[j])
        y0, y1, x0, x1 = (int(v) for v in push_result.high_box[j])
        _show(
            ax[3],
            src[y0:y1, x0:x1],
            f"w {ev.weight[row]:.2f}, contribution {ev.contribution[row]:.2f}",
        )
    fig.tight_layout()
    return fig


def prototype_gallery(push_result: PushResult, train_images, *, class_names=None):
    """Every prototype's source patch, one row per class (the global view of the model).

    Args:
        push_result: the :class:`PushResult` of the last push.
        train_images: ``(N, H, W, C)`` the images the push scanned.
        class_names: names of the classes (default: indices).

    Returns:
        A ``matplotlib.figure.Figure``.
    """
    classes = np.asarray(push_result.classes)
    C = int(classes.max()) + 1
    per = int(np.bincount(classes).max())
    names = class_names or [str(c) for c in range(C)]
    fig, axes = plt.subplots(C, per, figsize=(1.8 * per, 1.9 * C), squeeze=False)
    for c in range(C):
        for slot, j in enumerate(np.flatnonzero(classes == c)):
            src = np.asarray(train_images)[int(push_result.image_index[j])]
            _show(axes[c, slot], src, f"{names[c]}: proto {int(j)}")
            _box(axes[c, slot], push_result.rf_box[j], "cyan")
            _box(axes[c, slot], push_result.high_box[j])
    fig.tight_layout()
    return fig
