"""A bad-input campaign over every option of every registered explainer.

For each keyword option (read from the signature) a few values outside any sensible range are
passed: the explainer must either refuse them with a ``TypeError``/``ValueError`` whose message
names the option, or return a finite Explanation. Any other exception (a NumPy or JAX traceback
from inside, ``ZeroDivisionError``, ``re.error``...) or a NaN result fails.
"""

from __future__ import annotations

import inspect
import math

import jax
import numpy as np
import pytest
from cases import case_for

from xaijax.core.contract import MISSING
from xaijax.core.registry import explainers

REGISTRY = explainers()
# The contract's own arguments are checked in test_contract.py.
CONTRACT = {"key", "targets", "batch_size", "mesh"}


def _bad_values(default):
    if isinstance(default, bool):
        return ["yes", 2]
    if isinstance(default, int):
        return [2.5, -1, "x", math.nan]
    if isinstance(default, float):
        return [math.nan, math.inf, -math.inf, "x"]
    if isinstance(default, str):
        return ["not-a-choice", 3]
    if default is None:
        return ["x", math.nan]
    return []


def _options():
    for name, info in sorted(REGISTRY.items()):
        params = inspect.signature(info.fn).parameters
        for option, p in params.items():
            if p.kind is not p.KEYWORD_ONLY or option in CONTRACT or p.default is MISSING:
                continue
            for value in _bad_values(p.default):
                yield pytest.param(name, option, value, id=f"{name}-{option}={value!r}")


@pytest.mark.parametrize("name, option, value", list(_options()))
def test_bad_option_is_named_or_harmless(name, option, value):
    case = case_for(REGISTRY[name])
    keys = {"key": jax.random.key(0)} if case.random else {}
    try:
        exp = case.call(case.X, **{option: value}, **keys)
    except (TypeError, ValueError) as err:
        assert option in str(err), f"{name}({option}={value!r}): {err!r} does not name {option}"
        return
    values = np.asarray(exp.values)
    if values.dtype.kind == "f":
        assert np.all(np.isfinite(values)), f"{name}({option}={value!r}) gave a NaN explanation"
