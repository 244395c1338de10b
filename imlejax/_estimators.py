r"""Gradient estimators that I-MLE is compared against, in the shape of :func:`imlejax.imle`.

Every factory returns a function ``f(key, theta, *args)`` acting on one instance: ``key`` is a
typed or raw PRNG key (accepted and ignored by the deterministic :func:`blackbox`), ``theta`` the
one differentiable argument, ``args`` extra arguments. ``samples=None`` gives one sample shaped like
``theta``, ``samples=S`` a leading sample axis of size ``S`` (except where a docstring says the
sample axis is averaged, as for the perturbed optimizer and the score-function loss).
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from imlejax import ksubset
from imlejax._checks import check_positive
from imlejax._imle import as_key, check_oracle_output, check_theta, imle
from imlejax._noise import Gumbel, Noise, sample_noise
from imlejax._oracles import top_k
from imlejax._targets import pid

__all__ = [
    "ste",
    "sfe",
    "blackbox",
    "perturbed",
    "fenchel_young_loss",
    "gumbel_softmax",
    "l2x",
    "softsub",
    "simple",
]

_DEFAULT_GUMBEL = Gumbel(1.0)


# ----------------------------------------------------------------------------------------------
# Shared validation
# ----------------------------------------------------------------------------------------------


def _check_samples(samples: Any) -> int | None:
    if samples is not None and (
        isinstance(samples, bool) or not isinstance(samples, (int, np.integer)) or samples < 1
    ):
        raise ValueError(f"samples must be None or an integer >= 1; got {samples!r}.")
    return None if samples is None else int(samples)


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1; got {k!r}.")
    return int(k)


def _check_map_fn(map_fn: Any) -> None:
    if not callable(map_fn):
        raise TypeError(f"map_fn must be callable; got {map_fn!r}.")


def _check_noise(noise: Any) -> None:
    if noise is not None and not callable(getattr(noise, "sample", None)):
        raise TypeError(f"noise must have a sample(key, shape, dtype) method; got {noise!r}.")


def _check_last_axis(theta: jax.Array, k: int, who: str) -> int:
    if theta.ndim == 0:
        raise ValueError(f"{who}: theta must have at least one dimension; got a scalar.")
    m = theta.shape[-1]
    if k > m:
        raise ValueError(
            f"{who}: k={k} exceeds the size {m} of the last axis of theta (shape {theta.shape})."
        )
    return m


def _zero_cotangent(x: Any) -> Any:
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return None


def _stop_args(args: tuple) -> tuple:
    return jax.tree.map(jax.lax.stop_gradient, args)


def _lead(x: jax.Array, ndim: int) -> jax.Array:
    """``x`` with leading unit axes up to ``ndim`` dimensions (explicit rank promotion)."""
    return jnp.reshape(x, (1,) * (ndim - x.ndim) + x.shape)


def _sample_shape(samples: int | None, shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape if samples is None else (samples, *shape)


def _named(fn: Callable, name: str, wrapped: Any = None) -> Callable:
    fn.__name__ = fn.__qualname__ = name
    if wrapped is not None:
        fn.__wrapped__ = wrapped  # type: ignore[attr-defined]
    return fn


# ----------------------------------------------------------------------------------------------
# Straight-through
# ----------------------------------------------------------------------------------------------


def ste(
    map_fn: Callable[..., jax.Array],
    *,
    noise: Noise | None = None,
    samples: int | None = None,
    minimize: bool = False,
) -> Callable[..., jax.Array]:
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
      noise: perturbation distribution (:func:`imlejax.gumbel`, :func:`imlejax.sog`), or ``None``
        (default) for the unperturbed MAP.
      samples: ``None`` for one sample shaped like ``theta``; ``S`` for a leading axis of size S.
      minimize: the oracle minimises costs; the differentiable argument is then the cost ``w``.

    Returns:
      ``f(key, theta, *args)``; ``args`` pass unchanged to ``map_fn`` with zero cotangents.

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
    _check_map_fn(map_fn)
    samples = _check_samples(samples)
    _check_noise(noise)
    num = 1 if samples is None else samples

    def oracle(theta, args):
        return map_fn(-theta, *args) if minimize else map_fn(theta, *args)

    @jax.custom_vjp
    def core(key, theta, args, noise):
        eps = sample_noise(noise, key, (num, *theta.shape), theta.dtype)
        return jax.vmap(lambda t: oracle(t, args))(theta[None] + eps)

    def core_fwd(key, theta, args, noise):
        return core(key, theta, args, noise), args

    def core_bwd(args, g):
        return (None, jnp.sum(g, axis=0), jax.tree.map(_zero_cotangent, args), None)

    core.defvjp(core_fwd, core_bwd)

    def sampler(key, theta, *args):
        key = as_key(key)
        theta = check_theta(theta)
        if minimize:
            theta = -theta
        check_oracle_output(lambda t, *a: oracle(t, a), theta, args)
        z = core(key, theta, args, noise)
        return z[0] if samples is None else z

    return _named(sampler, f"ste({getattr(map_fn, '__name__', 'map_fn')})", map_fn)


# ----------------------------------------------------------------------------------------------
# Score function
# ----------------------------------------------------------------------------------------------


def sfe(
    k: int,
    loss_fn: Callable[..., jax.Array],
    *,
    tau: Any = 1.0,
    samples: int | None = None,
    baseline: str | float | None = None,
) -> Callable[..., jax.Array]:
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

    Args:
      k: subset size, a static int with ``1 <= k <= m``.
      loss_fn: ``loss_fn(z, *args) -> scalar`` for a state ``z`` of shape ``(m,)``;
        ``jax.vmap``-able.
      tau: temperature of the distribution, a positive scalar.
      samples: ``None`` for one sample, ``S`` for the mean over ``S`` samples.
      baseline: ``None``, ``"mean"`` (leave-one-out) or a float.

    Returns:
      ``f(key, theta, *args) -> scalar`` for ``theta`` of shape ``(m,)``.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> b = jnp.array([1.0, 0.0, 1.0, 0.0])
      >>> loss = lambda z: jnp.sum((z - b) ** 2)
      >>> f = ij.sfe(2, loss, samples=8, baseline="mean")
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
    k = _check_k(k)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable; got {loss_fn!r}.")
    check_positive("tau", tau)
    samples = _check_samples(samples)
    num = 1 if samples is None else samples
    if isinstance(baseline, str):
        if baseline != "mean":
            raise ValueError(f"baseline must be None, 'mean' or a float; got {baseline!r}.")
        if num < 2:
            raise ValueError("baseline='mean' (leave-one-out) needs samples >= 2.")
    elif baseline is not None and (
        isinstance(baseline, bool)
        or not isinstance(baseline, numbers.Real)
        or not np.isfinite(baseline)
    ):
        raise ValueError(f"baseline must be None, 'mean' or a finite float; got {baseline!r}.")

    def estimate(key, theta, *args):
        key = as_key(key)
        theta = check_theta(theta)
        fixed = jax.lax.stop_gradient(theta)
        if samples is None:
            z = ksubset.sample(key, fixed, k, tau)[None]
        else:
            z = ksubset.sample(key, fixed, k, tau, samples=samples)
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
        log_p = z @ theta / jnp.asarray(tau, theta.dtype) - ksubset.log_partition(theta, k, tau)
        score = (log_p - jax.lax.stop_gradient(log_p)).astype(losses.dtype)
        return jnp.mean(losses) + jnp.sum(jax.lax.stop_gradient(centred) / num * score)

    return _named(estimate, f"sfe(k={k})", loss_fn)


# ----------------------------------------------------------------------------------------------
# Blackbox differentiation
# ----------------------------------------------------------------------------------------------


def blackbox(
    map_fn: Callable[..., jax.Array], *, lam: Any, minimize: bool = False
) -> Callable[..., jax.Array]:
    r"""Blackbox differentiation of combinatorial solvers (BB, Vlastelica et al. 2020).

    For a minimisation oracle :math:`y(w)` on costs :math:`w` (``minimize=True``), forward
    :math:`y(w)` and, with the upstream gradient :math:`g = \partial\ell/\partial y`,

    .. math:: w' = w + \lambda g, \qquad
              \frac{\partial \ell}{\partial w} \approx -\frac{y(w) - y(w')}{\lambda}.

    For a maximisation oracle (the default) the mirrored form with :math:`\theta = -w`:
    :math:`\partial\ell/\partial\theta \approx [\mathrm{MAP}(\theta) - \mathrm{MAP}(\theta -
    \lambda g)]/\lambda`. This is I-MLE without noise and with the perturbation target
    (Niepert et al. 2021), and is computed by ``imle(map_fn, noise=None, target=pid(lam))``:
    one oracle call forward, one backward, only ``theta``, ``z`` and ``args`` kept.

    Args:
      map_fn: the oracle on one instance, ``map_fn(theta, *args) -> z`` (maximising), or
        ``map_fn(w, *args) -> y`` (minimising costs) with ``minimize=True``.
      lam: interpolation step :math:`\lambda > 0` (``ValueError`` otherwise).
      minimize: the oracle minimises costs; the differentiable argument is the cost ``w``.

    Returns:
      ``f(key, theta, *args)``; the key is accepted and ignored, ``args`` pass unchanged to
      ``map_fn`` with zero cotangents.

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
    _check_map_fn(map_fn)
    check_positive("lam", lam)
    inner = imle(map_fn, noise=None, target=pid(lam), minimize=minimize)

    def solver(key, theta, *args):
        return inner(key, theta, *args)

    return _named(solver, f"blackbox({getattr(map_fn, '__name__', 'map_fn')})", map_fn)


# ----------------------------------------------------------------------------------------------
# Perturbed optimizers and the Fenchel-Young loss
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _GumbelDensity:
    """Gumbel(0, tau) noise with its log-density ``-z/tau - exp(-z/tau)`` (up to a constant)."""

    noise: Gumbel

    def sample(self, key, shape, dtype=jnp.float32):
        return self.noise.sample(key, shape, dtype)

    def log_prob(self, z):
        x = z / jnp.asarray(self.noise.tau, z.dtype)
        return -x - jnp.exp(-x)


@dataclasses.dataclass(frozen=True)
class _NormalDensity:
    """Standard normal noise with its log-density ``-z**2/2`` (up to a constant)."""

    def sample(self, key, shape, dtype=jnp.float32):
        return jax.random.normal(key, shape, dtype)

    def log_prob(self, z):
        return -0.5 * z * z


def _resolve_noise(noise: Any, *, density: bool) -> Any:
    if isinstance(noise, str):
        if noise == "gumbel":
            noise = _DEFAULT_GUMBEL
        elif noise == "normal":
            return _NormalDensity()
        else:
            raise ValueError(f"noise must be 'gumbel', 'normal' or a noise object; got {noise!r}.")
    if isinstance(noise, Gumbel):
        return _GumbelDensity(noise) if density else noise
    if not callable(getattr(noise, "sample", None)):
        raise TypeError(f"noise must have a sample(key, shape, dtype) method; got {noise!r}.")
    if density and not callable(getattr(noise, "log_prob", None)):
        raise TypeError(
            "perturbed needs the noise's log-density: pass 'gumbel', 'normal', ij.gumbel(tau) or "
            f"an object with sample(key, shape, dtype) and log_prob(z); got {noise!r}."
        )
    return noise


def perturbed(
    map_fn: Callable[..., jax.Array],
    *,
    noise: Any = _DEFAULT_GUMBEL,
    sigma: Any = 1.0,
    samples: int | None = None,
) -> Callable[..., jax.Array]:
    r"""Differentiable perturbed optimizer (DPO, Berthet et al. 2020).

    Forward, the Monte Carlo estimate of the perturbed maximiser

    .. math:: \hat y(\theta) = \frac1S\sum_{s=1}^{S}\mathrm{MAP}(\theta + \sigma Z_s)
              \approx y_\sigma(\theta) = \mathbb{E}_Z[\mathrm{MAP}(\theta + \sigma Z)],

    shaped like ``theta`` (the sample axis is averaged). Backward, the perturbed-optimizer
    Jacobian estimate, with :math:`\nu` the density of :math:`Z`,

    .. math:: J_\theta y_\sigma \approx \frac{1}{S\sigma}\sum_s
              \big(\mathrm{MAP}(\theta+\sigma Z_s) - \mathrm{MAP}(\theta)\big)\,
              \nabla(-\log\nu)(Z_s)^\top,

    which is :math:`Z_s/\sigma` for normal noise and :math:`(1 - e^{-Z_s})/\sigma` for standard
    Gumbel noise (:math:`(1 - e^{-Z_s/\tau})/(\sigma\tau)` for ``ij.gumbel(tau)``). The
    unperturbed :math:`\mathrm{MAP}(\theta)` is a control variate: its score has mean zero, so
    the estimate stays unbiased (one extra oracle call). It is written with the "magic box"
    :math:`\exp(\log\nu - \mathrm{sg}(\log\nu))`, so higher derivatives are estimated too. For
    argmax and Gumbel noise, :math:`y_\sigma(\theta) = \mathrm{softmax}(\theta/\sigma)`.

    The noise is drawn at once as ``noise.sample(key, (S, *theta.shape), theta.dtype)``.

    This is the estimator of ``optax.perturbations.make_perturbed_fun`` (optax 0.2.8, with its
    default baseline), whose key-first, one-instance shape it shares. It is implemented here
    rather than reused because imlejax's core depends on JAX alone (optax is an optional extra),
    because optax's noise objects carry no scale (imlejax's ``Gumbel(tau)`` does), and because
    optax draws the noise from one key per sample, split once more per leaf: two extra key
    derivations per call, which make the XLA compilation of a jitted gradient markedly slower.

    Args:
      map_fn: the MAP oracle on one instance, ``map_fn(theta, *args) -> z`` of ``theta``'s shape
        and dtype (checked at trace time).
      noise: ``ij.gumbel(tau)`` (default ``Gumbel(0, 1)``), ``"gumbel"``, ``"normal"``, or any
        object with ``sample(key, shape, dtype)`` and ``log_prob(z)`` (such as
        ``optax.perturbations.Normal()``).
      sigma: scale :math:`\sigma > 0` of the perturbation.
      samples: number ``S`` of perturbations averaged (``None``: one).

    Returns:
      ``f(key, theta, *args) -> y_hat`` shaped like ``theta``; ``args`` pass unchanged to
      ``map_fn`` with zero cotangents.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> f = ij.perturbed(ij.argmax(), sigma=0.5, samples=100)
      >>> theta = jnp.array([1.0, 0.5, -1.0])
      >>> y = f(jax.random.key(0), theta)
      >>> y.shape, round(float(y.sum()), 4)
      ((3,), 1.0)
      >>> jax.jacrev(f, argnums=1)(jax.random.key(0), theta).shape
      (3, 3)

    References:
      Berthet, Blondel, Teboul, Cuturi, Vert & Bach, *Learning with Differentiable Perturbed
      Optimizers*, NeurIPS 2020; Foerster et al., *DiCE: The Infinitely Differentiable Monte
      Carlo Estimator*, ICML 2018.
    """
    _check_map_fn(map_fn)
    check_positive("sigma", sigma)
    samples = _check_samples(samples)
    density = _resolve_noise(noise, density=True)
    num = 1 if samples is None else samples

    def smoothed(key, theta, *args):
        key = as_key(key)
        theta = check_theta(theta)
        check_oracle_output(map_fn, theta, args)
        fixed_args = _stop_args(args)
        scale = jnp.asarray(sigma, theta.dtype)
        baseline = map_fn(jax.lax.stop_gradient(theta), *fixed_args)

        def one(eps):
            point = jax.lax.stop_gradient(theta + scale * eps)
            z = (point - theta) / scale
            log_nu = jnp.sum(density.log_prob(z))
            box = jnp.exp(log_nu - jax.lax.stop_gradient(log_nu))
            return box * map_fn(point, *fixed_args) + (1 - box) * baseline

        eps = density.sample(key, (num, *theta.shape), theta.dtype)
        return jnp.mean(jax.vmap(one)(eps), axis=0)

    return _named(smoothed, f"perturbed({getattr(map_fn, '__name__', 'map_fn')})", map_fn)


def fenchel_young_loss(
    map_fn: Callable[..., jax.Array],
    *,
    noise: Any = _DEFAULT_GUMBEL,
    sigma: Any = 1.0,
    samples: int | None = None,
) -> Callable[..., jax.Array]:
    r"""Perturbed Fenchel-Young loss (Berthet et al. 2020) around a MAP oracle.

    With :math:`F_\sigma(\theta) = \mathbb{E}_Z[\max_{z\in C}\langle z, \theta + \sigma Z\rangle]`,
    whose gradient is the perturbed maximiser :math:`y_\sigma(\theta) =
    \mathbb{E}[\mathrm{MAP}(\theta+\sigma Z)]`, the loss is

    .. math:: L(\theta; y) = \hat F_\sigma(\theta) - \langle \theta, y\rangle, \qquad
              \hat F_\sigma(\theta) = \frac1S\sum_s \langle \hat z_s, \theta + \sigma Z_s\rangle,
              \quad \hat z_s = \mathrm{MAP}(\theta + \sigma Z_s),

    and its gradient is :math:`\nabla_\theta L = \hat y(\theta) - y` with
    :math:`\hat y = \frac1S\sum_s \hat z_s`, unbiased for :math:`y_\sigma(\theta) - y` (the
    pathwise estimate of Berthet et al., Prop. 3.1: the oracle is never differentiated). The loss
    omits the term :math:`\Omega(y) = F_\sigma^*(y)`, constant in :math:`\theta`, as
    ``optax.losses.make_fenchel_young_loss`` does. That optax function is not reused: it takes a
    deterministic ``max_fun(scores)`` with no key and vectorises it over the last axis, while
    this loss needs a key and treats ``theta`` of any shape as one instance (a grid of vertex
    costs, for instance), and optax is not a core dependency of imlejax.

    Args:
      map_fn: the MAP oracle on one instance, ``map_fn(theta, *args) -> z`` of ``theta``'s shape
        and dtype (checked at trace time).
      noise: ``ij.gumbel(tau)`` (default ``Gumbel(0, 1)``), ``ij.sog(...)``, ``"gumbel"``,
        ``"normal"``, or any object with ``sample(key, shape, dtype)``.
      sigma: scale :math:`\sigma > 0` of the perturbation.
      samples: number ``S`` of perturbations (``None``: one).

    Returns:
      ``loss(key, theta, y, *args) -> scalar``; ``args`` pass unchanged to ``map_fn`` with zero
      cotangents.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> loss = ij.fenchel_young_loss(ij.argmax(), samples=10)
      >>> theta, y = jnp.array([1.0, 0.5, -1.0]), jnp.array([0.0, 1.0, 0.0])
      >>> g = jax.grad(loss, argnums=1)(jax.random.key(0), theta, y)
      >>> round(float(g.sum()), 4)  # y_hat - y: both sum to one
      0.0

    References:
      Berthet, Blondel, Teboul, Cuturi, Vert & Bach, *Learning with Differentiable Perturbed
      Optimizers*, NeurIPS 2020; Blondel, Martins & Niculae, *Learning with Fenchel-Young
      Losses*, JMLR 2020.
    """
    _check_map_fn(map_fn)
    check_positive("sigma", sigma)
    samples = _check_samples(samples)
    sampler = _resolve_noise(noise, density=False)
    num = 1 if samples is None else samples

    def loss(key, theta, y, *args):
        key = as_key(key)
        theta = check_theta(theta)
        y = jnp.asarray(y)
        if y.shape != theta.shape:
            raise ValueError(f"y must have theta's shape {theta.shape}; got {y.shape}.")
        check_oracle_output(map_fn, theta, args)
        fixed_args = _stop_args(args)
        eps = sampler.sample(key, (num, *theta.shape), theta.dtype)
        points = theta[None] + jnp.asarray(sigma, theta.dtype) * eps
        z = jax.lax.stop_gradient(jax.vmap(lambda p: map_fn(p, *fixed_args))(points))
        value = jnp.sum(z * points) / num
        return value - jnp.vdot(y.astype(theta.dtype), theta)

    return _named(loss, f"fenchel_young_loss({getattr(map_fn, '__name__', 'map_fn')})", map_fn)


# ----------------------------------------------------------------------------------------------
# Relaxations
# ----------------------------------------------------------------------------------------------


def _normalize_axis(axis: Any, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"axis must be an integer; got {axis!r}.")
    if ndim == 0:
        raise ValueError("theta must have at least one dimension; got a scalar.")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of bounds for theta with {ndim} dimension(s).")
    return int(axis) % ndim


def gumbel_softmax(
    *, tau: Any = 1.0, hard: bool = False, axis: int = -1, samples: int | None = None
) -> Callable[..., jax.Array]:
    r"""Gumbel-softmax (Concrete) relaxation of a one-hot sample.

    With standard Gumbel noise :math:`G` drawn as ``jax.random.gumbel(key, shape, theta.dtype)``
    (``shape`` = ``theta.shape``, or ``(S, *theta.shape)`` with ``samples=S``),

    .. math:: y = \mathrm{softmax}\big((\theta + G)/\tau\big) \quad\text{along ``axis``},

    differentiated by ordinary autodiff. ``hard=True`` returns the one-hot
    :math:`\mathrm{onehot}(\arg\max y)` forward (an exact sample of
    :math:`\mathrm{softmax}(\theta)`, by the Gumbel-max trick) and the gradient of the relaxed
    :math:`y` backward (straight-through).

    Args:
      tau: temperature :math:`\tau > 0` of the softmax.
      hard: straight-through one-hot forward.
      axis: the axis of ``theta`` along which one entry is selected.
      samples: ``None`` for one sample shaped like ``theta``; ``S`` for a leading axis of size S.

    Returns:
      ``f(key, theta, *args)``; ``args`` are accepted for interchangeability with the
      oracle-based estimators and ignored.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> f = ij.gumbel_softmax(tau=0.5, hard=True, samples=3)
      >>> z = f(jax.random.key(0), jnp.array([0.0, 1.0, -1.0, 0.5]))
      >>> z.shape, z.sum(axis=-1).tolist()
      ((3, 4), [1.0, 1.0, 1.0])

    References:
      Jang, Gu & Poole, *Categorical Reparameterization with Gumbel-Softmax*, ICLR 2017;
      Maddison, Mnih & Teh, *The Concrete Distribution*, ICLR 2017.
    """
    check_positive("tau", tau)
    samples = _check_samples(samples)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
        raise ValueError(f"axis must be an integer; got {axis!r}.")

    def relaxed(key, theta, *args):
        key = as_key(key)
        theta = check_theta(theta)
        ax = _normalize_axis(axis, theta.ndim)
        shape = _sample_shape(samples, theta.shape)
        g = jax.random.gumbel(key, shape, theta.dtype)
        ax = ax if samples is None else ax + 1
        y = jax.nn.softmax((_lead(theta, g.ndim) + g) / jnp.asarray(tau, theta.dtype), axis=ax)
        if not hard:
            return y
        y_hard = jax.nn.one_hot(jnp.argmax(y, axis=ax), y.shape[ax], dtype=y.dtype, axis=ax)
        return y_hard + (y - jax.lax.stop_gradient(y))

    return _named(relaxed, "gumbel_softmax")


def l2x(k: int, *, tau: Any = 1.0, samples: int | None = None) -> Callable[..., jax.Array]:
    r"""L2X's relaxed k-hot sample: the elementwise maximum of k Concrete samples.

    With ``k`` independent standard Gumbel vectors :math:`G_j`, drawn as
    ``jax.random.gumbel(key, (k, *theta.shape))`` (``(S, k, *theta.shape)`` with ``samples=S``),

    .. math:: z = \max_{j=1..k}\ \mathrm{softmax}\big((\theta + G_j)/\tau\big),

    the softmax along the last axis and the maximum elementwise. Entries lie in ``[0, 1]`` and
    sum to at most ``k`` (close to ``k`` for small :math:`\tau` when the k draws differ).
    Differentiated by ordinary autodiff.

    Args:
      k: number of Concrete samples, an integer ``1 <= k <= m`` (``m`` = size of the last axis).
      tau: temperature :math:`\tau > 0`.
      samples: ``None`` for one sample shaped like ``theta``; ``S`` for a leading axis of size S.

    Returns:
      ``f(key, theta, *args)``; ``args`` are accepted and ignored.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> z = ij.l2x(2, tau=0.1)(jax.random.key(0), jnp.array([0.0, 3.0, -1.0, 2.5]))
      >>> z.shape, bool(z.sum() <= 2.0 + 1e-6)
      ((4,), True)

    References:
      Chen, Song, Wainwright & Jordan, *Learning to Explain: An Information-Theoretic
      Perspective on Model Interpretation*, ICML 2018.
    """
    k = _check_k(k)
    check_positive("tau", tau)
    samples = _check_samples(samples)

    def relaxed(key, theta, *args):
        key = as_key(key)
        theta = check_theta(theta)
        _check_last_axis(theta, k, "l2x")
        g = jax.random.gumbel(key, _sample_shape(samples, (k, *theta.shape)), theta.dtype)
        c = jax.nn.softmax((_lead(theta, g.ndim) + g) / jnp.asarray(tau, theta.dtype), axis=-1)
        return jnp.max(c, axis=0 if samples is None else 1)

    return _named(relaxed, f"l2x(k={k})")


def softsub(
    k: int, *, tau: Any = 1.0, samples: int | None = None, hard: bool = False
) -> Callable[..., jax.Array]:
    r"""SoftSub: the relaxed top-k of Xie & Ermon (2019) on Gumbel-perturbed scores.

    With standard Gumbel noise :math:`G` drawn as ``jax.random.gumbel(key, shape)``, start from
    :math:`r^{(1)} = \theta + G` and repeat for :math:`j = 1..k`, along the last axis,

    .. math:: a^{(j)} = \mathrm{softmax}(r^{(j)}/\tau), \qquad
              r^{(j+1)} = r^{(j)} + \log\max(1 - a^{(j)}, \delta), \qquad
              z = \sum_{j=1}^{k} a^{(j)},

    with :math:`\delta` the smallest normal number of the dtype. Each round softly removes the
    entry just selected, so :math:`z \in [0,1]^m` sums to exactly ``k`` and tends to the top-k
    indicator of :math:`\theta + G` as :math:`\tau \to 0`. ``hard=True`` returns that top-k
    indicator of ``z`` forward and the gradient of ``z`` backward (straight-through).

    Args:
      k: subset size, an integer ``1 <= k <= m`` (``m`` = size of the last axis).
      tau: temperature :math:`\tau > 0`.
      samples: ``None`` for one sample shaped like ``theta``; ``S`` for a leading axis of size S.
      hard: straight-through k-hot forward.

    Returns:
      ``f(key, theta, *args)``; ``args`` are accepted and ignored.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> z = ij.softsub(2, tau=0.5)(jax.random.key(0), jnp.array([0.0, 3.0, -1.0, 2.5]))
      >>> z.shape, round(float(z.sum()), 4)
      ((4,), 2.0)

    References:
      Xie & Ermon, *Reparameterizable Subset Sampling via Continuous Relaxations*, IJCAI 2019;
      Plötz & Roth, *Neural Nearest Neighbors Networks*, NeurIPS 2018.
    """
    k = _check_k(k)
    check_positive("tau", tau)
    samples = _check_samples(samples)
    oracle = top_k(k)

    def relaxed(key, theta, *args):
        key = as_key(key)
        theta = check_theta(theta)
        _check_last_axis(theta, k, "softsub")
        g = jax.random.gumbel(key, _sample_shape(samples, theta.shape), theta.dtype)
        t = jnp.asarray(tau, theta.dtype)
        tiny = jnp.asarray(jnp.finfo(theta.dtype).tiny, theta.dtype)

        def round_(carry, _):
            r, z = carry
            a = jax.nn.softmax(r / t, axis=-1)
            return (r + jnp.log(jnp.maximum(1 - a, tiny)), z + a), None

        init = (_lead(theta, g.ndim) + g, jnp.zeros_like(g))
        (_, z), _ = jax.lax.scan(round_, init, None, length=k)
        if not hard:
            return z
        return oracle(jax.lax.stop_gradient(z)) + (z - jax.lax.stop_gradient(z))

    return _named(relaxed, f"softsub(k={k})")


def simple(k: int, *, tau: Any = 1.0, samples: int | None = None) -> Callable[..., jax.Array]:
    r"""SIMPLE: exact k-subset samples forward, the gradient of the exact marginals backward.

    Forward, :math:`z \sim p(z;\theta) \propto \exp(\langle z,\theta\rangle/\tau)` with
    :math:`\sum_i z_i = k`, drawn exactly by :func:`imlejax.ksubset.sample` (same key, same
    sample). Backward, straight through the marginals :math:`\mu(\theta) =
    \mathbb{E}_p[z]` (:func:`imlejax.ksubset.marginals`):

    .. math:: \frac{\partial\ell}{\partial\theta} \approx
              \Big(\frac{\partial\mu}{\partial\theta}\Big)^{\!\top} \sum_{s} g_s, \qquad
              \frac{\partial\mu_i}{\partial\theta_j} = \frac{\mathrm{Cov}(z_i, z_j)}{\tau},

    computed as ``z + (mu - stop_gradient(mu))``, whose value is exactly ``z``. Cost O(mk) for
    the samples and the marginals, and O(mk) residuals for the reverse pass.

    Args:
      k: subset size, a static int with ``1 <= k <= m``.
      tau: temperature :math:`\tau > 0`.
      samples: ``None`` for one sample of shape ``(m,)``; ``S`` for shape ``(S, m)``.

    Returns:
      ``f(key, theta, *args)`` for ``theta`` of shape ``(m,)``; ``args`` are accepted and
      ignored.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> f = ij.simple(2)
      >>> theta = jnp.array([0.0, 1.0, -1.0, 2.0])
      >>> z = f(jax.random.key(0), theta)
      >>> float(z.sum())
      2.0
      >>> w = jnp.arange(4.0)
      >>> g = jax.grad(lambda t: f(jax.random.key(0), t) @ w)(theta)
      >>> g_mu = jax.grad(lambda t: ij.ksubset.marginals(t, 2) @ w)(theta)
      >>> bool(jnp.allclose(g, g_mu))
      True

    References:
      Ahmed, Zeng, Niepert & Van den Broeck, *SIMPLE: A Gradient Estimator for k-Subset
      Sampling*, ICLR 2023.
    """
    k = _check_k(k)
    check_positive("tau", tau)
    samples = _check_samples(samples)

    def estimate(key, theta, *args):
        key = as_key(key)
        theta = check_theta(theta)
        fixed = jax.lax.stop_gradient(theta)
        z = ksubset.sample(key, fixed, k, tau, samples=samples)
        mu = ksubset.marginals(theta, k, tau)
        return z + _lead(mu - jax.lax.stop_gradient(mu), z.ndim)

    return _named(estimate, f"simple(k={k})")
