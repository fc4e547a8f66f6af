"""Grad-CAM's weakly supervised localisation and pointing game, on shapes with ground-truth masks.

Claim reproduced (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
Gradient-based Localization", ICCV 2017, sections 4.1 and 5.2; the pointing game of Zhang et al.,
ECCV 2016): class-discriminative maps computed from a CNN's last convolutional layer localise the
object the network classifies, far better than chance. Here the objects are synthetic coloured
shapes on clutter (``xaijax.zoo.data.synthetic_shapes``), whose pixel masks are known exactly, so
every method is scored against the truth:

* pointing game: is the map's maximum on the object?
* energy in mask: share of the map's positive mass on the object (Score-CAM's energy game);
* deletion / insertion AUC (RISE): target probability as the most salient pixels are removed
  (lower is better) or restored onto a blurred copy (higher is better).

Methods: the CAM family (Grad-CAM, Grad-CAM++, HiResCAM, XGrad-CAM, LayerCAM, EigenCAM, Score-CAM,
Ablation-CAM), gradients (saliency), Integrated Gradients, LIME on SLIC superpixels, Kernel SHAP
over the same superpixels, and two baselines: a random map and a centred Gaussian-like map.

Run:
    xaijax experiment cam_localization --quick     # CPU, a few minutes
    xaijax experiment cam_localization             # full size, for a GPU
Writes ``runs/cam_localization/results.json`` (scores, seeds, versions, settings, timings),
``maps.png`` (methods x images) and ``scores.png`` (bar chart).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import xaijax as xj  # noqa: E402
from xaijax import metrics, plots, zoo  # noqa: E402
from xaijax.cli.runs import versions
from xaijax.zoo import data  # noqa: E402

SIZES = {
    # train images, epochs, test images, LIME samples, Kernel SHAP coalitions, IG steps
    "tiny": dict(train=64, epochs=2, test=6, lime_samples=24, shap_samples=24, ig_steps=4),
    "quick": dict(train=384, epochs=10, test=24, lime_samples=300, shap_samples=300, ig_steps=32),
    "full": dict(
        train=3000, epochs=20, test=300, lime_samples=1000, shap_samples=1000, ig_steps=64
    ),
}
IMAGE_SIZE = 32
NUM_CLASSES = 3
SLIC = {"n_segments": 30, "compactness": 10, "start_label": 0}


def parse_args(argv):
    p = argparse.ArgumentParser(prog="xaijax experiment cam_localization", description=__doc__)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="CPU size (minutes)")
    size.add_argument("--tiny", action="store_true", help="test size (seconds)")
    p.add_argument("--out", default=os.path.join("runs", "cam_localization"))
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def timed(timings, label, fn):
    start = time.perf_counter()
    result = jax.block_until_ready(fn())
    timings[label] = round(time.perf_counter() - start, 3)
    print(f"  {label}: {timings[label]:.2f} s", flush=True)
    return result


class SuperpixelGame(nnx.Module):
    """The model seen through superpixels: presence vector ``z (n, m)`` -> target probability.

    Absent segments are painted with their mean colour (LIME's hiding). The image, its segments
    and the target are module state, so one compiled Kernel SHAP serves every image (an NNX
    module is split into a fixed graph and traced arrays).
    """

    def __init__(self, cnn, image, segments, target, num_segments):
        one_hot = jax.nn.one_hot(segments, num_segments)  # (H, W, m); padded columns are empty
        area = jnp.maximum(one_hot.sum((0, 1)), 1.0)
        means = (one_hot.reshape(-1, num_segments).T @ image.reshape(-1, 3)) / area[:, None]
        self.cnn = cnn
        self.image = nnx.Variable(jnp.asarray(image))
        self.hidden = nnx.Variable(means[segments])
        self.one_hot = nnx.Variable(one_hot)
        self.target = nnx.Variable(jnp.asarray(target))

    def __call__(self, Z):
        present = jnp.einsum("hwm,nm->nhw", self.one_hot[...], Z)[..., None]
        X = present * self.image[...][None] + (1 - present) * self.hidden[...][None]
        return jax.nn.softmax(self.cnn(X), axis=-1)[:, self.target[...]]


def kernel_shap_superpixels(cnn, images, segments, targets, *, key, num_samples):
    """Kernel SHAP over each image's superpixels, with the all-hidden coalition as background.

    Segment counts are padded to the largest; a padded segment is present in neither the image
    nor the background, so Kernel SHAP treats it as a dummy (exactly 0). Returns ``(n, H, W)``.
    """
    m = int(segments.max()) + 1
    heatmaps = []
    for image, seg, target, k in zip(
        images, segments, targets, jax.random.split(key, len(images)), strict=True
    ):
        game = SuperpixelGame(cnn, image, seg, int(target), m)
        present = (np.arange(m) <= seg.max()).astype(np.float32)
        exp = xj.kernel_shap(game, present, np.zeros((1, m)), key=k, num_samples=num_samples)
        heatmaps.append(np.asarray(exp.values)[seg])
    return np.stack(heatmaps)


def main(argv=None) -> int:
    args = parse_args(argv or [])
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    cfg = SIZES[size]
    os.makedirs(args.out, exist_ok=True)
    timings: dict = {}
    k_train_data, k_test_data, k_train, k_random, k_lime, k_shap = jax.random.split(
        jax.random.key(args.seed), 6
    )

    # 1. Data with ground-truth masks and a small CNN whose last conv layer is "features".
    print(f"[1/4] synthetic shapes ({size}): train a CNN", flush=True)
    train = data.synthetic_shapes(k_train_data, cfg["train"], size=IMAGE_SIZE)
    test = data.synthetic_shapes(k_test_data, cfg["test"], size=IMAGE_SIZE)
    cnn = zoo.build(lambda r: zoo.CNN(3, NUM_CLASSES, widths=(16, 32), rngs=r), seed=args.seed)
    timed(
        timings,
        "train_cnn",
        lambda: zoo.train(
            cnn, train.images, train.labels, key=k_train, epochs=cfg["epochs"], learning_rate=3e-3
        ),
    )
    accuracy = zoo.accuracy(cnn, test.images, test.labels)
    print(f"  test accuracy {accuracy:.3f}", flush=True)

    def proba(X):
        return jax.nn.softmax(cnn(X), axis=-1)

    # Explain the true class: localisation asks where the evidence for the labelled object is.
    images, targets = test.images, test.labels

    # 2. Every method's (n, H, W) map of the target class.
    print("[2/4] attribution maps", flush=True)
    cams = {
        "Grad-CAM": xj.grad_cam,
        "Grad-CAM++": xj.grad_cam_plus_plus,
        "HiResCAM": xj.hires_cam,
        "XGrad-CAM": xj.xgrad_cam,
        "LayerCAM": xj.layer_cam,
        "EigenCAM": xj.eigen_cam,
        "Score-CAM": xj.score_cam,
        "Ablation-CAM": xj.ablation_cam,
    }
    maps = {}
    for name, cam in cams.items():
        maps[name] = timed(
            timings, name, lambda cam=cam: cam(cnn, "features", images, targets).values
        )
    maps["saliency"] = timed(
        timings,
        "saliency",
        lambda: jnp.abs(xj.saliency(cnn, images, targets).values).sum(-1),
    )
    maps["Integrated Gradients"] = timed(
        timings,
        "Integrated Gradients",
        lambda: jnp.abs(
            xj.integrated_gradients(cnn, images, targets, num_steps=cfg["ig_steps"]).values
        ).sum(-1),
    )
    lime = timed(
        timings,
        "LIME (SLIC)",
        lambda: xj.lime_image(
            proba,
            images,
            key=k_lime,
            num_samples=cfg["lime_samples"],
            segmentation="slic",
            segmentation_kwargs=SLIC,
            labels=tuple(range(NUM_CLASSES)),
            top_labels=None,
        ),
    )
    heat = np.asarray(lime.extras["heatmap"])  # (n, H, W, K)
    maps["LIME (SLIC)"] = np.take_along_axis(heat, targets[:, None, None, None], axis=3)[..., 0]
    segments = np.asarray(lime.extras["segments"])
    maps["Kernel SHAP (SLIC)"] = timed(
        timings,
        "Kernel SHAP (SLIC)",
        lambda: kernel_shap_superpixels(
            cnn, images, segments, targets, key=k_shap, num_samples=cfg["shap_samples"]
        ),
    )
    yy, xx = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE] - (IMAGE_SIZE - 1) / 2
    centre = np.exp(-(yy**2 + xx**2) / (2 * (IMAGE_SIZE / 4) ** 2))
    maps["centre (baseline)"] = np.broadcast_to(centre, images.shape[:3]).astype(np.float32)
    maps["random (baseline)"] = np.asarray(jax.random.uniform(k_random, images.shape[:3]))
    maps = {k: np.asarray(v, np.float32) for k, v in maps.items()}

    # 3. Scores against the masks and the model.
    print("[3/4] scores", flush=True)
    scores = {}
    for name, m in maps.items():
        scores[name] = {
            "pointing_game": float(metrics.pointing_game(m, test.masks).mean()),
            "energy_in_mask": float(metrics.energy_in_mask(m, test.masks).mean()),
            "deletion_auc": float(
                metrics.deletion_auc(proba, images, m, targets=targets).auc.mean()
            ),
            "insertion_auc": float(
                metrics.insertion_auc(proba, images, m, targets=targets).auc.mean()
            ),
        }
        print(
            f"  {name:22s} " + " ".join(f"{k}={v:.3f}" for k, v in scores[name].items()),
            flush=True,
        )
    random = scores["random (baseline)"]
    cam_names = list(cams)
    findings = {
        "grad_cam_pointing_beats_random": scores["Grad-CAM"]["pointing_game"]
        > random["pointing_game"],
        "cam_methods_beating_random_pointing": [
            n for n in cam_names if scores[n]["pointing_game"] > random["pointing_game"]
        ],
        "mean_mask_fraction": float(test.masks.mean()),
        "best_pointing_game": max(scores, key=lambda n: scores[n]["pointing_game"]),
        "best_energy_in_mask": max(scores, key=lambda n: scores[n]["energy_in_mask"]),
        "best_deletion_auc": min(scores, key=lambda n: scores[n]["deletion_auc"]),
        "best_insertion_auc": max(scores, key=lambda n: scores[n]["insertion_auc"]),
    }

    # 4. Figures and results.
    print("[4/4] figures and results.json", flush=True)
    shown = min(4, len(images))
    fig = plots.image_grid(
        images[:shown],
        {k: v[:shown] for k, v in maps.items()},
        row_titles=[test.class_names[t] for t in targets[:shown]],
        title="synthetic shapes: maps of the true class (rows: test images)",
    )
    fig.savefig(os.path.join(args.out, "maps.png"), dpi=110)
    plt.close(fig)
    fig, axes = plt.subplots(1, 4, figsize=(16, 5), sharey=True)
    names = list(scores)
    for ax, metric in zip(axes, scores[names[0]], strict=True):
        values = [scores[n][metric] for n in names]
        colours = ["tab:grey" if "baseline" in n else "tab:blue" for n in names]
        ax.barh(names, values, color=colours)
        ax.set_title(metric.replace("_", " ") + (" (lower better)" if "deletion" in metric else ""))
        ax.invert_yaxis()
    fig.suptitle(f"localisation on synthetic shapes ({len(images)} test images, seed {args.seed})")
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "scores.png"), dpi=110)
    plt.close(fig)

    results = {
        "experiment": "cam_localization",
        "paper": "Selvaraju et al., Grad-CAM, ICCV 2017 (localisation, pointing game)",
        "size": size,
        "seed": args.seed,
        "keys": "jax.random.split(jax.random.key(seed), 6): train data, test data, training, "
        "random baseline, LIME, Kernel SHAP",
        "versions": versions(),
        "settings": {
            **cfg,
            "image_size": IMAGE_SIZE,
            "num_classes": NUM_CLASSES,
            "cam_layer": "features",
            "targets": "true labels",
            "slic": SLIC,
            "deletion": "RISE, 50 steps, zero baseline, softmax probability",
            "insertion": "RISE, 50 steps, blurred start, softmax probability",
            "kernel_shap_background": "all superpixels hidden (mean colour)",
        },
        "test_accuracy": accuracy,
        "scores": scores,
        "findings": findings,
        "timings_s": timings,
    }
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2)
    print(f"wrote {args.out}/results.json, maps.png, scores.png", flush=True)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
