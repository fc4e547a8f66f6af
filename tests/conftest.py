import jax
import pytest

# Implicit rank promotion hides shape bugs; make it an error in the whole suite.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)
