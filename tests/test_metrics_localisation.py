"""Localisation and effective complexity against Quantus 0.6 on the same attributions and masks.

Quantus imports torchvision through zennit, which is absent here: ``gradcam_standin.install()``
runs before Quantus is imported (tests/gradcam_standin.py). Quantus takes channel-first batches
``(n, 1, H, W)``; ours the maps ``(n, H, W)``. Known answers: a perfect map scores 1, an
inverted one 0, a random one about chance.
"""

import gradcam_standin
import numpy as np
import pytest

from xaijax import metrics

gradcam_standin.install()
import quantus  # noqa: E402

N, H, W = 6, 8, 8
RNG = np.random.default_rng(0)
A = RNG.normal(size=(N, H, W))  # signed maps, no ties
MASKS = np.zeros((N, H, W), bool)
for i, (y, x, s) in enumerate([(0, 0, 3), (2, 3, 4), (4, 4, 4), (1, 5, 2), (0, 2, 6), (3, 0, 5)]):
    MASKS[i, y : y + s, x : x + s] = True
X = RNG.normal(size=(N, 1, H, W)).astype(np.float32)


def quantus_scores(metric, a=A, masks=MASKS, **kwargs):
    out = metric(
        model=None,
        x_batch=X,
        y_batch=np.zeros(N, int),
        a_batch=a[:, None],
        s_batch=masks[:, None].astype(float),
        channel_first=True,
        **kwargs,
    )
    return np.asarray(out, np.float64)


CASES = [
    ("attribution_localisation", "AttributionLocalisation", {}, {}),
    ("top_k_intersection", "TopKIntersection", {"k": 10}, {"k": 10}),
    (
        "top_k_intersection",
        "TopKIntersection",
        {"k": 7, "concept_influence": True},
        {"k": 7, "concept_influence": True},
    ),
    ("relevance_rank_accuracy", "RelevanceRankAccuracy", {}, {}),
    ("relevance_mass_accuracy", "RelevanceMassAccuracy", {}, {}),
    ("auc", "AUC", {}, {}),
]


@pytest.mark.parametrize("ours, theirs, kwargs, their_kwargs", CASES)
def test_equals_quantus(ours, theirs, kwargs, their_kwargs):
    metric = getattr(quantus, theirs)(disable_warnings=True, **their_kwargs)
    want = quantus_scores(metric)
    got = getattr(metrics, ours)(A, MASKS, **kwargs)
    assert got.shape == (N,)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_auc_with_ties_equals_quantus_and_roc_curve():
    a = np.round(A, 0)  # many ties: the trapezoid of the ROC curve, ranks shared
    want = quantus_scores(quantus.AUC(disable_warnings=True), a=a)
    np.testing.assert_allclose(metrics.auc(a, MASKS), want, atol=1e-12)


def test_focus_equals_quantus_on_mosaics():
    quadrants = np.array([[1, 0, 0, 1], [0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 1, 1]] * 2)[:N]
    metric = quantus.Focus(disable_warnings=True)
    import torch

    want = np.asarray(
        metric(
            model=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(H * W, 2)),  # unused
            x_batch=X,
            y_batch=np.zeros(N, int),
            a_batch=A[:, None],
            custom_batch=quadrants.tolist(),
            channel_first=True,
        ),
        np.float64,
    )
    np.testing.assert_allclose(metrics.focus(A, quadrants.astype(bool)), want, atol=1e-6)
    # channels last: clipped per channel, then summed
    a4 = np.stack([A, -A, 2 * A], axis=-1)
    pos = np.maximum(a4, 0).sum(-1)
    np.testing.assert_allclose(
        metrics.focus(a4, quadrants.astype(bool)), metrics.focus(pos, quadrants.astype(bool))
    )


def test_effective_complexity_equals_quantus():
    a = np.where(np.abs(A) < 0.5, 1e-7, A)
    want = quantus_scores(quantus.EffectiveComplexity(eps=1e-3, disable_warnings=True), a=a)
    np.testing.assert_array_equal(metrics.effective_complexity(a, eps=1e-3), want)
    assert metrics.effective_complexity(np.zeros((2, 5))).tolist() == [0, 0]


def test_perfect_inverted_and_random_maps():
    perfect, inverted = MASKS.astype(float), 1.0 - MASKS
    share = MASKS.reshape(N, -1).mean(1)
    for name in ("attribution_localisation", "relevance_rank_accuracy", "relevance_mass_accuracy"):
        fn = getattr(metrics, name)
        np.testing.assert_allclose(fn(perfect, MASKS), 1.0, err_msg=name)
        if name != "relevance_rank_accuracy":
            np.testing.assert_allclose(fn(inverted, MASKS), 0.0, err_msg=name)
    # an inverted map's top K = |mask| reach into the mask only once K exceeds d - K
    K = MASKS.reshape(N, -1).sum(1)
    np.testing.assert_allclose(
        metrics.relevance_rank_accuracy(inverted, MASKS), np.maximum(0, 2 * K - H * W) / K
    )
    np.testing.assert_allclose(metrics.auc(perfect, MASKS), 1.0)
    np.testing.assert_allclose(metrics.auc(inverted, MASKS), 0.0)
    # the weighted localisation of a uniform map is 1 whatever the object's size (the paper)
    uniform = np.ones((N, H, W))
    np.testing.assert_allclose(metrics.attribution_localisation(uniform, MASKS), share)
    np.testing.assert_allclose(metrics.attribution_localisation(uniform, MASKS, weighted=True), 1.0)
    # random maps: about chance over many draws
    noise = np.random.default_rng(1).random((200, H, W))
    masks = np.broadcast_to(MASKS[1], (200, H, W))
    assert abs(metrics.auc(noise, masks).mean() - 0.5) < 0.03
    assert abs(metrics.relevance_rank_accuracy(noise, masks).mean() - share[1]) < 0.03
    tki = metrics.top_k_intersection(noise, masks, k=16, concept_influence=True)
    assert abs(tki.mean() - 1.0) < 0.1


def test_positive_parts_channels_and_empty_masks():
    a = np.stack([A, A], axis=-1)  # (n, H, W, 2) with (n, H, W) masks
    np.testing.assert_allclose(
        metrics.relevance_mass_accuracy(a, MASKS), metrics.relevance_mass_accuracy(A, MASKS)
    )
    pos = metrics.relevance_mass_accuracy(A, MASKS, positive=True)
    np.testing.assert_allclose(pos, metrics.energy_in_mask(A, MASKS))
    np.testing.assert_allclose(
        metrics.attribution_localisation(A, MASKS, absolute=False), metrics.energy_in_mask(A, MASKS)
    )
    empty = MASKS.copy()
    empty[0] = False
    for name in ("attribution_localisation", "top_k_intersection", "auc"):
        scores = getattr(metrics, name)(A, empty)
        assert np.isnan(scores[0]) and np.isfinite(scores[1:]).all(), name


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="masks"):
        metrics.auc(A, MASKS[:, :4])
    with pytest.raises(TypeError, match="masks"):
        metrics.auc(A, np.full(MASKS.shape, "x"))
    with pytest.raises(ValueError, match="k must"):
        metrics.top_k_intersection(A, MASKS, k=0)
    with pytest.raises(ValueError, match="quadrants"):
        metrics.focus(A, np.ones((N, 3), bool))
    with pytest.raises(ValueError, match="attributions"):
        metrics.relevance_rank_accuracy(np.where(MASKS, np.nan, A), MASKS)
    with pytest.raises(ValueError, match="eps"):
        metrics.effective_complexity(A, eps=-1.0)
