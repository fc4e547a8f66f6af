"""Pixel flipping and token deletion: are LRP's and AttnLRP's maps more faithful?

Claims reproduced:

* Samek, Binder, Montavon, Lapuschkin & Mueller, "Evaluating the Visualization of What a Deep
  Neural Network Has Learned", IEEE TNNLS 2017 (Fig. 4): when the most relevant regions are
  perturbed first, the class score drops faster for LRP heatmaps than for sensitivity
  (gradient) maps.
* Achtibat et al., "AttnLRP: Attention-Aware Layer-Wise Relevance Propagation for
  Transformers", ICML 2024 (Table 1): AttnLRP is more faithful (lower area under the
  perturbation curve, most relevant first) than attention rollout and integrated gradients.

Here: the zoo's CNN on synthetic coloured shapes (32 px, 3 classes; ``cam_localization``'s) with
the LRP composites ``epsilon_plus_flat``, ``epsilon_gamma_box`` (bounds 0, 1) and
``epsilon_alpha2_beta1`` against ``grad_cam``, ``saliency`` (gradient), ``integrated_gradients``
(zero baseline) and a random map, scored by ``xj.metrics.deletion_auc`` (pixels set to 0 in 50
steps, softmax probability of the predicted class); and the zoo's text classifier (sentiment)
with AttnLRP (``lrp(..., composite="attn_lrp", layer="embed")``) against ``attention_rollout``,
``layer_integrated_gradients`` at the embeddings and a random order, scored by token deletion:
the non-padding tokens after ``[CLS]`` replaced by ``[MASK]`` one at a time, most relevant first
(area under the probability curve over the fraction removed; lower is better).

Run:
    xaijax experiment lrp_faithfulness --quick   # test size (seconds)
    xaijax experiment lrp_faithfulness           # full size (CPU: a few minutes)
Writes ``runs/lrp_faithfulness/results.json`` and ``curves.png``.
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
    "quick": dict(shapes_train=64, shapes_epochs=1, images=2, text_n=120, text_epochs=1,
                  text_dim=8, texts=2, ig_steps=4),
    "full": dict(shapes_train=768, shapes_epochs=12, images=64, text_n=600, text_epochs=20,
                 text_dim=32, texts=100, ig_steps=50),
}  # fmt: skip
SHAPES_SIZE = 32
IMAGE_METHODS = (
    "lrp epsilon_plus_flat",
    "lrp epsilon_gamma_box",
    "lrp epsilon_alpha2_beta1",
    "grad_cam",
    "saliency",
    "integrated_gradients",
    "random (baseline)",
)
TEXT_METHODS = ("attn_lrp", "attention_rollout", "layer_integrated_gradients", "random (baseline)")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="xaijax experiment lrp_faithfulness", description=__doc__)
    p.add_argument("--quick", action="store_true", help="test size (seconds)")
    p.add_argument("--out", default=os.path.join("runs", "lrp_faithfulness"))
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _stats(a):
    a = np.asarray(a, np.float64)
    sem = float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0
    return float(a.mean()), sem


def image_maps(cnn, images, targets, ig_steps, key, timings):
    """Every method's ``(n, H, W)`` map of the target class."""

    def timed(name, fn):
        start = time.perf_counter()
        out = np.asarray(jax.block_until_ready(fn()), np.float32)
        timings[f"shapes/{name}"] = round(time.perf_counter() - start, 3)
        return out.sum(-1) if out.ndim == 4 else out

    def lrp(name):
        return lambda: xj.lrp(cnn, images, targets=targets, composite=name, low=0.0, high=1.0)

    methods = {
        **{f"lrp {c}": lrp(c) for c in ("epsilon_plus_flat", "epsilon_gamma_box")},
        "lrp epsilon_alpha2_beta1": lrp("epsilon_alpha2_beta1"),
        "grad_cam": lambda: xj.grad_cam(cnn, "features", images, targets),
        # Sensitivity as Samek et al. 2017: the squared gradient, summed over colour channels.
        "saliency": lambda: np.square(np.asarray(xj.saliency(cnn, images, targets).values)),
        "integrated_gradients": lambda: xj.integrated_gradients(
            cnn, images, targets, num_steps=ig_steps
        ),
        "random (baseline)": lambda: jax.random.uniform(key, images.shape[:3]),
    }
    return {name: timed(name, lambda fn=fn: _values(fn())) for name, fn in methods.items()}


