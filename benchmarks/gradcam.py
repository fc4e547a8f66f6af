"""Grad-CAM throughput on a ResNet-style NNX CNN, against the model's forward+backward floor.

Run:  python -m benchmarks.gradcam [--batch 32] [--size 224] [--repeats 3]

Measures, on the same model, weights and images (median of ``--repeats`` interleaved timed calls
after one warm-up call each):

* ``xaijax.cam.grad_cam(model, "stages/3", images)``: the public call, by NNX layer path, including
  input checks, upsampling to 224x224 and normalisation;
* the floor: one jitted forward pass plus the backward pass of the target logits down to the
  input (``jax.grad``), i.e. what an input-gradient explainer must at least compute;
* the layer floor: the forward pass plus the backward pass down to the target layer only, written
  by hand on the same modules: what Grad-CAM itself must at least compute (the 1.1x goal);
* the forward pass alone;
* when ``torch`` and ``captum`` are installed: captum's ``LayerGradCam`` on a PyTorch twin of the
  same architecture with the same weights (checked to give the same logits), plus the
  ``interpolate`` captum users call to upsample.

Writes ``benchmarks/results/gradcam.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import xaijax.cam as cam
from benchmarks.common import environment, memory
from xaijax.zoo.nets import ResNet

RESULTS = os.path.join(os.path.dirname(__file__), "results", "gradcam.json")


def _randomise_batchnorm(model, key):
    """Give BatchNorm non-trivial running statistics, so eval mode is really exercised."""
    for _, m in nnx.iter_modules(model) if hasattr(nnx, "iter_modules") else model.iter_modules():
        if isinstance(m, nnx.BatchNorm):
            key, k1, k2, k3, k4 = jax.random.split(key, 5)
            n = m.scale.shape[0]
            m.mean = nnx.BatchStat(0.1 * jax.random.normal(k1, (n,)))
            m.var = nnx.BatchStat(jax.random.uniform(k2, (n,), minval=0.5, maxval=1.5))
            m.scale = nnx.Param(jax.random.uniform(k3, (n,), minval=0.5, maxval=1.5))
            m.bias = nnx.Param(0.1 * jax.random.normal(k4, (n,)))


def _time(fn, repeats):
    return _time_interleaved({"fn": fn}, repeats)["fn"]


def _time_interleaved(fns, repeats):
    """Median seconds per call of each function, calls interleaved so that load from other
    processes on a shared machine drifts over all of them alike; one warm-up call each."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _captum(model, images_nhwc, targets, raw_maps, repeats):
    """captum's LayerGradCam on a PyTorch twin with the same weights; None if unavailable."""
    try:
        import torch
        from captum.attr import LayerAttribution, LayerGradCam
    except ImportError:
        return None
    tmodel = _torch_twin(model, torch)
    x = torch.from_numpy(np.asarray(images_nhwc).transpose(0, 3, 1, 2).copy())
    with torch.no_grad():
        diff = np.abs(tmodel(x).numpy() - np.asarray(_logits(model, images_nhwc))).max()
    gc = LayerGradCam(tmodel, tmodel.stages[3])
    t = torch.from_numpy(np.asarray(targets).astype(np.int64))

    def run():
        attr = gc.attribute(x, target=t, relu_attributions=True)
        return LayerAttribution.interpolate(attr, tuple(x.shape[2:]), "bilinear")

    low_res = gc.attribute(x, target=t, relu_attributions=True).detach().numpy()[:, 0]
    map_diff = np.abs(low_res - np.asarray(raw_maps)).max()
    seconds = _time(run, repeats)
    return {
        "seconds": seconds,
        "max_logit_diff_vs_xaijax": float(diff),
        "max_raw_map_diff_vs_xaijax": float(map_diff),
        "max_raw_map": float(np.abs(low_res).max()),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def _torch_twin(model, torch):
    nn = torch.nn

    def conv(c):
        k = np.asarray(c.kernel[...]).transpose(3, 2, 0, 1)
        m = nn.Conv2d(k.shape[1], k.shape[0], k.shape[2], c.strides[0], k.shape[2] // 2,
                      bias=False)  # fmt: skip
        m.weight.data = torch.from_numpy(k.copy())
        return m

    def bn(b):
        m = nn.BatchNorm2d(b.scale.shape[0], eps=b.epsilon)
        for name, src in (("weight", b.scale), ("bias", b.bias)):
            getattr(m, name).data = torch.from_numpy(np.asarray(src[...]).copy())
        m.running_mean.data = torch.from_numpy(np.asarray(b.mean[...]).copy())
        m.running_var.data = torch.from_numpy(np.asarray(b.var[...]).copy())
        return m

    class TBlock(nn.Module):
        def __init__(self, blk):
            super().__init__()
            self.conv1, self.bn1 = conv(blk.conv1), bn(blk.bn1)
            self.conv2, self.bn2 = conv(blk.conv2), bn(blk.bn2)
            self.down = None
            if blk.project:
                self.down = nn.Sequential(conv(blk.down.layers[0]), bn(blk.down.layers[1]))

        def forward(self, x):
            y = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(y + (x if self.down is None else self.down(x)))

    class TResNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem, self.stem_bn = conv(model.stem), bn(model.stem_bn)
            self.stages = nn.ModuleList(
                nn.Sequential(*[TBlock(b) for b in stage.layers]) for stage in model.stages
            )
            fc = nn.Linear(model.fc.kernel.shape[0], model.fc.kernel.shape[1])
            fc.weight.data = torch.from_numpy(np.asarray(model.fc.kernel[...]).T.copy())
            fc.bias.data = torch.from_numpy(np.asarray(model.fc.bias[...]).copy())
            self.fc = fc

        def forward(self, x):
            x = torch.relu(self.stem_bn(self.stem(x)))
            x = torch.nn.functional.max_pool2d(x, 3, 2, 1)
            for stage in self.stages:
                x = stage(x)
            return self.fc(x.mean(dim=(2, 3)))

    return TResNet().eval()


def _logits(model, images):
    model.eval()
    return model(images)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--widths", default="32,64,128,256")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)

    widths = tuple(int(w) for w in args.widths.split(","))
    model = ResNet(widths, classes=1000, rngs=nnx.Rngs(0))
    _randomise_batchnorm(model, jax.random.key(1))
    model.eval()
    images = jax.random.uniform(jax.random.key(2), (args.batch, args.size, args.size, 3))
    graphdef, state = nnx.split(model)

    @jax.jit
    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    @jax.jit
    def forward_backward(state, x):
        def total(x):
            logits = nnx.merge(graphdef, state)(x)
            return jnp.take_along_axis(logits, jnp.argmax(logits, 1)[:, None], 1).sum()

        return jax.grad(total)(x)

    def features(m, x):
        x = jax.nn.relu(m.stem_bn(m.stem(x)))
        x = nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        for stage in m.stages:
            x = stage(x)
        return x

    @jax.jit
    def forward_backward_to_layer(state, x):
        # What Grad-CAM must compute at least: the forward pass and d logit / d A at the layer.
        m = nnx.merge(graphdef, state)
        A = features(m, x)

        def total(a):
            logits = m.fc(a.mean(axis=(1, 2)))
            return jnp.take_along_axis(logits, jnp.argmax(logits, 1)[:, None], 1).sum()

        return A, jax.grad(total)(A)

    def run_cam():
        return cam.grad_cam(model, "stages/3", images).values.block_until_ready()

    timings = _time_interleaved(
        {
            "cam": run_cam,
            "floor": lambda: forward_backward(state, images).block_until_ready(),
            "layer": lambda: jax.block_until_ready(forward_backward_to_layer(state, images)),
            "forward": lambda: forward(state, images).block_until_ready(),
        },
        args.repeats,
    )
    t_cam, t_floor, t_layer, t_fwd = (timings[k] for k in ("cam", "floor", "layer", "forward"))
    exp = cam.grad_cam(model, "stages/3", images)
    n = args.batch
    result = {
        "model": f"ResNet-style NNX CNN, basic blocks {widths}, 1 block per stage, 1000 classes",
        "params": int(sum(np.size(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))),
        "batch": n,
        "image_size": args.size,
        "repeats": args.repeats,
        "device": str(jax.devices()[0].device_kind),
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "xaijax_grad_cam": {"seconds": t_cam, "images_per_s": n / t_cam},
        "forward_backward_floor": {"seconds": t_floor, "images_per_s": n / t_floor},
        "forward_backward_to_layer_floor": {"seconds": t_layer, "images_per_s": n / t_layer},
        "forward_only": {"seconds": t_fwd, "images_per_s": n / t_fwd},
        "ratio_grad_cam_to_floor": t_cam / t_floor,
        "ratio_grad_cam_to_layer_floor": t_cam / t_layer,
        "raw_map_shape": list(np.shape(exp.extras["raw_maps"])),
    }
    captum = _captum(model, images, exp.extras["targets"], exp.extras["raw_maps"], args.repeats)
    if captum is not None:
        captum["images_per_s"] = n / captum["seconds"]
        result["captum_layer_grad_cam"] = captum
        result["speedup_vs_captum"] = captum["seconds"] / t_cam
    result["environment"] = environment()
    result["memory"] = memory()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
