"""LIME for text: words removed at random, a Ridge surrogate on which words were kept.

Tokenization and the classifier (which takes strings) run on the host; the removal masks, the
cosine distances and the surrogate fits are compiled and vmapped over the texts. Texts with
different vocabulary sizes share one call: masks are padded (to a multiple of 16 words, so similar
lengths reuse one compilation) with always-off columns that get coefficient 0.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xaijax.core.contract import instance_keys
from xaijax.core.explanation import Explanation
from xaijax.core.registry import explainer
from xaijax.lime.selection import FEATURE_SELECTION_METHODS
from xaijax.lime.surrogate import cosine_distance, explain_with_data

__all__ = ["TokenizedText", "tokenize", "removal_masks", "text_from_mask", "lime_text"]

_PAD = 16


class TokenizedText(NamedTuple):
    """A text split as the reference's ``IndexedString``.

    Attributes:
        tokens: the text as alternating words and separators; ``"".join(tokens)`` is the text.
        words: the interpretable features: distinct words (bag of words) or word occurrences.
        positions: per feature, the indices into ``tokens`` it covers.
    """

    tokens: tuple[str, ...]
    words: tuple[str, ...]
    positions: tuple[tuple[int, ...], ...]


def tokenize(text: str, split_expression: str = r"\W+", bow: bool = True) -> TokenizedText:
    """Split ``text`` on ``split_expression``; features are distinct words (``bow``) or occurrences.

    Example:
        >>> tokenize("a b, a").words
        ('a', 'b')
        >>> tokenize("a b, a", bow=False).positions
        ((0,), (2,), (4,))
    """
    splitter = re.compile(rf"({split_expression})|$")
    tokens = tuple(s for s in splitter.split(text) if s)
    words, positions, vocab = [], [], {}
    for i, token in enumerate(tokens):
        if splitter.match(token):
            continue
        if bow:
            if token not in vocab:
                vocab[token] = len(words)
                words.append(token)
                positions.append([])
            positions[vocab[token]].append(i)
        else:
            words.append(token)
            positions.append([i])
    return TokenizedText(tokens, tuple(words), tuple(tuple(p) for p in positions))


def text_from_mask(doc: TokenizedText, mask, bow: bool = True, mask_string: str = "UNKWORDZ"):
    """The text with the features whose ``mask`` entry is 0 removed (bag of words: every
    occurrence deleted) or, positionally, each replaced by ``mask_string``."""
    removed = {}
    for j, pos in enumerate(doc.positions):
        if not mask[j]:
            for i in pos:
                removed[i] = "" if bow else mask_string
    return "".join(removed.get(i, t) for i, t in enumerate(doc.tokens))


def removal_masks(key, num_words, num_samples: int, width: int):
    """LIME text masks ``(S, width)``: row 0 all words on; each other row removes a count drawn
    uniformly from ``1..d`` of the ``d = num_words`` words, chosen without replacement.

    Columns ``>= num_words`` are padding and always 0.
    """
    k_size, k_order = jax.random.split(key)
    size = jax.random.randint(k_size, (num_samples, 1), 1, num_words + 1)
    real = jnp.arange(width)[None, :] < num_words
    # A uniformly random order of the real words per row: the first `size` are removed.
    # Column j's draws come from fold_in(key, j): the same text gets the same masks at any width.
    uniform = jax.vmap(
        lambda j: jax.random.uniform(jax.random.fold_in(k_order, j), (num_samples,)), out_axes=1
    )(jnp.arange(width))
    scores = jnp.where(real, uniform, jnp.inf)
    rank = jnp.argsort(jnp.argsort(scores, axis=1), axis=1)
    keep = (rank >= size) & real
    return keep.at[0].set(real[0]).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("num_samples", "width"))
def _masks(key, counts, *, num_samples, width):
    keys = key
    return jax.vmap(lambda k, d: removal_masks(k, d, num_samples, width))(keys, counts)


@functools.partial(
    jax.jit,
    static_argnames=("num_features", "feature_selection", "kernel_width"),
)
def _fit(masks, y, label_ids, *, num_features, feature_selection, kernel_width):
    distances = jax.vmap(cosine_distance)(masks) * 100.0

    def fit_one(Z, Y, d, label):
        return explain_with_data(
            Z,
            Y[:, label],
            d,
            kernel_width=kernel_width,
            num_features=num_features,
            feature_selection=feature_selection,
        )

    return jax.vmap(jax.vmap(fit_one, in_axes=(None, None, None, 0)))(
        masks, y, distances, label_ids
    )


@explainer(kind="surrogate", inputs="text", random=True)
def lime_text(
    f: Callable[[list[str]], np.ndarray],
    texts,
    *,
    key,
    num_samples: int = 5000,
    num_features: int = 10,
    feature_selection: str = "auto",
    labels: Sequence[int] | None = None,
    top_labels: int | None = None,
    bow: bool = True,
    split_expression: str = r"\W+",
    mask_string: str = "UNKWORDZ",
    kernel_width: float = 25.0,
    batch_size: int = 1000,
) -> Explanation:
    """LIME word attributions of a text classifier, as ``lime``'s ``LimeTextExplainer``.

    Per text: row 0 is the text; each other sample removes ``k ~ U{1..d}`` of its ``d`` words
    (bag of words: every occurrence; positional: replaced by ``mask_string``); samples are
    weighted by ``sqrt(exp(-D²/25²))`` with ``D`` = 100 x cosine distance of the kept-word mask to
    all-on, and a Ridge(alpha=1) surrogate is fitted per label.

    Args:
        f: classifier on a list of strings, returning ``(n, K)`` (e.g. a scikit-learn pipeline's
            ``predict_proba``); called on the host in chunks of ``batch_size`` strings.
        texts: one string or a sequence of ``n`` strings.
        key: a ``jax.random.key`` (split over the texts), or ``(n,)`` keys, one per text.
        num_samples, num_features, feature_selection, labels, top_labels: as in
            :func:`xaijax.lime.lime_tabular` (default labels: all outputs).
        bow: bag-of-words features (else one feature per word position).
        split_expression: regular expression separating words.
        mask_string: replacement for removed words in positional mode.
        kernel_width: kernel width on the scaled cosine distance.
        batch_size: strings per classifier call.

    Returns:
        An :class:`Explanation`: ``values`` ``(n, D, L)`` word weights (``D`` the padded
        vocabulary size, padding 0), ``base_values`` the intercepts; ``extras``:
        ``feature_labels`` ``(n, D)`` words (``""`` padding), ``num_words``, ``intercept``,
        ``score``, ``local_pred``, ``labels``, ``selected``, ``prediction``.

    Raises:
        ValueError: on empty texts, a classifier output of the wrong shape, or NaN outputs.

    References:
        Ribeiro, Singh & Guestrin, "Why Should I Trust You?": Explaining the Predictions of Any
        Classifier, KDD 2016.

    Example:
        >>> import jax, numpy as np
        >>> def f(docs):
        ...     p = np.array([0.9 if "good" in d else 0.2 for d in docs])
        ...     return np.stack([1 - p, p], axis=1)
        >>> exp = lime_text(f, "a good movie", key=jax.random.key(0), num_samples=200)
        >>> exp.extras["feature_labels"][int(abs(exp.values[:, 1]).argmax())]
        np.str_('good')
    """
    single = isinstance(texts, str)
    texts = [texts] if single else list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a string or a non-empty sequence of strings")
    if int(num_samples) < 2:
        raise ValueError(f"num_samples must be >= 2; got {num_samples}")
    if feature_selection not in FEATURE_SELECTION_METHODS:
        raise ValueError(
            f"feature_selection must be one of {FEATURE_SELECTION_METHODS}; "
            f"got {feature_selection!r}"
        )
    key = instance_keys(key, len(texts))
    docs = [tokenize(t, split_expression, bow) for t in texts]
    counts = np.array([len(d.words) for d in docs])
    if np.any(counts == 0):
        raise ValueError(f"texts {np.flatnonzero(counts == 0).tolist()} contain no words")
    width = int(-(-counts.max() // _PAD) * _PAD)
    S, n = int(num_samples), len(texts)
    masks = _masks(key, jnp.asarray(counts), num_samples=S, width=width)
    host_masks = np.asarray(masks) > 0
    strings = [
        text_from_mask(doc, host_masks[i, s], bow, mask_string)
        for i, doc in enumerate(docs)
        for s in range(S)
    ]
    chunks = [
        np.asarray(f(strings[a : a + batch_size])) for a in range(0, len(strings), batch_size)
    ]
    y = np.concatenate(chunks).astype(np.float32)
    if y.shape[0] != n * S or y.ndim not in (1, 2):
        raise ValueError(
            f"f must return (N,) or (N, K) for N input strings; got {y.shape} for N={n * S}"
        )
    if not np.all(np.isfinite(y)):
        raise ValueError("f returned NaN or inf outputs on the perturbed texts")
    scalar = y.ndim == 1
    y = y.reshape(n, S, -1)
    K = y.shape[2]
    if top_labels is not None and not scalar:
        if not 1 <= int(top_labels) <= K:
            raise ValueError(f"top_labels must be in 1..{K}; got {top_labels}")
        label_ids = np.argsort(y[:, 0, :], axis=1, kind="stable")[:, ::-1][:, : int(top_labels)]
        output_names = tuple(f"top{i}" for i in range(int(top_labels)))
    else:
        chosen = tuple(range(K)) if labels is None else tuple(int(i) for i in labels)
        if not chosen or not all(0 <= i < K for i in chosen):
            raise ValueError(f"labels must be output indices in 0..{K - 1}; got {labels}")
        label_ids = np.broadcast_to(np.array(chosen)[None, :], (n, len(chosen)))
        output_names = tuple(map(str, chosen))
    fits = _fit(
        masks,
        jnp.asarray(y),
        jnp.asarray(label_ids),
        num_features=int(num_features),
        feature_selection=feature_selection,
        kernel_width=float(kernel_width),
    )
    words = np.array([list(d.words) + [""] * (width - len(d.words)) for d in docs], dtype=str)
    values, base = jnp.moveaxis(fits.coef, 1, 2), fits.intercept
    extras = dict(
        feature_labels=words,
        num_words=counts,
        intercept=fits.intercept,
        score=fits.score,
        local_pred=fits.local_pred,
        labels=jnp.asarray(label_ids),
        selected=jnp.moveaxis(fits.selected, 1, 2),
        prediction=y[:, 0, :],
    )
    if scalar:
        values, base, output_names = values[:, :, 0], base[:, 0], None
        extras.update(
            {k: extras[k][:, 0] for k in ("intercept", "score", "local_pred", "prediction")}
        )
        extras["selected"] = extras["selected"][:, :, 0]
    exp = Explanation(
        values=values,
        base_values=base,
        data=np.array(texts, dtype=object),
        feature_names=None,
        output_names=output_names,
        method="lime_text",
        kind="surrogate",
        extras=extras,
    )
    return exp[0] if single else exp
