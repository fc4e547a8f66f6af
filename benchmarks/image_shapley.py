"""Image Shapley values: xaijax against shap's image recipes and the model-evaluation floor.

One 224x224x3 photo per explained image (scikit-image's samples), about 50 SLIC superpixels
each (``xj.superpixel_groups(images, "slic", n_segments=70)``: 36 to 52 on the first four
photos), and one small NNX CNN (three stride-2 3x3 convolutions of 16, 32 and 64 channels,
global average pooling, 10 softmax outputs; untrained: timing does not depend on the weights),
called by both libraries: shap gets the same compiled JAX model through a NumPy wrapper that
feeds it fixed-size chunks (Kernel: the 13 images of 224x224x3 xaijax's CPU chunks hold;
Partition: shap's batches of ``--shap-batch`` masks, 10, as our ``evals_per_step``).

Cases, each at an equal number of model evaluations per image:

* ``kernel``: ``xj.kernel_shap(cnn, images, masker=constant(0) | blur(8), groups=superpixels,
  num_samples=S)`` against ``shap.KernelExplainer`` over segments, shap's image recipe: a
  function mapping 0/1 segment vectors to masked images (hidden segments take 0, or the image's
  8x8 box blur), explained at the all-ones vector with the background ``zeros((1, G))``, ``S``
  coalitions, no feature selection (``l1_reg=False``, as ours);
* ``partition``: ``xj.partition_shap(cnn, images, masker=xj.maskers.image(0.0, (224, 224, 3)),
  max_evals=E)`` against ``shap.PartitionExplainer(model, shap.maskers.Image(0.0, (224, 224,
  3)))`` at ``E`` = 500 and 2000 (skipped, with the reason recorded, where ``partition_shap``
  is not in the library).

Occlusion and RISE, on the same kind of model, are timed by ``benchmarks/perturbation.py``.

The floor is the compiled model alone on as many 224x224 images per explained image as the
explainer evaluates (coalitions or evaluations), in the same chunks, the images built in
advance (the chunk loop reads them from two stored images, as ``benchmarks/lime.py``'s floor).
Times are the best of ``--repeats`` interleaved calls after a compiling call; shap's is one pass
over ``--shap-images`` images (its model wrapper compiled beforehand, and for Partition one small
call first: shap's partition code and image masker are numba functions compiled on first use,
2-3 s that earlier runs of this script counted in shap's time at the first budget).
``--model light`` swaps the CNN for one 8x8 stride-8 convolution (about 14x cheaper), where the
explainers' own work shows; it writes ``image_shapley-<backend>-light.json``.

    python -m benchmarks.image_shapley [--images 4] [--shap-images 1] [--num-samples 1000]
        [--max-evals 500,2000] [--cases kernel,partition] [--repeats 3] [--model cnn|light]

Writes ``benchmarks/results/image_shapley-<backend>.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks.common import environment, memory

HERE = os.path.dirname(os.path.abspath(__file__))
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "retina")
CLASSES = 10


class SmallCNN(nnx.Module):
    """Three stride-2 3x3 convolutions (16, 32, 64 channels), GAP, a dense softmax head."""

    def __init__(self, *, rngs: nnx.Rngs):
        widths = (3, 16, 32, 64)
        convs = [
            nnx.Conv(a, b, (3, 3), strides=(2, 2), rngs=rngs)
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        ]
        self.convs = nnx.List(convs) if hasattr(nnx, "List") else convs
        self.head = nnx.Linear(widths[-1], CLASSES, rngs=rngs)

    def __call__(self, x):
        for conv in self.convs:
            x = jax.nn.relu(conv(x))
        return jax.nn.softmax(self.head(x.mean(axis=(1, 2))), axis=-1)


class LightCNN(nnx.Module):
    """One 8x8 stride-8 convolution (16 channels), GAP, a dense softmax head: a model about 14x
    cheaper than :class:`SmallCNN` at 224 px, where the explainer's own work shows."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, 16, (8, 8), strides=(8, 8), rngs=rngs)
        self.head = nnx.Linear(16, CLASSES, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.conv(x))
        return jax.nn.softmax(self.head(x.mean(axis=(1, 2))), axis=-1)


