"""`xaijax explain`'s inputs: data files as people have them, saved models, clear refusals."""

import os
import pickle
import sys
import types

import numpy as np
import pytest

from xaijax.cli import inputs
from xaijax.cli.inputs import Columns, expected_features, load_data, load_model
from xaijax.cli.settings import CliError

pd = pytest.importorskip("pandas")

TABLE = np.array([[1.5, -2.0, 3.0], [0.25, 4.0, -1.0], [7.0, 0.0, 2.5]], np.float32)


@pytest.fixture
def frame():
    return pd.DataFrame(TABLE, columns=["age", "dose", "weight"])


def test_npz_with_object_feature_names_reads_strings_without_pickle(tmp_path, frame):
    path = tmp_path / "d.npz"
    names = np.array(frame.columns)  # an object array, as users make it
    assert names.dtype == object
    np.savez(path, X=frame.to_numpy(), feature_names=names)
    X, got = load_data(str(path))
    np.testing.assert_array_equal(X, TABLE)
    assert got == ["age", "dose", "weight"]
    # A pickle that names any other class is refused, and nothing runs.
    evil = tmp_path / "evil.npz"
    np.savez(evil, X=TABLE, feature_names=np.array([os.system], dtype=object))
    with pytest.raises(CliError, match="feature_names.*not plain strings"):
        load_data(str(evil))
    # An object X is not unpickled at all.
    obj = tmp_path / "obj.npz"
    np.savez(obj, X=TABLE.astype(object))
    with pytest.raises(CliError, match="X is an object array"):
        load_data(str(obj))
    np.savez(path, X=TABLE, feature_names=np.array([b"age", b"dose", b"weight"]))
    assert load_data(str(path))[1] == ["age", "dose", "weight"]  # bytes names decoded
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, X=TABLE, feature_names=np.array(["a", "b"]))
    with pytest.raises(CliError, match="2 names for 3 columns"):
        load_data(str(wrong))


def test_csv_written_by_pandas_with_its_index_and_a_label(tmp_path, frame):
    path = tmp_path / "d.csv"
    frame.assign(label=[0, 1, 1]).to_csv(path)  # index column first, label last
    X, names = load_data(str(path))
    assert names == ["", "age", "dose", "weight", "label"] and X.shape == (3, 5)
    X, names = load_data(str(path), columns=Columns(index_col="0", target="label"))
    np.testing.assert_array_equal(X, TABLE)
    assert names == ["age", "dose", "weight"]
    X, names = load_data(str(path), columns=Columns(columns=("weight", "age")))
    np.testing.assert_array_equal(X, TABLE[:, [2, 0]])
    assert names == ["weight", "age"]
    X, _ = load_data(str(path), columns=Columns(columns=("3", "-1")))  # positions
    np.testing.assert_array_equal(X[:, 0], TABLE[:, 2])
    np.testing.assert_array_equal(X[:, 1], [0, 1, 1])
    with pytest.raises(CliError, match="--columns 'height'.*no such column"):
        load_data(str(path), columns=Columns(columns=("height",)))
    with pytest.raises(CliError, match="--target 'y'"):
        load_data(str(path), columns=Columns(target="y"))
    with pytest.raises(CliError, match="--index-col 9.*5 columns"):
        load_data(str(path), columns=Columns(index_col="9"))
    # A background file without the label column is fine with --target.
    bg = tmp_path / "bg.csv"
    frame.to_csv(bg)
    X, names = load_data(str(bg), "--background", Columns(index_col="0", target="label"))
    assert names == ["age", "dose", "weight"]
    # A target by position is dropped from an unnamed background too.
    np.savez(tmp_path / "bg.npz", X=np.c_[TABLE, [0, 1, 1]])
    X, names = load_data(str(tmp_path / "bg.npz"), "--background", Columns(target="3"))
    np.testing.assert_array_equal(X, TABLE)


def test_csv_header_of_numbers_is_a_header_and_a_first_cell_na_is_data(tmp_path):
    numbered = tmp_path / "numbered.csv"
    pd.DataFrame(TABLE).to_csv(numbered)  # header ",0,1,2" over an index column
    X, names = load_data(str(numbered), columns=Columns(index_col="0"))
    np.testing.assert_array_equal(X, TABLE)  # 3 rows, not 4: the header is not a data row
    assert names == ["0", "1", "2"]
    plain = tmp_path / "plain.csv"
    pd.DataFrame(TABLE).to_csv(plain, index=False)  # header "0,1,2"
    X, names = load_data(str(plain))
    np.testing.assert_array_equal(X, TABLE)
    # No header at all: every line is data.
    bare = tmp_path / "bare.csv"
    np.savetxt(bare, TABLE, delimiter=",")
    X, names = load_data(str(bare))
    np.testing.assert_array_equal(X, TABLE)
    assert names is None
    # A first cell NA: a data row with a missing value (refused), not a header.
    na = tmp_path / "na.csv"
    na.write_text("NA,1.0,2.0\n3.0,4.0,5.0\n")
    with pytest.raises(CliError, match=r"1 of 2 rows hold missing.*row 1, column 0"):
        load_data(str(na))


