"""The LRP faithfulness experiment (experiments/lrp_faithfulness.py) end to end, quick size."""

import json

import numpy as np
from experiment_scripts import load_experiment


def test_lrp_faithfulness_quick(tmp_path):
    module = load_experiment("lrp_faithfulness")
    assert module.main(["--quick", "--seed", "0", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "results.json") as fh:
        results = json.load(fh)
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert results["experiment"] == "lrp_faithfulness" and results["size"] == "quick"
    shapes, text = results["scores"]["shapes"], results["scores"]["text"]
    assert set(shapes) == set(module.IMAGE_METHODS) and set(text) == set(module.TEXT_METHODS)
    for s in shapes.values():
        curve = np.asarray(s["deletion_curve"])
        assert curve.shape == (51,) and 0.0 <= s["deletion_auc"] <= 1.0
        assert np.isclose(s["deletion_auc"], np.trapezoid(curve) / 50, atol=1e-5)
    # Every map deletes down to the same all-zero image and starts from the same image.
    for end in (0, -1):
        ends = [s["deletion_curve"][end] for s in shapes.values()]
        np.testing.assert_allclose(ends, ends[0], atol=1e-5)
    for s in text.values():
        curve = np.asarray(s["deletion_curve"])
        assert curve.shape == (11,) and np.all((curve >= 0) & (curve <= 1))
        assert np.isclose(s["deletion_auc"], np.trapezoid(curve, np.linspace(0, 1, 11)))
    starts = [s["deletion_curve"][0] for s in text.values()]
    np.testing.assert_allclose(starts, starts[0], atol=1e-6)  # the unmasked text for all
    f = results["findings"]
    assert isinstance(f["text"]["attn_lrp_beats_rollout"], bool)
    assert set(f["shapes"]["lrp_beats_sensitivity"]) == {
        m for m in module.IMAGE_METHODS if m.startswith("lrp ")
    }


def test_token_deletion_masks_the_most_relevant_first():
    module = load_experiment("lrp_faithfulness")

    def model(ids):  # the logit of class 1 counts token 7; masking it drops the probability
        ones = (np.asarray(ids) == 7).sum(axis=1).astype(np.float32)
        return np.stack([np.zeros_like(ones), 3.0 * ones], axis=1)

    ids = np.array([[2, 5, 7, 7, 0]])
    rel = np.array([[0.0, 0.1, 0.9, 0.5, 0.0]])
    auc, curve = module.token_deletion(model, ids, np.array([1]), rel, mask_id=4, pad_id=0)
    p = 1 / (1 + np.exp(-np.array([6.0, 3.0, 0.0, 0.0])))  # 0, 1, 2, 3 of 3 tokens masked
    np.testing.assert_allclose(curve[0], np.interp(np.linspace(0, 1, 11), [0, 1/3, 2/3, 1], p),
                               rtol=1e-6)  # fmt: skip
    assert auc[0] < module.token_deletion(model, ids, np.array([1]), -rel, 4, 0)[0][0]
