"""Explainers sharded over devices equal the one-device call; per-instance keys slice cleanly."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xaijax as xj

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs in a fresh interpreter: the fake CPU devices must be requested before JAX initialises.
FOUR_DEVICES = textwrap.dedent(
    """
    import json, os
    flags = os.environ.get("XLA_FLAGS", "")  # the suite's (tests/conftest.py)
    os.environ["XLA_FLAGS"] = flags + " --xla_force_host_platform_device_count=4"
    import jax, jax.numpy as jnp, numpy as np
    from jax.sharding import Mesh
    import xaijax as xj

    jax.config.update("jax_numpy_rank_promotion", "raise")
    assert jax.device_count() == 4, jax.devices()
    rng = np.random.default_rng(0)
    M, H = 5, 8
    W1, b1 = rng.normal(size=(M, H)).astype(np.float32), rng.normal(size=H).astype(np.float32)
    W2 = rng.normal(size=(H, 2)).astype(np.float32)

    def mlp(X):
        return jax.nn.softmax(jnp.tanh(X @ W1 + b1[None, :]) @ W2, axis=-1)

    def rowwise(X):  # no matmul: every output row is computed the same way whatever the batch
        return jnp.stack([X[:, 0] * X[:, 1] + jnp.sin(X[:, 2]), X[:, 3] - X[:, 4] ** 2], axis=1)

    def host(X):  # a NumPy model, run through jax.pure_callback on every device
        return np.tanh(np.asarray(X, np.float32) @ W1 + b1) @ W2

    X, bg = rng.normal(size=(8, M)), rng.normal(size=(4, M))
    key = jax.random.key(0)
    calls = {
        "permutation_shap": lambda f, X, **kw: xj.permutation_shap(
            f, X, bg, key=key, num_permutations=2, **kw
        ),
        "exact_shapley": lambda f, X, **kw: xj.exact_shapley(f, X, bg, **kw),
        "deep_shap": lambda f, X, **kw: xj.deep_shap(f, X, bg, **kw),
        "max_shap": lambda f, X, **kw: xj.max_shap(X, bg, **kw),  # no model: f unused
    }
    # The contract suite (tests/contract) runs every explainer on a 1-d mesh of 4 devices; here:
    # batch-invariant rows (bitwise), a host model, and 2x2 meshes (two named axes).
    cases = [(name, "rowwise", n) for name in ("exact_shapley", "permutation_shap") for n in (8, 7)]
    cases += [(name, "mlp", 7) for name in calls] + [("exact_shapley", "host", 7)]
    models = {"rowwise": rowwise, "mlp": mlp, "host": host}
    grid = Mesh(np.array(jax.devices()).reshape(2, 2), ("a", "b"))
    meshes = {"1d": xj.instance_mesh(), "2x2": grid}
    out = {}
    for name, model, n in cases:
        one = calls[name](models[model], X[:n])
        for mesh_name, mesh in meshes.items():
            if (mesh_name == "2x2" and n != 7) or (mesh_name == "1d" and model == "mlp"):
                continue
            sharded = calls[name](models[model], X[:n], mesh=mesh)
            pairs = [(one.values, sharded.values), (one.base_values, sharded.base_values)]
            out[f"{name}/{model}/{n}/{mesh_name}"] = {
                "shape": list(np.shape(sharded.values)),
                "bitwise": all(np.array_equal(a, b) for a, b in pairs),
                "scale": float(np.abs(one.values).max()),
                "max_diff": max(float(np.abs(np.subtract(a, b)).max()) for a, b in pairs),
            }

    # LIME on images and strings: images sharded end to end; text's masks and fits sharded, the
    # host classifier called on the host.
    images = rng.uniform(size=(5, 8, 8, 3)).astype(np.float32)
    seg = np.repeat(np.arange(4), 16).reshape(8, 8)
    Wc = rng.normal(size=(3, 2)).astype(np.float32)

    def image_model(X):
        return jax.nn.softmax(X.mean(axis=(1, 2)) @ Wc, axis=-1)

    texts = ["a good film", "a bad dull film", "good acting, bad plot", "dull", "good bad film"]

    def text_model(docs):
        s = np.array([d.count("good") - d.count("bad") for d in docs], np.float32)
        p = 1 / (1 + np.exp(-s))
        return np.stack([1 - p, p], axis=1)

    others = {
        "lime_image": lambda **kw: xj.lime_image(
            image_model, images, key=key, segments=seg, num_samples=32, **kw
        ),
        "lime_text": lambda **kw: xj.lime_text(text_model, texts, key=key, num_samples=32, **kw),
    }
    for name, call in others.items():
        one = call()
        for mesh_name, mesh in [("2x2", grid)]:  # the 1-d mesh: tests/contract
            sharded = call(mesh=mesh)
            pairs = [(one.values, sharded.values), (one.base_values, sharded.base_values)]
            out[f"{name}/{name}/5/{mesh_name}"] = {
                "shape": list(np.shape(sharded.values)),
                "bitwise": all(np.array_equal(a, b) for a, b in pairs),
                "scale": float(np.abs(one.values).max()),
                "max_diff": max(float(np.abs(np.subtract(a, b)).max()) for a, b in pairs),
            }
    print("RESULT", json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["JAX_PLATFORMS"] = "cpu"  # the forced host devices, even where a GPU is present
    proc = subprocess.run(
        [sys.executable, "-c", FOUR_DEVICES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(s for s in proc.stdout.splitlines() if s.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_sharded_equals_one_device(four_devices):
    # every case ran: rowwise 8 (1d) and 7 (1d, 2x2), four on the MLP and LIME image and text
    # on 2x2, the host model on both
    assert len(four_devices) == 2 * 3 + 4 + 2 + 2
    assert {"deep_shap/mlp/7/2x2", "max_shap/mlp/7/2x2", "lime_text/lime_text/5/2x2"} <= set(
        four_devices
    )
    for case, r in four_devices.items():
        name, model, n, _ = case.split("/")
        assert r["shape"][0] == int(n), case  # padding dropped
        # float32 rounding of batch-shape-dependent products, relative to the values' scale
        assert r["max_diff"] <= 1e-6 * max(1.0, r["scale"]), (case, r)


def test_sharded_bitwise_when_model_rows_are_batch_invariant(four_devices):
    # With a model whose rows don't depend on the batch shape, the Shapley estimators that
    # involve no batched linear algebra are bitwise identical on 4 devices, padding or not.
    for name in ("exact_shapley", "permutation_shap"):
        for case in (f"{name}/rowwise/8/1d", f"{name}/rowwise/7/1d", f"{name}/rowwise/7/2x2"):
            assert four_devices[case]["bitwise"], (case, four_devices[case])


# -- in-process: one device, keys, errors -----------------------------------------------------


def _mlp(X):
    return jnp.tanh(X @ jnp.arange(1.0, 5.0))


@pytest.fixture(scope="module")
def data4():
    rng = np.random.default_rng(3)
    return rng.normal(size=(5, 4)), rng.normal(size=(3, 4))


def test_one_device_mesh_is_bitwise(data4):
    X, bg = data4
    mesh = xj.instance_mesh(jax.devices()[:1])
    a = xj.kernel_shap(_mlp, X, bg, key=jax.random.key(1), num_samples=8)
    b = xj.kernel_shap(_mlp, X, bg, key=jax.random.key(1), num_samples=8, mesh=mesh)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.base_values, b.base_values)


@pytest.mark.parametrize("method", ["kernel_shap", "permutation_shap"])
def test_per_instance_keys_slice_the_batch(data4, method):
    # Instance i draws from split(key, n)[i]: explaining rows 2:5 with keys[2:5] (one process's
    # share) gives rows 2:5 of the whole explanation.
    X, bg = data4
    explainer = getattr(xj, method)
    key = jax.random.key(7)
    whole = explainer(_mlp, X, bg, key=key)
    part = explainer(_mlp, X[2:], bg, key=jax.random.split(key, 5)[2:])
    np.testing.assert_allclose(part.values, whole.values[2:], atol=1e-6)


def test_bad_mesh_and_keys(data4):
    X, bg = data4
    with pytest.raises(TypeError, match="mesh must be None or a jax.sharding.Mesh"):
        xj.exact_shapley(_mlp, X, bg, mesh="cpu")
    with pytest.raises(TypeError, match="mesh must be"):
        xj.lime_tabular(_mlp, X, bg, key=jax.random.key(0), mesh=jax.devices())
    with pytest.raises(TypeError, match="mesh must be"):
        xj.lime_image(
            lambda im: im.mean(axis=(1, 2, 3)),
            np.ones((2, 4, 4, 3)),
            key=jax.random.key(0),
            segments=np.zeros((4, 4), int),
            mesh=jax.devices(),
        )
    with pytest.raises(TypeError, match="mesh must be"):
        xj.lime_text(lambda d: np.ones(len(d)), "a b", key=jax.random.key(0), mesh="cpu")
    with pytest.raises(ValueError, match=r"key must be .*\(5,\) keys"):
        xj.kernel_shap(_mlp, X, bg, key=jax.random.split(jax.random.key(0), 4))
    with pytest.raises(ValueError, match="devices must hold at least one"):
        xj.instance_mesh([])
