"""`xaijax explain` on the files people have: checked before compiling, said as it goes."""

import json
import os
import pickle
import socket
import subprocess
import sys
import warnings

import numpy as np
import pytest

import xaijax as xj
from xaijax import cli
from xaijax.cli import chunks, experiment
from xaijax.cli import explain as explain_command
from xaijax.core.explanation import Explanation
from xaijax.core.model import as_model

pd = pytest.importorskip("pandas")
LogisticRegression = pytest.importorskip("sklearn.linear_model").LogisticRegression

NAMES = ["age", "dose", "weight"]


@pytest.fixture(scope="module")
def table():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    y = (X @ np.array([1.0, -1.0, 0.5]) > 0).astype(int)
    return X, y


@pytest.fixture(scope="module")
def files(tmp_path_factory, table):
    X, y = table
    root = tmp_path_factory.mktemp("files")
    frame = pd.DataFrame(X, columns=NAMES)
    on_frame = LogisticRegression().fit(frame, y)
    on_array = LogisticRegression().fit(X, y)
    (root / "frame.pkl").write_bytes(pickle.dumps(on_frame))
    (root / "array.pkl").write_bytes(pickle.dumps(on_array))
    # As pandas writes it: the index first, the label last.
    frame.iloc[:6].assign(label=y[:6]).to_csv(root / "rows.csv")
    return root, on_frame, on_array