MODELS = {
    "cnn": (
        SmallCNN,
        "NNX CNN: 3 stride-2 3x3 convs (16, 32, 64), GAP, dense 10, softmax; untrained",
    ),
    "light": (LightCNN, "NNX CNN: one 8x8 stride-8 conv (16), GAP, dense 10, softmax; untrained"),
}


def build_cnn(model: str = "cnn"):
    from xaijax import zoo

    cls = MODELS[model][0]
    return zoo.build(lambda rngs: cls(rngs=rngs), seed=0)


def photos(n: int, size: int) -> np.ndarray:
    from xaijax.zoo import data

    return np.stack([data.photo(PHOTOS[i % len(PHOTOS)], size) for i in range(n)])


def best_of(fns: dict, repeats: int) -> dict:
    """Best seconds per call of each function, run interleaved (load on a shared machine hits
    them alike); every function has been called once before (compiled)."""
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def floor_fn(model, params, images, rows_per_image: int, chunk: int):
    """The model on ``rows_per_image`` images per explained image, in chunks of ``chunk``
    (balanced, as the explainers chunk), the images read from two stored ones."""
    from xaijax.core.batching import balanced_chunk, map_row_chunks

    n = images.shape[0]
    pair = jnp.asarray(np.stack([images[0], images[-1][::-1]]))
    step = balanced_chunk(rows_per_image, chunk)

    @jax.jit
    def run(P):
        return map_row_chunks(lambda r: model.apply(params, P[r % 2]), n * rows_per_image, step)

    return lambda: run(pair)


def numpy_model(cnn, chunk: int, shape):
    """The CNN as a NumPy function for shap: compiled once for ``chunk`` images, fed padded chunks
    (what a shap user with a JAX model writes)."""
    graphdef, state = nnx.split(cnn)
    jitted = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x))

    def predict(X):
        X = np.asarray(X, np.float32)
        out = []
        for start in range(0, len(X), chunk):
            part = X[start : start + chunk]
            m = len(part)
            if m < chunk:
                part = np.concatenate([part, np.repeat(part[-1:], chunk - m, axis=0)])
            out.append(np.asarray(jitted(state, part))[:m])
        return np.concatenate(out)

    predict(np.zeros((chunk, *shape), np.float32))  # compile outside the timing
    return predict


def segment_function(predict, image, segments, fill, chunk: int):
    """shap's KernelExplainer image recipe: 0/1 segment vectors ``(m, G)`` -> model outputs, the
    hidden segments taking ``fill``'s pixels (masked images built a chunk at a time)."""

    def f(Z):
        Z = np.asarray(Z)
        out = []
        for start in range(0, len(Z), chunk):
            keep = Z[start : start + chunk][:, segments] > 0.5  # (c, H, W)
            out.append(predict(np.where(keep[..., None], image[None], fill[None])))
        return np.concatenate(out)

    return f


