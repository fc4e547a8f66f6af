"""Token attributions on small transformers: which explainer finds the tokens that matter?

Two questions, on models trained here in seconds (nothing downloaded):

1. **Faithfulness over tokens** (text). The zoo's ``TextTransformer`` is trained on the generated
   sentiment corpus and on the negation corpus (``zoo.text_classifier``; in the negation corpus
   word order decides the label). For held-out sentences and the predicted class, every method
   scores the words (a word's score: the sum over its sub-tokens); the ``k`` best-scored words
   are then replaced by ``[MASK]`` for ``k = 0..K`` and the softmax probability of the class is
   recorded. **AOPC** (area over the perturbation curve; Samek et al. 2017, DeYoung et al.'s
   ERASER "comprehensiveness") is the mean drop ``p(x) - p(x without the top k)`` over
   ``k = 0..K``: higher is better. The random baseline removes words in a random order
   (averaged over several orders). Methods: exact Shapley values, Kernel SHAP and Partition
   SHAP over words (``groups=enc.word_groups()``, ``[MASK]`` masker keeping ``[CLS]`` and
   padding), LIME on the strings, layer integrated gradients and gradient x input at the token
   embedding (``"embed"``), attention rollout (Abnar & Zuidema 2020) and its gradient-weighted
   form (Chefer et al. 2021).
2. **Localisation on images** (ViT vs CNN). A small ``ViT`` (4 x 4 patches) and the CNN of
   ``cam_localization`` are trained on synthetic shapes, whose masks give the object; Grad-CAM
   (the CNN's last convolution; the ViT's last block's tokens reshaped to the patch grid),
   attention rollout on the ViT and input-level integrated gradients on both are scored by the
   pointing game and the energy inside the mask (``xj.metrics``).

Run:
    xaijax experiment token_attribution --quick   # test size (seconds to a minute)
    xaijax experiment token_attribution           # full size (CPU: minutes)
Writes ``runs/token_attribution/results.json`` (AOPC per task and method with standard errors,
pointing game and energy per model and method, seeds, versions, settings, timings) and
``aopc.png`` / ``tokens.png`` / ``vit_vs_cnn.png``.
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
    "quick": dict(n=240, epochs=8, dim=16, depth=1, explain=4, K=3, budget=64, random_orders=4,
                  shapes_train=128, shapes_test=4, cnn_epochs=3, vit_epochs=3, ig_steps=8),
    "full": dict(n=600, epochs=20, dim=32, depth=2, explain=60, K=4, budget=256,
                 random_orders=20, shapes_train=1024, shapes_test=60, cnn_epochs=12,
                 vit_epochs=40, ig_steps=64),
}  # fmt: skip
TASKS = ("sentiment", "negation")
TEXT_METHODS = (
    "exact_shapley",
    "kernel_shap",
    "partition_shap",
    "lime_text",
    "layer_integrated_gradients",
    "layer_gradient_x_input",
    "attention_rollout",
    "gradient_rollout",
    "random (baseline)",
)
IMAGE_METHODS = (
    "cnn/grad_cam",
    "cnn/integrated_gradients",
    "vit/grad_cam",
    "vit/attention_rollout",
    "vit/gradient_rollout",
    "vit/integrated_gradients",
    "random (baseline)",
)
SHAPES_SIZE = 32


def parse_args(argv):
    p = argparse.ArgumentParser(prog="xaijax experiment token_attribution", description=__doc__)
    p.add_argument("--quick", action="store_true", help="test size (seconds to a minute)")
    p.add_argument("--out", default=os.path.join("runs", "token_attribution"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--parts", default="text,images", help="comma-separated: text, images")
    p.add_argument(
        "--tasks", default=",".join(TASKS), help="text tasks, comma-separated: sentiment, negation"
    )
    return p.parse_args(argv)


def _timed(timings, name, fn):
    start = time.perf_counter()
    out = jax.block_until_ready(fn())
    timings[name] = round(time.perf_counter() - start, 3)
    print(f"  {name}: {timings[name]:.2f} s", flush=True)
    return out


def _missing(name):
    """Why a method cannot run in this checkout (an explainer not yet in xaijax), or None."""
    needs = {
        "layer_integrated_gradients": "layer_integrated_gradients",
        "layer_gradient_x_input": "layer_gradient_x_input",
        "attention_rollout": "attention_rollout",
        "gradient_rollout": "attention_rollout",
    }
    public = needs.get(name.split("/")[-1])
    if public and not hasattr(xj, public):
        return f"xaijax.{public} is not in this checkout"
    return None


# -- text ---------------------------------------------------------------------------------------


def word_scores(token_scores, word_ids, num_words):
    """Per-word scores: the sum of each word's sub-token scores; ``(n, W)`` padded with -inf."""
    token_scores = np.asarray(token_scores, np.float64)
    out = np.full((len(num_words), int(max(num_words))), -np.inf)
    for i, W in enumerate(num_words):
        for w in range(W):
            out[i, w] = token_scores[i][word_ids[i] == w].sum()
    return out


