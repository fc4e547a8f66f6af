"""Small Flax NNX transformers to explain: a text classifier, a vision transformer and a decoder LM.

All three share one pre-norm block (``x + attn(norm1(x))``, ``x + mlp(norm2(x))``, GELU MLP,
layer norm with epsilon 1e-6, as timm's ViT) and one self-attention module whose softmax is a
submodule, :class:`AttentionWeights`. That is what makes attention readable by layer path without
rewriting the model: ``"blocks/0/attn/weights"`` outputs the ``(n, heads, L, L)`` attention
matrix, so attention rollout captures it and gradient-weighted rollout perturbs it with the same
layer hook every CAM and layer method uses (:mod:`xaijax.core.layers`).

Layer paths worth knowing:

================================ ==================================================================
path                             output
================================ ==================================================================
``embed``                        token embeddings ``(n, L, dim)`` (before positions are added)
``blocks/i/attn/weights``        attention of block ``i``: ``(n, heads, L, L)``, rows sum to 1
``blocks/i/norm1``               block ``i``'s normed input ``(n, L, dim)`` (pytorch-grad-cam's
                                 ViT target layer is the last block's ``norm1``)
``blocks/i``                     block ``i``'s output ``(n, L, dim)``
================================ ==================================================================

Token id conventions (shared with :mod:`xaijax.transformers`): ``0`` is padding, which no token
attends to and mean pooling skips; the text classifier reads the first position's output
(a ``[CLS]`` token the tokenizer prepends) with ``pool="cls"``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from xaijax.zoo.nets import module_list

__all__ = [
    "AttentionWeights",
    "SelfAttention",
    "TransformerBlock",
    "TextTransformer",
    "ViT",
    "DecoderLM",
]

LN_EPSILON = 1e-6


class AttentionWeights(nnx.Module):
    """Softmax over keys of masked attention scores: ``(n, heads, Lq, Lk) -> (n, heads, Lq, Lk)``.

    A module of its own (with no parameters) so that its output has a layer path. Masked keys
    (``mask`` False) get weight exactly 0.
    """

    def __call__(self, scores, mask=None):
        if mask is not None:
            scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
        return jax.nn.softmax(scores, axis=-1)


class SelfAttention(nnx.Module):
    """Multi-head self-attention with a fused ``qkv`` projection (timm's layout) and ``out``."""

    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.qkv = nnx.Linear(dim, 3 * dim, rngs=rngs)
        self.weights = AttentionWeights()
        self.out = nnx.Linear(dim, dim, rngs=rngs)

    def __call__(self, x, mask=None):
        n, length, dim = x.shape
        head_dim = dim // self.heads
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, head_dim)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        scores = jnp.einsum("nqhd,nkhd->nhqk", q, k) / jnp.sqrt(head_dim).astype(x.dtype)
        a = self.weights(scores, mask)
        return self.out(jnp.einsum("nhqk,nkhd->nqhd", a, v).reshape(n, length, dim))


class TransformerBlock(nnx.Module):
    """Pre-norm block: ``x + attn(norm1(x))`` then ``x + fc2(gelu(fc1(norm2(x))))``."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, *, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(dim, epsilon=LN_EPSILON, rngs=rngs)
        self.attn = SelfAttention(dim, heads, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, epsilon=LN_EPSILON, rngs=rngs)
        self.fc1 = nnx.Linear(dim, mlp_dim, rngs=rngs)
        self.fc2 = nnx.Linear(mlp_dim, dim, rngs=rngs)

    def __call__(self, x, mask=None):
        x = x + self.attn(self.norm1(x), mask)
        # The exact (erf) GELU, PyTorch's nn.GELU default, so twins agree to float precision.
        return x + self.fc2(jax.nn.gelu(self.fc1(self.norm2(x)), approximate=False))


def _check_tokens(tokens, max_len: int, name: str = "tokens"):
    if tokens.ndim != 2:
        raise ValueError(f"{name} must be token ids of shape (n, L); got shape {tokens.shape}")
    if tokens.shape[1] > max_len:
        raise ValueError(
            f"{name} has {tokens.shape[1]} positions but the model's max_len is {max_len}; "
            "truncate the sequences (the tokenizer's max_len) or build the model longer"
        )


class TextTransformer(nnx.Module):
    """A transformer encoder classifying token sequences ``(n, L)`` int -> logits ``(n, classes)``.

    Token embedding (``embed``) plus learned positions (``pos``), ``depth`` pre-norm blocks, a final
    layer norm and a linear head on the first position (``pool="cls"``) or on the mean over
    non-padding positions (``pool="mean"``). Padding (``pad_id``) is masked out of attention.

    Example:
        >>> import jax.numpy as jnp
        >>> from xaijax.zoo import build
        >>> net = build(lambda rngs: TextTransformer(50, 2, max_len=16, rngs=rngs))
        >>> net(jnp.array([[2, 7, 9, 0, 0]])).shape
        (1, 2)
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        *,
        max_len: int = 64,
        dim: int = 32,
        depth: int = 2,
        heads: int = 2,
        mlp_dim: int = 64,
        pool: str = "cls",
        pad_id: int = 0,
        rngs: nnx.Rngs,
    ):
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean'; got {pool!r}")
        self.max_len, self.pool, self.pad_id = max_len, pool, pad_id
        self.embed = nnx.Embed(vocab_size, dim, rngs=rngs)
        self.pos = nnx.Embed(max_len, dim, rngs=rngs)
        self.blocks = module_list(
            [TransformerBlock(dim, heads, mlp_dim, rngs=rngs) for _ in range(depth)]
        )
        self.norm = nnx.LayerNorm(dim, epsilon=LN_EPSILON, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, rngs=rngs)

    def __call__(self, tokens):
        _check_tokens(tokens, self.max_len)
        keep = tokens != self.pad_id
        x = self.embed(tokens) + self.pos(jnp.arange(tokens.shape[1]))[None]
        mask = keep[:, None, None, :]
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)
        if self.pool == "cls":
            pooled = x[:, 0]
        else:
            w = keep.astype(x.dtype)[..., None]
            pooled = (x * w).sum(axis=1) / jnp.maximum(w.sum(axis=1), 1.0)
        return self.head(pooled)