def _values(out):
    return out.values if hasattr(out, "values") else out


def token_deletion(model, ids, targets, relevance, mask_id, pad_id):
    """Probability of the target as the most relevant tokens are masked, one per step.

    Returns ``(auc (n,), curve (n, 11))``: the curve resampled at 0, 10, ..., 100 % of the
    deletable tokens (everything but ``[CLS]`` and padding), so texts of any length average.
    """
    grid = np.linspace(0.0, 1.0, 11)
    aucs, curves = [], []
    for i in range(len(ids)):
        row = ids[i]
        free = np.flatnonzero((row != pad_id) & (np.arange(len(row)) > 0))
        order = free[np.argsort(-relevance[i][free], kind="stable")]
        variants = np.repeat(row[None], len(order) + 1, axis=0)
        for k, pos in enumerate(order):
            variants[k + 1 :, pos] = mask_id
        p = np.asarray(jax.nn.softmax(model(variants), axis=-1))[:, targets[i]]
        x = np.linspace(0.0, 1.0, len(p)) if len(p) > 1 else np.array([0.0])
        curve = np.interp(grid, x, p) if len(p) > 1 else np.full_like(grid, p[0])
        curves.append(curve)
        aucs.append(float(np.trapezoid(curve, grid)))
    return np.asarray(aucs), np.asarray(curves)


def text_relevance(task, ids, targets, ig_steps, key, timings):
    model = task.model

    def timed(name, fn):
        start = time.perf_counter()
        out = np.asarray(jax.block_until_ready(fn()), np.float32)
        timings[f"text/{name}"] = round(time.perf_counter() - start, 3)
        return out

    methods = {
        "attn_lrp": lambda: (
            xj.lrp(model, ids, targets=targets, composite="attn_lrp", layer="embed").values
        ),
        "attention_rollout": lambda: xj.attention_rollout(model, ids, targets=targets).values,
        "layer_integrated_gradients": lambda: (
            xj.layer_integrated_gradients(
                model, "embed", ids, targets=targets, num_steps=ig_steps
            ).values
        ),
        "random (baseline)": lambda: jax.random.uniform(key, ids.shape),
    }
    return {name: timed(name, fn) for name, fn in methods.items()}


