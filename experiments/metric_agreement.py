"""Do evaluation metrics agree? A dozen explainers ranked by faithfulness, localisation and
complexity metrics on synthetic shapes, where the object mask is known.

Claims examined:

* Hedström et al., "Quantus", JMLR 2023, and "The Meta-Evaluation Problem in Explainable AI",
  TMLR 2023; Tomsett et al., "Sanity Checks for Saliency Metrics", AAAI 2020: metrics of
  different properties (and even of the same property) rank explanation methods differently.
* Rong et al., "A Consistent and Efficient Evaluation Strategy for Attribution Methods" (ROAD),
  ICML 2022: with noisy linear imputation, removing the most relevant pixels first (MoRF) and
  the least relevant first (LeRF) give consistent rankings of the methods.

Here: the zoo's CNN on synthetic coloured shapes (32 px, 3 classes; ``cam_localization``'s);
every explainer explains the predicted class; ``xj.metrics.evaluate_explainers`` scores each map
``(n, H, W)`` (channel attributions summed) by pixel flipping (area under the softmax probability
as pixels are set to black, 32 steps), ROAD MoRF and LeRF (10..90 % imputed), faithfulness
correlation, relevance rank accuracy, ROC AUC and attribution localisation against the object
mask, the pointing game and sparseness. Each metric ranks the explainers (oriented so that rank 1
is best); Kendall's tau between every two metrics' rankings measures their agreement.

Run:
    xaijax experiment metric_agreement --quick   # test size (seconds)
    xaijax experiment metric_agreement           # full size (CPU: a few minutes)
Writes ``runs/metric_agreement/results.json``, ``agreement.png`` and ``scores.png``.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np
import scipy.stats

import xaijax as xj
from xaijax import metrics, zoo
from xaijax.cli.runs import save_figure, save_results
from xaijax.zoo import data

SIZES = {
    "quick": dict(train=64, epochs=1, images=3, ig_steps=4, smooth=4, rise_masks=64, road_runs=1,
                  fc_runs=4),
    "full": dict(train=768, epochs=12, images=48, ig_steps=32, smooth=32, rise_masks=2000,
                 road_runs=1, fc_runs=50),
}  # fmt: skip
SIZE = 32
# metric -> True when higher is better
HIGHER_IS_BETTER = {
    "pixel_flipping": False,
    "road_morf": False,
    "road_lerf": True,
    "faithfulness_correlation": True,
    "relevance_rank_accuracy": True,
    "auc": True,
    "attribution_localisation": True,
    "pointing_game": True,
    "sparseness": True,
}
EXPLAINERS = (
    "saliency",
    "gradient_x_input",
    "smoothgrad",
    "integrated_gradients",
    "guided_backprop",
    "grad_cam",
    "grad_cam_plus_plus",
    "score_cam",
    "lrp epsilon_plus_flat",
    "lrp epsilon_alpha2_beta1",
    "rise",
    "occlusion",
    "random (baseline)",
)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="xaijax experiment metric_agreement", description=__doc__)
    p.add_argument("--quick", action="store_true", help="test size (seconds)")
    p.add_argument("--out", default=os.path.join("runs", "metric_agreement"))
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _map(out) -> np.ndarray:
    a = np.asarray(getattr(out, "values", out), np.float32)
    return a.sum(-1) if a.ndim == 4 else a


def make_explainers(cnn, cfg, key):
    """name -> ``explainer(model, X, targets=...)`` returning ``(n, H, W)`` maps."""
    keys = dict(zip(("smooth", "rise", "random"), jax.random.split(key, 3), strict=True))

    def lrp(composite):
        return lambda f, X, targets=None: _map(
            xj.lrp(cnn, X, targets=targets, composite=composite, low=0.0, high=1.0)
        )

    def cam(fn):
        return lambda f, X, targets=None: _map(fn(cnn, "features", X, targets))

    table = {
        "saliency": lambda f, X, targets=None: _map(np.abs(xj.saliency(cnn, X, targets).values)),
        "gradient_x_input": lambda f, X, targets=None: _map(xj.gradient_x_input(cnn, X, targets)),
        "smoothgrad": lambda f, X, targets=None: _map(
            xj.smoothgrad(cnn, X, targets, key=keys["smooth"], num_samples=cfg["smooth"])
        ),
        "integrated_gradients": lambda f, X, targets=None: _map(
            xj.integrated_gradients(cnn, X, targets, num_steps=cfg["ig_steps"])
        ),
        "guided_backprop": lambda f, X, targets=None: _map(xj.guided_backprop(cnn, X, targets)),
        "grad_cam": cam(xj.grad_cam),
        "grad_cam_plus_plus": cam(xj.grad_cam_plus_plus),
        "score_cam": cam(xj.score_cam),
        "lrp epsilon_plus_flat": lrp("epsilon_plus_flat"),
        "lrp epsilon_alpha2_beta1": lrp("epsilon_alpha2_beta1"),
        "rise": lambda f, X, targets=None: _map(
            xj.rise(cnn, X, key=keys["rise"], num_masks=cfg["rise_masks"], targets=targets)
        ),
        "occlusion": lambda f, X, targets=None: _map(
            xj.occlusion(cnn, X, window=(4, 4, 3), strides=(2, 2, 3), targets=targets)
        ),
        "random (baseline)": lambda f, X, targets=None: np.asarray(
            jax.random.uniform(keys["random"], X.shape[:3])
        ),
    }
    assert tuple(table) == EXPLAINERS
    return table


def road_morf(model, X, attributions, *, targets=None, batch_size=None, key=None):
    return metrics.road(
        model, X, attributions, targets=targets, batch_size=batch_size, key=key, order="morf",
        percentages=list(range(10, 100, 10)),
    ).mean(1)  # fmt: skip


def road_lerf(model, X, attributions, *, targets=None, batch_size=None, key=None):
    return metrics.road(
        model, X, attributions, targets=targets, batch_size=batch_size, key=key, order="lerf",
        percentages=list(range(10, 100, 10)),
    ).mean(1)  # fmt: skip


def rankings(table) -> dict:
    """metric -> the explainers' ranks (1 = best), ties averaged."""
    means = table.mean()
    out = {}
    for j, m in enumerate(table.metrics):
        score = means[:, j] if HIGHER_IS_BETTER[m] else -means[:, j]
        out[m] = scipy.stats.rankdata(-score)
    return out


