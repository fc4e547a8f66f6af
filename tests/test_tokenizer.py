"""The offline WordPiece tokenizer, the generated text corpora and the text-model recipes.

Oracles: BERT's documented WordPiece example on a hand-made vocabulary; byte-pair merges checked
by hand on a corpus small enough to count; word groups against the words of each text; Shapley
values over words of a transformer against a brute force over word coalitions.
"""

import itertools
import math

import jax
import numpy as np
import pytest
from same import assert_same

import xaijax as xj
from xaijax.zoo import Tokenizer, build, data, recipes
from xaijax.zoo.tokenizer import SPECIAL_TOKENS
from xaijax.zoo.transformers import DecoderLM, TextTransformer


def test_wordpiece_greedy_longest_match_as_bert():
    # BERT's documented example: "unaffable" -> un ##aff ##able.
    tok = Tokenizer(SPECIAL_TOKENS + ("un", "##aff", "##able", "##a", "a", "##ff", "aff"))
    assert tok.tokenize("unaffable") == ["un", "##aff", "##able"]
    assert tok.tokenize("Aff un") == ["aff", "un"]
    assert tok.tokenize("unx") == ["[UNK]"]  # a word with a missing piece is one [UNK]


def test_train_merges_counted_by_hand_and_deterministic():
    texts = ["low lower lowest", "low low"]
    tok = Tokenizer.train(texts, vocab_size=200, min_frequency=2)
    # Words: low x3, lower x1, lowest x1. Pair (l, ##o) and (##o, ##w) occur 5 times each;
    # the alphabetical tie-break merges (##o, ##w) first, then (l, ##ow); then (low, ##e)
    # occurs twice (lower, lowest); every other pair once: below min_frequency, training stops.
    added = tok.vocab[len(SPECIAL_TOKENS) :]
    chars = sorted({"l", "##o", "##w", "##e", "##r", "##s", "##t"})
    assert list(added[: len(chars)]) == chars
    assert added[len(chars) :] == ("##ow", "low", "lowe")
    assert tok.tokenize("lowest") == ["lowe", "##s", "##t"]
    assert Tokenizer.train(texts, vocab_size=200) == tok


def test_encode_word_ids_padding_and_groups():
    tok = Tokenizer.train(["the film was great", "the film was dull"] * 3, vocab_size=40)
    enc = tok.encode(["the film was greatest", "dull", ""])
    assert enc.ids.shape == (3, 8) and enc.ids.dtype == np.int32
    assert enc.tokens[0][4:] == ["great", "##e", "##s", "##t"]
    assert enc.word_ids[1].tolist() == [-1, 0, -1, -1, -1, -1, -1, -1]
    assert enc.ids[2].tolist() == [tok.cls_id] + [tok.pad_id] * 7
    assert enc.lengths.tolist() == [8, 2, 1]
    groups = enc.word_groups()
    for i, words in enumerate(enc.words):
        # every word's sub-tokens share its index; specials and padding are group len(words)
        assert set(groups[i].tolist()) == set(range(len(words) + 1))
        assert (groups[i][enc.word_ids[i] < 0] == len(words)).all()
    assert tok.decode(enc.ids[0]) == "the film was greatest"


def test_encode_max_len_truncation_and_errors(tmp_path):
    tok = Tokenizer.train(["a b c d e f"] * 2)
    with pytest.raises(ValueError, match=r"texts\[1\] has 7 tokens, more than max_len=4"):
        tok.encode(["a", "a b c d e f"], max_len=4)
    enc = tok.encode(["a b c d e f"], max_len=4, truncate=True, add_sep=True)
    assert enc.tokens[0] == ["[CLS]", "a", "b", "[SEP]"] and enc.words[0] == ["a", "b"]
    assert enc.ids.shape == (1, 4)
    with pytest.raises(TypeError, match="texts must be"):
        tok.encode([1, 2])
    with pytest.raises(ValueError, match="max_len must leave room"):
        tok.encode(["a"], max_len=1)
    with pytest.raises(ValueError, match="texts is empty"):
        Tokenizer.train([])
    with pytest.raises(ValueError, match="vocab_size 6 is smaller"):
        Tokenizer.train(["abc"], vocab_size=6)
    with pytest.raises(ValueError, match="must start with the special tokens"):
        Tokenizer(("a", "b"))
    tok.save(tmp_path / "vocab.json")
    assert Tokenizer.load(tmp_path / "vocab.json") == tok


def test_negation_corpus_needs_word_order():
    texts, labels = data.negation_corpus(600, seed=0)
    assert abs(labels.mean() - 0.5) < 0.1
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    # A bag of words cannot tell "not surprisingly , the film was great" (1) from "the film was
    # not great" (0) beyond what the words alone say.
    vec = CountVectorizer(token_pattern=r"[^\s]+")
    Xb = vec.fit_transform(texts)
    clf = LogisticRegression(max_iter=2000).fit(Xb[:450], labels[:450])
    assert clf.score(Xb[450:], labels[450:]) < 0.9


def test_agreement_corpus_verbs_agree_with_the_subject():
    texts, plural = data.agreement_corpus(200, seed=3)
    singular = {"is", "was", "seems"}
    for text, p in zip(texts, plural, strict=True):
        verb = text.split()[-3]
        assert (verb not in singular) == bool(p), text


