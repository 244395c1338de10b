r"""Random bits for the noise samplers: JAX's threefry stream, hashed in one elementwise pass.

``jax.random.bits`` with a threefry key (JAX's default) computes, for every flat index ``i`` of
the output, the Threefry-2x32 hash (20 rounds) of the counter ``(hi(i), lo(i))`` under the key and
returns the XOR of its two output words (``jax_threefry_partitionable=True``, the default), or
both words as one 64-bit value. On CPU, JAX lowers the hash as a rolled loop of five iterations
over materialised arrays, to keep compile times short; drawing the noise of a training step then
streams every intermediate through memory and dominates the step. :func:`random_bits` computes
the same hash unrolled, as elementwise operations on an iota, which XLA fuses with the consumer
(the uniform, the Gumbel or Sum-of-Gamma transform, the perturbation ``theta + eps``), so the bits
never reach memory.

The result is bit for bit that of ``jax.random.bits``: a key means what it meant. It is a pure
function of the key and the shape, elementwise in the counter, so it gives the same bits eagerly,
under ``jax.jit``, under ``jax.vmap`` (batched keys broadcast against the counters) and sharded
(XLA partitions the iota). Keys of other implementations (``rbg``, ``philox4x32``, ...), the
legacy non-partitionable threefry mode and outputs of ``2^32`` or more elements are passed to
``jax.random.bits`` itself.

Threefry-2x32 (Salmon et al., *Parallel random numbers: as easy as 1, 2, 3*, SC 2011), with
rotations ``R = (13, 15, 26, 6), (17, 29, 16, 24)`` and key schedule ``k_2 = k_0 ^ k_1 ^
0x1BD11BDA``: ``x = (c_0 + k_0, c_1 + k_1)``; five times four rounds ``x_0 += x_1,
x_1 = rotl(x_1, r) ^ x_0``, each group followed by the injection
``x_0 += k_{(j+1) mod 3}, x_1 += k_{(j+2) mod 3} + j + 1`` for ``j = 0..4``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["random_bits", "gumbel"]

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotl(x: jax.Array, r: int) -> jax.Array:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def threefry2x32(
    k0: jax.Array, k1: jax.Array, c0: jax.Array, c1: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The Threefry-2x32 hash (20 rounds) of counters ``(c0, c1)`` under key ``(k0, k1)``,
    unrolled; all ``uint32``, broadcast together."""
    ks = (k0, k1, k0 ^ k1 ^ _PARITY)
    x0, x1 = c0 + ks[0], c1 + ks[1]
    for j in range(5):
        for r in _ROTATIONS[j % 2]:
            x0 = x0 + x1
            x1 = _rotl(x1, r) ^ x0
        x0 = x0 + ks[(j + 1) % 3]
        x1 = x1 + ks[(j + 2) % 3] + np.uint32(j + 1)
    return x0, x1


def _flag(name: str, default: Any = None) -> Any:
    """The current value of a JAX configuration option (``default`` where this jax lacks it)."""
    return getattr(jax.config, name, default)


def _threefry_key_data(key: Any) -> jax.Array | None:
    """The ``uint32[2]`` data of a threefry key (typed or raw), or None for another kind."""
    if not _flag("jax_threefry_partitionable"):
        return None
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if str(jax.random.key_impl(key)) != "threefry2x32":
            return None
        return jax.random.key_data(key)
    key = jnp.asarray(key)
    if key.dtype == jnp.uint32 and key.shape == (2,):
        if str(_flag("jax_default_prng_impl")) != "threefry2x32":
            return None
        return key
    return None


def random_bits(key: Any, shape: tuple[int, ...], dtype: Any = jnp.uint32) -> jax.Array:
    """``jax.random.bits(key, shape, dtype)``, bit for bit, for ``uint32`` and ``uint64``.

    Example:
      >>> import jax, numpy as np
      >>> from imlejax._bits import random_bits
      >>> key = jax.random.key(0)
      >>> bool(np.array_equal(random_bits(key, (3, 5)), jax.random.bits(key, (3, 5))))
      True
    """
    shape = tuple(int(d) for d in shape)
    dtype = jnp.dtype(dtype)
    if dtype not in (jnp.dtype(jnp.uint32), jnp.dtype(jnp.uint64)):
        raise TypeError(f"dtype must be uint32 or uint64; got {dtype}.")
    data = _threefry_key_data(key)
    size = math.prod(shape)
    if data is None or size >= 2**32:
        return jax.random.bits(key, shape, dtype)
    return _fused_bits(data, shape, dtype)


@functools.partial(jax.jit, static_argnums=(1, 2), inline=True)
def _fused_bits(data: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
    # counter of element i: (hi(i), lo(i)) = (0, i) below 2^32 elements
    lo = jax.lax.iota(jnp.uint32, math.prod(shape)).reshape(shape)
    t0, t1 = threefry2x32(data[0], data[1], jnp.zeros_like(lo), lo)
    if dtype == jnp.dtype(jnp.uint32):
        return t0 ^ t1
    return (t0.astype(jnp.uint64) << np.uint64(32)) | t1.astype(jnp.uint64)


def gumbel(key: Any, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    r"""``jax.random.gumbel(key, shape, dtype)``, bit for bit, from :func:`random_bits`.

    .. math:: G = -\log(-\log U), \quad U = \max(t, \; V (1 - t) + t),

    with ``t`` the smallest normal float and ``V`` uniform on the grid ``j 2^{-p}``,
    ``j = 0..2^p - 1`` (``p`` = 23 or 52 mantissa bits), taken from the top bits. With
    ``jax_high_dynamic_range_gumbel`` set, or for half precision, ``jax.random.gumbel`` is called.

    Example:
      >>> import jax, numpy as np
      >>> from imlejax._bits import gumbel
      >>> key = jax.random.key(1)
      >>> bool(np.array_equal(jax.jit(gumbel, static_argnums=1)(key, (4,)),
      ...                     jax.jit(jax.random.gumbel, static_argnums=1)(key, (4,))))
      True
    """
    dtype = jnp.dtype(dtype)
    if _flag("jax_high_dynamic_range_gumbel", False) or dtype not in (
        jnp.dtype(jnp.float32),
        jnp.dtype(jnp.float64),
    ):
        return jax.random.gumbel(key, shape, dtype)
    return _gumbel(key, tuple(int(d) for d in shape), dtype)


@functools.partial(jax.jit, static_argnums=(1, 2), inline=True)
def _gumbel(key: Any, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
    uint = jnp.uint32 if dtype == jnp.dtype(jnp.float32) else jnp.uint64
    finfo = jnp.finfo(dtype)
    bits = random_bits(key, shape, uint)
    # as jax.random.uniform(key, shape, dtype, minval=tiny, maxval=1): the mantissa bits with the
    # exponent of 1.0 give [1, 2); minus one, scaled and shifted
    one = np.array(1.0, dtype).view(uint)
    shift = np.array(finfo.bits - finfo.nmant, uint)
    floats = jax.lax.bitcast_convert_type((bits >> shift) | one, dtype) - jnp.array(1.0, dtype)
    tiny = jnp.array(finfo.tiny, dtype)
    u = jax.lax.max(tiny, floats * (jnp.array(1.0, dtype) - tiny) + tiny)
    return -jnp.log(-jnp.log(u))
