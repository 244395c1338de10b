"""Target distributions of I-MLE: how the backward pass turns an upstream gradient into theta'."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from imlejax._checks import check_nonnegative, check_positive, check_unit_interval

__all__ = [
    "AIMLEState",
    "AdaptiveTarget",
    "PerturbationTarget",
    "Target",
    "aimle",
    "pid",
]

# ``solve(theta_batch)`` maps a (S, *shape) array of perturbed parameters to (S, *shape) states.
BatchedOracle = Callable[[jax.Array], jax.Array]


class Target(Protocol):
    """Interface of a target distribution.

    ``gradient`` returns the sum over samples of the per-sample gradient estimates with respect to
    ``theta`` and the new state (``None`` for stateless targets).
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
        """Returns ``(sum_s grad_s, new_state)``; arrays carry a leading sample axis."""
        ...


def _target_noise(eps: jax.Array, target_tau: Any, noise_tau: Any) -> jax.Array:
    """The same raw noise, rescaled from the input temperature to the target temperature."""
    if target_tau is None or noise_tau is None:
        return eps
    ratio = jnp.asarray(target_tau, jnp.float32) / jnp.asarray(noise_tau, jnp.float32)
    return eps * ratio.astype(eps.dtype)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
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
    central: bool = dataclasses.field(default=False, metadata=dict(static=True))

    def __post_init__(self) -> None:
        check_positive("lam", self.lam)
        check_nonnegative("alpha", self.alpha)
        if self.target_tau is not None:
            check_positive("target_tau", self.target_tau)

    def gradient(self, solve, theta, eps, z, g, state, noise_tau):
        dtype = theta.dtype
        lam = jnp.asarray(self.lam, dtype)
        alpha = jnp.asarray(self.alpha, dtype)
        eps_t = _target_noise(eps, self.target_tau, noise_tau)
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


