"""Sample efficiency of Shapley estimators: the SHAP paper's Figure 3.

The estimate of one feature's attribution against the number of coalitions evaluated, as the
10th-90th percentile band over many replicates (different keys), for Kernel SHAP, antithetic
permutation sampling and LIME, with exact Shapley values as the truth, on

* (A) a decision tree that uses all 10 of its features, and
* (B) a decision tree that uses 3 of its 100 features.

The paper's claim: Kernel SHAP reaches the Shapley value with fewer evaluations than sampling
Shapley values, and LIME converges to a different value (it does not estimate Shapley values).
We also report the evaluations each method needs before 90% of replicates are within 10% of the
truth.

    xaijax experiment shap_sample_efficiency [--quick] [--replicates 200] [--out DIR] [--seed 0]

References:
    Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017, Fig. 3.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

import xaijax as xj
from xaijax.cli.runs import save_figure, save_results


def make_problem(panel: str, seed: int):
    """A fitted decision tree (host model), the explained row, background and training rows."""
    from sklearn.tree import DecisionTreeRegressor

    rng = np.random.default_rng(seed)
    M, used = (10, 10) if panel == "A" else (100, 3)
    X = rng.normal(size=(2000, M)).astype(np.float32)
    weights = np.linspace(1.0, 0.4, used)
    y = (np.sin(1.5 * X[:, :used]) * weights).sum(1) + 0.5 * X[:, 0] * X[:, 1 % used]
    tree = DecisionTreeRegressor(max_depth=8, random_state=seed).fit(X[:, :used], y)

    def f(Z):
        # The tree sees only its `used` features; the rest of the 100 are ignored by design.
        return tree.predict(np.asarray(Z)[:, :used])

    x = X[0]
    background = X[1:11]
    return f, x, background, X, used


def truth(f, x, background, used):
    """Exact Shapley values. Ignored features are dummies (exactly 0), so for (B) the game over
    the used features alone gives the rest: enumerate those 2^used coalitions."""
    M = x.shape[0]

    def g(Z):
        full = np.tile(x, (len(Z), 1))
        full[:, :used] = np.asarray(Z)
        return f(full)

    phi = np.zeros(M)
    phi[:used] = np.asarray(xj.exact_shapley(g, x[:used], background[:, :used]).values)
    return phi


def estimates(method, f, x, background, training, budget, key, replicates):
    """``replicates`` independent estimates of all attributions at ~``budget`` coalitions."""
    M = x.shape[0]
    X = np.tile(x, (replicates, 1))  # each row gets its own key inside the explainer
    if method == "Kernel SHAP":
        exp = xj.kernel_shap(f, X, background, key=key, num_samples=budget)
        return np.asarray(exp.values), budget
    if method == "permutation SHAP":
        P = max(1, budget // (2 * M + 1))
        exp = xj.permutation_shap(f, X, background, key=key, num_permutations=P)
        return np.asarray(exp.values), P * (2 * M + 1)
    exp = xj.lime_tabular(
        f, X, training, key=key, num_samples=budget, num_features=M, feature_selection="none"
    )
    return np.asarray(exp.values), budget


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="SHAP paper Figure 3: sample efficiency")
    parser.add_argument("--quick", action="store_true", help="fewer replicates (CPU, minutes)")
    parser.add_argument("--replicates", type=int, default=None)
    parser.add_argument("--panels", default="A,B")
    parser.add_argument("--methods", default="Kernel SHAP,permutation SHAP,LIME")
    parser.add_argument("--budgets-a", default="40,80,160,320,640")
    parser.add_argument("--budgets-b", default="250,500,1000,2000,4000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("runs", "shap_sample_efficiency"))
    args = parser.parse_args(argv)
    replicates = args.replicates or (30 if args.quick else 200)
    key = jax.random.key(args.seed)
    methods = tuple(args.methods.split(","))
    unknown = set(methods) - {"Kernel SHAP", "permutation SHAP", "LIME"}
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}")

    panels = {}
    for panel in args.panels.split(","):
        budgets = [int(b) for b in (args.budgets_a if panel == "A" else args.budgets_b).split(",")]
        f, x, background, training, used = make_problem(panel, args.seed)
        phi = truth(f, x, background, used)
        j = int(np.argmax(np.abs(phi)))
        curves = {}
        for method in methods:
            curve = []
            for b_index, budget in enumerate(budgets):
                start = time.perf_counter()
                k = jax.random.fold_in(key, 1000 * len(method) + b_index)
                values, evaluations = estimates(
                    method, f, x, background, training, budget, k, replicates
                )
                est = values[:, j]
                err = np.abs(est - phi[j])
                curve.append(
                    {
                        "budget": budget,
                        "evaluations": evaluations,
                        "p10": float(np.percentile(est, 10)),
                        "p50": float(np.percentile(est, 50)),
                        "p90": float(np.percentile(est, 90)),
                        "mean_abs_error": float(err.mean()),
                        "p90_abs_error": float(np.percentile(err, 90)),
                        "seconds": time.perf_counter() - start,
                    }
                )
            curves[method] = curve
        tolerance = 0.1 * abs(phi[j])
        needed = {
            m: next((c["evaluations"] for c in curves[m] if c["p90_abs_error"] <= tolerance), None)
            for m in methods
        }
        panels[panel] = {
            "features": int(x.shape[0]),
            "features_used_by_model": used,
            "tracked_feature": j,
            "exact_value": float(phi[j]),
            "curves": curves,
            "evaluations_to_10pct_error_p90": needed,
        }
        print(
            f"panel {panel}: feature {j}, exact {phi[j]:.4f}; evaluations to reach 10% error "
            f"(90% of replicates): {needed}"
        )

    results = {
        "experiment": "shap_sample_efficiency",
        "seed": args.seed,
        "settings": {
            "replicates": replicates,
            "background_rows": 10,
            "panels": args.panels,
            "lime": "lime_tabular defaults (quartile bins), all features, no selection",
        },
        "panels": panels,
    }
    path = save_results(args.out, results)
    save_figure(_figure(panels), args.out, "sample_efficiency.png")
    print(f"wrote {path}")
    return 0


def _figure(panels):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (panel, p) in zip(axes[0], panels.items(), strict=True):
        for method, curve in p["curves"].items():
            ev = [c["evaluations"] for c in curve]
            ax.fill_between(ev, [c["p10"] for c in curve], [c["p90"] for c in curve], alpha=0.25)
            ax.plot(ev, [c["p50"] for c in curve], marker="o", label=method)
        ax.axhline(p["exact_value"], color="black", ls="--", lw=1, label="Shapley value")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(plt.NullFormatter())
        ax.set_xlabel("coalitions evaluated")
        ax.set_ylabel(f"estimate of feature {p['tracked_feature']}")
        ax.set_title(
            f"({panel}) tree using {p['features_used_by_model']} of {p['features']} features",
            fontsize=9,
        )
        ax.legend(fontsize=7)
    fig.suptitle(
        "10th-90th percentile of estimates over replicates (SHAP paper, Fig. 3)", fontsize=9
    )
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    raise SystemExit(main())
