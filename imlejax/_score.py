"""The score-function estimator (REINFORCE) with exact k-subset samples and marginals."""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from imlejax import ksubset
from imlejax._core import Estimator
from imlejax._validation import (
    as_key,
    check_callable,
    check_int,
    check_last_axis,
    check_positive,
    check_theta,
    name_of,
)

__all__ = ["grouped_log_partition", "grouped_marginals", "grouped_sample", "sfe"]


def _groups(theta: jax.Array) -> jax.Array:
    return theta.reshape(-1, theta.shape[-1])


def grouped_sample(key: jax.Array, theta: jax.Array, k: int, tau: Any, num: int | None):
    """Exact k-subset samples of every group along the last axis of ``theta``.

    Shape ``theta.shape`` (``num=None``) or ``(num, *theta.shape)``. For 1-D ``theta`` this is
    :func:`imlejax.ksubset.sample`; groups get the keys ``jax.random.split(key, G)``.
    """
    if theta.ndim == 1:
        return ksubset.sample(key, theta, k, tau, samples=num)
    flat = _groups(theta)
    keys = jax.random.split(key, flat.shape[0])
    z = jax.vmap(lambda kk, t: ksubset.sample(kk, t, k, tau, samples=num))(keys, flat)
    if num is None:
        return z.reshape(theta.shape)
    return jnp.moveaxis(z, 1, 0).reshape((num, *theta.shape))


def grouped_marginals(theta: jax.Array, k: int, tau: Any) -> jax.Array:
    """Exact marginals of every group along the last axis of ``theta``."""
    if theta.ndim == 1:
        return ksubset.marginals(theta, k, tau)
    return jax.vmap(lambda t: ksubset.marginals(t, k, tau))(_groups(theta)).reshape(theta.shape)


def grouped_log_partition(theta: jax.Array, k: int, tau: Any) -> jax.Array:
    """The sum over the groups of the log partition functions."""
    if theta.ndim == 1:
        return ksubset.log_partition(theta, k, tau)
    return jnp.sum(jax.vmap(lambda t: ksubset.log_partition(t, k, tau))(_groups(theta)))


def _check_baseline(baseline: Any, num: int) -> Any:
    if isinstance(baseline, str):
        if baseline != "mean":
            raise ValueError(f"baseline must be None, 'mean' or a finite float; got {baseline!r}.")
        if num < 2:
            raise ValueError("baseline='mean' (leave-one-out) needs num_samples >= 2.")
        return baseline
    if baseline is not None and (
        isinstance(baseline, (bool, np.bool_))
        or not isinstance(baseline, numbers.Real)
        or not np.isfinite(float(baseline))
    ):
        raise ValueError(f"baseline must be None, 'mean' or a finite float; got {baseline!r}.")
    return baseline


