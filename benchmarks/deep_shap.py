"""Deep SHAP against Kernel SHAP and Expected Gradients: time and error to exact Shapley values.

Diabetes data (M = 10, standardised), a two-hidden-layer ReLU MLP with a tanh output (weights from
a seeded NumPy generator), a 20-row background and 20 explained instances. Exact interventional
Shapley values (all 2^10 coalitions) are the reference; the error is the mean absolute
difference divided by the mean absolute exact value. Times are the best of a few runs after the
first (compiling) call.

    python -m benchmarks.deep_shap [--instances 20] [--repeats 3] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import environment, memory


def make_model(M, seed=0):
    rng = np.random.default_rng(seed)
    W1 = jnp.asarray(rng.normal(size=(M, 32)) / np.sqrt(M), jnp.float32)
    b1 = jnp.asarray(rng.normal(size=(1, 32)) * 0.1, jnp.float32)
    W2 = jnp.asarray(rng.normal(size=(32, 16)) / np.sqrt(32), jnp.float32)
    W3 = jnp.asarray(rng.normal(size=(16,)) / 4.0, jnp.float32)

    def mlp(X):
        h = jax.nn.relu(X @ W1 + b1)
        h = jax.nn.relu(h @ W2)
        return jnp.tanh(h @ W3)

    return mlp


def timed(fn, repeats):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(0))
    first = time.perf_counter() - start
    best = np.inf
    for i in range(repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(fn(i + 1))
        best = min(best, time.perf_counter() - start)
    return np.asarray(out), first, best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--background", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/deep_shap.json")
    args = parser.parse_args(argv)

    from sklearn.datasets import load_diabetes

    from xaijax.gradients import expected_gradients
    from xaijax.shapley import deep_shap, exact_shapley, kernel_shap

    data = load_diabetes().data.astype(np.float32)
    data = (data - data.mean(0)) / data.std(0)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(data))
    X = data[idx[: args.instances]]
    bg = data[idx[args.instances : args.instances + args.background]]
    M, B = X.shape[1], len(bg)
    f = make_model(M)

    exact, exact_first, exact_time = timed(lambda i: exact_shapley(f, X, bg).values, 1)
    scale = float(np.abs(exact).mean())

    def err(v):
        return float(np.abs(v - exact).mean() / scale)

    rows = []

    def record(name, fn, model_rows):
        values, first, best = timed(fn, args.repeats)
        rows.append(
            {
                "method": name,
                "seconds": best,
                "first_call_seconds": first,
                "relative_error": err(values),
                "model_rows_per_instance": model_rows,
            }
        )
        print(f"{name:34s} {best * 1e3:9.2f} ms   error {err(values):.4f}", flush=True)

    rows.append(
        {
            "method": "exact_shapley (reference)",
            "seconds": exact_time,
            "first_call_seconds": exact_first,
            "relative_error": 0.0,
            "model_rows_per_instance": 2**M * B,
        }
    )
    print(f"{'exact_shapley (reference)':34s} {exact_time * 1e3:9.2f} ms")
    # Deep SHAP: per reference, one forward pass at x and at r plus one backward pass.
    record("deep_shap", lambda i: deep_shap(f, X, bg).values, 3 * B)
    for s in (3, 64, 512):
        record(
            f"kernel_shap (num_samples={s})",
            lambda i, s=s: kernel_shap(f, X, bg, key=jax.random.key(i), num_samples=s).values,
            s * B,
        )
    for s in (B, 10 * B):
        # One gradient (forward + backward) per sample.
        record(
            f"expected_gradients (num_samples={s})",
            lambda i, s=s: (
                expected_gradients(f, X, bg, key=jax.random.key(i), num_samples=s).values
            ),
            2 * s,
        )

    result = {
        "benchmark": "deep_shap",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "data": "diabetes (M=10, standardised)",
        "model": "MLP 10-32-16-1, ReLU, tanh output (seeded NumPy weights)",
        "instances": len(X),
        "background": B,
        "error": "mean |phi - exact| / mean |exact|",
        "results": rows,
        "environment": environment(),
        "memory": memory(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
