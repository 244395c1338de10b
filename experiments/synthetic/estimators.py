"""One-sample gradient estimators of ``L(theta) = E_p ||z - b||^2`` on the synthetic problem.

Every place that builds an estimator of the experiment is in this module. Each factory returns
``grad_fn(key, theta, lam, b) -> g``, the estimate of ``grad L(theta)`` from one key for the
target vector ``b`` (``lam`` is ignored by estimators without a step; ``b`` is an argument so that
one compiled function serves every instance). Every estimator is the library's own transform
differentiated by ``jax.grad`` of the point-wise loss ``||z - b||^2``:

* ``imle``: :func:`imlejax.imle` with the top-k oracle and the perturbation target
  :func:`imlejax.pid`; per sample ``[MAP(theta + eps) - MAP(theta' + eps)] / lam`` with
  ``theta' = theta - lam * 2 (z - b)`` and the same ``eps`` (one draw per coordinate) in both
  terms. The authors' code (and appendix C.1) use the same estimator without the division by
  ``lam``, i.e. ``lam`` times this one (see :func:`paper_imle_gradient`).
* ``ste``: :func:`imlejax.ste`, forward ``MAP(theta + eps)``, backward the upstream ``2 (z - b)``.
* ``sfe``: :func:`imlejax.sfe` with faithful samples and exact marginals,
  ``||z - b||^2 (z - mu(theta))`` (temperature 1, no baseline, as in the appendix).
* ``aimle``: :func:`imlejax.imle` with the adaptive target :func:`imlejax.aimle`
  (see :func:`aimle_gradient`; it carries a state).

Noise: ``"sog"`` is SoG(k=5, tau=1, 10 terms), ``"gumbel"`` is Gumbel(0, 1), as in the authors'
code (``sum_of_gamma_noise(k)`` and ``gumbel_noise()``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

import imlejax as ij
from experiments.synthetic.problem import Problem, pointwise_loss

GradFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]

NOISES = ("sog", "gumbel")


def make_noise(name: str, k: int) -> ij.Noise:
    """``"sog"``: SoG(k, tau=1, terms=10); ``"gumbel"``: Gumbel(0, 1)."""
    if name == "sog":
        return ij.sog(k=k, tau=1.0, terms=10)
    if name == "gumbel":
        return ij.gumbel(1.0)
    raise ValueError(f"unknown noise {name!r}; expected one of {NOISES}.")


def imle_gradient(problem: Problem, noise: ij.Noise, samples: int | None = None) -> GradFn:
    """I-MLE with the perturbation target ``pid(lam)`` (library scaling, divided by ``lam``)."""
    oracle = ij.top_k(problem.k)

    def grad_fn(key, theta, lam, b):
        sampler = ij.imle(oracle, noise=noise, target=ij.pid(lam), samples=samples)
        return jax.grad(lambda t: jnp.mean(pointwise_loss(problem, sampler(key, t), b)))(theta)

    return grad_fn


def paper_imle_gradient(problem: Problem, noise: ij.Noise) -> GradFn:
    """The authors' formula written out: ``MAP(theta + eps) - MAP(theta' + eps)``.

    ``theta' = theta - lam * 2 (z - b)`` and no division by ``lam``. The noise is drawn exactly as
    :func:`imlejax.imle` draws it for one sample, so with the same key this equals ``lam`` times
    :func:`imle_gradient`.
    """
    oracle = ij.top_k(problem.k)

    def grad_fn(key, theta, lam, b):
        eps = noise.sample(key, (1, *theta.shape), theta.dtype)[0]
        z = oracle(theta + eps)
        theta_target = theta - lam * 2.0 * (z - b)
        return z - oracle(theta_target + eps)

    return grad_fn


def ste_gradient(problem: Problem, noise: ij.Noise, samples: int | None = None) -> GradFn:
    """Straight-through: forward ``MAP(theta + eps)``, backward ``2 (z - b)``."""
    sampler = ij.ste(ij.top_k(problem.k), noise=noise, samples=samples)

    def grad_fn(key, theta, lam, b):
        del lam
        return jax.grad(lambda t: jnp.mean(pointwise_loss(problem, sampler(key, t), b)))(theta)

    return grad_fn


def sfe_gradient(problem: Problem, samples: int | None = None) -> GradFn:
    """Score function with faithful samples and exact marginals: ``l(z) (z - mu(theta))``."""

    def grad_fn(key, theta, lam, b):
        del lam
        estimator = ij.sfe(
            problem.k,
            lambda z: pointwise_loss(problem, z, b),
            tau=1.0,
            num_samples=1 if samples is None else samples,
            baseline=None,
        )
        return jax.grad(lambda t: jnp.mean(estimator(key, t)))(theta)

    return grad_fn


def gradient(kind: str, problem: Problem, noise: str | None = None) -> GradFn:
    """The one-sample estimator ``kind`` (``"imle"``, ``"ste"``, ``"sfe"``) with noise ``noise``."""
    if kind == "imle":
        return imle_gradient(problem, make_noise(noise, problem.k))
    if kind == "ste":
        return ste_gradient(problem, make_noise(noise, problem.k))
    if kind == "sfe":
        return sfe_gradient(problem)
    raise ValueError(f"unknown estimator {kind!r}; expected 'imle', 'ste' or 'sfe'.")


def aimle_gradient(problem: Problem, noise: ij.Noise, target: ij.AdaptiveTarget, samples=None):
    """AIMLE: ``grad_fn(key, theta, state) -> (g, new_state)`` for the problem's ``b``.

    The cotangent of the state holds the backward pass's statistics; ``target.update`` applies
    the rule once.
    """
    sampler = ij.imle(ij.top_k(problem.k), noise=noise, target=target, samples=samples)

    def loss(t, state, key):
        return jnp.mean(pointwise_loss(problem, sampler(key, t, state=state)))

    def grad_fn(key, theta, state):
        g, stats = jax.grad(loss, argnums=(0, 1))(theta, state, key)
        return g, target.update(state, stats)

    return grad_fn
