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


def test_small_model_cases_get_their_own_rows():
    tabular = {
        "num_samples": 5000,
        "features": 30,
        "hidden": 64,
        "ours_ms_per_instance": 0.8,
        "lime_ms_per_instance": 27.0,
        "model_floor_ms_per_instance": 0.2,
    }
    image = {
        "image_shape": [224, 224, 3],
        "num_samples": 1000,
        "num_segments": 33,
        "ours_ms_per_image": 1200.0,
        "lime_ms_per_image": 3100.0,
        "model_floor_ms_per_image": 1100.0,
    }
    small = dict(tabular, features=20, hidden=32, ours_ms_per_instance=0.5)
    rows = run.rows_of("lime", {"tabular": tabular, "tabular_small": small, "image": image})
    assert [r["case"] for r in rows] == [
        "tabular: breast cancer MLP, 5000 samples",
        "tabular small: M=20, MLP hidden 32, 5000 samples",
        "image: 224px CNN, 1000 samples, 33 superpixels",
    ]
    assert rows[1]["ratio_to_floor"] == pytest.approx(0.5 / 0.2)
    # Reports from before the small case still give their two rows.
    assert len(run.rows_of("lime", {"tabular": tabular, "image": image})) == 2
    kernel = {
        "model": "jax_mlp_small",
        "features": 20,
        "num_samples": 2088,
        "background": 30,
        "xaijax_ms_per_instance": 4.0,
        "shap_ms_per_instance": 300.0,
        "floor_ms_per_instance": 3.0,
    }
    (row,) = run.rows_of("kernel_shap", {"results": [kernel]})
    assert row["case"] == "jax_mlp_small: M=20, 2088 coalitions, 30 background rows"
    assert row["ratio_to_floor"] == pytest.approx(4.0 / 3.0)


def test_image_shapley_rows_and_skipped_cases():
    kernel = {
        "case": "kernel",
        "masker": "constant",
        "num_samples": 1000,
        "superpixels": [36, 52],
        "xaijax_ms_per_image": 3000.0,
        "reference": "shap.KernelExplainer (segment recipe)",
        "shap_ms_per_image": 9000.0,
        "floor_ms_per_image": 2900.0,
    }
    partition = {
        "case": "partition",
        "masker": "image(0.0)",
        "max_evals": 500,
        "xaijax_ms_per_image": 2000.0,
        "reference": "shap.PartitionExplainer (maskers.Image)",
        "shap_ms_per_image": 8000.0,
        "floor_ms_per_image": 1600.0,
    }
    report = {"results": [kernel, partition], "skipped": {"partition": "not here"}}
    rows = run.rows_of("image_shapley", report)
    assert [r["case"] for r in rows] == [
        "Kernel SHAP: 1000 coalitions, masker constant; 224px CNN, 36-52 superpixels",
        "Partition SHAP: max_evals 500, masker image(0.0); 224px CNN",
        "partition: skipped (not here)",
    ]
    assert rows[0]["speedup_vs_reference"] == pytest.approx(3.0)
    assert rows[1]["ratio_to_floor"] == pytest.approx(1.25)
    assert "xaijax_ms" not in rows[2]
    assert run.table(rows, "t").count("\n| image_shapley") == 3


def test_perturbation_rows_read_occlusion_and_rise():
    report = {
        "image_shape": [224, 224, 3],
        "occlusion": {
            "window": [16, 16, 3],
            "strides": [8, 8, 3],
            "windows": 729,
            "xaijax_ms_per_image": 100.0,
            "floor_ms_per_image": 80.0,
            "captum": {"ms_per_image": 800.0},
        },
        "rise": {
            "num_masks": 200,
            "cell_size": 8,
            "xaijax_ms_per_image": 50.0,
            "floor_ms_per_image": 40.0,
        },
    }
    occ, rise = run.rows_of("perturbation", report)
    assert occ["speedup_vs_reference"] == 8.0 and occ["ratio_to_floor"] == 1.25
    assert rise["reference"] is None and rise["ratio_to_floor"] == 1.25


