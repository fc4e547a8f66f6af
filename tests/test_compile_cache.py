"""Compiled programs kept on disk: a second CLI run reads them back instead of compiling.

The CLI runs in fresh interpreters (the persistent cache is process-wide state the suite must not
turn on), counting with ``jax.monitoring``: every program JAX asks XLA for is one
``backend_compile_duration`` event, and one read back from disk is also a ``cache_hits`` event.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xaijax.cli import parser
from xaijax.core import compile_cache

ROOT = Path(__file__).resolve().parents[1]

MODEL_SOURCE = """
import jax.numpy as jnp
import numpy as np

W = np.array([1.0, -2.0, 0.5, 0.0, 3.0], np.float32)


def linear(X):
    return jnp.tanh(X @ jnp.asarray(W)) + 0.5


def host(X):
    return np.tanh(np.asarray(X) @ W) + 0.5


def host_doubled(X):
    return 2 * host(X)
"""

# Runs the CLI with its arguments and prints what JAX compiled and read back.
DRIVER = """
import json, sys
import jax

counts = {"programs": 0, "cache_hits": 0}

def on_duration(event, duration_secs, **kwargs):
    if event == "/jax/core/compile/backend_compile_duration":
        counts["programs"] += 1

def on_event(event, **kwargs):
    if event == "/jax/compilation_cache/cache_hits":
        counts["cache_hits"] += 1

jax.monitoring.register_event_duration_secs_listener(on_duration)
jax.monitoring.register_event_listener(on_event)
from xaijax import cli
status = cli.main(sys.argv[1:])
print(json.dumps({"status": status, **counts}))
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("compile_cache")
    (root / "cache_model.py").write_text(MODEL_SOURCE)
    X = np.random.default_rng(0).normal(size=(6, 5)).astype(np.float32)
    np.savez(root / "data.npz", X=X)
    return root


def cli_run(root, cache, out, *extra, model="linear"):
    env = {k: v for k, v in os.environ.items() if k != compile_cache.SWITCH_ENV}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), str(root)]),
        JAX_PLATFORMS="cpu",
        XAIJAX_CACHE_DIR=str(cache),
    )
    argv = [
        "explain",
        "--model",
        f"cache_model:{model}",
        "--data",
        str(root / "data.npz"),
        "--num-samples",
        "64",
        "--no-figures",
        "--out",
        str(root / out),
        *extra,
    ]
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, *argv], cwd=root, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["status"] == 0, proc.stderr[-3000:]
    return report


def entries(cache):
    return sorted(p.name for p in Path(cache).glob("*")) if Path(cache).exists() else []


def test_second_run_reads_every_program_back(workdir):
    cache = workdir / "cache"
    first = cli_run(workdir, cache, "first")
    assert first["programs"] > 0 and first["cache_hits"] == 0
    written = entries(cache)
    assert len(written) == first["programs"]  # every program, however small, is kept
    second = cli_run(workdir, cache, "second")
    # the same programs, each read from disk: nothing compiled in the second run
    assert second["programs"] == first["programs"]
    assert second["cache_hits"] == second["programs"]
    assert entries(cache) == written
    a = np.load(workdir / "first" / "explanation.npz")["values"]
    b = np.load(workdir / "second" / "explanation.npz")["values"]
    np.testing.assert_array_equal(a, b)


def test_no_compile_cache_writes_and_reads_nothing(workdir):
    cache = workdir / "cache_off"
    report = cli_run(workdir, cache, "off", "--no-compile-cache")
    assert report["programs"] > 0 and report["cache_hits"] == 0
    assert entries(cache) == []


