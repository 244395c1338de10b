"""Target distributions of I-MLE: how the backward pass turns an upstream gradient into theta'."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp

from imlejax._dataclass import pytree_dataclass, static_field
from imlejax._validation import check_bool, check_nonnegative, check_positive

__all__ = ["PerturbationTarget", "Target", "check_target_tau", "pid", "target_noise"]

# ``solve(theta_batch)`` maps a (S, *shape) array of perturbed parameters to (S, *shape) states.
BatchedOracle = Callable[[jax.Array], jax.Array]


class Target(Protocol):
    """Interface of a target distribution.

    ``gradient`` returns the sum over samples of the per-sample gradient estimates with respect to
    ``theta`` and the cotangent of the state: ``None`` for a stateless target, additive statistics
    for an adaptive one (see :class:`imlejax.AdaptiveTarget`). A stateful target also has
    ``stateful = True``, ``init()`` and ``update(state, stats)``. Target parameters receive no
    gradient.
    """

    def gradient(
        self,
        solve: BatchedOracle,
        theta: jax.Array,
        eps: jax.Array,
        z: jax.Array,
        g: jax.Array,
        state: Any,
        noise_tau: Any,
    ) -> tuple[jax.Array, Any]:
        """Returns ``(sum_s grad_s, state_cotangent)``; arrays carry a leading sample axis."""
        ...


def target_noise(eps: jax.Array, target_tau: Any, noise_tau: Any) -> jax.Array:
    """The same raw noise, rescaled from the input temperature to the target temperature."""
    if target_tau is None or noise_tau is None:
        return eps
    ratio = jnp.asarray(target_tau, jnp.float32) / jnp.asarray(noise_tau, jnp.float32)
    return eps * ratio.astype(eps.dtype)


@pytree_dataclass
class PerturbationTarget:
    r"""Perturbation-based target of I-MLE (Niepert et al., 2021, Eq. 10 and Eq. 14).

    For a sample :math:`z_s = \mathrm{MAP}(\theta + \epsilon_s)` with upstream gradient
    :math:`g_s = \partial \ell / \partial z_s`, the target parameters are
    :math:`\theta'_s = \alpha\theta - \lambda g_s` and the sample's gradient estimate is

    .. math:: \hat\nabla_\theta = \frac{\mathrm{MAP}(\theta + \epsilon_s)
              - \mathrm{MAP}(\theta'_s + \epsilon'_s)}{\lambda},

    with :math:`\epsilon'_s` the *same* raw noise as the forward pass, rescaled to ``target_tau``.
    Dividing by :math:`\lambda` makes it a finite difference whose scale does not depend on
    :math:`\lambda`; :math:`\lambda` acts on the scale of the upstream gradient, so the step in
    parameter space is :math:`\lambda\|g_s\|`. ``alpha=0`` gives the loss-gradient target of Eq. 14
    (:math:`\theta' = -\lambda g`). ``central=True`` uses
    :math:`[\mathrm{MAP}(\alpha\theta + \lambda g + \epsilon') - \mathrm{MAP}(\alpha\theta
    - \lambda g + \epsilon')] / (2\lambda)`.

    Attributes:
      lam: the step :math:`\lambda > 0`.
      alpha: weight of :math:`\theta` in the target, ``>= 0``.
      target_tau: temperature of the target noise; ``None`` reuses the input noise as it is.
      central: use the central difference.

    Example:
      >>> import imlejax as ij
      >>> ij.pid(10.0).lam
      10.0

    References:
      Niepert, Minervini & Franceschi, *Implicit MLE*, NeurIPS 2021, Section 4.
    """

    lam: Any = 1.0
    alpha: Any = 1.0
    target_tau: Any = None
    central: bool = static_field(default=False)

    stateful = False

    def __post_init__(self) -> None:
        check_positive("lam", self.lam)
        check_nonnegative("alpha", self.alpha)
        if self.target_tau is not None:
            check_positive("target_tau", self.target_tau)
        check_bool("central", self.central)

    def gradient(self, solve, theta, eps, z, g, state, noise_tau):
        dtype = theta.dtype
        lam = jnp.asarray(self.lam, dtype)
        alpha = jnp.asarray(self.alpha, dtype)
        eps_t = target_noise(eps, self.target_tau, noise_tau)
        base = (alpha * theta)[None]
        if self.central:
            # [MAP(a*theta + lam*g + eps') - MAP(a*theta - lam*g + eps')] / (2 lam)
            z_plus = solve(base + lam * g + eps_t)
            z_minus = solve(base - lam * g + eps_t)
            diff = z_plus - z_minus
            return jnp.sum(diff, axis=0) / (2 * lam), state
        # [MAP(theta + eps) - MAP(a*theta - lam*g + eps')] / lam, MAP(theta + eps) = z (forward).
        z_target = solve(base - lam * g + eps_t)
        return jnp.sum(z - z_target, axis=0) / lam, state


def pid(lam: Any = 1.0, *, alpha: Any = 1.0, target_tau: Any = None, central: bool = False):
    r"""Returns the perturbation-based target of I-MLE; see :class:`PerturbationTarget`.

    .. math:: \theta' = \alpha\theta - \lambda \nabla_z \ell, \qquad
              \hat\nabla_\theta = [\mathrm{MAP}(\theta+\epsilon) - \mathrm{MAP}(\theta'+\epsilon)]/\lambda

    Args:
      lam: step :math:`\lambda > 0` (``ValueError`` otherwise).
      alpha: weight of :math:`\theta` in the target; ``0`` gives the loss-gradient target (Eq. 14).
      target_tau: temperature of the target noise (``None``: same noise as the forward pass).
      central: use the central difference.

    Returns:
      A :class:`PerturbationTarget`.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> f = ij.imle(ij.top_k(2), noise=ij.sog(2), target=ij.pid(10.0))
      >>> jax.grad(lambda t: f(jax.random.key(0), t) @ jnp.arange(4.0))(jnp.zeros(4)).shape
      (4,)

    References:
      Niepert, Minervini & Franceschi, *Implicit MLE*, NeurIPS 2021, Eq. 10 and Eq. 14.
    """
    return PerturbationTarget(lam=lam, alpha=alpha, target_tau=target_tau, central=central)


def check_target_tau(target: Any, noise: Any) -> None:
    """Raises if ``target`` rescales the noise (``target_tau``) but there is no noise to rescale."""
    from imlejax._noise import NoNoise

    if getattr(target, "target_tau", None) is not None and isinstance(noise, NoNoise):
        raise ValueError(
            "target_tau rescales the forward noise for the target, but noise is None (no "
            "perturbation): drop target_tau or pass a noise such as ij.gumbel(1.0)."
        )
