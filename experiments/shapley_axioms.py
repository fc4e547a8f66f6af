"""Shapley axioms, checked numerically for every Shapley explainer on several models.

For each explainer (exact enumeration, Kernel SHAP at full and at a sampled budget, antithetic
permutation sampling, Linear SHAP where the model is linear) and each model (linear, pairwise
interactions, a tanh MLP, a scikit-learn gradient-boosted tree ensemble on the host), measure

* local accuracy: ``max |sum_i phi_i + base - f(x)|``;
* missingness: ``max |phi_j|`` of a feature equal to every background row;
* dummy: ``max |phi_j|`` of a feature the model ignores;
* symmetry: ``max |phi_a - phi_b|`` for two features the model treats alike, with equal values;
* consistency: the change of ``phi_i`` when the model gains ``+c * x_i`` (it must not decrease;
  the exact change is ``c (x_i - E[b_i])``), reported as the worst shortfall against that change.

    xaijax experiment shapley_axioms [--quick] [--out runs/shapley_axioms] [--seed 0]

References:
    Lundberg & Lee, "A Unified Approach to Interpreting Model Predictions", NeurIPS 2017
    (local accuracy, missingness, consistency); Shapley 1953 (symmetry, dummy).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import xaijax as xj
from xaijax.cli.runs import save_figure, save_results

M = 8  # features: 0,1 symmetric pair; 6 missing (equal to every background row); 7 dummy


def models(seed: int):
    """name -> (f, linear coefficients or None). Feature 7 is never used; 0 and 1 alike."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=M)
    w[1], w[7] = w[0], 0.0
    W1 = jnp.asarray(rng.normal(size=(M, 16)) / np.sqrt(M), jnp.float32)
    W1 = W1.at[1].set(W1[0]).at[7].set(0.0)
    v = jnp.asarray(rng.normal(size=16), jnp.float32)
    wj = jnp.asarray(w, jnp.float32)

    from sklearn.ensemble import GradientBoostingRegressor

    # The ensemble sees x0 + x1 as one input, so the model is symmetric in features 0 and 1.
    def tree_inputs(X):
        X = np.asarray(X)
        return np.column_stack([X[:, 0] + X[:, 1], X[:, 2:7]])

    Z = rng.normal(size=(400, M))
    tree = GradientBoostingRegressor(n_estimators=30, max_depth=3, random_state=seed)
    tree.fit(tree_inputs(Z), np.sin(Z[:, 0] + Z[:, 1]) + Z[:, 2] * Z[:, 3] + 0.5 * Z[:, 4])

    return {
        "linear": (lambda X: X @ wj + 0.3, w),
        "pairwise": (lambda X: X[:, 0] * X[:, 2] + X[:, 1] * X[:, 2] - X[:, 3] * X[:, 4], None),
        "mlp": (lambda X: jnp.tanh(X @ W1) @ v, None),
        "sklearn_gbt_host": (lambda X: tree.predict(tree_inputs(X)), None),
    }


def plus_linear_term(f, c: float, i: int):
    """``f + c * x_i``: every marginal contribution of feature i grows by ``c (x_i - b_i)``."""
    return lambda Z: f(Z) + c * Z[:, i]


