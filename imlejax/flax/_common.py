"""Helpers shared by the NNX and Linen layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def resolve_map_fn(estimator: Callable, map_fn: Callable | None) -> Callable:
    """The MAP oracle of the layer: ``map_fn``, else the estimator's ``.map_fn``."""
    if not callable(estimator):
        raise TypeError(f"estimator must be callable as est(key, theta, *args); got {estimator!r}.")
    if map_fn is None:
        map_fn = getattr(estimator, "map_fn", None)
    if map_fn is None or not callable(map_fn):
        raise ValueError(
            f"{estimator!r} has no deterministic MAP oracle (its .map_fn is None): pass map_fn=..., "
            "e.g. map_fn=ij.top_k(k) or map_fn=ij.argmax(), for the deterministic mode."
        )
    if not callable(map_fn):
        raise TypeError(f"map_fn must be callable; got {map_fn!r}.")
    return map_fn


def adaptive_target(estimator: Any) -> Any:
    """The adaptive target of ``estimator`` (``estimator.target`` with ``update``); raises if none."""
    target = getattr(estimator, "target", None)
    if not (getattr(estimator, "stateful", False) and callable(getattr(target, "update", None))):
        raise TypeError(
            f"AIMLE state was given for {estimator!r}, which has no adaptive target: build the "
            "estimator with target=ij.aimle(...)."
        )
    return target


def map_output(
    estimator: Callable, map_fn: Callable, theta: jax.Array, args: tuple, state: Any
) -> jax.Array:
    """``map_fn(theta, *args)``, broadcast to the estimator's output shape (its sample axis)."""
    z = map_fn(theta, *args)
    kwargs = {} if state is None else {"state": state}
    out = jax.eval_shape(
        lambda k, t, *a: estimator(k, t, *a, **kwargs), jax.random.key(0), theta, *args
    )
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"the estimator must return a single array; got {jax.tree.structure(out)}.")
    if out.shape != z.shape:
        z = jnp.broadcast_to(z, out.shape)
    return z.astype(out.dtype)
