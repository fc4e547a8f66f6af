"""Reading what ``xaijax explain`` is given: a saved model and data files."""

from __future__ import annotations

import importlib
import os
import pickle

import numpy as np

from xaijax.cli.settings import CliError

__all__ = ["load_model", "load_data"]


def load_model(spec: str):
    """A model from a pickle file, or ``package.module:attribute`` naming a model or a factory.

    An estimator's ``predict_proba`` (else ``predict``) is used; a callable or an
    ``(apply_fn, params)`` pair is used as it is. A class, or a function marked with
    ``__xaijax_factory__ = True``, is called once to make the model.
    """
    if os.path.exists(spec):
        with open(spec, "rb") as fh:
            obj = pickle.load(fh)
    elif ":" in spec:
        module, _, attr = spec.partition(":")
        try:
            obj = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise CliError(f"--model {spec!r}: cannot import it ({err})") from err
        if isinstance(obj, type) or getattr(obj, "__xaijax_factory__", False):
            obj = obj()
    else:
        raise CliError(f"--model {spec!r}: no such file (give a pickle file or module:attribute)")
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


def load_data(path: str, flag: str = "--data"):
    """``(X, feature_names)`` from ``.npz`` (``X``, optional ``feature_names``) or ``.csv``."""
    if not os.path.exists(path):
        raise CliError(f"{flag} {path!r}: no such file")
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as npz:
            if "X" not in npz.files:
                raise CliError(
                    f"{flag} {path!r}: the .npz must hold an array named X; it holds {npz.files}"
                )
            X = np.asarray(npz["X"], np.float32)
            names = [str(n) for n in npz["feature_names"]] if "feature_names" in npz.files else None
    elif path.endswith(".csv"):
        with open(path) as fh:
            header = fh.readline().strip().split(",")
        try:
            float(header[0])
            names, skip = None, 0
        except ValueError:
            names, skip = [h.strip() for h in header], 1
        try:
            X = np.loadtxt(path, delimiter=",", skiprows=skip, dtype=np.float32, ndmin=2)
        except ValueError as err:
            raise CliError(f"{flag} {path!r}: not a numeric CSV ({err})") from err
    else:
        raise CliError(f"{flag} {path!r}: expected a .npz or .csv file")
    if X.ndim != 2:
        raise CliError(f"{flag} {path!r}: X must be a table (rows, features); got shape {X.shape}")
    return X, names