def test_missing_non_finite_and_text_cells_are_refused_naming_the_place(tmp_path):
    path = tmp_path / "nan.npz"
    X = TABLE.copy()
    X[2, 1] = np.nan
    np.savez(path, X=X, feature_names=np.array(["a", "b", "c"]))
    with pytest.raises(CliError, match=r"--data .*row 3, column 'b'.*drop or impute"):
        load_data(str(path))
    inf = tmp_path / "inf.csv"
    inf.write_text("a,b\n1,inf\n2,3\n")
    with pytest.raises(CliError, match="non-finite"):
        load_data(str(inf))
    text = tmp_path / "text.csv"
    text.write_text("a,sex\n1,male\n2,female\n")
    with pytest.raises(CliError, match=r"row 1, column 'sex' holds 'male'.*--target"):
        load_data(str(text))
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("a,b\n1,2\n3\n")
    with pytest.raises(CliError, match="line 3 has 1 cells"):
        load_data(str(ragged))
    with pytest.raises(CliError, match="--background 'nope.csv': no such file"):
        load_data("nope.csv", "--background")


def test_parquet_is_read_with_pyarrow_or_refused_clearly(tmp_path, frame):
    path = tmp_path / "d.parquet"
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        path.write_bytes(b"PAR1")
        with pytest.raises(CliError, match="Parquet needs pyarrow"):
            load_data(str(path))
        return
    frame.assign(label=[0, 1, 1]).to_parquet(path)
    X, names = load_data(str(path), columns=Columns(target="label"))
    np.testing.assert_array_equal(X, TABLE)
    assert names == ["age", "dose", "weight"]


class _Scaled:
    """A picklable model with predict_proba and n_features_in_."""

    n_features_in_ = 3

    def predict_proba(self, X):
        p = 1 / (1 + np.exp(-np.asarray(X).sum(1)))
        return np.stack([1 - p, p], 1)


def test_models_from_pickle_joblib_skops_and_modules(tmp_path, monkeypatch):
    import joblib

    model = _Scaled()
    (tmp_path / "m.pkl").write_bytes(pickle.dumps(model))
    joblib.dump(model, tmp_path / "m.joblib", compress=3)
    for name in ("m.pkl", "m.joblib"):
        f = load_model(str(tmp_path / name))
        np.testing.assert_allclose(f(TABLE), model.predict_proba(TABLE))
        assert expected_features(f) == 3
    # A .skops file goes through skops with the types it does not know listed in the log.
    seen = {}
    fake = types.ModuleType("skops.io")
    untrusted = [f"{_Scaled.__module__}._Scaled"]
    fake.get_untrusted_types = lambda file: untrusted
    fake.load = lambda path, trusted: seen.setdefault("trusted", trusted) and model
    monkeypatch.setitem(sys.modules, "skops", types.ModuleType("skops"))
    monkeypatch.setitem(sys.modules, "skops.io", fake)
    (tmp_path / "m.skops").write_bytes(b"")
    lines = []
    f = load_model(str(tmp_path / "m.skops"), log=lines.append)
    assert f.__self__ is model and seen["trusted"] == untrusted
    assert untrusted[0] in lines[0]
    monkeypatch.delitem(sys.modules, "skops.io")
    monkeypatch.setitem(sys.modules, "skops", None)  # not installed
    with pytest.raises(CliError, match="needs skops"):
        load_model(str(tmp_path / "m.skops"))
    # module:attribute from the current folder, without PYTHONPATH; file.py:attribute too.
    module = f"here_model_{os.getpid()}"
    (tmp_path / f"{module}.py").write_text("def f(X):\n    return X.sum(1)\n")
    monkeypatch.chdir(tmp_path)
    assert str(tmp_path) not in sys.path
    assert load_model(f"{module}:f")(np.ones((2, 3))).tolist() == [3.0, 3.0]
    assert str(tmp_path) not in sys.path  # the path is restored
    assert load_model(f"{module}.py:f")(np.ones((1, 2))).tolist() == [2.0]
    with pytest.raises(CliError, match=r"--model 'no_such_module_x:f': cannot import"):
        load_model("no_such_module_x:f")


def test_bad_model_files_give_one_clear_message(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"\x80\x04not a pickle at all")
    with pytest.raises(CliError, match=r"--model .*bad.pkl.*not a readable pickle"):
        load_model(str(bad))
    truncated = tmp_path / "trunc.pkl"
    truncated.write_bytes(pickle.dumps(_Scaled())[:20])
    with pytest.raises(CliError, match="not a readable pickle"):
        load_model(str(truncated))
    missing_class = tmp_path / "gone.pkl"
    name = _Scaled.__module__.encode()  # replaced by a module name of the same length
    missing_class.write_bytes(pickle.dumps(_Scaled()).replace(name, b"z" * len(name)))
    with pytest.raises(CliError, match="names code that cannot be imported"):
        load_model(str(missing_class))
    with pytest.raises(CliError, match="no such file"):
        load_model(str(tmp_path / "absent.pkl"))
    assert "runs code" in inputs.PICKLE_WARNING
