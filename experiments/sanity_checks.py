"""Sanity checks for saliency maps: model-parameter and data randomisation tests.

Claim reproduced (Adebayo et al., "Sanity Checks for Saliency Maps", NeurIPS 2018, figures 2-5):
an explanation that explains the model must change when the model is destroyed. Re-initialising
the layers from the top down (cascading randomisation), the maps of gradients and Grad-CAM lose
their rank correlation with the trained model's maps, while guided backpropagation and Guided
Grad-CAM stay similar (they behave like edge detectors of the input). The data-randomisation test
retrains the same architecture on permuted labels; a faithful method's maps differ between the two
models.

Setup: a small CNN (``xaijax.zoo.CNN``: two conv blocks, the CAM layer ``features``, a dense
head) trained on synthetic shapes. Methods: saliency (gradients), Integrated Gradients, Grad-CAM,
guided backprop, Guided Grad-CAM, each explaining the true class. Similarity: Spearman rank
correlation per image, with and without absolute values, averaged over images.

Run:
    xaijax experiment sanity_checks --quick     # CPU, a few minutes
    xaijax experiment sanity_checks             # full size, for a GPU
Writes ``runs/sanity_checks/results.json``, ``correlation_vs_layer.png`` and ``maps_by_layer.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import xaijax as xj  # noqa: E402
from xaijax import metrics, plots, zoo  # noqa: E402
from xaijax.cli.runs import versions
from xaijax.zoo import data  # noqa: E402

SIZES = {
    # train images, epochs, explained test images, Integrated Gradients steps
    "tiny": dict(train=64, epochs=2, test=3, ig_steps=4),
    "quick": dict(train=512, epochs=12, test=16, ig_steps=32),
    "full": dict(train=3000, epochs=25, test=100, ig_steps=64),
}
IMAGE_SIZE = 32
NUM_CLASSES = 3
GUIDED = ("guided backprop", "Guided Grad-CAM")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="xaijax experiment sanity_checks", description=__doc__)
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="CPU size (minutes)")
    size.add_argument("--tiny", action="store_true", help="test size (seconds)")
    p.add_argument("--out", default=os.path.join("runs", "sanity_checks"))
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def timed(timings, label, fn):
    start = time.perf_counter()
    result = jax.block_until_ready(fn())
    timings[label] = round(time.perf_counter() - start, 3)
    print(f"  {label}: {timings[label]:.2f} s", flush=True)
    return result


def as_heatmap(a):
    """One image's map as ``(H, W)``: ``|values|`` summed over colour channels where present."""
    return np.abs(a).sum(-1) if a.ndim == 3 else a


def ssim_abs(a, b):
    """Mean SSIM of ``|a|`` and ``|b|`` per image, each scaled to [0, 1] (Adebayo et al.'s SSIM)."""
    from skimage.metrics import structural_similarity

    def unit(m):
        m = as_heatmap(m)
        return m / m.max() if m.max() > 0 else m

    return float(
        np.mean(
            [
                structural_similarity(unit(x), unit(y), data_range=1.0)
                for x, y in zip(np.abs(a), np.abs(b), strict=True)
            ]
        )
    )


