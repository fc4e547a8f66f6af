"""The explainer contract, checked over every public explainer in the registry.

For each registered explainer: keys typed, raw and per instance; one instance vs a batch of one;
the same key gives bit-identical values; same-shaped calls compile once; ``batch_size=1`` row
equals the default; ``targets`` as an int, an array and a callable; the invariant of its
``Explanation.kind``; bad input raises a ``TypeError``/``ValueError`` naming the argument before
anything compiles; ``mesh=`` on 4 host devices equals one device (one subprocess for all).
"""

from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from cases import ACCEPTS_MISSING, NO_CALLABLE_TARGETS, M, N, case_for, text_classifier
from compiles import count_compiles
from same import assert_same

import xaijax
from xaijax.core.registry import explainers

REGISTRY = explainers()
NAMES = sorted(REGISTRY)


@pytest.fixture(scope="module", params=NAMES)
def case(request):
    return case_for(REGISTRY[request.param])


def _keys(case, key=None):
    return {"key": jax.random.key(0) if key is None else key} if case.random else {}


def _input_name(case) -> str:
    params = list(inspect.signature(case.info.fn).parameters)
    form = case.info.model_form
    return {"layer": params[2], "coefficients": params[2], "none": params[0]}.get(form, params[1])


def _values(exp):
    return np.asarray(exp.values)


def _close(a, b, *, rtol=2e-4):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


# -- the registry ----------------------------------------------------------------------------------
def test_every_public_explainer_is_registered():
    returning = [
        name
        for name in xaijax.__all__
        if callable(obj := getattr(xaijax, name))
        and inspect.isfunction(obj)
        and "Explanation" in str(inspect.signature(obj).return_annotation)
    ]
    assert returning, "no public function is annotated as returning an Explanation"
    missing = sorted(set(returning) - set(REGISTRY))
    assert not missing, f"public explainers missing from the registry: {missing}"


def test_every_registered_explainer_has_the_contract_signature(case):
    params = inspect.signature(case.info.fn).parameters
    for name in ("targets", "batch_size", "mesh"):
        assert name in params, f"{case.name} has no {name}="
        assert params[name].default is None, f"{case.name}: {name} must default to None"
    assert ("key" in params) == case.random
    for name, p in params.items():
        if name in ("key", "batch_size", "mesh"):
            assert p.kind is p.KEYWORD_ONLY, f"{case.name}: {name} must be keyword-only"


# -- keys ------------------------------------------------------------------------------------------
def test_keys_typed_raw_and_per_instance_give_the_same_values(case):
    if not case.random:
        pytest.skip("draws no random numbers")
    typed = case.call(case.X, key=jax.random.key(7))
    again = case.call(case.X, key=jax.random.key(7))
    raw = case.call(case.X, key=jax.random.PRNGKey(7))
    per = case.call(case.X, key=jax.random.split(jax.random.key(7), N))
    per_raw = case.call(case.X, key=jax.random.split(jax.random.PRNGKey(7), N))
    for other in (again, raw, per, per_raw):
        assert_same(_values(other), _values(typed))
    other_key = case.call(case.X, key=jax.random.key(8))
    assert not np.array_equal(_values(other_key), _values(typed)), "the key is ignored"


# -- one instance vs a batch -----------------------------------------------------------------------
def test_one_instance_gives_an_unbatched_explanation(case):
    one = case.call(case.single(1), **_keys(case))
    batch = case.call(case.batch_of_one(1), **_keys(case))
    assert not one.is_batched and batch.is_batched and len(batch) == 1
    assert_same(_values(one), _values(batch)[0])
    assert_same(one.base_values, np.asarray(batch.base_values)[0])


# -- compile once ----------------------------------------------------------------------------------
def test_same_shaped_calls_compile_once(case):
    case.call(case.X, **_keys(case))
    if case.info.inputs == "text":
        new_inputs = [case.X, case.X]  # other strings may change the vocabulary's padded width
    else:
        new_inputs = [np.asarray(case.X) * 0.9 + 0.05, np.asarray(case.X)[::-1].copy()]
    keys = [jax.random.key(1), jax.random.key(2)]
    with count_compiles() as compiled:
        for X, key in zip(new_inputs, keys, strict=True):
            case.call(X, **({"key": key} if case.random else {}))
    assert compiled == [], f"{case.name} recompiled for same-shaped inputs: {compiled}"


# -- batch_size ------------------------------------------------------------------------------------
def test_batch_size_of_one_row_equals_the_default(case):
    default = case.call(case.X, **_keys(case))
    one_row = case.call(case.X, batch_size=1, **_keys(case))
    _close(one_row.values, default.values)
    _close(one_row.base_values, default.base_values)