def explainers(num_samples: int, num_permutations: int):
    return {
        "exact_shapley": lambda f, X, bg, k: xj.exact_shapley(f, X, bg),
        "kernel_shap_full": lambda f, X, bg, k: xj.kernel_shap(f, X, bg, key=k),
        f"kernel_shap_{num_samples}": lambda f, X, bg, k: xj.kernel_shap(
            f, X, bg, key=k, num_samples=num_samples
        ),
        f"permutation_shap_{num_permutations}": lambda f, X, bg, k: xj.permutation_shap(
            f, X, bg, key=k, num_permutations=num_permutations
        ),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Shapley axioms for every Shapley explainer")
    parser.add_argument("--quick", action="store_true", help="fewer instances (CPU, seconds)")
    parser.add_argument("--instances", type=int, default=None)
    parser.add_argument(
        "--models",
        default="linear,pairwise,mlp,sklearn_gbt_host",
        help="comma-separated subset of the models",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("runs", "shapley_axioms"))
    args = parser.parse_args(argv)
    n = args.instances or (4 if args.quick else 32)
    rng = np.random.default_rng(args.seed)
    key = jax.random.key(args.seed)

    # Instances and background with the axioms' preconditions built in.
    X = rng.normal(size=(n, M)).astype(np.float32)
    bg = rng.normal(size=(6, M)).astype(np.float32)
    X[:, 1] = X[:, 0]
    bg[:, 1] = bg[:, 0]
    X[:, 6] = bg[:, 6] = 0.7
    c, i = 1.5, 2  # consistency: model f + c * x_i
    X[:, i] = np.abs(X[:, i]) + bg[:, i].max()  # x_i above every background value

    rows, timings = {}, {}
    chosen = args.models.split(",")
    for model_name, (f, coef) in models(args.seed).items():
        if model_name not in chosen:
            continue
        f_x = np.asarray(f(X))
        boosted = plus_linear_term(f, c, i)
        methods = dict(explainers(num_samples=40, num_permutations=4))
        if coef is not None:
            methods["linear_shap"] = lambda f, X, bg, k, coef=coef: xj.linear_shap(coef, 0.3, X, bg)
        for name, explain in methods.items():
            start = time.perf_counter()
            exp = explain(f, X, bg, key)
            timings[f"{model_name}/{name}"] = time.perf_counter() - start
            if name == "linear_shap":
                exp_up = xj.linear_shap(coef + c * (np.arange(M) == i), 0.3, X, bg)
            else:
                exp_up = explain(boosted, X, bg, key)
            phi, phi_up = np.asarray(exp.values), np.asarray(exp_up.values)
            expected = c * (X[:, i] - bg[:, i].mean())
            rows[f"{model_name}/{name}"] = {
                "local_accuracy": float(np.abs(phi.sum(1) + exp.base_values - f_x).max()),
                "missingness": float(np.abs(phi[:, 6]).max()),
                "dummy": float(np.abs(phi[:, 7]).max()),
                "symmetry": float(np.abs(phi[:, 0] - phi[:, 1]).max()),
                "consistency_min_increase": float((phi_up[:, i] - phi[:, i]).min()),
                "consistency_shortfall": float(
                    np.maximum(expected - (phi_up[:, i] - phi[:, i]), 0.0).max()
                ),
            }

    results = {
        "experiment": "shapley_axioms",
        "seed": args.seed,
        "settings": {
            "models": chosen,
            "instances": n,
            "features": M,
            "background_rows": 6,
            "consistency": {"feature": i, "added_coefficient": c},
        },
        "axioms": rows,
        "timings_s": timings,
        "summary": {
            axiom: max(r[axiom] for r in rows.values())
            for axiom in ("local_accuracy", "missingness", "dummy")
        },
        "all_consistent": bool(all(r["consistency_min_increase"] >= -1e-4 for r in rows.values())),
    }
    path = save_results(args.out, results)
    save_figure(_figure(rows), args.out, "axioms.png")
    print(_table(rows))
    print(f"wrote {path}")
    return 0


def _table(rows) -> str:
    head = "| model / explainer | local acc. | missing | dummy | symmetry | consist. shortfall |"
    lines = [head, "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['local_accuracy']:.1e} | {r['missingness']:.1e} | "
            f"{r['dummy']:.1e} | {r['symmetry']:.1e} | {r['consistency_shortfall']:.1e} |"
        )
    return "\n".join(lines)


def _figure(rows):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axioms = ("local_accuracy", "missingness", "dummy", "symmetry", "consistency_shortfall")
    names = list(rows)
    data = np.array([[max(rows[n][a], 1e-12) for a in axioms] for n in names])
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(names) + 1.8))
    im = ax.imshow(np.log10(data), aspect="auto", cmap="viridis_r", vmin=-12, vmax=0)
    ax.set_xticks(range(len(axioms)), [a.replace("_", "\n") for a in axioms], fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    fig.colorbar(im, ax=ax, label="log10 max violation")
    ax.set_title("Shapley axioms: worst violation per explainer and model")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    raise SystemExit(main())