def no_compiling(monkeypatch):
    """Fail the test if anything reaches the explainer (where compiling starts)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the explainer was reached")

    monkeypatch.setattr(explain_command, "explain_rows", refuse)


def feature_name_warnings(caught):
    return [w for w in caught if "feature names" in str(w.message)]


def test_a_model_fitted_on_a_dataframe_gets_dataframes(table):
    X, y = table
    on_frame = LogisticRegression().fit(pd.DataFrame(X, columns=NAMES), y)
    on_array = LogisticRegression().fit(X, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = xj.exact_shapley(on_frame.predict_proba, X[:4], X[:10])
        want = xj.exact_shapley(on_array.predict_proba, X[:4], X[:10])
    assert not feature_name_warnings(caught)
    np.testing.assert_allclose(got.values, want.values, atol=1e-6)
    # The adapter is equal across calls (a static argument: nothing recompiles).
    a, _ = as_model(on_frame.predict_proba, X[:2])
    b, _ = as_model(on_frame.predict_proba, X[:2])
    assert a == b and hash(a) == hash(b) and a.fn.columns == tuple(NAMES)
    # Without feature_names_in_ the callable is used as it is.
    assert as_model(on_array.predict_proba, X[:2])[0].fn == on_array.predict_proba


def test_csv_with_index_and_label_explains_with_the_models_columns(files, capsys, tmp_path):
    root, on_frame, _ = files
    out = tmp_path / "out"
    argv = ["explain", "--model", str(root / "frame.pkl"), "--data", str(root / "rows.csv")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = cli.main([*argv, "--method", "exact_shapley", "--out", str(out), "--no-figures"])
    assert status == 0, capsys.readouterr().err
    assert not feature_name_warnings(caught)
    said = capsys.readouterr().out
    for step in ("loading the model", "reading", "6 rows of 3 features", "compiles", "writing"):
        assert step in said, step
    assert "leaving out (unnamed), label" in said  # pandas' unnamed index and the label
    exp = xj.Explanation.load(out / "explanation")
    rows = pd.read_csv(root / "rows.csv", index_col=0)[NAMES]
    p = on_frame.predict_proba(rows)
    assert exp.values.shape == (6, 3, 2) and list(exp.feature_names) == NAMES
    np.testing.assert_allclose(exp.values.sum(1) + exp.base_values, p, atol=1e-5)


def test_the_feature_count_is_checked_before_compiling(files, capsys, monkeypatch, tmp_path):
    root, _, _ = files
    no_compiling(monkeypatch)
    argv = ["explain", "--model", str(root / "array.pkl"), "--data", str(root / "rows.csv")]
    assert cli.main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "has 5 feature columns" in err and "expects 3 (n_features_in_)" in err
    assert "--index-col 0" in err and "--target" in err and "Traceback" not in err
    # With the index and label dropped the data fit: the run reaches the explainer.
    with pytest.raises(AssertionError, match="reached"):
        cli.main([*argv, "--index-col", "0", "--target", "label", "--out", str(tmp_path / "p")])
    # A model without n_features_in_ is probed once on two rows.
    module = f"probe_model_{os.getpid()}"
    (tmp_path / f"{module}.py").write_text(
        "import jax.numpy as jnp\n\ndef f(X):\n    return X @ jnp.ones(3)\n"
    )
    monkeypatch.chdir(tmp_path)
    argv = ["explain", "--model", f"{module}:f", "--data", str(root / "rows.csv")]
    assert cli.main([*argv, "--out", str(tmp_path / "q")]) == 2
    assert "fails on rows of --data (5 columns)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--background-size", "0"], "--background-size must be at least 1"),
        (["--instances", "-5"], "--instances must be 0"),
        (["--output", "2"], "--output 2: the model has 2 outputs (0..1)"),
        (["--targets", "3"], "--targets 3: the model has 2 outputs"),
        (["--columns", "age,height"], "--columns 'height'"),
        (["--data", "NAN"], "rows hold missing or non-finite values"),
        (["--model", "BAD"], "not a readable pickle or joblib file"),
        (["--out", "UNDER_A_FILE"], "cannot write there"),
    ],
)
def test_bad_files_and_flags_are_one_clear_line_before_compiling(
    files, capsys, monkeypatch, tmp_path, extra, message
):
    root, _, _ = files
    no_compiling(monkeypatch)
    (tmp_path / "nan.csv").write_text("age,dose,weight\n1,2,3\n4,,6\n")
    (tmp_path / "bad.pkl").write_bytes(b"\x80\x04 not a pickle")
    (tmp_path / "a_file").write_text("")
    given = {
        "NAN": str(tmp_path / "nan.csv"),
        "BAD": str(tmp_path / "bad.pkl"),
        "UNDER_A_FILE": str(tmp_path / "a_file" / "out"),
    }
    extra = [given.get(e, e) for e in extra]
    argv = ["explain", "--model", str(root / "frame.pkl"), "--data", str(root / "rows.csv")]
    assert cli.main([*argv, "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xaijax explain: error:") and message in err, err
    assert "Traceback" not in err


def test_figures_show_the_output_asked_for(files, monkeypatch, tmp_path):
    root, _, _ = files
    from matplotlib.figure import Figure

    from xaijax import plots

    shown = []

    def record(exp, targets=None, **kwargs):
        shown.append(targets)
        return Figure()

    for name in ("bar", "beeswarm", "waterfall"):
        monkeypatch.setattr(plots, name, record)
    out = tmp_path / "fig"
    argv = ["explain", "--model", str(root / "frame.pkl"), "--data", str(root / "rows.csv")]
    argv += ["--method", "exact_shapley", "--out", str(out)]
    assert cli.main([*argv, "--output", "0"]) == 0
    assert shown == [0, 0, 0]
    assert json.loads((out / "results.json").read_text())["figures_output"] == 0
    shown.clear()
    assert cli.main(argv) == 0  # the default: class 1 of two
    assert shown == [1, 1, 1] and (out / "bar.png").exists()


def test_help_shows_defaults_the_pickle_warning_and_quick(capsys, monkeypatch):
    with pytest.raises(SystemExit):
        cli.main(["explain", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: kernel_shap)" in text and "(default: 256)" in text
    assert "(default: 50)" in text and "runs code" in text and "--index-col" in text
    assert "kernel_shap (default 'auto'), lime_tabular (default 5000)" in text
    assert "(default: None)" not in text
    with pytest.raises(SystemExit):
        cli.main(["experiment", "--help"])
    assert "--quick" in capsys.readouterr().out
    calls = []
    monkeypatch.setattr(experiment, "run_experiment", lambda name, argv: calls.append(argv) or 0)
    assert cli.main(["experiment", "lime_moons", "--quick", "--seed", "3"]) == 0
    assert calls == [["--quick", "--seed", "3"]]


# -- chunks: hashes and the lock ---------------------------------------------------------------
def double(rows, key):
    return Explanation(rows * 2, rows.sum(1), rows)


def test_chunks_that_do_not_match_their_hashes_are_recomputed(tmp_path):
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    folder = tmp_path / "chunks"

    def run(log=None):
        calls = []

        def counted(rows, key):
            calls.append(rows[0, 0])
            return double(rows, key)

        exp, _ = chunks.explain_in_chunks(
            counted,
            X,
            key=None,
            folder=str(folder),
            chunk_size=2,
            progress=None,
            log=(log or (lambda s: None)),
        )
        return exp, calls

    first, _ = run()
    manifest = json.loads((folder / "manifest.json").read_text())
    stem = folder / "chunk-00000"
    assert manifest["done"]["0"] == {
        "npz": chunks.file_digest(f"{stem}.npz")["sha256"],
        "json": chunks.file_digest(f"{stem}.json")["sha256"],
    }
    # Bit-flip chunk 0, truncate chunk 1, overwrite chunk 2 with a copy of chunk 3, and forget
    # chunk 4's hash (a run killed between writing the chunk and recording it).
    data = bytearray((folder / "chunk-00000.npz").read_bytes())
    data[len(data) // 2] ^= 0x01
    (folder / "chunk-00000.npz").write_bytes(bytes(data))
    data = (folder / "chunk-00001.npz").read_bytes()
    (folder / "chunk-00001.npz").write_bytes(data[: len(data) // 2])
    for ext in ("npz", "json"):
        (folder / f"chunk-00002.{ext}").write_bytes((folder / f"chunk-00003.{ext}").read_bytes())
    del manifest["done"]["4"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    lines = []
    again, calls = run(lines.append)
    assert calls == [0.0, 4.0, 8.0, 16.0]  # the first rows of chunks 0, 1, 2 and 4
    assert any("4 chunk(s) do not match" in line for line in lines)
    np.testing.assert_array_equal(again.values, first.values)
    np.testing.assert_array_equal(again.values, X * 2)
    assert run()[1] == []  # all recorded now


def test_the_output_folder_is_locked_against_a_second_writer(files, capsys, tmp_path):
    root, _, _ = files
    out = tmp_path / "locked"
    argv = ["explain", "--model", str(root / "frame.pkl"), "--data", str(root / "rows.csv")]
    with chunks.lock_folder(str(out)):
        assert cli.main([*argv, "--out", str(out), "--restart"]) == 2
        err = capsys.readouterr().err
        assert f"in use by another xaijax process (pid {os.getpid()}" in err
        assert not (out / "chunks").exists()
    assert not (out / chunks.LOCK).exists()
    # A lock left by a process that is gone is taken over.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / chunks.LOCK).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    lines = []
    with chunks.lock_folder(str(out), log=lines.append):
        held = json.loads((out / chunks.LOCK).read_text())
    assert held["pid"] == os.getpid() and f"pid {dead.pid}" in lines[0]
    # Unreadable: being written a moment after its creation, stale if it stays so.
    (out / chunks.LOCK).write_text("")
    assert chunks._read_lock(str(out / chunks.LOCK)) is None
    os.utime(out / chunks.LOCK, (0, 0))
    assert chunks._read_lock(str(out / chunks.LOCK))["pid"] == -1
    with chunks.lock_folder(str(out), log=lines.append):
        pass
    assert not (out / chunks.LOCK).exists()


def test_racing_takers_of_a_stale_lock_hold_it_one_at_a_time(tmp_path):
    # Twelve writers start together on a folder whose lock belongs to a process that is gone:
    # whoever wins holds the folder alone (the others see a live holder: FolderLocked), however
    # the renames and creations interleave. Threads of one process race on the same atomic
    # file operations as processes do (a sibling thread's pid counts as alive).
    import threading

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = json.dumps({"pid": dead.pid, "host": socket.gethostname()})
    for round_ in range(5):
        out = tmp_path / f"race{round_}"
        out.mkdir()
        (out / chunks.LOCK).write_text(stale)
        start = threading.Barrier(12)
        guard = threading.Lock()
        state = {"inside": 0, "most": 0, "held": 0, "refused": 0, "other": []}

        def writer(state=state, out=out, start=start, guard=guard):
            start.wait()
            try:
                with chunks.lock_folder(str(out), log=lambda line: None):
                    with guard:
                        state["inside"] += 1
                        state["held"] += 1
                        state["most"] = max(state["most"], state["inside"])
                    threading.Event().wait(0.02)
                    with guard:
                        state["inside"] -= 1
            except chunks.FolderLocked:
                with guard:
                    state["refused"] += 1
            except Exception as err:  # noqa: BLE001 - reported below
                state["other"].append(repr(err))

        threads = [threading.Thread(target=writer) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert state["other"] == []
        assert state["most"] == 1, state
        assert state["held"] >= 1 and state["held"] + state["refused"] == 12
        assert not (out / chunks.LOCK).exists()
        assert not list(out.glob(".xaijax.lock.*"))


def test_explain_settings_take_columns_as_text_and_refuse_a_negative_output():
    from xaijax.cli.settings import CliError, ExplainSettings

    assert ExplainSettings(model="m", data="d", columns="age, dose").columns == ("age", "dose")
    with pytest.raises(CliError, match="--output must be"):
        ExplainSettings(model="m", data="d", output=-1)
