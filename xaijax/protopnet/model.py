"""The prototypical part network (ProtoPNet) as a Flax NNX module.

A backbone CNN maps an image to a grid of features, 1x1 add-on convolutions (ending in a sigmoid)
map those to latent patches ``z (n, h, w, D)``, and a prototype layer compares every latent patch
with every prototype ``p (P, D)``. Each prototype's smallest distance over positions becomes a
similarity, and a bias-free last layer turns similarities into class logits.

References:
    Chen, Li, Tao, Barnett, Su, Rudin. "This Looks Like That: Deep Learning for Interpretable
    Image Recognition." NeurIPS 2019. Reference code: github.com/cfchen-duke/ProtoPNet (model.py,
    receptive_field.py).
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from xaijax.zoo.nets import CNN, ResNet, build, numpy_rng

__all__ = [
    "ProtoPNetConfig",
    "ProtoPNet",
    "PlainCNN",
    "Buffer",
    "ReceptiveField",
    "receptive_field",
    "squared_distances",
    "log_similarity",
    "prototype_class_identity",
    "last_layer_init",
    "make_backbone",
]

BACKBONES = ("small", "resnet18")
# Added to the distances of excluded border patches: far beyond any distance in [0, 1]^D (at most
# D), yet finite, so similarities there are about 0 instead of NaN.
BORDER_DISTANCE = 1e4


class Buffer(nnx.Variable):
    """A non-trainable array held by a module (the class-identity matrix)."""


def _list(modules):
    return nnx.List(modules) if hasattr(nnx, "List") else list(modules)


@dataclasses.dataclass(frozen=True)
class ProtoPNetConfig:
    """Architecture of a ProtoPNet.

    Args:
        img_size: side of the square input images in pixels.
        in_channels: image channels (3 for RGB, 1 for grey).
        num_classes: number of classes C.
        num_prototypes: P, a multiple of ``num_classes`` (the paper uses 10 per class).
        prototype_depth: D, channels of the latent patches and prototypes (the paper uses 128).
        backbone: ``"small"`` (the zoo's :class:`~xaijax.zoo.nets.CNN`: ``conv3x3 -> ReLU ->
            maxpool2`` blocks and a 3x3 ``features`` conv) or ``"resnet18"`` (the zoo's
            :class:`~xaijax.zoo.nets.ResNet` in its CIFAR form: 3x3 stem and four stages of two
            basic blocks, residual branches starting at zero instead of batch norm).
        channels: widths of the backbone blocks (small) or of the four stages (resnet18).
        border: latent rows/columns at each edge of the grid whose patches prototypes are not
            matched against (0: all). Those patches' receptive fields hang over the zero padding,
            which makes them distinctive without showing the object: on 32-pixel shapes,
            prototypes trained with ``border=0`` gather at the image's corners.
        prototype_classes: the class of every prototype, for a network whose classes own
            different numbers of prototypes (after :func:`~xaijax.protopnet.prune_prototypes`);
            ``None``: ``num_prototypes / num_classes`` each, in class order.
    """

    img_size: int = 32
    in_channels: int = 3
    num_classes: int = 3
    num_prototypes: int = 6
    prototype_depth: int = 16
    backbone: str = "small"
    channels: tuple[int, ...] = (16, 32, 32)
    prototype_classes: tuple[int, ...] | None = None
    border: int = 0

    @property
    def prototypes_per_class(self) -> int:
        return self.num_prototypes // self.num_classes

    def class_identity(self) -> jax.Array:
        """One-hot class of every prototype ``(P, C)``."""
        if self.prototype_classes is None:
            return prototype_class_identity(self.num_prototypes, self.num_classes)
        owner = np.asarray(self.prototype_classes, np.int64)
        return jnp.asarray(np.eye(self.num_classes, dtype=np.float32)[owner])

    def validate(self) -> None:
        """Raise ``ValueError`` naming the argument for an impossible architecture."""
        for name in ("img_size", "in_channels", "num_classes", "prototype_depth"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be a positive integer; got {getattr(self, name)}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be at least 2; got {self.num_classes}")
        if self.num_prototypes < 1:
            raise ValueError(f"num_prototypes must be positive; got {self.num_prototypes}")
        if self.prototype_classes is None:
            _check_divisible(self.num_prototypes, self.num_classes)
        else:
            owners = list(self.prototype_classes)
            if len(owners) != self.num_prototypes or any(
                not 0 <= int(c) < self.num_classes for c in owners
            ):
                raise ValueError(
                    f"prototype_classes must give a class in [0, {self.num_classes}) for each of "
                    f"the {self.num_prototypes} prototypes; got {self.prototype_classes}"
                )
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}; got {self.backbone!r}")
        if not self.channels or any(int(c) < 1 for c in self.channels):
            raise ValueError(f"channels must be positive widths; got {self.channels}")
        if self.backbone == "resnet18" and len(self.channels) != 4:
            raise ValueError(f"channels must give 4 stage widths for resnet18; got {self.channels}")
        rf = receptive_field(self)
        if int(self.border) < 0 or (rf.size >= 1 and 2 * int(self.border) >= rf.size):
            raise ValueError(
                f"border must leave latent patches to match: 0 <= border < {max(rf.size, 1)}/2 "
                f"for a {rf.size}x{rf.size} latent grid; got {self.border}"
            )
        if rf.size < 1:
            raise ValueError(
                f"img_size={self.img_size} is smaller than the receptive field of the "
                f"{self.backbone!r} backbone with channels={self.channels}: its latent grid would "
                "be empty; use larger images or fewer blocks"
            )


def _check_divisible(num_prototypes: int, num_classes: int) -> None:
    if num_prototypes % num_classes:
        raise ValueError(
            f"num_prototypes={num_prototypes} must be divisible by num_classes={num_classes} "
            "(each class owns the same number of prototypes)"
        )


# ----------------------------------------------------------------------------- receptive fields
class ReceptiveField(NamedTuple):
    """Receptive-field arithmetic of the latent grid (as ``compute_proto_layer_rf_info``).

    ``size`` latent positions per side, ``jump`` pixels between neighbouring positions, ``rf``
    pixels seen by one position, ``start`` centre of position 0 in pixels.
    """

    size: int
    jump: float
    rf: float
    start: float

    def box(self, h: int, w: int, img_size: int) -> tuple[int, int, int, int]:
        """Pixel box ``(y0, y1, x0, x1)`` (end exclusive) seen by latent position ``(h, w)``."""

        def span(i):
            centre = self.start + i * self.jump
            return max(int(centre - self.rf / 2), 0), min(int(centre + self.rf / 2), img_size)

        (y0, y1), (x0, x1) = span(h), span(w)
        return y0, y1, x0, x1


def _backbone_layers(config: ProtoPNetConfig) -> list[tuple[int, int, int]]:
    """(kernel, stride, padding) of every spatial layer on the backbone's longest path."""
    if config.backbone == "small":
        blocks = [layer for _ in config.channels for layer in ((3, 1, 1), (2, 2, 0))]
        return [*blocks, (3, 1, 1)]  # the CNN's features conv
    layers = [(3, 1, 1)]
    for stage in range(4):
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            layers += [(3, stride, 1), (3, 1, 1)]
    return layers


