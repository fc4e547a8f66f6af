"""The multi-host example: 2 local processes under jax.distributed equal one process."""

import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_two_processes_equal_one(tmp_path):
    sys.path.insert(0, ROOT)
    try:
        import experiments.multihost as multihost
    finally:
        sys.path.remove(ROOT)
    argv = ["--launch", "2", "--instances", "7", "--num-samples", "32", "--out", str(tmp_path)]
    assert multihost.main(argv) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["settings"]["num_processes"] == 2 and results["settings"]["instances"] == 7
    # Per-instance keys: the merged parts equal the single-process run of all instances.
    assert results["max_abs_difference"] <= 1e-6
    assert results["max_abs_value"] > 0.01
    assert results["versions"]["jax"]
    parts = [np.load(tmp_path / f"part-{i}.npz") for i in range(2)]
    assert [p["extras/rows"].tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6]]
    merged = np.load(tmp_path / "merged.npz")
    assert merged["values"].shape == (7, 30)
