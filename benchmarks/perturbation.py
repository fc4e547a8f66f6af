"""Occlusion and RISE on the 224-pixel CNN, against the model-evaluation floor and captum.

The model is the image benchmarks' JAX CNN (``benchmarks.lime.make_cnn``: three stride-2
convolutions, 16/32/64 channels, a softmax head over 10 classes) on 224x224 scikit-image
photos. Per image:

* ``xaijax.occlusion``: a ``(16, 16, 3)`` window with strides ``(8, 8, 3)``: 27 x 27 = 729
  occluded copies (captum's window convention);
* ``xaijax.rise``: ``--masks`` masks (default 1000) on an 8 x 8 grid, p = 0.5;
* the floor: the same CNN on as many rows as each explainer evaluates (its copies and the image
  itself), in the explainer's default chunks (``batch_size=None``), the inputs already on the
  device: what any implementation must spend;
* captum's ``Occlusion`` on a PyTorch twin of the CNN with the same weights (checked to give the
  same outputs and the same map), ``perturbations_per_eval=64``, on ``--captum-images`` images.

Times are the best of ``--repeats`` interleaved calls after a warm-up call (compilation is not
counted). ``python -m benchmarks.perturbation [--images 4] [--masks 1000] [--repeats 3]``; writes
``benchmarks/results/perturbation.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import environment, memory
from benchmarks.lime import make_cnn_with_params

RESULTS = os.path.join(os.path.dirname(__file__), "results", "perturbation.json")
WINDOW, STRIDES = (16, 16, 3), (8, 8, 3)


def best_of(fns, repeats):
    """Best wall time of each function, calls interleaved so that load from other processes on
    a shared machine hits them alike."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            start = time.perf_counter()
            jax.block_until_ready(fn())
            best[i] = min(best[i], time.perf_counter() - start)
    return best


def photos(n: int) -> np.ndarray:
    """``(n, 224, 224, 3)`` float32 pixel values 0-255 from scikit-image's sample photos."""
    from skimage import data, transform

    pool = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    return np.stack(
        [transform.resize(pool[i % len(pool)], (224, 224)) * 255 for i in range(n)]
    ).astype(np.float32)


def floor_fn(cnn, copies: int, chunk: int):
    """Per image: the CNN on the image itself and on ``copies`` rows, ``chunk`` at a time."""
    from xaijax.core.batching import map_row_chunks

    @jax.jit
    def floor(images):
        def one(x):  # rows alternate between the image and its mirror: inputs already built
            pair = jnp.stack([x, x[:, ::-1]])
            rows = map_row_chunks(lambda r: cnn(pair[r % 2]), copies, chunk)
            return rows.sum() + cnn(x[None]).sum()

        return jax.lax.map(one, images)

    return floor


def torch_twin(cnn_params):
    """The CNN in PyTorch with the same weights (NCHW; JAX's SAME padding for stride 2)."""
    import torch

    kernels, head = cnn_params
    convs = []
    for k in kernels:
        conv = torch.nn.Conv2d(k.shape[2], k.shape[3], 3, stride=2, bias=False)
        conv.weight.data = torch.from_numpy(np.asarray(k).transpose(3, 2, 0, 1).copy())
        convs.append(conv)
    head_t = torch.from_numpy(np.asarray(head))

    def forward(x):
        h = x / 255.0
        for conv in convs:
            # JAX's "SAME" on an even size with stride 2 pads one row/column after, none before.
            h = torch.relu(conv(torch.nn.functional.pad(h, (0, 1, 0, 1))))
        return torch.softmax(h.mean(dim=(2, 3)) @ head_t, dim=1)

    return forward


def bench(n: int, num_masks: int, repeats: int, captum_images: int) -> dict:
    import xaijax as xj
    from xaijax.core.batching import balanced_chunk, default_batch_size
    from xaijax.perturbation import window_counts

    cnn, cnn_params = make_cnn_with_params()
    images = photos(n)
    targets = np.asarray(cnn(jnp.asarray(images))).argmax(axis=1)
    batch = default_batch_size(images.shape[1:], jnp.float32)  # what batch_size=None resolves to
    windows = int(np.prod(window_counts(images.shape[1:], WINDOW, STRIDES)))

    def occ():
        exp = xj.occlusion(cnn, images, window=WINDOW, strides=STRIDES, targets=targets)
        return exp.values

    def rise():
        exp = xj.rise(cnn, images, key=jax.random.key(0), num_masks=num_masks, targets=targets)
        return exp.values

    floor_occ = floor_fn(cnn, windows, balanced_chunk(windows, batch))
    floor_rise = floor_fn(cnn, num_masks, balanced_chunk(num_masks, batch))
    dev = jnp.asarray(images)
    t_occ, t_rise, t_floor_occ, t_floor_rise = best_of(
        [occ, rise, lambda: floor_occ(dev), lambda: floor_rise(dev)], repeats
    )
    out = {
        "images": n,
        "image_shape": list(images.shape[1:]),
        "batch_size": batch,
        "occlusion": {
            "window": list(WINDOW),
            "strides": list(STRIDES),
            "windows": windows,
            "xaijax_ms_per_image": 1e3 * t_occ / n,
            "floor_ms_per_image": 1e3 * t_floor_occ / n,
            "ratio_to_floor": t_occ / t_floor_occ,
        },
        "rise": {
            "num_masks": num_masks,
            "cell_size": None,  # the default: the paper's 8 x 8 grid
            "p": 0.5,
            "xaijax_ms_per_image": 1e3 * t_rise / n,
            "floor_ms_per_image": 1e3 * t_floor_rise / n,
            "ratio_to_floor": t_rise / t_floor_rise,
        },
    }
    if captum_images:
        out["occlusion"]["captum"] = bench_captum(
            cnn, cnn_params, images[:captum_images], targets[:captum_images], occ()
        )
    return out


def bench_captum(cnn, cnn_params, images, targets, ours) -> dict | None:
    try:
        import torch
        from captum.attr import Occlusion
    except ImportError:
        return None
    forward = torch_twin(cnn_params)
    x = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    with torch.no_grad():
        logit_diff = float(np.abs(forward(x).numpy() - np.asarray(cnn(jnp.asarray(images)))).max())
    occ = Occlusion(forward)
    to_chw = (2, 0, 1)

    def run():
        with torch.no_grad():
            return occ.attribute(
                x,
                sliding_window_shapes=tuple(WINDOW[i] for i in to_chw),
                strides=tuple(STRIDES[i] for i in to_chw),
                target=torch.from_numpy(targets.astype(np.int64)),
                perturbations_per_eval=64,
            )

    start = time.perf_counter()
    theirs = run().numpy().transpose(0, 2, 3, 1)
    seconds = time.perf_counter() - start
    ours = np.asarray(ours)[: len(images)]
    return {
        "images": len(images),
        "ms_per_image": 1e3 * seconds / len(images),
        "max_output_diff_vs_xaijax": logit_diff,
        "max_map_diff_vs_xaijax": float(np.abs(theirs - ours).max()),
        "max_map": float(np.abs(ours).max()),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--masks", type=int, default=1000, help="RISE masks per image")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--captum-images", type=int, default=1, help="0 skips captum")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    report = bench(args.images, args.masks, args.repeats, args.captum_images)
    report["environment"] = environment()
    report["memory"] = memory()
    print(json.dumps(report, indent=2))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=2)


if __name__ == "__main__":
    main()