def receptive_field(config: ProtoPNetConfig) -> ReceptiveField:
    """Receptive field of one latent patch, from the layer arithmetic of the backbone.

    Args:
        config: the architecture.

    Returns:
        ``ReceptiveField(size, jump, rf, start)``; ``size < 1`` means the image is too small.

    Example:
        >>> receptive_field(ProtoPNetConfig(img_size=32, channels=(8, 8, 8)))
        ReceptiveField(size=4, jump=8, rf=38, start=4.0)
    """
    n, j, r, start = config.img_size, 1, 1, 0.5
    for k, s, p in _backbone_layers(config):
        n = math.floor((n - k + 2 * p) / s) + 1
        start = start + ((k - 1) / 2 - p) * j
        r = r + (k - 1) * j
        j = j * s
        if n < 1:
            return ReceptiveField(n, j, r, start)
    return ReceptiveField(n, j, r, start)


# ----------------------------------------------------------------------------- backbones
def make_backbone(config: ProtoPNetConfig, rng: np.random.Generator) -> nnx.Module:
    """The zoo network named by ``config.backbone``, without its head, He-initialised from ``rng``.

    ``"small"`` is :class:`~xaijax.zoo.nets.CNN` (conv blocks and its ``features`` conv);
    ``"resnet18"`` is :class:`~xaijax.zoo.nets.ResNet` with the CIFAR stem, two basic blocks per
    stage and no batch norm (each residual branch starts at zero instead), so that training, push
    and explanation all see one deterministic function of the parameters.
    """
    if config.backbone == "small":

        def make(rngs):
            return CNN(config.in_channels, None, widths=config.channels, rngs=rngs)

    else:

        def make(rngs):
            return ResNet(
                config.channels,
                (2, 2, 2, 2),
                None,
                config.in_channels,
                stem="cifar",
                batch_norm=False,
                rngs=rngs,
            )

    return build(make, seed=rng, scale=2.0)


