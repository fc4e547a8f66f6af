import os

# The README runs the suite in two processes (pytest -n 2): on a GPU, a process that took 75% of
# the device memory up front (XLA's default) would leave the other too little.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

# The suite is compile-bound (tiny models, thousands of programs): XLA's LLVM back end without its
# optimisation passes compiles about a quarter faster, and runs the tiny programs about as fast.
# Floating-point semantics do not change (no fast-math at any level). XAIJAX_TEST_FAST_COMPILE=0
# compiles as users do.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if os.environ.get("XAIJAX_TEST_FAST_COMPILE", "1") != "0" and FAST_COMPILE not in os.environ.get(
    "XLA_FLAGS", ""
):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE).strip()

import jax  # noqa: E402
import pytest  # noqa: E402

# The CLI keeps compiled programs in the user's cache folder; tests calling it in-process must
# neither write there nor switch the persistent cache on for the rest of the suite.
os.environ.setdefault("XAIJAX_COMPILE_CACHE", "0")

# Implicit rank promotion hides shape bugs; make it an error in the whole suite.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(0)


# Oracle comparisons need full float32 products: GPUs such as the H100 default to TensorFloat-32
# (10 mantissa bits), which moves batch-vs-loop results by ~1e-4. CPUs are unaffected.
jax.config.update("jax_default_matmul_precision", "highest")


def _memory_mappings() -> int:
    try:
        with open(f"/proc/{os.getpid()}/maps") as fh:
            return sum(1 for _ in fh)
    except OSError:  # not Linux
        return 0


@pytest.fixture(autouse=True)
def _release_compiled_programs():
    """Free the compiled programs when the process holds many memory mappings.

    Every XLA:CPU executable keeps about three memory mappings of its own code and data; the
    suite compiles thousands of programs, and one process would reach Linux's limit of 65530
    mappings (``vm.max_map_count``), where XLA's compiler crashes with a segmentation fault.
    """
    yield
    if _memory_mappings() > 20000:
        jax.clear_caches()
