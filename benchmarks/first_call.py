"""First call against steady state, per explainer: what compiling costs, what the disk cache saves.

Each case runs in fresh processes, so that its first call is a real first call: once with no
persistent compilation cache, once with an empty cache folder (it compiles and writes the
programs) and once more on that folder, warm (it reads them back). Each process builds its model
and data (not timed), then times the first call and three more with new keys (the steady state),
and counts, with ``jax.monitoring``, the programs the first call asked XLA for, how many were read
from the cache, and the seconds spent tracing, lowering and compiling.

``--demo`` also times ``xaijax demo --quick`` and the full demo end to end (process start to
exit), cold and warm; ``--small-job`` a 10-row scikit-learn job end to end, ``xaijax explain``
against ``shap.KernelExplainer``. The load average is recorded with every number: the machine
these ran on was shared.

    python -m benchmarks.first_call                      # every explainer case (~5 min, 2 cores)
    python -m benchmarks.first_call --only grad_cam,kernel_shap
    python -m benchmarks.first_call --demo --small-job --readme
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
README = os.path.join(ROOT, "README.md")
STEADY_CALLS = 3
SMALL_JOB_ROUNDS = 7
# Modules whose import the small job times alone (the key is the top-level name).
SMALL_JOB_IMPORTS = ("jax", "ml_dtypes", "xaijax", "shap", "sklearn.linear_model")


# -- counting compilations ---------------------------------------------------------------------
class CompileCounter:
    """What JAX compiled since :meth:`reset`: programs, cache hits, and seconds per stage.

    ``programs`` counts the programs handed to XLA (each a ``backend_compile_duration`` event,
    whether compiled or read from the persistent cache); ``cache_hits`` those read from disk.
    """

    def __init__(self):
        import jax

        self.reset()
        jax.monitoring.register_event_duration_secs_listener(self._on_duration)
        jax.monitoring.register_event_listener(self._on_event)

    def reset(self):
        self.programs = 0
        self.cache_hits = 0
        self.seconds = {"trace": 0.0, "lower": 0.0, "xla": 0.0}
        self.names: list[str] = []

    def _on_duration(self, event, duration_secs, **kwargs):
        stage = {
            "/jax/core/compile/jaxpr_trace_duration": "trace",
            "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
            "/jax/core/compile/backend_compile_duration": "xla",
        }.get(event)
        if stage is None:
            return
        self.seconds[stage] += duration_secs
        if stage == "xla":
            self.programs += 1
            self.names.append(str(kwargs.get("fun_name", "?")))

    def _on_event(self, event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            self.cache_hits += 1

    def report(self) -> dict:
        return {
            "programs": self.programs,
            "cache_hits": self.cache_hits,
            "trace_s": self.seconds["trace"],
            "lower_s": self.seconds["lower"],
            "xla_s": self.seconds["xla"],
            "program_names": sorted(set(self.names)),
        }


# -- the cases: each builds its model and data, returns call(key) -------------------------------
def _mlp(M, K, *, hidden=16, softmax=False, seed=0):
    from flax import nnx

    from xaijax.zoo import nets

    return nets.MLP(M, [hidden], K, softmax=softmax, rngs=nnx.Rngs(seed))


def _tabular(M=30):
    import numpy as np

    from xaijax.zoo import data

    ds = data.breast_cancer() if M == 30 else data.diabetes()
    X = np.asarray(ds.X, np.float32)
    return X[:5], X[100:110]  # 5 instances, 10 background rows (the demo's sizes)


def _images():
    import jax

    from xaijax.zoo import data, nets

    test = data.synthetic_shapes(jax.random.key(1), 4, size=32)
    cnn = nets.build(lambda r: nets.CNN(3, 3, widths=(16, 32), rngs=r), seed=0)
    return cnn, test.images, test.labels


def case_kernel_shap():
    import xaijax as xj

    X, bg = _tabular(30)
    net = _mlp(30, 2, softmax=True)
    return lambda key: xj.kernel_shap(net, X, bg, key=key).values


def case_permutation_shap():
    import xaijax as xj

    X, bg = _tabular(30)
    net = _mlp(30, 2, softmax=True)
    return lambda key: xj.permutation_shap(net, X, bg, key=key, num_permutations=10).values


def case_exact_shapley():
    import xaijax as xj

    X, bg = _tabular(10)
    net = _mlp(10, 1, hidden=32)

    def f(Z):  # one function for every call: a new closure would be a new program
        return net(Z)[:, 0]

    return lambda key: xj.exact_shapley(f, X, bg).values


def case_lime_tabular():
    import numpy as np

    import xaijax as xj
    from xaijax.zoo import data

    X, _ = _tabular(30)
    train = np.asarray(data.breast_cancer().X, np.float32)
    net = _mlp(30, 2, softmax=True)
    return lambda key: xj.lime_tabular(net, X, train, key=key, num_samples=1000, targets=1).values


def case_lime_image():
    import jax

    import xaijax as xj

    cnn, images, _ = _images()

    def proba(X):
        return jax.nn.softmax(cnn(X), axis=-1)

    options = {"n_segments": 30, "compactness": 10, "start_label": 0}
    return lambda key: (
        xj.lime_image(
            proba,
            images,
            key=key,
            num_samples=200,
            segmentation="slic",
            segmentation_kwargs=options,
            top_labels=1,
        ).values
    )


def case_grad_cam():
    import xaijax as xj

    cnn, images, labels = _images()
    return lambda key: xj.grad_cam(cnn, "features", images, labels).values


def case_integrated_gradients():
    import xaijax as xj

    cnn, images, labels = _images()
    return lambda key: xj.integrated_gradients(cnn, images, labels, num_steps=32).values


def case_deep_shap():
    import xaijax as xj

    X, bg = _tabular(10)
    net = _mlp(10, 1, hidden=32)
    return lambda key: xj.deep_shap(net, X, bg).values


def case_kernel_shap_sklearn():
    """The small job in the API: 10 rows, a scikit-learn classifier on the host."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    import xaijax as xj
    from xaijax.zoo import data

    ds = data.breast_cancer()
    X = np.asarray(ds.X, np.float32)
    clf = LogisticRegression(max_iter=1000).fit(X, ds.y)
    bg = xj.kmeans(X, 10, key=__import__("jax").random.key(0))
    return lambda key: xj.kernel_shap(clf.predict_proba, X[:10], bg, key=key).values


