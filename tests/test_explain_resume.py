"""`xaijax explain` in chunks: an interrupted run resumes to what an uninterrupted one gives."""

import json
import os
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import xaijax
from xaijax import cli
from xaijax.cli import chunks
from xaijax.cli import explain as explain_command
from xaijax.shapley import permutation

# A host model (NumPy only, so it runs through pure_callback) that can be slowed down from the
# environment, so that a subprocess can be killed half-way through for real.
MODEL_SOURCE = """
import os, time
import numpy as np

W = np.array([1.0, -2.0, 0.5, 0.0], np.float32)


def predict(X):
    time.sleep(float(os.environ.get("XAIJAX_TEST_MODEL_SLEEP", "0")))
    return 1.0 / (1.0 + np.exp(-(np.asarray(X) @ W)))
"""
ROWS, CHUNK = 22, 4  # 6 chunks, the last one short (padded to 4 rows)
CHUNKS = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume")
    module = f"resume_model_{os.getpid()}"
    (root / f"{module}.py").write_text(MODEL_SOURCE)
    rng = np.random.default_rng(0)
    np.savez(root / "data.npz", X=rng.normal(size=(ROWS, 4)).astype(np.float32))
    sys.path.insert(0, str(root))

    def argv(out, *extra):
        return [
            "explain",
            "--model",
            f"{module}:predict",
            "--data",
            str(root / "data.npz"),
            "--method",
            "permutation_shap",
            "--num-permutations",
            "2",
            "--background-size",
            "5",
            "--chunk-size",
            str(CHUNK),
            "--out",
            str(out),
            *extra,
        ]

    compiled = permutation._permutation._cache_size()
    assert cli.main(argv(root / "reference")) == 0
    # Same-shaped chunks share one compilation: the short last chunk is padded, not recompiled.
    assert permutation._permutation._cache_size() - compiled <= 1
    with np.load(root / "reference" / "explanation.npz") as npz:
        reference = {k: npz[k] for k in npz.files}
    yield root, argv, reference
    sys.path.remove(str(root))


class Stop(Exception):
    pass


def counting(monkeypatch, stop_after=None):
    """Count chunks explained; raise Stop instead of explaining chunk number ``stop_after``."""
    calls = []
    explain_rows = explain_command.explain_rows

    def wrapped(*args):
        if stop_after is not None and len(calls) == stop_after:
            raise Stop
        calls.append(1)
        return explain_rows(*args)

    monkeypatch.setattr(explain_command, "explain_rows", wrapped)
    return calls


def chunk_files(out):
    return sorted((out / "chunks").glob("chunk-*.npz"))


def recorded_chunks(out):
    """Chunks whose hashes the manifest records: the finished ones (the manifest is replaced
    atomically, so reading it while a run writes is safe)."""
    try:
        return len(json.loads((out / "chunks" / "manifest.json").read_text()).get("done", {}))
    except FileNotFoundError:
        return 0


def assert_same(out, reference):
    with np.load(out / "explanation.npz") as got:
        assert sorted(got.files) == sorted(reference)
        for name in reference:
            np.testing.assert_array_equal(got[name], reference[name])
    assert reference["values"].shape[0] == ROWS


def test_interrupted_run_resumes_without_recomputing(setup, monkeypatch):
    root, argv, reference = setup
    out = root / "hooked"
    with pytest.raises(Stop):
        with monkeypatch.context() as m:
            counting(m, stop_after=2)
            cli.main(argv(out))
    finished = chunk_files(out)
    assert len(finished) == 2 and not (out / "explanation.npz").exists()
    mtimes = [f.stat().st_mtime_ns for f in finished]

    calls = counting(monkeypatch)
    assert cli.main(argv(out)) == 0
    assert len(calls) == CHUNKS - 2
    assert [f.stat().st_mtime_ns for f in finished] == mtimes
    assert_same(out, reference)
    summary = json.loads((out / "results.json").read_text())
    assert summary["chunks"] == {
        "size": CHUNK,
        "count": CHUNKS,
        "computed": CHUNKS - 2,
        "reused": 2,
        "folder": str(out / "chunks"),
    }
    # A finished run, rerun: nothing is recomputed.
    assert cli.main(argv(out)) == 0
    assert len(calls) == CHUNKS - 2


def test_killed_process_resumes_to_the_uninterrupted_result(setup):
    root, argv, reference = setup
    out = root / "killed"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(xaijax.__file__)))
    # The child must run on the parent's backend: chunks from a CPU child and a GPU parent would
    # differ in float32 rounding.
    env = dict(os.environ, XAIJAX_TEST_MODEL_SLEEP="0.3", XLA_PYTHON_CLIENT_PREALLOCATE="false")
    if jax.default_backend() == "cpu":
        env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONPATH"] = os.pathsep.join([repo, str(root), env.get("PYTHONPATH", "")])
    with open(root / "killed.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "xaijax.cli", *argv(out)], env=env, stdout=log, stderr=log
        )
        try:
            deadline = time.monotonic() + 120
            while not recorded_chunks(out) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            proc.kill()
            proc.wait()
    # A chunk killed between its rename and its hash being recorded is redone, not reused.
    done = recorded_chunks(out)
    assert 1 <= done < CHUNKS, (root / "killed.log").read_text()
    assert cli.main(argv(out)) == 0
    assert_same(out, reference)
    assert json.loads((out / "results.json").read_text())["chunks"]["reused"] == done


def test_resuming_with_other_settings_is_refused_until_restart(setup, monkeypatch, capsys):
    root, argv, reference = setup
    out = root / "changed"
    with pytest.raises(Stop):
        with monkeypatch.context() as m:
            counting(m, stop_after=1)
            cli.main(argv(out))
    changed = argv(out)
    changed[changed.index("--num-permutations") + 1] = "3"
    assert cli.main(changed) == 2
    err = capsys.readouterr().err
    assert "unfinished run (1 of 6 chunks done)" in err
    assert "num_permutations was 2, now 3" in err and "--restart" in err
    assert len(chunk_files(out)) == 1
    assert cli.main([*changed, "--restart"]) == 0
    assert json.loads((out / "results.json").read_text())["chunks"]["computed"] == CHUNKS


def test_finished_chunks_are_flushed_to_disk_before_they_count(setup, monkeypatch, tmp_path):
    # A chunk reads as finished once its .npz is renamed into place; each file must be fsynced
    # before its rename (and the folder after), or a power cut can leave a renamed empty file.
    root, argv, _ = setup
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(chunks.os, "fsync", fsync)
    monkeypatch.setattr(chunks.os, "replace", replace)
    assert cli.main(argv(tmp_path / "out")) == 0
    renamed = [path for kind, path in events if kind == "replace"]
    assert len([p for p in renamed if p.endswith(".npz")]) == CHUNKS
    for path in renamed:
        first_rename = events.index(("replace", path))
        assert ("fsync", os.path.realpath(path)) in events[:first_rename], path