# -- targets ---------------------------------------------------------------------------------------
def test_targets_as_int_array_and_callable_agree(case):
    k = min(1, case.num_outputs - 1)
    as_int = case.call(case.X, targets=k, **_keys(case))
    as_array = case.call(case.X, targets=np.full(N, k), **_keys(case))
    assert_same(_values(as_int), _values(as_array))
    if case.name in NO_CALLABLE_TARGETS:
        with pytest.raises(TypeError, match="targets"):
            case.call(case.X, targets=lambda y: y, **_keys(case))
    else:
        as_fn = case.call(case.X, targets=lambda y: y[:, k] if y.ndim == 2 else y, **_keys(case))
        _close(as_fn.values, as_int.values)
    mixed = case.call(case.X, targets=np.array([0, 1, 2])[:N] % case.num_outputs, **_keys(case))
    assert np.asarray(mixed.values).shape == np.asarray(as_int.values).shape


def test_targets_out_of_range_are_refused(case):
    with pytest.raises(ValueError, match="targets"):
        case.call(case.X, targets=case.num_outputs + 3, **_keys(case))
    with pytest.raises(TypeError, match="targets"):
        case.call(case.X, targets=1.5, **_keys(case))


# -- the kind's invariant --------------------------------------------------------------------------
def test_the_invariant_of_its_kind_holds(case):
    exp = case.call(case.X, **_keys(case))
    assert exp.kind == case.info.kind
    assert exp.method == case.name or case.name == "cam"  # cam() names its weighting
    values = np.asarray(exp.values, np.float64)
    base = np.asarray(exp.base_values, np.float64)
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(base))
    if exp.kind in ("additive", "path"):
        picked = case.call(case.X, targets=1, **_keys(case)) if case.num_outputs > 1 else exp
        v = np.asarray(picked.values, np.float64)
        total = v.reshape(N, -1).sum(axis=1) + np.asarray(picked.base_values, np.float64)
        out = np.asarray(case.outputs(case.X), np.float64)
        want = out[:, 1] if out.ndim == 2 else out
        if exp.kind == "path":
            want = want - np.asarray(picked.extras["completeness_gap"], np.float64)
        _close(total, want, rtol=1e-4)
    elif exp.kind == "interaction":
        np.testing.assert_array_equal(values, np.swapaxes(values, 1, 2))
        assert values.shape[:3] == (N, M, M)
        if exp.extras["efficient"]:  # every order summed, each set once
            total = np.asarray(base).copy()
            for s in range(1, exp.extras["max_order"] + 1):
                dense = np.asarray(exp.extras[f"order_{s}"], np.float64)
                total += dense.reshape((N, M**s) + dense.shape[1 + s :]).sum(1) / math.factorial(s)
            _close(total, np.asarray(case.outputs(case.X), np.float64), rtol=1e-4)
    elif exp.kind == "map":
        assert np.all(base == 0)
        X = np.asarray(case.X)
        assert values.shape in (X.shape, X.shape[:-1]), values.shape
    elif exp.kind == "prototype":
        assert np.all(base == 0) and values.shape[0] == N
        assert np.all(np.isfinite(np.asarray(exp.extras["logits"])))
    elif exp.kind == "surrogate":
        score = np.asarray(exp.extras["score"])
        assert np.all(score <= 1 + 1e-5)
        np.testing.assert_array_equal(base, np.asarray(exp.extras["intercept"]))


# -- bad input -------------------------------------------------------------------------------------
def _bad_inputs(case):
    X = case.X
    if case.info.inputs == "text":
        return [(TypeError, [1, 2, 3]), (ValueError, [])]
    X = np.asarray(X)
    nan = X.copy()
    nan.flat[1] = np.nan
    wrong = np.concatenate([X, X[..., :1]], axis=-1)  # one feature / channel too many
    deep = X[None, None]
    if case.name in ACCEPTS_MISSING:
        return [(ValueError, wrong), (ValueError, deep)]
    return [(ValueError, nan), (ValueError, wrong), (ValueError, deep)]


def test_bad_input_is_named_before_anything_compiles(case):
    name = _input_name(case)
    case.call(case.X, **_keys(case))  # warm: later errors must come before any compilation
    for _error, bad in _bad_inputs(case):
        with count_compiles() as compiled:
            with pytest.raises((TypeError, ValueError)) as raised:
                case.call(bad, **_keys(case))
        assert name in str(raised.value), f"{case.name}: {raised.value!r} does not name {name}"
        assert compiled == [], f"{case.name} compiled {compiled} before refusing {name}"
    if case.random:
        for bad_key, error in (
            (0, TypeError),
            (jax.random.split(jax.random.key(0), N + 1), ValueError),
        ):
            with pytest.raises(error, match="key"):
                case.call(case.X, key=bad_key)
    for bad_batch, error in ((0, ValueError), (2.5, TypeError), (-3, ValueError)):
        with pytest.raises(error, match="batch_size"):
            case.call(case.X, batch_size=bad_batch, **_keys(case))


