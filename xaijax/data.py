"""Datasets that ship with installed packages (nothing is downloaded at run time)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Dataset", "breast_cancer", "diabetes", "train_test_split"]


class Dataset(NamedTuple):
    """A tabular data set: ``X (N, M)`` float32, ``y (N,)``, and names for features and targets."""

    X: np.ndarray
    y: np.ndarray
    feature_names: tuple[str, ...]
    target_names: tuple[str, ...]
    name: str


def _standardise(X):
    X = np.asarray(X, np.float64)
    return ((X - X.mean(0)) / X.std(0)).astype(np.float32)


def breast_cancer(*, standardise: bool = True) -> Dataset:
    """Wisconsin breast-cancer diagnosis (569 x 30, classes malignant/benign), from scikit-learn.

    Example:
        >>> ds = breast_cancer()
        >>> ds.X.shape, ds.target_names
        ((569, 30), ('malignant', 'benign'))
    """
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    X = _standardise(raw.data) if standardise else raw.data.astype(np.float32)
    return Dataset(
        X,
        raw.target.astype(np.int32),
        tuple(raw.feature_names),
        tuple(raw.target_names),
        "breast_cancer",
    )


def diabetes() -> Dataset:
    """Diabetes progression regression (442 x 10, target standardised), from scikit-learn.

    Example:
        >>> diabetes().X.shape
        (442, 10)
    """
    from sklearn.datasets import load_diabetes

    raw = load_diabetes()
    y = np.asarray(raw.target, np.float64)
    return Dataset(
        _standardise(raw.data),
        ((y - y.mean()) / y.std()).astype(np.float32),
        tuple(raw.feature_names),
        ("progression",),
        "diabetes",
    )


def train_test_split(ds: Dataset, *, test_fraction: float = 0.25, seed: int = 0):
    """Split ``ds`` into a shuffled train and test :class:`Dataset` (deterministic in ``seed``)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    order = np.random.default_rng(seed).permutation(len(ds.X))
    cut = int(round(len(order) * (1.0 - test_fraction)))
    train, test = order[:cut], order[cut:]
    return ds._replace(X=ds.X[train], y=ds.y[train]), ds._replace(X=ds.X[test], y=ds.y[test])