def test_host_model_kernel_shap_is_read_back_too(workdir):
    # JAX 0.10 writes no program holding a Python callback (a pointer into the running process;
    # 0.11 does), so Kernel SHAP runs a host model between two callback-free programs, and a
    # second process reads every program back: it compiles nothing. Its model is another
    # function of the same shapes, twice the first: a program read back calls this process's.
    cache = workdir / "cache_host"
    first = cli_run(workdir, cache, "host1", model="host")
    written = entries(cache)
    assert first["programs"] > 0 and len(written) == first["programs"]
    second = cli_run(workdir, cache, "host2", model="host_doubled")
    assert second["programs"] == first["programs"]
    assert second["cache_hits"] == second["programs"]
    a = np.load(workdir / "host1" / "explanation.npz")["values"]
    b = np.load(workdir / "host2" / "explanation.npz")["values"]
    assert np.abs(a).max() > 0.1
    np.testing.assert_allclose(b, 2 * a, rtol=1e-5, atol=1e-6)


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("XAIJAX_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache.compile_cache_dir() == str(tmp_path / "mine")
    monkeypatch.delenv("XAIJAX_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compile_cache.compile_cache_dir() == str(tmp_path / "xdg" / "xaijax" / "jax")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert compile_cache.compile_cache_dir() == str(tmp_path / "home" / ".cache" / "xaijax" / "jax")


def test_a_file_in_the_way_is_refused_naming_the_path(tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    with pytest.raises(ValueError, match="path .*not_a_folder.* not a folder"):
        compile_cache.enable_compile_cache(blocker)


def test_every_command_takes_no_compile_cache():
    p = parser.build_parser()
    for argv in (
        ["demo", "--quick"],
        ["explain", "--model", "m.pkl", "--data", "d.csv"],
        ["protopnet", "--quick"],
        ["experiment", "name"],
    ):
        assert p.parse_known_args(argv)[0].no_compile_cache is False
        assert p.parse_known_args([*argv, "--no-compile-cache"])[0].no_compile_cache is True


def test_synthetic_shapes_is_one_program_and_matches_the_op_by_op_draw():
    import jax

    from tests.compiles import count_compiles
    from xaijax.zoo import data

    key = jax.random.key(3)
    with count_compiles() as first:
        ds = data.synthetic_shapes(key, 10, size=20)
    with count_compiles() as again:
        data.synthetic_shapes(jax.random.key(4), 10, size=20)
    assert [n for n in first if "_draw_shapes" in n] == ["jit(_draw_shapes)"]
    assert again == []  # a new key: nothing compiled
    with jax.disable_jit():  # the same draw, one operation at a time
        images, labels, masks = data._draw_shapes(key, n=10, size=20, num_classes=3, clutter=0.3)
    np.testing.assert_array_equal(ds.labels, np.asarray(labels))
    np.testing.assert_array_equal(ds.masks, np.asarray(masks))
    np.testing.assert_allclose(ds.images, np.asarray(images), rtol=0, atol=1e-6)


def test_map_instances_traces_the_per_instance_program_once():
    # 10 instances, 3 per step: equal padded steps, not lax.map's separate remainder step
    # (which traced and compiled the whole per-instance program twice).
    import jax
    import jax.numpy as jnp

    from xaijax.core.batching import map_instances

    traces = []

    def per_instance(x):
        traces.append(x.shape)
        return x * 2.0, jnp.sum(x)

    xs = jnp.arange(30.0).reshape(10, 3)
    doubled, sums = jax.jit(lambda xs: map_instances(per_instance, xs, 10, 30))(xs)
    assert len(traces) == 1
    np.testing.assert_array_equal(doubled, 2.0 * np.arange(30.0).reshape(10, 3))
    np.testing.assert_array_equal(sums, np.arange(30.0).reshape(10, 3).sum(1))


POOLS = """
import json, os, sys
from xaijax.cli import parser
try:
    limit = parser.limit_host_threads()
except parser.CliError as err:
    print(json.dumps({"error": str(err)}))
    sys.exit(0)
import scipy.linalg, sklearn.linear_model, threadpoolctl  # pools loaded after the cap
pools = sorted({p["num_threads"] for p in threadpoolctl.threadpool_info()})
print(json.dumps({"limit": limit, "pools": pools}))
"""


def pools_after_cap(setting):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    env.update(PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", XAIJAX_HOST_THREADS=setting)
    proc = subprocess.run(
        [sys.executable, "-c", POOLS], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_command_caps_every_thread_pool_once_for_its_process():
    # Pools loaded before the cap (numpy's BLAS) and after it (scipy's, scikit-learn's OpenMP).
    assert pools_after_cap("1") == {"limit": 1, "pools": [1]}
    assert pools_after_cap("0")["limit"] is None
    error = pools_after_cap("many")["error"]
    assert "XAIJAX_HOST_THREADS" in error and "'many'" in error


def test_an_unusable_cache_folder_only_costs_the_cache(monkeypatch, tmp_path, capsys):
    import argparse

    import jax

    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.delenv(compile_cache.SWITCH_ENV, raising=False)
    monkeypatch.setenv("XAIJAX_CACHE_DIR", str(blocker))
    assert parser.use_compile_cache(argparse.Namespace(no_compile_cache=False)) is None
    assert "not a folder" in capsys.readouterr().err
    assert jax.config.jax_compilation_cache_dir is None  # nothing switched on


def _fake_programs(folder, sizes):
    folder.mkdir()
    for i, size in enumerate(sizes):
        path = folder / f"jit_p{i}-cache"
        path.write_bytes(bytes(size))
        os.utime(path, (1000 + i, 1000 + i))  # p0 used longest ago


def test_the_cache_is_kept_under_its_size_dropping_the_least_recently_used(monkeypatch, tmp_path):
    folder = tmp_path / "cache"
    _fake_programs(folder, [300_000, 400_000, 500_000, 200_000])
    os.utime(folder / "jit_p0-cache", (5000, 1000))  # p0 was read recently: kept
    monkeypatch.setenv("XAIJAX_CACHE_MAX_MB", str(1.0))  # 1,048,576 bytes
    try:
        assert compile_cache.enable_compile_cache(folder) == str(folder)
    finally:
        compile_cache.disable_compile_cache()
    # Over by 351,424 bytes: p1 (400 kB, the oldest use) goes; p2 and p3 stay.
    assert sorted(os.listdir(folder)) == ["jit_p0-cache", "jit_p2-cache", "jit_p3-cache"]
    assert compile_cache.prune_compile_cache(folder, -1) == 0
    assert compile_cache.prune_compile_cache(folder, 0) == 1_000_000
    assert os.listdir(folder) == []


def test_a_bad_cache_size_is_refused_naming_it(monkeypatch, tmp_path):
    monkeypatch.setenv("XAIJAX_CACHE_MAX_MB", "lots")
    with pytest.raises(ValueError, match="XAIJAX_CACHE_MAX_MB"):
        compile_cache.enable_compile_cache(tmp_path / "a")
    with pytest.raises(ValueError, match="max_size"):
        compile_cache.enable_compile_cache(tmp_path / "b", max_size=1.5)


def test_short_jobs_compile_without_llvm_passes_unless_told_otherwise():
    import argparse

    fast = parser.FAST_COMPILE_FLAGS
    demo = argparse.Namespace(command="demo")
    small = argparse.Namespace(command="explain", instances=10)
    assert parser.fast_compile_flags({}, demo) == fast
    assert parser.fast_compile_flags({}, small) == fast
    # Long or unknown-size jobs keep XLA's defaults unless the switch says otherwise.
    for args in (
        argparse.Namespace(command="explain", instances=0),  # 0: every row
        argparse.Namespace(command="explain", instances=parser.SMALL_JOB_ROWS + 1),
        argparse.Namespace(command="experiment"),
        argparse.Namespace(command="protopnet"),
    ):
        assert parser.fast_compile_flags({}, args) is None
        assert parser.fast_compile_flags({parser.FAST_COMPILE_ENV: "1"}, args) == fast
    assert parser.fast_compile_flags({"XLA_FLAGS": "--xla_dump_to=/tmp/d"}, demo) == (
        "--xla_dump_to=/tmp/d " + fast
    )
    # The user's own optimisation level and the switch win.
    mine = {"XLA_FLAGS": "--xla_backend_optimization_level=2"}
    assert parser.fast_compile_flags(mine, demo) is None
    for off in ("0", "false", "off", " No "):
        assert parser.fast_compile_flags({parser.FAST_COMPILE_ENV: off}, demo) is None


def test_the_command_sets_the_flags_for_the_demo_only_before_jax_starts():
    # In a fresh process (as the ``xaijax`` script): the demo's XLA_FLAGS are in place when JAX
    # starts its backend; ``explain`` keeps XLA's defaults.
    code = """
import os, sys
from jax._src import xla_bridge
from xaijax.cli import parser
import xaijax.cli.demo as demo_module
seen = {}
cache = parser.use_compile_cache
def first_jax_step(args):  # the first thing main does with JAX
    seen["flags"] = os.environ.get("XLA_FLAGS", "")
    seen["backends"] = len(xla_bridge._backends)
    return cache(args)
parser.use_compile_cache = first_jax_step
demo_module.demo = lambda settings: None
sys.argv = ["xaijax", sys.argv[1], "--no-compile-cache"]
parser.main()
print(seen["flags"], "|", seen["backends"])
"""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", parser.FAST_COMPILE_ENV)}

    def run(command):
        out = subprocess.run(
            [sys.executable, "-c", code, command], env=env, capture_output=True, text=True
        ).stdout
        flags, backends = out.strip().splitlines()[-1].rsplit("|", 1)
        return flags.strip(), backends.strip()

    assert run("demo") == (parser.FAST_COMPILE_FLAGS, "0")
    assert run("experiment") == ("", "0")
