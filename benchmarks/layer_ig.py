"""Layer Integrated Gradients on a text transformer's embeddings, against captum and the floor.

Run:  python -m benchmarks.layer_ig [--sequences 256] [--length 128] [--steps 32] [--repeats 3]

On the same weights and token ids (median of ``--repeats`` interleaved calls after a warm-up):

* ``xaijax.layer_integrated_gradients(model, "embed", tokens, num_steps=steps)``, the public call
  with ``batch_size`` model rows at a time (memory bounded for long sequences);
* the floor: the model evaluated on the same ``sequences * steps`` rows (forward only, jitted,
  in the same chunks), the least any path method must compute;
* captum's ``LayerIntegratedGradients`` on a PyTorch twin with identical weights (same steps,
  Gauss-Legendre, ``internal_batch_size`` = the same rows), both on the CPU.

Writes ``benchmarks/results/layer_ig.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import xaijax as xj
from benchmarks.common import environment
from xaijax.zoo import build
from xaijax.zoo.transformers import TextTransformer

RESULTS = os.path.join(os.path.dirname(__file__), "results", "layer_ig.json")


def _time_interleaved(fns, repeats):
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _peak_host_mib():
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _captum(net, tokens, steps, batch_size):
    try:
        import torch
        from captum.attr import LayerIntegratedGradients

        sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "tests"))
        from torch_twins import TorchTextTransformer
    except ImportError:
        return None
    twin = TorchTextTransformer(net).eval()
    x = torch.tensor(np.asarray(tokens), dtype=torch.long)
    with torch.no_grad():
        diff = float(np.abs(twin(x).numpy() - np.asarray(net(jnp.asarray(tokens)))).max())
    lig = LayerIntegratedGradients(twin, twin.embed)

    def run():
        # captum's default baseline is token 0 (padding) whose layer output is not zero: the
        # cost is the same; the values are compared in the tests with a zero-embedding token.
        return lig.attribute(x, target=0, n_steps=steps, internal_batch_size=batch_size)

    return run, {"max_logit_diff_vs_xaijax": diff, "torch": torch.__version__}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=256)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)

    n, L, steps, bs = args.sequences, args.length, args.steps, args.batch_size
    net = build(
        lambda rngs: TextTransformer(1000, 2, max_len=L, dim=32, depth=2, mlp_dim=64, rngs=rngs)
    )
    rng = np.random.default_rng(0)
    tokens = rng.integers(1, 1000, size=(n, L)).astype(np.int32)
    lengths = rng.integers(L // 2, L + 1, size=n)
    tokens[np.arange(L)[None] >= lengths[:, None]] = 0  # padded to the right
    graphdef, state = nnx.split(net)
    rows = jnp.asarray(np.repeat(tokens, steps, axis=0))
    chunk = min(bs, rows.shape[0])

    @jax.jit
    def floor(state, rows):
        def one(k):
            idx = jnp.minimum(k * chunk + jnp.arange(chunk), rows.shape[0] - 1)
            return nnx.merge(graphdef, state)(rows[idx])

        return jax.lax.map(one, jnp.arange(-(-rows.shape[0] // chunk)))

    def ours():
        exp = xj.layer_integrated_gradients(
            net, "embed", tokens, targets=0, num_steps=steps, batch_size=bs
        )
        return np.asarray(exp.values)

    ours()  # warm-up (compile), then the process's peak memory before the floor and captum run
    peak_mib = _peak_host_mib()
    fns = {"xaijax": ours, "floor": lambda: floor(state, rows).block_until_ready()}
    captum = _captum(net, tokens, steps, bs)
    if captum is not None:
        fns["captum"] = captum[0]
    t = _time_interleaved(fns, args.repeats)
    result = {
        "model": "TextTransformer vocab 1000, dim 32, depth 2, 2 heads, mlp 64",
        "sequences": n,
        "length": L,
        "steps": steps,
        "batch_size": bs,
        "repeats": args.repeats,
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "python": platform.python_version(),
        "environment": environment(),
        "xaijax": {"seconds": t["xaijax"], "sequences_per_s": n / t["xaijax"]},
        "floor_forward": {"seconds": t["floor"], "sequences_per_s": n / t["floor"]},
        "ratio_to_floor": t["xaijax"] / t["floor"],
        "peak_host_mib_after_xaijax": peak_mib,
        "activation_mib_all_rows": n * steps * L * 32 * 4 / 2**20,
    }
    if captum is not None:
        result["captum"] = {
            "seconds": t["captum"],
            "sequences_per_s": n / t["captum"],
            **captum[1],
        }
        result["speedup_vs_captum"] = t["captum"] / t["xaijax"]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "environment"}, indent=2))


if __name__ == "__main__":
    main()
