"""Scaling curves: time and peak memory against instances, features, samples and background size.

Kernel SHAP and tabular LIME on a random two-layer JAX MLP (M features -> 64 -> 2, softmax), and
images per second against batch size for Grad-CAM (the ResNet of ``benchmarks.gradcam``) and image
LIME (the batch size being the model's chunk). Every point runs in a fresh process, so its peak
memory is its own: the host's resident peak on CPU, XLA's allocator peak on a GPU. Each point
records the first call (compile + run) and the best of the later calls with new keys (same shapes:
no recompilation), and the number of model rows it evaluated, so cost per model row can be read
off: linear growth means a flat ``us_per_model_row``.

    python -m benchmarks.scaling [--quick] [--only kernel_shap.instances,lime.features]

Writes ``benchmarks/results/scaling-<device>.json`` and ``scaling-<device>.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# sweep name -> (parameter, full values, quick values, fixed settings). CPU runs cap the largest.
SWEEPS = {
    "kernel_shap.instances": ("instances", [1, 10, 100, 1000, 10000], [1, 4, 16], {}),
    "kernel_shap.features": ("features", [10, 30, 100, 300, 1000], [10, 30], {}),
    "kernel_shap.samples": ("samples", [256, 1024, 4096, 16384], [128, 512], {}),
    "kernel_shap.background": ("background", [10, 50, 200, 1000], [5, 20], {}),
    "lime.instances": ("instances", [1, 10, 100, 1000, 10000], [1, 4, 16], {}),
    "lime.features": ("features", [10, 30, 100, 300, 1000], [10, 30], {}),
    "lime.samples": ("samples", [1000, 5000, 20000, 80000], [500, 2000], {}),
    "grad_cam.batch": ("batch", [1, 4, 16, 64, 256], [1, 4], {}),
    "lime_image.batch": ("batch", [16, 64, 256, 1000], [16, 64], {}),
}
DEFAULTS = {
    "kernel_shap": {"instances": 10, "features": 30, "samples": 2048, "background": 50},
    "lime": {"instances": 10, "features": 30, "samples": 5000},
    "grad_cam": {"batch": 32, "size": 224},
    "lime_image": {"batch": 64, "size": 224, "samples": 1000},
}
QUICK = {
    "kernel_shap": {"instances": 4, "features": 10, "samples": 256, "background": 10},
    "lime": {"instances": 4, "features": 10, "samples": 1000},
    "grad_cam": {"batch": 4, "size": 64},
    "lime_image": {"batch": 16, "size": 64, "samples": 64},
}
# On a CPU, points above these many model rows are skipped (minutes each on two cores).
CPU_MAX_ROWS = 2e8


def _mlp(M, key):
    import jax
    import jax.numpy as jnp

    k1, k2 = jax.random.split(key)
    W1 = jax.random.normal(k1, (M, 64)) / jnp.sqrt(M)
    W2 = jax.random.normal(k2, (64, 2)) / 8.0

    def f(X):
        return jax.nn.softmax(jnp.tanh(X @ W1) @ W2, axis=-1)

    return f


def model_rows(method: str, s: dict) -> float:
    if method == "kernel_shap":
        return s["instances"] * s["samples"] * s["background"]
    if method == "lime":
        return s["instances"] * s["samples"]
    if method == "lime_image":
        return s["samples"]
    return s["batch"]


def point(method: str, s: dict, repeats: int) -> dict:
    """Time one configuration in this process (called in a child)."""
    import jax
    import numpy as np

    import xaijax as xj
    from benchmarks.common import environment, memory

    key = jax.random.key(0)
    if method in ("kernel_shap", "lime"):
        f = _mlp(s["features"], key)
        rng = np.random.default_rng(0)
        X = rng.normal(size=(s["instances"], s["features"])).astype(np.float32)
        if method == "kernel_shap":
            bg = rng.normal(size=(s["background"], s["features"])).astype(np.float32)

            def call(k):
                return xj.kernel_shap(f, X, bg, key=k, num_samples=s["samples"]).values

        else:
            train = rng.normal(size=(500, s["features"])).astype(np.float32)

            def call(k):
                return xj.lime_tabular(
                    f, X, train, key=k, num_samples=s["samples"], num_features=10, labels=(1,)
                ).values

        per = s["instances"]
    elif method == "grad_cam":
        from flax import nnx

        from xaijax import cam
        from xaijax.zoo.nets import ResNet

        model = ResNet((32, 64, 128, 256), classes=1000, rngs=nnx.Rngs(0))
        model.eval()
        images = jax.random.uniform(key, (s["batch"], s["size"], s["size"], 3))

        def call(k):
            return cam.grad_cam(model, "stages/3", images).values

        per = s["batch"]
    else:  # lime_image
        from flax import nnx

        from xaijax.zoo.nets import CNN

        net = CNN(3, 10, rngs=nnx.Rngs(0))
        net.eval()
        side = s["size"]
        image = np.asarray(jax.random.uniform(key, (side, side, 3)))
        seg = (np.arange(side)[:, None] // (side // 6)) * 6 + np.arange(side)[None, :] // (
            side // 6
        )

        def call(k):
            return xj.lime_image(
                net, image, key=k, num_samples=s["samples"], segments=seg, batch_size=s["batch"]
            ).values

        per = 1
    start = time.perf_counter()
    jax.block_until_ready(call(jax.random.key(1)))
    first = time.perf_counter() - start
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(call(jax.random.key(2 + i)))
        times.append(time.perf_counter() - start)
    best = min(times)
    rows = model_rows(method, s)
    return {
        "method": method,
        "settings": s,
        "first_call_s": first,
        "seconds": best,
        "ms_per_item": 1e3 * best / per,
        "items_per_s": per / best,
        "model_rows": rows,
        "us_per_model_row": 1e6 * best / rows,
        **memory(),
        "environment": environment(),
    }


def run_point(method: str, s: dict, repeats: int, timeout: float) -> dict:
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false")
    cmd = [sys.executable, "-m", "benchmarks.scaling", "--point", method, json.dumps(s)]
    cmd += ["--repeats", str(repeats)]
    try:
        out = subprocess.run(
            cmd,
            cwd=os.path.dirname(HERE),
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"method": method, "settings": s, "failed": f"over {timeout:.0f} s"}
    if out.returncode != 0:
        return {"method": method, "settings": s, "failed": out.stderr.strip()[-500:]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def plot(results: dict, path: str, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in results if any("seconds" in p for p in results[n])]
    cols = 3
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        param = SWEEPS[name][0]
        pts = [p for p in results[name] if "seconds" in p]
        x = [p["settings"][param] for p in pts]
        if name.endswith(".batch"):
            ax.plot(x, [p["items_per_s"] for p in pts], "o-", label="images / s")
            ax.set_ylabel("images per second")
        else:
            t = [p["seconds"] for p in pts]
            ax.plot(x, t, "o-", label="seconds")
            # Linear in model rows: the line through the first point with slope 1 in rows.
            r0, t0 = pts[0]["model_rows"], t[0]
            ax.plot(
                x,
                [t0 * p["model_rows"] / r0 for p in pts],
                "k:",
                label="proportional to model rows",
            )
            ax.set_ylabel("seconds")
        mem = [p.get("peak_device_mib", p.get("peak_host_mib")) for p in pts]
        twin = ax.twinx()
        twin.plot(x, mem, "s--", color="tab:red", alpha=0.6)
        twin.set_ylabel("peak MiB", color="tab:red")
        twin.set_ylim(0, 1.15 * max(m for m in mem if m is not None))  # flat reads as flat
        ax.set_xscale("log")
        if not name.endswith(".batch"):
            ax.set_yscale("log")
        ax.set_xlabel(param)
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7, loc="upper left")
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated sweep names")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per point")
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    parser.add_argument("--plot-only", action="store_true", help="redraw the PNG from the JSON")
    parser.add_argument("--point", nargs=2, metavar=("METHOD", "SETTINGS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.point:
        print(json.dumps(point(args.point[0], json.loads(args.point[1]), args.repeats)))
        return 0

    from benchmarks.common import device_slug

    if args.plot_only:
        for path in sorted(os.listdir(args.out)):
            if path.startswith("scaling-") and path.endswith(".json"):
                with open(os.path.join(args.out, path)) as fh:
                    saved = json.load(fh)
                e = saved["environment"]
                title = f"xaijax scaling on {e['device_kind']} ({e['backend']}), JAX {e['jax']}"
                plot(saved["sweeps"], os.path.join(args.out, path[:-5] + ".png"), title)
        return 0

    env = run_point("grad_cam", QUICK["grad_cam"], 1, args.timeout)["environment"]
    names = [n for n in args.only.split(",") if n] or list(SWEEPS)
    slug = device_slug(env) + ("-quick" if args.quick else "")
    os.makedirs(args.out, exist_ok=True)

    def write(results):
        with open(os.path.join(args.out, f"scaling-{slug}.json"), "w") as fh:
            json.dump({"environment": env, "quick": args.quick, "sweeps": results}, fh, indent=2)

    results = {}
    for name in names:
        method = name.split(".")[0]
        param, full, quick, fixed = SWEEPS[name]
        base = dict(QUICK[method] if args.quick else DEFAULTS[method], **fixed)
        results[name] = []
        for value in quick if args.quick else full:
            s = dict(base, **{param: value})
            if env["backend"] == "cpu" and model_rows(method, s) > CPU_MAX_ROWS:
                results[name].append({"method": method, "settings": s, "skipped": "CPU cap"})
                continue
            p = run_point(method, s, args.repeats, args.timeout)
            results[name].append(p)
            shown = {k: round(v, 4) for k, v in p.items() if isinstance(v, float)}
            print(f"{name} {param}={value}: {shown or p.get('failed')}", flush=True)
            write(results)  # after every point: a killed run keeps what it finished
    title = f"xaijax scaling on {env['device_kind']} ({env['backend']}), JAX {env['jax']}"
    plot(results, os.path.join(args.out, f"scaling-{slug}.png"), title)
    print(f"wrote {args.out}/scaling-{slug}.json and .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
