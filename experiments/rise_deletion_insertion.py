"""RISE's deletion and insertion game: does RISE beat Grad-CAM, LIME and occlusion?

Claim reproduced (Petsiuk, Das & Saenko, "RISE: Randomized Input Sampling for Explanation of
Black-box Models", BMVC 2018, Table 1): on ResNet50 and VGG16 over ImageNet, RISE's saliency
maps get a lower deletion AUC (the class probability falls faster as the most salient pixels are
removed first) and a higher insertion AUC (it rises faster as they are restored onto a blurred
copy) than Grad-CAM, sliding-window occlusion and LIME.

Here: two small CNNs from the zoo trained as the other experiments train them, on synthetic
coloured shapes (32 px, 3 classes; ``cam_localization``'s) and on scikit-image's lfw faces vs
non-faces (grey, upsampled; ``image_lime``'s). For held-out images and the class the model
predicts, the maps of

* ``rise`` (``num_masks`` masks of an 8 x 8 grid, p = 0.5),
* ``grad_cam`` (the CNN's last convolutional layer, ``"features"``),
* ``lime_image`` (SLIC superpixels, ``num_samples`` perturbations, LIME's mean-colour hiding),
* ``occlusion`` (a sliding window of a quarter of the side, stride an eighth, zero fill),
* ``kernel_shap`` over the same superpixels (``num_samples`` coalitions, hidden pixels 0; each
  pixel gets its superpixel's value, ``extras["element_values"]``),
* ``partition_shap`` (``max_evals`` evaluations, ``xj.maskers.image(0.0, shape)``: shap's
  recursive halving of the image, as ``shap.PartitionExplainer`` with ``maskers.Image``; channel
  values summed per pixel),
* and a random map (baseline)

are scored by ``xj.metrics.deletion_auc`` (pixels set to 0 in 50 steps) and
``xj.metrics.insertion_auc`` (pixels restored onto a blurred copy in 50 steps) on the softmax
probability of that class. The sampling methods get the same budget of model evaluations per
image (RISE masks, LIME samples, Kernel SHAP coalitions, Partition SHAP evaluations).

Run:
    xaijax experiment rise_deletion_insertion --quick   # test size (seconds to a minute)
    xaijax experiment rise_deletion_insertion           # full size (CPU: minutes)
Writes ``runs/rise_deletion_insertion/results.json`` (AUCs per data set and method, with their
standard errors, seeds, versions, settings, timings) and ``scores.png`` / ``maps.png``.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import numpy as np

import xaijax as xj
from xaijax import metrics, zoo
from xaijax.cli.runs import save_figure, save_results
from xaijax.zoo import data

SIZES = {
    # per data set: training images/epochs, explained test images, image side (faces), and the
    # evaluation budget of the sampling methods
    "quick": dict(shapes_train=384, shapes_epochs=8, faces_epochs=4, test=3, face_size=24,
                  budget=64),
    "full": dict(shapes_train=768, shapes_epochs=12, faces_epochs=30, test=40, face_size=64,
                 budget=1000),
}  # fmt: skip
SHAPES_SIZE = 32
METHODS = (
    "rise",
    "grad_cam",
    "lime_image",
    "occlusion",
    "kernel_shap",
    "partition_shap",
    "random (baseline)",
)


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="xaijax experiment rise_deletion_insertion", description=__doc__
    )
    p.add_argument("--quick", action="store_true", help="test size (seconds to a minute)")
    p.add_argument("--out", default=os.path.join("runs", "rise_deletion_insertion"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--datasets", default="shapes,faces", help="comma-separated: shapes, faces")
    return p.parse_args(argv)


def shapes_task(cfg, key, seed):
    """cam_localization's shapes and CNN: (cnn, train accuracy, test images, superpixel kw)."""
    k_train_data, k_test_data, k_train = jax.random.split(key, 3)
    train = data.synthetic_shapes(k_train_data, cfg["shapes_train"], size=SHAPES_SIZE)
    test = data.synthetic_shapes(k_test_data, cfg["test"], size=SHAPES_SIZE)
    cnn = zoo.build(lambda r: zoo.CNN(3, 3, widths=(16, 32), rngs=r), seed=seed)
    zoo.train(
        cnn, train.images, train.labels, key=k_train, epochs=cfg["shapes_epochs"],
        learning_rate=3e-3,
    )  # fmt: skip
    accuracy = zoo.accuracy(cnn, test.images, test.labels)
    slic = {"n_segments": 30, "compactness": 10.0}
    return cnn, accuracy, test.images, slic


