"""Trained small transformers to explain: a text classifier and a language model, in seconds.

Each recipe generates its corpus (:mod:`xaijax.zoo.data`), learns a :class:`Tokenizer` from it,
builds the model with NumPy draws (:func:`~xaijax.zoo.build`) and trains it with
:func:`~xaijax.zoo.train`: the same ``seed`` gives the same weights. Nothing is downloaded.

============================= ===================================================================
recipe                        model and data
============================= ===================================================================
:func:`text_classifier`       :class:`TextTransformer` on the sentiment corpus or the negation
                              corpus (word order decides the label)
:func:`language_model`        :class:`DecoderLM` on the agreement corpus (the verb agrees with a
                              subject several tokens back)
============================= ===================================================================
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import nnx

from xaijax.zoo import data
from xaijax.zoo.nets import build
from xaijax.zoo.tokenizer import Tokenizer
from xaijax.zoo.training import accuracy, next_token_targets, train
from xaijax.zoo.transformers import DecoderLM, TextTransformer

__all__ = ["TextTask", "language_model", "text_classifier"]

_CORPORA = {"sentiment": data.sentiment_corpus, "negation": data.negation_corpus}


class TextTask(NamedTuple):
    """A trained text model with its tokenizer and data.

    Attributes:
        model: the trained NNX module (evaluation mode).
        tokenizer: the :class:`Tokenizer` learned from the training texts.
        texts, labels: the held-out texts and their labels (``labels`` is the subject's number,
            1 = plural, for the language model).
        ids: the held-out texts encoded (``tokenizer.encode(texts, max_len=model.max_len)``).
        accuracy: held-out accuracy (the classifier), or next-token accuracy on the held-out
            texts (the language model).
        losses: the training loss per epoch.
    """

    model: Any
    tokenizer: Tokenizer
    texts: list[str]
    labels: np.ndarray
    ids: np.ndarray
    accuracy: float
    losses: np.ndarray

    def predict_proba(self, texts) -> np.ndarray:
        """Class probabilities ``(n, 2)`` of the classifier on strings (a host model for
        :func:`xaijax.lime_text` or ``xaijax explain``); longer texts are truncated to the
        model's ``max_len``. ``"[MASK]"`` in a text is the mask token, so
        ``lime_text(task.predict_proba, texts, bow=False, mask_string="[MASK]")`` hides words
        with it.

        Example:
            >>> task = text_classifier("sentiment", n=80, epochs=1, dim=8, depth=1)
            >>> task.predict_proba(["the film was great", "[MASK] film"]).shape
            (2, 2)
        """
        ids = self.tokenizer.encode(list(texts), max_len=self.model.max_len, truncate=True).ids
        graphdef, state = nnx.split(self.model)
        return np.asarray(_softmax_program(graphdef)(state, ids))


def text_classifier(
    task: str = "sentiment",
    *,
    n: int = 600,
    test_fraction: float = 0.25,
    seed: int = 0,
    epochs: int = 20,
    max_len: int = 16,
    dim: int = 32,
    depth: int = 2,
    heads: int = 2,
    pool: str = "cls",
) -> TextTask:
    """A :class:`TextTransformer` trained on a generated corpus (``"sentiment"`` or
    ``"negation"``), ``[CLS]`` first, padding masked out of attention.

    Example:
        >>> task = text_classifier("sentiment", n=80, epochs=2, dim=8, depth=1)
        >>> task.ids.shape[1], task.model(task.ids[:2]).shape
        (16, (2, 2))
    """
    if task not in _CORPORA:
        raise ValueError(f"task must be one of {sorted(_CORPORA)}; got {task!r}")
    texts, labels = _CORPORA[task](n, seed=seed)
    cut = _cut(n, test_fraction)
    tok = Tokenizer.train(texts[:cut], vocab_size=256)
    ids = tok.encode(texts, max_len=max_len).ids
    model = build(
        lambda rngs: TextTransformer(
            tok.vocab_size,
            2,
            max_len=max_len,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_dim=2 * dim,
            pool=pool,
            pad_id=tok.pad_id,
            rngs=rngs,
        ),
        seed=seed,
    )
    losses = train(
        model,
        ids[:cut],
        labels[:cut],
        key=jax.random.key(seed),
        epochs=epochs,
        learning_rate=3e-3,
        batch_size=32,
    )
    acc = accuracy(model, ids[cut:], labels[cut:])
    return TextTask(model, tok, texts[cut:], labels[cut:], ids[cut:], acc, losses)


def language_model(
    *,
    n: int = 800,
    test_fraction: float = 0.25,
    seed: int = 0,
    epochs: int = 20,
    max_len: int = 16,
    dim: int = 32,
    depth: int = 2,
    heads: int = 2,
) -> TextTask:
    """A :class:`DecoderLM` trained to predict the next token of the agreement corpus (no
    ``[CLS]``: position 0 is the first word).

    Example:
        >>> task = language_model(n=80, epochs=2, dim=8, depth=1)
        >>> task.model(task.ids[:1]).shape == (1, 16, task.tokenizer.vocab_size)
        True
    """
    texts, plural = data.agreement_corpus(n, seed=seed)
    cut = _cut(n, test_fraction)
    tok = Tokenizer.train(texts[:cut], vocab_size=256)
    ids = tok.encode(texts, max_len=max_len, add_cls=False).ids
    model = build(
        lambda rngs: DecoderLM(
            tok.vocab_size,
            max_len=max_len,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_dim=2 * dim,
            pad_id=tok.pad_id,
            rngs=rngs,
        ),
        seed=seed,
    )
    y = next_token_targets(ids, tok.pad_id)
    losses = train(
        model,
        ids[:cut],
        y[:cut],
        key=jax.random.key(seed),
        loss="next_token",
        epochs=epochs,
        learning_rate=3e-3,
        batch_size=32,
    )
    logits = np.asarray(model(ids[cut:]))
    keep = y[cut:] >= 0
    acc = float((logits.argmax(-1) == y[cut:])[keep].mean())
    return TextTask(model, tok, texts[cut:], plural[cut:], ids[cut:], acc, losses)


@functools.lru_cache(maxsize=8)
def _softmax_program(graphdef):
    """A compiled ``(state, ids) -> softmax(model(ids))`` per model structure."""

    @jax.jit
    def proba(state, ids):
        return jax.nn.softmax(nnx.merge(graphdef, state)(ids), axis=-1)

    return proba


def _cut(n: int, test_fraction: float) -> int:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    cut = int(round(n * (1.0 - test_fraction)))
    if cut < 32 or cut >= n:
        raise ValueError(f"n={n} leaves too few texts to train on (at least 32) or to test")
    return cut
