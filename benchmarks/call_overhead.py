"""The fixed cost of one explainer call, for every registered explainer.

Run:  python -m benchmarks.call_overhead [--only grad_cam,saliency] [--repeats 20]
      python -m benchmarks.call_overhead --compare benchmarks/results/call_overhead-old.json

Each explainer runs on the contract suite's cases (``tests/contract/cases.py``): 3 instances of a
tiny model (4 features, 8x8 images, a 2-block transformer), with few samples or steps. The model
costs microseconds there, so the time is what one call costs besides it: checking inputs,
probing shapes, dispatching the compiled program and checking its result. The image explainers
(and the layer methods, by layer path) run a second time on an NNX module, the zoo's ResNet-18
layout with 8 channels per stage, where splitting the module and probing it add to the cost.
A researcher explaining one prediction at a time pays it on every call. Median of ``--repeats``
calls after two warm-up calls (the first compiles); the floor is one dispatch of a compiled
function.

Writes ``benchmarks/results/call_overhead-<device>.json``; ``--compare`` adds the milliseconds
of an earlier run (e.g. of an older commit) as a column.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.join(os.path.dirname(HERE), "tests")


def _cases():
    """The contract suite's case of every registered explainer, by name."""
    for path in (TESTS, os.path.join(TESTS, "contract")):
        if path not in sys.path:
            sys.path.insert(0, path)
    from cases import case_for

    from xaijax.core.registry import explainers

    return {name: (lambda info=info: case_for(info)) for name, info in explainers().items()}


def _median_ms(fn, repeats: int) -> float:
    import jax

    for _ in range(2):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def run(names, repeats: int) -> dict:
    import jax
    import numpy as np

    cases = _cases()
    unknown = sorted(set(names or ()) - set(cases))
    if unknown:
        raise SystemExit(f"--only: unknown explainer(s) {unknown}; choose from {sorted(cases)}")
    X, plus_one = np.ones((3, 4), np.float32), jax.jit(lambda x: x + 1)
    floor = _median_ms(lambda: plus_one(X), repeats)
    resnet = _resnet()
    rows = {}
    for name in names or sorted(cases):
        case = cases[name]()
        keys = {"key": jax.random.key(0)} if case.random else {}
        ms = _median_ms(lambda case=case, keys=keys: case.call(case.X, **keys).values, repeats)
        rows[name] = {"ms": ms, "model_form": case.info.model_form}
        on_resnet = _on_resnet(case, resnet)
        if on_resnet is not None:
            m, images = on_resnet
            try:
                rows[name]["nnx_resnet_ms"] = _median_ms(
                    lambda c=case, m=m, x=images, k=keys: c.call_with(m, x, **k).values, repeats
                )
            except (ValueError, TypeError) as err:  # the case's options do not fit images
                rows[name]["nnx_resnet_error"] = f"{type(err).__name__}: {err}"[:200]
        nnx_ms = rows[name].get("nnx_resnet_ms")
        print(f"  {name:28s} {ms:7.2f} ms" + (f", NNX ResNet {nnx_ms:7.2f} ms" if nnx_ms else ""))
    return {"floor_ms": floor, "repeats": repeats, "explainers": rows}


def _resnet():
    from flax import nnx

    from xaijax.zoo.nets import ResNet

    return ResNet((8, 8, 8, 8), classes=3, rngs=nnx.Rngs(0))


def _on_resnet(case, resnet):
    """``(model, images)`` for the case's explainer on the ResNet, or ``None`` where it takes no
    image model (tabular, text, its own model) or needs tabular reference data."""
    from cases import IMAGES

    form, inputs = case.info.model_form, case.info.inputs
    if form == "layer":
        return (resnet, "stages/3"), IMAGES
    if form == "model" and (inputs == "image" or (inputs == "any" and not case.info.reference)):
        return resnet, IMAGES
    return None


def table(report: dict, compare: dict | None = None) -> str:
    old = (compare or {}).get("explainers", {})
    head = "| explainer | model form | ms per call | NNX ResNet: ms per call |"
    rule = "|---|---|---:|---:|"
    if compare:
        head += f" before ({compare.get('label') or 'earlier run'}): ms, NNX ms |"
        rule += "---:|"
    lines = [head, rule]
    rows = sorted(report["explainers"].items(), key=lambda kv: -kv[1]["ms"])
    for name, row in rows:
        nnx_ms = row.get("nnx_resnet_ms")
        line = f"| {name} | {row['model_form']} | {row['ms']:.2f} | "
        line += f"{nnx_ms:.2f} |" if nnx_ms is not None else "– |"
        if compare:
            was = old.get(name, {})
            line += f" {was['ms']:.2f}" if "ms" in was else " –"
            line += f", {was['nnx_resnet_ms']:.2f} |" if "nnx_resnet_ms" in was else " |"
        lines.append(line)
    lines.append(f"| (one dispatch of a compiled function) | | {report['floor_ms']:.3f} | |")
    return "\n".join(lines)


def main(argv=None) -> int:
    from benchmarks.common import device_slug, environment

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated explainer names")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--compare", metavar="JSON", help="an earlier run to show beside")
    parser.add_argument("--label", default="", help="a name for this run (e.g. a commit)")
    parser.add_argument("--out", default="", help="the JSON to write (default: results/)")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    report = run(names, args.repeats)
    env = environment()
    report.update(environment=env, label=args.label, load_1min=os.getloadavg()[0])
    out = args.out or os.path.join(HERE, "results", f"call_overhead-{device_slug(env)}.json")
    with open(out, "w") as fh:
        json.dump(report, fh, indent=1)
    compare = None
    if args.compare:
        with open(args.compare) as fh:
            compare = json.load(fh)
    print(table(report, compare))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
