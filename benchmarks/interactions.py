"""Exact Shapley interactions: xaijax against shapiq's ExactComputer and the model floor.

The first 16 breast-cancer features (standardised), a JAX MLP (16-32-1, tanh, seeded NumPy
weights) and a 10-row background. ``xj.shapley_interactions(index="SII", max_order=2)`` scores
all ``2^16`` coalitions of each instance over the background (655,360 model rows) and returns
every SII of orders 0-2. shapiq's ExactComputer gets the same value function (the same jitted
model over the same background, one call for all coalitions) and computes SII up to order 2; its
time is split into the game evaluation and the index computation. The floor is the model
evaluated once on the same number of rows, built in advance, in the same chunks. The largest
difference from shapiq is recorded.

    python -m benchmarks.interactions [--instances 8] [--shapiq-instances 1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
import warnings
from importlib.metadata import version

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import environment, memory


def make_model(M, seed=0):
    rng = np.random.default_rng(seed)
    W1 = jnp.asarray(rng.normal(size=(M, 32)) / np.sqrt(M), jnp.float32)
    b1 = jnp.asarray(rng.normal(size=(1, 32)) * 0.1, jnp.float32)
    W2 = jnp.asarray(rng.normal(size=(32,)) / 4.0, jnp.float32)

    def mlp(X):
        return jnp.tanh(jnp.tanh(X @ W1 + b1) @ W2)

    return mlp


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--instances", type=int, default=8)
    parser.add_argument("--shapiq-instances", type=int, default=1)
    parser.add_argument("--background", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/interactions.json")
    args = parser.parse_args(argv)

    from sklearn.datasets import load_breast_cancer

    import xaijax as xj

    M = args.features
    data = load_breast_cancer().data[:, :M].astype(np.float32)
    data = (data - data.mean(0)) / data.std(0)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(data))
    X = data[idx[: args.instances]]
    bg = data[idx[args.instances : args.instances + args.background]]
    f = make_model(M)
    B = len(bg)

    def ours():
        return xj.shapley_interactions(f, X, bg, index="SII", max_order=2)

    start = time.perf_counter()
    exp = ours()
    first = time.perf_counter() - start
    best = np.inf
    for _ in range(args.repeats):
        start = time.perf_counter()
        exp = ours()
        best = min(best, time.perf_counter() - start)
    print(f"xaijax: {1e3 * best / len(X):.1f} ms per instance (first call {first:.1f} s)")

    # The floor: the model on every coalition x background row, built in advance, in the
    # explainer's default chunks (one call on every row is slower on a CPU: ~1.8x at M=16).
    from xaijax.core.batching import evaluate
    from xaijax.core.model import as_model

    adapted, params = as_model(f, bg)
    bits = (np.arange(2**M)[:, None] >> np.arange(M - 1, -1, -1)[None]) & 1
    floor_fn = jax.jit(lambda R: evaluate(adapted, params, R).reshape(2**M, B).mean(1))
    rows = jnp.asarray(np.where(bits[:, None, :] == 1, X[0], bg[None]).reshape(-1, M))
    jax.block_until_ready(floor_fn(rows))
    floor = np.inf
    for _ in range(max(args.repeats, 1)):
        start = time.perf_counter()
        jax.block_until_ready(floor_fn(rows))
        floor = min(floor, time.perf_counter() - start)
    print(f"floor: {1e3 * floor:.1f} ms per instance")

    shapiq_rows = []
    if args.shapiq_instances:
        from shapiq import ExactComputer

        for i in range(min(args.shapiq_instances, len(X))):
            x = X[i]

            def game(coalitions, x=x):
                C = np.asarray(coalitions, bool)
                R = np.where(C[:, None, :], x, bg[None]).reshape(-1, M)
                return np.asarray(jax.jit(f)(R), np.float64).reshape(len(C), B).mean(1)

            start = time.perf_counter()
            computer = ExactComputer(game, M, evaluate_game=True)
            evaluated = time.perf_counter() - start
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                iv = computer("SII", 2)
            computed = time.perf_counter() - start
            diff = max(
                abs(float(exp.extras[f"order_{len(S)}"][(i, *S)]) - iv.values[j])
                for S, j in iv.interaction_lookup.items()
            )
            shapiq_rows.append(
                {
                    "game_seconds": evaluated,
                    "index_seconds": computed,
                    "seconds": evaluated + computed,
                    "max_abs_diff": diff,
                }
            )
            print(
                f"shapiq {version('shapiq')}: {evaluated + computed:.1f} s "
                f"(game {evaluated:.2f} s, SII {computed:.1f} s), max |diff| {diff:.2e}"
            )

    result = {
        "benchmark": "interactions",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "data": f"breast cancer, first {M} features (standardised)",
        "model": f"MLP {M}-32-1, tanh (seeded NumPy weights)",
        "features": M,
        "instances": len(X),
        "background": B,
        "index": "SII",
        "max_order": 2,
        "xaijax_ms_per_instance": 1e3 * best / len(X),
        "xaijax_first_call_seconds": first,
        "floor_ms_per_instance": 1e3 * floor,
        "shapiq": shapiq_rows,
        "shapiq_version": version("shapiq") if shapiq_rows else None,
        "shapiq_ms_per_instance": (
            1e3 * float(np.mean([r["seconds"] for r in shapiq_rows])) if shapiq_rows else None
        ),
        "max_abs_diff_vs_shapiq": max((r["max_abs_diff"] for r in shapiq_rows), default=None),
        "environment": environment(),
        "memory": memory(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
