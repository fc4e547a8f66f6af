"""The CAM reproductions (experiments/cam_localization.py, sanity_checks.py) run end to end."""

import json

import numpy as np
import pytest
from experiment_scripts import load_experiment


def _run(name, tmp_path):
    assert load_experiment(name).main(["--tiny", "--seed", "0", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "results.json") as fh:
        return json.load(fh)


def _common(results, tmp_path, figures):
    assert results["seed"] == 0 and results["size"] == "tiny"
    assert set(results["versions"]) >= {"jax", "flax", "numpy", "xaijax"}
    assert results["settings"] and results["timings_s"]
    for figure in figures:
        assert (tmp_path / figure).stat().st_size > 0


def test_cam_localization(tmp_path):
    results = _run("cam_localization", tmp_path)
    _common(results, tmp_path, ["maps.png", "scores.png"])
    methods = {
        "Grad-CAM", "Grad-CAM++", "HiResCAM", "XGrad-CAM", "LayerCAM", "EigenCAM", "Score-CAM",
        "Ablation-CAM", "saliency", "Integrated Gradients", "LIME (SLIC)", "Kernel SHAP (SLIC)",
        "centre (baseline)", "random (baseline)",
    }  # fmt: skip
    scores = results["scores"]
    assert set(scores) == methods
    for s in scores.values():
        assert set(s) == {"pointing_game", "energy_in_mask", "deletion_auc", "insertion_auc"}
        assert all(0.0 <= v <= 1.0 for v in s.values())
    assert scores["Grad-CAM"]["pointing_game"] > scores["random (baseline)"]["pointing_game"]
    assert results["findings"]["grad_cam_pointing_beats_random"]


def test_sanity_checks(tmp_path):
    results = _run("sanity_checks", tmp_path)
    _common(results, tmp_path, ["correlation_vs_layer.png", "maps_by_layer.png"])
    cascading = results["cascading_randomization"]
    layers = cascading["layers"]
    assert layers[0] == "head" and len(layers) == 4
    methods = {"saliency", "Integrated Gradients", "Grad-CAM", "guided backprop", "Guided Grad-CAM"}
    assert set(cascading) - {"layers"} == methods
    for name in methods:
        for kind in ("spearman", "spearman_abs", "ssim_abs"):
            rho = np.asarray(cascading[name][kind])
            assert rho.shape == (len(layers),)
            assert np.all((rho >= -1.0) & (rho <= 1.0))
            assert -1.0 <= results["data_randomization"][name][kind] <= 1.0
    # Before randomisation a map has correlation 1 with itself; randomising every layer lowers it.
    assert cascading["Grad-CAM"]["spearman_abs"][-1] < 1.0
    key = "guided_more_similar_than_grad_cam_and_gradients_after_full_randomization"
    assert isinstance(results["findings"][key], bool)


if __name__ == "__main__":
    pytest.main([__file__])