class AIMLEState(NamedTuple):
    """State of the adaptive target: ``beta``, the moving average ``nnz`` of the number of non-zero
    gradient entries per sample, and ``velocity``, the last update of ``beta``."""

    beta: jax.Array
    nnz: jax.Array
    velocity: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AdaptiveTarget:
    r"""Adaptive perturbation target, AIMLE (Minervini, Franceschi & Niepert, AAAI 2023).

    The step is :math:`\lambda = \beta\, \|\theta\|_2 \sqrt{S} / \|g\|_2` (``0`` when ``g = 0``), with
    the norms taken over the whole ``theta`` tensor and the ``S`` samples' upstream gradients, so that
    :math:`\lambda g_s` has on average the norm :math:`\beta \|\theta\|`. The per-sample estimate is
    the I-MLE finite difference divided by that same :math:`\lambda` (by 1 when :math:`\lambda = 0`).
    After each backward pass, ``nnz`` (the mean number of non-zero entries of the per-sample
    gradient, over the instances and samples) updates an exponential moving average
    :math:`\bar n \leftarrow d\,\bar n + (1-d)\,\mathrm{nnz}`, and

    .. math:: v \leftarrow \mathrm{momentum}\cdot v + (\mathrm{step}\ \text{if}\ \bar n <
              \mathrm{target\_norm}\ \text{else}\ -\mathrm{step}), \quad
              \beta \leftarrow \max(\beta + v, 0).

    The state is explicit (:class:`AIMLEState`): a transform built with this target is called as
    ``f(key, theta, *args, state=state)``, and the cotangent that autodiff returns for ``state`` is
    the updated state, so that a train step is pure and works under ``jit`` and ``lax.scan``::

        grads, new_state = jax.grad(loss, argnums=(0, 1))(params, state)

    Use each state with one call of the transform per loss. ``batch_ndim`` leading axes of ``theta``
    are instance axes (for a batched oracle): ``nnz`` is averaged over them. Under ``jax.vmap`` the
    norms are per instance; give the batch to one call with a batched oracle to follow the reference
    rule, whose norms span the whole batch.

    Attributes:
      target_norm: target of the moving average of non-zero entries per sample.
      step: update size of ``beta``.
      momentum: momentum of the ``beta`` updates.
      decay: decay of the moving average.
      init_beta: initial ``beta``.
      init_nnz: initial moving average.
      alpha: weight of :math:`\theta` in the target.
      target_tau: temperature of the target noise (``None``: same noise as the forward pass).
      central: central difference :math:`[\mathrm{MAP}(\alpha\theta+\lambda g+\epsilon) -
        \mathrm{MAP}(\alpha\theta-\lambda g+\epsilon)]/(2\lambda)`.
      batch_ndim: number of leading instance axes of ``theta``.

    Example:
      >>> import imlejax as ij
      >>> target = ij.aimle(target_norm=10.0, step=1e-3)
      >>> float(target.init().beta)
      1.0

    References:
      Minervini, Franceschi & Niepert, *Adaptive Perturbation-Based Gradient Estimation for Discrete
      Latent Variable Models*, AAAI 2023.
    """

    target_norm: Any = 1.0
    step: Any = 1e-4
    momentum: Any = 0.0
    decay: Any = 0.9
    init_beta: Any = 1.0
    init_nnz: Any = 1.0
    alpha: Any = 1.0
    target_tau: Any = None
    central: bool = dataclasses.field(default=False, metadata=dict(static=True))
    batch_ndim: int = dataclasses.field(default=0, metadata=dict(static=True))

    stateful = True

    def __post_init__(self) -> None:
        check_nonnegative("target_norm", self.target_norm)
        check_nonnegative("step", self.step)
        check_nonnegative("momentum", self.momentum)
        check_nonnegative("init_beta", self.init_beta)
        check_nonnegative("alpha", self.alpha)
        check_unit_interval("decay", self.decay)
        if self.target_tau is not None:
            check_positive("target_tau", self.target_tau)
        if not isinstance(self.batch_ndim, int) or self.batch_ndim < 0:
            raise ValueError(f"batch_ndim must be a non-negative integer; got {self.batch_ndim!r}.")

    def init(self) -> AIMLEState:
        """Returns the initial :class:`AIMLEState` (float32 scalars)."""
        f32 = jnp.float32
        return AIMLEState(
            beta=jnp.asarray(self.init_beta, f32),
            nnz=jnp.asarray(self.init_nnz, f32),
            velocity=jnp.zeros((), f32),
        )

    def gradient(self, solve, theta, eps, z, g, state, noise_tau):
        if state is None:
            raise ValueError("An adaptive target needs `state=`; create one with `target.init()`.")
        dtype = theta.dtype
        num_samples = g.shape[0]
        f32 = jnp.float32
        theta32 = theta.astype(f32)
        g32 = g.astype(f32)
        norm_theta = jnp.sqrt(jnp.sum(theta32**2) * num_samples)
        norm_g = jnp.sqrt(jnp.sum(g32**2))
        lam = jnp.where(norm_g > 0, state.beta * norm_theta / jnp.where(norm_g > 0, norm_g, 1), 0.0)
        lam_d = lam.astype(dtype)
        eps_t = _target_noise(eps, self.target_tau, noise_tau)
        base = (jnp.asarray(self.alpha, dtype) * theta)[None]
        if self.central:
            diff = solve(base + lam_d * g + eps_t) - solve(base - lam_d * g + eps_t)
            denom = 2 * lam
        else:
            diff = z - solve(base - lam_d * g + eps_t)
            denom = lam
        denom = jnp.where(lam > 0, denom, 1.0)
        grad = (jnp.sum(diff.astype(f32), axis=0) / denom).astype(dtype)

        instances = int(np.prod(theta.shape[: self.batch_ndim], dtype=np.int64))
        nnz = jnp.count_nonzero(diff).astype(f32) / (num_samples * instances)
        decay = jnp.asarray(self.decay, f32)
        avg = decay * state.nnz + (1 - decay) * nnz
        step = jnp.asarray(self.step, f32)
        update = jnp.where(avg < self.target_norm, step, -step)
        velocity = jnp.asarray(self.momentum, f32) * state.velocity + update
        beta = jnp.maximum(state.beta + velocity, 0.0)
        new_state = AIMLEState(beta=beta, nnz=avg, velocity=velocity)
        return grad, new_state


def aimle(
    target_norm: Any = 1.0,
    step: Any = 1e-4,
    *,
    momentum: Any = 0.0,
    decay: Any = 0.9,
    init_beta: Any = 1.0,
    init_nnz: Any = 1.0,
    alpha: Any = 1.0,
    target_tau: Any = None,
    central: bool = False,
    batch_ndim: int = 0,
) -> AdaptiveTarget:
    r"""Returns the adaptive target of AIMLE; see :class:`AdaptiveTarget`.

    .. math:: \lambda = \beta \|\theta\|_2 / \|g\|_2, \qquad \beta \leftarrow \max(\beta \pm
              \mathrm{step}, 0)

    Reference defaults: ``step=1e-4, target_norm=1`` (learning to explain) and ``step=1e-3,
    target_norm=10`` (discrete VAE).

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> target = ij.aimle()
      >>> f = ij.imle(ij.top_k(2), noise=ij.sog(2), target=target)
      >>> loss = lambda t, s: f(jax.random.key(0), t, state=s) @ jnp.arange(4.0)
      >>> g, new_state = jax.grad(loss, argnums=(0, 1))(jnp.zeros(4), target.init())
      >>> g.shape
      (4,)

    References:
      Minervini, Franceschi & Niepert, AAAI 2023.
    """
    return AdaptiveTarget(
        target_norm=target_norm,
        step=step,
        momentum=momentum,
        decay=decay,
        init_beta=init_beta,
        init_nnz=init_nnz,
        alpha=alpha,
        target_tau=target_tau,
        central=central,
        batch_ndim=batch_ndim,
    )
