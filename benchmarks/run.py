"""Every benchmark side by side: xaijax against shap, lime and captum, and against the model floor.

Each benchmark runs in its own process (so one's compilation cache and memory do not colour the
next; the host peak comes from the operating system, the device peak from XLA's allocator) and
writes its own JSON. This script gathers them into ``benchmarks/results/<device>-<date>.json`` and
a Markdown table ``<device>-<date>.md``; ``--readme`` also puts the table into README.md between
the markers for that device.

    python -m benchmarks.run                 # full sizes (CPU: ~15 min on 2 cores)
    python -m benchmarks.run --quick         # small sizes, a smoke test (~2 min)
    python -m benchmarks.run --only kernel_shap,lime --readme

Columns: ms per explained instance (per image for images), the reference library's time on the same
model and inputs, the ratio, the model-evaluation floor (the same model on the same perturbed rows,
built in advance), our time over the floor, and peak memory.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
README = os.path.join(os.path.dirname(HERE), "README.md")

# name -> (arguments for full size, arguments for --quick)
BENCHMARKS = {
    "kernel_shap": ([], ["--instances", "4", "--shap-instances", "1", "--repeats", "1"]),
    "interactions": ([], "--features 10 --instances 2 --repeats 1".split()),
    "image_shapley": ([], "--images 2 --num-samples 200 --max-evals 500 --repeats 1".split()),
    "lime": ([], ["--quick"]),
    "gradcam": ([], ["--batch", "4", "--size", "64", "--repeats", "1"]),
    "deep_shap": ([], ["--instances", "5", "--repeats", "1"]),
    "layer_ig": ([], "--sequences 8 --length 32 --steps 8 --repeats 1".split()),
    "lrp": ([], ["--batch", "4", "--size", "64", "--repeats", "1"]),
    "perturbation": (
        [],
        ["--images", "1", "--masks", "200", "--repeats", "1", "--captum-images", "0"],
    ),
    "metrics": ([], "--images 8 --quantus-images 2 --size 16 --repeats 1 --nr-samples 4".split()),
    "tree_shap": ([], "--trees 20 --depth 4 --rows 200 --train 2000 --repeats 2".split()),
}


def _stop_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:  # it ended just now
        pass


def run_one(name: str, args: list[str], out: str, timeout: float | None = None) -> dict:
    """Run ``benchmarks.<name>`` in a child process; its JSON plus wall time and host peak.

    A child still running after ``timeout`` seconds is stopped with its own children, and the
    benchmark is reported as failed (a lent GPU machine's time is short: one slow benchmark must
    not take the rest's).
    """
    env = dict(os.environ, XLA_PYTHON_CLIENT_PREALLOCATE="false", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", f"benchmarks.{name}", "--out", out, *args]
    start = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=os.path.dirname(HERE), env=env, start_new_session=True)
    timer = None
    if timeout is not None:
        timer = threading.Timer(timeout, _stop_group, (child.pid,))
        timer.start()
    _, status, usage = os.wait4(child.pid, 0)
    if timer is not None:
        timer.cancel()
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if timeout is not None and child.returncode == -signal.SIGKILL and wall >= timeout:
        return {"failed": f"stopped after {timeout:g} s (--timeout)", "wall_s": wall}
    if child.returncode != 0:
        return {"failed": f"exit status {child.returncode}", "wall_s": wall}
    with open(out) as fh:
        report = json.load(fh)
    report["wall_s"] = wall
    report["child_peak_host_mib"] = usage.ru_maxrss / 1024
    return report


def rows_of(name: str, report: dict) -> list[dict]:
    """Table rows from one benchmark's JSON (each script has its own layout)."""
    mem = report.get("memory", {})
    common = {
        "peak_host_mib": report.get("child_peak_host_mib", mem.get("peak_host_mib")),
        "peak_device_mib": mem.get("peak_device_mib"),
    }
    if "failed" in report:
        return [{"benchmark": name, "case": f"failed ({report['failed']})", **common}]
    rows = []
    if name == "kernel_shap":
        for r in report["results"]:
            rows.append(
                {
                    "case": f"{r['model']}: M={r['features']}, {r['num_samples']} coalitions, "
                    f"{r['background']} background rows",
                    "unit": "instance",
                    "xaijax_ms": r["xaijax_ms_per_instance"],
                    "reference": "shap.KernelExplainer",
                    "reference_ms": r["shap_ms_per_instance"],
                    "floor_ms": r["floor_ms_per_instance"],
                }
            )
    elif name == "image_shapley":
        for r in report["results"]:
            ref = r.get("reference")
            if r["case"] == "kernel":
                case = f"Kernel SHAP: {r['num_samples']} coalitions, masker {r['masker']}"
            else:
                case = f"Partition SHAP: max_evals {r['max_evals']}, masker {r['masker']}"
            supers = r.get("superpixels")
            where = f", {min(supers)}-{max(supers)} superpixels" if supers else ""
            rows.append(
                {
                    "case": f"{case}; 224px CNN{where}",
                    "unit": "image",
                    "xaijax_ms": r["xaijax_ms_per_image"],
                    "reference": ref,
                    "reference_ms": r.get("shap_ms_per_image"),
                    "floor_ms": r["floor_ms_per_image"],
                }
            )
        for case, why in report.get("skipped", {}).items():
            rows.append({"case": f"{case}: skipped ({why})"})
    elif name == "lime":
        t, i = report["tabular"], report["image"]
        rows.append(
            {
                "case": f"tabular: breast cancer MLP, {t['num_samples']} samples",
                "unit": "instance",
                "xaijax_ms": t["ours_ms_per_instance"],
                "reference": "lime LimeTabularExplainer",
                "reference_ms": t["lime_ms_per_instance"],
                "floor_ms": t["model_floor_ms_per_instance"],
            }
        )
        if "tabular_small" in report:  # added 2026-12; older reports lack it
            t = report["tabular_small"]
            rows.append(
                {
                    "case": f"tabular small: M={t['features']}, MLP hidden {t['hidden']}, "
                    f"{t['num_samples']} samples",
                    "unit": "instance",
                    "xaijax_ms": t["ours_ms_per_instance"],
                    "reference": "lime LimeTabularExplainer",
                    "reference_ms": t["lime_ms_per_instance"],
                    "floor_ms": t["model_floor_ms_per_instance"],
                }
            )
        rows.append(
            {
                "case": f"image: {i['image_shape'][0]}px CNN, {i['num_samples']} samples, "
                f"{i['num_segments']} superpixels",
                "unit": "image",
                "xaijax_ms": i["ours_ms_per_image"],
                "reference": "lime LimeImageExplainer",
                "reference_ms": i["lime_ms_per_image"],
                "floor_ms": i["model_floor_ms_per_image"],
            }
        )
    elif name == "gradcam":
        n = report["batch"]
        captum = report.get("captum_layer_grad_cam")
        rows.append(
            {
                "case": f"Grad-CAM: ResNet {report['image_size']}px, batch {n}",
                "unit": "image",
                "xaijax_ms": 1e3 * report["xaijax_grad_cam"]["seconds"] / n,
                "reference": "captum LayerGradCam" if captum else None,
                "reference_ms": 1e3 * captum["seconds"] / n if captum else None,
                # What Grad-CAM must compute at least: forward + gradient down to the layer.
                "floor_ms": 1e3 * report["forward_backward_to_layer_floor"]["seconds"] / n,
            }
        )
    elif name == "layer_ig":
        n = report["sequences"]
        captum = report.get("captum")
        rows.append(
            {
                "case": f"layer IG: text transformer embeddings, {n} sequences x "
                f"{report['length']} tokens, {report['steps']} steps",
                "unit": "sequence",
                "xaijax_ms": 1e3 * report["xaijax"]["seconds"] / n,
                "reference": "captum LayerIntegratedGradients" if captum else None,
                "reference_ms": 1e3 * captum["seconds"] / n if captum else None,
                # The model evaluated on the same sequences x steps rows (forward only).
                "floor_ms": 1e3 * report["floor_forward"]["seconds"] / n,
            }
        )
    elif name == "lrp":
        n = report["batch"]
        z = report.get("zennit_epsilon_plus_flat")
        rows.append(
            {
                "case": f"LRP epsilon_plus_flat: small CNN {report['image_size']}px, batch {n}",
                "unit": "image",
                "xaijax_ms": 1e3 * report["xaijax_lrp"]["seconds"] / n,
                "reference": "zennit EpsilonPlusFlat" if z else None,
                "reference_ms": 1e3 * z["seconds"] / n if z else None,
                # One forward pass and one input gradient: the backward pass LRP replaces.
                "floor_ms": 1e3 * report["gradient_floor"]["seconds"] / n,
            }
        )
    elif name == "deep_shap":
        n = report["instances"]
        by = {r["method"]: r for r in report["results"]}
        deep = by["deep_shap"]
        kernel = min(
            (r for m, r in by.items() if m.startswith("kernel_shap")),
            key=lambda r: abs(r["relative_error"] - deep["relative_error"]),
        )
        rows.append(
            {
                "case": f"Deep SHAP: MLP M=10, {report['background']} background rows "
                f"(error {deep['relative_error']:.2f} vs exact)",
                "unit": "instance",
                "xaijax_ms": 1e3 * deep["seconds"] / n,
                "reference": f"xaijax {kernel['method']} (error {kernel['relative_error']:.2f})",
                "reference_ms": 1e3 * kernel["seconds"] / n,
                "floor_ms": None,
            }
        )
    elif name == "interactions":
        diff = report.get("max_abs_diff_vs_shapiq")
        rows.append(
            {
                "case": f"exact SII (orders 0-2): MLP M={report['features']}, 2^"
                f"{report['features']} coalitions x {report['background']} background rows"
                + (f" (max abs diff {diff:.1e})" if diff is not None else ""),
                "unit": "instance",
                "xaijax_ms": report["xaijax_ms_per_instance"],
                "reference": "shapiq ExactComputer" if report["shapiq"] else None,
                "reference_ms": report["shapiq_ms_per_instance"],
                "floor_ms": report["floor_ms_per_instance"],
            }
        )
    elif name == "perturbation":
        occ, rise = report["occlusion"], report["rise"]
        size = report["image_shape"][0]
        captum = occ.get("captum")
        rows.append(
            {
                "case": f"occlusion: {size}px CNN, window {tuple(occ['window'])}, strides "
                f"{tuple(occ['strides'])} ({occ['windows']} windows)",
                "unit": "image",
                "xaijax_ms": occ["xaijax_ms_per_image"],
                "reference": "captum Occlusion" if captum else None,
                "reference_ms": captum["ms_per_image"] if captum else None,
                "floor_ms": occ["floor_ms_per_image"],
            }
        )
        rows.append(
            {
                "case": f"RISE: {size}px CNN, {rise['num_masks']} masks, {_rise_grid(rise)}",
                "unit": "image",
                "xaijax_ms": rise["xaijax_ms_per_image"],
                "reference": None,
                "reference_ms": None,
                "floor_ms": rise["floor_ms_per_image"],
            }
        )
    elif name == "tree_shap":
        rows.append(
            {
                "case": f"Tree SHAP (path-dependent): XGBoost {report['trees']} trees, depth "
                f"{report['depth']}, {report['rows']} rows (max abs diff "
                f"{report['max_abs_diff_vs_shap']:.1e})",
                "unit": "row",
                "xaijax_ms": 1e3 * report["xaijax_s"] / report["rows"],
                "reference": "shap TreeExplainer (C++)",
                "reference_ms": 1e3 * report["shap_s"] / report["rows"],
                "floor_ms": 1e3 * report["floor_s"] / report["rows"],
            }
        )
    elif name == "metrics":
        size = report["size"]
        for metric, m in report["metrics"].items():
            # Metrics that re-run the explainer: the floor is the explainer on the same rows.
            explainer = "explainer_floor_ms_per_image" in m
            rows.append(
                {
                    "case": f"metrics.{metric}: {size}px CNN"
                    + (", gradient explainer (floor: it alone)" if explainer else ""),
                    "unit": "image",
                    "xaijax_ms": m["xaijax_ms_per_image"],
                    "reference": f"quantus ({report['quantus_images']} images)"
                    if "quantus_ms_per_image" in m
                    else None,
                    "reference_ms": m.get("quantus_ms_per_image"),
                    "floor_ms": m.get("explainer_floor_ms_per_image", m.get("floor_ms_per_image")),
                }
            )
    for r in rows:
        r["benchmark"] = name
        r.update(common)
        if r.get("reference_ms") and r.get("xaijax_ms"):
            r["speedup_vs_reference"] = r["reference_ms"] / r["xaijax_ms"]
        if r.get("floor_ms") and r.get("xaijax_ms"):
            r["ratio_to_floor"] = r["xaijax_ms"] / r["floor_ms"]
    return rows


def _rise_grid(rise: dict) -> str:
    """RISE's mask grid as a report records it: the default 8 x 8 grid, or older reports' ``s``."""
    cell = rise.get("cell_size")
    if isinstance(cell, int):  # reports before 2026-12-02 stored the grid's cells per side
        return f"{cell}x{cell} grid"
    return "8x8 grid"


def _num(x, fmt):
    if x is None:
        return "–"
    return format(x, ".3f" if fmt == ".1f" and abs(x) < 1 else fmt)  # 0.04 ms is not 0.0


def table(rows: list[dict], title: str) -> str:
    """The Markdown table of the suite's rows."""
    lines = [
        f"**{title}**",
        "",
        "| benchmark | case | xaijax ms | reference | reference ms | speed-up | floor ms "
        "| xaijax / floor | peak host MiB | peak device MiB |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        unit = f" /{r['unit']}" if r.get("unit") else ""
        case = r["case"].replace("|", "/")
        lines.append(
            f"| {r['benchmark']} | {case} | {_num(r.get('xaijax_ms'), '.1f')}{unit} "
            f"| {r.get('reference') or '–'} | {_num(r.get('reference_ms'), '.1f')} "
            f"| {_num(r.get('speedup_vs_reference'), '.1f')}× | {_num(r.get('floor_ms'), '.1f')} "
            f"| {_num(r.get('ratio_to_floor'), '.2f')}× | {_num(r.get('peak_host_mib'), '.0f')} "
            f"| {_num(r.get('peak_device_mib'), '.0f')} |"
        )
    return "\n".join(lines) + "\n"


def update_readme(text: str, slug: str, path: str = README, *, marker: str = "benchmarks") -> bool:
    """Replace the table between the markers ``<!-- MARKER:SLUG -->`` and its closing one."""
    start, end = f"<!-- {marker}:{slug} -->", f"<!-- /{marker}:{slug} -->"
    with open(path) as fh:
        readme = fh.read()
    if start not in readme or end not in readme:
        return False
    head, rest = readme.split(start, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as fh:
        fh.write(f"{head}{start}\n{text}{end}{tail}")
    return True


def _title(env: dict, date: str, quick: bool) -> str:
    return (
        f"{env['device_kind']} ({env['backend']}, {env['cpu_count']} CPU cores), JAX {env['jax']}, "
        f"{date}" + (" — quick sizes" if quick else "")
    )


def _write(folder: str, reports: dict, rows: list[dict], date: str, quick: bool):
    """Write the JSON and table so far: ``(slug, stem, table)``, or None before any result."""
    from benchmarks.common import device_slug

    env = next((r["environment"] for r in reports.values() if "environment" in r), None)
    if env is None:
        return None
    slug = device_slug(env)
    stem = f"{slug}-{date}" + ("-quick" if quick else "")
    text = table(rows, _title(env, date, quick))
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{stem}.json"), "w") as fh:
        json.dump(
            {"environment": env, "quick": quick, "rows": rows, "reports": reports}, fh, indent=2
        )
    with open(os.path.join(folder, f"{stem}.md"), "w") as fh:
        fh.write(text)
    return slug, stem, text


def main(argv=None):
    from benchmarks.common import device_slug

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--out", default=RESULTS, help="folder for the suite's JSON and table")
    parser.add_argument("--readme", action="store_true", help="put the table into README.md")
    parser.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop a benchmark that runs longer and report it as failed (default: no limit)",
    )
    parser.add_argument(
        "--from-json", metavar="PATH", help="re-render a stored suite result (with --readme)"
    )
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as fh:
            stored = json.load(fh)
        env, date = stored["environment"], os.path.basename(args.from_json)[-15:-5]
        rows = [r for name, rep in stored["reports"].items() for r in rows_of(name, rep)]
        text = table(rows, _title(env, date, stored.get("quick", False)))
        print(text)
        if args.readme:
            print("README.md updated:", update_readme(text, device_slug(env)))
        return 0
    if args.timeout is not None and not args.timeout > 0:
        parser.error(f"--timeout: expected a positive number of seconds, got {args.timeout}")
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")

    reports, rows, written = {}, [], None
    date = datetime.date.today().isoformat()
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            print(f"== {name}", flush=True)
            full, quick = BENCHMARKS[name]
            reports[name] = run_one(
                name, quick if args.quick else full, f"{tmp}/{name}.json", args.timeout
            )
            rows += rows_of(name, reports[name])
            # Written after every benchmark: a run stopped part-way keeps what it measured.
            written = _write(args.out, reports, rows, date, args.quick) or written
    if written is None:
        print("every benchmark failed", file=sys.stderr)
        return 1
    slug, stem, text = written
    print(text)
    if args.readme and not args.quick:
        where = "updated" if update_readme(text, slug) else "has no markers for"
        print(f"README.md {where} <!-- benchmarks:{slug} -->")
    print(f"wrote {args.out}/{stem}.json and .md")
    return 0 if all("failed" not in r for r in reports.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
