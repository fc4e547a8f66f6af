"""The Quantus faithfulness metrics of ``xaijax.metrics`` against Quantus 0.6 on a PyTorch twin.

The model is the image benchmarks' CNN (``benchmarks.lime.make_cnn_with_params``) on
``--size`` x ``--size`` RGB images (random smooth blobs, pixel values 0-255), with random
attribution maps; the PyTorch twin is ``benchmarks.perturbation.torch_twin`` (same weights,
checked to give the same outputs). Every metric runs with the same settings on both sides:
xaijax on ``--images`` images in one call, Quantus on ``--quantus-images`` (its Python loop is
slow), both reported in ms per image. Quantus's ROAD, IROF and NonSensitivity fail on RGB images
and its SensitivityN is another definition, so those four rows have no Quantus time. The
localisation and complexity metrics score the same maps against masks (the brighter half of
each image).

Times are the best of ``--repeats`` calls after a warm-up call (compilation is not counted).
The floor of a model-based metric is the CNN alone on as many rows as the metric evaluates
(counted once by a host callback in the model, not timed), in the metrics' own chunks (the
fewest, most even chunks of the default ``batch_size``), the rows read from the stored images:
``floor_ms_per_image`` and ``ratio_to_floor`` (``--no-floor`` skips it).

The robustness and randomisation metrics re-run an explainer: the gradient of the explained
class (``grad``, a JAX function, so the metrics run it compiled; on Quantus's side the same
gradient of the PyTorch twin as ``explain_func``; Quantus's smooth MPRT calls
``quantus.explain`` instead, which is pointed at the same gradient for the call), with
``--nr-samples`` perturbations (``nr_steps`` translations for continuity, half as many noisy
copies for smooth MPRT) and otherwise both libraries' defaults. The randomisation tests need
layers to re-initialise: xaijax gets the CNN as a Flax NNX module (``nnx_cnn``, the same
weights), Quantus a PyTorch module with named layers (``torch_module``); both randomise the
3 convolutions and the head. Where Quantus's definitions differ from ours (per-batch
normalisation, NaN rules, consistency within a batch: see the metrics' docstrings) the work is
the same, so every row has a Quantus time. Their columns:

* ``model_rows_per_image``: rows the model sees, counted by a host callback in it, including
  the forward pass inside each gradient and the metric's own model calls (checking the inputs;
  for the robustness metrics the outputs on the perturbed rows, which only ROS and the
  prediction-change option read, so XLA may drop them); ``floor_ms_per_image``: the CNN's
  forward pass alone on that many rows, as for the other metrics.
* ``explainer_rows_per_image``: rows the explainer gets (counted the same way): the inputs
  and every perturbation, once per model state for the randomisation tests;
  ``explainer_floor_ms_per_image``: the gradient alone on that many stored rows, in the
  metrics' chunks, once per model state (``passes``). These metrics are explainer re-runs, so
  this is their honest floor: ``ratio_to_explainer_floor``.
* ``xaijax_first_call_s``: the warm-up call, compilation included (seconds, all images),
  after the metrics before it in the same process.
* ``first_call_s`` (``--first-call``, every metric of the file): the metric's first call in a
  fresh process with no persistent compilation cache, the user's wait; of which
  ``first_call_trace_s``, ``first_call_lower_s`` and ``first_call_xla_s`` (tracing, lowering,
  XLA compiling, as ``benchmarks.first_call`` counts them), ``first_call_programs`` compiled;
  then ``second_call_s`` and ``second_call_programs`` (0: nothing recompiled).

Each metric's compiled program is kept across calls (:mod:`xaijax.metrics.explaining`), so
the warm-up call compiles and the timed calls do not, as for the other metrics.
``python -m benchmarks.metrics [--images 256] [--quantus-images 16] [--size 32]
[--nr-samples 10] [--first-call --merge]``; writes ``benchmarks/results/metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import environment
from benchmarks.lime import make_cnn_with_params
from benchmarks.perturbation import torch_twin

RESULTS = os.path.join(os.path.dirname(__file__), "results", "metrics.json")


def settings(size: int) -> dict:
    """name -> (xaijax kwargs, Quantus class name or None, Quantus kwargs)."""
    patch = max(2, size // 8)
    step = max(1, size * size // 64)
    return {
        "faithfulness_correlation": (
            dict(nr_runs=50, subset_size=size * size // 8, key=jax.random.key(0)),
            "FaithfulnessCorrelation",
            dict(nr_runs=50, subset_size=size * size // 8, return_aggregate=False),
        ),
        "faithfulness_estimate": (
            dict(features_in_step=step),
            "FaithfulnessEstimate",
            dict(features_in_step=step),
        ),
        "monotonicity": (dict(features_in_step=step), "Monotonicity", dict(features_in_step=step)),
        "monotonicity_correlation": (
            dict(features_in_step=step * 4, nr_samples=5, key=jax.random.key(0)),
            "MonotonicityCorrelation",
            dict(features_in_step=step * 4, nr_samples=5),
        ),
        "pixel_flipping": (
            dict(features_in_step=step),
            "PixelFlipping",
            dict(features_in_step=step),
        ),
        "region_perturbation": (
            dict(patch_size=patch),
            "RegionPerturbation",
            dict(patch_size=patch),
        ),
        "selectivity": (dict(patch_size=patch), "Selectivity", dict(patch_size=patch)),
        "sensitivity_n": (
            dict(features_in_step=step * 8, nr_samples=20, key=jax.random.key(0)),
            None,
            {},
        ),
        "irof": (dict(segments="grid"), None, {}),  # Quantus: mask shape assertion on RGB
        "road": (dict(percentages=list(range(10, 100, 10)), key=jax.random.key(0)), None, {}),
        "infidelity": (
            dict(perturb_patch_sizes=[patch]),
            "Infidelity",
            dict(perturb_patch_sizes=[patch], n_perturb_samples=1, return_aggregate=False),
        ),
        "sufficiency": (dict(), "Sufficiency", dict(return_aggregate=False)),
        "completeness": (dict(), "Completeness", dict(normalise=False)),
        # Quantus: per-step effects XOR per-element attributions, a broadcast error on RGB
        "non_sensitivity": (dict(features_in_step=step, normalise=False), None, {}),
    }


# metrics of attributions (and masks): no model; name -> (xaijax kwargs, Quantus class, kwargs)
MAP_METRICS = {
    "attribution_localisation": ({}, "AttributionLocalisation", {}),
    "top_k_intersection": ({"k": 100}, "TopKIntersection", {"k": 100}),
    "relevance_rank_accuracy": ({}, "RelevanceRankAccuracy", {}),
    "relevance_mass_accuracy": ({}, "RelevanceMassAccuracy", {}),
    "auc": ({}, "AUC", {}),
    "effective_complexity": ({"eps": 1e-2}, "EffectiveComplexity", {"eps": 1e-2}),
    "sparseness": ({}, "Sparseness", {}),
    "complexity": ({}, "Complexity", {}),
}


def blobs(n: int, size: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size] / size
    out = np.zeros((n, size, size, 3), np.float32)
    for i in range(n):
        for _ in range(3):
            cy, cx, r = rng.uniform(0.2, 0.8, 2).tolist() + [rng.uniform(0.1, 0.3)]
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / r**2)
            out[i] += blob[..., None] * rng.uniform(0, 255, 3)
    return np.clip(out, 0, 255).astype(np.float32)


def timed(fn, repeats, first=None):
    """The best of ``repeats`` calls after a warm-up call; ``first`` (a list) gets the warm-up
    call's seconds (compilation included)."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    if first is not None:
        first.append(time.perf_counter() - start)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def count_rows(fn, cnn, images, maps, targets, kw) -> int:
    """Rows the metric passes to the model, counted by a host callback (an untimed extra call)."""
    seen = []

    def counted(X):
        # An operand computed from X, so that under vmap every mapped call reports its rows.
        jax.debug.callback(lambda a: seen.append(int(np.size(a))), X.reshape(X.shape[0], -1)[:, 0])
        return cnn(X)

    jax.block_until_ready(jax.tree.leaves(fn(counted, images, maps, targets=targets, **kw)))
    return int(sum(seen))


