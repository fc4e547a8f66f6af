"""The ``xaijax`` command; ``xaijax demo`` is the main job (explanations, figures in runs/)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

__all__ = ["main", "demo"]


def _versions() -> dict:
    import flax
    import jax
    import numpy

    import xaijax

    return {
        "xaijax": xaijax.__version__,
        "jax": jax.__version__,
        "flax": flax.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "device": str(jax.devices()[0]),
    }


def _timed(label, fn, log):
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    log(f"  {label}: {seconds:.2f} s")
    return result, seconds


def demo(out: str = "runs/demo", *, quick: bool = False, seed: int = 0, log=print) -> dict:
    """Train small models on embedded data, explain them with the Shapley explainers, write figures.

    Writes ``out/results.json`` (numbers, seeds, versions, settings, timings) and PNG figures.
    Returns the results dict.
    """
    import jax
    import numpy as np
    from flax import nnx
    from sklearn.linear_model import LinearRegression

    import xaijax as xj
    from xaijax import data, nets, plots

    os.makedirs(out, exist_ok=True)
    key = jax.random.key(seed)
    k_train, k_bg, k_kernel, k_perm, k_train2, k_kernel2, k_perm2, k_lin = jax.random.split(key, 8)
    n_explain = 5 if quick else 20
    epochs = 10 if quick else 40
    results: dict = {"seed": seed, "quick": quick, "versions": _versions(), "timings_s": {}}
    timings = results["timings_s"]

    # 1. Breast cancer (M = 30): an MLP classifier explained by Kernel SHAP and permutation SHAP.
    log("[1/3] breast cancer: MLP classifier, Kernel SHAP and permutation SHAP (M = 30)")
    train, test = data.train_test_split(data.breast_cancer(), seed=seed)
    net = nets.MLP(30, [16], 2, softmax=True, rngs=nnx.Rngs(seed))
    _, timings["train_mlp"] = _timed(
        "train", lambda: nets.train(net, train.X, train.y, key=k_train, epochs=epochs), log
    )
    accuracy = float((np.asarray(net(test.X)).argmax(1) == test.y).mean())
    background = xj.kmeans(train.X, 10, key=k_bg)
    X = test.X[:n_explain]
    kernel, timings["kernel_shap"] = _timed(
        "kernel_shap",
        lambda: xj.kernel_shap(net, X, background, key=k_kernel, feature_names=train.feature_names),
        log,
    )
    perm, timings["permutation_shap"] = _timed(
        "permutation_shap",
        lambda: xj.permutation_shap(
            net, X, background, key=k_perm, num_permutations=10, feature_names=train.feature_names
        ),
        log,
    )
    proba = np.asarray(net(X))
    results["breast_cancer"] = {
        "test_accuracy": accuracy,
        "instances": n_explain,
        "background": "kmeans(train, 10)",
        "kernel_shap_num_samples": int(kernel.extras["num_samples"]),
        "local_accuracy_gap": {
            "kernel_shap": float(np.abs(kernel.values.sum(1) + kernel.base_values - proba).max()),
            "permutation_shap": float(np.abs(perm.values.sum(1) + perm.base_values - proba).max()),
        },
        "kernel_vs_permutation_mean_abs_diff": float(np.abs(kernel.values - perm.values).mean()),
        "top_features_kernel_shap": [
            train.feature_names[i] for i in np.argsort(-np.abs(kernel.values[..., 1]).mean(0))[:5]
        ],
    }
    kernel.save(os.path.join(out, "breast_cancer_kernel_shap"))
    _save(
        plots.bar(kernel, output=1, title="Kernel SHAP, P(benign): mean |SHAP value|"),
        out,
        "breast_cancer_bar.png",
    )
    _save(
        plots.waterfall(kernel[0], output=1, title="Kernel SHAP, P(benign): test instance 0"),
        out,
        "breast_cancer_waterfall.png",
    )

    # 2. Diabetes (M = 10): exact Shapley values as the truth for the sampling estimators.
    log("[2/3] diabetes: MLP regressor, exact Shapley vs Kernel SHAP vs permutation (M = 10)")
    dtrain, dtest = data.train_test_split(data.diabetes(), seed=seed)
    reg = nets.MLP(10, [32], 1, rngs=nnx.Rngs(seed + 1))
    _, timings["train_regressor"] = _timed(
        "train",
        lambda: nets.train(reg, dtrain.X, dtrain.y, key=k_train2, loss="mse", epochs=epochs),
        log,
    )

    def f(Z):
        return reg(Z)[:, 0]

    dbg = xj.kmeans(dtrain.X, 10, key=k_bg)
    DX = dtest.X[:n_explain]
    exact, timings["exact_shapley"] = _timed(
        "exact_shapley",
        lambda: xj.exact_shapley(f, DX, dbg, feature_names=dtrain.feature_names),
        log,
    )
    budget = 12 * 21  # permutation SHAP's 12 antithetic orders score 12 (2M + 1) coalitions
    kern10, timings["kernel_shap_m10"] = _timed(
        "kernel_shap", lambda: xj.kernel_shap(f, DX, dbg, key=k_kernel2, num_samples=budget), log
    )
    perm10, timings["permutation_shap_m10"] = _timed(
        "permutation_shap",
        lambda: xj.permutation_shap(f, DX, dbg, key=k_perm2, num_permutations=12),
        log,
    )
    results["diabetes"] = {
        "coalitions_per_instance": budget,
        "mean_abs_error_vs_exact": {
            "kernel_shap": float(np.abs(kern10.values - exact.values).mean()),
            "permutation_shap": float(np.abs(perm10.values - exact.values).mean()),
        },
        "mean_abs_exact_value": float(np.abs(exact.values).mean()),
    }
    _save(
        plots.compare(
            exact.values,
            {"Kernel SHAP": kern10.values, "permutation SHAP": perm10.values},
            title=f"diabetes MLP: {budget} coalitions vs exact Shapley",
        ),
        out,
        "diabetes_estimates_vs_exact.png",
    )

    # 3. A scikit-learn model through the host adapter: Kernel SHAP against Linear SHAP.
    log("[3/3] diabetes: scikit-learn LinearRegression on the host, Kernel SHAP vs Linear SHAP")
    lin = LinearRegression().fit(dtrain.X, dtrain.y)
    host, timings["kernel_shap_host_sklearn"] = _timed(
        "kernel_shap (host model)",
        lambda: xj.kernel_shap(lin.predict, DX, dtrain.X[:50], key=k_lin, num_samples=100),
        log,
    )
    closed = xj.linear_shap(lin.coef_, lin.intercept_, DX, dtrain.X[:50])
    results["host_linear_model"] = {
        "max_abs_diff_kernel_vs_linear_shap": float(np.abs(host.values - closed.values).max())
    }

    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2)
    log(f"wrote {out}/results.json and figures")
    return results


def _save(fig, out, name):
    import matplotlib.pyplot as plt

    fig.savefig(os.path.join(out, name), dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="xaijax", description="Explain machine-learning models in JAX."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_demo = sub.add_parser("demo", help="explain small models on embedded data; write figures")
    p_demo.add_argument("--out", default=os.path.join("runs", "demo"), help="output folder")
    p_demo.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    p_demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        demo(args.out, quick=args.quick, seed=args.seed)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