def bench_kernel(cnn, images, groups, args, masker_name):
    import shap

    import xaijax as xj
    from xaijax.core.batching import default_batch_size
    from xaijax.core.masking import box_blur
    from xaijax.core.model import as_model

    n, S = len(images), args.num_samples
    masker = xj.maskers.constant(0.0) if masker_name == "constant" else xj.maskers.blur(8)
    chunk = default_batch_size(images.shape[1:], jnp.float32)

    def ours(key):
        return xj.kernel_shap(
            cnn, images, masker=masker, groups=groups, key=key, num_samples=S
        ).values

    start = time.perf_counter()
    exp_values = jax.block_until_ready(ours(jax.random.key(0)))
    first = time.perf_counter() - start
    model, params = as_model(cnn, images)
    floor = floor_fn(model, params, images, S, chunk)
    jax.block_until_ready(floor())
    counter = iter(range(1, 10**6))
    t = best_of({"ours": lambda: ours(jax.random.key(next(counter))), "floor": floor}, args.repeats)

    predict = numpy_model(cnn, chunk, images.shape[1:])
    m = min(args.shap_images, n)
    start = time.perf_counter()
    for i in range(m):
        G = int(groups[i].max()) + 1
        if masker_name == "constant":
            fill = np.zeros_like(images[i])
        else:
            fill = np.asarray(box_blur(jnp.asarray(images[i]), (8, 8)))
        f = segment_function(predict, images[i], groups[i], fill, chunk)
        explainer = shap.KernelExplainer(f, np.zeros((1, G)))
        explainer.shap_values(np.ones((1, G)), nsamples=S, l1_reg=False, silent=True)
    t_shap = (time.perf_counter() - start) / m
    return {
        "case": "kernel",
        "masker": masker_name if masker_name == "constant" else "blur(8,8)",
        "images": n,
        "shap_images_timed": m,
        "superpixels": [int(g.max()) + 1 for g in groups],
        "num_samples": S,
        "values_shape": list(np.shape(exp_values)),
        "xaijax_ms_per_image": 1e3 * t["ours"] / n,
        "xaijax_first_call_s": first,
        "reference": "shap.KernelExplainer (segment recipe)",
        "shap_ms_per_image": 1e3 * t_shap,
        "floor_ms_per_image": 1e3 * t["floor"] / n,
        "floor_rows_per_image": S,
        "floor_chunk_rows": chunk,
        "speedup_vs_shap": t_shap / (t["ours"] / n),
        "ratio_to_floor": t["ours"] / t["floor"],
    }


