"""LIME for text: words removed at random, a Ridge surrogate on which words were kept.

Tokenization and the classifier (which takes strings) run on the host; the removal masks, the
cosine distances and the surrogate fits are compiled, and sharded over a device mesh with
``mesh=``. Texts run in groups of ``batch_size // num_samples`` (at least one), so the masks,
the perturbed strings (built ``batch_size`` at a time, one classifier call each) and the fits
held at once are bounded by ``batch_size``, not by the number of texts. Texts with different
vocabulary sizes share one call: masks are padded (to a multiple of 16 words, so similar lengths
reuse one compilation) with always-off columns that get coefficient 0.

The surrogate's moments are a ``D x D`` matrix for ``D`` distinct words (the one part of LIME
that is quadratic in the vocabulary): the labels of a text share it, the texts of a group are
fitted as many at a time as fit in the backend's chunk budget, and a text whose fit alone would
need more than 2 GiB is refused up front, with the cost named.
"""

# jaxtyping shape strings such as "S D" are not Python expressions:
# ruff: noqa: F722

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jaxtyping import Array, ArrayLike, Bool, Float, Key, UInt32

from xaijax.core import contract
from xaijax.core.batching import check_mesh, default_batch_size, map_instances, over_instances
from xaijax.core.explanation import Explanation
from xaijax.core.model import float_dtype
from xaijax.core.random import fast_bits
from xaijax.core.registry import explainer
from xaijax.core.targets import Targets, check_target_fn
from xaijax.lime.labels import fitted_labels, pack_fits, resolve_labels
from xaijax.lime.selection import FEATURE_SELECTION_METHODS
from xaijax.lime.surrogate import LimeFit, cosine_distance, explain_with_data

# Most strings per host classifier call by default (a scikit-learn pipeline's transform of a
# few thousand strings is already past its fixed costs).
_HOST_STRINGS = 8192

__all__ = ["TokenizedText", "tokenize", "removal_masks", "text_from_mask", "lime_text"]

_PAD = 16
# The most memory one text's surrogate fit may take: its D x D moments, the Cholesky factor and
# the selection's working copies (about 4 D² numbers, D² more per label for forward selection).
_MAX_FIT_BYTES = 2 * 2**30


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


def tokenize(
    text: str, split_expression: str | Callable[[str], Sequence[str]] = r"\W+", bow: bool = True
) -> TokenizedText:
    """Split ``text`` into words and separators as ``lime.lime_text.IndexedString`` does.

    Args:
        text: the text.
        split_expression: a regular expression matching the separators, or a tokenizer: a
            callable returning the text's words in order (e.g. a word-piece tokenizer's
            ``tokenize``), the text between them kept as separators.
        bow: features are distinct words (bag of words), else word occurrences.

    Returns:
        A :class:`TokenizedText`.

    Raises:
        TypeError: if ``split_expression`` is neither a string nor a callable.
        ValueError: for an invalid regular expression, or a tokenizer returning words that are
            not in the text, in order.

    Example:
        >>> tokenize("a b, a").words
        ('a', 'b')
        >>> tokenize("a b, a", bow=False).positions
        ((0,), (2,), (4,))
        >>> tokenize("isn't it", split_expression=str.split).tokens
        ("isn't", ' ', 'it')
    """
    if callable(split_expression):
        words_in_order = split_expression(text)
        if isinstance(words_in_order, str) or not all(isinstance(w, str) for w in words_in_order):
            raise TypeError(
                "split_expression, a tokenizer, must return a list of strings (the words of the "
                f"text); got {type(words_in_order).__name__}"
            )
        tokens = _segment_with_tokens(text, list(words_in_order))
        vocabulary = set(words_in_order)

        def is_word(piece):
            return piece in vocabulary

    elif isinstance(split_expression, str):
        try:
            splitter = re.compile(rf"({split_expression})|$")
        except re.error as err:
            raise ValueError(
                f"split_expression must be a valid regular expression; {split_expression!r} is "
                f"not: {err}"
            ) from err
        tokens = [s for s in splitter.split(text) if s]

        def is_word(piece):
            return not splitter.match(piece)

    else:
        raise TypeError(
            "split_expression must be a regular expression (str) or a tokenizer (a callable "
            f"returning the words); got {type(split_expression).__name__}"
        )
    words, positions, vocab = [], [], {}
    for i, token in enumerate(tokens):
        if not is_word(token):
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
    return TokenizedText(tuple(tokens), tuple(words), tuple(tuple(p) for p in positions))


