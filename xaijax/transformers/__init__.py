"""Transformers: attention rollout, generation and contrastive targets, token helpers.

Each module here imports :mod:`xaijax.core` only (the layering rule of every method family).
"""

from xaijax.transformers.rollout import attention_layer_paths, attention_rollout, rollout_matrices

__all__ = ["attention_layer_paths", "attention_rollout", "rollout_matrices"]
