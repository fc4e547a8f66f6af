"""Reading what ``xaijax explain`` is given: a saved model and data files.

Models: a pickle or joblib file (``.pkl``, ``.joblib``, ...), a ``.skops`` file when skops is
installed, or ``module:attribute`` / ``path/to/file.py:attribute`` (looked up from the current
folder first). Loading a pickle or joblib file runs code stored in it, as ``pickle.load`` always
does: load only files you trust.

Data: ``.npz`` (an array ``X`` and optional ``feature_names``, which may be an object array as
``np.array(df.columns)`` makes: its strings are read without running any code), ``.csv`` (as
pandas or NumPy write it: a header of names or pandas' default ``0,1,...``, optional index
column, ``NA``/empty cells read as missing) and ``.parquet`` (needs pandas with pyarrow). Columns
can be dropped or picked (:class:`Columns`); missing or non-finite values are refused.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib
import importlib.util
import io
import os
import pickle
import sys
import zipfile

import numpy as np

from xaijax.cli.settings import CliError

__all__ = ["load_model", "load_data", "Columns", "expected_features", "MISSING_TOKENS"]

# Cells read as a missing value (pandas' defaults, less the rarely meant ones).
MISSING_TOKENS = frozenset(
    {"", "na", "nan", "n/a", "null", "none", "<na>", "#n/a", "-nan", "nat", "?"}
)

PICKLE_WARNING = "loading a pickle or joblib file runs code stored in it: load only files you trust"


# -- models ----------------------------------------------------------------------------------
def load_model(spec: str, *, log=None):
    """A model from a pickle/joblib/skops file, or ``module:attribute`` naming a model or factory.

    An estimator's ``predict_proba`` (else ``predict``) is used; a callable or an
    ``(apply_fn, params)`` pair is used as it is. A class, or a function marked with
    ``__xaijax_factory__ = True``, is called once to make the model. ``module`` is imported with
    the current folder first on the path (``my_model:f`` finds ``./my_model.py``); ``file.py:f``
    loads that file.

    Loading a pickle or joblib file runs code stored in the file (as scikit-learn's docs warn):
    load only files you trust. ``.skops`` files are loaded with skops, which lists the types it
    does not know to be safe.

    Raises:
        CliError: naming ``--model`` when the file is missing or cannot be read, the module or
            attribute cannot be imported, or the object is not a model.
    """
    if os.path.exists(spec) and not os.path.isdir(spec):
        obj = _load_model_file(spec, log)
    elif ":" in spec:
        obj = _import_attribute(spec)
        if isinstance(obj, type) or getattr(obj, "__xaijax_factory__", False):
            obj = obj()
    else:
        raise CliError(
            f"--model {spec!r}: no such file (give a pickle/joblib/.skops file or module:attribute)"
        )
    if hasattr(obj, "predict_proba"):
        return obj.predict_proba
    if hasattr(obj, "predict"):
        return obj.predict
    if isinstance(obj, tuple) and len(obj) == 2 and callable(obj[0]):
        return obj
    if callable(obj):
        return obj
    raise CliError(
        f"--model {spec!r}: the object is not callable, not an (apply_fn, params) pair and has "
        "no predict/predict_proba"
    )


def _load_model_file(path: str, log):
    if path.endswith(".skops"):
        try:
            import skops.io as sio
        except ImportError as err:
            raise CliError(
                f"--model {path!r}: reading a .skops file needs skops (pip install skops)"
            ) from err
        try:
            untrusted = sio.get_untrusted_types(file=path)
            if untrusted and log is not None:
                log(f"skops: trusting types it does not know to be safe: {', '.join(untrusted)}")
            return sio.load(path, trusted=untrusted)
        except Exception as err:
            raise CliError(f"--model {path!r}: skops could not load it ({_what(err)})") from err
    try:
        try:
            import joblib  # reads joblib's compressed files and plain pickles alike
        except ImportError:  # pragma: no cover - joblib comes with scikit-learn
            with open(path, "rb") as fh:
                return pickle.load(fh)
        return joblib.load(path)
    except (ImportError, AttributeError) as err:
        raise CliError(
            f"--model {path!r}: the pickle names code that cannot be imported ({_what(err)}); "
            "install the package the model was saved with, or run from the folder of its module"
        ) from err
    except Exception as err:
        raise CliError(
            f"--model {path!r}: not a readable pickle or joblib file ({_what(err)})"
        ) from err


def _import_attribute(spec: str):
    module, _, attr = spec.rpartition(":")
    try:
        if module.endswith(".py"):
            if not os.path.isfile(module):
                raise ImportError(f"no file {module}")
            name = "_xaijax_model_" + os.path.basename(module)[:-3]
            loader = importlib.util.spec_from_file_location(name, module)
            mod = importlib.util.module_from_spec(loader)
            sys.modules[name] = mod
            loader.loader.exec_module(mod)
        else:
            mod = _import_from_cwd(module)
        return getattr(mod, attr)
    except (ImportError, AttributeError) as err:
        raise CliError(f"--model {spec!r}: cannot import it ({_what(err)})") from err


def _import_from_cwd(module: str):
    """Import ``module`` with the current folder first on the path, as ``python -m`` would."""
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module)
    finally:
        if added:
            sys.path.remove(cwd)


def expected_features(f) -> int | None:
    """The number of input columns a model says it expects (``n_features_in_``), or ``None``.

    Example:
        >>> import numpy as np
        >>> from sklearn.linear_model import LogisticRegression
        >>> clf = LogisticRegression().fit(np.eye(3), [0, 1, 1])
        >>> expected_features(clf.predict_proba), expected_features(lambda X: X)
        (3, None)
    """
    owner = getattr(f, "__self__", f)
    n = getattr(owner, "n_features_in_", None)
    return int(n) if isinstance(n, (int, np.integer)) else None


# -- data --------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Columns:
    """Which columns of a data file are features.

    Attributes:
        index_col: a column holding row labels, dropped (a name or a 0-based position).
        columns: the feature columns to keep, in this order (names or positions); ``()``: all.
        target: a label column to drop (a name or a position).
    """

    index_col: str | None = None
    columns: tuple[str, ...] = ()
    target: str | None = None


def load_data(path: str, flag: str = "--data", columns: Columns | None = None, *, log=None):
    """``(X, feature_names)`` from ``.npz``, ``.csv`` or ``.parquet``, columns selected.

    ``X`` is float32 ``(rows, features)``; ``feature_names`` a list of strings or ``None``.

    Raises:
        CliError: naming ``flag`` when the file is missing, unreadable, not numeric, has missing
            or non-finite values, or lacks a column that ``columns`` names.

    Example:
        >>> import os, tempfile
        >>> with tempfile.TemporaryDirectory() as d:
        ...     path = os.path.join(d, "t.csv")
        ...     _ = open(path, "w").write(",a,b,label\\n0,1.5,2,1\\n1,3,4,0\\n")
        ...     X, names = load_data(path, columns=Columns(index_col="0", target="label"))
        >>> X.tolist(), names
        ([[1.5, 2.0], [3.0, 4.0]], ['a', 'b'])
    """
    columns = Columns() if columns is None else columns
    if not os.path.exists(path):
        raise CliError(f"{flag} {path!r}: no such file")
    lower = path.lower()
    if lower.endswith(".npz"):
        table, names = _read_npz(path, flag)
    elif lower.endswith((".csv", ".csv.gz", ".tsv")):
        table, names = _read_csv(path, flag, log)
    elif lower.endswith((".parquet", ".pq")):
        table, names = _read_parquet(path, flag)
    else:
        raise CliError(f"{flag} {path!r}: expected a .npz, .csv or .parquet file")
    if table.ndim != 2:
        raise CliError(
            f"{flag} {path!r}: X must be a table (rows, features); got shape {table.shape}"
        )
    if table.shape[0] == 0:
        raise CliError(f"{flag} {path!r}: the file holds no rows")
    table, names = _select(table, names, columns, flag, path)
    X = _numeric(table, names, flag, path)
    _check_complete(X, names, flag, path)
    return X, names


def _read_npz(path, flag):
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise CliError(f"{flag} {path!r}: not a readable .npz file ({_what(err)})") from err
    with npz:
        if "X" not in npz.files:
            raise CliError(
                f"{flag} {path!r}: the .npz must hold an array named X; it holds {npz.files}"
            )
        try:
            X = npz["X"]
        except ValueError as err:  # an object array, refused without pickle
            raise CliError(
                f"{flag} {path!r}: X is an object array (pickled Python objects), which is "
                "not read, as unpickling runs code: save it as numbers, e.g. "
                "np.savez(path, X=df.to_numpy(float), feature_names=np.array(df.columns, str))"
            ) from err
        names = None
        if "feature_names" in npz.files:
            try:
                raw = npz["feature_names"]
            except ValueError:
                raw = _object_strings(path, "feature_names", flag)
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.ravel(raw)]
    X = np.asarray(X)
    if names is not None and X.ndim == 2 and len(names) != X.shape[1]:
        raise CliError(
            f"{flag} {path!r}: feature_names has {len(names)} names for {X.shape[1]} columns"
        )
    return X, names


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles an object array of plain values (strings, numbers) and nothing else: no class
    outside NumPy's array reconstruction can be named, so no code from the file runs."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _object_strings(path, name, flag):
    """The strings of an object array ``name`` in ``path``, read without running code."""
    from numpy.lib import format as npy_format

    try:
        with zipfile.ZipFile(path) as zf:
            data = zf.read(name + ".npy")
        fh = io.BytesIO(data)
        version = npy_format.read_magic(fh)
        reader = (
            npy_format.read_array_header_1_0
            if version == (1, 0)
            else npy_format.read_array_header_2_0
        )
        reader(fh)
        array = _ArrayUnpickler(fh).load()
    except Exception as err:
        raise CliError(
            f"{flag} {path!r}: {name} is an object array that is not plain strings "
            f"({_what(err)}); save it as np.array(names, dtype=str)"
        ) from err
    if not isinstance(array, np.ndarray) or not all(
        isinstance(v, (str, bytes, int, float)) for v in array.ravel()
    ):
        raise CliError(
            f"{flag} {path!r}: {name} must hold strings; save it as np.array(names, str)"
        )
    return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in array.ravel()])


def _read_csv(path, flag, log):
    opener = open
    if path.lower().endswith(".gz"):
        import gzip

        opener = gzip.open
    try:
        with opener(path, "rt", newline="") as fh:
            first = fh.readline()
            fh.seek(0)
            # Commas unless the first line has none and is cut by tabs or semicolons.
            delimiter = next((d for d in ",\t;" if d in first), ",")
            rows = [[c.strip() for c in row] for row in csv.reader(fh, delimiter=delimiter)]
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise CliError(f"{flag} {path!r}: not a readable CSV file ({_what(err)})") from err
    rows = [r for r in rows if any(r)]
    if not rows:
        raise CliError(f"{flag} {path!r}: the file holds no rows")
    header = _header(rows)
    names, body = (rows[0], rows[1:]) if header else (None, rows)
    if header and log is not None and header == "numbers":
        log(f"{flag} {path}: the first line {','.join(rows[0])[:40]} read as column names")
    width = len(body[0]) if body else len(rows[0])
    if names is not None and len(names) == width - 1:
        names = [""] + names  # pandas' header over an unnamed index column
    for i, row in enumerate(body):
        if len(row) != width:
            raise CliError(
                f"{flag} {path!r}: line {i + 1 + bool(header)} has {len(row)} cells; "
                f"the first row has {width}"
            )
    if names is not None and len(names) != width:
        raise CliError(
            f"{flag} {path!r}: the header has {len(names)} names for rows of {width} cells"
        )
    table = np.array(body, dtype=object).reshape(len(body), width)
    return table, names


def _is_number(cell: str) -> bool:
    if cell.lower() in MISSING_TOKENS:
        return True
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _header(rows) -> str | None:
    """Whether the first row names the columns: ``"names"``, ``"numbers"`` or ``None``.

    A row with a cell that is neither a number nor a missing-value token is names. A row of
    numbers is a header only when it reads as pandas' default ``0,1,...,k-1`` (after an empty
    index cell) and the next row does not: a first cell ``NA`` stays a data row.
    """
    first = rows[0]
    if not all(_is_number(c) for c in first):
        return "names"
    cells = first[1:] if first and first[0] == "" else first
    if cells and cells == [str(i) for i in range(len(cells))]:
        if len(rows) == 1 or rows[1][-len(cells) :] != cells:
            return "numbers"
    return None


def _read_parquet(path, flag):
    try:
        import pandas as pd
    except ImportError as err:
        raise CliError(
            f"{flag} {path!r}: reading Parquet needs pandas and pyarrow "
            "(pip install pandas pyarrow), or save the table as .csv or .npz"
        ) from err
    try:
        frame = pd.read_parquet(path)
    except ImportError as err:
        raise CliError(
            f"{flag} {path!r}: reading Parquet needs pyarrow (pip install pyarrow), or save "
            f"the table as .csv or .npz ({_what(err)})"
        ) from err
    except Exception as err:
        raise CliError(f"{flag} {path!r}: not a readable Parquet file ({_what(err)})") from err
    names = [str(c) for c in frame.columns]
    return frame.to_numpy(dtype=object), names


def _position(spec: str, names, width: int, flag, path, what, *, by_position=False) -> int:
    """The position of column ``spec``: a name, else a 0-based position (``by_position``: a
    position first, as pandas' ``index_col``, so ``0`` is the first column even under a header
    of numbers)."""
    spec = str(spec)
    if names is not None and spec in names and not (by_position and _is_int(spec)):
        return names.index(spec)
    try:
        i = int(spec)
    except ValueError:
        listed = ", ".join(repr(n) for n in names[:12]) if names else "the file has no names"
        raise CliError(f"{what} {spec!r}: {flag} {path!r} has no such column ({listed})") from None
    if not -width <= i < width:
        raise CliError(f"{what} {spec}: {flag} {path!r} has {width} columns (0..{width - 1})")
    return i % width


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _select(table, names, columns: Columns, flag, path):
    """Drop the index and target columns, keep ``columns.columns`` (in their order)."""
    width = table.shape[1]
    drop = set()
    if columns.index_col is not None:
        drop.add(
            _position(columns.index_col, names, width, flag, path, "--index-col", by_position=True)
        )
    target = columns.target
    # A background file without the label column (by name) is fine.
    if target is not None and (flag == "--data" or _is_int(target) or target in (names or ())):
        drop.add(_position(target, names, width, flag, path, "--target"))
    if columns.columns:
        keep = [_position(c, names, width, flag, path, "--columns") for c in columns.columns]
        bad = [columns.columns[j] for j, i in enumerate(keep) if i in drop]
        if bad:
            raise CliError(f"--columns {bad[0]!r} is also the index or target column")
    else:
        keep = [i for i in range(width) if i not in drop]
    if not keep:
        raise CliError(f"{flag} {path!r}: no feature columns are left")
    table = table[:, keep]
    if names is not None:
        names = [names[i] for i in keep]
    return table, names


def _numeric(table, names, flag, path):
    if table.dtype == bool or (table.dtype != object and np.issubdtype(table.dtype, np.number)):
        return np.asarray(table, np.float32)
    if table.dtype.kind in "US":
        table = table.astype(object)
    if table.dtype != object:
        raise CliError(f"{flag} {path!r}: X must hold numbers; got dtype {table.dtype}")
    try:
        return table.astype(np.float32)  # every cell a number: the fast path
    except (TypeError, ValueError):
        pass  # a missing-value token or text: find and name it, cell by cell
    out = np.empty(table.shape, np.float32)
    for (i, j), cell in np.ndenumerate(table):
        if cell is None:
            out[i, j] = np.nan
            continue
        if isinstance(cell, str):
            if cell.strip().lower() in MISSING_TOKENS:
                out[i, j] = np.nan
                continue
        try:
            out[i, j] = float(cell)
        except (TypeError, ValueError):
            column = names[j] if names is not None else j
            raise CliError(
                f"{flag} {path!r}: row {i + 1}, column {column!r} holds {str(cell)[:30]!r}, "
                "not a number: drop the column with --target or pick features with --columns "
                "(an index column: --index-col)"
            ) from None
    return out


def _check_complete(X, names, flag, path):
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        i, j = int(rows[0]), int(np.flatnonzero(bad[rows[0]])[0])
        column = names[j] if names is not None else j
        raise CliError(
            f"{flag} {path!r}: {len(rows)} of {len(X)} rows hold missing or non-finite values "
            f"(first: row {i + 1}, column {column!r}); explainers need complete numeric rows: "
            "drop or impute them first"
        )


def _what(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"
