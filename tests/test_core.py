"""core/: model adapters, keys, targets, the single-vs-batch rule and the option checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from compiles import count_compiles

import xaijax as xj
from xaijax.core import contract
from xaijax.core.model import as_model
from xaijax.core.targets import resolve_targets, select_outputs, target_scores

X = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
BG = np.random.default_rng(1).normal(size=(5, 3)).astype(np.float32)


def linear_apply(params, X):
    return X @ params["w"] + params["b"][None, :]


def params_for(seed):
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32), "b": jnp.zeros(2)}


# -- models ------------------------------------------------------------------------------------
def test_pair_model_is_traced_and_a_new_checkpoint_does_not_recompile():
    p1, p2 = params_for(0), params_for(1)
    e1 = xj.exact_shapley((linear_apply, p1), X, BG)
    e2 = xj.exact_shapley((linear_apply, p2), X, BG)
    # Oracle: interventional Shapley values of a linear model, coef * (x - E[b]).
    for e, p in ((e1, p1), (e2, p2)):
        np.testing.assert_allclose(
            e.values, (X - BG.mean(0))[:, :, None] * np.asarray(p["w"])[None], atol=1e-5
        )


def test_compile_once_for_new_parameters():
    xj.kernel_shap((linear_apply, params_for(0)), X, BG, key=jax.random.key(0))
    new = [params_for(seed) for seed in (1, 2)]
    keys = [jax.random.key(seed) for seed in (1, 2)]
    with count_compiles() as compiled:
        for p, k in zip(new, keys, strict=True):
            xj.kernel_shap((linear_apply, p), X, BG, key=k)
    assert compiled == []


def test_linen_module_is_refused_with_the_pair_form_and_the_pair_works():
    nn = pytest.importorskip("flax.linen")
    model = nn.Dense(2)
    variables = model.init(jax.random.key(0), jnp.ones((1, 3)))
    with pytest.raises(TypeError, match=r"\(module.apply, variables\)"):
        xj.exact_shapley(model, X, BG)
    exp = xj.exact_shapley((model.apply, variables), X, BG)
    kernel = np.asarray(variables["params"]["kernel"])
    np.testing.assert_allclose(exp.values, (X - BG.mean(0))[:, :, None] * kernel[None], atol=1e-5)


def test_equinox_module_params_are_traced():
    eqx = pytest.importorskip("equinox")
    mlp = eqx.nn.MLP(3, 2, 8, 1, key=jax.random.key(0))
    model, params = as_model(jax.vmap(mlp), X)  # a vmapped function is a plain function
    assert model.kind == "jax"
    batched = eqx.filter_vmap(mlp)  # an Equinox module wrapping the MLP: a callable pytree
    model, params = as_model(batched, X)
    assert model.kind == "pytree" and len(params) == 4
    np.testing.assert_allclose(model.apply(params, jnp.asarray(X)), jax.vmap(mlp)(X), rtol=1e-6)
    exp = xj.exact_shapley(batched, X, BG)
    np.testing.assert_allclose(
        exp.values.sum(1) + exp.base_values, jax.vmap(mlp)(X), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "f, match",
    [
        (lambda X: jnp.concatenate([X[:, 0], X[:1, 0]]), "one output row per input row"),
        (lambda X: X[:, 0] + 1j * X[:, 1], "complex"),
        (lambda X: (X[:, 0], X[:, 1]), "one array"),
        (lambda X: X[:, :, None] * jnp.ones((1, 1, 2)), r"\(n,\) or \(n, K\)"),
        (lambda X: np.asarray(X)[:, 0] + 1j, "complex"),  # a host model
        (lambda X: np.concatenate([np.asarray(X)[:, 0], [0.0]]), "one output row per input row"),
    ],
)
def test_models_of_the_wrong_form_are_refused_naming_f(f, match):
    with pytest.raises(ValueError, match=match) as err:
        as_model(f, X)
    assert "f " in str(err.value) or "f(" in str(err.value) or str(err.value).startswith("f")


def test_non_finite_parameters_are_refused():
    bad = {"w": jnp.full((3, 2), jnp.nan), "b": jnp.zeros(2)}
    with pytest.raises(ValueError, match="parameters contain NaN"):
        as_model((linear_apply, bad), X)


def test_a_host_model_failing_mid_run_gives_its_own_error():
    def flaky(rows):
        rows = np.asarray(rows)
        if len(rows) > 2:  # fine at the probe (2 rows), broken afterwards
            raise RuntimeError("the model server went away")
        return rows.sum(axis=1)

    with pytest.raises(ValueError, match="host model.*the model server went away"):
        xj.exact_shapley(flaky, X, BG)


def test_host_model_returning_the_wrong_shape_after_the_probe():
    def shifty(rows):
        rows = np.asarray(rows)
        return rows.sum(axis=1) if len(rows) <= 2 else rows[:-1].sum(axis=1)

    with pytest.raises(ValueError, match="one output row per input row"):
        xj.exact_shapley(shifty, X, BG)


# -- keys ----------------------------------------------------------------------------------------
def test_keys_typed_raw_one_or_per_instance_agree():
    n = 4
    typed = contract.instance_keys(jax.random.key(3), n)
    raw = contract.instance_keys(jax.random.PRNGKey(3), n)
    per = contract.instance_keys(jax.random.split(jax.random.key(3), n), n)
    per_raw = contract.instance_keys(jax.random.split(jax.random.PRNGKey(3), n), n)
    for keys in (raw, per, per_raw):
        np.testing.assert_array_equal(jax.random.key_data(keys), jax.random.key_data(typed))


@pytest.mark.parametrize(
    "key, error, match",
    [
        (None, TypeError, "key is required"),
        (0, TypeError, "key must be a jax.random.key"),
        (np.zeros(2, np.float32), TypeError, "uint32"),
        ("seed", TypeError, "key must be"),
        (jax.random.split(jax.random.key(0), 3), ValueError, r"\(4,\) keys"),
    ],
)
def test_bad_keys_are_named(key, error, match):
    with pytest.raises(error, match=match):
        contract.instance_keys(key, 4)


# -- targets -------------------------------------------------------------------------------------
def test_targets_forms_and_errors():
    spec = resolve_targets(np.array([0, 2, 1]), 3, 3)
    np.testing.assert_array_equal(spec.indices, [0, 2, 1])
    assert resolve_targets(0, 3, None).indices.tolist() == [0, 0, 0]  # a scalar output's only
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 3\)"):
        resolve_targets(3, 2, 3)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        resolve_targets([0, 1, 2], 2, 3)
    with pytest.raises(TypeError, match="targets must be None, an int"):
        resolve_targets(1.5, 2, 3)
    with pytest.raises(TypeError, match="bool"):
        resolve_targets(True, 2, 3)
    outputs = jnp.array([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    scores, t = target_scores(outputs, None, None)
    assert scores.tolist() == [5.0, 7.0] and t.tolist() == [1, 0]
    scores, t = target_scores(outputs, None, lambda y: y[:, 0] - y[:, 1])
    assert scores.tolist() == [-4.0, 7.0] and t.tolist() == [-1, -1]
    assert select_outputs(outputs, jnp.array([2, 1])).tolist() == [2.0, 0.0]


@pytest.mark.parametrize("targets", [1, np.array([0, 1, 1, 0, 1, 0]), lambda y: y[:, 1] - y[:, 0]])
def test_targets_pick_the_same_values_as_all_outputs(targets):
    p = params_for(0)
    full = xj.exact_shapley((linear_apply, p), X, BG)
    picked = xj.exact_shapley((linear_apply, p), X, BG, targets=targets)
    v, b = np.asarray(full.values), np.asarray(full.base_values)
    if callable(targets):
        want_v, want_b = v[..., 1] - v[..., 0], b[:, 1] - b[:, 0]
    else:
        t = np.broadcast_to(targets, (6,))
        want_v, want_b = v[np.arange(6), :, t], b[np.arange(6), t]
    np.testing.assert_allclose(picked.values, want_v, atol=1e-6)
    np.testing.assert_allclose(picked.base_values, want_b, atol=1e-6)
    assert picked.output_names is None


# -- the batch rule and option checks ---------------------------------------------------------
def test_single_vs_batch_rule():
    batch, single = contract.split_instances(np.ones(3), (3,))
    assert single and batch.shape == (1, 3)
    batch, single = contract.split_instances(np.ones((2, 3)), (3,))
    assert not single and batch.shape == (2, 3)
    with pytest.raises(ValueError, match="X must be one instance of shape"):
        contract.split_instances(np.ones((2, 2, 3)), (3,))
    with pytest.raises(ValueError, match="at least one instance"):
        contract.split_instances(np.ones((0, 3)), (3,))

    def mlp(X):
        return jnp.tanh(X @ jnp.ones((3, 2)))

    assert contract.split_instances_by_model(mlp, np.ones(3))[1] is True
    assert contract.split_instances_by_model(mlp, np.ones((4, 3)))[1] is False
    with pytest.raises(ValueError, match="X of shape .* is neither a batch nor one input"):
        contract.split_instances_by_model(mlp, np.ones((2, 4, 3)))


def test_option_checks_name_the_argument():
    assert contract.check_int("num_samples", np.int64(5)) == 5
    with pytest.raises(TypeError, match="num_samples must be an int >= 1; got 2.5"):
        contract.check_int("num_samples", 2.5)
    with pytest.raises(TypeError, match="num_samples"):
        contract.check_int("num_samples", True)
    with pytest.raises(ValueError, match="num_samples must be an int >= 1; got 0"):
        contract.check_int("num_samples", 0)
    with pytest.raises(ValueError, match="kernel_width must be a finite number > 0.0; got nan"):
        contract.check_number("kernel_width", float("nan"), minimum=0.0, strict=True)
    with pytest.raises(TypeError, match="batch_size"):
        contract.resolve_batch_size(2.0)
    with pytest.raises(ValueError, match="batch_size"):
        contract.resolve_batch_size(-1)
    assert contract.resolve_batch_size(None, (30,)) >= 1
    with pytest.raises(ValueError, match="link must be one of"):
        contract.check_choice("link", "probit", ("identity", "logit"))
    with pytest.raises(TypeError, match="X must be real"):
        contract.as_float_array("X", np.ones(2) * 1j)
    with pytest.raises(TypeError, match="X must be a numeric array"):
        contract.as_float_array("X", np.array(["a", "b"]))
    with pytest.raises(ValueError, match="X has values too large"):
        contract.as_float_array("X", np.array([1e300]), dtype=np.float32)


def test_renamed_alias_warns_and_refuses_both():
    with pytest.warns(DeprecationWarning, match="target= is deprecated.*targets="):
        assert contract.renamed("target", 3, "targets", None) == 3
    assert contract.renamed("target", contract.MISSING, "targets", 2) == 2
    with pytest.raises(TypeError, match="pass targets= only"):
        contract.renamed("target", 3, "targets", 2)


def test_default_batch_size_by_backend_and_row_size():
    assert xj.core.default_batch_size((30,), backend="cpu") == 65536
    # Past 32 float32 features the 8 MiB of input rows binds: 8 MiB / 400 bytes.
    assert xj.core.default_batch_size((100,), backend="cpu") == 20971
    assert xj.core.default_batch_size((224, 224, 3), backend="cpu") == 13
    assert xj.core.default_batch_size((30,), backend="gpu") == 2**18
    assert xj.core.default_batch_size((224, 224, 3), backend="gpu") == 445
    assert xj.core.default_batch_size((10**8,), backend="cpu") == 1


def test_compiled_calls_run_with_one_blas_thread_and_restore_it():
    # On a CPU, XLA's LAPACK kernels (SciPy's OpenBLAS) get one thread while an explainer runs;
    # the library's own setting comes back after, also when the call fails.
    import threadpoolctl

    if jax.default_backend() != "cpu":
        pytest.skip("the cap applies to the CPU backend")
    seen = []

    def spy(X):
        blas = threadpoolctl.threadpool_info()
        seen.append({b["filepath"]: b["num_threads"] for b in blas if b["user_api"] == "blas"})
        return X

    def fn(X):
        return jax.pure_callback(spy, jax.ShapeDtypeStruct(X.shape, X.dtype), X)

    jnp.linalg.qr(jnp.ones((3, 2)))  # XLA's LAPACK loaded, as by any explainer that uses it
    with threadpoolctl.threadpool_limits(2, user_api="blas"):  # the cap must show on any machine
        before = {b["filepath"]: b["num_threads"] for b in threadpoolctl.threadpool_info()}
        contract.call(jax.jit(fn), jnp.ones(3))
        assert seen and all(n == 1 for n in seen[0].values())
        after = {b["filepath"]: b["num_threads"] for b in threadpoolctl.threadpool_info()}
        assert after == before

        def failing(X):
            raise RuntimeError("boom")

        shape = jax.ShapeDtypeStruct((3,), jnp.float32)
        bad = jax.jit(lambda X: jax.pure_callback(failing, shape, X))
        with pytest.raises(Exception, match="boom"):
            contract.call(bad, jnp.ones(3))
        assert {b["filepath"]: b["num_threads"] for b in threadpoolctl.threadpool_info()} == before


def test_a_model_is_probed_once_per_form_of_its_parameters():
    # Probing traces the model (most of a call's fixed cost): it is remembered by the model's
    # identity, its parameters' shapes and the probe's shape, never across a change of those.
    traced = []

    def apply_fn(params, X):
        traced.append(X.shape)
        return X @ params

    X = np.ones((5, 3), np.float32)
    first, _ = as_model((apply_fn, jnp.ones(3)), X)
    again, _ = as_model((apply_fn, jnp.full(3, 2.0)), X)  # a new checkpoint, same shapes
    assert len(traced) == 1 and again == first and first.output_shape == ()
    wider, _ = as_model((apply_fn, jnp.ones((3, 2))), X)  # other shapes: probed afresh
    assert len(traced) == 2 and wider.output_shape == (2,)

    def f(X):
        traced.append(X.shape)
        return X.sum(axis=1)

    as_model(f, X), as_model(f, X)
    assert len(traced) == 3
    as_model(f, np.ones((5, 4), np.float32))  # another input shape
    assert len(traced) == 4

    def failing(params, X):
        traced.append(X.shape)
        raise RuntimeError("no")

    for _ in range(2):  # a failed probe is not remembered
        with pytest.raises(ValueError, match="failed"):
            as_model((failing, jnp.ones(3)), X)
    assert len(traced) == 6


def test_finite_check_reads_host_arrays_in_place_and_sees_nan():
    # contract._finite uses NumPy on host arrays (no program to load in a fresh process).
    assert contract.on_host(jnp.ones(3))
    for ok in (np.ones(3), jnp.ones(3), jnp.ones(3, jnp.bfloat16), np.arange(3), [1.0, 2.0], 1.0):
        assert contract._finite(ok)
    for bad in (np.array([1.0, np.nan]), jnp.array([np.inf]), jnp.array([np.nan], jnp.bfloat16)):
        assert not contract._finite(bad)
    with pytest.raises(ValueError, match="non-finite attributions"):
        contract.pack(jnp.array([[np.nan]]), jnp.zeros(1), np.zeros((1, 1)), single=False,
                      kind="additive", method="m")  # fmt: skip
