r"""Adaptive I-MLE (AIMLE): a target whose step adapts, with explicit state and additive statistics.

The backward pass of a transform never returns a new state. It returns, as the cotangent of the
state, the *statistics* that the update rule needs, which are sums: autodiff adds cotangents
wherever a primal is used more than once (``vmap`` over instances with one shared state, several
calls in one loss, ``psum`` over devices), and for sums that is exactly right. The update rule is
then applied once, by :meth:`AdaptiveTarget.update`, outside the gradient.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from imlejax._dataclass import pytree_dataclass, static_field
from imlejax._targets import target_noise
from imlejax._validation import (
    check_bool,
    check_int,
    check_nonnegative,
    check_positive,
    check_unit_interval,
)

__all__ = ["AIMLEState", "AIMLEStats", "AdaptiveTarget", "aimle"]

_F32 = jnp.float32


class AIMLEStats(NamedTuple):
    """Additive statistics of AIMLE backward passes; all zero in a state.

    Attributes:
      nnz_sum: the summed number of non-zero entries of the per-sample gradient estimates.
      estimates: the number of per-sample estimates that contributed (instances times samples).
      lam_sum: the summed step :math:`\\lambda` of the backward calls (for monitoring).
      calls: the number of backward calls (one per instance under ``vmap``).

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> target = ij.aimle()
      >>> f = ij.imle(ij.top_k(2), noise=ij.sog(2), target=target, samples=3)
      >>> keys = jax.random.split(jax.random.key(0), 4)
      >>> loss = lambda t, s: jax.vmap(lambda k: f(k, t, state=s))(keys).sum()
      >>> stats = jax.grad(loss, argnums=1)(jnp.array([0.1, 2.0, -1.0, 1.5]), target.init())
      >>> float(stats.stats.estimates), float(stats.stats.calls)  # 4 instances x 3 samples
      (12.0, 4.0)
    """

    nnz_sum: jax.Array
    estimates: jax.Array
    lam_sum: jax.Array
    calls: jax.Array

    @classmethod
    def zeros(cls) -> AIMLEStats:
        z = jnp.zeros((), _F32)
        return cls(nnz_sum=z, estimates=z, lam_sum=z, calls=z)


class AIMLEState(NamedTuple):
    """State of the adaptive target.

    Attributes:
      beta: the multiplier :math:`\\beta` of the step.
      nnz: the moving average of the number of non-zero gradient entries per sample.
      velocity: the last update of ``beta`` (for momentum).
      lam: the mean step :math:`\\lambda` of the last update's backward calls (for monitoring).
      stats: :class:`AIMLEStats`, zero in a state; in the cotangent that ``jax.grad`` returns for a
        state, the statistics of the backward passes, which :meth:`AdaptiveTarget.update` reads.
    """

    beta: jax.Array
    nnz: jax.Array
    velocity: jax.Array
    lam: jax.Array
    stats: AIMLEStats


@pytree_dataclass
class AdaptiveTarget:
    r"""Adaptive perturbation target, AIMLE (Minervini, Franceschi & Niepert, AAAI 2023).

    The step is :math:`\lambda = \beta\, \|\theta\|_2 \sqrt{S} / \|g\|_2` (``0`` when ``g = 0``), with
    the norms taken over the whole ``theta`` tensor and the ``S`` samples' upstream gradients, so that
    :math:`\lambda g_s` has on average the norm :math:`\beta \|\theta\|`. The per-sample estimate is
    the I-MLE finite difference divided by that same :math:`\lambda` (by 1 when :math:`\lambda = 0`).

    **State and statistics.** A transform built with this target is called as
    ``f(key, theta, *args, state=state)``. Its backward pass returns, as the cotangent of
    ``state``, an :class:`AIMLEState` whose ``stats`` hold *additive* statistics (the summed number
    of non-zero entries of the per-sample estimates and the number of estimates); the other fields
    of the cotangent are zero. Because the statistics are sums, autodiff's summation of cotangents
    is exactly right under ``jax.vmap`` with one shared state, for several calls in one loss, and
    for a ``psum`` over devices. :meth:`update` then applies the reference rule once: with
    :math:`\mathrm{nnz} = \mathrm{nnz\_sum} / \mathrm{estimates}`,

    .. math:: \bar n \leftarrow d\,\bar n + (1-d)\,\mathrm{nnz}, \quad
              v \leftarrow \mathrm{momentum}\cdot v + (\mathrm{step}\ \text{if}\ \bar n <
              \mathrm{target\_norm}\ \text{else}\ -\mathrm{step}), \quad
              \beta \leftarrow \max(\beta + v, 0).

    A train step::

        grads, stats = jax.grad(loss, argnums=(0, 1))(params, state)
        state = target.update(state, stats)   # never give `stats` to the optimiser

    ``batch_ndim`` leading axes of ``theta`` are instance axes (for a batched oracle): they count
    as instances in ``estimates``. Under ``jax.vmap`` the norms are per instance; give the batch to one
    call with a batched oracle to follow the reference rule, whose norms span the whole batch.

    Attributes:
      target_norm: target of the moving average of non-zero entries per sample.
      step: update size of ``beta``.
      momentum: momentum of the ``beta`` updates.
      decay: decay of the moving average, in ``[0, 1)``.
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
    central: bool = static_field(default=False)
    batch_ndim: int = static_field(default=0)

    stateful = True

    def __post_init__(self) -> None:
        check_nonnegative("target_norm", self.target_norm)
        check_nonnegative("step", self.step)
        check_nonnegative("momentum", self.momentum)
        check_unit_interval("decay", self.decay)
        check_nonnegative("init_beta", self.init_beta)
        check_nonnegative("init_nnz", self.init_nnz)
        check_nonnegative("alpha", self.alpha)
        if self.target_tau is not None:
            check_positive("target_tau", self.target_tau)
        check_bool("central", self.central)
        check_int("batch_ndim", self.batch_ndim, minimum=0)

    def init(self) -> AIMLEState:
        """Returns the initial :class:`AIMLEState` (float32 scalars, zero statistics)."""
        return AIMLEState(
            beta=jnp.asarray(self.init_beta, _F32),
            nnz=jnp.asarray(self.init_nnz, _F32),
            velocity=jnp.zeros((), _F32),
            lam=jnp.zeros((), _F32),
            stats=AIMLEStats.zeros(),
        )

    def update(self, state: AIMLEState, stats: AIMLEState | AIMLEStats) -> AIMLEState:
        """Applies the reference rule once with the summed statistics of the backward passes.

        Args:
          state: the state the gradient was computed with.
          stats: the cotangent of ``state`` returned by ``jax.grad`` (an :class:`AIMLEState`), or
            its ``stats`` field. Statistics from several calls, instances or devices must be
            summed (autodiff and ``psum`` do so), not averaged.

        Returns:
          The new state, with zero statistics. Without statistics (``estimates == 0``: no backward
          pass used the state) the state is returned unchanged.
        """
        if isinstance(stats, AIMLEState):
            stats = stats.stats
        if not isinstance(stats, AIMLEStats):
            raise TypeError(
                "stats must be the cotangent of the state (an AIMLEState) or its AIMLEStats; got "
                f"{type(stats).__name__}."
            )
        count = stats.estimates.astype(_F32)
        seen = count > 0
        safe = jnp.where(seen, count, 1.0)
        nnz = stats.nnz_sum.astype(_F32) / safe
        decay = jnp.asarray(self.decay, _F32)
        avg = decay * state.nnz + (1 - decay) * nnz
        step = jnp.asarray(self.step, _F32)
        move = jnp.where(avg < jnp.asarray(self.target_norm, _F32), step, -step)
        velocity = jnp.asarray(self.momentum, _F32) * state.velocity + move
        beta = jnp.maximum(state.beta + velocity, 0.0)
        calls = stats.calls.astype(_F32)
        lam = stats.lam_sum.astype(_F32) / jnp.where(calls > 0, calls, 1.0)
        return AIMLEState(
            beta=jnp.where(seen, beta, state.beta),
            nnz=jnp.where(seen, avg, state.nnz),
            velocity=jnp.where(seen, velocity, state.velocity),
            lam=jnp.where(seen, lam, state.lam),
            stats=AIMLEStats.zeros(),
        )

    def check_state(self, state: Any) -> None:
        """Raises ``TypeError`` unless ``state`` is an :class:`AIMLEState`."""
        if not isinstance(state, AIMLEState):
            raise TypeError(
                "An adaptive target needs state=target.init() (an AIMLEState); got "
                f"{type(state).__name__}."
            )

    def gradient(self, solve, theta, eps, z, g, state, noise_tau):
        self.check_state(state)
        dtype = theta.dtype
        num_samples = g.shape[0]
        theta32 = theta.astype(_F32)
        g32 = g.astype(_F32)
        norm_theta = jnp.sqrt(jnp.sum(theta32**2) * num_samples)
        norm_g = jnp.sqrt(jnp.sum(g32**2))
        positive = norm_g > 0
        lam = jnp.where(positive, state.beta * norm_theta / jnp.where(positive, norm_g, 1), 0.0)
        lam_d = lam.astype(dtype)
        eps_t = target_noise(eps, self.target_tau, noise_tau)
        base = (jnp.asarray(self.alpha, dtype) * theta)[None]
        if self.central:
            diff = solve(base + lam_d * g + eps_t) - solve(base - lam_d * g + eps_t)
            denom = 2 * lam
        else:
            diff = z - solve(base - lam_d * g + eps_t)
            denom = lam
        denom = jnp.where(lam > 0, denom, 1.0)
        grad = (jnp.sum(diff.astype(_F32), axis=0) / denom).astype(dtype)

        instances = int(np.prod(theta.shape[: self.batch_ndim], dtype=np.int64))
        # A one computed from the cotangent: under vmap the statistics must be batched like the
        # cotangent so that JAX sums them over the batch (a constant would be taken once).
        one = jnp.where(jnp.isnan(jnp.sum(g32)), 1.0, 1.0).astype(_F32)
        zero = jnp.zeros((), _F32)
        stats = AIMLEStats(
            nnz_sum=jnp.count_nonzero(diff).astype(_F32),
            estimates=one * (num_samples * instances),
            lam_sum=lam.astype(_F32),
            calls=one,
        )
        cotangent = AIMLEState(beta=zero, nnz=zero, velocity=zero, lam=zero, stats=stats)
        return grad, cotangent


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
      >>> target = ij.aimle(step=0.1)
      >>> f = ij.imle(ij.top_k(2), noise=ij.sog(2), target=target)
      >>> loss = lambda t, s: f(jax.random.key(0), t, state=s) @ jnp.arange(4.0)
      >>> state = target.init()
      >>> g, stats = jax.grad(loss, argnums=(0, 1))(jnp.zeros(4), state)
      >>> state = target.update(state, stats)
      >>> g.shape, round(float(state.beta), 3)
      ((4,), 1.1)

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
