"""The samplers' bit generator against JAX's own Threefry hash."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xaijax.core.random import fast_bits, fold_in, random_bits, seed_keys, threefry2x32


def test_threefry_equals_jax_primitive():
    from jax.extend.random import threefry2x32_p

    k = jnp.array([0x12345678, 0x9ABCDEF0], jnp.uint32)
    x0 = jnp.arange(1000, dtype=jnp.uint32) * jnp.uint32(7)
    x1 = jnp.arange(1000, dtype=jnp.uint32)
    ours = jax.jit(threefry2x32)(k[0], k[1], x0, x1)
    theirs = threefry2x32_p.bind(k[0], k[1], x0, x1)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fast_bits_vmap_equals_loop_and_is_uniform():
    keys = jax.random.split(jax.random.key(3), 4)
    draw = jax.jit(lambda k: fast_bits(k, (301, 7)))  # odd size: the last pair is half used
    batch = np.asarray(jax.jit(jax.vmap(lambda k: fast_bits(k, (301, 7))))(keys))
    loop = np.stack([np.asarray(draw(k)) for k in keys])
    np.testing.assert_array_equal(batch, loop)
    assert not np.array_equal(loop[0], loop[1])
    # Every byte of 400,000 words: chi-square over 256 values (255 dof: mean 255, sd 22.6).
    words = np.asarray(fast_bits(jax.random.key(0), (400_000,)))
    for shift in (0, 8, 16, 24):
        counts = np.bincount((words >> shift) & 0xFF, minlength=256)
        expected = len(words) / 256
        chi2 = np.sum((counts - expected) ** 2 / expected)
        assert 150 < chi2 < 370, (shift, chi2)
    # Neighbouring words (the two halves of one hash, and consecutive counters) are uncorrelated.
    u = words / 2.0**32
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.01
    assert abs(np.corrcoef(u[:200_000], u[200_000:])[0, 1]) < 0.01


def test_fast_bits_pairs_are_independent_across_counters_and_keys():
    # LIME reads a (S, M) draw by rows and columns and instances by split keys: the joint
    # distribution of the top 4 bits of two words (256 cells, chi-square with 255 dof: mean 255,
    # sd 22.6) is uniform for neighbouring columns, rows, far counters and neighbouring keys.
    a, b = jax.random.split(jax.random.key(7))
    words = np.asarray(fast_bits(a, (20_000, 20)))
    other = np.asarray(fast_bits(b, (20_000, 20)))
    pairs = {
        "columns": (words[:, 0], words[:, 1]),
        "rows": (words[:-1, 3], words[1:, 3]),
        "counter + 2**16": (words.ravel()[: 2**16], words.ravel()[2**16 : 2**17]),
        "keys": (words[:, 5], other[:, 5]),
    }
    for name, (x, y) in pairs.items():
        cells = ((x >> 28) << 4 | (y >> 28)).astype(np.int64)
        counts = np.bincount(cells, minlength=256)
        expected = len(cells) / 256
        chi2 = np.sum((counts - expected) ** 2 / expected)
        assert 150 < chi2 < 370, (name, chi2)
    # Every bit is set half the time (400,000 draws: 5 sigma is 0.004).
    bits = (words.ravel()[:, None] >> np.arange(32, dtype=np.uint32)) & 1
    np.testing.assert_allclose(bits.mean(0), 0.5, atol=0.004)


def test_fast_bits_rejects_huge_shapes():
    with pytest.raises(ValueError, match="2\\*\\*32"):
        jax.eval_shape(lambda k: fast_bits(k, (2**16, 2**16)), jax.random.key(0))


def test_fast_normal_is_standard_normal():
    from scipy import stats

    from xaijax.core.random import fast_normal

    z = np.asarray(fast_normal(jax.random.key(0), (400_000,)), np.float64)
    # Kolmogorov-Smirnov distance below the 0.1% critical value (1.95 / sqrt(n)).
    assert stats.kstest(z, "norm").statistic < 1.95 / np.sqrt(len(z))
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    assert np.isfinite(z).all() and np.abs(z).max() < 6.0
    keys = jax.random.split(jax.random.key(1), 3)
    batch = np.asarray(jax.vmap(lambda k: fast_normal(k, (50, 3)))(keys))
    loop = np.stack([np.asarray(fast_normal(k, (50, 3))) for k in keys])
    np.testing.assert_array_equal(batch, loop)


@pytest.mark.parametrize("shape", [(1,), (7,), (834, 20), (3, 5, 2)])
def test_random_bits_are_jax_random_bits(shape):
    typed, raw = jax.random.key(11), jax.random.PRNGKey(12)
    for key in (typed, raw):
        expected = np.asarray(jax.random.bits(key, shape, jnp.uint32))
        np.testing.assert_array_equal(np.asarray(random_bits(key, shape)), expected)
        np.testing.assert_array_equal(
            np.asarray(jax.jit(random_bits, static_argnums=1)(key, shape)), expected
        )
    keys = jax.random.split(typed, 3)
    np.testing.assert_array_equal(
        np.asarray(jax.vmap(lambda k: random_bits(k, shape))(keys)),
        np.asarray(jax.vmap(lambda k: jax.random.bits(k, shape, jnp.uint32))(keys)),
    )


def test_random_bits_of_another_prng_are_that_prngs_bits():
    key = jax.random.key(0, impl="rbg")
    np.testing.assert_array_equal(
        np.asarray(random_bits(key, (4, 3))), np.asarray(jax.random.bits(key, (4, 3), jnp.uint32))
    )


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**31 - 1, 2**31, 2**40])
def test_seed_keys_and_fold_in_equal_the_eager_ops(seed):
    # One compiled program each instead of several eager ones (the CLI's start-up), same bits;
    # seeds past int32 take the eager path.
    data = jax.random.key_data
    ours = seed_keys(seed, 3)
    eager = jax.random.split(jax.random.key(seed), 3)
    assert len(ours) == 3
    for a, b in zip(ours, eager, strict=True):
        np.testing.assert_array_equal(data(a), data(b))
    for i in (0, 1, 77):
        theirs = jax.random.fold_in(eager[0], i)
        np.testing.assert_array_equal(data(fold_in(ours[0], i)), data(theirs))