def text_scores(task, enc, targets, cfg, keys, timings):
    """Every method's word scores ``(n, W)`` for the target class, and what was skipped."""
    model, tok = task.model, task.tokenizer
    ids, groups = enc.ids, enc.word_groups()
    num_words = [len(w) for w in enc.words]
    masker = xj.maskers.token(tok.mask_id, keep=tok.special_ids)
    max_len = model.max_len

    def proba(X):
        return jax.nn.softmax(model(X), axis=-1)

    def proba_texts(texts):  # LIME's host model: strings in, class probabilities out
        batch = tok.encode(list(texts), max_len=max_len, truncate=True).ids
        return np.asarray(_proba_jit(batch))

    _proba_jit = jax.jit(proba)

    def groups_to_words(values):  # (n, G) over word groups -> (n, W): the words' values
        values = np.asarray(values, np.float64)
        return np.array(
            [
                list(values[i, :W]) + [-np.inf] * (max(num_words) - W)
                for i, W in enumerate(num_words)
            ]
        )

    def lime_words():
        exp = xj.lime_text(
            proba_texts, list(task_texts), key=keys[1], num_samples=cfg["budget"] * 4,
            targets=targets, bow=False, mask_string="[MASK]",
        )  # fmt: skip
        labels = np.asarray(exp.extras["feature_labels"])
        out = np.full((len(num_words), max(num_words)), -np.inf)
        for i, words in enumerate(enc.words):
            # Positional features in word order; lime's split drops punctuation (score 0 here).
            values, j = np.asarray(exp.values[i]), 0
            for w, word in enumerate(words):
                if j < len(labels[i]) and labels[i][j] == word:
                    out[i, w], j = values[j], j + 1
                else:
                    out[i, w] = 0.0
        return out

    task_texts = [" ".join(w) for w in enc.words]
    methods = {
        "exact_shapley": lambda: groups_to_words(
            xj.exact_shapley(proba, ids, masker=masker, groups=groups, targets=targets).values
        ),
        "kernel_shap": lambda: groups_to_words(
            xj.kernel_shap(
                proba,
                ids,
                masker=masker,
                groups=groups,
                targets=targets,
                key=keys[0],
                num_samples=cfg["budget"],
            ).values
        ),  # fmt: skip
        "partition_shap": lambda: groups_to_words(
            xj.partition_shap(
                proba, ids, masker, groups=groups, targets=targets, max_evals=cfg["budget"]
            ).values
        ),
        "lime_text": lime_words,
        "layer_integrated_gradients": lambda: word_scores(
            xj.layer_integrated_gradients(
                model, "embed", ids, targets=targets, num_steps=cfg["ig_steps"]
            ).values,
            enc.word_ids,
            num_words,
        ),
        "layer_gradient_x_input": lambda: word_scores(
            xj.layer_gradient_x_input(model, "embed", ids, targets=targets).values,
            enc.word_ids,
            num_words,
        ),
        "attention_rollout": lambda: word_scores(
            xj.attention_rollout(model, ids).values, enc.word_ids, num_words
        ),
        "gradient_rollout": lambda: word_scores(
            xj.attention_rollout(model, ids, method="gradient", targets=targets).values,
            enc.word_ids,
            num_words,
        ),
    }
    scores, skipped = {}, {}
    for name, fn in methods.items():
        why = _missing(name)
        if why:
            skipped[name] = why
            print(f"  {name}: skipped ({why})", flush=True)
            continue
        scores[name] = _timed(timings, name, fn)
    return scores, skipped


def aopc(proba, enc, scores, targets, K, mask_id):
    """Probability drops ``(n, K + 1)`` as the top ``k`` words (by ``scores``) become [MASK]."""
    rows = []
    for i, words in enumerate(enc.words):
        order = np.argsort(-scores[i][: len(words)], kind="stable")
        for k in range(K + 1):
            x = enc.ids[i].copy()
            x[np.isin(enc.word_ids[i], order[:k])] = mask_id
            rows.append(x)
    p = np.asarray(proba(np.stack(rows)))
    p = p.reshape(len(enc.words), K + 1, -1)[np.arange(len(enc.words)), :, targets]
    return p[:, :1] - p


