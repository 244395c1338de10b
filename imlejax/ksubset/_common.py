"""Argument checks, compute dtypes and log-space constants shared by the k-subset modules."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from imlejax._validation import compute_dtype


def check_k(k: Any, m: int) -> int:
    """Returns ``k`` as an int; raises unless it is a static int with ``1 <= k <= m``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k must be a static Python int; got {k!r} of type {type(k).__name__}.")
    k = int(k)
    if not 1 <= k <= m:
        raise ValueError(f"k must satisfy 1 <= k <= m = {m}; got k={k}.")
    return k


def check_tau(tau: Any) -> None:
    """Raises unless a concrete ``tau`` is a finite scalar ``> 0`` (traced values pass)."""
    if isinstance(tau, jax.core.Tracer):
        return
    arr = np.asarray(tau)
    if arr.ndim != 0 or not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr) or arr <= 0:
        raise ValueError(f"tau must be a finite scalar > 0; got tau={tau!r}.")


def check_theta(theta: Any) -> jax.Array:
    """Returns ``theta`` as an array; raises unless it is floating with shape ``(m,)``."""
    theta = jnp.asarray(theta)
    if not jnp.issubdtype(theta.dtype, jnp.floating):
        raise TypeError(
            f"theta must be a floating-point array (float16, bfloat16, float32 or float64); "
            f"got dtype {theta.dtype}."
        )
    if theta.ndim != 1:
        raise ValueError(
            f"theta must have shape (m,) (one instance; use jax.vmap for a batch); "
            f"got shape {theta.shape}."
        )
    return theta


def prepare(theta: Any, k: Any, tau: Any) -> tuple[jax.Array, int]:
    """Checks the arguments every public function takes; returns ``theta`` and ``k``."""
    theta = check_theta(theta)
    k = check_k(k, theta.shape[0])
    check_tau(tau)
    return theta, k


def log_zero(dtype: Any) -> float:
    """The finite stand-in for ``log 0`` in ``dtype``."""
    return -float(jnp.finfo(dtype).max) / 16.0


def scaled_logits(theta: jax.Array, tau: Any) -> jax.Array:
    """``x = theta / tau`` in the compute dtype."""
    cdt = compute_dtype(theta.dtype)
    return theta.astype(cdt) / jnp.asarray(tau, cdt)