@pytest.fixture(scope="module")
def classifier():
    return recipes.text_classifier("negation", n=400, epochs=25, dim=16, depth=1, seed=1)


def test_text_classifier_learns_negation(classifier):
    assert classifier.accuracy > 0.95
    assert classifier.losses[-1] < classifier.losses[0]
    small = dict(n=80, epochs=2, dim=8, depth=1, seed=3)
    a, b = (
        recipes.text_classifier("negation", **small),
        recipes.text_classifier("negation", **small),
    )
    assert_same(a.model(a.ids), b.model(b.ids))
    with pytest.raises(ValueError, match="task must be one of"):
        recipes.text_classifier("parity")


def test_language_model_learns_agreement():
    task = recipes.language_model(n=400, epochs=15, dim=16, depth=1, seed=0)
    tok = task.tokenizer
    correct = []
    for text, plural in zip(task.texts[:40], task.labels[:40], strict=True):
        words = text.split()
        prefix = tok.encode([" ".join(words[:-3])], add_cls=False, max_len=task.model.max_len)
        logits = np.asarray(task.model(prefix.ids))[0, prefix.lengths[0] - 1]
        is_, are = tok.encode(["is are"], add_cls=False).ids[0, :2]
        # the verb set is random; compare the two forms of "to be" present in the vocabulary
        correct.append((logits[are] > logits[is_]) == bool(plural))
    assert np.mean(correct) > 0.8


def _word_model(vocab_size, seed=0):
    return build(
        lambda rngs: TextTransformer(
            vocab_size, 2, max_len=10, dim=8, depth=1, heads=2, mlp_dim=16, rngs=rngs
        ),
        seed=seed,
    )


def test_word_shapley_equals_brute_force_over_word_coalitions():
    tok = Tokenizer.train(["the film was great", "the film was dull"] * 3, vocab_size=40)
    enc = tok.encode(["the film was greatest", "dull film"], max_len=10)
    model = _word_model(tok.vocab_size)
    masker = xj.maskers.token(tok.mask_id, keep=tok.special_ids)
    groups = enc.word_groups()
    exp = xj.exact_shapley(model, enc.ids, masker=masker, groups=groups, targets=1)
    kern = xj.kernel_shap(
        model, enc.ids, masker=masker, groups=groups, targets=1, key=jax.random.key(0)
    )
    for i, words in enumerate(enc.words):
        W = len(words)

        def v(S, i=i, W=W):
            ids = enc.ids[i].copy()
            hidden = np.isin(enc.word_ids[i], [w for w in range(W) if w not in S])
            ids[hidden] = tok.mask_id
            return float(np.asarray(model(ids[None]))[0, 1])

        phi = np.zeros(W)
        for w in range(W):
            others = [u for u in range(W) if u != w]
            for r in range(W):
                for S in itertools.combinations(others, r):
                    weight = math.factorial(r) * math.factorial(W - r - 1) / math.factorial(W)
                    phi[w] += weight * (v(set(S) | {w}) - v(set(S)))
        np.testing.assert_allclose(np.asarray(exp.values[i, :W]), phi, atol=2e-5)
        np.testing.assert_allclose(np.asarray(kern.values[i, :W]), phi, atol=2e-5)
        # the specials-and-padding group never changes: exactly 0
        assert float(exp.values[i, W]) == 0.0 and float(kern.values[i, W]) == 0.0


def test_token_masker_keep_validation():
    with pytest.raises(TypeError, match="keep must be int token ids"):
        xj.maskers.token(4, keep=("a",))
    assert xj.maskers.token(4, keep=0).keep == (0,)


def test_decoder_lm_runs_on_encoded_prompts():
    tok = Tokenizer.train(data.agreement_corpus(50)[0], vocab_size=64)
    enc = tok.encode(["the keys near the door"], add_cls=False, max_len=12)
    lm = build(lambda rngs: DecoderLM(tok.vocab_size, max_len=12, dim=8, depth=1, rngs=rngs))
    assert lm(enc.ids).shape == (1, 12, tok.vocab_size)


def test_special_tokens_in_text_and_lime_over_words_with_mask(classifier):
    tok = classifier.tokenizer
    enc = tok.encode(["the [MASK] was Great [PAD]"])
    assert enc.tokens[0] == ["[CLS]", "the", "[MASK]", "was", "great", "[PAD]"]
    assert enc.ids[0, 2] == tok.mask_id and enc.ids[0, 5] == tok.pad_id
    # LIME over words, hidden words replaced by [MASK] (positional features)
    texts = classifier.texts[:2]
    p = classifier.predict_proba(texts)
    np.testing.assert_allclose(
        p, np.asarray(jax.nn.softmax(classifier.model(classifier.ids[:2]))), atol=1e-6
    )
    exp = xj.lime_text(
        classifier.predict_proba, texts, key=jax.random.key(0), targets=1, bow=False,
        mask_string="[MASK]", num_samples=300,
    )  # fmt: skip
    # the surrogate's prediction at the text itself is close to the model's
    assert np.abs(np.asarray(exp.extras["local_pred"]).ravel() - p[:, 1]).max() < 0.35