def _stats(a):
    a = np.asarray(a, np.float64)
    sem = float(a.std(ddof=1) / np.sqrt(len(a))) if len(a) > 1 else 0.0
    return float(a.mean()), sem


def run_text(cfg, seed, timings, skipped_all, tasks=TASKS):
    results, shown = {}, {}
    for t, name in enumerate(TASKS):
        if name not in tasks:
            continue
        print(f"[text/{name}] train the transformer", flush=True)
        task = _timed(
            timings,
            f"{name}/train",
            lambda name=name, t=t: zoo.text_classifier(
                name, n=cfg["n"], epochs=cfg["epochs"], dim=cfg["dim"], depth=cfg["depth"],
                seed=seed + t,
            ),
        )  # fmt: skip
        print(f"  test accuracy {task.accuracy:.3f}", flush=True)
        texts = task.texts[: cfg["explain"]]
        enc = task.tokenizer.encode(texts, max_len=task.model.max_len)
        proba = jax.jit(lambda X, m=task.model: jax.nn.softmax(m(X), axis=-1))
        targets = np.asarray(proba(enc.ids)).argmax(-1)
        keys = jax.random.split(jax.random.key(seed * 100 + t), 3)
        method_times = {}
        scores, skipped = text_scores(task, enc, targets, cfg, keys, method_times)
        timings.update({f"{name}/{m}": v for m, v in method_times.items()})
        skipped_all.update({f"text/{name}/{m}": why for m, why in skipped.items()})
        mask_id, K = task.tokenizer.mask_id, cfg["K"]
        per_method = {}
        for method, s in scores.items():
            drops = aopc(proba, enc, s, targets, K, mask_id)
            per_method[method] = drops
        rng = np.random.default_rng(seed + t)
        random_drops = np.mean(
            [
                aopc(proba, enc, rng.random((len(texts), max(len(w) for w in enc.words))),
                     targets, K, mask_id)
                for _ in range(cfg["random_orders"])
            ],
            axis=0,
        )  # fmt: skip
        per_method["random (baseline)"] = random_drops
        table = {}
        for method, drops in per_method.items():
            mean, sem = _stats(drops.mean(axis=1))
            table[method] = {
                "aopc": mean,
                "aopc_sem": sem,
                "curve": drops.mean(axis=0),
                "aopc_per_text": drops.mean(axis=1),
            }
            print(f"  {method:28s} AOPC {mean:.3f} ± {sem:.3f}", flush=True)
        results[name] = {
            "test_accuracy": task.accuracy,
            "explained_texts": len(texts),
            "aopc": table,
            "ranking": sorted(
                (m for m in table if "baseline" not in m), key=lambda m: -table[m]["aopc"]
            ),
        }
        shown[name] = (enc, {m: s[:3] for m, s in scores.items()})
    return results, shown


# -- images -------------------------------------------------------------------------------------


