"""The fused threefry bits are JAX's own, bit for bit, under every transformation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import imlejax as ij
from imlejax import _bits

SHAPES = [(), (7, 33), (3, 0, 2), (2, 3, 4)]


def _jit_bits(key, shape, dtype=jnp.uint32):
    return jax.jit(_bits.random_bits, static_argnums=(1, 2))(key, shape, dtype)


@pytest.mark.parametrize("shape", SHAPES)
def test_bits_equal_jax_random_bits(shape):
    key = jax.random.key(123)
    expected = np.asarray(jax.random.bits(key, shape))
    np.testing.assert_array_equal(np.asarray(_jit_bits(key, shape)), expected)
    np.testing.assert_array_equal(np.asarray(_bits.random_bits(key, shape)), expected)


def test_raw_key_and_uint64():
    raw = jax.random.PRNGKey(7)
    np.testing.assert_array_equal(
        np.asarray(_bits.random_bits(raw, (40,))), np.asarray(jax.random.bits(raw, (40,)))
    )
    with jax.enable_x64(True):
        key = jax.random.key(8)
        np.testing.assert_array_equal(
            np.asarray(_jit_bits(key, (5, 9), jnp.uint64)),
            np.asarray(jax.random.bits(key, (5, 9), jnp.uint64)),
        )


def _available(impl):
    try:
        jax.random.key(0, impl=impl)
    except ValueError:
        return False
    return True


@pytest.mark.parametrize(
    "impl",
    [
        impl
        if _available(impl)
        else pytest.param(impl, marks=pytest.mark.skip(reason=f"this jax has no {impl} keys"))
        for impl in ("rbg", "unsafe_rbg", "philox4x32")
    ],
)
def test_other_key_implementations_use_jax_random(impl):
    key = jax.random.key(3, impl=impl)
    np.testing.assert_array_equal(
        np.asarray(_jit_bits(key, (6, 7))), np.asarray(jax.random.bits(key, (6, 7)))
    )


def test_gumbel_equals_jax_random_gumbel():
    key = jax.random.key(4)
    ours = jax.jit(_bits.gumbel, static_argnums=(1, 2))(key, (50, 40), jnp.float32)
    ref = jax.jit(jax.random.gumbel, static_argnums=(1, 2))(key, (50, 40), jnp.float32)
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))
    with jax.enable_x64(True):
        ours = jax.jit(_bits.gumbel, static_argnums=(1, 2))(key, (300,), jnp.float64)
        ref = jax.jit(jax.random.gumbel, static_argnums=(1, 2))(key, (300,), jnp.float64)
        np.testing.assert_array_equal(np.asarray(ours), np.asarray(ref))


def test_vmap_gives_each_keys_bits():
    keys = jax.random.split(jax.random.key(5), 4)
    batched = jax.jit(jax.vmap(lambda k: _bits.random_bits(k, (3, 11))))(keys)
    for i in range(4):
        np.testing.assert_array_equal(
            np.asarray(batched[i]), np.asarray(jax.random.bits(keys[i], (3, 11)))
        )


def test_sharded_output_is_the_same():
    mesh = Mesh(np.array(jax.devices()[:4]), ("d",))
    sharding = NamedSharding(mesh, PartitionSpec("d"))
    key = jax.random.key(6)
    sharded = jax.jit(lambda k: _bits.random_bits(k, (8, 50)), out_shardings=sharding)(key)
    assert len(sharded.sharding.device_set) == 4
    np.testing.assert_array_equal(np.asarray(sharded), np.asarray(jax.random.bits(key, (8, 50))))
    noise = ij.gumbel(1.0)
    eps = jax.jit(lambda k: noise.sample(k, (8, 50)), out_shardings=sharding)(key)
    np.testing.assert_array_equal(
        np.asarray(eps), np.asarray(jax.jit(noise.sample, static_argnums=1)(key, (8, 50)))
    )


def test_hash_is_fused_not_a_loop():
    # jax.random.bits lowers its hash on CPU as a while loop over materialised arrays; the fused
    # version is straight-line elementwise code in one fusion with its consumer
    key = jax.random.key(0)
    hlo = jax.jit(lambda k: ij.gumbel().sample(k, (1000,))).lower(key).compile().as_text()
    assert " while(" not in hlo
    assert (
        " while(" in jax.jit(lambda k: jax.random.gumbel(k, (1000,))).lower(key).compile().as_text()
    )


def test_bad_dtype():
    with pytest.raises(TypeError, match="uint32 or uint64"):
        _bits.random_bits(jax.random.key(0), (3,), jnp.int32)
