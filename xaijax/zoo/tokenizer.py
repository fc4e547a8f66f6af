"""An offline WordPiece tokenizer: a vocabulary learned from a corpus, nothing downloaded.

Text models need token ids, and token attributions need to know which sub-tokens make a word.
:class:`Tokenizer` learns its vocabulary from the texts it is given (byte-pair merges over words,
as WordPiece vocabularies are built) and encodes like BERT's WordPiece: lower-cased words and
punctuation, each word split greedily into the longest pieces in the vocabulary, continuation
pieces written ``##piece``. Five special tokens have fixed ids: ``[PAD]`` 0, ``[UNK]`` 1,
``[CLS]`` 2, ``[SEP]`` 3, ``[MASK]`` 4.

:meth:`Tokenizer.encode` returns an :class:`Encoding`: padded ids ``(n, L)`` and, for each position,
the word it belongs to (``word_ids``, ``-1`` for special and padding positions), so that
:meth:`Encoding.word_groups` gives the ``groups=`` map of the Shapley explainers (one group per
word, sub-tokens together).

Example:
    >>> tok = Tokenizer.train(["the film was great", "the film was dull"] * 3, vocab_size=40)
    >>> enc = tok.encode(["the film was greatest"])
    >>> enc.tokens[0]
    ['[CLS]', 'the', 'film', 'was', 'great', '##e', '##s', '##t']
    >>> enc.word_ids[0].tolist()
    [-1, 0, 1, 2, 3, 3, 3, 3]
"""

from __future__ import annotations

import collections
import dataclasses
import json
import re
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

