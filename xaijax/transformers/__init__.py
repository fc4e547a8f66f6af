"""Transformers: attention rollout, generation and contrastive targets, token helpers.

Each module here imports :mod:`xaijax.core` only (the layering rule of every method family).
"""

__all__: list[str] = []
