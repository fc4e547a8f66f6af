"""Path-dependent Tree SHAP: xaijax against shap.TreeExplainer (C++) on the same XGBoost model.

A regression XGBoost model (``--trees`` trees of depth ``--depth``, trained on ``--train``
synthetic rows of 20 features with interactions) explains ``--rows`` rows. Reported: rows per
second for ``xj.tree_shap`` (one compiled call, chunked), ``shap.TreeExplainer(model,
feature_perturbation="tree_path_dependent").shap_values`` and the floor (XGBoost's own
prediction of the same rows), and the largest difference from shap. The ensemble is converted
to arrays once (``xj.tree_ensemble``, timed apart) and the first call (compilation) is not
counted.

    python -m benchmarks.tree_shap [--trees 500] [--depth 8] [--rows 10000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time

import jax
import numpy as np

from benchmarks.common import environment, memory

RESULTS = os.path.join(os.path.dirname(__file__), "results", "tree_shap.json")


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 20)).astype(np.float32)
    y = X[:, 0] + 2 * (X[:, 1] > 0) + X[:, 2] * X[:, 3] + np.sin(X[:, 4]) * X[:, 5]
    return X, y + 0.1 * rng.normal(size=n)


def best(fn, repeats):
    out, times = None, []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, min(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trees", type=int, default=500)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--rows", type=int, default=10000)
    p.add_argument("--train", type=int, default=20000)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--out", default=RESULTS)
    args = p.parse_args(argv)

    import shap
    import xgboost

    import xaijax as xj

    X, y = data(args.train)
    start = time.perf_counter()
    model = xgboost.XGBRegressor(n_estimators=args.trees, max_depth=args.depth, n_jobs=2)
    model.fit(X, y)
    train_s = time.perf_counter() - start
    rows = data(args.rows, seed=1)[0]

    start = time.perf_counter()
    ensemble = xj.tree_ensemble(model)  # the arrays, once
    convert_s = time.perf_counter() - start

    def ours_call():
        return jax.block_until_ready(
            xj.tree_shap(ensemble, rows, batch_size=args.batch_size).values
        )

    start = time.perf_counter()
    ours_call()  # compiles
    first_s = time.perf_counter() - start
    exp, ours = best(ours_call, args.repeats)
    explainer = shap.TreeExplainer(model, feature_perturbation="tree_path_dependent")
    theirs_values, theirs = best(
        lambda: explainer.shap_values(rows, check_additivity=False), args.repeats
    )
    _, floor = best(lambda: model.predict(rows), args.repeats)
    diff = float(np.abs(np.asarray(exp) - theirs_values).max())
    scale = float(np.abs(theirs_values).max())
    report = {
        "benchmark": "tree_shap",
        "date": datetime.date.today().isoformat(),
        "environment": environment(),
        "trees": args.trees,
        "depth": args.depth,
        "rows": args.rows,
        "leaves": int(sum(d.count("leaf") for d in model.get_booster().get_dump())),
        "train_s": train_s,
        "convert_s": convert_s,
        "first_call_s": first_s,
        "xaijax_s": ours,
        "shap_s": theirs,
        "floor_s": floor,
        "xaijax_rows_per_s": args.rows / ours,
        "shap_rows_per_s": args.rows / theirs,
        "speedup_vs_shap": theirs / ours,
        "max_abs_diff_vs_shap": diff,
        "relative_diff_vs_shap": diff / max(scale, 1e-12),
        "memory": memory(),
    }
    print(json.dumps({k: v for k, v in report.items() if k != "environment"}, indent=1))
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    return report


if __name__ == "__main__":
    main()
