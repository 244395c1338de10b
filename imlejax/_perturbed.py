"""Perturbed optimizers (DPO) and the perturbed Fenchel-Young loss (Berthet et al., 2020)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from imlejax._core import Estimator, prepare, signed_oracle
from imlejax._noise import DEFAULT_NOISE, resolve_noise
from imlejax._validation import check_bool, check_callable, check_int

__all__ = ["fenchel_young_loss", "perturbed"]

_P = inspect.Parameter
_FY_SIGNATURE = inspect.Signature(
    [
        _P("key", _P.POSITIONAL_OR_KEYWORD),
        _P("theta", _P.POSITIONAL_OR_KEYWORD),
        _P("y", _P.POSITIONAL_OR_KEYWORD),
        _P("args", _P.VAR_POSITIONAL),
    ]
)


def _density_noise(noise: Any) -> Any:
    noise = resolve_noise(noise)
    if not callable(getattr(noise, "log_prob", None)):
        raise TypeError(
            "perturbed needs the noise's log-density: pass ij.gumbel(tau), ij.normal(tau) or an "
            f"object with sample(key, shape, dtype), tau and log_prob(eps); got {noise!r}."
        )
    return noise


def _options(num_samples: int, minimize: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"num_samples": num_samples}
    if minimize:
        out["minimize"] = True
    return out


def perturbed(
    map_fn: Callable[..., jax.Array],
    *,
    noise: Any = DEFAULT_NOISE,
    num_samples: int = 1,
    minimize: bool = False,
) -> Estimator:
    r"""Differentiable perturbed optimizer (DPO, Berthet et al. 2020).

    Forward, the Monte Carlo estimate of the perturbed maximiser

    .. math:: \hat y(\theta) = \frac1S\sum_{s=1}^{S}\mathrm{MAP}(\theta + \sigma Z_s)
              \approx y_\sigma(\theta) = \mathbb{E}_Z[\mathrm{MAP}(\theta + \sigma Z)],

    with :math:`\sigma Z` drawn from ``noise`` (:math:`\sigma` is the noise's ``tau``)

    shaped like ``theta`` (the sample axis is averaged). Backward, the perturbed-optimizer
    Jacobian estimate, with :math:`\nu` the density of :math:`Z`,

    .. math:: J_\theta y_\sigma \approx \frac{1}{S\sigma}\sum_s
              \big(\mathrm{MAP}(\theta+\sigma Z_s) - \mathrm{MAP}(\theta)\big)\,
              \nabla(-\log\nu)(Z_s)^\top,

    which is :math:`Z_s/\sigma` for normal noise and :math:`(1 - e^{-Z_s})/\sigma` for Gumbel
    noise. The
    unperturbed :math:`\mathrm{MAP}(\theta)` is a control variate: its score has mean zero, so
    the estimate stays unbiased (one extra oracle call). It is written with the "magic box"
    :math:`\exp(\log\nu - \mathrm{sg}(\log\nu))`, so higher derivatives are estimated too. For
    argmax and Gumbel noise, :math:`y_\sigma(\theta) = \mathrm{softmax}(\theta/\sigma)`.

    The noise is drawn at once as ``noise.sample(key, (S, *theta.shape), theta.dtype)``; the
    sample axis is averaged (``num_samples``), since the output is an expectation.

    This is the estimator of ``optax.perturbations.make_perturbed_fun`` (optax 0.2.8, with its
    default baseline), whose key-first, one-instance shape it shares. It is implemented here
    rather than reused because imlejax's core depends on JAX alone (optax is an optional extra),
    because optax's noise objects carry no scale (imlejax's ``gumbel(tau)`` does), and because
    optax draws the noise from one key per sample, split once more per leaf: two extra key
    derivations per call, which make the XLA compilation of a jitted gradient markedly slower.

    Args:
      map_fn: the MAP oracle on one instance, ``map_fn(theta, *args) -> z`` of ``theta``'s shape
        and dtype (checked at trace time).
      noise: a noise with a density: :func:`imlejax.gumbel` (default ``gumbel(1.0)``),
        :func:`imlejax.normal`, or any object with ``sample(key, shape, dtype)``, ``tau`` and
        ``log_prob(eps)`` (the elementwise log-density of the scaled noise). Its ``tau`` is the
        scale :math:`\sigma`.
      num_samples: number ``S >= 1`` of perturbations averaged.
      minimize: the oracle minimises costs ``w`` (the differentiable argument); internally
        :math:`\theta = -w`, as in :func:`imlejax.imle`.

    Returns:
      An :class:`imlejax.Estimator` ``f(key, theta, *args) -> y_hat`` shaped like ``theta``;
      ``args`` pass unchanged to ``map_fn`` with zero cotangents.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> f = ij.perturbed(ij.argmax(), noise=ij.gumbel(0.5), num_samples=100)
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
    check_callable("map_fn", map_fn)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    minimize = check_bool("minimize", minimize)
    noise = _density_noise(noise)

    oracle = signed_oracle(map_fn, minimize)

    def smoothed(key, theta, *args):
        key, theta = prepare(key, theta, args, oracle, minimize)
        fixed_args = jax.tree.map(jax.lax.stop_gradient, args)
        baseline = oracle(jax.lax.stop_gradient(theta), fixed_args)

        def one(eps):
            point = jax.lax.stop_gradient(theta + eps)
            log_nu = jnp.sum(noise.log_prob(point - theta))
            box = jnp.exp(log_nu - jax.lax.stop_gradient(log_nu))
            return box * oracle(point, fixed_args) + (1 - box) * baseline

        eps = noise.sample(key, (num_samples, *theta.shape), theta.dtype)
        return jnp.mean(jax.vmap(one)(eps), axis=0)

    return Estimator(
        "perturbed", smoothed, map_fn=map_fn, noise=noise, options=_options(num_samples, minimize)
    )


