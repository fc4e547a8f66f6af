"""The host adapter's thread cap (BLAS pools inside XLA's threads oversubscribe a small CPU)."""

import jax
import numpy as np
import pytest

from xaijax.core import model as models
from xaijax.core.batching import evaluate

threadpoolctl = pytest.importorskip("threadpoolctl")


@pytest.fixture
def fresh_limit():
    models._host_thread_limit.cache_clear()
    yield
    models._host_thread_limit.cache_clear()


def test_host_calls_run_with_the_blas_pool_capped(monkeypatch, fresh_limit):
    monkeypatch.setenv("XAIJAX_HOST_THREADS", "1")
    seen = []

    def predict(X):
        pools = threadpoolctl.threadpool_info()
        seen.append(max((p["num_threads"] for p in pools if p["user_api"] == "blas"), default=1))
        return np.tanh(X).sum(axis=1)

    model, params = models.as_model(models.host_model(predict), np.zeros((2, 3), np.float32))
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = jax.jit(lambda X: evaluate(model, params, X))(X)
    np.testing.assert_allclose(y, np.tanh(X).sum(axis=1), rtol=1e-6)
    assert seen[-1] == 1  # (the first call is as_model's probe, outside XLA: not capped)


def test_thread_cap_settings(monkeypatch, fresh_limit):
    monkeypatch.setenv("XAIJAX_HOST_THREADS", "0")
    assert models._host_thread_limit() is None
    models._host_thread_limit.cache_clear()
    monkeypatch.setenv("XAIJAX_HOST_THREADS", "auto")
    expected_none = jax.default_backend() != "cpu"
    assert (models._host_thread_limit() is None) == expected_none
