"""Recording experiment runs: versions, settings and numbers in ``runs/<name>/results.json``."""

from __future__ import annotations

import json
import os
import platform
import sys
import time

import numpy as np

__all__ = ["versions", "save_results", "save_figure"]


def versions() -> dict:
    """Versions of the packages a result depends on, and the device it ran on."""
    from importlib.metadata import version

    import jax

    import xaijax

    found = {
        "xaijax": xaijax.__version__,
        "jax": jax.__version__,
        "flax": version("flax"),  # without importing it (half a second)
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": str(jax.devices()[0]),
    }
    if os.environ.get("XLA_FLAGS"):
        found["xla_flags"] = os.environ["XLA_FLAGS"]
    for name in ("shap", "lime", "sklearn", "skimage"):
        module = sys.modules.get(name)
        if module is not None:
            found[name] = getattr(module, "__version__", "?")
    return found


def _plain(x):
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray) or (hasattr(x, "__array__") and not isinstance(x, str)):
        return np.asarray(x).tolist()
    return x


def save_results(out: str, results: dict) -> str:
    """Write ``results`` (arrays allowed) with versions and a timestamp to results.json."""
    os.makedirs(out, exist_ok=True)
    record = {
        "versions": versions(),
        "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **_plain(results),
    }
    path = os.path.join(out, "results.json")
    with open(path, "w") as fh:
        json.dump(record, fh, indent=2)
    return path


def save_figure(fig, out: str, name: str, *, dpi: int = 120) -> str:
    """Save a matplotlib figure as ``out/name`` (PNG) and close it."""
    import matplotlib.pyplot as plt

    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
