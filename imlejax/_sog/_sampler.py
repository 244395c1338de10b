r"""Device sampler of Sum-of-Gamma noise by the tabulated inverse CDF.

A draw of ``X = sum_{j=1..s} Gamma(1/k, scale=k/j)`` is one open uniform ``u`` (a cell centre,
never 0 or 1) mapped through the table of :mod:`imlejax._sog._table`,
``x = exp(shift) * exp(cubic(logit(u)))``. The table enters the computation as a constant, so the
sampler runs under ``jax.jit`` and ``jax.vmap``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from imlejax._bits import random_bits
from imlejax._sog._cdf import _check_params
from imlejax._sog._table import _cubic, _table_as

__all__ = ["sample_standard"]


def _uniform_open(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
    """Uniforms at the centres of ``2^p`` equal cells of ``(0, 1)`` (``p = 23`` or ``52``).

    Unlike ``jax.random.uniform`` these are never 0 and are symmetric under ``u -> 1 - u``; both
    ``u`` and ``1 - u`` are exact, so ``|logit(u)| <= 16.7`` (float32) or ``36.8`` (float64).
    """
    if dtype == jnp.float64:
        bits = random_bits(key, shape, jnp.uint64)
        one = jax.lax.bitcast_convert_type(
            (bits >> np.uint64(12)) | np.uint64(0x3FF0000000000000), jnp.float64
        )
        return one - np.float64(1.0 - 2.0**-53)
    bits = random_bits(key, shape, jnp.uint32)
    one = jax.lax.bitcast_convert_type((bits >> np.uint32(9)) | np.uint32(0x3F800000), jnp.float32)
    return one - np.float32(1.0 - 2.0**-24)


def sample_standard(
    key: jax.Array, shape: tuple[int, ...], k: int, terms: int, dtype: Any = jnp.float32
) -> jax.Array:
    """Draws ``X = sum_{j=1..terms} Gamma(1/k, scale=k/j)`` by the tabulated inverse CDF.

    Computed in float64 when ``dtype`` is float64 (and 64-bit types are enabled), in float32
    otherwise; the result has ``dtype``. The table is built on the host on first use for each
    ``(k, terms)`` and enters the computation as a constant, so this is jit/vmap-able. Called
    outside a trace, the draw is one compiled program (inlined into an enclosing trace).
    """
    k, terms = _check_params(k, terms)
    return _sample_standard(key, tuple(shape), k, terms, jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4), inline=True)
def _sample_standard(
    key: jax.Array, shape: tuple[int, ...], k: int, terms: int, out_dtype: jnp.dtype
) -> jax.Array:
    x64 = jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.dtype(jnp.float64)
    if out_dtype == jnp.dtype(jnp.float64) and x64:
        cdtype = jnp.dtype(jnp.float64)
    else:
        cdtype = jnp.dtype(jnp.float32)
    coef, scale = _table_as(k, terms, cdtype.name)
    u = _uniform_open(key, tuple(shape), cdtype)
    x = jnp.exp(_cubic(jnp, u, tuple(jnp.asarray(c) for c in coef))) * scale
    return x.astype(out_dtype)