def _nan_everywhere(fn):
    if fn is text_classifier:
        return lambda docs: text_classifier(docs) * np.nan
    return lambda *a: fn(*a) * jnp.nan


def _nan_off_the_instances(case):
    """NaN on any input that is not one of the explained instances: perturbed rows only."""
    if case.info.inputs == "text":
        texts = set(case.X)
        return lambda docs: np.where(
            np.array([d in texts for d in docs])[:, None], text_classifier(docs), np.nan
        )
    X0 = jnp.asarray(case.X)
    flat0 = X0.reshape(X0.shape[0], -1)

    def poisoned(X):
        flat = X.reshape(X.shape[0], -1)
        seen = jnp.any(jnp.all(flat[:, None, :] == flat0[None, :, :], axis=-1), axis=1)
        out = case.model(X)
        return jnp.where(seen[:, None], out, jnp.nan)

    return poisoned


def test_nan_model_outputs_are_an_error_not_a_nan_explanation(case):
    if case.model is None or case.info.model_form == "protopnet":
        pytest.skip("the explainer has no model argument")
    with pytest.raises(ValueError, match="NaN"):
        case.call_with(case.wrapped(_nan_everywhere), case.X, **_keys(case))


def test_nan_on_perturbed_inputs_only_is_never_silent(case):
    if case.model is None or case.info.model_form in ("layer", "protopnet", "module", "attention"):
        pytest.skip("no perturbed inputs of a replaceable model")
    model = _nan_off_the_instances(case)
    try:
        exp = case.call_with(model, case.X, **_keys(case))
    except ValueError as err:
        assert "NaN" in str(err)
        return
    except NotImplementedError as err:  # Deep SHAP has no rule for the where() that poisons
        assert "select_n" in str(err)
        return
    assert np.all(np.isfinite(np.asarray(exp.values))), "a silent NaN explanation"


def test_nan_gradients_of_finite_outputs_are_never_silent(case):
    if not case.info.needs_jax or case.model is None or case.info.model_form == "protopnet":
        pytest.skip("not a gradient or jaxpr method")

    def kink(fn):
        # sqrt at 0 has an infinite derivative: times 0 the output is finite, the gradient NaN.
        def f(*a):
            out = fn(*a)
            zero = jnp.sqrt(jnp.abs(a[0] - a[0])).reshape(a[0].shape[0], -1)[:, :1]
            return out + 0.0 * zero

        return f

    try:
        exp = case.call_with(case.wrapped(kink), case.X, **_keys(case))
    except ValueError as err:
        assert "NaN" in str(err)
        return
    assert np.all(np.isfinite(np.asarray(exp.values))), "a silent NaN explanation"


# -- mesh ------------------------------------------------------------------------------------------
MESH_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    sys.path[:0] = [{tests!r}, {contract!r}]
    import xaijax as xj
    from cases import case_for, N
    from xaijax.core.registry import explainers
    mesh = xj.instance_mesh()
    assert mesh.devices.size == 4
    out = {{}}
    for name, info in sorted(explainers().items()):
        case = case_for(info)
        keys = {{"key": jax.random.key(3)}} if case.random else {{}}
        X = case.X
        X5 = X if case.info.inputs == "text" else np.concatenate([X, X[:2]])  # 5: padded to 8
        one = case.call(X5, **keys)
        sharded = case.call(X5, mesh=mesh, **keys)
        diff = float(np.max(np.abs(np.asarray(one.values) - np.asarray(sharded.values))))
        scale = float(np.max(np.abs(np.asarray(one.values))))
        out[name] = [diff, scale]
    print(json.dumps(out))
    """
)


def test_mesh_on_four_host_devices_equals_one_device():
    here = os.path.dirname(os.path.abspath(__file__))
    script = MESH_SCRIPT.format(tests=os.path.dirname(here), contract=here)
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4"
    env = dict(os.environ, XLA_FLAGS=flags, JAX_PLATFORMS="cpu")
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    diffs = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(diffs) == set(REGISTRY)
    bad = {k: v for k, v in diffs.items() if v[0] > 1e-5 * max(1.0, v[1])}
    assert not bad, f"mesh results differ from one device: {bad}"
