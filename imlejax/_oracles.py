"""MAP oracles that run inside ``jax.jit`` and ``jax.vmap``.

An oracle acts on one instance: ``map_fn(theta, *args) -> z`` with ``z.shape == theta.shape``,
``z.dtype == theta.dtype`` and ``z`` a binary array maximising ``<z, theta>`` over the oracle's
feasible set.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from imlejax._validation import normalize_axis

__all__ = ["top_k", "argmax"]


def _check_int(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer; got {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def _as_float_array(theta: Any, who: str) -> jax.Array:
    theta = jnp.asarray(theta)
    if not jnp.issubdtype(theta.dtype, jnp.floating):
        raise TypeError(f"{who}: theta must have a floating dtype; got {theta.dtype}.")
    return theta


# Up to this k the top-k indicator is written as k comparisons per entry instead of a scatter.
_COMPARE_MAX_K = 32


def _fmt_axis(axis: int) -> str:
    return "" if axis == -1 else f"axis={axis}"


@dataclasses.dataclass(frozen=True)
class _TopK:
    """Exactly-``k`` MAP oracle along one axis; built by :func:`top_k`."""

    k: int
    axis: int = -1

    @property
    def __name__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        extra = _fmt_axis(self.axis)
        return f"top_k(k={self.k}{', ' + extra if extra else ''})"

    def __call__(self, theta: Any) -> jax.Array:
        theta = _as_float_array(theta, repr(self))
        axis = normalize_axis(self.axis, theta.ndim, repr(self))
        m = theta.shape[axis]
        if self.k > m:
            raise ValueError(
                f"{self!r}: k={self.k} exceeds the size {m} of axis {self.axis} of theta "
                f"(shape {theta.shape}); k must be in the range 1..{m}."
            )
        return _top_k_indicator(theta, self.k, axis)


@dataclasses.dataclass(frozen=True)
class _Argmax:
    """One-hot MAP oracle along one axis; built by :func:`argmax`."""

    axis: int = -1

    @property
    def __name__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        return f"argmax({_fmt_axis(self.axis)})"

    def __call__(self, theta: Any) -> jax.Array:
        theta = _as_float_array(theta, repr(self))
        axis = normalize_axis(self.axis, theta.ndim, repr(self))
        if theta.shape[axis] == 0:
            raise ValueError(f"{self!r}: axis {self.axis} of theta (shape {theta.shape}) is empty.")
        return _argmax_indicator(theta, axis)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _top_k_indicator(theta: jax.Array, k: int, axis: int) -> jax.Array:
    # Sub-32-bit floats are widened to float32, exactly and order-preservingly, because XLA's
    # fast TopK kernel is float32-only (half-precision inputs otherwise fall back to a sort).
    scores = theta.astype(jnp.float32) if jnp.finfo(theta.dtype).bits < 32 else theta
    scores = jnp.moveaxis(scores, axis, -1)
    idx = _top_k_indices(scores, k)
    if k <= _COMPARE_MAX_K:
        # One elementwise pass over the output, which XLA may fuse with its consumers; a scatter
        # of ones into zeros costs a zero fill, often a copy of it, and the scatter itself.
        position = jax.lax.broadcasted_iota(jnp.int32, scores.shape, scores.ndim - 1)
        z = jnp.any(position[..., None] == idx[..., None, :], axis=-1).astype(theta.dtype)
    else:
        zeros = jnp.zeros(scores.shape, theta.dtype)
        z = jnp.put_along_axis(zeros, idx, jnp.ones((), theta.dtype), axis=-1, inplace=False)
    return jnp.moveaxis(z, -1, axis)


@functools.partial(jax.jit, static_argnums=1)
def _argmax_indicator(theta: jax.Array, axis: int) -> jax.Array:
    scores = jnp.moveaxis(theta, axis, -1)
    if theta.dtype == jnp.float64:
        idx = jnp.argmax(scores, axis=-1)
    else:
        # On CPU, XLA's TopK kernel finds the argmax about twice as fast as the reduction, and
        # XLA does not fuse the computation of the scores (e.g. the noise) into it; XLA's argmax
        # reduction is a serial loop into which that computation would otherwise be fused.
        idx = jax.lax.platform_dependent(
            scores, cpu=_argmax_by_top_k, default=lambda s: jnp.argmax(s, axis=-1)
        )
    position = jax.lax.broadcasted_iota(idx.dtype, scores.shape, scores.ndim - 1)
    return jnp.moveaxis((position == idx[..., None]).astype(theta.dtype), -1, axis)


def _argmax_by_top_k(scores: jax.Array) -> jax.Array:
    """``jnp.argmax(scores, axis=-1)`` through ``lax.top_k``: NaNs are made ``+NaN`` and zeros
    ``+0`` so that top_k's total order selects what ``jnp.argmax`` selects (the first NaN, and
    the first of equal scores)."""
    scores = scores.astype(jnp.float32)  # exact for half precision, float32-only TopK kernel
    scores = jnp.where(jnp.isnan(scores), jnp.float32(np.nan), scores)
    scores = jnp.where(scores == 0, jnp.float32(0), scores)
    return _top_k_indices(scores, 1)[..., 0]


def _top_k_indices(scores: jax.Array, k: int) -> jax.Array:
    """``jax.lax.top_k(scores, k)[1]``, with every batch axis, ``vmap``'s included, folded into
    the rows of one 2-D ``TopK``.

    XLA's CPU ``TopK`` kernel takes 2-D operands; for a batched ``top_k`` the compiler inserts the
    reshape itself, and then does not fuse an expensive producer of the scores (a noise draw,
    with its logarithms) into the fusion that forms them (``theta + eps``): the noise is written
    to memory and read back. Folding the axes here, where ``vmap`` has added them, lets one fusion
    draw the noise, perturb ``theta`` and write the kernel's input. The indices carry no gradient.
    """
    return _folded_top_k(k)(jax.lax.stop_gradient(scores))


@functools.cache
def _folded_top_k(k: int) -> Callable[[jax.Array], jax.Array]:
    @jax.custom_batching.custom_vmap
    def indices(scores: jax.Array) -> jax.Array:
        rows = scores.reshape(-1, scores.shape[-1])
        return jax.lax.top_k(rows, k)[1].reshape(*scores.shape[:-1], k)

    @indices.def_vmap
    def _batched(axis_size, in_batched, scores):
        # the batch axis is the leading one; it is folded in by the call at the next level
        return indices(scores), True

    return indices


def top_k(k: int, *, axis: int = -1) -> Callable[[jax.Array], jax.Array]:
    """Returns the exactly-``k`` MAP oracle: the indicator of the ``k`` largest scores.

    The oracle ``z = top_k(k)(theta)`` solves ``max <z, theta>`` over binary ``z`` with exactly
    ``k`` ones along ``axis``. Every other axis indexes independent groups, so ``theta`` of shape
    ``(20, 20)`` gives ``k`` ones in each of the 20 rows. ``z`` has the shape and dtype of
    ``theta``. The oracle is pure JAX and works under ``jax.jit``, ``jax.vmap`` and sharding.

    Ties are broken deterministically, towards the lowest index: among equal scores the entries
    with the smaller index along ``axis`` are selected first. Scores are ordered as by
    :func:`jax.lax.top_k`, in the total order of floats: ``-NaN < -inf < ... < -0.0 < +0.0 < ...
    < +inf < +NaN``. Half-precision scores are compared in float32, which is exact.

    The returned oracle is an immutable object, hashable and equal to any oracle built with the
    same arguments, so it can be closed over in jitted code or passed as a static argument. Its
    ``repr`` and ``__name__`` read ``top_k(k=...)``.

    Args:
      k: the number of ones, an integer ``>= 1``. Checked against the size ``m`` of ``axis`` when
        the oracle is called (``1 <= k <= m``).
      axis: the axis along which exactly ``k`` entries are selected.

    Returns:
      An oracle ``oracle(theta) -> z`` for floating ``theta`` with at least one dimension.

    Raises:
      ValueError: at construction if ``k`` is not an integer ``>= 1`` or ``axis`` is not an
        integer; at call (trace) time if ``k`` exceeds the size of ``axis`` or ``axis`` is out of
        bounds.
      TypeError: at call time if ``theta`` does not have a floating dtype.

    Example:
      >>> import jax.numpy as jnp, imlejax as ij
      >>> oracle = ij.top_k(2)
      >>> oracle
      top_k(k=2)
      >>> oracle(jnp.array([0.5, 2.0, -1.0, 2.0]))
      Array([0., 1., 0., 1.], dtype=float32)
      >>> oracle(jnp.array([[1.0, 1.0, 1.0], [3.0, 2.0, 1.0]]))
      Array([[1., 1., 0.],
             [1., 1., 0.]], dtype=float32)

    References:
      Niepert, Minervini & Franceschi, *Implicit MLE: Backpropagating Through Discrete Exponential
      Family Distributions*, NeurIPS 2021, Section 5 (k-subset selection).
    """
    k = _check_int("k", k, minimum=1)
    axis = _check_int("axis", axis)
    return _TopK(k=k, axis=axis)


def argmax(*, axis: int = -1) -> Callable[[jax.Array], jax.Array]:
    """Returns the one-hot MAP oracle: the indicator of the largest score along ``axis``.

    The oracle ``z = argmax()(theta)`` solves ``max <z, theta>`` over one-hot ``z`` along
    ``axis`` (other axes index independent groups). ``z`` has the shape and dtype of ``theta``.
    Ties are broken towards the lowest index, as by :func:`jax.numpy.argmax`; a NaN score is
    selected if present (the first one). Pure JAX: works under ``jax.jit`` and ``jax.vmap``.

    The returned oracle is immutable, hashable and equal to any oracle built with the same
    ``axis``; its ``repr`` and ``__name__`` read ``argmax()``.

    Args:
      axis: the axis along which one entry is selected.

    Returns:
      An oracle ``oracle(theta) -> z`` for floating ``theta`` with at least one dimension.

    Raises:
      ValueError: at construction if ``axis`` is not an integer; at call time if ``axis`` is out
        of bounds or empty.
      TypeError: at call time if ``theta`` does not have a floating dtype.

    Example:
      >>> import jax.numpy as jnp, imlejax as ij
      >>> ij.argmax()(jnp.array([0.5, 2.0, -1.0, 2.0]))
      Array([0., 1., 0., 0.], dtype=float32)
      >>> ij.argmax(axis=0)(jnp.array([[1.0, 4.0], [3.0, 2.0]]))
      Array([[0., 1.],
             [1., 0.]], dtype=float32)

    References:
      Gumbel, *Statistical theory of extreme values*, 1954 (the Gumbel-max trick turns this oracle
      into an exact sampler of ``softmax(theta / tau)``).
    """
    axis = _check_int("axis", axis)
    return _Argmax(axis=axis)
