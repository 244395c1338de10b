"""The I-MLE transform: a MAP oracle becomes a differentiable perturb-and-MAP sampler."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from imlejax._noise import Gumbel, Noise, sample_noise
from imlejax._targets import PerturbationTarget, Target

__all__ = ["imle"]

_DEFAULT_NOISE = Gumbel(1.0)
_DEFAULT_TARGET = PerturbationTarget(lam=1.0)


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or repr(fn)


def as_key(key: Any) -> jax.Array:
    """Accepts a typed key (``jax.random.key``) or a raw ``jax.random.PRNGKey``."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(
                f"key must be a single PRNG key; got shape {key.shape}. Split keys and use "
                "jax.vmap for batches."
            )
        return key
    if key.dtype == jnp.uint32 and key.shape == (2,):
        return jax.random.wrap_key_data(key)
    raise TypeError(
        "key must be a typed key from jax.random.key or a raw jax.random.PRNGKey "
        f"(uint32, shape (2,)); got dtype {key.dtype} and shape {key.shape}."
    )


def check_theta(theta: Any, name: str = "theta") -> jax.Array:
    theta = jnp.asarray(theta)
    if not jnp.issubdtype(theta.dtype, jnp.floating):
        raise TypeError(f"{name} must have a floating dtype; got {theta.dtype}.")
    return theta


def check_oracle_output(map_fn: Callable, theta: jax.Array, args: tuple) -> None:
    """Checks at trace time that ``map_fn(theta, *args)`` has the shape and dtype of ``theta``."""
    try:
        out = jax.eval_shape(map_fn, theta, *args)
    except (TypeError, ValueError) as err:
        msg = f"map_fn {_name(map_fn)} failed on theta of shape {theta.shape}: {err}"
        raise type(err)(msg) from err
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(
            f"map_fn {_name(map_fn)} must return a single array; got {jax.tree.structure(out)}."
        )
    if out.shape != theta.shape:
        raise ValueError(
            f"map_fn {_name(map_fn)} must return an array of theta's shape {theta.shape}; "
            f"got shape {out.shape}."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(
            f"map_fn {_name(map_fn)} must return a floating array (0./1. entries); got {out.dtype}."
        )
    if out.dtype != theta.dtype:
        raise TypeError(
            f"map_fn {_name(map_fn)} must return theta's dtype {theta.dtype}; got {out.dtype}."
        )


def imle(
    map_fn: Callable[..., jax.Array] | None = None,
    *,
    noise: Noise | None = _DEFAULT_NOISE,
    target: Target = _DEFAULT_TARGET,
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
      noise: perturbation distribution (:func:`gumbel`, :func:`sog`), or ``None`` for none.
      target: target distribution, :func:`pid` (default ``pid(1.0)``) or :func:`aimle`.
      samples: ``None`` for one sample shaped like ``theta``; ``S`` for a leading axis of size S.
      minimize: the oracle minimises costs ``w``. The differentiable argument is then ``w``, the
        distribution is :math:`p(z; w) \propto \exp(-\langle z, w\rangle/\tau)` (:math:`\theta=-w`),
        the oracle is called on ``w - eps``, and the gradient is taken with respect to ``w``.

    Returns:
      ``f(key, theta, *args)`` (``f(key, theta, *args, state=state)`` for an adaptive target):
      ``key`` a typed or raw PRNG key, ``theta`` the one differentiable argument, ``args`` passed
      unchanged to ``map_fn`` with zero cotangents.

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
    if not callable(map_fn):
        raise TypeError(f"map_fn must be callable; got {map_fn!r}.")
    if samples is not None and (
        isinstance(samples, bool) or not isinstance(samples, int) or samples < 1
    ):
        raise ValueError(f"samples must be None or an integer >= 1; got {samples!r}.")
    if noise is not None and not callable(getattr(noise, "sample", None)):
        raise TypeError(f"noise must have a sample(key, shape, dtype) method; got {noise!r}.")
    if not callable(getattr(target, "gradient", None)):
        raise TypeError(
            f"target must be a target such as ij.pid(...) or ij.aimle(...); got {target!r}."
        )
    stateful = bool(getattr(target, "stateful", False))
    num = 1 if samples is None else samples

    def oracle(theta, args):
        # Internally theta maximises <z, theta>; a minimisation oracle sees the cost -theta.
        return map_fn(-theta, *args) if minimize else map_fn(theta, *args)

    def solve(thetas, args):
        return jax.vmap(lambda t: oracle(t, args))(thetas)

    def draw(key, theta, noise):
        return sample_noise(noise, key, (num, *theta.shape), theta.dtype)

    @jax.custom_vjp
    def core(key, theta, args, noise, target, state):
        return solve(theta[None] + draw(key, theta, noise), args)

    def core_fwd(key, theta, args, noise, target, state):
        z = core(key, theta, args, noise, target, state)
        return z, (key, theta, z, args, noise, target, state)

    def core_bwd(res, g):
        key, theta, z, args, noise, target, state = res
        eps = draw(key, theta, noise)
        tau = None if noise is None else noise.tau
        grad, new_state = target.gradient(
            lambda thetas: solve(thetas, args), theta, eps, z, g.astype(theta.dtype), state, tau
        )
        zeros = functools.partial(jax.tree.map, _zero_cotangent)
        return (None, grad, zeros(args), None, None, new_state)

    core.defvjp(core_fwd, core_bwd)

    def sampler(key, theta, *args, state=None):
        key = as_key(key)
        theta = check_theta(theta)
        if minimize:
            theta = -theta
        check_oracle_output(lambda t, *a: oracle(t, a), theta, args)
        if stateful and state is None:
            raise ValueError(
                "This transform has an adaptive target: call it with state=target.init()."
            )
        if not stateful and state is not None:
            raise TypeError("state= is only accepted with an adaptive target such as ij.aimle().")
        z = core(key, theta, args, noise, target, state)
        return z[0] if samples is None else z

    functools.update_wrapper(sampler, map_fn, assigned=("__module__", "__name__", "__doc__"))
    sampler.__wrapped__ = map_fn  # type: ignore[attr-defined]
    return sampler


def _zero_cotangent(x: Any) -> Any:
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.inexact):
        return jnp.zeros_like(x)
    return None