def floor_ms_per_image(cnn, images, rows: int, repeats: int) -> float:
    """The model alone on ``rows`` rows (from the stored images), ms per explained image."""
    from xaijax.core.batching import balanced_chunk, default_batch_size

    n = images.shape[0]
    chunk = balanced_chunk(rows, default_batch_size(images.shape[1:], jnp.float32))
    steps = -(-rows // chunk)
    stored = jnp.asarray(images)

    @jax.jit
    def run(stored):
        def one(i):
            idx = (i * chunk + jnp.arange(chunk)) % n
            return cnn(stored[idx]).sum()

        return jax.lax.map(one, jnp.arange(steps))

    return 1e3 * timed(lambda: run(stored), repeats) / n


def add_quantus_time(
    row, metric, twin, images, targets, maps, s_batch=None, explain_func=None
) -> None:
    """One timed Quantus call on the PyTorch twin: ``row``'s Quantus ms per image and ratio.
    ``maps=None`` lets Quantus compute the attributions with ``explain_func``."""
    extra = {} if s_batch is None else {"s_batch": s_batch}
    if maps is None:
        extra["explain_func"] = explain_func
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric(
            model=twin,
            x_batch=images.transpose(0, 3, 1, 2),
            y_batch=targets,
            a_batch=None if maps is None else maps[:, None],
            channel_first=True,
            device="cpu",
            softmax=False,
            **extra,
        )
    row["quantus_ms_per_image"] = 1e3 * (time.perf_counter() - start) / len(images)
    row["speedup"] = row["quantus_ms_per_image"] / row["xaijax_ms_per_image"]


def bench(
    n: int, nq: int, size: int, repeats: int, only=None, floor=True, nr_samples: int = 10
) -> dict:
    from xaijax import metrics

    cnn, params = make_cnn_with_params()
    images = blobs(n, size)
    maps = (
        np.asarray(jax.random.normal(jax.random.key(2), (n, size, size)), np.float32)
        + images.mean(-1) / 255
    )
    targets = np.asarray(cnn(jnp.asarray(images))).argmax(1)
    grid = np.broadcast_to(
        (np.arange(size)[:, None] * 4 // size) * 4 + np.arange(size)[None] * 4 // size,
        (n, size, size),
    )
    rows = {}
    twin = quantus = None
    if nq > 0:
        gradcam_standin = __import__("tests.gradcam_standin", fromlist=["install"])
        gradcam_standin.install()
        import quantus
        import torch

        if not hasattr(np, "trapz"):
            np.trapz = np.trapezoid  # noqa: NPY201 (Quantus 0.6 calls it; NumPy 2.4 removed it)
        forward = torch_twin(params)

        class Twin(torch.nn.Module):
            def forward(self, x):
                return forward(x)

        twin = Twin().eval()
        with torch.no_grad():
            ref = twin(torch.tensor(images[:2].transpose(0, 3, 1, 2))).numpy()
        np.testing.assert_allclose(ref, np.asarray(cnn(jnp.asarray(images[:2]))), atol=1e-4)
    for name, (ours, theirs, qkw) in settings(size).items():
        if only and name not in only:
            continue
        kw = dict(ours)
        if kw.get("segments") == "grid":
            kw["segments"] = grid
        fn = getattr(metrics, name)

        def call(fn=fn, kw=kw):
            out = fn(cnn, images, maps, targets=targets, **kw)
            return out.auc if isinstance(out, metrics.Curve) else out

        row = {"xaijax_ms_per_image": 1e3 * timed(call, repeats) / n}
        if floor:
            rows_per_image = count_rows(fn, cnn, images, maps, targets, kw) / n
            row["model_rows_per_image"] = rows_per_image
            row["floor_ms_per_image"] = floor_ms_per_image(
                cnn, images, int(rows_per_image * n), repeats
            )
            row["ratio_to_floor"] = row["xaijax_ms_per_image"] / row["floor_ms_per_image"]
        if twin is not None and theirs is not None:
            metric = getattr(quantus, theirs)(disable_warnings=True, **qkw)
            if name == "irof":
                quantus.helpers.utils.get_superpixel_segments = lambda img, **k: grid[0]

            add_quantus_time(row, metric, twin, images[:nq], targets[:nq], maps[:nq])
        rows[name] = row
        print(name, {k: round(v, 3) for k, v in row.items()}, flush=True)
    masks = images.mean(-1) > np.median(images.mean(-1), axis=(1, 2), keepdims=True)
    for name, (kw, theirs, qkw) in MAP_METRICS.items():
        if only and name not in only:
            continue
        fn = getattr(metrics, name)
        takes_masks = "masks" in fn.__code__.co_varnames[:2]

        def call(fn=fn, kw=kw, takes_masks=takes_masks):
            return fn(maps, masks, **kw) if takes_masks else fn(maps, **kw)

        row = {"xaijax_ms_per_image": 1e3 * timed(call, repeats) / n}
        if twin is not None:
            metric = getattr(quantus, theirs)(disable_warnings=True, **qkw)

            s_batch = masks[:nq, None].astype(np.float32)
            add_quantus_time(row, metric, twin, images[:nq], targets[:nq], maps[:nq], s_batch)
        rows[name] = row
        print(name, {k: round(v, 3) for k, v in row.items()}, flush=True)
    rows |= bench_explainer_metrics(n, nq, size, repeats, nr_samples, only, floor, quantus)
    return {
        "images": n,
        "quantus_images": nq,
        "size": size,
        "nr_samples": nr_samples,
        "metrics": rows,
    }


# -- robustness and randomisation: metrics that re-run the explainer ---------------------------
def grad(model, X, targets):
    """The gradient of the explained output: a JAX explainer, so the metrics run it compiled."""
    return jax.vmap(jax.grad(lambda x, t: model(x[None])[0, t]))(X, targets)


def torch_grad(model, inputs, targets, **kwargs):
    """The same gradient on the PyTorch twin, as a Quantus ``explain_func``."""
    import torch

    x = torch.tensor(np.asarray(inputs, np.float32), requires_grad=True)
    out = model(x)
    t = torch.as_tensor(np.asarray(targets), dtype=torch.long)
    out[torch.arange(len(x)), t].sum().backward()
    return x.grad.numpy().copy()


def explainer_settings(nr_samples: int, layer) -> dict:
    """name -> (xaijax kwargs, Quantus class, Quantus kwargs, explainer passes).

    ``passes``: separate runs of the explainer over the metric's rows (one per model state in
    the randomisation tests: the original and the CNN's 4 layers randomised one by one).
    Options not given are both libraries' defaults (the same values)."""
    S = nr_samples
    noise = dict(nr_samples=S, key=jax.random.key(0))
    smooth = max(2, S // 2)
    return {
        "max_sensitivity": (noise, "MaxSensitivity", dict(nr_samples=S), 1),
        "avg_sensitivity": (noise, "AvgSensitivity", dict(nr_samples=S), 1),
        "local_lipschitz_estimate": (noise, "LocalLipschitzEstimate", dict(nr_samples=S), 1),
        "continuity": (dict(nr_steps=S), "Continuity", dict(nr_steps=S), 1),
        "consistency": (dict(), "Consistency", dict(), 1),
        "relative_input_stability": (noise, "RelativeInputStability", dict(nr_samples=S), 1),
        "relative_output_stability": (noise, "RelativeOutputStability", dict(nr_samples=S), 1),
        "relative_representation_stability": (
            dict(noise, layer=layer),
            "RelativeRepresentationStability",
            dict(nr_samples=S, layer_names=["convs.0"]),
            1,
        ),
        "mprt": (dict(key=jax.random.key(0)), "MPRT", dict(), 5),
        "smooth_mprt": (
            dict(nr_samples=smooth, key=jax.random.key(0)),
            "SmoothMPRT",
            dict(nr_samples=smooth),
            5,
        ),
        "efficient_mprt": (dict(key=jax.random.key(0)), "EfficientMPRT", dict(), 2),
        "random_logit": (dict(key=jax.random.key(0)), "RandomLogit", dict(num_classes=10), 1),
    }


RANDOMISATION = ("mprt", "smooth_mprt", "efficient_mprt", "random_logit")  # need an NNX module


def _counter(seen: list):
    """``count(X)``: record ``X``'s rows in ``seen`` when the compiled program runs."""

    def count(X):
        # An operand computed from X, so that under vmap every mapped call reports its rows.
        jax.debug.callback(lambda a: seen.append(int(np.size(a))), X.reshape(X.shape[0], -1)[:, 0])

    return count


def nnx_cnn(cnn_params, count=None):
    """The CNN as a Flax NNX module (same weights), for the randomisation tests; ``count``
    (see :func:`_counter`) sees the rows of every call."""
    from flax import nnx

    kernels, head = cnn_params

    class CNN(nnx.Module):
        def __init__(self):
            rngs = nnx.Rngs(0)
            self.convs = nnx.List(
                [
                    nnx.Conv(k.shape[2], k.shape[3], (3, 3), strides=2, padding="SAME",
                             use_bias=False, rngs=rngs)
                    for k in kernels
                ]
            )  # fmt: skip
            for conv, k in zip(self.convs, kernels, strict=True):
                conv.kernel.value = jnp.asarray(k)
            self.head = nnx.Linear(64, 10, use_bias=False, rngs=rngs)
            self.head.kernel.value = jnp.asarray(head)

        def __call__(self, X):
            if count is not None:
                count(X)
            h = X / 255.0
            for conv in self.convs:
                h = jax.nn.relu(conv(h))
            return jax.nn.softmax(self.head(h.mean(axis=(1, 2))), axis=1)

    return CNN()


def torch_module(cnn_params):
    """The CNN as a PyTorch module with named layers (``convs.0-2``, ``head``), which Quantus's
    randomisation tests re-initialise and its representation stability hooks."""
    import torch

    kernels, head = cnn_params

    class CNN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = torch.nn.ModuleList()
            for k in kernels:
                conv = torch.nn.Conv2d(k.shape[2], k.shape[3], 3, stride=2, bias=False)
                conv.weight.data = torch.from_numpy(np.asarray(k).transpose(3, 2, 0, 1).copy())
                self.convs.append(conv)
            self.head = torch.nn.Linear(64, 10, bias=False)
            self.head.weight.data = torch.from_numpy(np.asarray(head).T.copy())

        def forward(self, x):
            h = x / 255.0
            for conv in self.convs:
                # JAX's "SAME" on an even size with stride 2 pads one row/column after.
                h = torch.relu(conv(torch.nn.functional.pad(h, (0, 1, 0, 1))))
            return torch.softmax(self.head(h.mean(dim=(2, 3))), dim=1)

    return CNN().eval()


def explainer_floor_ms_per_image(cnn, images, targets, rows: int, passes: int, repeats) -> float:
    """The explainer (the gradient) alone on ``rows`` rows read from the stored images, in
    ``passes`` runs of the metric's chunks, ms per explained image."""
    from xaijax.core.batching import balanced_chunk, default_batch_size

    n = images.shape[0]
    per_pass = max(1, rows // passes)
    chunk = balanced_chunk(per_pass, default_batch_size(images.shape[1:], jnp.float32))
    steps = -(-per_pass // chunk)
    stored, t = jnp.asarray(images), jnp.asarray(targets, jnp.int32)

    @jax.jit
    def run(stored, t):
        def one(i):
            idx = (i * chunk + jnp.arange(chunk)) % n
            return grad(cnn, stored[idx], t[idx]).sum()

        return jax.lax.map(one, jnp.arange(steps))

    return 1e3 * passes * timed(lambda: run(stored, t), repeats) / n


def bench_explainer_metrics(
    n, nq, size, repeats, nr_samples, only=None, floor=True, quantus=None
) -> dict:
    """Rows for the robustness and randomisation metrics (see the module docstring)."""
    from xaijax import metrics

    cnn, params = make_cnn_with_params()
    images = blobs(n, size)
    targets = np.asarray(cnn(jnp.asarray(images))).argmax(1)
    kernel0 = jnp.asarray(params[0][0])

    def layer(X):  # the first convolution's output, before its ReLU (Quantus hooks convs.0)
        h = jax.lax.conv_general_dilated(
            X / 255.0, kernel0, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return h.reshape(X.shape[0], -1)

    net = nnx_cnn(params)
    np.testing.assert_allclose(
        np.asarray(net(jnp.asarray(images[:2]))), np.asarray(cnn(jnp.asarray(images[:2]))),
        atol=1e-5,
    )  # fmt: skip
    twin = None
    if quantus is not None and nq > 0:
        import torch

        twin = torch_module(params)
        with torch.no_grad():
            ref = twin(torch.tensor(images[:2].transpose(0, 3, 1, 2))).numpy()
        np.testing.assert_allclose(ref, np.asarray(cnn(jnp.asarray(images[:2]))), atol=1e-4)
    rows = {}
    for name, (kw, theirs, qkw, passes) in explainer_settings(nr_samples, layer).items():
        if only and name not in only:
            continue
        fn = getattr(metrics, name)
        randomisation = name in RANDOMISATION
        model = net if randomisation else cnn

        def call(fn=fn, model=model, kw=kw):
            out = fn(model, images, grad, targets=targets, **kw)
            return out.scores if isinstance(out, metrics.LayerScores) else out

        first = []
        row = {"xaijax_ms_per_image": 1e3 * timed(call, repeats, first) / n}
        row["xaijax_first_call_s"] = first[0]
        if floor:
            seen_model, seen_explainer = [], []
            count_model, count_explainer = _counter(seen_model), _counter(seen_explainer)
            if randomisation:
                counted = nnx_cnn(params, count_model)
            else:

                def counted(X, count_model=count_model):
                    count_model(X)
                    return cnn(X)

            def counted_grad(model, X, targets, count_explainer=count_explainer):
                count_explainer(X)
                return grad(model, X, targets)

            jax.block_until_ready(
                jax.tree.leaves(fn(counted, images, counted_grad, targets=targets, **kw))
            )
            model_rows, explainer_rows = sum(seen_model), sum(seen_explainer)
            row["model_rows_per_image"] = model_rows / n
            row["explainer_rows_per_image"] = explainer_rows / n
            row["floor_ms_per_image"] = floor_ms_per_image(cnn, images, model_rows, repeats)
            row["ratio_to_floor"] = row["xaijax_ms_per_image"] / row["floor_ms_per_image"]
            row["explainer_floor_ms_per_image"] = explainer_floor_ms_per_image(
                cnn, images, targets, explainer_rows, passes, repeats
            )
            row["ratio_to_explainer_floor"] = (
                row["xaijax_ms_per_image"] / row["explainer_floor_ms_per_image"]
            )
        if twin is not None:
            metric = getattr(quantus, theirs)(disable_warnings=True, **qkw)
            explain = quantus.explain
            if name == "smooth_mprt":
                # Quantus's smooth MPRT calls quantus.explain, not the explain_func it gets.
                quantus.explain = lambda model, x, t, **k: torch_grad(model, x, t)
            try:
                add_quantus_time(
                    row, metric, twin, images[:nq], targets[:nq], None, explain_func=torch_grad
                )
            finally:
                quantus.explain = explain
        rows[name] = row
        print(name, {k: round(v, 3) for k, v in row.items()}, flush=True)
    return rows


# -- the first call, cold: each metric in a fresh process, no persistent compilation cache -----
def metric_call(name: str, n: int, size: int, nr_samples: int):
    """``call()``: one call of metric ``name`` on the benchmark's inputs (built here, untimed)."""
    from xaijax import metrics

    cnn, params = make_cnn_with_params()
    images = blobs(n, size)
    targets = np.asarray(cnn(jnp.asarray(images))).argmax(1)
    fn = getattr(metrics, name)
    if name in settings(size):
        kw = dict(settings(size)[name][0])
        if kw.get("segments") == "grid":
            kw["segments"] = np.broadcast_to(
                (np.arange(size)[:, None] * 4 // size) * 4 + np.arange(size)[None] * 4 // size,
                (n, size, size),
            )
        maps = (
            np.asarray(jax.random.normal(jax.random.key(2), (n, size, size)), np.float32)
            + images.mean(-1) / 255
        )

        def call():
            out = fn(cnn, images, maps, targets=targets, **kw)
            return out.auc if isinstance(out, metrics.Curve) else out

        return call
    kernel0 = jnp.asarray(params[0][0])

    def layer(X):  # as in bench_explainer_metrics
        h = jax.lax.conv_general_dilated(
            X / 255.0, kernel0, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return h.reshape(X.shape[0], -1)

    kw = explainer_settings(nr_samples, layer)[name][0]
    model = nnx_cnn(params) if name in RANDOMISATION else cnn

    def call():
        out = fn(model, images, grad, targets=targets, **kw)
        return out.scores if isinstance(out, metrics.LayerScores) else out

    return call


def cold_child(name: str, n: int, size: int, nr_samples: int) -> dict:
    """In this (fresh) process: the first call of ``name`` and what it compiled, then the
    second call and whether it compiled anything."""
    from benchmarks.first_call import CompileCounter

    counter = CompileCounter()
    call = metric_call(name, n, size, nr_samples)
    counter.reset()
    start = time.perf_counter()
    jax.block_until_ready(call())
    first = time.perf_counter() - start
    compiled = counter.report()
    counter.reset()
    start = time.perf_counter()
    jax.block_until_ready(call())
    second = time.perf_counter() - start
    return {
        "first_call_s": first,
        "first_call_trace_s": compiled["trace_s"],
        "first_call_lower_s": compiled["lower_s"],
        "first_call_xla_s": compiled["xla_s"],
        "first_call_programs": compiled["programs"],
        "second_call_s": second,
        "second_call_programs": counter.programs,
    }


def first_calls(names, n: int, size: int, nr_samples: int) -> dict:
    """name -> :func:`cold_child`'s numbers, each metric in a fresh process with no cache."""
    import subprocess
    import sys

    from benchmarks.first_call import ROOT, _env

    out = {}
    for name in names:
        cmd = [sys.executable, "-m", "benchmarks.metrics", "--cold-child", name]
        cmd += ["--images", str(n), "--size", str(size), "--nr-samples", str(nr_samples)]
        proc = subprocess.run(cmd, env=_env(), cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
        out[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        print(name, {k: round(v, 3) for k, v in out[name].items()}, flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--quantus-images", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--nr-samples", type=int, default=10, help="perturbations per image (robustness)"
    )
    parser.add_argument("--only", nargs="*")
    parser.add_argument("--no-floor", action="store_true", help="skip the floor column")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument(
        "--merge",
        action="store_true",
        help="update only the rows run (with --only) in the existing --out file",
    )
    parser.add_argument(
        "--first-call",
        action="store_true",
        help="only the first_call_* columns: each metric's first call in a fresh process with "
        "no persistent cache (use with --merge)",
    )
    parser.add_argument("--cold-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cold_child:
        print(json.dumps(cold_child(args.cold_child, args.images, args.size, args.nr_samples)))
        return None
    load_start = os.getloadavg()  # other work on the machine colours the times
    if args.first_call:
        names = args.only or [*settings(args.size), *explainer_settings(args.nr_samples, None)]
        result = {"environment": environment()} | {
            "images": args.images,
            "quantus_images": args.quantus_images,
            "size": args.size,
            "nr_samples": args.nr_samples,
            "metrics": first_calls(names, args.images, args.size, args.nr_samples),
        }
    else:
        result = {"environment": environment()} | bench(
            args.images,
            args.quantus_images,
            args.size,
            args.repeats,
            args.only,
            not args.no_floor,
            args.nr_samples,
        )
    result["load_average_1_5_15min"] = {"start": load_start, "end": os.getloadavg()}
    if args.merge and os.path.exists(args.out):
        with open(args.out) as f:
            old = json.load(f)
        for key in ("images", "quantus_images", "size"):
            if old.get(key) != result[key]:
                raise SystemExit(f"--merge: {key} {result[key]} differs from {old.get(key)}")
        run = {k: result[k] for k in ("environment", "load_average_1_5_15min", "nr_samples")} | {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        }
        run["rows"] = sorted(result["metrics"])
        # A row run again keeps the columns it did not measure (--first-call adds its own).
        rows = {k: old["metrics"].get(k, {}) | v for k, v in result["metrics"].items()}
        result = old | {"metrics": old["metrics"] | rows}
        result["merged_runs"] = old.get("merged_runs", []) + [run]
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
