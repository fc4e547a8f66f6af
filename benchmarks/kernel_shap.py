"""Kernel SHAP: xaijax against shap.KernelExplainer and the model-evaluation floor.

Two cases (``--case``, default both):

* ``breast_cancer``: breast-cancer data (M = 30), a 50-row background, 2048 coalitions per
  instance, for (a) a JAX MLP (an NNX module, two hidden layers of 64) and (b) a scikit-learn MLP
  through the host adapter;
* ``small``: a small model, where the explainer's own work per instance shows: the first 20
  breast-cancer features, an NNX MLP with one hidden layer of 32, a 30-row background and the
  automatic budget (``2M + 2048 = 2088`` coalitions).

The floor is the time to evaluate the same model once on the same number of rows (instances x
coalitions x background), in the same chunks (the explainer's default ``batch_size``), with the
rows already built: what any Kernel SHAP must spend. The unchunked floor (every row in one call)
is recorded beside it.

    python -m benchmarks.kernel_shap [--case small] [--instances 20] [--shap-instances 5]
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


def measure(name, model, np_model, X, bg, S, args):
    import shap

    import xaijax as xj
    from xaijax.core.batching import default_batch_size, evaluate
    from xaijax.core.model import as_model
    from xaijax.shapley.kernel import planned_samples

    n, B = len(X), len(bg)
    num_samples = S
    S = planned_samples(X.shape[1], S)
    chunk = default_batch_size(X.shape[1:], jnp.float32)  # what kernel_shap resolves None to

    def ours(key):
        return xj.kernel_shap(model, X, bg, key=key, num_samples=num_samples).values

    start = time.perf_counter()
    jax.block_until_ready(ours(jax.random.key(1)))  # compile + first run
    first = time.perf_counter() - start

    # The floor: the same model on the same number of rows, built in advance, same chunks.
    adapted, params = as_model(model, bg)
    masks = np.random.default_rng(0).random((S, X.shape[1])) < 0.5
    rows = np.where(masks[:, None, :], X[0][None, None, :], bg[None]).reshape(-1, X.shape[1])
    rows = jnp.asarray(np.tile(rows, (n, 1)))
    floor_fn = jax.jit(lambda R: evaluate(adapted, params, R, batch_size=chunk))
    whole_fn = jax.jit(lambda R: adapted.apply(params, R))
    jax.block_until_ready(floor_fn(rows))
    jax.block_until_ready(whole_fn(rows))
    # Interleaved repeats, so background load hits all alike; best of each.
    t_ours, t_floor, t_whole = [], [], []
    for i in range(args.repeats):
        for times, fn, arg in (
            (t_ours, ours, jax.random.key(2 + i)),
            (t_floor, floor_fn, rows),
            (t_whole, whole_fn, rows),
        ):
            start = time.perf_counter()
            jax.block_until_ready(fn(arg))
            times.append(time.perf_counter() - start)
    spread = {
        "xaijax_ms_per_instance_all": [1e3 * t / n for t in t_ours],
        "floor_ms_per_instance_all": [1e3 * t / n for t in t_floor],
    }
    t_ours, t_floor, t_whole = min(t_ours), min(t_floor), min(t_whole)
    del rows

    explainer = shap.KernelExplainer(np_model, bg)
    m = args.shap_instances
    start = time.perf_counter()
    explainer.shap_values(X[:m], nsamples=S, l1_reg=False, silent=True)
    t_shap = (time.perf_counter() - start) / m
    return {
        "model": name,
        "instances": n,
        "features": X.shape[1],
        "num_samples": S,
        "background": B,
        "model_rows": n * S * B,
        "xaijax_ms_per_instance": 1e3 * t_ours / n,
        "xaijax_first_call_s": first,
        "shap_ms_per_instance": 1e3 * t_shap,
        "shap_instances_timed": m,
        "floor_ms_per_instance": 1e3 * t_floor / n,
        "floor_chunk_rows": chunk,
        "floor_unchunked_ms_per_instance": 1e3 * t_whole / n,
        "speedup_vs_shap": t_shap / (t_ours / n),
        "ratio_to_floor": t_ours / t_floor,
        **spread,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("breast_cancer", "small", "all"), default="all")
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--shap-instances", type=int, default=5)
    parser.add_argument("--num-samples", type=int, default=2048, help="breast_cancer case")
    parser.add_argument("--background", type=int, default=50, help="breast_cancer case")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import shap
    from flax import nnx
    from sklearn.neural_network import MLPClassifier

    from xaijax import zoo
    from xaijax.zoo import data

    train, test = data.train_test_split(data.breast_cancer(), seed=0)
    n = args.instances
    results = []

    def numpy_of(net):
        return lambda Z: np.asarray(net(jnp.asarray(Z, jnp.float32)))

    if args.case in ("breast_cancer", "all"):
        net = zoo.MLP(30, [64, 64], 2, softmax=True, rngs=nnx.Rngs(0))
        zoo.train(net, train.X, train.y, key=jax.random.key(0), epochs=20)
        sk = MLPClassifier((64, 64), max_iter=300, random_state=0).fit(train.X, train.y)
        bg = train.X[: args.background]
        X = test.X[:n]
        S = args.num_samples
        for name, model, np_model in (
            ("jax_mlp", net, numpy_of(net)),
            ("sklearn_mlp_host", sk.predict_proba, sk.predict_proba),
        ):
            print(f"== {name}: {n} instances, M=30, {S} coalitions, {len(bg)} background rows")
            row = measure(name, model, np_model, X, bg, S, args)
            results.append(row)
            print(json.dumps(row, indent=2))

    if args.case in ("small", "all"):
        M = 20
        small = zoo.MLP(M, [32], 2, softmax=True, rngs=nnx.Rngs(0))
        zoo.train(small, train.X[:, :M], train.y, key=jax.random.key(0), epochs=20)
        bg, X = train.X[:30, :M], test.X[:n, :M]
        print(f"== jax_mlp_small: {n} instances, M={M}, auto coalitions, {len(bg)} background rows")
        row = measure("jax_mlp_small", small, numpy_of(small), X, bg, "auto", args)
        results.append(row)
        print(json.dumps(row, indent=2))

    report = {
        "benchmark": "kernel_shap",
        "date": datetime.date.today().isoformat(),
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "versions": {"jax": jax.__version__, "shap": shap.__version__, "numpy": np.__version__},
        "results": results,
        "environment": environment(),
        "memory": memory(),
    }
    out = args.out or os.path.join(
        os.path.dirname(__file__), "results", f"kernel_shap-{jax.default_backend()}.json"
    )
    with open(out, "w") as fh:
        json.dump(report, fh, indent=2)
    print("| model | xaijax ms/inst | shap ms/inst | floor ms/inst | vs shap | vs floor |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['model']} | {r['xaijax_ms_per_instance']:.2f} | "
            f"{r['shap_ms_per_instance']:.1f} | {r['floor_ms_per_instance']:.2f} | "
            f"{r['speedup_vs_shap']:.1f}x faster | {r['ratio_to_floor']:.2f}x |"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
