"""ProtoPNet's evidence for its predictions, batched: "this looks like that" as an Explanation.

For each image the network's logit of a class is a sum over prototypes,
``logit_c = sum_j sim_j * w_jc``, where ``sim_j`` is prototype ``j``'s similarity to the image's
nearest latent patch and ``w`` the last layer. :func:`explain_prototypes` returns the
similarities as the values of an :class:`~xaijax.core.explanation.Explanation` of kind
``"prototype"``, with the decomposition and the locations in its extras.

References:
    Chen et al. "This Looks Like That: Deep Learning for Interpretable Image Recognition."
    NeurIPS 2019, Fig. 3 (reasoning process); reference ``local_analysis.py`` and
    ``find_high_activation.py``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import ArrayLike, Float, Int

from xaijax.core import contract
from xaijax.core.batching import balanced_chunk, check_mesh, map_row_chunks, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.model import nnx_merge, nnx_split
from xaijax.core.registry import explainer
from xaijax.core.targets import resolve_targets
from xaijax.protopnet.model import ProtoPNet, log_similarity, receptive_field
from xaijax.protopnet.push import upsample

__all__ = ["explain_prototypes", "high_activation_boxes"]


def high_activation_boxes(
    maps: Float[ArrayLike, "m H W"],  # noqa: F722
    percentile: float = 95.0,
) -> jax.Array:
    """Boxes ``(m, 4)`` ``(y0, y1, x0, x1)`` (end exclusive) around each map's top pixels.

    The vectorised form of :func:`~xaijax.protopnet.push.high_activation_box`: the box around
    the pixels at or above the map's ``percentile``.

    Example:
        >>> import numpy as np
        >>> m = np.zeros((1, 10, 10)); m[0, 2:4, 5:8] = 1.0
        >>> high_activation_boxes(m).tolist()
        [[2, 4, 5, 8]]
    """
    maps = jnp.asarray(maps)
    m, H, W = maps.shape
    threshold = jnp.percentile(maps.reshape(m, H * W), percentile, axis=1)
    mask = maps >= threshold[:, None, None]
    rows, cols = mask.any(axis=2), mask.any(axis=1)
    y0, x0 = jnp.argmax(rows, axis=1), jnp.argmax(cols, axis=1)
    y1 = H - jnp.argmax(rows[:, ::-1], axis=1)
    x1 = W - jnp.argmax(cols[:, ::-1], axis=1)
    return jnp.stack([y0, y1, x0, x1], axis=1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("graphdef", "top_k", "batch_size", "mesh"))
def _evidence(graphdef, state, X, targets, *, top_k, batch_size, mesh):
    def local(sharded, state):
        X, targets = sharded
        model = nnx_merge(graphdef, state)
        weights = model.last_layer[...]

        def rows(idx):
            x = X[idx]
            logits, min_d, d = model.forward(x)
            b, h, w, P = d.shape
            sim = log_similarity(min_d)
            predicted = jnp.argmax(logits, axis=1).astype(jnp.int32)
            target = jnp.where(targets[idx] >= 0, targets[idx], predicted)
            w_t = weights[:, target].T  # (b, P): each prototype's weight to the explained class
            contributions = sim * w_t
            _, top = jax.lax.top_k(contributions, top_k)  # ties: the lower index first
            maps = log_similarity(d)  # (b, h, w, P)
            flat = jnp.argmin(d.reshape(b, h * w, P), axis=1)  # nearest patch = most similar
            position = jnp.stack([flat // w, flat % w], axis=-1).astype(jnp.int32)
            size = x.shape[1]
            up = upsample(jnp.moveaxis(maps, -1, 1).reshape(b * P, h, w), size)
            boxes = high_activation_boxes(up).reshape(b, P, 4)
            return {
                "similarity": sim,
                "logits": logits,
                "predicted": predicted,
                "targets": target,
                "contributions": contributions,
                "weights": w_t,
                "top_k": top.astype(jnp.int32),
                "position": position,
                "high_box": boxes,
                "similarity_maps": maps,
                "finite": jnp.isfinite(logits).all(axis=1) & jnp.isfinite(sim).all(axis=1),
            }

        return map_row_chunks(rows, X.shape[0], balanced_chunk(X.shape[0], batch_size))

    return over_instances(local, (X, targets), state, mesh=mesh)


@explainer(kind="prototype", inputs="image", needs_jax=True, model_form="protopnet")
def explain_prototypes(
    model: ProtoPNet,
    images: Float[ArrayLike, "*n H W C"],  # noqa: F722
    *,
    targets: None | int | Int[ArrayLike, " n"] = None,  # noqa: F722
    top_k: int = 3,
    batch_size: int | None = None,
    mesh=None,
    target=contract.MISSING,
) -> Explanation:
    """ProtoPNet's "this looks like that" evidence: each prototype's similarity to each image.

    A prototype's similarity is ``log((d + 1) / (d + 1e-4))`` of its smallest squared distance
    ``d`` to the image's latent patches; the explained class's logit is the sum over prototypes
    of similarity x last-layer weight (``extras["contributions"]``), so the evidence is exact,
    not an approximation of the model.

    Args:
        model: a trained :class:`~xaijax.protopnet.model.ProtoPNet`.
        images: one image ``(H, W, C)`` or a batch ``(n, H, W, C)``.
        targets: the class whose logit is decomposed: ``None`` (the predicted class), an int, or
            ``(n,)`` ints. (A callable cannot be decomposed over prototypes.)
        top_k: how many prototypes to rank by contribution (``extras["top_k"]``), in ``[1, P]``.
        batch_size: images evaluated at once (default: by backend and image size). The
            upsampled similarity maps of a batch take ``batch_size x P x H x W`` floats.
        mesh: a device mesh to split the images over (``xaijax.instance_mesh()``), or ``None``.
        target: deprecated alias of ``targets``.

    Returns:
        An :class:`~xaijax.core.explanation.Explanation` of kind ``"prototype"`` with ``values
        (n, P)`` the similarities, ``base_values (n,)`` zeros, ``data`` the images,
        ``feature_names`` one per prototype, and extras (a leading ``n`` on each):

        * ``logits (n, C)``, ``predicted (n,)``, ``targets (n,)`` the decomposed class;
        * ``contributions (n, P)`` similarity x weight (summing to the target's logit) and
          ``weights (n, P)`` each prototype's last-layer weight to the target;
        * ``top_k (n, k)`` prototype ids by decreasing contribution;
        * ``position (n, P, 2)`` the latent ``(row, col)`` of each prototype's nearest patch,
          ``rf_box (n, P, 4)`` its receptive field in pixels ``(y0, y1, x0, x1)`` and
          ``high_box (n, P, 4)`` the box around the top 5% of the bicubically upsampled
          similarity map (the paper's high-activation box);
        * ``similarity_maps (n, h, w, P)`` the similarity of every latent patch.

        One image in gives an Explanation without the leading axis.

    References:
        Chen et al. "This Looks Like That: Deep Learning for Interpretable Image Recognition."
        NeurIPS 2019, Fig. 3.

    Example:
        >>> import jax, numpy as np
        >>> from xaijax.protopnet.model import ProtoPNet, ProtoPNetConfig
        >>> cfg = ProtoPNetConfig(img_size=24, num_classes=2, num_prototypes=4, channels=(4, 4))
        >>> net = ProtoPNet(cfg, key=jax.random.key(0))
        >>> exp = explain_prototypes(net, np.zeros((3, 24, 24, 3)), top_k=2)
        >>> exp.kind, exp.values.shape, exp.extras["top_k"].shape
        ('prototype', (3, 4), (3, 2))
        >>> e = exp[0]
        >>> bool(np.isclose(e.extras["contributions"].sum(), e.extras["logits"][e.extras["targets"]]))
        True
    """  # noqa: E501
    if not isinstance(model, ProtoPNet):
        raise TypeError(
            f"model must be a ProtoPNet (xaijax.protopnet.ProtoPNet); got {type(model).__name__}"
        )
    cfg = model.config
    targets = contract.renamed("target", target, "targets", targets)
    shape = (cfg.img_size, cfg.img_size, cfg.in_channels)
    images = contract.as_float_array("images", images)
    X, single = contract.split_instances(images, shape, name="images")
    n, P, C = X.shape[0], cfg.num_prototypes, cfg.num_classes
    top_k = contract.check_int("top_k", top_k, minimum=1, maximum=P)
    spec = resolve_targets(targets, n, C)
    if spec.fn is not None:
        raise TypeError(
            "targets must be None, an int or (n,) class indices for a ProtoPNet explanation: a "
            "logit decomposes over prototypes, a callable of the logits does not"
        )
    t = np.full((n,), -1, np.int32) if spec.indices is None else np.asarray(spec.indices)
    batch_size = contract.resolve_batch_size(batch_size, shape)
    mesh = check_mesh(mesh)
    graphdef, state = nnx_split(model)  # remembered per module between calls
    out = contract.call(
        _evidence,
        graphdef,
        state,
        jnp.asarray(X),
        jnp.asarray(t),
        top_k=top_k,
        batch_size=batch_size,
        mesh=mesh,
    )
    out = jax.device_get(out)
    finite = out.pop("finite")
    values = out.pop("similarity")
    out["rf_box"] = _rf_boxes(receptive_field(cfg), out["position"], cfg.img_size)
    classes = np.argmax(np.asarray(model.class_identity[...]), axis=1)
    names = tuple(f"prototype {j} (class {int(c)})" for j, c in enumerate(classes))
    return contract.pack(
        values,
        np.zeros((n,), values.dtype),
        X,
        single=single,
        kind="prototype",
        method="explain_prototypes",
        feature_names=names,
        extras=out,
        finite=finite,
        what="model",
    )


def _rf_boxes(rf, position, img_size: int) -> np.ndarray:
    """Receptive-field boxes ``(..., 4)`` of latent positions ``(..., 2)``, as ``rf.box``."""
    centre = rf.start + np.asarray(position, np.float64) * rf.jump
    lo = np.maximum(np.trunc(centre - rf.rf / 2), 0)
    hi = np.minimum(np.trunc(centre + rf.rf / 2), img_size)
    return np.stack([lo[..., 0], hi[..., 0], lo[..., 1], hi[..., 1]], axis=-1).astype(np.int32)