def _segment_with_tokens(text: str, tokens: list[str]) -> list[str]:
    """``lime``'s ``IndexedString._segment_with_tokens``: the tokens with the text between them."""
    pieces, at = [], 0
    for token in tokens:
        start = text.find(token, at)
        if start < 0:
            raise ValueError(
                f"split_expression, a tokenizer, returned {token!r}, which is not in the text "
                "after the previous words (tokens must be substrings of the text, in order)"
            )
        if start > at:
            pieces.append(text[at:start])
        pieces.append(token)
        at = start + len(token)
    if at < len(text):
        pieces.append(text[at:])
    return pieces


def text_from_mask(
    doc: TokenizedText, mask: Bool[ArrayLike, " D"], bow: bool = True, mask_string="UNKWORDZ"
) -> str:
    """The text with the features whose ``mask`` entry is 0 removed (bag of words: every
    occurrence deleted) or, positionally, each replaced by ``mask_string``.

    Example:
        >>> doc = tokenize("a good, good film")
        >>> text_from_mask(doc, [1, 0, 1])
        'a ,  film'
        >>> text_from_mask(tokenize("a good film"), [1, 0, 1], bow=False, mask_string="?")
        'a ? film'
    """
    return _strings(doc, np.asarray(mask, bool)[None, :], bow, mask_string)[0]


def _strings(doc: TokenizedText, masks: np.ndarray, bow: bool, mask_string: str) -> list[str]:
    """The perturbed texts of ``doc`` for each row of ``masks: (B, >= D)`` bool."""
    owner = np.full(len(doc.tokens), -1)
    for j, pos in enumerate(doc.positions):
        owner[list(pos)] = j
    tokens = np.array(doc.tokens + ("",), dtype=object)
    keep = (owner < 0)[None, :] | masks[:, np.maximum(owner, 0)]
    if bow:
        return ["".join(tokens[:-1][row]) for row in keep]
    replaced = np.array(doc.tokens + (mask_string,), dtype=object)
    return ["".join(np.where(row, tokens[:-1], replaced[-1])) for row in keep]


def removal_masks(key, num_words, num_samples: int, width: int) -> Float[Array, "S width"]:
    """LIME text masks ``(S, width)``: row 0 all words on; each other row removes a count drawn
    uniformly from ``1..d`` of the ``d = num_words`` words, chosen without replacement.

    Columns ``>= num_words`` are padding and always 0. Column ``j``'s random bits come from
    ``fold_in(key, j)``, so a text gets the same masks at any padded width (alone or in a batch).

    Example:
        >>> import jax
        >>> m = removal_masks(jax.random.key(0), 3, 4, 5)
        >>> m[0].tolist(), bool((m[:, 3:] == 0).all()), bool((m[1:, :3].sum(1) < 3).all())
        ([1.0, 1.0, 1.0, 0.0, 0.0], True, True)
    """
    k_size, k_order = jax.random.split(key)
    d = jnp.asarray(num_words, jnp.int32)
    size = jax.random.randint(k_size, (num_samples, 1), 1, d + 1)
    column = jnp.arange(width, dtype=jnp.uint32)
    bits = jax.vmap(
        lambda j: fast_bits(jax.random.fold_in(k_order, j), (num_samples,)), out_axes=1
    )(column)
    # The words removed are the `size` smallest of d distinct random keys: random bits with
    # the low ceil(log2 d) bits replaced by the word's index (so no two keys tie, and removing
    # exactly `size` words takes one value sort per row, not the two argsorts of ranking a
    # random order). Ties in the remaining >= 18 random bits (d <= 2^14 words) fall to the
    # lower index, a deviation from uniform below d * 2^-18 per row, far below LIME's noise.
    shift = (32 - jax.lax.clz(jnp.maximum(d - 1, 1))).astype(jnp.uint32)
    keys = (bits >> shift << shift) | column[None, :]
    real = column[None, :] < d.astype(jnp.uint32)
    keys = jnp.where(real, keys, jnp.uint32(0xFFFFFFFF))
    kth = jnp.take_along_axis(jnp.sort(keys, axis=1), size - 1, axis=1)
    keep = (keys > kth) & real
    return keep.at[0].set(real[0]).astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("num_samples", "width", "mesh"))
