"""Transformers: attention rollout, generation and contrastive targets, token helpers.

Each module here imports :mod:`xaijax.core` only (the layering rule of every method family).
"""

from xaijax.transformers.rollout import attention_layer_paths, attention_rollout, rollout_matrices
from xaijax.transformers.targets import (
    LastTokenLogProbs,
    contrastive_target,
    generation_attribution,
    greedy_continuation,
    next_token_target,
)

__all__ = [
    "LastTokenLogProbs",
    "attention_layer_paths",
    "attention_rollout",
    "contrastive_target",
    "generation_attribution",
    "greedy_continuation",
    "next_token_target",
    "rollout_matrices",
]