class ViT(nnx.Module):
    """A vision transformer: images ``(n, H, W, C)`` -> logits ``(n, classes)``.

    Non-overlapping ``patch_size`` patches embedded by a strided convolution (``patch_embed``), a
    class token (``cls_token``) and learned positions (``pos``) for the ``1 + h*w`` tokens,
    ``depth`` pre-norm blocks, a final norm and a linear head on the class token. Tokens are in
    row-major patch order, so a layer's ``(n, 1 + h*w, d)`` output reshapes to ``(n, h, w, d)``
    after dropping the class token.

    Example:
        >>> import jax.numpy as jnp
        >>> from xaijax.zoo import build
        >>> net = build(lambda rngs: ViT(32, 8, 3, 4, rngs=rngs))
        >>> net(jnp.zeros((2, 32, 32, 3))).shape
        (2, 4)
    """

    def __init__(
        self,
        image_size: int,
        patch_size: int,
        in_channels: int,
        num_classes: int,
        *,
        dim: int = 32,
        depth: int = 2,
        heads: int = 2,
        mlp_dim: int = 64,
        rngs: nnx.Rngs,
    ):
        if image_size % patch_size:
            raise ValueError(
                f"image_size ({image_size}) must be a multiple of patch_size ({patch_size})"
            )
        self.image_size, self.patch_size = image_size, patch_size
        self.grid = image_size // patch_size
        self.patch_embed = nnx.Conv(
            in_channels,
            dim,
            (patch_size, patch_size),
            strides=(patch_size, patch_size),
            padding="VALID",
            rngs=rngs,
        )
        self.cls_token = nnx.Param(jnp.zeros((1, 1, dim)))
        self.pos = nnx.Param(jnp.zeros((1, 1 + self.grid**2, dim)))
        self.blocks = module_list(
            [TransformerBlock(dim, heads, mlp_dim, rngs=rngs) for _ in range(depth)]
        )
        self.norm = nnx.LayerNorm(dim, epsilon=LN_EPSILON, rngs=rngs)
        self.head = nnx.Linear(dim, num_classes, rngs=rngs)

    def __call__(self, images):
        if images.ndim != 4 or images.shape[1:3] != (self.image_size, self.image_size):
            raise ValueError(
                f"images must be (n, {self.image_size}, {self.image_size}, C); got {images.shape}"
            )
        p = self.patch_embed(images)
        n, h, w, d = p.shape
        cls = jnp.broadcast_to(self.cls_token[...], (n, 1, d)).astype(p.dtype)
        x = jnp.concatenate([cls, p.reshape(n, h * w, d)], axis=1) + self.pos[...]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


class DecoderLM(nnx.Module):
    """A decoder-only language model: token ids ``(n, L)`` -> next-token logits ``(n, L, vocab)``.

    Position ``t``'s logits predict token ``t + 1`` from tokens ``0..t`` (causal attention; padding
    keys masked). Token embedding ``embed``, learned positions ``pos``, pre-norm blocks, final norm,
    and an untied ``lm_head``.

    Example:
        >>> import jax.numpy as jnp
        >>> from xaijax.zoo import build
        >>> lm = build(lambda rngs: DecoderLM(30, max_len=16, rngs=rngs))
        >>> lm(jnp.array([[1, 5, 6]])).shape
        (1, 3, 30)
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        max_len: int = 64,
        dim: int = 32,
        depth: int = 2,
        heads: int = 2,
        mlp_dim: int = 64,
        pad_id: int = 0,
        rngs: nnx.Rngs,
    ):
        self.max_len, self.pad_id = max_len, pad_id
        self.embed = nnx.Embed(vocab_size, dim, rngs=rngs)
        self.pos = nnx.Embed(max_len, dim, rngs=rngs)
        self.blocks = module_list(
            [TransformerBlock(dim, heads, mlp_dim, rngs=rngs) for _ in range(depth)]
        )
        self.norm = nnx.LayerNorm(dim, epsilon=LN_EPSILON, rngs=rngs)
        self.lm_head = nnx.Linear(dim, vocab_size, rngs=rngs)

    def __call__(self, tokens):
        _check_tokens(tokens, self.max_len)
        length = tokens.shape[1]
        causal = jnp.tril(jnp.ones((length, length), bool))
        # A padding query still attends to itself, so no softmax row is empty.
        keys = tokens != self.pad_id
        mask = (causal[None] & keys[:, None, :]) | jnp.eye(length, dtype=bool)[None]
        x = self.embed(tokens) + self.pos(jnp.arange(length))[None]
        for block in self.blocks:
            x = block(x, mask[:, None])
        return self.lm_head(self.norm(x))