# ----------------------------------------------------------------------------- prototype math
def prototype_class_identity(num_prototypes: int, num_classes: int) -> jax.Array:
    """One-hot class of every prototype ``(P, C)``: prototype ``j`` belongs to class ``j // (P/C)``.

    Example:
        >>> prototype_class_identity(4, 2).tolist()
        [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    """
    _check_divisible(num_prototypes, num_classes)
    owner = np.arange(num_prototypes) // (num_prototypes // num_classes)
    return jnp.asarray(np.eye(num_classes, dtype=np.float32)[owner])


def last_layer_init(
    class_identity: jax.Array, *, correct: float = 1.0, incorrect: float = -0.5
) -> jax.Array:
    """Last-layer weights ``(P, C)``: ``correct`` from a prototype to its class, else ``incorrect``.

    Example:
        >>> last_layer_init(prototype_class_identity(2, 2)).tolist()
        [[1.0, -0.5], [-0.5, 1.0]]
    """
    return correct * class_identity + incorrect * (1.0 - class_identity)


def squared_distances(z: jax.Array, prototypes: jax.Array) -> jax.Array:
    """Squared L2 distance between every latent patch and every prototype, clamped at 0.

    Computed as ``||z||^2 - 2 z.p + ||p||^2`` so that the ``(n, h, w, P, D)`` differences are
    never materialised (the reference's ``_l2_convolution``).

    Args:
        z: latent patches ``(n, h, w, D)``.
        prototypes: ``(P, D)``.

    Returns:
        ``(n, h, w, P)`` distances.

    Example:
        >>> import jax.numpy as jnp
        >>> squared_distances(jnp.ones((1, 1, 1, 2)), jnp.zeros((3, 2))).ravel().tolist()
        [2.0, 2.0, 2.0]
    """
    z2 = jnp.sum(z * z, axis=-1, keepdims=True)
    p2 = jnp.sum(prototypes * prototypes, axis=-1)
    zp = jnp.einsum("nhwd,pd->nhwp", z, prototypes)
    return jax.nn.relu(z2 - 2.0 * zp + p2.reshape(1, 1, 1, -1))


def log_similarity(distances: jax.Array, epsilon: float = 1e-4) -> jax.Array:
    """Similarity ``log((d + 1) / (d + epsilon))``: ``log(1/epsilon)`` at d = 0, decreasing in d.

    Example:
        >>> import jax.numpy as jnp
        >>> round(float(log_similarity(jnp.zeros(()))), 4)
        9.2103
    """
    return jnp.log((distances + 1.0) / (distances + epsilon))


