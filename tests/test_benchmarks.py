"""The benchmark suite's bookkeeping (timings live in benchmarks/, never in tests)."""

import json
import os

import pytest

from benchmarks import run

RESULTS = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "results")
GPU = os.path.join(RESULTS, "nvidia-h100-80gb-hbm3-2026-11-24.json")


@pytest.mark.skipif(not os.path.exists(GPU), reason="stored suite result not present")
def test_rows_and_ratios_from_a_stored_suite_run(tmp_path):
    with open(GPU) as fh:
        stored = json.load(fh)
    rows = [r for name, rep in stored["reports"].items() for r in run.rows_of(name, rep)]
    assert [r["benchmark"] for r in rows] == [
        "kernel_shap",
        "kernel_shap",
        "lime",
        "lime",
        "gradcam",
        "deep_shap",
    ]
    first = rows[0]
    # The ratios are recomputed from the raw times, not copied.
    assert first["speedup_vs_reference"] == pytest.approx(
        first["reference_ms"] / first["xaijax_ms"]
    )
    assert first["ratio_to_floor"] == pytest.approx(first["xaijax_ms"] / first["floor_ms"])
    text = run.table(rows, "title")
    assert text.count("\n| ") == len(rows) + 1  # header + one line per row
    assert "| –" in text  # deep_shap has no floor

    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- benchmarks:gpu -->\nold\n<!-- /benchmarks:gpu -->\nb\n")
    assert run.update_readme(text, "gpu", str(readme))
    assert readme.read_text() == f"a\n<!-- benchmarks:gpu -->\n{text}<!-- /benchmarks:gpu -->\nb\n"
    assert not run.update_readme(text, "tpu", str(readme))


def test_a_failed_benchmark_becomes_a_row_not_a_crash():
    rows = run.rows_of("lime", {"failed": "exit status 1", "child_peak_host_mib": 10.0})
    assert rows == [
        {
            "benchmark": "lime",
            "case": "failed (exit status 1)",
            "peak_host_mib": 10.0,
            "peak_device_mib": None,
        }
    ]
