"""Explaining a dataset with many processes (hosts) under JAX's multi-controller runtime.

Every process runs this same script: it joins the job with ``jax.distributed.initialize``,
builds the same model from the same seed, explains its own contiguous share of the instances on
its default device and writes its part.
Instance ``i`` always draws from ``jax.random.split(key, N)[i]``, whichever process explains it,
so the merged parts equal a single-process run of all ``N`` instances (up to float rounding of
batches of other sizes; ``--launch`` measures the difference).

The data are scikit-learn's breast-cancer diagnoses (569 x 30, standardised); the model a small
scikit-learn MLP (``MLPClassifier(hidden_layer_sizes=(16,), random_state=seed)``) whose weights
are re-expressed as a JAX function, so the explainer compiles end to end; the background 16
k-means centres of the training rows.

One machine, N local CPU processes (the coordinator on localhost), then merge and check::

    python experiments/multihost.py --launch 2 --instances 64

Many hosts: start the same command on every host, the coordinator being process 0's host::

    python experiments/multihost.py --coordinator host0:12355 --num-processes 4 --process-id $i
    python experiments/multihost.py --merge      # once every part is written (shared --out)

Writes ``runs/multihost/part-<process_id>.{npz,json}`` (an :class:`xaijax.Explanation` with
extras ``rows``, the dataset rows it explains) and, on merge, ``merged.{npz,json}`` and
``results.json`` (timings, versions, and with ``--launch`` the largest difference from the
single-process run).

Limitation: one device per process. Sharding each process's share over several local devices
as well (``mesh=xj.instance_mesh()``) hung on CPU under ``jax.distributed`` (JAX 0.10.2, two
processes of two forced host devices: one process never finished its first multi-device
computation), so the example leaves it out; within one process ``mesh=`` is tested in
``tests/test_sharding.py``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import subprocess
import sys
import time

import numpy as np

METHODS = ("kernel_shap", "permutation_shap", "lime_tabular")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Multi-process (multi-host) explanation")
    parser.add_argument("--launch", type=int, default=0, help="spawn N local processes, merge")
    parser.add_argument("--merge", action="store_true", help="only merge the parts in --out")
    parser.add_argument("--coordinator", default=None, help="host:port of process 0")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--method", choices=METHODS, default="kernel_shap")
    parser.add_argument("--instances", type=int, default=64, help="first N test rows (0: all)")
    parser.add_argument("--num-samples", type=int, default=256, help="coalitions / neighbours")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-check", action="store_true", help="--launch: skip 1-process run")
    parser.add_argument("--out", default=os.path.join("runs", "multihost"))
    args = parser.parse_args(argv)

    if args.launch:
        return launch(args)
    if args.merge:
        merge(args.out, args.num_processes if args.coordinator else None)
        return 0
    worker(args)
    return 0


def setup(seed: int, instances: int):
    """The model, background and instances, the same in every process given the seed."""
    import jax
    import jax.numpy as jnp
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    import xaijax as xj
    from xaijax.zoo.data import breast_cancer

    data = breast_cancer()
    X_train, X_test, y_train, _ = train_test_split(
        data.X, data.y, test_size=0.3, random_state=seed, stratify=data.y
    )
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=500, random_state=seed)
    clf.fit(X_train, y_train)
    (W1, W2), (b1, b2) = (
        [jnp.asarray(a, jnp.float32) for a in t] for t in (clf.coefs_, clf.intercepts_)
    )

    def f(X):  # predict_proba's benign column, in JAX
        return jax.nn.sigmoid(jax.nn.relu(X @ W1 + b1[None, :]) @ W2 + b2[None, :])[:, 0]

    background = xj.kmeans(X_train, 16, key=jax.random.key(seed))
    X = X_test if instances <= 0 else X_test[:instances]
    return f, X, background, X_train, data.feature_names


def explain(method, f, X, background, train, names, keys, *, num_samples):
    """Explain rows ``X`` with their own keys (one per row)."""
    import xaijax as xj

    if method == "kernel_shap":
        return xj.kernel_shap(
            f, X, background, key=keys, num_samples=num_samples, feature_names=names
        )
    if method == "permutation_shap":
        P = max(1, num_samples // (2 * X.shape[1] + 1))
        return xj.permutation_shap(
            f, X, background, key=keys, num_permutations=P, feature_names=names
        )
    return xj.lime_tabular(f, X, train, key=keys, num_samples=num_samples, feature_names=names)


def worker(args) -> None:
    """One process of the job: explain this process's share and write ``part-<id>``."""
    import jax

    if args.coordinator:
        jax.distributed.initialize(
            coordinator_address=args.coordinator,
            num_processes=args.num_processes,
            process_id=args.process_id,
        )
    pid, count = jax.process_index(), jax.process_count()
    f, X, background, train, names = setup(args.seed, args.instances)
    N = X.shape[0]
    rows = np.array_split(np.arange(N), count)[pid]
    # Keys for all N instances, then this process's slice: instance i's key never depends on
    # how the instances are split.
    keys = jax.random.split(jax.random.key(args.seed), N)[rows]
    start = time.perf_counter()
    exp = explain(
        args.method,
        f,
        X[rows],
        background,
        train,
        names,
        keys,
        num_samples=args.num_samples,
    )
    seconds = time.perf_counter() - start
    exp = dataclasses.replace(
        exp,
        extras={
            **exp.extras,
            "rows": rows,
            "process_id": pid,
            "num_processes": count,
            "local_devices": len(jax.local_devices()),
            "seconds": seconds,
        },
    )
    exp.save(os.path.join(args.out, f"part-{pid}"))
    print(
        f"process {pid}/{count}: rows {rows[0]}..{rows[-1]} on {len(jax.local_devices())} "
        f"device(s) in {seconds:.2f} s"
    )
    if args.coordinator:
        jax.distributed.shutdown()