def bench_partition(cnn, images, args, max_evals):
    import shap

    import xaijax as xj
    from xaijax.core.batching import default_batch_size
    from xaijax.core.model import as_model

    n, shape = len(images), tuple(images.shape[1:])
    chunk = default_batch_size(shape, jnp.float32)
    masker = xj.maskers.image(0.0, shape)

    def ours():
        return xj.partition_shap(cnn, images, masker=masker, max_evals=max_evals)

    start = time.perf_counter()
    exp = jax.block_until_ready(ours())
    first = time.perf_counter() - start
    num_evals = np.asarray(exp.extras["num_evals"]).tolist()
    model, params = as_model(cnn, images)
    floor = floor_fn(model, params, images, max_evals, chunk)
    jax.block_until_ready(floor())
    t = best_of({"ours": lambda: ours().values, "floor": floor}, args.repeats)

    predict = numpy_model(cnn, args.shap_batch, shape)  # shap's batches: no padding
    explainer = shap.PartitionExplainer(predict, shap.maskers.Image(0.0, shape))
    # shap's partition code and image masker are numba functions, compiled on their first call
    # in a process (seconds): one small call first, as ours is timed after compiling.
    explainer(images[:1], max_evals=100, batch_size=args.shap_batch, silent=True)
    m = min(args.shap_images, n)
    start = time.perf_counter()
    explainer(images[:m], max_evals=max_evals, batch_size=args.shap_batch, silent=True)
    t_shap = (time.perf_counter() - start) / m
    return {
        "case": "partition",
        "masker": "image(0.0)",
        "images": n,
        "shap_images_timed": m,
        "max_evals": max_evals,
        "xaijax_num_evals": num_evals,
        "values_shape": list(np.shape(exp.values)),
        "xaijax_ms_per_image": 1e3 * t["ours"] / n,
        "xaijax_first_call_s": first,
        "reference": "shap.PartitionExplainer (maskers.Image)",
        "shap_ms_per_image": 1e3 * t_shap,
        "shap_batch_size": args.shap_batch,
        "xaijax_evals_per_step": 10,
        "floor_ms_per_image": 1e3 * t["floor"] / n,
        "floor_rows_per_image": max_evals,
        "floor_chunk_rows": chunk,
        "speedup_vs_shap": t_shap / (t["ours"] / n),
        "ratio_to_floor": t["ours"] / t["floor"],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4, help="images xaijax explains per call")
    parser.add_argument("--shap-images", type=int, default=1, help="images shap explains")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument(
        "--segments", type=int, default=70, help="SLIC n_segments (70: 36-52 superpixels)"
    )
    parser.add_argument("--num-samples", type=int, default=1000, help="Kernel SHAP coalitions")
    parser.add_argument("--maskers", default="constant,blur")
    parser.add_argument("--max-evals", default="500,2000", help="partition budgets")
    parser.add_argument(
        "--shap-batch", type=int, default=10, help="PartitionExplainer batch_size (ours: 10)"
    )
    parser.add_argument("--cases", default="kernel,partition")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--model",
        choices=sorted(MODELS),
        default="cnn",
        help="cnn (default) or light: a 14x cheaper CNN, where shap's own overhead dominates",
    )
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import shap

    import xaijax as xj

    cases = [c for c in args.cases.split(",") if c]
    load_before = os.getloadavg()
    images = photos(args.images, args.size)
    groups = xj.superpixel_groups(images, "slic", n_segments=args.segments)
    cnn = build_cnn(args.model)
    results, skipped = [], {}

    if "kernel" in cases:
        for name in args.maskers.split(","):
            print(f"== kernel_shap, masker {name}", flush=True)
            results.append(bench_kernel(cnn, images, groups, args, name))
            print(json.dumps(results[-1], indent=2), flush=True)
    if "partition" in cases:
        if not hasattr(xj, "partition_shap"):
            skipped["partition"] = "xaijax.partition_shap is not in this checkout yet"
        else:
            for E in (int(e) for e in args.max_evals.split(",") if e):
                print(f"== partition_shap, max_evals {E}", flush=True)
                results.append(bench_partition(cnn, images, args, E))
                print(json.dumps(results[-1], indent=2), flush=True)
    for case, why in skipped.items():
        print(f"skipped {case}: {why}")

    report = {
        "benchmark": "image_shapley",
        "date": datetime.date.today().isoformat(),
        "model": MODELS[args.model][1],
        "image_shape": list(images.shape[1:]),
        "photos": [PHOTOS[i % len(PHOTOS)] for i in range(len(images))],
        "superpixels": "xaijax.superpixel_groups(images, 'slic', n_segments="
        f"{args.segments}) (compactness 10)",
        "repeats": args.repeats,
        # Other processes' load on a shared machine: the 1, 5 and 15 minute averages.
        "load_average": {"start": list(load_before), "end": list(os.getloadavg())},
        "versions": {"jax": jax.__version__, "shap": shap.__version__, "numpy": np.__version__},
        "results": results,
        "skipped": skipped,
        "environment": environment(),
        "memory": memory(),
    }
    light = "" if args.model == "cnn" else f"-{args.model}"
    out = args.out or os.path.join(
        HERE, "results", f"image_shapley-{jax.default_backend()}{light}.json"
    )
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(report, fh, indent=2)
    print("| case | xaijax ms/image | shap ms/image | floor ms/image | vs shap | vs floor |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        ref = r.get("shap_ms_per_image")
        shap_ms = "–" if ref is None else f"{ref:.1f}"
        speedup = "–" if ref is None else f"{r['speedup_vs_shap']:.1f}x"
        budget = r.get("num_samples", r.get("max_evals", ""))
        print(
            f"| {r['case']} {r.get('masker', r.get('setting', ''))} {budget} "
            f"| {r['xaijax_ms_per_image']:.1f} | {shap_ms} | {r['floor_ms_per_image']:.1f} "
            f"| {speedup} | {r['ratio_to_floor']:.2f}x |"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
