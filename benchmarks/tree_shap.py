"""Tree SHAP side by side: xaijax's compiled path-dependent Tree SHAP against shap.TreeExplainer.

An XGBoost regressor (500 trees of depth 8 by default) on synthetic data; both explain the same
rows, and the largest difference between them is recorded. Run as ``python -m
benchmarks.tree_shap`` (``--trees 20 --depth 4 --rows 200`` for a smoke test); writes JSON to
``--out``.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from benchmarks.common import environment, memory
from xaijax.trees import tree_ensemble, tree_shap


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trees", type=int, default=500)
    parser.add_argument("--depth", type=int, default=8)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/tree_shap.json")
    args = parser.parse_args()

    import shap
    import xgboost

    rng = np.random.default_rng(0)
    X = rng.normal(size=(max(args.rows, 1000), args.features)).astype(np.float32)
    y = X[:, 0] + X[:, 1] * X[:, 2] + np.sin(X[:, 3]) + 0.1 * rng.normal(size=len(X))
    model = xgboost.XGBRegressor(n_estimators=args.trees, max_depth=args.depth).fit(X, y)
    Xe = X[: args.rows]

    ens = tree_ensemble(model)
    start = time.perf_counter()
    first = tree_shap(ens, Xe, batch_size=args.batch_size)
    first_s = time.perf_counter() - start
    ours = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        exp = tree_shap(ens, Xe, batch_size=args.batch_size)
        ours.append(time.perf_counter() - start)
    explainer = shap.TreeExplainer(model)
    theirs = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ref = explainer.shap_values(Xe)
        theirs.append(time.perf_counter() - start)
    del first
    report = {
        "environment": environment(),
        "memory": memory(),
        "trees": args.trees,
        "depth": args.depth,
        "rows": args.rows,
        "features": args.features,
        "first_call_s": first_s,
        "xaijax_s": min(ours),
        "shap_s": min(theirs),
        "xaijax_rows_per_s": args.rows / min(ours),
        "shap_rows_per_s": args.rows / min(theirs),
        "max_abs_diff": float(np.abs(np.asarray(exp.values) - ref).max()),
    }
    print(json.dumps({k: v for k, v in report.items() if k != "environment"}, indent=1))
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
