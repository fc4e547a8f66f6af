"""Data sets and small models to explain, and the one trainer for them.

============ ================================================================================
module       what it holds
============ ================================================================================
data         embedded data sets (breast cancer, diabetes, wine, moons, digits, lfw_subset,
             sample photos), synthetic shapes with ground-truth masks, sentiment, negation and
             agreement corpora
nets         MLP, CNN, ResNet (basic blocks, with or without batch norm) and :func:`build`, the one
             initialisation (NumPy draws, nothing compiled)
transformers TextTransformer, ViT, DecoderLM: pre-norm transformers whose attention weights
             have a layer path (``blocks/i/attn/weights``)
tokenizer    an offline WordPiece tokenizer learned from a corpus, with each token's word
recipes      trained text models in seconds: :func:`text_classifier` (sentiment or negation),
             :func:`language_model` (subject-verb agreement)
training     the compiled training epoch (metrics stay on the device), :func:`train`,
             :func:`accuracy`, the progress line and the checkpoint format (:func:`save`,
             :func:`load`, :func:`save_checkpoint`, :func:`load_checkpoint`)
============ ================================================================================

The zoo imports no explainer family; families (ProtoPNet) build on it.
"""

from xaijax.zoo import data
from xaijax.zoo.nets import CNN, MLP, BasicBlock, ResNet, build, numpy_rng
from xaijax.zoo.recipes import TextTask, language_model, text_classifier
from xaijax.zoo.tokenizer import Encoding, Tokenizer
from xaijax.zoo.training import (
    Progress,
    accuracy,
    epoch_runner,
    evaluate_batches,
    load,
    load_checkpoint,
    next_token_targets,
    save,
    save_checkpoint,
    train,
)
from xaijax.zoo.transformers import DecoderLM, TextTransformer, ViT

__all__ = [
    "BasicBlock",
    "CNN",
    "DecoderLM",
    "Encoding",
    "MLP",
    "Progress",
    "ResNet",
    "TextTask",
    "TextTransformer",
    "Tokenizer",
    "ViT",
    "accuracy",
    "build",
    "data",
    "epoch_runner",
    "evaluate_batches",
    "language_model",
    "load",
    "load_checkpoint",
    "next_token_targets",
    "numpy_rng",
    "save",
    "save_checkpoint",
    "text_classifier",
    "train",
]