def merge(out: str, num_processes: int | None = None):
    """Check that the parts in ``out`` cover every row once, and concatenate them in row order."""
    import xaijax as xj

    names = sorted(p for p in os.listdir(out) if p.startswith("part-") and p.endswith(".npz"))
    parts = [xj.Explanation.load(os.path.join(out, p)) for p in names]
    if not parts:
        raise FileNotFoundError(f"no part-*.npz in {out}")
    count = int(parts[0].extras["num_processes"])
    if len(parts) != count or (num_processes is not None and count != num_processes):
        raise ValueError(f"{out} holds {len(parts)} parts of a {count}-process run")
    rows = np.concatenate([np.asarray(p.extras["rows"]) for p in parts])
    order = np.argsort(rows)
    if not np.array_equal(rows[order], np.arange(len(rows))):
        raise ValueError(f"the parts in {out} do not cover rows 0..{len(rows) - 1} once each")
    first = parts[0]
    merged = xj.Explanation(
        values=np.concatenate([np.asarray(p.values) for p in parts])[order],
        base_values=np.concatenate([np.asarray(p.base_values) for p in parts])[order],
        data=np.concatenate([np.asarray(p.data) for p in parts])[order],
        feature_names=first.feature_names,
        output_names=first.output_names,
        method=first.method,
        extras={
            "num_processes": count,
            "seconds_per_process": [float(p.extras["seconds"]) for p in parts],
            "local_devices": [int(p.extras["local_devices"]) for p in parts],
        },
    )
    merged.save(os.path.join(out, "merged"))
    return merged


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def launch(args) -> int:
    """Spawn ``--launch N`` local processes, merge their parts, compare with one process."""
    os.makedirs(args.out, exist_ok=True)
    for p in os.listdir(args.out):
        if p.startswith(("part-", "merged")):
            os.remove(os.path.join(args.out, p))
    coordinator = f"localhost:{free_port()}"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    import xaijax

    package_root = os.path.dirname(os.path.dirname(os.path.abspath(xaijax.__file__)))
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        PYTHONPATH=os.pathsep.join([package_root, os.environ.get("PYTHONPATH", "")]),
    )
    common = [
        f"--method={args.method}",
        f"--instances={args.instances}",
        f"--num-samples={args.num_samples}",
        f"--seed={args.seed}",
        f"--out={args.out}",
        f"--coordinator={coordinator}",
        f"--num-processes={args.launch}",
    ]
    script = os.path.join(root, "experiments", "multihost.py")
    start = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, script, *common, f"--process-id={i}"], env=env)
        for i in range(args.launch)
    ]
    codes = [p.wait(timeout=1200) for p in procs]
    wall = time.perf_counter() - start
    if any(codes):
        print(f"worker exit codes {codes}", file=sys.stderr)
        return 1
    merged = merge(args.out, args.launch)

    results = {
        "experiment": "multihost",
        "seed": args.seed,
        "settings": {
            "method": args.method,
            "instances": int(merged.values.shape[0]),
            "num_samples": args.num_samples,
            "num_processes": args.launch,
            "data": "breast_cancer (test split, 30% stratified, random_state=seed)",
            "model": "MLPClassifier(hidden_layer_sizes=(16,), random_state=seed) as JAX",
        },
        "wall_seconds": wall,
        "seconds_per_process": merged.extras["seconds_per_process"],
    }
    if not args.no_check:
        import jax

        with jax.default_device(jax.devices("cpu")[0]):  # the workers' platform
            f, X, background, train, names = setup(args.seed, args.instances)
            keys = jax.random.split(jax.random.key(args.seed), X.shape[0])
            start = time.perf_counter()
            single = explain(
                args.method, f, X, background, train, names, keys, num_samples=args.num_samples
            )
        results["single_process_seconds"] = time.perf_counter() - start
        diff = np.abs(np.asarray(single.values) - merged.values)
        results["max_abs_difference"] = float(diff.max())
        results["bitwise_equal"] = bool(
            np.array_equal(single.values, merged.values)
            and np.array_equal(single.base_values, merged.base_values)
        )
        results["max_abs_value"] = float(np.abs(merged.values).max())
    from xaijax.cli.runs import save_results

    path = save_results(args.out, results)
    print(
        f"{args.launch} processes: {wall:.1f} s wall; "
        f"merged {merged.values.shape} -> {path}"
        + (
            ""
            if args.no_check
            else f"; max |merged - single process| = {results['max_abs_difference']:.2e}"
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
