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
    assert 0.0 <= results["breast_cancer"]["lime"]["top5_overlap_with_kernel_shap"] <= 1.0
    assert len(set(results["breast_cancer"]["lime"]["sp_lime_picks"])) == 3
    assert results["sentiment_text"]["top_word_is_a_sentiment_word"] >= 2 / 3
    view = (out / "text_tokens.html").read_text()
    assert view.count("<span") >= 5 and view in (out / "index.html").read_text()
    shapes = results["synthetic_shapes"]["scores"]
    assert {"Grad-CAM", "integrated gradients", "LIME (SLIC)", "random (baseline)"} <= set(shapes)
    for sc in shapes.values():
        assert 0.0 <= sc["pointing_game"] <= 1.0 and 0.0 <= sc["deletion_auc"] <= 1.0
    assert (out / "shapes_methods.png").stat().st_size > 5000
    assert_report_reads_well(out, results)
    saved = xj.Explanation.load(out / "breast_cancer_kernel_shap")
    assert saved.values.shape == (5, 30, 2)


def assert_report_reads_well(out, results):
    """index.html: every figure shown under a caption saying what it shows; tables, no dumps."""
    import html
    import re

    page = (out / "index.html").read_text()
    pngs = sorted(p.name for p in out.glob("*.png"))
    for name in (
        "breast_cancer_force.png",
        "breast_cancer_decision.png",
        "breast_cancer_heatmap.png",
        "breast_cancer_scatter.png",
        "shapes_cam.png",
        "shapes_gradients.png",
        "shapes_perturbation.png",
    ):
        assert name in pngs
    shown = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(shown) == pngs
    captions = [html.unescape(c) for c in re.findall(r"<figcaption>(.*?)</figcaption>", page)]
    assert len(captions) == len(pngs)
    for caption in captions:
        assert not caption.endswith(".png") and len(caption.split()) >= 8, caption
    recorded = {f["file"]: f["caption"] for f in results["figures"]}
    assert set(recorded) == set(pngs)
    # Settings and versions in tables, not a JSON dump.
    assert "<pre>" not in page and '{"' not in page
    assert re.search(r"<td>jax</td><td[^>]*>" + re.escape(results["versions"]["jax"]), page)
    assert re.search(r"<td>seed</td><td[^>]*>0</td>", page)
    assert "pointing game" in page and "deletion AUC (lower better)" in page


def test_report_tables_and_captions(tmp_path):
    from xaijax.cli.report import write_report

    (tmp_path / "a.png").write_bytes(b"png")
    (tmp_path / "stray.png").write_bytes(b"png")
    results = {
        "seed": 3,
        "quick": True,
        "versions": {"jax": "9.9"},
        "diabetes": {"mean_abs_error_vs_exact": {"kernel_shap": 0.0123456}},
        "figures": [{"file": "a.png", "caption": "what a shows", "section": "diabetes"}],
    }
    page = open(write_report(str(tmp_path), results)).read()
    assert '<td>kernel shap</td><td class="num">0.012</td>' in page
    assert "<figcaption>what a shows</figcaption>" in page
    # A figure the demo did not describe is still shown, named by its file.
    assert "<figcaption>stray.png</figcaption>" in page
    assert page.index("what a shows") < page.index("Other figures") < page.index("stray.png")


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


def test_explain_command_on_a_pickled_sklearn_model(tmp_path, capsys):
    import pickle

    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4)).astype(np.float32)
    clf = LogisticRegression().fit(X, (X[:, 0] - X[:, 2] > 0).astype(int))
    with open(tmp_path / "model.pkl", "wb") as fh:
        pickle.dump(clf, fh)
    np.savez(tmp_path / "data.npz", X=X, feature_names=np.array(["a", "b", "c", "d"]))
    out = tmp_path / "out"
    argv = [
        "explain",
        "--model",
        str(tmp_path / "model.pkl"),
        "--data",
        str(tmp_path / "data.npz"),
        "--instances",
        "5",
        "--background-size",
        "10",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    exp = xj.Explanation.load(out / "explanation")
    assert exp.values.shape == (5, 4, 2) and exp.feature_names == ("a", "b", "c", "d")
    np.testing.assert_allclose(
        exp.values.sum(1) + exp.base_values, clf.predict_proba(X[:5]), atol=1e-5
    )
    assert (out / "beeswarm.png").stat().st_size > 5000
    # CSV with a header works the same way; errors are one clear line and exit status 2.
    np.savetxt(tmp_path / "data.csv", X, delimiter=",", header="a,b,c,d", comments="")
    assert (
        cli.main(
            argv[:3] + ["--data", str(tmp_path / "data.csv"), "--instances", "2", "--out", str(out)]
        )
        == 0
    )
    assert cli.main(["explain", "--model", "nope.pkl", "--data", str(tmp_path / "data.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
    np.savez(tmp_path / "wide.npz", X=np.ones((3, 5), np.float32))
    assert (
        cli.main(
            [
                "explain",
                "--model",
                str(tmp_path / "model.pkl"),
                "--data",
                str(tmp_path / "wide.npz"),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "error" in capsys.readouterr().err


def test_experiment_command_runs_a_script_and_reports_unknown_names(tmp_path, monkeypatch, capsys):
    scripts = tmp_path / "experiments"
    scripts.mkdir()
    (scripts / "hello.py").write_text("def main(argv):\n    print('hello', argv)\n    return 0\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["experiment"]) == 0
    assert "hello" in capsys.readouterr().out
    assert cli.main(["experiment", "hello", "--quick"]) == 0
    assert "hello ['--quick']" in capsys.readouterr().out
    assert cli.main(["experiment", "nope"]) == 2
    assert "unknown experiment 'nope'" in capsys.readouterr().err


def test_demo_figures_drawn_in_another_process_name_a_failure(tmp_path):
    # The demo draws its figures in a second process; every recorded figure is on disk after
    # wait(), and a figure that cannot be drawn fails the run, named.
    import pytest

    from xaijax.cli.demo import _Figures, _later

    results = {}
    figures = _Figures(str(tmp_path), results)
    exp = xj.Explanation(np.ones((2, 3)), np.zeros(2), np.ones((2, 3)))
    figures.save(_later(plots.bar, exp), "ok.png", caption="c", section="s")
    figures.save(_later(plots.bar, "not an explanation"), "bad.png", caption="c", section="s")
    with pytest.raises(RuntimeError, match="drawing bad.png failed"):
        figures.wait()
    assert (tmp_path / "ok.png").stat().st_size > 1000
    assert [f["file"] for f in results["figures"]] == ["ok.png", "bad.png"]
