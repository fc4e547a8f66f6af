"""LRP throughput on a small CNN at 224 px: one ``xaijax.lrp`` call vs one gradient and zennit.

Run:  python -m benchmarks.lrp [--batch 32] [--size 224] [--repeats 3]

Measures, on the same weights and images (median of ``--repeats`` interleaved timed calls after
one warm-up call each), CPU by default:

* ``xaijax.lrp(f, images, targets=t, composite="epsilon_plus_flat")``: the public call,
  including input checks (flat first layer, z+ on convolutions, epsilon on dense layers,
  batch-norm folded into the first convolution);
* the floor: one jitted forward pass plus the backward pass of the target logits down to the
  input (``jax.grad``), i.e. one backward pass, which LRP's rules replace (goal: at most 1.5x);
* when ``torch`` and ``zennit`` import: zennit's ``EpsilonPlusFlat`` (with its batch-norm
  canonizer) on a PyTorch twin with the same weights, checked to give the same relevance.

The CNN: conv3x3(3->16), batch norm, ReLU, max pool 2, conv3x3(16->32), ReLU, max pool 2,
conv3x3(32->32), ReLU, global average pool, dense(32->10). Writes ``benchmarks/results/lrp.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import xaijax as xj
from benchmarks.common import environment, memory

RESULTS = os.path.join(os.path.dirname(__file__), "results", "lrp.json")
BN_EPS = 1e-5


def _weights(seed=0):
    rng = np.random.default_rng(seed)

    def w(*shape):
        fan_in = int(np.prod(shape[:-1]))
        return (rng.normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    return {
        "K1": w(3, 3, 3, 16),
        "c1": (0.05 * rng.normal(size=16)).astype(np.float32),
        "mean": (0.1 * rng.normal(size=16)).astype(np.float32),
        "var": rng.uniform(0.5, 1.5, size=16).astype(np.float32),
        "g": rng.uniform(0.5, 1.5, size=16).astype(np.float32),
        "beta": (0.1 * rng.normal(size=16)).astype(np.float32),
        "K2": w(3, 3, 16, 32),
        "c2": (0.05 * rng.normal(size=32)).astype(np.float32),
        "K3": w(3, 3, 32, 32),
        "c3": (0.05 * rng.normal(size=32)).astype(np.float32),
        "W": w(32, 10),
        "b": (0.05 * rng.normal(size=10)).astype(np.float32),
    }


def make_model(p):
    def conv(x, k, b):
        dn = ("NHWC", "HWIO", "NHWC")
        y = jax.lax.conv_general_dilated(x, k, (1, 1), ((1, 1), (1, 1)), dimension_numbers=dn)
        return y + b.reshape(1, 1, 1, -1)

    def pool(x):
        return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")

    def f(X):
        c = {k: p[k].reshape(1, 1, 1, -1) for k in ("mean", "var", "g", "beta")}
        h = conv(X, p["K1"], p["c1"])
        h = (h - c["mean"]) / jnp.sqrt(c["var"] + BN_EPS) * c["g"] + c["beta"]
        h = pool(jax.nn.relu(h))
        h = pool(jax.nn.relu(conv(h, p["K2"], p["c2"])))
        h = jax.nn.relu(conv(h, p["K3"], p["c3"])).mean(axis=(1, 2))
        return h @ p["W"] + p["b"][None]

    return f


def torch_twin(p, torch):
    nn = torch.nn

    def conv(k, b):
        m = nn.Conv2d(k.shape[2], k.shape[3], 3, padding=1)
        m.weight.data = torch.from_numpy(k.transpose(3, 2, 0, 1).copy())
        m.bias.data = torch.from_numpy(b.copy())
        return m

    bn = nn.BatchNorm2d(16, eps=BN_EPS)
    bn.running_mean.data = torch.from_numpy(p["mean"].copy())
    bn.running_var.data = torch.from_numpy(p["var"].copy())
    bn.weight.data = torch.from_numpy(p["g"].copy())
    bn.bias.data = torch.from_numpy(p["beta"].copy())
    fc = nn.Linear(32, 10)
    fc.weight.data = torch.from_numpy(p["W"].T.copy())
    fc.bias.data = torch.from_numpy(p["b"].copy())
    return nn.Sequential(
        conv(p["K1"], p["c1"]),
        bn,
        nn.ReLU(),
        nn.MaxPool2d(2),
        conv(p["K2"], p["c2"]),
        nn.ReLU(),
        nn.MaxPool2d(2),
        conv(p["K3"], p["c3"]),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        fc,
    ).eval()


def _time_interleaved(fns, repeats):
    """Median seconds per call of each function, calls interleaved; one warm-up call each."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _zennit(p, images, targets, ours, repeats):
    """zennit's EpsilonPlusFlat on the twin; None when torch/zennit do not import."""
    try:
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tests"))
        import gradcam_standin  # zennit imports torchvision; the tests' stand-in (no calls)

        gradcam_standin.install()
        import torch
        from zennit.attribution import Gradient
        from zennit.canonizers import SequentialMergeBatchNorm
        from zennit.composites import EpsilonPlusFlat
    except Exception:
        return None
    model = torch_twin(p, torch)
    x = torch.from_numpy(np.asarray(images).transpose(0, 3, 1, 2).copy())
    onehot = torch.nn.functional.one_hot(torch.from_numpy(targets.astype(np.int64)), 10).float()

    def run():
        comp = EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])
        with Gradient(model=model, composite=comp) as attributor:
            _, rel = attributor(x.clone().requires_grad_(True), lambda out: out * onehot)
        return rel

    rel = run().detach().numpy().transpose(0, 2, 3, 1)
    seconds = _time_interleaved({"zennit": run}, repeats)["zennit"]
    return {
        "seconds": seconds,
        "max_relevance_diff_vs_xaijax": float(np.abs(rel - ours).max()),
        "max_relevance": float(np.abs(rel).max()),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)

    p = _weights()
    f = make_model(p)
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(args.batch, args.size, args.size, 3)).astype(np.float32)
    targets = rng.integers(0, 10, size=args.batch).astype(np.int32)
    X = jnp.asarray(images)
    T = jnp.asarray(targets)

    def explain():
        return xj.lrp(f, images, targets=targets, batch_size=args.batch).values

    @jax.jit
    def gradient(X, T):
        return jax.grad(lambda X: jnp.sum(f(X)[jnp.arange(X.shape[0]), T]))(X)

    t0 = time.perf_counter()
    ours = np.asarray(explain())
    first = time.perf_counter() - t0
    times = _time_interleaved(
        {
            "lrp": lambda: np.asarray(explain()),
            "gradient": lambda: gradient(X, T).block_until_ready(),
        },
        args.repeats,
    )
    z = _zennit(p, images, targets, ours, args.repeats)
    print(f"lrp      {times['lrp'] * 1e3:9.1f} ms (first call {first:.1f} s)")
    print(
        f"gradient {times['gradient'] * 1e3:9.1f} ms  ratio {times['lrp'] / times['gradient']:.2f}x"
    )
    if z:
        print(
            f"zennit   {z['seconds'] * 1e3:9.1f} ms  "
            f"max diff {z['max_relevance_diff_vs_xaijax']:.2e}"
        )

    result = {
        "benchmark": "lrp",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "batch": args.batch,
        "image_size": args.size,
        "composite": "epsilon_plus_flat",
        "xaijax_lrp": {"seconds": times["lrp"], "first_call_seconds": first},
        "gradient_floor": {"seconds": times["gradient"]},
        "ratio_to_floor": times["lrp"] / times["gradient"],
        "zennit_epsilon_plus_flat": z,
        "environment": environment(),
        "memory": memory(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
