"""The I-MLE transform: a MAP oracle becomes a differentiable perturb-and-MAP sampler."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from imlejax._core import Estimator, perturb_and_map
from imlejax._noise import DEFAULT_NOISE, resolve_noise
from imlejax._targets import PerturbationTarget, check_target_tau
from imlejax._validation import check_bool, check_callable, check_optional_int

__all__ = ["imle", "resolve_target"]

_DEFAULT_TARGET = PerturbationTarget(lam=1.0)


def resolve_target(target: Any) -> Any:
    """``target`` checked against the :class:`Target` protocol."""
    if not callable(getattr(target, "gradient", None)):
        raise TypeError(
            f"target must be a target such as ij.pid(...) or ij.aimle(...); got {target!r}."
        )
    if getattr(target, "stateful", False) and not (
        callable(getattr(target, "init", None)) and callable(getattr(target, "update", None))
    ):
        raise TypeError(
            f"a stateful target must have init() and update(state, stats); got {target!r}."
        )
    return target


def _target_rule(solve, theta, eps, z, g, state, noise, target):
    return target.gradient(solve, theta, eps, z, g, state, noise.tau)


def imle(
    map_fn: Callable[..., Any] | None = None,
    *,
    noise: Any = DEFAULT_NOISE,
    target: Any = _DEFAULT_TARGET,
    samples: int | None = None,
    minimize: bool = False,
) -> Any:
    r"""Turns a MAP oracle into a differentiable perturb-and-MAP sampler with I-MLE gradients.

    Forward, for :math:`s = 1..S`: :math:`z_s = \mathrm{MAP}(\theta + \epsilon_s)`, with
    :math:`\epsilon_s` drawn from ``noise``. Backward, with the upstream gradients
    :math:`g_s = \partial\ell/\partial z_s`, the target gives :math:`\theta'_s` (for :func:`pid`,
    :math:`\theta'_s = \theta - \lambda g_s`) and

    .. math:: \frac{\partial \ell}{\partial\theta} \approx \sum_{s=1}^{S}
              \frac{\mathrm{MAP}(\theta + \epsilon_s) - \mathrm{MAP}(\theta'_s + \epsilon_s)}{\lambda},

    with the **same** :math:`\epsilon_s` in both terms (regenerated from the key, never stored).
    The sum is what autodiff gives for a function with ``S`` outputs: a loss averaged over the
    sample axis receives the averaged estimate, and ``samples=S`` agrees in expectation with a
    ``jax.vmap`` over ``S`` keys. Cost: ``S`` oracle calls forward, ``S`` (``2S`` when central)
    backward; the oracle itself is never differentiated.

    Args:
      map_fn: the MAP oracle on one instance, ``map_fn(theta, *args) -> z`` with ``z`` of
        ``theta``'s shape and dtype, maximising :math:`\langle z, \theta\rangle` (or minimising
        :math:`\langle z, w\rangle` when ``minimize=True``). Checked at trace time. If omitted,
        ``imle`` returns a decorator.
      noise: perturbation distribution (:func:`gumbel`, :func:`sog`, :func:`normal`; default
        ``gumbel(1.0)``), or ``None`` for none (:func:`no_noise`). Its parameters receive no
        gradient.
      target: target distribution, :func:`pid` (default ``pid(1.0)``) or :func:`aimle`. Its
        parameters receive no gradient.
      samples: ``None`` for one sample shaped like ``theta``; ``S`` for a leading axis of size S.
      minimize: the oracle minimises costs ``w``. The differentiable argument is then ``w``, the
        distribution is :math:`p(z; w) \propto \exp(-\langle z, w\rangle/\tau)` (:math:`\theta=-w`),
        the oracle is called on ``w - eps``, and the gradient is taken with respect to ``w``.

    Returns:
      An :class:`Estimator` ``f(key, theta, *args)`` (``f(key, theta, *args, state=state)`` for an
      adaptive target): ``key`` a typed or raw PRNG key, ``theta`` the one differentiable argument,
      ``args`` passed unchanged to ``map_fn`` with zero cotangents. ``f.map_fn`` is ``map_fn``.

    Raises:
      TypeError: if ``map_fn`` is not callable, ``noise`` is not a noise (a ``sample`` method and
        a ``tau``), ``target`` is not a target, or ``minimize`` is not a bool.
      ValueError: if ``samples`` is not ``None`` or an integer ``>= 1``, or the target sets
        ``target_tau`` while there is no noise.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> sampler = ij.imle(ij.top_k(2), noise=ij.sog(k=2), target=ij.pid(lam=10.0), samples=5)
      >>> theta = jnp.array([0.1, 2.0, -1.0, 1.5])
      >>> z = sampler(jax.random.key(0), theta)
      >>> z.shape, z.sum(axis=-1).tolist()
      ((5, 4), [2.0, 2.0, 2.0, 2.0, 2.0])
      >>> y = jnp.array([1.0, 0.0, 0.0, 1.0])
      >>> loss = lambda th: jnp.mean((sampler(jax.random.key(0), th) - y) ** 2)
      >>> jax.jit(jax.grad(loss))(theta).shape
      (4,)

    References:
      Niepert, Minervini & Franceschi, *Implicit MLE: Backpropagating Through Discrete Exponential
      Family Distributions*, NeurIPS 2021.
    """
    if map_fn is None:
        return functools.partial(
            imle, noise=noise, target=target, samples=samples, minimize=minimize
        )
    check_callable("map_fn", map_fn)
    samples = check_optional_int("samples", samples, minimum=1)
    minimize = check_bool("minimize", minimize)
    noise = resolve_noise(noise)
    target = resolve_target(target)
    check_target_tau(target, noise)
    impl = perturb_and_map(
        map_fn,
        noise=noise,
        samples=samples,
        minimize=minimize,
        rule=_target_rule,
        rule_params=target,
    )
    return Estimator(
        "imle",
        impl,
        map_fn=map_fn,
        noise=noise,
        target=target,
        samples=samples,
        stateful=bool(getattr(target, "stateful", False)),
        options={"minimize": True} if minimize else {},
    )
