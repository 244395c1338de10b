"""Exact expectations and gradients by enumerating every k-subset (a test oracle, small ``m``)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from imlejax._validation import compute_dtype
from imlejax.ksubset._common import check_k, prepare, scaled_logits

_MAX_STATES = 1_000_000
_MAX_STATE_ENTRIES = 100_000_000


def enumerate_states(m: int, k: int, dtype: Any = None) -> jax.Array:
    r"""All ``C(m, k)`` binary vectors of length ``m`` with exactly ``k`` ones.

    .. math:: \{z \in \{0,1\}^m : \textstyle\sum_i z_i = k\}, \qquad |\cdot| = \binom{m}{k}.

    States are ordered lexicographically by their sets of one-positions (the order of
    ``itertools.combinations(range(m), k)``), i.e. in decreasing lexicographic order of the binary
    vectors: the first state is ``(1, ..., 1, 0, ..., 0)``. Meant as a test oracle for small
    ``m``: at most ``10**6`` states and ``10**8`` entries.

    Args:
      m: number of items, a positive int.
      k: number of ones, an int with ``1 <= k <= m``.
      dtype: floating dtype of the result; default JAX's default float dtype.

    Returns:
      An array of shape ``(C(m, k), m)``.

    Raises:
      TypeError: if ``m`` or ``k`` is not an int.
      ValueError: if ``m < 1``, ``k`` is outside ``[1, m]``, ``C(m, k) > 10**6`` or
        ``C(m, k) * m > 10**8``.

    Example:
      >>> from imlejax import ksubset
      >>> ksubset.enumerate_states(3, 2).tolist()
      [[1.0, 1.0, 0.0], [1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]

    References:
      Knuth, *The Art of Computer Programming*, Vol. 4A, Section 7.2.1.3 (generating all
      combinations).
    """
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)):
        raise TypeError(f"m must be an int; got {m!r}.")
    m = int(m)
    if m < 1:
        raise ValueError(f"m must be >= 1; got m={m}.")
    k = check_k(k, m)
    count = math.comb(m, k)
    if count > _MAX_STATES:
        raise ValueError(
            f"C(m, k) = C({m}, {k}) = {count} states exceeds the enumeration limit {_MAX_STATES}."
        )
    if count * m > _MAX_STATE_ENTRIES:
        raise ValueError(
            f"C(m, k) * m = {count * m} entries exceeds the enumeration limit {_MAX_STATE_ENTRIES}."
        )
    dtype = jnp.dtype(jnp.result_type(float) if dtype is None else dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"dtype must be floating; got {dtype}.")
    flat = itertools.chain.from_iterable(itertools.combinations(range(m), k))
    idx = np.fromiter(flat, dtype=np.int64, count=count * k).reshape(count, k)
    states = np.zeros((count, m), dtype=np.float32)
    np.put_along_axis(states, idx, 1.0, axis=1)
    return jnp.asarray(states, dtype=dtype)


def expected_loss(
    loss_fn: Callable[[jax.Array], jax.Array], theta: Any, k: int, tau: Any = 1.0
) -> jax.Array:
    r"""Exact expected loss under the k-subset distribution, by enumeration.

    .. math::
       \mathbb{E}_{z \sim p(\cdot;\theta)}[f(z)]
       = \sum_{s} \operatorname{softmax}\big(\langle s, \theta\rangle/\tau\big)_s\, f(s),

    the sum running over all ``C(m, k)`` states ``s`` of :func:`enumerate_states`. Differentiable
    in ``theta`` (through the softmax) and in ``tau``. Cost ``C(m, k)`` evaluations of ``loss_fn``;
    limited to ``C(m, k) <= 10**6`` (in practice small ``m``, e.g. ``m <= 20``).

    Args:
      loss_fn: maps a state of shape ``(m,)`` (``theta``'s dtype) to a scalar; must be
        ``jax.vmap``-able.
      theta: logits, shape ``(m,)``, floating dtype.
      k: number of ones, a static Python int with ``1 <= k <= m``.
      tau: temperature, a positive scalar.

    Returns:
      A scalar in ``theta``'s dtype.

    Raises:
      TypeError: if ``theta`` is not floating or ``k`` is not an int.
      ValueError: as :func:`enumerate_states`, or if ``loss_fn`` does not return a scalar.

    Example:
      >>> import jax.numpy as jnp
      >>> from imlejax import ksubset
      >>> w = jnp.array([1.0, 2.0, 3.0])
      >>> e = ksubset.expected_loss(lambda z: jnp.dot(z, w), jnp.zeros(3), k=1)
      >>> round(float(e), 4)
      2.0

    References:
      Niepert, Minervini & Franceschi, *Implicit MLE*, NeurIPS 2021 (exact gradients of
      expected losses as the reference for estimators).
    """
    theta, k = prepare(theta, k, tau)
    cdt = compute_dtype(theta.dtype)
    states = enumerate_states(theta.shape[0], k, dtype=cdt)
    weights = jax.nn.softmax(states @ scaled_logits(theta, tau))
    losses = jax.vmap(loss_fn)(states.astype(theta.dtype))
    if losses.shape != weights.shape:
        raise ValueError(
            f"loss_fn must return a scalar per state; got output of shape {losses.shape[1:]}."
        )
    return jnp.dot(weights, losses.astype(cdt)).astype(theta.dtype)


def exact_gradient(
    loss_fn: Callable[[jax.Array], jax.Array], theta: Any, k: int, tau: Any = 1.0
) -> jax.Array:
    r"""Exact gradient of the expected loss with respect to ``theta``, by enumeration.

    .. math::
       \nabla_\theta\, \mathbb{E}_{p(z;\theta)}[f(z)]
       = \frac{1}{\tau}\,\mathrm{Cov}_{p}\big(z, f(z)\big)
       = \frac{1}{\tau} \sum_s p(s;\theta)\, f(s)\, (s - \mu),

    obtained by autodiff of :func:`expected_loss` (through the softmax over all states). Same
    limits as :func:`expected_loss`.

    Args:
      loss_fn: maps a state of shape ``(m,)`` to a scalar; must be ``jax.vmap``-able.
      theta: logits, shape ``(m,)``, floating dtype.
      k: number of ones, a static Python int with ``1 <= k <= m``.
      tau: temperature, a positive scalar.

    Returns:
      The gradient, shape and dtype of ``theta``.

    Raises:
      TypeError: if ``theta`` is not floating or ``k`` is not an int.
      ValueError: as :func:`expected_loss`.

    Example:
      >>> import jax.numpy as jnp
      >>> from imlejax import ksubset
      >>> g = ksubset.exact_gradient(lambda z: z[0], jnp.zeros(2), k=1)
      >>> [round(float(v), 4) for v in g]
      [0.25, -0.25]

    References:
      Williams, *Simple statistical gradient-following algorithms for connectionist
      reinforcement learning*, Machine Learning 1992 (score-function identity); Niepert,
      Minervini & Franceschi, *Implicit MLE*, NeurIPS 2021.
    """
    theta, k = prepare(theta, k, tau)
    return jax.grad(expected_loss, argnums=1)(loss_fn, theta, k, tau)
