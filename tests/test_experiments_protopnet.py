"""The ProtoPNet experiment runs end to end at a tiny size and records both models' accuracy."""

import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_protopnet_experiment_tiny(tmp_path):
    sys.path.insert(0, ROOT)
    try:
        import experiments.protopnet as experiment
    finally:
        sys.path.remove(ROOT)
    argv = [
        "--datasets",
        "shapes",
        "--epochs",
        "2",
        "--n",
        "60",
        "--explain",
        "1",
        "--out",
        str(tmp_path),
    ]
    assert experiment.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    run = results["datasets"]["shapes"]
    for key in ("protopnet_test_accuracy", "plain_cnn_test_accuracy"):
        assert 0.0 <= run[key] <= 1.0
    assert "prototypes.png" in run["figures"] and "explanation_0.png" in run["figures"]
    assert set(run["accuracy_by_stage"]) >= {"warm", "prune+last"}
    # Purity next to accuracy, before and after the pruning step.
    for key in ("purity", "purity_before_pruning"):
        summary = run[key]
        assert 0.0 <= summary["fraction_on_object"] <= 1.0
        assert 0.0 <= summary["class_purity"] <= 1.0
    kept = run["purity"]["num_prototypes"]
    assert kept + len(run["pruned_prototypes"]) == run["purity_before_pruning"]["num_prototypes"]
    assert results["versions"]["jax"]
