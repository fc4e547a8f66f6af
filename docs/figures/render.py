"""Render the README's figure gallery: ``python docs/figures/render.py`` (about 10 s on a CPU).

A logistic regression on scikit-learn's breast-cancer data (standardised), explained in log-odds
by Linear SHAP (the closed form), one figure per kind of plot, feature values shown in the data
set's own units through ``display_data``.
"""

import os

import matplotlib

matplotlib.use("Agg")  # a script writing files; the library itself never sets a backend

import numpy as np  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

import xaijax as xj  # noqa: E402
from xaijax import plots  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    raw = load_breast_cancer()
    mean, std = raw.data.mean(0), raw.data.std(0)
    X = ((raw.data - mean) / std).astype(np.float32)
    clf = LogisticRegression(C=0.1, max_iter=1000).fit(X[:400], raw.target[:400])
    rows = slice(400, 460)
    exp = xj.linear_shap(
        clf.coef_[0], clf.intercept_[0], X[rows], X[:400], feature_names=raw.feature_names
    )
    exp = xj.Explanation(
        **{**exp.__dict__, "output_names": "benign (log-odds)", "method": "Linear SHAP"}
    )
    shown = raw.data[rows]
    figures = {
        "bar": plots.bar(exp),
        "beeswarm": plots.beeswarm(exp),
        "waterfall": plots.waterfall(exp[0], display_data=shown[0]),
        "force": plots.force(exp[0], display_data=shown[0]),
        "scatter": plots.scatter(exp, "worst texture", display_data=shown),
        "heatmap": plots.heatmap(exp),
        "decision": plots.decision(exp, max_display=12),
    }
    for name, fig in figures.items():
        fig.savefig(os.path.join(HERE, f"{name}.png"), dpi=60)
        print("wrote", name)


if __name__ == "__main__":
    main()
