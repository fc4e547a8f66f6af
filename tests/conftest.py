import jax
import pytest

# Implicit rank promotion hides shape bugs; make it an error in the whole suite.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)


# Oracle comparisons need full float32 products: GPUs such as the H100 default to TensorFloat-32
# (10 mantissa bits), which moves batch-vs-loop results by ~1e-4. CPUs are unaffected.
jax.config.update("jax_default_matmul_precision", "highest")