def _masks(key, counts, *, num_samples, width, mesh):
    def local(sharded, _):
        keys, counts = sharded
        return jax.vmap(lambda k, d: removal_masks(k, d, num_samples, width))(keys, counts)

    return over_instances(local, (key, counts), (), mesh=mesh)


@functools.partial(
    jax.jit,
    static_argnames=(
        "num_features",
        "feature_selection",
        "kernel_width",
        "top",
        "per_step",
        "mesh",
    ),
)
def _fit(masks, y, ids, *, num_features, feature_selection, kernel_width, top, per_step, mesh):
    def one(args):
        Z, Y, label_ids = args
        label_ids = fitted_labels(Y[0], label_ids, top)
        fits = explain_with_data(
            Z,
            Y[:, label_ids],
            cosine_distance(Z) * 100.0,
            kernel_width=kernel_width,
            num_features=num_features,
            feature_selection=feature_selection,
        )
        return fits, label_ids

    def local(sharded, _):
        # per_step texts' fits at once: each holds D x D moments.
        return map_instances(one, sharded, 1, per_step)

    return over_instances(local, (masks, y, ids), (), mesh=mesh)


@explainer(kind="surrogate", inputs="text", random=True)
def lime_text(
    f: Callable[[list[str]], np.ndarray],
    texts: str | Sequence[str],
    *,
    targets: Targets = None,
    key: Key[ArrayLike, "*n"] | UInt32[ArrayLike, "*n 2"],
    batch_size: int | None = None,
    mesh: Mesh | None = None,
    num_samples: int = 5000,
    num_features: int = 10,
    feature_selection: str = "auto",
    labels: Sequence[int] | None = None,
    top_labels: int | None = None,
    bow: bool = True,
    split_expression: str | Callable[[str], Sequence[str]] = r"\W+",
    mask_string: str = "UNKWORDZ",
    kernel_width: float = 25.0,
) -> Explanation:
    """LIME word attributions of a text classifier, as ``lime``'s ``LimeTextExplainer``.

    Per text: row 0 is the text; each other sample removes ``k ~ U{1..d}`` of its ``d`` words
    (bag of words: every occurrence; positional: replaced by ``mask_string``); samples are
    weighted by ``sqrt(exp(-D²/25²))`` with ``D`` = 100 x cosine distance of the kept-word mask to
    all-on, and a Ridge(alpha=1) surrogate is fitted per label.

    Args:
        f: classifier on a list of strings, returning ``(N,)`` or ``(N, K)`` (e.g. a
            scikit-learn pipeline's ``predict_proba``); called on the host.
        texts: one string or a sequence of ``n`` strings.
        targets: which output to explain: ``None`` (every output: ``values (n, D, K)``), an int,
            ``(n,)`` ints, or a callable on the classifier's outputs (``values (n, D)``); see
            :mod:`xaijax.lime.labels`.
        key: a ``jax.random.key`` or raw ``PRNGKey`` (text ``i`` uses
            ``jax.random.split(key, n)[i]``), or ``(n,)`` keys, one per text.
        batch_size: most strings per classifier call; ``None``: as many as fit in 8 MiB of text
            (at most 8192), the host budget, since the classifier runs on the host.
        mesh: optional :class:`jax.sharding.Mesh` to shard the compiled masks and fits over (the
            classifier calls stay on the host); the values equal the one-device call's.
        num_samples: neighbourhood size ``>= 2``.
        num_features: features in each surrogate, ``>= 1``.
        feature_selection: as in :func:`xaijax.lime.explain_with_data`.
        labels: lime's alias: these output indices, one column each.
        top_labels: lime's alias: the ``min(top_labels, K)`` highest outputs at each text.
        bow: bag-of-words features (else one feature per word position).
        split_expression: a regular expression separating words, or a tokenizer (a callable
            returning the words, as lime accepts); see :func:`tokenize`.
        mask_string: replacement for removed words in positional mode.
        kernel_width: kernel width ``> 0`` on the scaled cosine distance.

    Returns:
        An :class:`Explanation` of kind ``"surrogate"``: ``values`` ``(n, D, L)`` word weights
        (``D`` the padded vocabulary size, padding 0; ``(n, D)`` for one target),
        ``base_values`` the intercepts; ``extras``: ``feature_labels`` ``(n, D)`` words (``""``
        padding), ``num_words``, ``intercept``, ``score``, ``local_pred``, ``labels``,
        ``selected``, ``prediction``.

    Raises:
        TypeError: for texts that are not strings, arguments of the wrong type, or ``targets``
            with ``labels``/``top_labels``.
        ValueError: on empty texts, options out of range, a text too long to fit (the cost
            named), a classifier that fails or returns the wrong shape, or NaN/inf outputs.

    References:
        Ribeiro, Singh & Guestrin, "Why Should I Trust You?": Explaining the Predictions of Any
        Classifier, KDD 2016.

    Example:
        >>> import jax, numpy as np
        >>> def f(docs):
        ...     p = np.array([0.9 if "good" in d else 0.2 for d in docs])
        ...     return np.stack([1 - p, p], axis=1)
        >>> exp = lime_text(f, "a good movie", targets=1, key=jax.random.key(0), num_samples=200)
        >>> exp.extras["feature_labels"][int(abs(exp.values).argmax())]
        np.str_('good')
    """
    single = isinstance(texts, str)
    texts = [texts] if single else _text_list(texts)
    n = len(texts)
    num_samples = contract.check_int("num_samples", num_samples, minimum=2)
    num_features = contract.check_int("num_features", num_features, minimum=1)
    contract.check_choice("feature_selection", feature_selection, FEATURE_SELECTION_METHODS)
    width_k = contract.check_number("kernel_width", kernel_width, minimum=0.0, strict=True)
    if not isinstance(mask_string, str):
        raise TypeError(f"mask_string must be a string; got {type(mask_string).__name__}")
    key = contract.instance_keys(key, n)
    docs = [tokenize(t, split_expression, bool(bow)) for t in texts]
    counts = np.array([len(d.words) for d in docs])
    if np.any(counts == 0):
        empty = np.flatnonzero(counts == 0).tolist()
        raise ValueError(f"texts {empty} contain no words (split by {split_expression!r})")
    if batch_size is None:
        longest = max(len(t.encode()) for t in texts)
        # The host budget: the CPU's bytes per chunk, at most _HOST_STRINGS strings per call.
        batch_size = min(_HOST_STRINGS, default_batch_size((longest,), np.uint8, backend="cpu"))
    batch_size = contract.check_int("batch_size", batch_size, minimum=1)
    mesh = check_mesh(mesh)
    S, dtype = num_samples, float_dtype()
    width = int(-(-counts.max() // _PAD) * _PAD)

    itemsize = np.dtype(dtype).itemsize
    forward = feature_selection == "forward_selection" or (
        feature_selection == "auto" and num_features <= 6
    )

    def fit_bytes(num_labels):
        # The D x D moments, the Cholesky factor and the selection's working copies; forward
        # selection sweeps one more copy per label.
        return itemsize * width * width * (4 + (num_labels if forward else 0))

    _check_fit_size(fit_bytes(1), counts, width)  # before the classifier runs
    probe = _classify(f, texts[:1], 0)  # the output shape, before anything compiles
    K = None if probe.ndim == 1 else probe.shape[1]
    plan = resolve_labels(targets, labels, top_labels, n, K)
    if plan.score is not None:
        check_target_fn(plan.score, jax.ShapeDtypeStruct((2,) + probe.shape[1:], dtype))
    ids = plan.ids if plan.ids is not None else np.zeros((n, 1), np.int32)
    one_fit = fit_bytes(plan.top or ids.shape[1])
    _check_fit_size(one_fit, counts, width)
    # Texts per group: their masks and outputs, num_samples rows each, within batch_size rows.
    group = max(1, batch_size // S, 1 if mesh is None else mesh.devices.size)
    per_step = default_batch_size((S * width + one_fit // itemsize,), dtype)

    parts, finite, predictions = [], np.ones(n, bool), []
    for start in range(0, n, group):
        rows = slice(start, min(n, start + group))
        masks = _masks(key[rows], jnp.asarray(counts[rows]), num_samples=S, width=width, mesh=mesh)
        host = np.asarray(masks) > 0
        y = _neighbourhood_outputs(f, docs[rows], host, bool(bow), mask_string, batch_size)
        if plan.score is not None:
            flat = jnp.asarray(y.reshape((-1,) + y.shape[2:]), dtype)
            y = np.asarray(plan.score(flat), dtype).reshape(len(y), S)
        ok = np.isfinite(y).reshape(len(y), -1).all(axis=1)
        finite[rows] = ok
        # A text with non-finite outputs is reported (pack_fits), its fit skipped.
        y = np.where(ok[:, None, None], y.reshape(len(y), S, -1), 0.0).astype(dtype)
        predictions.append(y[:, 0, :])
        parts.append(
            contract.call(
                _fit,
                masks.astype(dtype),
                jnp.asarray(y),
                jnp.asarray(ids[rows]),
                num_features=num_features,
                feature_selection=feature_selection,
                kernel_width=width_k,
                top=plan.top,
                per_step=per_step,
                mesh=mesh,
            )
        )
    fits = LimeFit(*(np.concatenate([np.asarray(p[0][i]) for p in parts]) for i in range(5)))
    label_ids = np.concatenate([np.asarray(p[1]) for p in parts])
    words = np.array([list(d.words) + [""] * (width - len(d.words)) for d in docs], dtype=str)
    return pack_fits(
        fits,
        label_ids,
        np.concatenate(predictions),
        finite,
        plan=plan,
        data=np.array(texts, dtype=object),
        single=single,
        method="lime_text",
        feature_names=None,
        extras={"feature_labels": words, "num_words": counts},
    )


def _check_fit_size(fit_bytes: int, counts, width: int) -> None:
    if fit_bytes > _MAX_FIT_BYTES:
        worst = int(np.argmax(counts))
        raise ValueError(
            f"texts[{worst}] has {counts[worst]} distinct words: LIME's surrogate fit for it "
            f"needs {width} x {width} matrices, about {fit_bytes / 2**30:.1f} GiB (the fit is "
            f"quadratic in the vocabulary; the limit is {_MAX_FIT_BYTES / 2**30:.0f} GiB). "
            "Explain shorter passages of the text"
        )


def _text_list(texts) -> list[str]:
    if (
        isinstance(texts, (bytes, dict))
        or not isinstance(texts, (Sequence, np.ndarray))
        or np.ndim(texts) != 1
    ):
        raise TypeError(
            f"texts must be a string or a sequence of strings; got {type(texts).__name__}"
        )
    texts = list(texts)
    if not all(isinstance(t, str) for t in texts):
        bad = next(t for t in texts if not isinstance(t, str))
        raise TypeError(
            f"texts must be a string or a sequence of strings; got an item of type "
            f"{type(bad).__name__} ({bad!r})"
        )
    if not texts:
        raise ValueError("texts must hold at least one string; got an empty sequence")
    return texts


def _classify(f, strings: list[str], first: int) -> np.ndarray:
    """``f`` on a list of strings as a float array ``(N,)`` or ``(N, K)``, failures named."""
    try:
        out = f(strings)
    except Exception as err:
        raise ValueError(
            f"f (the classifier) failed on {len(strings)} strings (perturbed texts from row "
            f"{first}): {type(err).__name__}: {err}"
        ) from err
    out = np.asarray(out)
    if np.iscomplexobj(out) or not (np.issubdtype(out.dtype, np.number) or out.dtype == bool):
        raise ValueError(f"f must return real numbers; got dtype {out.dtype}")
    if out.ndim not in (1, 2) or out.shape[0] != len(strings):
        raise ValueError(
            f"f must return (N,) or (N, K) for N input strings; got {out.shape} for "
            f"N={len(strings)}"
        )
    return out.astype(np.float64)


def _neighbourhood_outputs(f, docs, masks, bow, mask_string, batch_size) -> np.ndarray:
    """The classifier on every perturbed text of ``docs``, ``(g, S[, K])``: strings are built and
    classified ``batch_size`` at a time."""
    g, S = masks.shape[:2]
    total = g * S
    out = None
    for start in range(0, total, batch_size):
        rows = range(start, min(total, start + batch_size))
        strings = []
        for i in sorted({r // S for r in rows}):
            lo, hi = max(start, i * S), min(rows.stop, (i + 1) * S)
            strings += _strings(docs[i], masks[i, lo - i * S : hi - i * S], bow, mask_string)
        y = _classify(f, strings, start)
        if out is None:
            out = np.empty((total,) + y.shape[1:])
        elif y.shape[1:] != out.shape[1:]:
            raise ValueError(
                f"f must return the same output shape for every call; got {y.shape[1:]} after "
                f"{out.shape[1:]}"
            )
        out[rows.start : rows.stop] = y
    return out.reshape((g, S) + out.shape[1:])
