"""The metric agreement experiment (experiments/metric_agreement.py) end to end, quick size."""

import json

import numpy as np
import scipy.stats
from experiment_scripts import load_experiment


def test_metric_agreement_quick(tmp_path):
    module = load_experiment("metric_agreement")
    assert module.main(["--quick", "--seed", "0", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    for figure in ("agreement.png", "scores.png"):
        assert (tmp_path / figure).stat().st_size > 0
    assert results["experiment"] == "metric_agreement" and results["size"] == "quick"
    assert results["explainers"] == list(module.EXPLAINERS)
    assert results["metrics"] == list(module.HIGHER_IS_BETTER)
    E, M = len(module.EXPLAINERS), len(module.HIGHER_IS_BETTER)
    assert len(results["rows"]) == E * M
    tau = np.asarray(results["kendall_tau"])
    assert tau.shape == (M, M) and np.allclose(tau, tau.T) and np.allclose(np.diag(tau), 1.0)
    # the ranks follow each metric's direction: recompute one from the rows
    for m, better in module.HIGHER_IS_BETTER.items():
        means = np.array(
            [next(r["mean"] for r in results["rows"] if r["metric"] == m and r["explainer"] == e)
             for e in results["explainers"]]
        )  # fmt: skip
        want = scipy.stats.rankdata(-means if better else means)
        np.testing.assert_allclose(results["ranks"][m], want, err_msg=m)
        assert sorted(results["ranks"][m]) == sorted(want)
    a, b = results["metrics"].index("road_morf"), results["metrics"].index("road_lerf")
    assert np.isclose(results["findings"]["road_morf_vs_lerf_tau"], tau[a, b])