def sfe(
    k: int,
    loss_fn: Callable[..., jax.Array],
    *,
    tau: Any = 1.0,
    num_samples: int = 1,
    baseline: str | float | None = None,
) -> Estimator:
    r"""Score-function estimator (REINFORCE) for the exact k-subset distribution.

    With faithful samples :math:`z_s \sim p(z;\theta) \propto \exp(\langle z, \theta\rangle/\tau)`,
    :math:`\sum_i z_i = k` (:func:`imlejax.ksubset.sample`), losses :math:`\ell_s =
    \ell(z_s)` and baselines :math:`b_s`, the returned function's value is the Monte Carlo loss
    :math:`\frac1S\sum_s \ell_s` and its gradient with respect to ``theta`` is

    .. math:: \hat\nabla_\theta = \frac{1}{S}\sum_{s=1}^{S} (\ell_s - b_s)\,
              \nabla_\theta \log p(z_s;\theta)
              = \frac{1}{S}\sum_{s=1}^{S} (\ell_s - b_s)\,\frac{z_s - \mu(\theta)}{\tau},

    with the exact marginals :math:`\mu(\theta)` of the O(mk) dynamic program. It is built from
    the surrogate

    .. math:: \frac1S \sum_s \Big[\ell_s + \mathrm{sg}(\ell_s - b_s)\,\big(\log p(z_s;\theta)
              - \mathrm{sg}(\log p(z_s;\theta))\big)\Big],

    (``sg`` = stop-gradient), whose second term is exactly zero in value, so the value is exactly
    the plain Monte Carlo loss. The estimate is unbiased for :math:`\nabla_\theta
    \mathbb{E}_p[\ell(z)]` with either baseline: ``"mean"`` uses the leave-one-out mean
    :math:`b_s = \frac{1}{S-1}\sum_{j\ne s} \ell_j` (needs ``samples >= 2``), a number uses that
    constant, ``None`` uses :math:`b_s = 0`. The extra ``args`` of ``loss_fn`` (for instance a
    decoder's parameters) receive the ordinary gradient of the Monte Carlo loss, which is
    unbiased because the samples do not depend on them.

    ``theta`` of shape ``(..., m)`` holds independent groups along its leading axes, each with
    exactly ``k`` ones (the grouped layout of :func:`imlejax.top_k`); :math:`\log p` is then the
    sum over the groups. The sample axis is averaged (``num_samples``), since the output is a loss.

    Args:
      k: subset size, a static int with ``1 <= k <= m``.
      loss_fn: ``loss_fn(z, *args) -> scalar`` for a state ``z`` shaped like ``theta``;
        ``jax.vmap``-able.
      tau: temperature of the distribution, a positive scalar.
      num_samples: number ``S >= 1`` of samples averaged.
      baseline: ``None``, ``"mean"`` (leave-one-out; needs ``num_samples >= 2``) or a float.

    Returns:
      An :class:`imlejax.Estimator` ``f(key, theta, *args) -> scalar``; ``f.map_fn`` is
      ``None``.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> b = jnp.array([1.0, 0.0, 1.0, 0.0])
      >>> loss = lambda z: jnp.sum((z - b) ** 2)
      >>> f = ij.sfe(2, loss, num_samples=8, baseline="mean")
      >>> theta = jnp.array([0.3, -0.2, 0.1, 0.0])
      >>> value, grad = jax.value_and_grad(f, argnums=1)(jax.random.key(0), theta)
      >>> value.shape, grad.shape
      ((), (4,))

    References:
      Williams, *Simple statistical gradient-following algorithms for connectionist
      reinforcement learning*, Machine Learning 1992; Kool, van Hoof & Welling, *Buy 4 REINFORCE
      Samples, Get a Baseline for Free!*, ICLR Workshops 2019 (leave-one-out baseline);
      Niepert, Minervini & Franceschi, *Implicit MLE*, NeurIPS 2021 (exact k-subset marginals).
    """
    k = check_int("k", k, minimum=1)
    check_callable("loss_fn", loss_fn)
    check_positive("tau", tau)
    num = check_int("num_samples", num_samples, minimum=1)
    baseline = _check_baseline(baseline, num)

    def estimate(key, theta, *args):
        key = as_key(key)
        theta = check_theta(theta, min_ndim=1)
        check_last_axis(theta, k, "sfe")
        fixed = jax.lax.stop_gradient(theta)
        if num == 1:
            z = grouped_sample(key, fixed, k, tau, None)[None]
        else:
            z = grouped_sample(key, fixed, k, tau, num)
        losses = jax.vmap(lambda zz: loss_fn(zz, *args))(z)
        if losses.shape != (num,):
            raise ValueError(
                f"loss_fn must return a scalar; got shape {losses.shape[1:]} for a state of "
                f"shape {z.shape[1:]}."
            )
        if baseline is None:
            centred = losses
        elif isinstance(baseline, str):
            centred = losses - (jnp.sum(losses) - losses) / (num - 1)
        else:
            centred = losses - jnp.asarray(baseline, losses.dtype)
        inner = jnp.sum(z * theta[None], axis=tuple(range(1, z.ndim)))
        log_p = inner / jnp.asarray(tau, theta.dtype) - grouped_log_partition(theta, k, tau)
        score = (log_p - jax.lax.stop_gradient(log_p)).astype(losses.dtype)
        return jnp.mean(losses) + jnp.sum(jax.lax.stop_gradient(centred) / num * score)

    options: dict[str, Any] = {"tau": tau, "num_samples": num}
    if baseline is not None:
        options["baseline"] = baseline
    return Estimator("sfe", estimate, options=options, subject=f"k={k}, loss_fn={name_of(loss_fn)}")