def fenchel_young_loss(
    map_fn: Callable[..., jax.Array],
    *,
    noise: Any = DEFAULT_NOISE,
    num_samples: int = 1,
    minimize: bool = False,
) -> Estimator:
    r"""Perturbed Fenchel-Young loss (Berthet et al. 2020) around a MAP oracle.

    With :math:`F_\sigma(\theta) = \mathbb{E}_Z[\max_{z\in C}\langle z, \theta + \sigma Z\rangle]`
    (:math:`\sigma Z` drawn from ``noise``),
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
      noise: the perturbation :math:`\sigma Z` (default :func:`imlejax.gumbel` ``(1.0)``; any
        :class:`imlejax.Noise`, e.g. :func:`imlejax.normal` or :func:`imlejax.sog`).
      num_samples: number ``S >= 1`` of perturbations averaged.
      minimize: the oracle minimises costs ``w`` (the differentiable argument); internally
        :math:`\theta = -w`, so the gradient with respect to ``w`` is :math:`y - \hat y`.

    Returns:
      An :class:`imlejax.Estimator` ``loss(key, theta, y, *args) -> scalar``; ``args`` pass
      unchanged to ``map_fn`` with zero cotangents.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> loss = ij.fenchel_young_loss(ij.argmax(), num_samples=10)
      >>> theta, y = jnp.array([1.0, 0.5, -1.0]), jnp.array([0.0, 1.0, 0.0])
      >>> g = jax.grad(loss, argnums=1)(jax.random.key(0), theta, y)
      >>> round(float(g.sum()), 4)  # y_hat - y: both sum to one
      0.0

    References:
      Berthet, Blondel, Teboul, Cuturi, Vert & Bach, *Learning with Differentiable Perturbed
      Optimizers*, NeurIPS 2020; Blondel, Martins & Niculae, *Learning with Fenchel-Young
      Losses*, JMLR 2020.
    """
    check_callable("map_fn", map_fn)
    num_samples = check_int("num_samples", num_samples, minimum=1)
    minimize = check_bool("minimize", minimize)
    noise = resolve_noise(noise)

    oracle = signed_oracle(map_fn, minimize)

    def loss(key, theta, *rest):
        if not rest:
            raise TypeError("fenchel_young_loss: call it as loss(key, theta, y, *args).")
        y, args = jnp.asarray(rest[0]), rest[1:]
        if y.shape != jnp.shape(theta):
            raise ValueError(f"y must have theta's shape {jnp.shape(theta)}; got {y.shape}.")
        key, theta = prepare(key, theta, args, oracle, minimize)
        fixed_args = jax.tree.map(jax.lax.stop_gradient, args)
        eps = noise.sample(key, (num_samples, *theta.shape), theta.dtype)
        points = theta[None] + eps
        z = jax.lax.stop_gradient(jax.vmap(lambda p: oracle(p, fixed_args))(points))
        value = jnp.sum(z * points) / num_samples
        return value - jnp.vdot(y.astype(theta.dtype), theta)

    return Estimator(
        "fenchel_young_loss",
        loss,
        map_fn=map_fn,
        noise=noise,
        options=_options(num_samples, minimize),
        signature=_FY_SIGNATURE,
    )
