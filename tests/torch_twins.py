"""PyTorch twins of the zoo's transformers, with the weights copied from the NNX model.

Written from :mod:`xaijax.zoo.transformers`, not from timm: pre-norm blocks, a fused ``qkv``
projection in timm's ``(L, 3, heads, head_dim)`` layout, the exact (erf) GELU, LayerNorm with
epsilon 1e-6, a strided patch convolution, class token first and row-major patches. The tests
check the logits agree to 1e-5 before comparing any explanation.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def _t(x) -> torch.Tensor:
    return torch.tensor(np.asarray(x, np.float32))


def _linear(lin) -> nn.Linear:
    kernel = np.asarray(lin.kernel[...])
    out = nn.Linear(kernel.shape[0], kernel.shape[1])
    out.weight.data = _t(kernel.T)
    out.bias.data = _t(lin.bias[...])
    return out


def _norm(ln) -> nn.LayerNorm:
    out = nn.LayerNorm(ln.scale[...].shape[0], eps=ln.epsilon)
    out.weight.data = _t(ln.scale[...])
    out.bias.data = _t(ln.bias[...])
    return out


class TorchAttention(nn.Module):
    def __init__(self, attn):
        super().__init__()
        self.heads = attn.heads
        self.qkv = _linear(attn.qkv)
        self.proj = _linear(attn.out)

    def forward(self, x, mask=None):
        n, length, dim = x.shape
        hd = dim // self.heads
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # (n, heads, L, hd)
        scores = q @ k.transpose(-2, -1) / np.sqrt(hd)
        if mask is not None:  # (n, 1, 1, L) keys kept: padding masked as the zoo model does
            scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
        a = scores.softmax(dim=-1)
        if a.requires_grad:
            a.retain_grad()
        self.attention = a  # read by the rollout oracles (with its .grad after backward)
        return self.proj((a @ v).transpose(1, 2).reshape(n, length, dim))


def _embedding(emb) -> nn.Embedding:
    table = np.asarray(emb.embedding[...])
    out = nn.Embedding(*table.shape)
    out.weight.data = _t(table)
    return out


class TorchBlock(nn.Module):
    def __init__(self, block):
        super().__init__()
        self.norm1 = _norm(block.norm1)
        self.attn = TorchAttention(block.attn)
        self.norm2 = _norm(block.norm2)
        self.fc1 = _linear(block.fc1)
        self.act = nn.GELU()
        self.fc2 = _linear(block.fc2)

    def forward(self, x, mask=None):
        x = x + self.attn(self.norm1(x), mask)
        return x + self.fc2(self.act(self.fc1(self.norm2(x))))


class TorchViT(nn.Module):
    """The twin of :class:`xaijax.zoo.transformers.ViT`; takes NCHW images."""

    def __init__(self, vit):
        super().__init__()
        kernel = np.asarray(vit.patch_embed.kernel[...])  # (p, p, in, out)
        p, _, cin, dim = kernel.shape
        self.patch_embed = nn.Conv2d(cin, dim, p, stride=p)
        self.patch_embed.weight.data = _t(kernel.transpose(3, 2, 0, 1))
        self.patch_embed.bias.data = _t(vit.patch_embed.bias[...])
        self.cls_token = nn.Parameter(_t(vit.cls_token[...]))
        self.pos = nn.Parameter(_t(vit.pos[...]))
        self.blocks = nn.ModuleList([TorchBlock(b) for b in vit.blocks])
        self.norm = _norm(vit.norm)
        self.head = _linear(vit.head)

    def forward(self, images):
        p = self.patch_embed(images)  # (n, d, h, w)
        n, d = p.shape[:2]
        tokens = p.flatten(2).transpose(1, 2)  # row-major patches
        x = torch.cat([self.cls_token.expand(n, 1, d), tokens], dim=1) + self.pos
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


class TorchTextTransformer(nn.Module):
    """The twin of :class:`xaijax.zoo.transformers.TextTransformer` (cls or mean pooling)."""

    def __init__(self, ours):
        super().__init__()
        self.pad_id, self.pool = ours.pad_id, ours.pool
        self.embed, self.pos = _embedding(ours.embed), _embedding(ours.pos)
        self.blocks = nn.ModuleList([TorchBlock(b) for b in ours.blocks])
        self.norm, self.head = _norm(ours.norm), _linear(ours.head)

    def forward(self, tokens):
        keep = tokens != self.pad_id
        x = self.embed(tokens) + self.pos(torch.arange(tokens.shape[1]))[None]
        mask = keep[:, None, None, :]
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)
        if self.pool == "cls":
            pooled = x[:, 0]
        else:
            w = keep.to(x.dtype)[..., None]
            pooled = (x * w).sum(dim=1) / torch.clamp(w.sum(dim=1), min=1.0)
        return self.head(pooled)