def run_images(cfg, seed, timings, skipped_all):
    k_train, k_test, k_cnn, k_vit, k_random = jax.random.split(jax.random.key(seed + 7), 5)
    train = data.synthetic_shapes(k_train, cfg["shapes_train"], size=SHAPES_SIZE)
    test = data.synthetic_shapes(k_test, cfg["shapes_test"], size=SHAPES_SIZE)
    print("[images] train the CNN and the ViT on synthetic shapes", flush=True)
    cnn = zoo.build(lambda r: zoo.CNN(3, 3, widths=(16, 32), rngs=r), seed=seed)
    _timed(timings, "images/train_cnn", lambda: zoo.train(
        cnn, train.images, train.labels, key=k_cnn, epochs=cfg["cnn_epochs"], learning_rate=3e-3
    ))  # fmt: skip
    vit = zoo.build(
        lambda r: zoo.ViT(SHAPES_SIZE, 4, 3, 3, dim=32, depth=2, heads=2, mlp_dim=64, rngs=r),
        seed=seed,
    )
    _timed(timings, "images/train_vit", lambda: zoo.train(
        vit, train.images, train.labels, key=k_vit, epochs=cfg["vit_epochs"], learning_rate=1e-3
    ))  # fmt: skip
    accuracy = {
        "cnn": zoo.accuracy(cnn, test.images, test.labels),
        "vit": zoo.accuracy(vit, test.images, test.labels),
    }
    print(f"  test accuracy CNN {accuracy['cnn']:.3f}  ViT {accuracy['vit']:.3f}", flush=True)
    images, masks, labels = test.images, test.masks, test.labels
    grid = SHAPES_SIZE // 4

    def upsample(maps):  # (n, h, w) patch-grid maps -> (n, H, W), nearest
        maps = np.asarray(maps)
        return np.repeat(
            np.repeat(maps, SHAPES_SIZE // maps.shape[1], 1), SHAPES_SIZE // maps.shape[2], 2
        )

    def rollout_map(method):
        kwargs = {} if method == "rollout" else {"method": "gradient", "targets": labels}
        exp = xj.attention_rollout(vit, images, **kwargs)
        if "grid" in exp.extras:
            return upsample(exp.extras["grid"])
        return upsample(np.asarray(exp.values)[:, 1:].reshape(-1, grid, grid))

    def ig_map(model):
        exp = xj.integrated_gradients(model, images, targets=labels, num_steps=cfg["ig_steps"])
        return np.abs(np.asarray(exp.values)).sum(-1)

    methods = {
        "cnn/grad_cam": lambda: xj.grad_cam(cnn, "features", images, labels).values,
        "cnn/integrated_gradients": lambda: ig_map(cnn),
        "vit/grad_cam": lambda: (
            xj.grad_cam(vit, "blocks/1/norm1", images, labels, reshape=True).values
        ),
        "vit/attention_rollout": lambda: rollout_map("rollout"),
        "vit/gradient_rollout": lambda: rollout_map("gradient"),
        "vit/integrated_gradients": lambda: ig_map(vit),
        "random (baseline)": lambda: jax.random.uniform(k_random, masks.shape),
    }
    table, maps = {}, {}
    for name, fn in methods.items():
        why = _missing(name)
        if why is None and name == "vit/grad_cam":
            why = _reshape_support()
        if why:
            skipped_all[f"images/{name}"] = why
            print(f"  {name}: skipped ({why})", flush=True)
            continue
        m = np.asarray(_timed(timings, f"images/{name}", fn), np.float32)
        if m.shape[1:] != masks.shape[1:]:
            m = np.asarray(jax.image.resize(m, (len(m),) + masks.shape[1:], "linear"))
        maps[name] = m
        pg_mean, pg_sem = _stats(metrics.pointing_game(m, masks))
        en_mean, en_sem = _stats(metrics.energy_in_mask(m, masks))
        table[name] = {
            "pointing_game": pg_mean,
            "pointing_game_sem": pg_sem,
            "energy_in_mask": en_mean,
            "energy_in_mask_sem": en_sem,
        }
        print(
            f"  {name:26s} pointing {pg_mean:.3f} ± {pg_sem:.3f}  energy {en_mean:.3f} ± "
            f"{en_sem:.3f}",
            flush=True,
        )
    return {"test_accuracy": accuracy, "scores": table}, (images[:3], masks[:3], maps)


def _reshape_support():
    import inspect

    if "reshape" not in inspect.signature(xj.grad_cam).parameters:
        return "xaijax.grad_cam has no reshape= (token grids) in this checkout"
    return None


def main(argv=None) -> int:
    args = parse_args(argv or [])
    size = "quick" if args.quick else "full"
    cfg = SIZES[size]
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - {"text", "images"})
    if unknown:
        raise ValueError(f"--parts: unknown {unknown}; choose from text, images")
    timings, skipped = {}, {}
    results = {
        "experiment": "token_attribution",
        "papers": "AOPC: Samek et al. 2017 / DeYoung et al. 2020 (ERASER comprehensiveness); "
        "attention rollout: Abnar & Zuidema 2020; gradient rollout: Chefer et al. 2021; "
        "pointing game: Zhang et al. 2018",
        "size": size,
        "seed": args.seed,
        "keys": "text task t: jax.random.split(key(seed * 100 + t), 3) -> kernel_shap, lime; "
        "images: jax.random.split(key(seed + 7), 5) -> train data, test data, CNN, ViT, random",
        "settings": {
            **cfg,
            "targets": "the class the model predicts on the unperturbed input",
            "text_score": "softmax probability of the target",
            "aopc": "mean over k = 0..K of p(x) - p(x with its top-k words set to [MASK])",
            "word_score": "sum of the word's sub-token scores (groups: the word's value)",
            "shapley_masker": "maskers.token(mask_id, keep=special_ids), groups = word groups",
            "kernel_shap": "num_samples = budget",
            "partition_shap": "max_evals = budget (contiguous halving over words)",
            "lime_text": "num_samples = 4 * budget, on the strings, positional features "
            "(bow=False), hidden words replaced by [MASK]",
            "layer_methods": "layer 'embed' (token embedding), zero baseline, sum over dim",
            "vit": "32 px, 4 x 4 patches, dim 32, depth 2; Grad-CAM at blocks/1/norm1",
            "cnn": "zoo.CNN(widths=(16, 32)); Grad-CAM at features",
        },
    }
    shown_text = shown_images = None
    tasks = [t for t in args.tasks.split(",") if t]
    if sorted(set(tasks) - set(TASKS)):
        raise ValueError(f"--tasks: unknown {sorted(set(tasks) - set(TASKS))}; choose from {TASKS}")
    if "text" in parts:
        results["text"], shown_text = run_text(cfg, args.seed, timings, skipped, tasks)
    if "images" in parts:
        results["images"], shown_images = run_images(cfg, args.seed, timings, skipped)
    results["skipped"] = skipped
    results["timings_s"] = timings
    path = save_results(args.out, results)
    figures = []
    if shown_text is not None:
        save_figure(_aopc_figure(results["text"], size, args.seed), args.out, "aopc.png")
        save_figure(_tokens_figure(shown_text), args.out, "tokens.png")
        figures += ["aopc.png", "tokens.png"]
    if shown_images is not None:
        save_figure(_images_figure(results["images"], shown_images), args.out, "vit_vs_cnn.png")
        figures.append("vit_vs_cnn.png")
    print(f"wrote {path}, {', '.join(figures)}", flush=True)
    return 0