CASES = {
    "kernel_shap": (case_kernel_shap, "breast cancer MLP, M=30, 5 rows, 10 background, auto"),
    "permutation_shap": (case_permutation_shap, "same model, 10 permutations"),
    "exact_shapley": (case_exact_shapley, "diabetes MLP, M=10, 5 rows, 10 background"),
    "lime_tabular": (case_lime_tabular, "breast cancer MLP, 5 rows, 1000 samples"),
    "lime_image": (case_lime_image, "CNN, 4 images 32x32, 200 samples, SLIC 30"),
    "grad_cam": (case_grad_cam, "CNN, 4 images 32x32"),
    "integrated_gradients": (case_integrated_gradients, "CNN, 4 images 32x32, 32 steps"),
    "deep_shap": (case_deep_shap, "diabetes MLP, M=10, 5 rows, 10 background"),
    "kernel_shap_sklearn": (
        case_kernel_shap_sklearn,
        "scikit-learn logistic regression (host), M=30, 10 rows, 10 k-means background",
    ),
}


def child(name: str, cache: str | None) -> dict:
    """One process: build the case, then time its first call and the steady state."""
    import jax

    import xaijax as xj

    if cache:
        xj.enable_compile_cache(cache)
    counter = CompileCounter()
    call = CASES[name][0]()
    counter.reset()
    start = time.perf_counter()
    jax.block_until_ready(call(jax.random.key(1)))
    first = time.perf_counter() - start
    compiled = counter.report()
    counter.reset()
    steady = []
    for i in range(STEADY_CALLS):
        start = time.perf_counter()
        jax.block_until_ready(call(jax.random.key(2 + i)))
        steady.append(time.perf_counter() - start)
    return {
        "first_call_ms": 1e3 * first,
        "steady_ms": 1e3 * statistics.median(steady),
        "steady_calls_ms": [1e3 * s for s in steady],
        "recompiled_in_steady_state": counter.programs,
        **compiled,
    }


