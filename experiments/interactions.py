"""Planted pairwise interactions, recovered by each interaction index and approximator.

A synthetic model with known structure: ``f(x) = sum_i a_i x_i + sum_{(i, j) in P} b_ij x_i x_j
+ sum_{(i, j, l) in T} c_ijl x_i x_j x_l`` over ``M`` standard-normal features, with ``|P|``
planted pairs and ``|T|`` weaker planted triples (``|c| = 0.5``; the triples give the game a third
order, where the indices differ). For each sampling method and index (permutation: SII, k-SII,
STII; svarm: SII, STII, BII; kernel: FSII) and each budget (coalitions per instance), as the
SHAP-IQ paper's approximation curves do, we measure

* the error of the pair values against the same index computed exactly (``method="exact"``):
  mean ``|estimate - exact|`` over instances and pairs, relative to the mean ``|exact|`` of the
  planted pairs;
* recovery: the fraction of the planted pairs among the ``|P|`` pairs of largest mean ``|value|``
  over the instances (1.0: every planted pair found; the exact indices' own recovery is listed).

Without triples (``--triples 0``) the game has no order above 2, every order-2 index equals the
pair's Möbius coefficient ``b_ij mean_b (x_i - b_i)(x_j - b_j)`` (checked), and the kernel
(FSII) and permutation STII estimates are exact at any budget.

    xaijax experiment interactions [--quick] [--out runs/interactions] [--seed 0]

References:
    Fumagalli et al., "SHAP-IQ: Unified Approximation of any-order Shapley Interactions",
    NeurIPS 2023 (approximation curves); Kolpaczki et al., "SVARM-IQ", AISTATS 2024; Tsai et
    al., "Faith-Shap", JMLR 2023; Muschalik et al., "shapiq", NeurIPS 2024.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import xaijax as xj
from xaijax.cli.runs import save_figure, save_results

METHODS = (
    ("permutation", "SII"),
    ("permutation", "k-SII"),
    ("permutation", "STII"),
    ("svarm", "SII"),
    ("svarm", "STII"),
    ("svarm", "BII"),
    ("kernel", "FSII"),
)


def planted_model(M: int, num_pairs: int, num_triples: int, seed: int):
    """``(f, pairs, b, triples)``: a linear part, planted products of pairs and of triples."""
    rng = np.random.default_rng(seed)
    all_pairs = list(itertools.combinations(range(M), 2))
    chosen = rng.choice(len(all_pairs), num_pairs, replace=False)
    pairs = np.array([all_pairs[c] for c in sorted(chosen)])
    b = rng.choice([-1.0, 1.0], num_pairs) * rng.uniform(0.25, 2.0, num_pairs)
    triples = np.array(
        [np.sort(rng.choice(M, 3, replace=False)) for _ in range(num_triples)], int
    ).reshape(num_triples, 3)
    c = 0.5 * rng.choice([-1.0, 1.0], num_triples)
    a = rng.normal(size=M)
    aj, bj, cj = (jnp.asarray(v, jnp.float32) for v in (a, b, c))

    def f(X):
        out = X @ aj + (X[:, pairs[:, 0]] * X[:, pairs[:, 1]]) @ bj
        if num_triples:
            out = out + (X[:, triples[:, 0]] * X[:, triples[:, 1]] * X[:, triples[:, 2]]) @ cj
        return out

    return f, pairs, b, triples


def truth(X, bg, M, pairs, b):
    """The order-2 value of every pair, ``(n, M, M)`` (any index: the game has no higher order)."""
    out = np.zeros((len(X), M, M))
    for (i, j), coef in zip(pairs, b, strict=True):
        value = coef * ((X[:, None, i] - bg[None, :, i]) * (X[:, None, j] - bg[None, :, j])).mean(1)
        out[:, i, j] = out[:, j, i] = value
    return out


def scores(order2, true2, pairs):
    """(relative error against ``true2``, recovery of ``pairs``) of pair values ``(n, M, M)``."""
    M = order2.shape[1]
    rows, cols = np.triu_indices(M, k=1)
    err = np.abs(order2 - true2)[:, rows, cols].mean()
    scale = np.abs(true2[:, pairs[:, 0], pairs[:, 1]]).mean()
    strength = np.abs(order2).mean(0)[rows, cols]
    top = np.argsort(-strength, kind="stable")[: len(pairs)]
    planted = {tuple(p) for p in pairs.tolist()}
    found = sum((int(rows[t]), int(cols[t])) in planted for t in top)
    return float(err / scale), found / len(pairs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="planted interactions recovered by each index")
    parser.add_argument("--quick", action="store_true", help="fewer instances and budgets")
    parser.add_argument("--features", type=int, default=14)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--triples", type=int, default=2)
    parser.add_argument("--instances", type=int, default=None)
    parser.add_argument("--background", type=int, default=20)
    parser.add_argument("--budgets", default=None, help="comma-separated coalitions per instance")
    parser.add_argument(
        "--methods",
        default=",".join(f"{m}:{i}" for m, i in METHODS),
        help="comma-separated method:index pairs",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("runs", "interactions"))
    args = parser.parse_args(argv)
    M = args.features
    n = args.instances or (4 if args.quick else 16)
    if args.budgets:
        budgets = [int(b) for b in args.budgets.split(",")]
    else:
        budgets = [150, 600, 2**M] if args.quick else [150, 300, 600, 1200, 2400, 4800, 2**M]
    methods = [tuple(m.split(":")) for m in args.methods.split(",")]

    rng = np.random.default_rng(args.seed)
    f, pairs, b, triples = planted_model(M, args.pairs, args.triples, args.seed)
    X = rng.normal(size=(n, M)).astype(np.float32)
    bg = rng.normal(size=(args.background, M)).astype(np.float32)
    true2 = truth(X.astype(np.float64), bg.astype(np.float64), M, pairs, b)

    results, timings = {}, {}
    start = time.perf_counter()
    exact = {
        index: xj.shapley_interactions(f, X, bg, index=index)
        for index in sorted({i for _, i in methods})
    }
    timings["exact"] = time.perf_counter() - start
    results["exact"] = {}
    for index, e in exact.items():
        error, recovery = scores(e.extras["order_2"], true2, pairs)
        # error: against the closed form, which holds without triples
        results["exact"][index] = {"error_vs_pairs_only": error, "recovery": recovery}
    key = jax.random.key(args.seed)
    for method, index in methods:
        name = f"{method}/{index}"
        results[name] = {}
        for budget in budgets:
            try:
                start = time.perf_counter()
                exp = xj.shapley_interactions(
                    f, X, bg, index=index, method=method, key=key, budget=budget
                )
                seconds = time.perf_counter() - start
            except ValueError as err:  # a budget below one permutation of STII, say
                results[name][str(budget)] = {"skipped": str(err)[:120]}
                continue
            error, recovery = scores(exp.extras["order_2"], exact[index].extras["order_2"], pairs)
            results[name][str(budget)] = {
                "error": error,
                "recovery": recovery,
                "evaluations": exp.extras["num_evaluations"],
                "seconds": seconds,
            }
            print(f"{name:18s} budget {budget:6d}: error {error:.3f}, recovery {recovery:.2f}")

    record = {
        "experiment": "interactions",
        "seed": args.seed,
        "settings": {
            "features": M,
            "planted_pairs": pairs.tolist(),
            "pair_coefficients": b.tolist(),
            "planted_triples": triples.tolist(),
            "instances": n,
            "background_rows": args.background,
            "budgets": budgets,
            "methods": [f"{m}:{i}" for m, i in methods],
        },
        "error": "mean |estimate - exact| over instances and pairs / mean |exact| of planted pairs",
        "recovery": "planted pairs among the top |P| pairs by mean |value|",
        "results": results,
        "timings_s": timings,
    }
    path = save_results(args.out, record)
    save_figure(_figure(results, budgets), args.out, "interactions.png")
    print(f"wrote {path}")
    return 0


def _figure(results, budgets):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, by_budget in results.items():
        if name == "exact":
            continue
        points = [(int(b), r) for b, r in by_budget.items() if "error" in r]
        if not points:
            continue
        xs = [p for p, _ in points]
        left.plot(xs, [max(r["error"], 1e-8) for _, r in points], marker="o", label=name)
        right.plot(xs, [r["recovery"] for _, r in points], marker="o", label=name)
    for ax in (left, right):
        ax.set_xscale("log")
        ax.set_xticks(budgets, [str(b) for b in budgets], fontsize=7)
        ax.minorticks_off()
    left.set_yscale("log")
    left.set_xlabel("coalitions per instance")
    left.set_ylabel("relative error of the pair values")
    right.set_xlabel("coalitions per instance")
    right.set_ylabel("planted pairs recovered")
    right.set_ylim(-0.05, 1.05)
    left.legend(fontsize=7)
    fig.suptitle("planted pairwise interactions: error and recovery by budget")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    raise SystemExit(main())
