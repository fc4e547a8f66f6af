"""ProtoPNet figures: "this looks like that" for one image, and the gallery of all prototypes.

The figures read the :class:`~xaijax.core.explanation.Explanation` of
:func:`~xaijax.protopnet.evidence.explain_prototypes` and a push's
:class:`~xaijax.protopnet.push.PushResult`. matplotlib is imported when a figure is drawn, and
its backend is left as the user set it.

References:
    Chen et al. "This Looks Like That: Deep Learning for Interpretable Image Recognition."
    NeurIPS 2019, Fig. 1 and Fig. 3 (reasoning process); reference ``local_analysis.py``.
"""

from __future__ import annotations

import warnings

import numpy as np

from xaijax.core.explanation import Explanation, require_kind
from xaijax.protopnet.evidence import explain_prototypes
from xaijax.protopnet.model import ProtoPNet
from xaijax.protopnet.push import PushResult, upsample

__all__ = ["explain_figure", "prototype_gallery"]


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
    from matplotlib.patches import Rectangle

    y0, y1, x0, x1 = (int(v) for v in box)
    ax.add_patch(
        Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=colour, lw=1.5)
    )


def explain_figure(
    explanation,
    push_result,
    train_images,
    *args,
    index: int | None = None,
    top_k: int | None = None,
    class_names=None,
):
    """The paper's "this looks like that" figure for one image, as a matplotlib Figure.

    One row per top prototype: the input with the box around the prototype's top-5% activation,
    the upsampled similarity map, the training image the prototype was pushed to (its receptive
    field boxed) and the prototype's patch, with similarity, weight and contribution.

    Args:
        explanation: the :func:`~xaijax.protopnet.evidence.explain_prototypes` Explanation of one
            image, or of a batch with ``index`` picking the image. (Deprecated form:
            ``explain_figure(model, image, push_result, train_images)``.)
        push_result: the :class:`~xaijax.protopnet.push.PushResult` of the last push.
        train_images: ``(N, H, W, C)`` the images the push scanned.
        index: which image of a batched explanation to draw.
        top_k: rows to draw (default: the explanation's ``top_k``).
        class_names: names of the classes (default: indices).

    Returns:
        A ``matplotlib.figure.Figure``.
    """
    import matplotlib.pyplot as plt

    if isinstance(explanation, ProtoPNet):
        # The old form: explain_figure(model, image, push_result, train_images).
        warnings.warn(
            "explain_figure(model, image, push_result, train_images) is deprecated; pass "
            "explain_figure(explain_prototypes(model, image), push_result, train_images)",
            DeprecationWarning,
            stacklevel=2,
        )
        model, image = explanation, push_result
        push_result, train_images = train_images, args[0]
        explanation = explain_prototypes(model, image, top_k=top_k or 3)
    elif args:
        raise TypeError("explain_figure takes (explanation, push_result, train_images)")
    exp = _one_image(explanation, index)
    if not isinstance(push_result, PushResult):
        raise TypeError(f"push_result must be a PushResult; got {type(push_result).__name__}")
    ex = {k: np.asarray(v) for k, v in exp.extras.items()}
    ids = ex["top_k"]
    if top_k is not None:
        if not 1 <= int(top_k) <= len(ids):
            raise ValueError(f"top_k must be in [1, {len(ids)}]; got {top_k}")
        ids = ids[: int(top_k)]
    image = np.asarray(exp.data)
    size = image.shape[0]
    logits = ex["logits"]
    C = logits.shape[-1]
    names = list(class_names) if class_names is not None else [str(c) for c in range(C)]
    target, predicted = int(ex["targets"]), int(ex["predicted"])
    maps = np.asarray(upsample(np.moveaxis(ex["similarity_maps"], -1, 0)[ids], size))
    fig, axes = plt.subplots(len(ids), 4, figsize=(8, 2.2 * len(ids)), squeeze=False)
    title = f"predicted {names[predicted]} (logit {logits[predicted]:.2f})"
    if target != predicted:
        title += f"; explaining {names[target]} (logit {logits[target]:.2f})"
    fig.suptitle(title, fontsize=10)
    similarity = np.asarray(exp.values)
    train_images = np.asarray(train_images)
    for row, j in enumerate(ids):
        ax = axes[row]
        _show(ax[0], image, "this (input)")
        _box(ax[0], ex["high_box"][j])
        _show(ax[1], image)
        ax[1].imshow(maps[row], cmap="jet", alpha=0.5)
        ax[1].set_title(f"similarity {similarity[j]:.2f}", fontsize=8)
        src = train_images[int(push_result.image_index[j])]
        cls = int(push_result.classes[j])
        _show(ax[2], src, f"looks like that: proto {int(j)} ({names[cls]})")
        _box(ax[2], push_result.rf_box[j], "cyan")
        _box(ax[2], push_result.high_box[j])
        y0, y1, x0, x1 = (int(v) for v in push_result.high_box[j])
        _show(
            ax[3],
            src[y0:y1, x0:x1],
            f"w {ex['weights'][j]:.2f}, contribution {ex['contributions'][j]:.2f}",
        )
    fig.tight_layout()
    return fig


def _one_image(exp, index) -> Explanation:
    if not isinstance(exp, Explanation):
        raise TypeError(
            "explanation must be the Explanation of explain_prototypes(model, images); got "
            f"{type(exp).__name__}"
        )
    require_kind(exp, ("prototype",), "explain_figure")
    if exp.is_batched:
        if index is None:
            if len(exp) != 1:
                raise ValueError(
                    f"explanation holds {len(exp)} images; pick one with index= (or pass exp[i])"
                )
            index = 0
        return exp[int(index)]
    if index not in (None, 0):
        raise ValueError(f"index must be None or 0 for a single-image explanation; got {index}")
    return exp


def prototype_gallery(push_result: PushResult, train_images, *, class_names=None):
    """Every prototype's source patch, one row per class (the global view of the model).

    Args:
        push_result: the :class:`~xaijax.protopnet.push.PushResult` of the last push.
        train_images: ``(N, H, W, C)`` the images the push scanned.
        class_names: names of the classes (default: indices).

    Returns:
        A ``matplotlib.figure.Figure``.
    """
    import matplotlib.pyplot as plt

    classes = np.asarray(push_result.classes)
    C = int(classes.max()) + 1
    per = int(np.bincount(classes).max())
    names = class_names or [str(c) for c in range(C)]
    fig, axes = plt.subplots(C, per, figsize=(1.8 * per, 1.9 * C), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")  # slots a pruned class leaves empty stay blank
    for c in range(C):
        for slot, j in enumerate(np.flatnonzero(classes == c)):
            src = np.asarray(train_images)[int(push_result.image_index[j])]
            _show(axes[c, slot], src, f"{names[c]}: proto {int(j)}")
            _box(axes[c, slot], push_result.rf_box[j], "cyan")
            _box(axes[c, slot], push_result.high_box[j])
    fig.tight_layout()
    return fig
