"""LIME text and SP-LIME, checked against the `lime` package's tokenizer and greedy pick."""

import jax
import numpy as np
import pytest
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


@pytest.mark.parametrize("bow", [True, False])
def test_tokenize_and_removal_match_lime(bow):
    rng = np.random.default_rng(0)
    for text in TEXTS:
        ref = IndexedString(text, bow=bow)
        doc = tokenize(text, bow=bow)
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


def test_bad_input_raises():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="texts"):
        lime_text(classifier, [], key=key)
    with pytest.raises(ValueError, match="no words"):
        lime_text(classifier, ["...", "good"], key=key, num_samples=10)
    with pytest.raises(ValueError, match="NaN"):
        lime_text(lambda d: classifier(d) * np.nan, "good", key=key, num_samples=10)
    with pytest.raises(ValueError, match="f must return"):
        lime_text(lambda d: np.ones((1, 2)), "good", key=key, num_samples=10)


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