def main(argv=None) -> int:
    args = parse_args(argv or [])
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    cfg = SIZES[size]
    os.makedirs(args.out, exist_ok=True)
    timings: dict = {}
    k_train_data, k_test_data, k_train, k_perm, k_train_perm, k_randomize = jax.random.split(
        jax.random.key(args.seed), 6
    )

    # 1. A CNN trained on true labels, and the same architecture trained on permuted labels.
    print(f"[1/4] synthetic shapes ({size}): train on true and on permuted labels", flush=True)
    train = data.synthetic_shapes(k_train_data, cfg["train"], size=IMAGE_SIZE)
    test = data.synthetic_shapes(k_test_data, cfg["test"], size=IMAGE_SIZE)

    def make():
        return zoo.build(lambda r: zoo.CNN(3, NUM_CLASSES, widths=(16, 32), rngs=r), seed=args.seed)

    cnn = make()
    timed(
        timings,
        "train",
        lambda: zoo.train(
            cnn, train.images, train.labels, key=k_train, epochs=cfg["epochs"], learning_rate=3e-3
        ),
    )
    permuted = np.asarray(jax.random.permutation(k_perm, train.labels))
    cnn_permuted = make()
    timed(
        timings,
        "train_permuted_labels",
        lambda: zoo.train(
            cnn_permuted,
            train.images,
            permuted,
            key=k_train_perm,
            epochs=cfg["epochs"],
            learning_rate=3e-3,
        ),
    )
    models = {
        "test_accuracy": zoo.accuracy(cnn, test.images, test.labels),
        "permuted_labels_train_accuracy": zoo.accuracy(cnn_permuted, train.images, permuted),
        "permuted_labels_test_accuracy": zoo.accuracy(cnn_permuted, test.images, test.labels),
    }
    print(f"  {models}", flush=True)

    # 2. The methods, each a function of the model: (n, H, W, C) or (n, H, W) true-class maps.
    images, targets = test.images, test.labels
    methods = {
        "saliency": lambda m: xj.saliency(m, images, targets).values,
        "Integrated Gradients": lambda m: (
            xj.integrated_gradients(m, images, targets, num_steps=cfg["ig_steps"]).values
        ),
        "Grad-CAM": lambda m: xj.grad_cam(m, "features", images, targets).values,
        "guided backprop": lambda m: xj.guided_backprop(m, images, targets).values,
        "Guided Grad-CAM": lambda m: xj.guided_grad_cam(m, "features", images, targets).values,
    }

    # 3. Cascading randomisation from the logits down; every map kept for the figure.
    print("[2/4] cascading model-parameter randomisation", flush=True)
    cascading, maps_by_stage, layers = {}, {}, None
    for name, explain in methods.items():
        seen = []

        def recording(m, explain=explain, seen=seen):
            maps = np.asarray(explain(m))
            seen.append(maps)
            return maps

        # The same key for every method: all methods see the same randomised weights.
        out = timed(
            timings,
            f"cascading {name}",
            lambda recording=recording: metrics.cascading_randomization(
                cnn, recording, key=k_randomize
            ),
        )
        layers = out["layers"]
        cascading[name] = {
            "spearman": np.asarray(out["spearman"]).mean(1).tolist(),
            "spearman_abs": np.asarray(out["spearman_abs"]).mean(1).tolist(),
            "ssim_abs": [ssim_abs(seen[0], later) for later in seen[1:]],
        }
        maps_by_stage[name] = seen
        print(
            f"    {name}: spearman {np.round(cascading[name]['spearman'], 3).tolist()}, "
            f"abs {np.round(cascading[name]['spearman_abs'], 3).tolist()}, "
            f"SSIM {np.round(cascading[name]['ssim_abs'], 3).tolist()}",
            flush=True,
        )

    # 4. Data randomisation: the same method on the permuted-label model.
    print("[3/4] data randomisation (permuted labels)", flush=True)
    data_randomization = {}
    for name, explain in methods.items():
        original = maps_by_stage[name][0]
        other = np.asarray(explain(cnn_permuted))
        data_randomization[name] = {
            "spearman": float(metrics.spearman(original, other).mean()),
            "spearman_abs": float(metrics.spearman(np.abs(original), np.abs(other)).mean()),
            "ssim_abs": ssim_abs(original, other),
        }
        print(f"    {name}: {data_randomization[name]}", flush=True)

    # The paper's finding: after randomising every layer, guided methods remain more similar to
    # the trained model's maps than Grad-CAM and gradients do (|.| correlations, as in figure 2).
    final_abs = {name: c["spearman_abs"][-1] for name, c in cascading.items()}
    final_ssim = {name: c["ssim_abs"][-1] for name, c in cascading.items()}
    top_abs = {name: c["spearman_abs"][0] for name, c in cascading.items()}
    others = ("Grad-CAM", "saliency")
    findings = {
        "final_spearman_abs": final_abs,
        "after_top_layer_spearman_abs": top_abs,
        "guided_more_similar_than_grad_cam_and_gradients_after_full_randomization": bool(
            min(final_abs[g] for g in GUIDED) > max(final_abs[o] for o in others)
        ),
        "guided_more_similar_than_grad_cam_and_gradients_by_ssim": bool(
            min(final_ssim[g] for g in GUIDED) > max(final_ssim[o] for o in others)
        ),
        "final_ssim_abs": final_ssim,
        "grad_cam_drops_after_full_randomization": bool(
            cascading["Grad-CAM"]["spearman_abs"][-1] < 0.5
        ),
        "note": "spearman values are means over images; 1.0 = identical ranking to the trained "
        "model's maps (before randomisation)",
    }

    # 5. Figures: correlation vs randomised layer, and the maps of one image as layers go.
    print("[4/4] figures and results.json", flush=True)
    stages = ["none", *layers]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4), sharey=True)
    for ax, kind in zip(axes, ("spearman", "spearman_abs", "ssim_abs"), strict=True):
        for name, c in cascading.items():
            style = "--" if name in GUIDED else "-"
            ax.plot(stages, [1.0, *c[kind]], style, marker="o", label=name)
        ax.axhline(0.0, color="grey", lw=0.5)
        ax.set_title(f"cascading randomisation: {kind.replace('_', ' ')}")
        ax.set_xlabel("randomised up to layer (from the logits down)")
        ax.tick_params(axis="x", rotation=30)
    axes[0].set_ylabel("rank correlation with the trained model's maps")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "correlation_vs_layer.png"), dpi=110)
    plt.close(fig)

    # Rows: methods; columns: randomisation stages; all for the first test image (|map|).
    fig = plots.image_grid(
        np.repeat(images[:1], len(methods), axis=0),
        {
            stage: np.stack([as_heatmap(maps_by_stage[name][s][0]) for name in methods])
            for s, stage in enumerate(stages)
        },
        row_titles=list(methods),
        title="maps of one image as layers are randomised (columns: randomised up to)",
    )
    fig.savefig(os.path.join(args.out, "maps_by_layer.png"), dpi=110)
    plt.close(fig)

    results = {
        "experiment": "sanity_checks",
        "paper": "Adebayo et al., Sanity Checks for Saliency Maps, NeurIPS 2018",
        "size": size,
        "seed": args.seed,
        "keys": "jax.random.split(jax.random.key(seed), 6): train data, test data, training, "
        "label permutation, training on permuted labels, layer randomisation",
        "versions": versions(),
        "settings": {
            **cfg,
            "image_size": IMAGE_SIZE,
            "num_classes": NUM_CLASSES,
            "cam_layer": "features",
            "targets": "true labels",
            "randomised_layers_in_order": layers,
            "reinitialisation": "kernels LeCun-normal, biases 0 (metrics.cascading_randomization)",
        },
        "models": models,
        "cascading_randomization": {"layers": layers, **cascading},
        "data_randomization": data_randomization,
        "findings": findings,
        "timings_s": timings,
    }
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(results, fh, indent=2)
    print(f"wrote {args.out}/results.json and figures", flush=True)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
