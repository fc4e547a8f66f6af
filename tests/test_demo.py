"""The README's main job, at a tiny size, and the figures it writes."""

import json

import numpy as np

import xaijax as xj
from xaijax import cli, plots


def test_demo_quick_writes_results_and_figures(tmp_path):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--quick", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["versions"]["jax"] and results["seed"] == 0
    assert results["breast_cancer"]["test_accuracy"] > 0.85
    for gap in results["breast_cancer"]["local_accuracy_gap"].values():
        assert gap < 1e-4
    errors = results["diabetes"]["mean_abs_error_vs_exact"]
    assert max(errors.values()) < 0.2 * results["diabetes"]["mean_abs_exact_value"]
    assert results["host_linear_model"]["max_abs_diff_kernel_vs_linear_shap"] < 1e-4
    for name in (
        "breast_cancer_bar.png",
        "breast_cancer_waterfall.png",
        "diabetes_estimates_vs_exact.png",
    ):
        assert (out / name).stat().st_size > 5000
    shapes = results["synthetic_shapes"]["scores"]
    assert {"Grad-CAM", "integrated gradients", "random (baseline)"} <= set(shapes)
    for sc in shapes.values():
        assert 0.0 <= sc["pointing_game"] <= 1.0 and 0.0 <= sc["deletion_auc"] <= 1.0
    assert (out / "shapes_methods.png").stat().st_size > 5000
    page = (out / "index.html").read_text()
    assert "shapes_methods.png" in page and "pointing game" in page
    saved = xj.Explanation.load(out / "breast_cancer_kernel_shap")
    assert saved.values.shape == (5, 30, 2)


def test_plots_render(tmp_path):
    exp = xj.Explanation(
        np.array([[0.5, -1.0, 0.2]]),
        np.array([0.1]),
        np.ones((1, 3)),
        feature_names=["a", "b", "c"],
        method="demo",
    )
    for i, fig in enumerate(
        [
            plots.bar(exp),
            plots.waterfall(exp[0], max_display=2),
            plots.compare(exp.values, {"same": exp.values}),
        ]
    ):
        path = tmp_path / f"{i}.png"
        fig.savefig(path)
        assert path.stat().st_size > 1000
    try:
        plots.waterfall(exp)
    except ValueError as err:
        assert "one instance" in str(err)
    else:
        raise AssertionError("waterfall of a batch must raise")
