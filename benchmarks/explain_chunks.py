"""The cost of explaining in resumable chunks (``xaijax explain``) against one call on all rows.

Breast-cancer data (569 rows, M = 30), a 20-centre k-means background, Kernel SHAP with 512
coalitions, for a JAX MLP (an NNX module) and a scikit-learn logistic regression on the host.
"one call" is ``kernel_shap`` on all rows; "chunks of c" is
:func:`xaijax.cli.chunks.explain_in_chunks` writing every chunk to disk and reading them back.
Times are "first" (compilation included, as a fresh ``xaijax explain`` pays it) and "warm" (best
of the repeats, compiled).

    python -m benchmarks.explain_chunks [--chunks 64 256] [--repeats 2] [--out PATH]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import tempfile
import time

import jax
import numpy as np


def measure(model, X, bg, args):
    import xaijax as xj
    from xaijax.cli.chunks import explain_in_chunks

    def one_call():
        return xj.kernel_shap(model, X, bg, key=jax.random.key(1), num_samples=args.num_samples)

    def chunked(size):
        def run():
            with tempfile.TemporaryDirectory() as folder:
                exp, _ = explain_in_chunks(
                    lambda rows, key: xj.kernel_shap(
                        model, rows, bg, key=key, num_samples=args.num_samples
                    ),
                    X,
                    key=jax.random.key(1),
                    folder=folder,
                    chunk_size=size,
                    progress=None,
                )
            return exp

        return run

    runs = {"one call": one_call, **{f"chunks of {c}": chunked(c) for c in args.chunks}}
    first, warm = {}, {name: [] for name in runs}
    for name, run in runs.items():
        start = time.perf_counter()
        jax.block_until_ready(run().values)
        first[name] = time.perf_counter() - start
    for _ in range(args.repeats):  # interleaved, so background load hits all alike
        for name, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run().values)
            warm[name].append(time.perf_counter() - start)
    return {
        name: {"first_s": round(first[name], 3), "warm_s": round(min(warm[name]), 3)}
        for name in runs
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--num-samples", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--out", default=os.path.join("benchmarks", "results", "explain_chunks.json")
    )
    args = parser.parse_args(argv)

    from flax import nnx
    from sklearn.linear_model import LogisticRegression

    import xaijax as xj
    from xaijax import zoo
    from xaijax.zoo import data

    ds = data.breast_cancer()
    X = np.asarray(ds.X, np.float32)
    bg = xj.kmeans(X, 20, key=jax.random.key(0))
    net = zoo.MLP(30, [16], 2, softmax=True, rngs=nnx.Rngs(0))
    clf = LogisticRegression(max_iter=1000).fit(X, ds.y)
    results = {
        "what": __doc__.splitlines()[0],
        "rows": len(X),
        "features": X.shape[1],
        "background": len(bg.data),
        "num_samples": args.num_samples,
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "device": str(jax.devices()[0]),
        "jax_mlp": measure(net, X, bg, args),
        "sklearn_logistic_regression_host": measure(clf.predict_proba, X, bg, args),
    }
    print(json.dumps(results, indent=2))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
