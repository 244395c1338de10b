"""Argument checks shared by the constructors (skipped for traced or placeholder leaves)."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

_NUMERIC = (int, float, np.ndarray, np.generic, jax.Array)


def _concrete(value: Any) -> np.ndarray | None:
    if isinstance(value, bool) or not isinstance(value, _NUMERIC):
        return None
    if isinstance(value, jax.core.Tracer):
        return None
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.number):
        return None
    return arr


def check_positive(name: str, value: Any) -> None:
    """Raises ``ValueError`` unless ``value`` is a finite scalar > 0."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a finite positive scalar; got {value!r}.")
    arr = _concrete(value)
    if arr is None:
        if isinstance(value, (str, list, tuple, dict)):
            raise ValueError(f"{name} must be a finite positive scalar; got {value!r}.")
        return
    if arr.ndim != 0 or not np.isfinite(arr) or arr <= 0:
        raise ValueError(f"{name} must be a finite positive scalar (> 0); got {value!r}.")


def check_nonnegative(name: str, value: Any) -> None:
    """Raises ``ValueError`` unless ``value`` is a finite scalar >= 0."""
    arr = _concrete(value)
    if arr is None:
        if isinstance(value, (str, list, tuple, dict, bool)):
            raise ValueError(f"{name} must be a finite non-negative scalar; got {value!r}.")
        return
    if arr.ndim != 0 or not np.isfinite(arr) or arr < 0:
        raise ValueError(f"{name} must be a finite non-negative scalar (>= 0); got {value!r}.")


def check_unit_interval(name: str, value: Any) -> None:
    """Raises ``ValueError`` unless ``value`` is a scalar in [0, 1)."""
    arr = _concrete(value)
    if arr is None:
        return
    if arr.ndim != 0 or not 0 <= arr < 1:
        raise ValueError(f"{name} must lie in [0, 1); got {value!r}.")
