"""Exact k-subset sampling by a backward walk through the forward table."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from imlejax.ksubset._common import prepare, scaled_logits
from imlejax.ksubset._dp import forward_table


def _walk(x: jax.Array, rows: jax.Array, u: jax.Array, k: int) -> jax.Array:
    """Backward walk through the forward table drawing one exact sample."""

    def body(j, item):
        xi, row, ui = item
        log_in = xi + row[jnp.maximum(j - 1, 0)]
        log_out = row[j]
        take = (j > 0) & (ui < jax.nn.sigmoid(log_in - log_out))
        return j - take.astype(j.dtype), take

    _, taken = jax.lax.scan(body, jnp.asarray(k, jnp.int32), (x, rows, u), reverse=True)
    return taken


@functools.partial(jax.jit, static_argnums=(2, 4))
def _sample_impl(key: jax.Array, theta: jax.Array, k: int, tau: jax.Array, samples: int | None):
    x = scaled_logits(theta, tau)
    rows = forward_table(x, k)
    m = x.shape[0]
    if samples is None:
        u = jax.random.uniform(key, (m,), x.dtype)
        return _walk(x, rows, u, k).astype(theta.dtype)
    keys = jax.random.split(key, samples)
    u = jax.vmap(lambda kk: jax.random.uniform(kk, (m,), x.dtype))(keys)
    return jax.vmap(lambda ui: _walk(x, rows, ui, k))(u).astype(theta.dtype)


def sample(
    key: jax.Array, theta: Any, k: int, tau: Any = 1.0, *, samples: int | None = None
) -> jax.Array:
    r"""Draws exact samples from the k-subset distribution.

    .. math::
       z \sim p(z; \theta) \propto \exp(\langle z, \theta\rangle/\tau), \qquad \sum_i z_i = k.

    The forward table ``L`` of shape ``(m+1, k+1)`` is computed and walked backwards: for
    ``i = m, ..., 1``, with ``j`` ones still to place, item ``i`` is included with probability

    .. math::
       P(z_i = 1 \mid j) = \exp\big(\theta_i/\tau + L_{i-1}[j-1] - L_i[j]\big)
       = \operatorname{sigmoid}\big(\theta_i/\tau + L_{i-1}[j-1] - L_{i-1}[j]\big),

    which is ``1`` when ``j = i`` and ``0`` when ``j = 0``, so every sample has exactly ``k``
    ones. Cost ``O(m k)`` time and memory for the table plus ``O(m)`` per sample; the only
    approximation is the resolution of the uniform draws of ``theta``'s compute dtype.

    Args:
      key: a typed key (``jax.random.key``) or a raw ``jax.random.PRNGKey``.
      theta: logits, shape ``(m,)``, floating dtype. Batch with ``jax.vmap`` over instances and
        split keys.
      k: number of ones, a static Python int with ``1 <= k <= m``.
      tau: temperature, a positive scalar (may be traced).
      samples: ``None`` for one sample of shape ``(m,)``; an int ``S`` for ``S`` samples of shape
        ``(S, m)`` sharing one forward table, where sample ``s`` equals
        ``sample(jax.random.split(key, S)[s], theta, k, tau)``.

    Returns:
      ``z`` in ``{0, 1}`` with ``theta``'s dtype, shape ``(m,)`` or ``(samples, m)``. Same key,
      same sample, under ``jax.jit`` or not.

    Raises:
      TypeError: if ``theta`` is not floating or ``k`` is not an int.
      ValueError: if ``theta`` is not 1-D, ``k`` is outside ``[1, m]``, ``tau <= 0`` or
        ``samples`` is not a positive int.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from imlejax import ksubset
      >>> z = ksubset.sample(jax.random.key(0), jnp.array([0.0, 1.0, -1.0, 2.0, 0.5]), k=2)
      >>> z.shape, float(z.sum())
      ((5,), 2.0)

    References:
      Ahmed, Zeng, Niepert & Van den Broeck, *SIMPLE: A Gradient Estimator for k-Subset
      Sampling*, ICLR 2023 (exact k-subset sampling by dynamic programming).
    """
    theta, k = prepare(theta, k, tau)
    if samples is not None and (
        isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1
    ):
        raise ValueError(f"samples must be None or a positive int; got samples={samples!r}.")
    return _sample_impl(key, theta, k, tau, None if samples is None else int(samples))
