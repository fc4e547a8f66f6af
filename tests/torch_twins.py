"""PyTorch twins of the zoo's transformers with identical weights (oracles for captum tests)."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn


def _t(a) -> torch.Tensor:
    return torch.tensor(np.asarray(a), dtype=torch.float32)


def _linear(ours) -> nn.Linear:
    kernel = np.asarray(ours.kernel[...])  # flax (in, out); torch (out, in)
    lin = nn.Linear(kernel.shape[0], kernel.shape[1])
    with torch.no_grad():
        lin.weight.copy_(_t(kernel.T))
        lin.bias.copy_(_t(ours.bias[...]))
    return lin


def _norm(ours) -> nn.LayerNorm:
    scale = np.asarray(ours.scale[...])
    ln = nn.LayerNorm(scale.shape[0], eps=1e-6)
    with torch.no_grad():
        ln.weight.copy_(_t(scale))
        ln.bias.copy_(_t(ours.bias[...]))
    return ln


def _embedding(ours) -> nn.Embedding:
    table = np.asarray(ours.embedding[...])
    emb = nn.Embedding(*table.shape)
    with torch.no_grad():
        emb.weight.copy_(_t(table))
    return emb


class TorchBlock(nn.Module):
    """Pre-norm block with timm's fused qkv layout, erf GELU, LayerNorm eps 1e-6."""

    def __init__(self, ours):
        super().__init__()
        self.heads = ours.attn.heads
        self.norm1, self.norm2 = _norm(ours.norm1), _norm(ours.norm2)
        self.qkv, self.out = _linear(ours.attn.qkv), _linear(ours.attn.out)
        self.fc1, self.fc2 = _linear(ours.fc1), _linear(ours.fc2)

    def attn(self, x, mask):
        n, length, dim = x.shape
        hd = dim // self.heads
        qkv = self.qkv(x).reshape(n, length, 3, self.heads, hd)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        scores = torch.einsum("nqhd,nkhd->nhqk", q, k) / math.sqrt(hd)
        scores = torch.where(mask, scores, torch.finfo(scores.dtype).min)
        a = torch.softmax(scores, dim=-1)
        return self.out(torch.einsum("nhqk,nkhd->nqhd", a, v).reshape(n, length, dim))

    def forward(self, x, mask):
        x = x + self.attn(self.norm1(x), mask)
        return x + self.fc2(nn.functional.gelu(self.fc1(self.norm2(x))))


class TorchTextTransformer(nn.Module):
    """Twin of :class:`xaijax.zoo.transformers.TextTransformer` (cls or mean pooling)."""

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