# ----------------------------------------------------------------------------- the network
class ProtoPNet(nnx.Module):
    """A prototypical part network: backbone, add-on layers, prototypes, bias-free last layer.

    Args:
        config: the architecture (validated here: a bad one raises ``ValueError``).
        key: a JAX key; weights are drawn deterministically from it. Prototypes are uniform in
            [0, 1)^D like the reference's ``torch.rand``.

    ``model(x)`` maps images ``(n, H, W, C)`` to logits ``(n, C)``; ``model.forward(x)`` returns
    ``(logits, min_distances (n, P), distances (n, h, w, P))``.

    References:
        Chen et al. "This Looks Like That: Deep Learning for Interpretable Image Recognition."
        NeurIPS 2019.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> cfg = ProtoPNetConfig(img_size=24, num_classes=2, num_prototypes=4, channels=(4, 4))
        >>> net = ProtoPNet(cfg, key=jax.random.key(0))
        >>> net(jnp.zeros((5, 24, 24, 3))).shape
        (5, 2)
    """

    def __init__(self, config: ProtoPNetConfig, *, key):
        config.validate()
        rng = numpy_rng(key)
        self.config = config
        self.features = make_backbone(config, rng)
        D, width = config.prototype_depth, int(config.channels[-1])

        # Two 1x1 convs, ReLU between, sigmoid after: latent patches live in [0, 1]^D. He
        # initialisation by fan-out, as the reference's kaiming_normal_(mode="fan_out").
        def add_on(rngs):
            return _list([nnx.Conv(width, D, (1, 1), rngs=rngs), nnx.Conv(D, D, (1, 1), rngs=rngs)])

        self.add_on = build(add_on, seed=rng, scale=2.0, mode="fan_out")
        P = config.num_prototypes
        self.prototypes = nnx.Param(jnp.asarray(rng.uniform(size=(P, D)), jnp.float32))
        identity = config.class_identity()
        self.class_identity = Buffer(identity)
        self.last_layer = nnx.Param(last_layer_init(identity))

    def latent(self, x: jax.Array) -> jax.Array:
        """Latent patches ``(n, h, w, D)`` in [0, 1] for images ``(n, H, W, C)``."""
        a = self.features(x)
        return jax.nn.sigmoid(self.add_on[1](jax.nn.relu(self.add_on[0](a))))

    def distances(self, z: jax.Array) -> jax.Array:
        """Squared distances ``(n, h, w, P)`` of latent patches to the prototypes; patches in the
        ``border`` rows and columns get ``BORDER_DISTANCE`` added, so they are never nearest."""
        d = squared_distances(z, self.prototypes[...])
        b = int(self.config.border)
        if b:
            h, w = d.shape[1:3]
            inside = jnp.zeros((h, w), bool).at[b : h - b, b : w - b].set(True)
            d = jnp.where(inside[None, :, :, None], d, d + BORDER_DISTANCE)
        return d

    def forward(self, x: jax.Array):
        """``(logits (n, C), min_distances (n, P), distances (n, h, w, P))`` for images."""
        d = self.distances(self.latent(x))
        min_d = jnp.min(d, axis=(1, 2))
        logits = log_similarity(min_d) @ self.last_layer[...]
        return logits, min_d, d

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.forward(x)[0]


class PlainCNN(nnx.Module):
    """The ProtoPNet backbone followed by global average pooling and a linear classifier.

    The baseline that ProtoPNet is compared with: same backbone, no prototypes.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> cfg = ProtoPNetConfig(img_size=24, num_classes=2, num_prototypes=4, channels=(4, 4))
        >>> PlainCNN(cfg, key=jax.random.key(0))(jnp.zeros((5, 24, 24, 3))).shape
        (5, 2)
    """

    def __init__(self, config: ProtoPNetConfig, *, key):
        config.validate()
        rng = numpy_rng(key)
        self.config = config
        self.features = make_backbone(config, rng)
        width = int(config.channels[-1])
        self.head = build(lambda rngs: nnx.Linear(width, config.num_classes, rngs=rngs), seed=rng)

    def __call__(self, x):
        return self.head(jnp.mean(self.features(x), axis=(1, 2)))