# -- the parent: fresh processes, cold and warm ------------------------------------------------
def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", **extra)
    env.pop("XAIJAX_COMPILE_CACHE", None)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


def _run(cmd, env, cwd=ROOT) -> tuple[float, subprocess.CompletedProcess]:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return wall, proc, load


def run_case(name: str) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as cache:
        for regime, folder in (("no_cache", ""), ("cold_cache", cache), ("warm_cache", cache)):
            cmd = [sys.executable, "-m", "benchmarks.first_call", "--child", name]
            cmd += ["--cache", folder] if folder else []
            wall, proc, load = _run(cmd, _env())
            report = json.loads(proc.stdout.strip().splitlines()[-1])
            report.update(process_wall_s=wall, load_1min=load)
            out[regime] = report
            print(
                f"  {name:22s} {regime:10s} first {report['first_call_ms']:8.0f} ms  steady "
                f"{report['steady_ms']:7.1f} ms  programs {report['programs']:3d} "
                f"(hits {report['cache_hits']:3d})  load {load:.1f}",
                flush=True,
            )
        out["cache_entries"] = len(os.listdir(cache))
    return out


def run_demo(quick: bool) -> dict:
    """``xaijax demo [--quick]`` end to end, with a cold then a warm cache folder."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        for regime in ("cold_cache", "warm_cache"):
            cmd = [sys.executable, "-m", "xaijax.cli", "demo", "--out", os.path.join(tmp, regime)]
            cmd += ["--quick"] if quick else []
            wall, proc, load = _run(cmd, _env(XAIJAX_CACHE_DIR=cache, MPLBACKEND="Agg"))
            out[regime] = {"wall_s": wall, "load_1min": load, "log": proc.stdout[-4000:]}
            print(f"  demo{' --quick' if quick else ''} {regime}: {wall:.1f} s, load {load:.1f}")
        out["cache_entries"] = len(os.listdir(cache))
    return out


SMALL_JOB_SHAP = """
import time, pickle, sys
import numpy as np
import shap
clf = pickle.load(open(sys.argv[1], "rb"))
X = np.load(sys.argv[2])["X"]
bg = shap.kmeans(X, 10)
explainer = shap.KernelExplainer(clf.predict_proba, bg)
values = explainer.shap_values(X[:10], nsamples=2 * X.shape[1] + 2048, silent=True)
np.save(sys.argv[3], np.asarray(values))
"""


def _import_key(module: str) -> str:
    return "import_" + module.split(".")[0]


def run_small_job(rounds: int = SMALL_JOB_ROUNDS) -> dict:
    """10 rows, a scikit-learn classifier, end to end: ``xaijax explain`` against shap.

    One cold run (empty cache), then ``rounds`` interleaved rounds of the warm command and shap's
    script, alternating which goes first (the machine's load drifts), and the imports alone:
    medians, and in how many rounds ours was faster.
    """
    import pickle

    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from xaijax.zoo import data

    ds = data.breast_cancer()
    X = np.asarray(ds.X, np.float32)
    out = {"rounds": rounds}
    with tempfile.TemporaryDirectory() as tmp:
        model, rows = os.path.join(tmp, "model.pkl"), os.path.join(tmp, "rows.npz")
        with open(model, "wb") as fh:
            pickle.dump(LogisticRegression(max_iter=1000).fit(X, ds.y), fh)
        np.savez(rows, X=X)
        cache = os.path.join(tmp, "cache")
        base = [sys.executable, "-m", "xaijax.cli", "explain", "--model", model, "--data", rows]
        base += ["--instances", "10", "--background-size", "10", "--no-figures"]
        wall, _, load = _run(
            [*base, "--out", os.path.join(tmp, "cold")], _env(XAIJAX_CACHE_DIR=cache)
        )
        out["xaijax_explain_cold_cache"] = {"wall_s": wall, "load_1min": load}
        print(f"  small job: xaijax explain (cold cache) {wall:.1f} s, load {load:.1f}")
        jobs = {
            "xaijax_explain_warm_cache": lambda i: _run(
                [*base, "--out", os.path.join(tmp, f"warm{i}")], _env(XAIJAX_CACHE_DIR=cache)
            ),
            "shap_kernel_explainer": lambda i: _run(
                [sys.executable, "-c", SMALL_JOB_SHAP, model, rows, os.path.join(tmp, "s.npy")],
                _env(),
            ),
        }
        for name in SMALL_JOB_IMPORTS:
            jobs[_import_key(name)] = lambda i, name=name: _run(
                [sys.executable, "-c", f"import {name}"], _env()
            )
        walls = {k: [] for k in jobs}
        loads = []
        for i in range(rounds):
            order = list(jobs) if i % 2 == 0 else [*reversed(list(jobs)[:2]), *list(jobs)[2:]]
            for key in order:
                wall, _, load = jobs[key](i)
                walls[key].append(wall)
                loads.append(load)
            print(
                f"  small job round {i + 1} ({order[0]} first): xaijax explain "
                f"{walls['xaijax_explain_warm_cache'][-1]:.2f} s, shap "
                f"{walls['shap_kernel_explainer'][-1]:.2f} s, load {load:.1f}",
                flush=True,
            )
        for key, values in walls.items():
            out[key] = {"wall_s": statistics.median(values), "walls_s": values}
        out["load_range"] = f"{min(loads):.1f}–{max(loads):.1f}"
        ours, theirs = walls["xaijax_explain_warm_cache"], walls["shap_kernel_explainer"]
        out["xaijax_faster_rounds"] = sum(a < b for a, b in zip(ours, theirs, strict=True))
        out["median_difference_s"] = statistics.median(
            a - b for a, b in zip(ours, theirs, strict=True)
        )
        out["ml_dtypes"] = importlib.metadata.version("ml_dtypes")
    return out


# -- the table ---------------------------------------------------------------------------------
def table(report: dict) -> str:
    env = report["environment"]
    lines = [
        f"**First call vs steady state** — {env['device_kind']} ({env['backend']}, "
        f"{env['cpu_count']} CPU cores, shared: load average {report['load_range']}), "
        f"JAX {env['jax']}, {report['date']}",
        "",
        "| explainer | case | first call, no cache (ms) | programs compiled | of which XLA s "
        "| first call, warm cache (ms) | read from cache | steady state (ms) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["cases"].items():
        cold, warm = r["no_cache"], r["warm_cache"]
        # the same program in each process: the best of their medians (the machine is shared)
        steady = min(r[k]["steady_ms"] for k in ("no_cache", "cold_cache", "warm_cache"))
        lines.append(
            f"| {name} | {CASES[name][1]} | {cold['first_call_ms']:.0f} | {cold['programs']} "
            f"| {cold['xla_s']:.1f} | {warm['first_call_ms']:.0f} "
            f"| {warm['cache_hits']}/{warm['programs']} | {steady:.1f} |"
        )
    extra = []
    for label, key in (("xaijax demo --quick", "demo_quick"), ("xaijax demo", "demo_full")):
        if key in report:
            d = report[key]
            extra.append(
                f"| `{label}` | {d['cold_cache']['wall_s']:.0f} s (load "
                f"{d['cold_cache']['load_1min']:.1f}) | {d['warm_cache']['wall_s']:.0f} s (load "
                f"{d['warm_cache']['load_1min']:.1f}) |"
            )
    if "small_job" in report:
        s = report["small_job"]
        extra.append(
            f"| `xaijax explain`, 10 rows, scikit-learn model | "
            f"{s['xaijax_explain_cold_cache']['wall_s']:.1f} s | "
            f"{s['xaijax_explain_warm_cache']['wall_s']:.1f} s |"
        )
        extra.append(
            f"| shap.KernelExplainer, same job | – | {s['shap_kernel_explainer']['wall_s']:.1f} s |"
        )
        if "rounds" in s:
            imports = ", ".join(
                f"{name.split('.')[0]} {s[_import_key(name)]['wall_s']:.2f} s"
                for name in SMALL_JOB_IMPORTS
            )
            extra += [
                "",
                f"Small job, warm cache and shap: medians of {s['rounds']} interleaved rounds "
                f"(load {s['load_range']}); `xaijax explain` was faster in "
                f"{s['xaijax_faster_rounds']} of {s['rounds']} (median difference "
                f"{s['median_difference_s']:+.2f} s). Imports alone, fresh process: "
                f"{imports} (ml_dtypes "
                f"{s['ml_dtypes']}).",
            ]
    if extra:
        lines += ["", "| end to end (process start to exit) | cold cache | warm cache |"]
        lines += ["|---|---:|---:|", *extra]
    return "\n".join(lines) + "\n"


def update_readme(text: str, slug: str, path: str = README) -> bool:
    """Replace the table between ``<!-- first_call:SLUG -->`` and its closing marker."""
    from benchmarks.run import update_readme as replace_between_markers

    return replace_between_markers(text, slug, path, marker="first_call")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--no-cases", action="store_true", help="skip the per-explainer cases")
    parser.add_argument("--demo", action="store_true", help="time the demo, quick and full")
    parser.add_argument("--quick-demo-only", action="store_true", help="with --demo: quick only")
    parser.add_argument("--small-job", action="store_true", help="10 rows: explain vs shap")
    parser.add_argument(
        "--rounds", type=int, default=SMALL_JOB_ROUNDS, help="with --small-job: interleaved rounds"
    )
    parser.add_argument("--out", default=RESULTS, help="folder for the JSON and table")
    parser.add_argument("--readme", action="store_true", help="put the table into README.md")
    parser.add_argument(
        "--merge", metavar="JSON", help="start from a stored report (keep what is not re-run)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--cache", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.cache or None)))
        return 0

    from benchmarks.common import device_slug, environment

    names = [n for n in args.only.split(",") if n] or list(CASES)
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"--only: unknown case(s) {unknown}; choose from {list(CASES)}")
    loads = [os.getloadavg()[0]]
    report = {"date": datetime.date.today().isoformat(), "cases": {}}
    if args.merge:
        with open(args.merge) as fh:
            report = json.load(fh)
        lo, _, hi = report["load_range"].partition("–")
        loads += [float(lo), float(hi or lo)]
    if not args.no_cases:
        for name in names:
            report["cases"][name] = run_case(name)
            loads.append(os.getloadavg()[0])
    if args.demo:
        report["demo_quick"] = run_demo(quick=True)
        loads.append(os.getloadavg()[0])
        if not args.quick_demo_only:
            report["demo_full"] = run_demo(quick=False)
            loads.append(os.getloadavg()[0])
    if args.small_job:
        report["small_job"] = run_small_job(args.rounds)
        loads.append(os.getloadavg()[0])
    report["environment"] = env = environment()
    report["load_range"] = f"{min(loads):.1f}–{max(loads):.1f}"
    text = table(report)
    os.makedirs(args.out, exist_ok=True)
    stem = f"first_call-{device_slug(env)}-{report['date']}"
    with open(os.path.join(args.out, f"{stem}.json"), "w") as fh:
        json.dump(report, fh, indent=2)
    with open(os.path.join(args.out, f"{stem}.md"), "w") as fh:
        fh.write(text)
    print(text)
    if args.readme:
        where = "updated" if update_readme(text, device_slug(env)) else "has no markers for"
        print(f"README.md {where} <!-- first_call:{device_slug(env)} -->")
    return 0


if __name__ == "__main__":
    sys.exit(main())
