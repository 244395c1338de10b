"""Estimators whose backward pass goes through the oracle's output: straight-through, blackbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from imlejax._core import Estimator, perturb_and_map
from imlejax._imle import _target_rule
from imlejax._noise import DEFAULT_NOISE, NoNoise, resolve_noise
from imlejax._targets import PerturbationTarget
from imlejax._validation import check_bool, check_callable, check_optional_int, check_positive

__all__ = ["blackbox", "ste"]


def _identity_rule(solve, theta, eps, z, g, state, noise, params):
    # Straight-through: the oracle is treated as the identity, d l / d theta = sum_s g_s.
    return jnp.sum(g, axis=0), None


def ste(
    map_fn: Callable[..., jax.Array],
    *,
    noise: Any = DEFAULT_NOISE,
    samples: int | None = None,
    minimize: bool = False,
) -> Estimator:
    r"""Straight-through estimator (STE) around a MAP oracle.

    Forward, for :math:`s = 1..S`: :math:`z_s = \mathrm{MAP}(\theta + \epsilon_s)`. Backward, the
    oracle is treated as the identity, so with upstream gradients :math:`g_s =
    \partial\ell/\partial z_s`

    .. math:: \frac{\partial \ell}{\partial \theta} \approx \sum_{s=1}^{S} g_s,

    the sum autodiff gives for ``S`` outputs (a loss averaged over the sample axis receives the
    mean). With ``minimize=True`` the oracle minimises costs ``w``; as in :func:`imlejax.imle`,
    internally :math:`\theta = -w` and the oracle is called on ``w - eps``, so the gradient with
    respect to ``w`` is :math:`-\sum_s g_s`. The estimate is biased; its forward samples are
    exact only where perturb-and-MAP is (Gumbel noise on every state).

    Args:
      map_fn: the MAP oracle on one instance, ``map_fn(theta, *args) -> z`` of ``theta``'s shape
        and dtype (checked at trace time).
      noise: perturbation distribution (:func:`imlejax.gumbel`, :func:`imlejax.sog`, ...; default
        ``gumbel(1.0)`` as in :func:`imlejax.imle`), or ``None`` for the unperturbed MAP.
      samples: ``None`` for one sample shaped like ``theta``; ``S`` for a leading axis of size S.
      minimize: the oracle minimises costs; the differentiable argument is then the cost ``w``.

    Returns:
      An :class:`imlejax.Estimator` ``f(key, theta, *args)``; ``args`` pass unchanged to
      ``map_fn`` with zero cotangents.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> f = ij.ste(ij.top_k(2), noise=ij.sog(2))
      >>> theta = jnp.array([0.1, 2.0, -1.0, 1.5])
      >>> w = jnp.array([1.0, -2.0, 3.0, 0.5])
      >>> jax.grad(lambda t: f(jax.random.key(0), t) @ w)(theta).tolist()
      [1.0, -2.0, 3.0, 0.5]

    References:
      Bengio, Léonard & Courville, *Estimating or Propagating Gradients Through Stochastic
      Neurons for Conditional Computation*, arXiv:1308.3432, 2013.
    """
    check_callable("map_fn", map_fn)
    samples = check_optional_int("samples", samples, minimum=1)
    minimize = check_bool("minimize", minimize)
    noise = resolve_noise(noise)
    impl = perturb_and_map(
        map_fn, noise=noise, samples=samples, minimize=minimize, rule=_identity_rule
    )
    return Estimator(
        "ste",
        impl,
        map_fn=map_fn,
        noise=noise,
        samples=samples,
        options={"minimize": True} if minimize else {},
    )


def blackbox(map_fn: Callable[..., jax.Array], *, lam: Any, minimize: bool = False) -> Estimator:
    r"""Blackbox differentiation of combinatorial solvers (BB, Vlastelica et al. 2020).

    For a minimisation oracle :math:`y(w)` on costs :math:`w` (``minimize=True``), forward
    :math:`y(w)` and, with the upstream gradient :math:`g = \partial\ell/\partial y`,

    .. math:: w' = w + \lambda g, \qquad
              \frac{\partial \ell}{\partial w} \approx -\frac{y(w) - y(w')}{\lambda}.

    For a maximisation oracle (the default) the mirrored form with :math:`\theta = -w`:
    :math:`\partial\ell/\partial\theta \approx [\mathrm{MAP}(\theta) - \mathrm{MAP}(\theta -
    \lambda g)]/\lambda`. This is I-MLE without noise and with the perturbation target
    (Niepert et al. 2021), and is computed by ``imle(map_fn, noise=None, target=pid(lam))`` (the same backward rule):
    one oracle call forward, one backward, only ``theta``, ``z`` and ``args`` kept.

    Args:
      map_fn: the oracle on one instance, ``map_fn(theta, *args) -> z`` (maximising), or
        ``map_fn(w, *args) -> y`` (minimising costs) with ``minimize=True``.
      lam: interpolation step :math:`\lambda > 0` (``ValueError`` otherwise).
      minimize: the oracle minimises costs; the differentiable argument is the cost ``w``.

    Returns:
      An :class:`imlejax.Estimator` ``f(key, theta, *args)``; the key is accepted and ignored,
      ``args`` pass unchanged to ``map_fn`` with zero cotangents.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> f = ij.blackbox(ij.argmax(), lam=2.0)
      >>> theta = jnp.array([1.0, 0.0, 0.5])
      >>> g = jnp.array([1.0, 0.0, 0.0])  # d loss / d z
      >>> jax.grad(lambda t: f(jax.random.key(0), t) @ g)(theta).tolist()
      [0.5, 0.0, -0.5]

    References:
      Vlastelica, Paulus, Musil, Martius & Rolínek, *Differentiation of Blackbox Combinatorial
      Solvers*, ICLR 2020; Niepert, Minervini & Franceschi, *Implicit MLE*, NeurIPS 2021.
    """
    check_callable("map_fn", map_fn)
    check_positive("lam", lam)
    minimize = check_bool("minimize", minimize)
    target = PerturbationTarget(lam=lam)
    impl = perturb_and_map(
        map_fn,
        noise=NoNoise(),
        samples=None,
        minimize=minimize,
        rule=_target_rule,
        rule_params=target,
    )
    options: dict[str, Any] = {"lam": lam}
    if minimize:
        options["minimize"] = True
    return Estimator("blackbox", impl, map_fn=map_fn, options=options)
