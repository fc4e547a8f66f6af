"""The RISE deletion/insertion reproduction (experiments/rise_deletion_insertion.py) end to end."""

import json

import numpy as np
from experiment_scripts import load_experiment


def test_rise_deletion_insertion_quick(tmp_path):
    module = load_experiment("rise_deletion_insertion")
    argv = ["--quick", "--datasets", "faces", "--seed", "0", "--out", str(tmp_path)]
    assert module.main(argv) == 0
    with open(tmp_path / "results.json") as fh:
        results = json.load(fh)
    for figure in ("scores.png", "maps.png"):
        assert (tmp_path / figure).stat().st_size > 0
    assert results["experiment"] == "rise_deletion_insertion"
    assert results["size"] == "quick" and results["seed"] == 0
    assert set(results["versions"]) >= {"jax", "flax", "numpy", "xaijax"}
    assert results["settings"]["budget"] == 64 and results["timings_s"]
    assert 0.0 <= results["test_accuracy"]["faces"] <= 1.0

    scores, skipped = results["scores"]["faces"], results["skipped"]
    # Every method is scored, or skipped with a reason (an explainer not in this checkout).
    assert set(scores) | {k.split("/", 1)[1] for k in skipped} == set(module.METHODS)
    assert {"grad_cam", "lime_image", "kernel_shap", "random (baseline)"} <= set(scores)
    steps = 51  # 50 deletion / insertion steps and the start
    for s in scores.values():
        for metric in ("deletion", "insertion"):
            assert 0.0 <= s[f"{metric}_auc"] <= 1.0 and s[f"{metric}_sem"] >= 0.0
            curve = np.asarray(s[f"{metric}_curve"])
            assert curve.shape == (steps,) and np.all((curve >= 0.0) & (curve <= 1.0))
            # The AUC is the trapezoidal mean of the mean curve.
            assert np.isclose(s[f"{metric}_auc"], np.trapezoid(curve) / (steps - 1), atol=1e-5)
    # Whatever the map, deletion starts at (and insertion ends on) the unperturbed image, and
    # deletion ends on the all-zero image: the same scores for every method, and the start is the
    # predicted (so the likelier of two) class's probability.
    starts = [s["deletion_curve"][0] for s in scores.values()]
    ends = [s["insertion_curve"][-1] for s in scores.values()]
    zeros = [s["deletion_curve"][-1] for s in scores.values()]
    np.testing.assert_allclose(starts, starts[0], atol=1e-5)
    np.testing.assert_allclose(ends, starts[0], atol=1e-5)
    np.testing.assert_allclose(zeros, zeros[0], atol=1e-5)
    assert starts[0] >= 0.5

    findings = results["findings"]["faces"]
    ranked = set(scores) - {"random (baseline)"}
    assert set(findings["deletion_ranking"]) == set(findings["insertion_ranking"]) == ranked
    for s in scores.values():
        assert len(s["deletion_per_image"]) == len(s["insertion_per_image"]) == 3
    if "rise" in scores:
        assert isinstance(findings["rise_beats_paper_rivals_on_deletion"], bool)
        assert 1 <= findings["rise_rank_insertion"] <= len(ranked)
        paired = findings["rise_vs_each_paired"]
        assert set(paired) == set(scores) - {"rise"}
        for other, entry in paired.items():
            for metric in ("deletion", "insertion"):
                e = entry[metric]
                expected = np.mean(
                    np.subtract(
                        scores["rise"][f"{metric}_per_image"], scores[other][f"{metric}_per_image"]
                    )
                )
                assert np.isclose(e["rise_minus_other"], expected, atol=1e-6)
                assert not (e["rise_better"] and e["rise_worse"])