def test_layer_ig_rows_read_xaijax_captum_and_the_floor():
    report = {
        "sequences": 4,
        "length": 128,
        "steps": 32,
        "xaijax": {"seconds": 0.4},
        "floor_forward": {"seconds": 0.2},
        "captum": {"seconds": 2.0},
    }
    (row,) = run.rows_of("layer_ig", report)
    assert row["xaijax_ms"] == pytest.approx(100.0)
    assert row["speedup_vs_reference"] == pytest.approx(5.0)
    assert row["ratio_to_floor"] == pytest.approx(2.0)


def test_lrp_rows():
    report = {
        "batch": 4,
        "image_size": 64,
        "xaijax_lrp": {"seconds": 0.02},
        "gradient_floor": {"seconds": 0.01},
        "zennit_epsilon_plus_flat": {"seconds": 0.04},
    }
    (row,) = run.rows_of("lrp", report)
    assert row["xaijax_ms"] == pytest.approx(5.0) and row["floor_ms"] == pytest.approx(2.5)
    assert row["reference"] == "zennit EpsilonPlusFlat" and row["reference_ms"] == pytest.approx(10)


def test_tree_shap_rows():
    report = {
        "trees": 500,
        "depth": 8,
        "rows": 1000,
        "xaijax_s": 2.0,
        "shap_s": 4.0,
        "floor_s": 0.5,
        "max_abs_diff_vs_shap": 1e-6,
    }
    (row,) = run.rows_of("tree_shap", report)
    assert row["unit"] == "row" and row["xaijax_ms"] == pytest.approx(2.0)
    assert row["reference_ms"] == pytest.approx(4.0) and row["floor_ms"] == pytest.approx(0.5)
    assert "500 trees, depth 8" in row["case"]


def test_call_overhead_runs_and_tabulates(tmp_path):
    from benchmarks import call_overhead

    report = call_overhead.run(["cam", "linear_shap"], repeats=1)
    rows = report["explainers"]
    assert set(rows) == {"cam", "linear_shap"}
    assert rows["cam"]["nnx_resnet_ms"] > 0  # by layer path on the NNX ResNet too
    assert "nnx_resnet_ms" not in rows["linear_shap"]  # coefficients: no image model to run
    earlier = {"label": "old", "explainers": {"cam": {"ms": 9.0, "nnx_resnet_ms": 20.0}}}
    text = call_overhead.table(report, earlier)
    assert "before (old): ms, NNX ms" in text
    assert "| 9.00, 20.00 |" in text and "| linear_shap | coefficients |" in text


def test_first_call_table_reports_the_small_jobs_rounds():
    from benchmarks import first_call

    rounds = {
        "xaijax_explain_warm_cache": [2.9, 3.1, 2.8],
        "shap_kernel_explainer": [3.0, 2.7, 3.2],
    }
    small = {key: {"wall_s": sorted(v)[1], "walls_s": v} for key, v in rounds.items()}
    small.update(
        rounds=3,
        load_range="0.4–1.2",
        xaijax_faster_rounds=2,
        median_difference_s=-0.1,
        ml_dtypes="0.6.0",
        xaijax_explain_cold_cache={"wall_s": 4.04, "load_1min": 0.4},
        **{
            f"import_{n}": {"wall_s": t}
            for n, t in zip(IMPORTS, (1.2, 0.01, 1.4, 2.5, 1.0), strict=True)
        },
    )
    report = {
        "environment": {"device_kind": "cpu", "backend": "cpu", "cpu_count": 2, "jax": "0.10.2"},
        "load_range": "0.4–1.2",
        "date": "2026-12-04",
        "cases": {},
        "small_job": small,
    }
    text = first_call.table(report)
    assert "| `xaijax explain`, 10 rows, scikit-learn model | 4.0 s | 2.9 s |" in text
    assert "| shap.KernelExplainer, same job | – | 3.0 s |" in text
    assert "`xaijax explain` was faster in 2 of 3 (median difference -0.10 s)" in text
    assert "jax 1.20 s, ml_dtypes 0.01 s, xaijax 1.40 s, shap 2.50 s, sklearn 1.00 s" in text
    assert "(ml_dtypes 0.6.0)" in text


IMPORTS = ("jax", "ml_dtypes", "xaijax", "shap", "sklearn")
