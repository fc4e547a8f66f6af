"""The Shapley and LIME experiments run end to end at a tiny size and report sane numbers."""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def experiments():
    sys.path.insert(0, ROOT)
    import experiments.image_lime as image_lime
    import experiments.lime_moons as moons
    import experiments.shap_sample_efficiency as efficiency
    import experiments.shapley_axioms as axioms

    yield axioms, efficiency, moons, image_lime
    sys.path.remove(ROOT)


def test_shapley_axioms_tiny(experiments, tmp_path):
    axioms = experiments[0]
    assert axioms.main(["--instances", "2", "--models", "linear", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["summary"]["local_accuracy"] < 1e-4
    assert results["summary"]["missingness"] == 0.0
    assert results["all_consistent"]
    assert results["axioms"]["linear/exact_shapley"]["symmetry"] < 1e-5
    assert results["versions"]["jax"] and results["seed"] == 0
    assert (tmp_path / "axioms.png").stat().st_size > 5000


def test_sample_efficiency_tiny(experiments, tmp_path):
    efficiency = experiments[1]
    argv = [
        "--panels",
        "A",
        "--methods",
        "Kernel SHAP",
        "--replicates",
        "8",
        "--budgets-a",
        "40,320",
        "--out",
        str(tmp_path),
    ]
    assert efficiency.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    curve = results["panels"]["A"]["curves"]["Kernel SHAP"]
    assert curve[1]["mean_abs_error"] < curve[0]["mean_abs_error"]  # error falls with evaluations
    for c in curve:
        assert c["p10"] <= c["p50"] <= c["p90"]
    assert (tmp_path / "sample_efficiency.png").stat().st_size > 5000


def test_lime_moons_tiny(experiments, tmp_path):
    moons = experiments[2]
    assert moons.main(["--repeats", "2", "--num-samples", "500", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["settings"]["instance"] == 103 and len(results["feature_labels"]) == 2
    assert results["same_sign"]  # our surrogate and lime's agree in direction
    assert results["coef_mean_abs_difference"] < 0.1
    assert (tmp_path / "lime_moons.png").stat().st_size > 5000


def test_image_lime_tiny(experiments, tmp_path):
    image_lime = experiments[3]
    argv = ["--num-samples", "60", "--epochs", "3", "--segments", "20", "--size", "32"]
    argv += ["--out", str(tmp_path)]
    assert image_lime.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert 10 <= results["num_segments"] <= 40
    assert 0.05 < results["mean_fraction_hidden"] < 0.4  # about 20% of segments hidden
    curve = results["p_face_as_top_segments_are_hidden"]
    assert all(0.0 <= p <= 1.0 for p in curve)
    assert (tmp_path / "image_lime_steps.png").stat().st_size > 5000