def _aopc_figure(text, size, seed):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(text), figsize=(6 * len(text), 3.6), squeeze=False)
    for ax, (name, r) in zip(axes[0], text.items(), strict=True):
        methods = list(r["aopc"])
        mean = [r["aopc"][m]["aopc"] for m in methods]
        sem = [r["aopc"][m]["aopc_sem"] for m in methods]
        colours = ["tab:grey" if "baseline" in m else "tab:blue" for m in methods]
        ax.barh(methods, mean, xerr=sem, color=colours)
        ax.invert_yaxis()
        ax.set_title(f"{name} (accuracy {r['test_accuracy']:.2f}): AOPC, higher is better")
    fig.suptitle(f"Deleting the top-k words ({size}, seed {seed}; mean ± s.e.)")
    fig.tight_layout()
    return fig


def _tokens_figure(shown):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for name, (enc, scores) in shown.items():
        for i in range(min(2, len(enc.words))):
            for method, s in scores.items():
                rows.append(
                    (f"{name}/{method}", enc.words[i], np.asarray(s[i][: len(enc.words[i])]))
                )
    fig, ax = plt.subplots(figsize=(11, 0.32 * len(rows) + 0.8))
    ax.set_xlim(0, 1)
    ax.set_ylim(len(rows), 0)
    ax.axis("off")
    for r, (label, words, s) in enumerate(rows):
        scale = np.abs(s[np.isfinite(s)]).max(initial=0.0) or 1.0
        ax.text(0.0, r + 0.5, label, fontsize=7, va="center")
        x = 0.32
        for w, v in zip(words, s, strict=True):
            colour = plt.cm.bwr(0.5 + 0.5 * float(v) / scale)
            t = ax.text(x, r + 0.5, w, fontsize=8, va="center", family="monospace",
                        bbox=dict(facecolor=colour, edgecolor="none", pad=1.0))  # fmt: skip
            x += 0.012 * (len(w) + 1.5)
        del t
    ax.set_title("Word scores per method (red: for the predicted class, blue: against; "
                 "each row scaled to its largest |score|)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return fig


def _images_figure(results, shown):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images, masks, maps = shown
    methods = [m for m in IMAGE_METHODS if m in maps]
    fig, axes = plt.subplots(
        len(images), 1 + len(methods), figsize=(1.6 * (1 + len(methods)), 1.7 * len(images) + 0.6),
        squeeze=False,
    )  # fmt: skip
    for r in range(len(images)):
        axes[r, 0].imshow(images[r])
        axes[r, 0].contour(masks[r], levels=[0.5], colors="white", linewidths=0.8)
        for c, m in enumerate(methods, start=1):
            axes[r, c].imshow(images[r])
            axes[r, c].imshow(maps[m][r], cmap="jet", alpha=0.5)
            if r == 0:
                pg = results["scores"][m]["pointing_game"]
                axes[r, c].set_title(f"{m}\npointing {pg:.2f}", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