def main(argv=None) -> int:
    args = parse_args(argv or [])
    size = "quick" if args.quick else "full"
    cfg = SIZES[size]
    k_data, k_test, k_train, k_expl, k_metrics = jax.random.split(jax.random.key(args.seed), 5)
    timings = {}
    start = time.perf_counter()
    train = data.synthetic_shapes(k_data, cfg["train"], size=SIZE)
    test = data.synthetic_shapes(k_test, cfg["images"], size=SIZE)
    cnn = zoo.build(lambda r: zoo.CNN(3, 3, widths=(16, 32), rngs=r), seed=args.seed)
    zoo.train(
        cnn, train.images, train.labels, key=k_train, epochs=cfg["epochs"], learning_rate=3e-3
    )
    timings["train_cnn"] = round(time.perf_counter() - start, 3)
    images = np.asarray(test.images, np.float32)
    masks = np.asarray(test.masks, bool)
    accuracy = float(zoo.accuracy(cnn, test.images, test.labels))

    def proba(X):
        return jax.nn.softmax(cnn(X), axis=-1)

    targets = np.asarray(proba(images)).argmax(-1)
    start = time.perf_counter()
    table = metrics.evaluate_explainers(
        proba,
        images,
        make_explainers(cnn, cfg, k_expl),
        [
            "pixel_flipping",
            road_morf,
            road_lerf,
            "faithfulness_correlation",
            "relevance_rank_accuracy",
            "auc",
            "attribution_localisation",
            "pointing_game",
            "sparseness",
        ],
        targets=targets,
        masks=masks,
        key=k_metrics,
        metric_kwargs={
            "pixel_flipping": {"features_in_step": SIZE * SIZE // 32},
            "faithfulness_correlation": {
                "nr_runs": cfg["fc_runs"],
                "subset_size": SIZE * SIZE // 8,
            },
            "attribution_localisation": {"absolute": False},
        },
    )
    timings["evaluate"] = round(time.perf_counter() - start, 3)
    ranks = rankings(table)
    names = table.metrics
    tau = np.eye(len(names))
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            t = scipy.stats.kendalltau(ranks[names[a]], ranks[names[b]]).statistic
            tau[a, b] = tau[b, a] = np.nan_to_num(t)
    off = tau[~np.eye(len(names), dtype=bool)]
    findings = {
        "mean_kendall_tau_between_metrics": float(off.mean()),
        "min_kendall_tau": float(off.min()),
        "road_morf_vs_lerf_tau": float(tau[names.index("road_morf"), names.index("road_lerf")]),
        "best_by_metric": {m: table.explainers[int(np.argmin(ranks[m]))] for m in names},
        "random_rank_by_metric": {
            m: float(ranks[m][table.explainers.index("random (baseline)")]) for m in names
        },
    }
    for m in names:
        print(f"  {m:26s} best: {findings['best_by_metric'][m]}", flush=True)
    print(f"  mean Kendall tau between metrics {findings['mean_kendall_tau_between_metrics']:.2f};"
          f" ROAD MoRF vs LeRF {findings['road_morf_vs_lerf_tau']:.2f}", flush=True)  # fmt: skip
    results = {
        "experiment": "metric_agreement",
        "paper": "Hedström et al. (Quantus, JMLR 2023; meta-evaluation, TMLR 2023); Tomsett et "
        "al., AAAI 2020 (metrics disagree); Rong et al., ICML 2022 (ROAD: MoRF and LeRF agree)",
        "size": size,
        "seed": args.seed,
        "settings": {
            **cfg,
            "targets": "the class the model predicts",
            "score": "softmax probability of the target",
            "higher_is_better": HIGHER_IS_BETTER,
            "maps": "(n, H, W): channel attributions summed; saliency |gradient| summed",
        },
        "test_accuracy": accuracy,
        "rows": table.rows,
        "ranks": {m: ranks[m].tolist() for m in names},
        "explainers": table.explainers,
        "metrics": names,
        "kendall_tau": tau.tolist(),
        "findings": findings,
        "timings_s": timings,
    }
    path = save_results(args.out, results)
    save_figure(_agreement_figure(tau, names, size, args.seed), args.out, "agreement.png")
    save_figure(
        xj.plots.metric_table(
            table, title=f"explainers by metric ({size}, seed {args.seed})",
            higher_is_better=HIGHER_IS_BETTER,
        ),
        args.out,
        "scores.png",
    )  # fmt: skip
    print(f"wrote {path}, agreement.png, scores.png", flush=True)
    return 0


def _agreement_figure(tau, names, size, seed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    im = ax.imshow(tau, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, f"{tau[i, j]:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, label="Kendall tau of the explainers' rankings")
    ax.set_title(f"metric agreement ({size}, seed {seed})")
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
