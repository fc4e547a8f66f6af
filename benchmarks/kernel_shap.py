"""Kernel SHAP: xaijax against shap.KernelExplainer and the model-evaluation floor.

Breast-cancer data (M = 30), a 50-row background, 2048 coalitions per instance, for
(a) a JAX MLP (an NNX module) and (b) a scikit-learn MLP through the host adapter. The floor is the
time to evaluate the same model once on the same number of rows (instances x coalitions x
background), in the same chunks, with the rows already built: what any Kernel SHAP must spend.

    python -m benchmarks.kernel_shap [--instances 20] [--shap-instances 5] [--out PATH]
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
    from xaijax.core.batching import DEFAULT_BATCH_SIZE, evaluate
    from xaijax.core.model import as_model

    n, B = len(X), len(bg)

    def ours(key):
        return xj.kernel_shap(model, X, bg, key=key, num_samples=S).values

    start = time.perf_counter()
    jax.block_until_ready(ours(jax.random.key(1)))  # compile + first run
    first = time.perf_counter() - start

    # The floor: the same model on the same number of rows, built in advance, same chunks.
    adapted, params = as_model(model, bg)
    masks = np.random.default_rng(0).random((S, X.shape[1])) < 0.5
    rows = np.where(masks[:, None, :], X[0][None, None, :], bg[None]).reshape(-1, X.shape[1])
    rows = jnp.asarray(np.tile(rows, (n, 1)))
    floor_fn = jax.jit(lambda R: evaluate(adapted, params, R, batch_size=DEFAULT_BATCH_SIZE))
    jax.block_until_ready(floor_fn(rows))
    # Interleaved repeats, so background load hits both alike; best of each.
    t_ours, t_floor = [], []
    for i in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready(ours(jax.random.key(2 + i)))
        t_ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        jax.block_until_ready(floor_fn(rows))
        t_floor.append(time.perf_counter() - start)
    t_ours, t_floor = min(t_ours), min(t_floor)
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
        "speedup_vs_shap": t_shap / (t_ours / n),
        "ratio_to_floor": t_ours / t_floor,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--shap-instances", type=int, default=5)
    parser.add_argument("--num-samples", type=int, default=2048)
    parser.add_argument("--background", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import shap
    from flax import nnx
    from sklearn.neural_network import MLPClassifier

    from xaijax import zoo
    from xaijax.zoo import data

    train, test = data.train_test_split(data.breast_cancer(), seed=0)
    net = zoo.MLP(30, [64, 64], 2, softmax=True, rngs=nnx.Rngs(0))
    zoo.train(net, train.X, train.y, key=jax.random.key(0), epochs=20)
    sk = MLPClassifier((64, 64), max_iter=300, random_state=0).fit(train.X, train.y)
    bg = train.X[: args.background]
    X = test.X[: args.instances]
    S, n = args.num_samples, args.instances
    results = []

    for name, model, np_model in (
        ("jax_mlp", net, lambda Z: np.asarray(net(jnp.asarray(Z, jnp.float32)))),
        ("sklearn_mlp_host", sk.predict_proba, sk.predict_proba),
    ):
        print(f"== {name}: {n} instances, M=30, {S} coalitions, {len(bg)} background rows")
        row = measure(name, model, np_model, X, bg, S, args)
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
            f"| {r['model']} | {r['xaijax_ms_per_instance']:.1f} | "
            f"{r['shap_ms_per_instance']:.1f} | {r['floor_ms_per_instance']:.1f} | "
            f"{r['speedup_vs_shap']:.1f}x faster | {r['ratio_to_floor']:.2f}x |"
        )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