__all__ = ["SPECIAL_TOKENS", "Encoding", "Tokenizer"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
# Special tokens written in a text stay one token (LIME's mask_string="[MASK]" hides a word).
_WORDS = re.compile(r"\[(?:PAD|UNK|CLS|SEP|MASK)\]|\w+|[^\w\s]")


class Encoding(NamedTuple):
    """Encoded texts: ids and the words behind them.

    Attributes:
        ids: ``(n, L)`` int32 token ids, padded with the pad id (0).
        word_ids: ``(n, L)`` int32, the index of the word each position belongs to in its text,
            ``-1`` for ``[CLS]``, ``[SEP]`` and padding.
        tokens: the token strings of each text (without padding).
        words: the words of each text.
        lengths: ``(n,)`` the number of non-padding positions.
    """

    ids: np.ndarray
    word_ids: np.ndarray
    tokens: list[list[str]]
    words: list[list[str]]
    lengths: np.ndarray

    def word_groups(self) -> np.ndarray:
        """``(n, L)`` group ids for ``groups=``: word ``w`` of a text is group ``w`` (its
        sub-tokens together); special and padding positions form one more group, after the
        words (with :func:`xaijax.maskers.token`'s ``keep`` holding the special ids it is a
        dummy feature and gets exactly 0).

        Example:
            >>> tok = Tokenizer.train(["a b", "a c"])
            >>> tok.encode(["a b", "c"]).word_groups().tolist()
            [[2, 0, 1], [1, 0, 1]]
        """
        groups = self.word_ids.copy()
        num_words = np.array([len(w) for w in self.words])
        rows, cols = np.nonzero(groups < 0)
        groups[rows, cols] = num_words[rows]
        return groups


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    """A WordPiece tokenizer over a fixed vocabulary (special tokens first, ids 0-4).

    Build one with :meth:`train` on a corpus, or from a saved vocabulary with :meth:`load`.

    Attributes:
        vocab: the token strings; a token's id is its index.
        lowercase: whether text is lower-cased before it is split.
    """

    vocab: tuple[str, ...]
    lowercase: bool = True

    def __post_init__(self):
        if tuple(self.vocab[: len(SPECIAL_TOKENS)]) != SPECIAL_TOKENS:
            raise ValueError(f"vocab must start with the special tokens {SPECIAL_TOKENS}")
        if len(set(self.vocab)) != len(self.vocab):
            raise ValueError("vocab has repeated tokens")
        object.__setattr__(self, "_ids", {t: i for i, t in enumerate(self.vocab)})

    pad_id = 0
    unk_id = 1
    cls_id = 2
    sep_id = 3
    mask_id = 4
    special_ids = (0, 1, 2, 3, 4)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def train(
        cls,
        texts: Sequence[str],
        *,
        vocab_size: int = 512,
        min_frequency: int = 2,
        lowercase: bool = True,
    ) -> Tokenizer:
        """Learn a vocabulary from ``texts``: every character seen (word-initial and ``##``
        continuation), then byte-pair merges of the most frequent adjacent pieces (counted over
        word occurrences; ties broken alphabetically, so the same texts give the same vocabulary)
        until ``vocab_size`` tokens or no pair occurs ``min_frequency`` times.

        Raises:
            ValueError: ``texts`` empty or not strings, ``vocab_size`` too small for the special
                tokens and the characters, ``min_frequency < 1``.
        """
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a sequence of strings")
        if len(texts) == 0:
            raise ValueError("texts is empty: nothing to learn a vocabulary from")
        if int(min_frequency) < 1:
            raise ValueError(f"min_frequency must be >= 1; got {min_frequency}")
        counts = collections.Counter(
            w.lower() if lowercase else w
            for t in texts
            for w in _split(t)
            if w not in SPECIAL_TOKENS
        )
        words = {w: [w[0]] + ["##" + c for c in w[1:]] for w in counts}
        vocab = list(SPECIAL_TOKENS)
        seen = set(vocab)
        for pieces in words.values():
            for p in pieces:
                if p not in seen:
                    seen.add(p)
                    vocab.append(p)
        vocab = vocab[: len(SPECIAL_TOKENS)] + sorted(vocab[len(SPECIAL_TOKENS) :])
        if vocab_size < len(vocab):
            raise ValueError(
                f"vocab_size {vocab_size} is smaller than the special tokens and characters of "
                f"the corpus ({len(vocab)})"
            )
        while len(vocab) < vocab_size:
            pairs = collections.Counter()
            for w, pieces in words.items():
                for a, b in zip(pieces, pieces[1:], strict=False):
                    pairs[a, b] += counts[w]
            if not pairs:
                break
            (a, b), n = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
            if n < min_frequency:
                break
            merged = a + b[2:]
            for w, pieces in words.items():
                i, out = 0, []
                while i < len(pieces):
                    if i + 1 < len(pieces) and pieces[i] == a and pieces[i + 1] == b:
                        out.append(merged)
                        i += 2
                    else:
                        out.append(pieces[i])
                        i += 1
                words[w] = out
            if merged not in seen:
                seen.add(merged)
                vocab.append(merged)
        return cls(tuple(vocab), lowercase)

    def words(self, text: str) -> list[str]:
        """The words and punctuation of ``text`` (lower-cased when :attr:`lowercase`); a special
        token written in the text (``"[MASK]"``) is one word, kept as it is."""
        words = _split(text)
        return [w if w in SPECIAL_TOKENS or not self.lowercase else w.lower() for w in words]

    def word_pieces(self, word: str) -> list[str]:
        """Greedy longest-match WordPiece split of one word; ``[UNK]`` if a piece is missing."""
        if word in SPECIAL_TOKENS:
            return [word]
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self._ids:
                    break
                end -= 1
            if end == start:
                return ["[UNK]"]
            pieces.append(piece)
            start = end
        return pieces

    def tokenize(self, text: str) -> list[str]:
        """The token strings of ``text`` (no special tokens)."""
        return [p for w in self.words(text) for p in self.word_pieces(w)]

    def encode(
        self,
        texts: str | Sequence[str],
        *,
        max_len: int | None = None,
        add_cls: bool = True,
        add_sep: bool = False,
        truncate: bool = False,
    ) -> Encoding:
        """Encode texts to padded ids ``(n, L)`` with their word map.

        ``L`` is ``max_len`` when given (the model's maximum length), else the longest text.
        A text longer than ``max_len`` raises unless ``truncate=True``, which keeps its first
        ``max_len`` positions (the ``[SEP]``, if asked for, stays last). An empty text is only
        its special tokens.

        Raises:
            TypeError: ``texts`` not a string or a sequence of strings.
            ValueError: a text longer than ``max_len`` without ``truncate``; ``max_len`` too
                small for the special tokens.
        """
        if isinstance(texts, str):
            texts = [texts]
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("texts must be a string or a sequence of strings")
        prefix = ["[CLS]"] if add_cls else []
        suffix = ["[SEP]"] if add_sep else []
        if max_len is not None and int(max_len) < len(prefix) + len(suffix) + 1:
            raise ValueError(f"max_len must leave room for one token; got {max_len}")
        all_tokens, all_words, all_word_ids = [], [], []
        for i, text in enumerate(texts):
            words = self.words(text)
            tokens, word_ids = list(prefix), [-1] * len(prefix)
            for w, word in enumerate(words):
                pieces = self.word_pieces(word)
                tokens += pieces
                word_ids += [w] * len(pieces)
            tokens += suffix
            word_ids += [-1] * len(suffix)
            if max_len is not None and len(tokens) > max_len:
                if not truncate:
                    raise ValueError(
                        f"texts[{i}] has {len(tokens)} tokens, more than max_len={max_len}; "
                        "pass truncate=True to keep the first max_len"
                    )
                keep = max_len - len(suffix)
                tokens = tokens[:keep] + suffix
                word_ids = word_ids[:keep] + [-1] * len(suffix)
                words = words[: max(word_ids) + 1] if max(word_ids) >= 0 else []
            all_tokens.append(tokens)
            all_words.append(words)
            all_word_ids.append(word_ids)
        lengths = np.array([len(t) for t in all_tokens], np.int32)
        L = int(max_len) if max_len is not None else int(lengths.max(initial=1))
        ids = np.full((len(all_tokens), L), self.pad_id, np.int32)
        word_ids = np.full((len(all_tokens), L), -1, np.int32)
        for i, (tokens, wids) in enumerate(zip(all_tokens, all_word_ids, strict=True)):
            ids[i, : len(tokens)] = [self._ids.get(t, self.unk_id) for t in tokens]
            word_ids[i, : len(wids)] = wids
        return Encoding(ids, word_ids, all_tokens, all_words, lengths)

    def decode(self, ids, *, skip_special: bool = True) -> str:
        """The text of one row of ids: pieces joined, ``##`` continuations glued to their word."""
        out = []
        for i in np.asarray(ids).reshape(-1).tolist():
            t = self.vocab[int(i)]
            if skip_special and int(i) in self.special_ids:
                continue
            if t.startswith("##") and out:
                out[-1] += t[2:]
            else:
                out.append(t)
        return " ".join(out)

    def convert_ids_to_tokens(self, ids) -> list[str]:
        """The token strings of ids (any shape, flattened)."""
        return [self.vocab[int(i)] for i in np.asarray(ids).reshape(-1).tolist()]

    def save(self, path) -> None:
        """Write the vocabulary as JSON (:meth:`load` reads it back)."""
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"vocab": list(self.vocab), "lowercase": self.lowercase}, f)

    @classmethod
    def load(cls, path) -> Tokenizer:
        """A tokenizer from a file written by :meth:`save`."""
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        return cls(tuple(d["vocab"]), bool(d["lowercase"]))


def _split(text: str) -> list[str]:
    return _WORDS.findall(text)
