"""The image LIME pipeline, step by step, on real photos (faces vs non-faces).

A CNN is trained on scikit-image's ``lfw_subset`` (100 faces, 100 non-faces, upsampled to 64 px).
For a test face: SLIC superpixels (about 75), 1000 perturbations that each hide about 20% of the
segments (grey), the model's face probability on each, kernel weights from the fraction hidden,
a weighted linear fit (``xaijax.solve.fit_surrogate``, the mechanism LIME and Kernel SHAP share),
and the heatmap of the positive weights over the image. Each step gets a figure.

    xaijax experiment image_lime [--quick] [--out runs/image_lime] [--seed 0]

References:
    Ribeiro, Singh & Guestrin, "Why Should I Trust You?", KDD 2016.
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from xaijax import zoo
from xaijax.cli.runs import save_figure, save_results
from xaijax.core.batching import evaluate
from xaijax.core.lstsq import fit_surrogate
from xaijax.core.model import as_model
from xaijax.zoo import data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Image LIME, step by step, on lfw faces")
    parser.add_argument("--quick", action="store_true", help="fewer epochs and samples")
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--hide", type=float, default=0.2, help="fraction of segments hidden")
    parser.add_argument("--segments", type=int, default=75)
    parser.add_argument("--kernel-width", type=float, default=0.25)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--size", type=int, default=64, help="image side after upsampling")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("runs", "image_lime"))
    args = parser.parse_args(argv)
    num_samples = args.num_samples or (300 if args.quick else 1000)
    epochs = args.epochs or (10 if args.quick else 30)
    k_split, k_train, k_masks = jax.random.split(jax.random.key(args.seed), 3)
    timings = {}

    # 1. Real photos: faces (label 1) and non-faces, upsampled; a held-out quarter for testing.
    ds = data.lfw_faces()
    from skimage.transform import resize

    size = args.size
    images = np.stack([resize(im, (size, size), order=1) for im in ds.images]).astype(np.float32)
    order = np.asarray(jax.random.permutation(k_split, len(images)))
    train, test = order[:150], order[150:]
    cnn = zoo.build(lambda r: zoo.CNN(1, 2, widths=(16, 32, 32), rngs=r), seed=args.seed)
    start = time.perf_counter()
    zoo.train(
        cnn,
        images[train],
        ds.labels[train],
        key=k_train,
        epochs=epochs,
        learning_rate=3e-3,
        batch_size=32,
    )
    timings["train_cnn"] = time.perf_counter() - start
    accuracy = zoo.accuracy(cnn, images[test], ds.labels[test])

    def face_probability(X):
        return jax.nn.softmax(cnn(X), axis=-1)[:, 1]

    # 2. The explained image: the test face the model is most confident about.
    faces = test[ds.labels[test] == 1]
    p_faces = np.asarray(face_probability(jnp.asarray(images[faces])))
    index = int(faces[np.argmax(p_faces)])
    image = images[index]

    # 3. Superpixels (SLIC on the grey image).
    from skimage.segmentation import slic

    segments = slic(
        image[..., 0], n_segments=args.segments, compactness=0.1, channel_axis=None, start_label=0
    )
    num_segments = int(segments.max()) + 1

    # 4. Perturbations: each keeps a segment with probability 1 - hide; the first keeps all.
    keep = jax.random.bernoulli(k_masks, 1.0 - args.hide, (num_samples, num_segments))
    keep = keep.at[0].set(True)
    grey = float(image.mean())

    def perturb(rows):
        pixel_keep = keep[rows][:, jnp.asarray(segments)]  # (c, H, W)
        return jnp.where(pixel_keep[..., None], jnp.asarray(image)[None], grey)

    model, params = as_model(face_probability, images[:2])
    start = time.perf_counter()
    probs = _chunked_probabilities(model, params, perturb, num_samples)
    timings["model_evaluations"] = time.perf_counter() - start

    # 5. Kernel weights from the fraction hidden (LIME's cosine distance to the all-kept vector,
    #    which for binary masks depends only on that fraction), and the weighted linear fit.
    Z = np.asarray(keep, np.float32)
    cosine = 1.0 - Z.sum(1) / (np.sqrt(Z.sum(1)) * np.sqrt(num_segments) + 1e-12)
    weights = np.sqrt(np.exp(-(cosine**2) / args.kernel_width**2))
    fit = fit_surrogate(Z, probs, weights, ridge=1.0, solver="cholesky")
    coef = np.asarray(fit.coef)
    heatmap = coef[segments]

    # Faithfulness of the segment ranking: hide the top segments first, watch P(face) fall.
    ranked = np.argsort(-coef)
    deletion = []
    for k in range(0, min(num_segments, 10) + 1):
        mask = np.ones(num_segments, bool)
        mask[ranked[:k]] = False
        masked = np.where(mask[segments][..., None], image, grey)
        deletion.append(float(face_probability(jnp.asarray(masked[None]))[0]))

    results = {
        "experiment": "image_lime",
        "seed": args.seed,
        "settings": {
            "image_size": size,
            "num_samples": num_samples,
            "hide_fraction": args.hide,
            "slic_segments_requested": args.segments,
            "kernel_width": args.kernel_width,
            "epochs": epochs,
            "train_images": len(train),
            "test_images": len(test),
        },
        "cnn_test_accuracy": accuracy,
        "explained_image": {"index": index, "p_face": float(np.max(p_faces))},
        "num_segments": num_segments,
        "mean_fraction_hidden": float(1.0 - Z[1:].mean()),
        "surrogate_r2": float(fit.score),
        "top_segments": ranked[:5],
        "p_face_as_top_segments_are_hidden": deletion,
        "timings_s": timings,
    }
    path = save_results(args.out, results)
    save_figure(
        _figure(image, segments, keep, probs, weights, heatmap, deletion, grey),
        args.out,
        "image_lime_steps.png",
    )
    print(
        f"CNN test accuracy {accuracy:.3f}; {num_segments} segments; surrogate R2 "
        f"{float(fit.score):.3f}; P(face) hiding top segments: {np.round(deletion[:6], 3)}"
    )
    print(f"wrote {path}")
    return 0


def _chunked_probabilities(model, params, perturb, num_samples, chunk=256):
    out = []
    for start in range(0, num_samples, chunk):
        rows = jnp.arange(start, min(start + chunk, num_samples))
        out.append(np.asarray(evaluate(model, params, perturb(rows))))
    probs = np.concatenate(out)
    if not np.all(np.isfinite(probs)):
        raise ValueError("the model returned NaN or inf on perturbed images")
    return probs


def _figure(image, segments, keep, probs, weights, heatmap, deletion, grey):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from skimage.segmentation import mark_boundaries

    fig, axes = plt.subplots(1, 6, figsize=(18, 3.4))
    axes[0].imshow(image[..., 0], cmap="gray")
    axes[0].set_title("explained face", fontsize=9)
    axes[1].imshow(mark_boundaries(np.repeat(image, 3, -1), segments))
    axes[1].set_title(f"SLIC: {segments.max() + 1} superpixels", fontsize=9)
    example = np.where(np.asarray(keep[1])[segments][..., None], image, grey)
    axes[2].imshow(example[..., 0], cmap="gray", vmin=0, vmax=1)
    axes[2].set_title(f"a perturbation: P(face) {probs[1]:.2f}", fontsize=9)
    axes[3].scatter(1.0 - np.asarray(keep, float).mean(1), probs, c=weights, s=8, cmap="viridis")
    axes[3].set_xlabel("fraction hidden")
    axes[3].set_ylabel("P(face)")
    axes[3].set_title("samples (colour: kernel weight)", fontsize=9)
    axes[4].imshow(image[..., 0], cmap="gray")
    axes[4].imshow(np.maximum(heatmap, 0), cmap="jet", alpha=0.5)
    axes[4].set_title("positive surrogate weights", fontsize=9)
    axes[5].plot(range(len(deletion)), deletion, marker="o")
    axes[5].set_xlabel("top segments hidden")
    axes[5].set_ylabel("P(face)")
    axes[5].set_title("deletion of the top segments", fontsize=9)
    for ax in axes[[0, 1, 2, 4]]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    raise SystemExit(main())
