"""Argument checks, names and small array helpers shared by every constructor and estimator.

Numeric parameters are checked when the object is made. A traced value (a temperature that is
itself a traced argument inside ``jit``) is accepted without a value check; everything else must be
a finite real scalar in the stated range: ``None``, strings, booleans, NaN and infinities raise.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

_HALF_DTYPES = (jnp.dtype(jnp.float16), jnp.dtype(jnp.bfloat16))


# ----------------------------------------------------------------------------------------------
# Scalars
# ----------------------------------------------------------------------------------------------


def _is_tracer(value: Any) -> bool:
    return isinstance(value, jax.core.Tracer)


def _real_scalar(name: str, value: Any, allowed: str) -> float | None:
    """``float(value)`` for a concrete real scalar, ``None`` for a tracer; raises otherwise."""
    if _is_tracer(value):
        if jnp.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar ({allowed}); got shape {jnp.shape(value)}.")
        return None
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a real number ({allowed}); got the boolean {value!r}.")
    if isinstance(value, numbers.Real):
        out = float(value)
    elif isinstance(value, (np.ndarray, np.generic, jax.Array)):
        arr = np.asarray(value)
        if arr.ndim != 0:
            raise ValueError(f"{name} must be a scalar ({allowed}); got shape {arr.shape}.")
        if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
            raise TypeError(f"{name} must be a real number ({allowed}); got dtype {arr.dtype}.")
        if np.issubdtype(arr.dtype, np.complexfloating):
            raise TypeError(f"{name} must be a real number ({allowed}); got {value!r}.")
        out = float(arr)
    else:
        raise TypeError(
            f"{name} must be a real number ({allowed}); got {value!r} of type "
            f"{type(value).__name__}."
        )
    if not np.isfinite(out):
        raise ValueError(f"{name} must be finite ({allowed}); got {value!r}.")
    return out


def check_positive(name: str, value: Any) -> Any:
    """Returns ``value`` if it is a finite real scalar ``> 0`` (or a traced scalar)."""
    v = _real_scalar(name, value, "a finite number > 0")
    if v is not None and v <= 0:
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}.")
    return value


def check_nonnegative(name: str, value: Any) -> Any:
    """Returns ``value`` if it is a finite real scalar ``>= 0`` (or a traced scalar)."""
    v = _real_scalar(name, value, "a finite number >= 0")
    if v is not None and v < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}.")
    return value


def check_unit_interval(name: str, value: Any) -> Any:
    """Returns ``value`` if it is a real scalar in ``[0, 1)`` (or a traced scalar)."""
    v = _real_scalar(name, value, "a number in [0, 1)")
    if v is not None and not 0 <= v < 1:
        raise ValueError(f"{name} must lie in [0, 1); got {value!r}.")
    return value


def check_real(name: str, value: Any) -> Any:
    """Returns ``value`` if it is a finite real scalar (or a traced scalar)."""
    _real_scalar(name, value, "a finite number")
    return value


def check_int(name: str, value: Any, minimum: int | None = None) -> int:
    """Returns ``int(value)`` for a Python/NumPy integer ``>= minimum``; raises otherwise."""
    allowed = "an integer" if minimum is None else f"an integer >= {minimum}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be {allowed}; got {value!r} of type {type(value).__name__}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be {allowed}; got {value!r}.")
    return int(value)


def check_optional_int(name: str, value: Any, minimum: int) -> int | None:
    """``None`` or :func:`check_int`."""
    return None if value is None else check_int(name, value, minimum)


def check_bool(name: str, value: Any) -> bool:
    """Returns ``value`` if it is a Python or NumPy boolean; raises ``TypeError`` otherwise."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(
            f"{name} must be True or False; got {value!r} of type {type(value).__name__}."
        )
    return bool(value)


def check_callable(name: str, value: Any) -> Callable:
    if not callable(value):
        raise TypeError(f"{name} must be callable; got {value!r}.")
    return value


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}.")
    return value


# ----------------------------------------------------------------------------------------------
# Arrays and keys
# ----------------------------------------------------------------------------------------------


def as_key(key: Any) -> jax.Array:
    """Accepts a typed key (``jax.random.key``) or a raw ``jax.random.PRNGKey``."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(
                f"key must be a single PRNG key; got shape {key.shape}. Split keys and use "
                "jax.vmap for batches."
            )
        return key
    if key.dtype == jnp.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(key)
    raise TypeError(
        "key must be a typed key from jax.random.key or a raw jax.random.PRNGKey "
        f"(uint32, shape (2,)); got dtype {key.dtype} and shape {key.shape}."
    )


def check_theta(theta: Any, name: str = "theta", *, min_ndim: int = 0) -> jax.Array:
    """``theta`` as a floating array with at least ``min_ndim`` dimensions."""
    theta = jnp.asarray(theta)
    if not jnp.issubdtype(theta.dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating dtype; got {theta.dtype}.")
    if theta.ndim < min_ndim:
        raise ValueError(
            f"{name} must have at least {min_ndim} dimension(s); got shape {theta.shape}."
        )
    return theta


def normalize_axis(axis: int, ndim: int, who: str) -> int:
    """``axis`` in ``[0, ndim)``; raises with the caller's name for an out-of-bounds axis."""
    if ndim == 0:
        raise ValueError(f"{who}: theta must have at least one dimension; got a scalar.")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{who}: axis {axis} is out of bounds for theta with {ndim} dimension(s).")
    return axis % ndim


def check_last_axis(theta: jax.Array, k: int, who: str) -> int:
    """The size ``m`` of the last axis of ``theta``; raises unless ``1 <= k <= m``."""
    m = theta.shape[-1] if theta.ndim else 0
    if theta.ndim == 0:
        raise ValueError(f"{who}: theta must have at least one dimension; got a scalar.")
    if k > m:
        raise ValueError(
            f"{who}: k={k} exceeds the size {m} of the last axis of theta (shape {theta.shape})."
        )
    return m


def compute_dtype(dtype: Any) -> jnp.dtype:
    """Half-precision work is done in float32 and rounded once at the end."""
    dtype = jnp.dtype(dtype)
    return jnp.dtype(jnp.float32) if dtype in _HALF_DTYPES else dtype


def lead(x: jax.Array, ndim: int) -> jax.Array:
    """``x`` with leading unit axes up to ``ndim`` dimensions (explicit rank promotion)."""
    return jnp.reshape(x, (1,) * (ndim - x.ndim) + x.shape)


def zero_cotangent(x: Any) -> Any:
    """A zero cotangent for a non-differentiable argument (``None`` for integer leaves)."""
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return None


def zero_cotangents(tree: Any) -> Any:
    return jax.tree.map(zero_cotangent, tree)


# ----------------------------------------------------------------------------------------------
# Names
# ----------------------------------------------------------------------------------------------


def name_of(fn: Any) -> str:
    """A short human-readable name of a function or callable object."""
    name = getattr(fn, "__name__", None)
    if isinstance(name, str) and name and name != "<lambda>":
        return name
    return repr(fn)
