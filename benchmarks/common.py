"""What every benchmark records beside its timings: the machine, versions and peak memory."""

from __future__ import annotations

import os
import platform
import resource


def environment() -> dict:
    """The device the benchmark ran on and the versions it ran with."""
    import jax
    import numpy as np

    device = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device_kind": str(device.device_kind),
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "numpy": np.__version__,
    }


def memory() -> dict:
    """Peak memory of this process so far: host resident set, and device bytes where reported.

    The device figure is XLA's allocator peak (GPU/TPU); CPU backends report none, and there
    the host peak includes the arrays.
    """
    import jax

    out = {"peak_host_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    stats = jax.devices()[0].memory_stats() if hasattr(jax.devices()[0], "memory_stats") else None
    if stats and "peak_bytes_in_use" in stats:
        out["peak_device_mib"] = stats["peak_bytes_in_use"] / 2**20
    return out


def device_slug(env: dict) -> str:
    """A file-name-safe name for the machine: ``cpu-2core``, ``nvidia-h100-80gb-hbm3``."""
    if env["backend"] == "cpu":
        return f"cpu-{env['cpu_count']}core"
    kind = "".join(c if c.isalnum() else "-" for c in env["device_kind"].lower())
    return "-".join(part for part in kind.split("-") if part)
