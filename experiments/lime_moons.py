"""The tabular LIME walk-through on two moons, with the reference ``lime`` package beside us.

scikit-learn's ``make_moons(noise=0.05, n_samples=200, random_state=0)``, a random forest, and
instance 103. Figures: the decision boundary, the sampled neighbourhood with its kernel weights,
and the surrogate's coefficients from xaijax and from ``lime.lime_tabular.LimeTabularExplainer``
(same training data, same number of samples; their samples differ, so the numbers agree up to
sampling noise, which we measure by repeating both with several seeds).

    xaijax experiment lime_moons [--quick] [--out runs/lime_moons] [--seed 0]

References:
    Ribeiro, Singh & Guestrin, "Why Should I Trust You?", KDD 2016.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

import xaijax as xj
from xaijax.cli.runs import save_figure, save_results
from xaijax.lime import tabular as lime_tab

INSTANCE = 103


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Tabular LIME on two moons, beside lime")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=None, help="seeds per library")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("runs", "lime_moons"))
    args = parser.parse_args(argv)
    repeats = args.repeats or (3 if args.quick else 10)

    from sklearn.datasets import make_moons
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_moons(noise=0.05, n_samples=200, random_state=0)
    X = X.astype(np.float32)
    forest = RandomForestClassifier(random_state=0).fit(X, y)
    x = X[INSTANCE]
    names = ("x1", "x2")
    label = int(forest.predict(x[None])[0])

    # xaijax: one compiled call explains the instance once per key.
    start = time.perf_counter()
    ours = xj.lime_tabular(
        forest.predict_proba,
        np.tile(x, (repeats, 1)),
        X,
        key=jax.random.key(args.seed),
        num_samples=args.num_samples,
        labels=(label,),
        feature_names=names,
    )
    t_ours = time.perf_counter() - start
    ours_coef = np.asarray(ours.values)[:, :, 0]
    feature_labels = [str(s) for s in np.asarray(ours.extras["feature_labels"])[0]]

    # The reference package, same data and settings, one explain_instance per seed.
    import lime.lime_tabular

    start = time.perf_counter()
    ref_coef, ref_intercept, ref_score = [], [], []
    for r in range(repeats):
        explainer = lime.lime_tabular.LimeTabularExplainer(
            X,
            feature_names=list(names),
            class_names=["upper", "lower"],
            discretize_continuous=True,
            random_state=args.seed + r,
        )
        exp = explainer.explain_instance(
            x, forest.predict_proba, labels=(label,), num_samples=args.num_samples, num_features=2
        )
        coef = np.zeros(2)
        for j, w in exp.local_exp[label]:
            coef[j] = w
        ref_coef.append(coef)
        ref_intercept.append(exp.intercept[label])
        ref_score.append(exp.score)
    t_ref = time.perf_counter() - start
    ref_coef = np.array(ref_coef)

    results = {
        "experiment": "lime_moons",
        "seed": args.seed,
        "settings": {
            "instance": INSTANCE,
            "x": x,
            "label": label,
            "repeats": repeats,
            "num_samples": args.num_samples,
            "model": "RandomForestClassifier(rs=0)",
            "data": "make_moons(noise=0.05, n_samples=200, random_state=0)",
        },
        "feature_labels": feature_labels,
        "xaijax": {
            "coef_mean": ours_coef.mean(0),
            "coef_std": ours_coef.std(0),
            "intercept_mean": float(np.asarray(ours.extras["intercept"]).mean()),
            "score_mean": float(np.asarray(ours.extras["score"]).mean()),
            "seconds_per_explanation": t_ours / repeats,
        },
        "lime": {
            "coef_mean": ref_coef.mean(0),
            "coef_std": ref_coef.std(0),
            "intercept_mean": float(np.mean(ref_intercept)),
            "score_mean": float(np.mean(ref_score)),
            "seconds_per_explanation": t_ref / repeats,
        },
        "coef_mean_abs_difference": float(np.abs(ours_coef.mean(0) - ref_coef.mean(0)).max()),
        "same_sign": bool(np.all(np.sign(ours_coef.mean(0)) == np.sign(ref_coef.mean(0)))),
    }
    path = save_results(args.out, results)

    # The neighbourhood, drawn by our sampler, with the LIME kernel's weights on it.
    stats = lime_tab.fit_discretizer(X, feature_names=names)
    features, inputs = xj.lime.sample_neighbourhood(stats, x, jax.random.key(args.seed), 1000)
    d = np.sqrt(((np.asarray(features) - np.asarray(features)[:1]) ** 2).sum(1))
    width = 0.75 * np.sqrt(X.shape[1])
    weights = np.sqrt(np.exp(-(d**2) / width**2))
    save_figure(
        _figure(
            forest, X, y, x, np.asarray(inputs), weights, feature_labels, ours_coef, ref_coef, label
        ),
        args.out,
        "lime_moons.png",
    )
    print(
        f"coefficients  xaijax {ours_coef.mean(0).round(4)} +- {ours_coef.std(0).round(4)}  "
        f"lime {ref_coef.mean(0).round(4)} +- {ref_coef.std(0).round(4)}"
    )
    print(f"wrote {path}")
    return 0


def _figure(forest, X, y, x, inputs, weights, feature_labels, ours, ref, label):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    g0, g1 = np.meshgrid(np.linspace(-1.5, 2.5, 200), np.linspace(-1.0, 1.5, 200))
    p = forest.predict_proba(np.column_stack([g0.ravel(), g1.ravel()]))[:, label]
    for ax in axes[:2]:
        ax.contourf(g0, g1, p.reshape(g0.shape), levels=20, cmap="RdBu", alpha=0.6)
        ax.set_xlim(-1.5, 2.5)
        ax.set_ylim(-1.0, 1.5)
    axes[0].scatter(X[:, 0], X[:, 1], c=y, cmap="coolwarm", s=10, edgecolor="k", lw=0.3)
    axes[0].scatter(*x, marker="*", s=250, c="gold", edgecolor="k")
    axes[0].set_title(f"random forest, P(class {label}); instance {INSTANCE} (star)", fontsize=9)
    axes[1].scatter(
        inputs[:, 0], inputs[:, 1], s=4 + 30 * weights, c=weights, cmap="viridis", alpha=0.7
    )
    axes[1].scatter(*x, marker="*", s=250, c="gold", edgecolor="k")
    axes[1].set_title("LIME neighbourhood (size, colour: kernel weight)", fontsize=9)
    pos = np.arange(len(feature_labels))
    axes[2].barh(pos + 0.2, ours.mean(0), 0.4, xerr=ours.std(0), label="xaijax")
    axes[2].barh(pos - 0.2, ref.mean(0), 0.4, xerr=ref.std(0), label="lime")
    axes[2].set_yticks(pos, feature_labels)
    axes[2].axvline(0, color="grey", lw=0.8)
    axes[2].set_title("surrogate coefficients (mean +- sd over seeds)", fontsize=9)
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    raise SystemExit(main())
