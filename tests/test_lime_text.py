"""LIME text and SP-LIME, checked against the `lime` package's tokenizer and greedy pick."""

import re

import jax
import numpy as np
import pytest
from compiles import count_compiles
from lime.lime_text import IndexedString, LimeTextExplainer
from lime.submodular_pick import SubmodularPick
from sklearn.metrics.pairwise import pairwise_distances

from xaijax.core.explanation import Explanation
from xaijax.lime import (
    cosine_distance,
    lime_text,
    removal_masks,
    submodular_pick,
    text_from_mask,
    tokenize,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

TEXTS = [
    "A good movie, a good plot; the acting was good.",
    "Bad acting, but the plot was fine and the music good",
    "nothing here is bad, nothing is great",
]


def regex_tokenizer(text):
    """A tokenizer as users pass one: words and punctuation marks, each a token."""
    return re.findall(r"\w+|[^\w\s]", text)


SPLITS = [r"\W+", r"[ ,;.]+", str.split, regex_tokenizer]


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("bow", [True, False])
def test_tokenize_and_removal_match_lime(bow, split):
    # lime's IndexedString takes a regex or a callable tokenizer (the text between tokens kept
    # as separators); both give the same words, texts and removals here.
    rng = np.random.default_rng(0)
    for text in TEXTS:
        ref = IndexedString(text, bow=bow, split_expression=split)
        doc = tokenize(text, split, bow=bow)
        assert list(doc.tokens) == list(ref.as_list)
        assert list(doc.words) == ref.inverse_vocab
        assert "".join(doc.tokens) == text
        for _ in range(10):
            d = len(doc.words)
            removed = rng.choice(d, size=rng.integers(1, d + 1), replace=False)
            mask = np.ones(d, bool)
            mask[removed] = False
            assert text_from_mask(doc, mask, bow) == ref.inverse_removing(removed)


def test_removal_masks_semantics():
    d, width, S = 7, 16, 4000
    masks = np.asarray(removal_masks(jax.random.key(0), d, S, width))
    assert np.all(masks[0, :d] == 1) and np.all(masks[:, d:] == 0)
    removed = d - masks[1:, :d].sum(axis=1)
    assert removed.min() == 1 and removed.max() == d
    # Removal counts uniform on 1..d (4000 draws: 1/7 each, 3 sigma ~ 0.017).
    np.testing.assert_allclose(np.bincount(removed.astype(int))[1:] / (S - 1), 1 / d, atol=0.02)
    # Given the count, every word is equally likely to go.
    np.testing.assert_allclose((1 - masks[1:, :d]).mean(axis=0), (1 + d) / 2 / d, atol=0.03)
    # LIME's text distance: 100 x cosine distance to the full text, zero rows at distance 1.
    ref = pairwise_distances(masks[:50, :d], masks[:1, :d], metric="cosine").ravel()
    np.testing.assert_allclose(np.asarray(cosine_distance(masks[:50])), ref, atol=1e-6)


def classifier(docs):
    good = np.array([d.count("good") for d in docs], float)
    bad = np.array([("bad" in d) for d in docs], float)
    p = 1.0 / (1.0 + np.exp(-(0.8 * good - 1.5 * bad)))
    return np.stack([1.0 - p, p], axis=1)


def test_lime_text_finds_the_words_and_agrees_with_lime():
    exp = lime_text(classifier, TEXTS, key=jax.random.key(0), num_samples=500, num_features=3)
    assert exp.values.shape == (3, 16, 2)
    ref = LimeTextExplainer(random_state=0)
    for i, text in enumerate(TEXTS):
        e = ref.explain_instance(text, classifier, num_features=3, num_samples=500)
        words = exp.extras["feature_labels"][i]
        ours = words[int(np.argmax(np.abs(np.asarray(exp.values[i, :, 1]))))]
        theirs = e.as_list(1)[0][0]
        assert ours == theirs, (ours, e.as_list(1))
        assert int(np.asarray(exp.extras["selected"])[i, :, 1].sum()) == 3
    assert exp.extras["score"].min() > 0.5
    again = lime_text(classifier, TEXTS, key=jax.random.key(0), num_samples=500, num_features=3)
    np.testing.assert_array_equal(np.asarray(exp.values), np.asarray(again.values))
    one = lime_text(
        classifier,
        TEXTS[1],
        key=jax.random.split(jax.random.key(0), 3)[1:2],
        num_samples=500,
        num_features=3,
    )
    # Same masks and outputs alone as in the batch; forward selection's later picks are near-ties
    # among words with ~0 weight (float32 sums differ with the batch), so compare the top word.
    top = int(np.argmax(np.abs(np.asarray(exp.values[1, :, 1]))))
    assert int(np.argmax(np.abs(np.asarray(one.values[:, 1])))) == top
    np.testing.assert_allclose(one.values[top], exp.values[1][top], rtol=1e-3)


def test_positional_mode_masks_words():
    seen = []

    def spy(docs):
        seen.extend(docs)
        return classifier(docs)

    exp = lime_text(spy, "good good bad", key=jax.random.key(1), num_samples=20, bow=False)
    assert list(exp.extras["feature_labels"][:3]) == ["good", "good", "bad"]
    assert seen[0] == "good good bad"
    assert all(len(s.split(" ")) == 3 for s in seen) and any("UNKWORDZ" in s for s in seen)


def _close(a, b, rtol=1e-5):
    """Float32 agreement relative to the whole result's magnitude, not to single entries."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * max(1e-30, np.abs(b).max()))


def test_callable_tokenizer_agrees_with_lime():
    # Before: a callable split_expression was read as a regex and each text became one word.
    exp = lime_text(
        classifier,
        TEXTS,
        key=jax.random.key(2),
        num_samples=500,
        num_features=3,
        split_expression=regex_tokenizer,
    )
    ref = LimeTextExplainer(split_expression=regex_tokenizer, random_state=0)
    for i, text in enumerate(TEXTS):
        words = list(exp.extras["feature_labels"][i][: exp.extras["num_words"][i]])
        assert words == IndexedString(text, split_expression=regex_tokenizer).inverse_vocab
        assert "," in words and len(words) > 3  # punctuation tokens are words here
        e = ref.explain_instance(text, classifier, num_features=3, num_samples=500)
        ours = words[int(np.argmax(np.abs(np.asarray(exp.values[i, : len(words), 1]))))]
        assert ours == e.as_list(1)[0][0], (ours, e.as_list(1))


def test_targets_forms_against_labels():
    # All features: forward selection's later picks are near-ties among words of ~0 weight,
    # which float32 rounding (one label fitted or two) may order differently.
    kw = dict(key=jax.random.key(4), num_samples=300, feature_selection="none")
    every = lime_text(classifier, TEXTS, labels=(0, 1), **kw)
    one = lime_text(classifier, TEXTS, targets=1, **kw)
    assert one.values.shape == (3, 16) and one.output_names is None
    np.testing.assert_array_equal(one.extras["labels"], [1, 1, 1])
    _close(one.values, every.values[..., 1], rtol=1e-4)
    per = lime_text(classifier, TEXTS, targets=np.array([1, 0, 1]), **kw)
    _close(per.values, every.values[np.arange(3), :, [1, 0, 1]], rtol=1e-4)
    # P(1) - P(0) = 2 P(1) - 1: its surrogate is twice output 1's.
    margin = lime_text(classifier, TEXTS, targets=lambda y: y[:, 1] - y[:, 0], **kw)
    _close(margin.values, 2.0 * one.values, rtol=1e-4)
    # top_labels: lime's argsort(p)[-t:][::-1], clamped to the 2 outputs.
    top = lime_text(classifier, TEXTS, top_labels=9, **kw)
    p = classifier(TEXTS)
    np.testing.assert_array_equal(top.extras["labels"], np.argsort(p, axis=1)[:, ::-1])


def test_results_do_not_depend_on_batch_size():
    calls = []

    def counting(docs):
        calls.append(len(docs))
        return classifier(docs)

    kw = dict(key=jax.random.key(5), num_samples=100, feature_selection="none")
    default = lime_text(counting, TEXTS, **kw)
    for batch_size in (1, 7, 250):
        calls.clear()
        other = lime_text(counting, TEXTS, batch_size=batch_size, **kw)
        assert max(calls) <= batch_size  # strings per classifier call
        assert sum(calls) == 1 + 3 * 100  # the probe, then every sample once
        _close(other.values, default.values, rtol=1e-4)
        _close(other.base_values, default.base_values, rtol=1e-4)


def test_a_huge_vocabulary_is_refused_up_front_naming_the_cost():
    called = []
    text = " ".join(f"w{i}" for i in range(12_000))
    with pytest.raises(ValueError, match=r"12000 distinct words.*12000 x 12000.*GiB"):
        lime_text(lambda d: called.append(d) or classifier(d), text, key=jax.random.key(0))
    assert not called


BAD_OPTIONS = [
    (dict(kernel_width=0.0), ValueError, "kernel_width"),
    (dict(kernel_width=float("nan")), ValueError, "kernel_width"),
    (dict(kernel_width=-25.0), ValueError, "kernel_width"),
    (dict(num_features=0), ValueError, "num_features"),
    (dict(num_samples=2.5), TypeError, "num_samples"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=-5), ValueError, "batch_size"),
    (dict(batch_size=0.5), TypeError, "batch_size"),
    (dict(top_labels=0), ValueError, "top_labels"),
    (dict(top_labels=-1), ValueError, "top_labels"),
    (dict(feature_selection="lars"), ValueError, "feature_selection"),
    (dict(targets=1, labels=(1,)), TypeError, "targets"),
    (dict(targets=2), ValueError, "targets"),
    (dict(split_expression="(unclosed"), ValueError, "split_expression"),
    (dict(split_expression=5), TypeError, "split_expression"),
    (dict(split_expression=lambda t: ["nowhere"]), ValueError, "split_expression"),
    (dict(split_expression=lambda t: t), TypeError, "split_expression"),
]


@pytest.mark.parametrize("options,error,name", BAD_OPTIONS)
def test_options_are_checked_before_compiling(options, error, name):
    with count_compiles() as compiled:
        with pytest.raises(error, match=name):
            lime_text(classifier, TEXTS, key=jax.random.key(0), num_samples=10, **options)
    assert compiled == []


def test_bad_input_raises():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="texts must hold at least one"):
        lime_text(classifier, [], key=key)
    with pytest.raises(TypeError, match="texts must be"):
        lime_text(classifier, [1, 2, 3], key=key)
    with pytest.raises(TypeError, match="texts must be"):
        lime_text(classifier, 42, key=key)
    with pytest.raises(ValueError, match="no words"):
        lime_text(classifier, ["...", "good"], key=key, num_samples=10)
    with pytest.raises(ValueError, match="NaN"):
        lime_text(lambda d: classifier(d) * np.nan, "good", key=key, num_samples=10)
    with pytest.raises(ValueError, match="f must return"):
        lime_text(lambda d: np.ones((1, 2)), "good", key=key, num_samples=10)


def test_classifier_failures_and_nan_are_named_per_text():
    def flaky(docs):
        if len(docs) > 1:
            raise RuntimeError("the tokenizer service went away")
        return classifier(docs)

    with pytest.raises(ValueError, match="f .*failed.*the tokenizer service went away"):
        lime_text(flaky, TEXTS, key=jax.random.key(0), num_samples=10)

    # Removing words keeps the separators: text 1's perturbations are the strings with its 10
    # spaces (texts 0 and 2 have 8 and 6). Finite there only.
    def finite_on_text_1(docs):
        spaces = np.array([d.count(" ") == TEXTS[1].count(" ") for d in docs])
        return np.where(spaces[:, None], classifier(docs), np.nan)

    with pytest.raises(ValueError, match=r"NaN or inf \(instances \[0, 2\]\)"):
        lime_text(finite_on_text_1, TEXTS, key=jax.random.key(0), num_samples=10)


# -- SP-LIME against the reference's greedy on the same explanations -----------------------------
class _FakeExplanation:
    def __init__(self, weights, names):
        self.mode = "classification"
        self._list = [(names[j], w) for j, w in enumerate(weights) if w != 0]

    def available_labels(self):
        return [1]

    def as_list(self, label=1):
        return self._list


class _FakeExplainer:
    def __init__(self, weights, names):
        self.weights, self.names = weights, names

    def explain_instance(self, i, predict_fn, **kwargs):
        return _FakeExplanation(self.weights[i], self.names[i])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_submodular_pick_matches_lime(seed):
    rng = np.random.default_rng(seed)
    n, M = 12, 6
    weights = rng.normal(size=(n, M)) * (rng.random((n, M)) < 0.4)
    names = np.array([[f"w{j}" for j in rng.permutation(9)[:M]] for _ in range(n)])
    exp = Explanation(
        values=weights[:, :, None],
        base_values=np.zeros((n, 1)),
        data=np.zeros((n, M)),
        output_names=("1",),
        extras={"feature_labels": names},
    )
    ref = SubmodularPick(
        _FakeExplainer(weights, names), np.arange(n), None, method="full", num_exps_desired=4
    )
    assert submodular_pick(exp, budget=4).tolist() == ref.V
    # Keyed by feature index when there are no readable labels.
    plain = Explanation(values=np.abs(weights), base_values=np.zeros(n), data=weights)
    idx_names = np.tile(np.array([f"f{j}" for j in range(M)]), (n, 1))
    ref = SubmodularPick(
        _FakeExplainer(weights, idx_names), np.arange(n), None, method="full", num_exps_desired=3
    )
    assert submodular_pick(plain, budget=3).tolist() == ref.V
    with pytest.raises(ValueError, match="budget"):
        submodular_pick(exp, budget=0)