def faces_task(cfg, key, seed):
    """image_lime's lfw faces vs non-faces CNN (150 training images, the rest held out)."""
    from skimage.transform import resize

    k_split, k_train = jax.random.split(key)
    ds = data.lfw_faces()
    size = cfg["face_size"]
    images = np.stack([resize(im, (size, size), order=1) for im in ds.images]).astype(np.float32)
    order = np.asarray(jax.random.permutation(k_split, len(images)))
    train, test = order[:150], order[150:]
    cnn = zoo.build(lambda r: zoo.CNN(1, 2, widths=(16, 32, 32), rngs=r), seed=seed)
    zoo.train(
        cnn, images[train], ds.labels[train], key=k_train, epochs=cfg["faces_epochs"],
        learning_rate=3e-3, batch_size=32,
    )  # fmt: skip
    accuracy = zoo.accuracy(cnn, images[test], ds.labels[test])
    slic = {"n_segments": 50, "compactness": 0.1}
    return cnn, accuracy, images[test][: cfg["test"]], slic


def saliency_maps(cnn, images, targets, groups, budget, keys, timings):
    """Every method's ``(n, H, W)`` map of the target class (``None`` for a method missing)."""
    n, H, W, C = images.shape

    def proba(X):
        return jax.nn.softmax(cnn(X), axis=-1)

    def timed(name, fn):
        start = time.perf_counter()
        out = np.asarray(jax.block_until_ready(fn()), np.float32)
        timings[name] = round(time.perf_counter() - start, 3)
        print(f"  {name}: {timings[name]:.2f} s", flush=True)
        return out

    def per_pixel(values):  # element values (n, H, W[, C]) -> (n, H, W)
        values = np.asarray(values)
        return values.sum(-1) if values.ndim == 4 else values

    window, stride = max(2, H // 4), max(1, H // 8)
    methods = {
        "rise": lambda: (
            xj.rise(proba, images, key=keys[0], num_masks=budget, targets=targets).values
        ),
        "grad_cam": lambda: xj.grad_cam(cnn, "features", images, targets).values,
        "lime_image": lambda: _lime_map(proba, images, targets, groups, budget, keys[1]),
        "occlusion": lambda: per_pixel(
            xj.occlusion(
                proba,
                images,
                window=(window, window, C),
                strides=(stride, stride, C),
                targets=targets,
            ).values
        ),  # fmt: skip
        "kernel_shap": lambda: xj.kernel_shap(
            proba,
            images,
            masker=xj.maskers.constant(0.0),
            groups=groups,
            key=keys[2],
            num_samples=budget,
            targets=targets,
        ).extras["element_values"],  # fmt: skip
        "partition_shap": lambda: per_pixel(
            xj.partition_shap(
                proba,
                images,
                xj.maskers.image(0.0, (H, W, C)),
                max_evals=budget,
                targets=targets,
            ).extras["element_values"]
        ),  # fmt: skip
        "random (baseline)": lambda: jax.random.uniform(keys[3], (n, H, W)),
    }
    maps, missing = {}, {}
    for name, fn in methods.items():
        public = name.split(" ")[0]
        if public in ("rise", "occlusion", "partition_shap") and not hasattr(xj, public):
            missing[name] = f"xaijax.{public} is not in this checkout"
            print(f"  {name}: skipped ({missing[name]})", flush=True)
            continue
        maps[name] = timed(name, fn)
    return maps, missing, {"occlusion_window": window, "occlusion_stride": stride}


def _lime_map(proba, images, targets, groups, budget, key):
    exp = xj.lime_image(
        proba, images, key=key, num_samples=budget, segments=groups, targets=targets
    )
    heat = np.asarray(exp.extras["heatmap"])
    return heat[..., 0] if heat.ndim == 4 else heat


def auc_stats(curve_auc):
    a = np.asarray(curve_auc, np.float64)
    sem = float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0
    return float(a.mean()), sem


def main(argv=None) -> int:
    args = parse_args(argv or [])
    size = "quick" if args.quick else "full"
    cfg = SIZES[size]
    datasets = [d for d in args.datasets.split(",") if d]
    unknown = sorted(set(datasets) - {"shapes", "faces"})
    if unknown:
        raise ValueError(f"--datasets: unknown {unknown}; choose from shapes, faces")
    root = jax.random.key(args.seed)
    task_keys = dict(zip(("shapes", "faces"), jax.random.split(root, 2), strict=True))
    timings, scores, accuracies, settings, skipped, shown = {}, {}, {}, {}, {}, {}

    for name in datasets:
        print(f"[{name}] train the CNN ({size})", flush=True)
        k_task, k_explain = jax.random.split(task_keys[name])
        start = time.perf_counter()
        task = shapes_task if name == "shapes" else faces_task
        cnn, accuracy, images, slic = task(cfg, k_task, args.seed)
        timings[f"{name}/train_cnn"] = round(time.perf_counter() - start, 3)
        accuracies[name] = accuracy
        print(f"  test accuracy {accuracy:.3f}", flush=True)

        def proba(X, cnn=cnn):
            return jax.nn.softmax(cnn(X), axis=-1)

        targets = np.asarray(proba(images)).argmax(-1)  # explain the predicted class
        groups = xj.superpixel_groups(images, "slic", **slic)
        method_times = {}
        maps, missing, extra = saliency_maps(
            cnn, images, targets, groups, cfg["budget"], jax.random.split(k_explain, 4),
            method_times,
        )  # fmt: skip
        timings.update({f"{name}/{m}": t for m, t in method_times.items()})
        skipped.update({f"{name}/{m}": why for m, why in missing.items()})
        scores[name] = {}
        for method, m in maps.items():
            deletion = metrics.deletion_auc(proba, images, m, targets=targets)
            insertion = metrics.insertion_auc(proba, images, m, targets=targets)
            d_mean, d_sem = auc_stats(deletion.auc)
            i_mean, i_sem = auc_stats(insertion.auc)
            scores[name][method] = {
                "deletion_auc": d_mean,
                "deletion_sem": d_sem,
                "insertion_auc": i_mean,
                "insertion_sem": i_sem,
                "deletion_curve": np.asarray(deletion.scores).mean(0),
                "insertion_curve": np.asarray(insertion.scores).mean(0),
                "deletion_per_image": np.asarray(deletion.auc),
                "insertion_per_image": np.asarray(insertion.auc),
            }
            print(
                f"  {method:18s} deletion {d_mean:.3f} ± {d_sem:.3f}  "
                f"insertion {i_mean:.3f} ± {i_sem:.3f}",
                flush=True,
            )
        settings[name] = {
            "explained_images": len(images),
            "image_shape": list(images.shape[1:]),
            "slic": slic,
            "superpixels_per_image": [int(g.max()) + 1 for g in groups],
            **extra,
        }
        shown[name] = (images[:3], {k: v[:3] for k, v in maps.items()})

    findings = _findings(scores)
    for name, f in findings.items():
        for other, entry in f.get("rise_vs_each_paired", {}).items():
            d, i = entry["deletion"], entry["insertion"]
            print(
                f"  {name}: rise - {other:18s} deletion {d['rise_minus_other']:+.3f} ± "
                f"{d['sem']:.3f}  insertion {i['rise_minus_other']:+.3f} ± {i['sem']:.3f}",
                flush=True,
            )
    results = {
        "experiment": "rise_deletion_insertion",
        "paper": "Petsiuk, Das & Saenko, RISE, BMVC 2018, Table 1 (deletion lower, insertion "
        "higher is better; RISE best of Grad-CAM, sliding window, LIME)",
        "size": size,
        "seed": args.seed,
        "keys": "jax.random.split(jax.random.key(seed), 2) -> per data set; each split into "
        "(data/training, explainers); explainers' key split 4: rise, lime, kernel_shap, random",
        "settings": {
            **{k: v for k, v in cfg.items()},
            "targets": "the class the CNN predicts on the unperturbed image",
            "score": "softmax probability of the target",
            "deletion": "xj.metrics.deletion_auc: 50 steps, pixels set to 0",
            "insertion": "xj.metrics.insertion_auc: 50 steps from a blurred copy",
            "rise": "num_masks = budget, the paper's 8 x 8 grid (default cell_size), p 0.5",
            "lime_image": "num_samples = budget, SLIC segments, mean-colour hiding",
            "kernel_shap": "num_samples = budget, SLIC segments, masker constant(0)",
            "partition_shap": "max_evals = budget, masker image(0.0, shape) (shap's halving)",
            "occlusion": "window H/4 x W/4 x C, stride H/8, baseline 0",
            "per_dataset": settings,
        },
        "test_accuracy": accuracies,
        "scores": scores,
        "findings": findings,
        "skipped": skipped,
        "timings_s": timings,
    }
    path = save_results(args.out, results)
    save_figure(_scores_figure(scores, size, args.seed), args.out, "scores.png")
    save_figure(_maps_figure(shown), args.out, "maps.png")
    print(f"wrote {path}, scores.png, maps.png", flush=True)
    return 0


def _findings(scores):
    """Rankings, and RISE against each method image by image (paired: the same images)."""
    out = {}
    rivals = ("grad_cam", "lime_image", "occlusion")
    for name, s in scores.items():
        methods = [m for m in s if "baseline" not in m]
        by_del = sorted(methods, key=lambda m: s[m]["deletion_auc"])
        by_ins = sorted(methods, key=lambda m: -s[m]["insertion_auc"])
        f = {"deletion_ranking": by_del, "insertion_ranking": by_ins}
        if "rise" in s:
            present = [r for r in rivals if r in s]
            f["rise_beats_paper_rivals_on_deletion"] = all(
                s["rise"]["deletion_auc"] < s[r]["deletion_auc"] for r in present
            )
            f["rise_beats_paper_rivals_on_insertion"] = all(
                s["rise"]["insertion_auc"] > s[r]["insertion_auc"] for r in present
            )
            f["rise_rank_deletion"] = by_del.index("rise") + 1
            f["rise_rank_insertion"] = by_ins.index("rise") + 1
            # Paired differences rise - other over the same images, mean and standard error;
            # "rise_better" only where the difference is beyond two standard errors.
            paired = {}
            for other in s:
                if other == "rise":
                    continue
                entry = {}
                for metric, sign in (("deletion", -1.0), ("insertion", 1.0)):
                    diff = np.asarray(s["rise"][f"{metric}_per_image"]) - np.asarray(
                        s[other][f"{metric}_per_image"]
                    )
                    mean, sem = auc_stats(diff)
                    entry[metric] = {
                        "rise_minus_other": mean,
                        "sem": sem,
                        "rise_better": bool(sign * mean > 2 * sem),
                        "rise_worse": bool(-sign * mean > 2 * sem),
                    }
                paired[other] = entry
            f["rise_vs_each_paired"] = paired
        out[name] = f
    return out


def _scores_figure(scores, size, seed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(scores)
    fig, axes = plt.subplots(
        len(names), 2, figsize=(11, 2.6 * len(names) + 0.8), squeeze=False, sharex="col"
    )
    for row, name in zip(axes, names, strict=True):
        methods = list(scores[name])
        for ax, metric in zip(row, ("deletion", "insertion"), strict=True):
            mean = [scores[name][m][f"{metric}_auc"] for m in methods]
            sem = [scores[name][m][f"{metric}_sem"] for m in methods]
            colours = [
                "tab:red" if m == "rise" else "tab:grey" if "baseline" in m else "tab:blue"
                for m in methods
            ]
            ax.barh(methods, mean, xerr=sem, color=colours)
            ax.invert_yaxis()
            better = "lower" if metric == "deletion" else "higher"
            ax.set_title(f"{name}: {metric} AUC ({better} is better)", fontsize=10)
            ax.set_xlim(0, 1)
    fig.suptitle(f"RISE deletion / insertion game ({size}, seed {seed}; bars: mean ± s.e.)")
    fig.tight_layout()
    return fig


def _maps_figure(shown):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(name, i) for name, (images, _) in shown.items() for i in range(len(images))]
    methods = sorted({m for _, maps in shown.values() for m in maps}, key=METHODS.index)
    fig, axes = plt.subplots(
        len(rows), 1 + len(methods), figsize=(1.5 * (1 + len(methods)), 1.5 * len(rows) + 0.5),
        squeeze=False,
    )  # fmt: skip
    for r, (name, i) in enumerate(rows):
        images, maps = shown[name]
        image = images[i][..., 0] if images.shape[-1] == 1 else images[i]
        axes[r, 0].imshow(image, cmap="gray" if image.ndim == 2 else None)
        axes[r, 0].set_ylabel(name, fontsize=8)
        for c, m in enumerate(methods, start=1):
            if m in maps:
                axes[r, c].imshow(image, cmap="gray" if image.ndim == 2 else None)
                axes[r, c].imshow(maps[m][i], cmap="jet", alpha=0.5)
            if r == 0:
                axes[r, c].set_title(m, fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