def main(argv=None) -> int:
    args = parse_args(argv or [])
    size = "quick" if args.quick else "full"
    cfg = SIZES[size]
    k_data, k_test, k_train, k_rand_img, k_rand_txt = jax.random.split(jax.random.key(args.seed), 5)
    timings, scores, findings = {}, {"shapes": {}, "text": {}}, {}

    # -- images: the shapes CNN, pixel flipping -------------------------------------------------
    start = time.perf_counter()
    train = data.synthetic_shapes(k_data, cfg["shapes_train"], size=SHAPES_SIZE)
    test = data.synthetic_shapes(k_test, cfg["images"], size=SHAPES_SIZE)
    cnn = zoo.build(lambda r: zoo.CNN(3, 3, widths=(16, 32), rngs=r), seed=args.seed)
    zoo.train(
        cnn, train.images, train.labels, key=k_train, epochs=cfg["shapes_epochs"],
        learning_rate=3e-3,
    )  # fmt: skip
    timings["shapes/train_cnn"] = round(time.perf_counter() - start, 3)
    images = np.asarray(test.images, np.float32)
    shapes_accuracy = float(zoo.accuracy(cnn, test.images, test.labels))

    def proba(X):
        return jax.nn.softmax(cnn(X), axis=-1)

    targets = np.asarray(proba(images)).argmax(-1)
    maps = image_maps(cnn, images, targets, cfg["ig_steps"], k_rand_img, timings)
    for name, m in maps.items():
        curve = metrics.deletion_auc(proba, images, m, targets=targets)
        mean, sem = _stats(curve.auc)
        scores["shapes"][name] = {
            "deletion_auc": mean,
            "deletion_sem": sem,
            "deletion_curve": np.asarray(curve.scores).mean(0),
            "deletion_per_image": np.asarray(curve.auc),
        }
        print(f"  shapes {name:26s} deletion AUC {mean:.3f} ± {sem:.3f}", flush=True)

    # -- text: the sentiment classifier, token deletion -----------------------------------------
    start = time.perf_counter()
    task = zoo.text_classifier(
        "sentiment", n=cfg["text_n"], epochs=cfg["text_epochs"], dim=cfg["text_dim"],
        depth=2, seed=args.seed,
    )  # fmt: skip
    timings["text/train"] = round(time.perf_counter() - start, 3)
    ids = np.asarray(task.ids[: cfg["texts"]])
    tok = task.tokenizer
    text_targets = np.asarray(task.model(ids)).argmax(-1)
    relevance = text_relevance(task, ids, text_targets, cfg["ig_steps"], k_rand_txt, timings)
    for name, r in relevance.items():
        auc, curves = token_deletion(task.model, ids, text_targets, r, tok.mask_id, tok.pad_id)
        mean, sem = _stats(auc)
        scores["text"][name] = {
            "deletion_auc": mean,
            "deletion_sem": sem,
            "deletion_curve": curves.mean(0),
            "deletion_per_text": auc,
        }
        print(f"  text {name:28s} deletion AUC {mean:.3f} ± {sem:.3f}", flush=True)

    s, t = scores["shapes"], scores["text"]
    lrp_names = [m for m in s if m.startswith("lrp ")]
    findings["shapes"] = {
        "deletion_ranking": sorted(
            (m for m in s if "baseline" not in m), key=lambda m: s[m]["deletion_auc"]
        ),
        "lrp_beats_sensitivity": {m: s[m]["deletion_auc"] < s["saliency"]["deletion_auc"]
                                  for m in lrp_names},
    }  # fmt: skip
    findings["text"] = {
        "deletion_ranking": sorted(
            (m for m in t if "baseline" not in m), key=lambda m: t[m]["deletion_auc"]
        ),
        "attn_lrp_beats_rollout": t["attn_lrp"]["deletion_auc"]
        < t["attention_rollout"]["deletion_auc"],
        "attn_lrp_beats_layer_ig": t["attn_lrp"]["deletion_auc"]
        < t["layer_integrated_gradients"]["deletion_auc"],
    }
    results = {
        "experiment": "lrp_faithfulness",
        "paper": "Samek et al., TNNLS 2017 (LRP curves drop faster than sensitivity); Achtibat "
        "et al., ICML 2024 (AttnLRP more faithful than rollout and IG)",
        "size": size,
        "seed": args.seed,
        "settings": {
            **cfg,
            "targets": "the class the model predicts on the unperturbed input",
            "score": "softmax probability of the target",
            "pixel_flipping": "xj.metrics.deletion_auc: 50 steps, pixels set to 0 (lower better)",
            "token_deletion": "non-pad tokens after [CLS] -> [MASK], most relevant first; area "
            "under the probability on a 0..100 % grid of 11 points (lower better)",
            "saliency": "squared gradient summed over channels (Samek et al.'s sensitivity)",
            "epsilon_gamma_box": "low 0, high 1 (the images' range)",
        },
        "test_accuracy": {"shapes": shapes_accuracy, "text": float(task.accuracy)},
        "scores": scores,
        "findings": findings,
        "timings_s": timings,
    }
    path = save_results(args.out, results)
    save_figure(_figure(scores, size, args.seed), args.out, "curves.png")
    print(f"wrote {path}, curves.png", flush=True)
    return 0


def _figure(scores, size, seed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, (name, title) in zip(
        axes,
        (("shapes", "pixel flipping (shapes CNN)"), ("text", "token deletion (text)")),
        strict=True,
    ):
        for method, s in scores[name].items():
            c = np.asarray(s["deletion_curve"])
            ax.plot(np.linspace(0, 1, len(c)), c, label=f"{method} ({s['deletion_auc']:.3f})")
        ax.set_title(f"{title}, {size}, seed {seed}")
        ax.set_xlabel("fraction removed, most relevant first")
        ax.set_ylabel("probability of the target")
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
