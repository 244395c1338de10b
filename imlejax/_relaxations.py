"""Relaxed samples (Gumbel-softmax, L2X, SoftSub) and SIMPLE, differentiated by autodiff."""

from __future__ import annotations

import inspect
from typing import Any

import jax
import jax.numpy as jnp

from imlejax._core import Estimator
from imlejax._oracles import argmax, top_k
from imlejax._score import grouped_marginals, grouped_sample
from imlejax._sharding import batch_parallel
from imlejax._validation import (
    as_key,
    check_bool,
    check_int,
    check_last_axis,
    check_optional_int,
    check_positive,
    check_theta,
    lead,
    normalize_axis,
)

__all__ = ["gumbel_softmax", "l2x", "simple", "softsub"]

_P = inspect.Parameter
_SIGNATURE = inspect.Signature(
    [_P("key", _P.POSITIONAL_OR_KEYWORD), _P("theta", _P.POSITIONAL_OR_KEYWORD)]
)


def _no_args(name: str, args: tuple) -> None:
    if args:
        raise TypeError(
            f"{name} takes no extra arguments after theta (it calls no oracle); got {len(args)}."
        )


def _prepare_k(name: str, key: Any, theta: Any, args: tuple, k: int) -> tuple[jax.Array, jax.Array]:
    """The key and ``theta`` of a k-subset estimator that calls no oracle, checked."""
    _no_args(name, args)
    theta = check_theta(theta, min_ndim=1)
    check_last_axis(theta, k, name)
    return as_key(key), theta


def _sample_shape(samples: int | None, shape: tuple[int, ...]) -> tuple[int, ...]:
    return shape if samples is None else (samples, *shape)


def _estimator(name, impl, map_fn, samples, options):
    return Estimator(
        name,
        impl,
        map_fn=map_fn,
        samples=samples,
        options=options,
        signature=_SIGNATURE,
        subject="",
    )


def gumbel_softmax(
    *, temperature: Any = 1.0, hard: bool = False, axis: int = -1, samples: int | None = None
) -> Estimator:
    r"""Gumbel-softmax (Concrete) relaxation of a one-hot sample.

    With standard Gumbel noise :math:`G` drawn as ``jax.random.gumbel(key, shape, theta.dtype)``
    (``shape`` = ``theta.shape``, or ``(S, *theta.shape)`` with ``samples=S``),

    .. math:: y = \mathrm{softmax}\big((\theta + G)/t\big) \quad\text{along ``axis``},

    differentiated by ordinary autodiff. ``hard=True`` returns the one-hot
    :math:`\mathrm{onehot}(\arg\max y)` forward (an exact sample of
    :math:`\mathrm{softmax}(\theta)`, by the Gumbel-max trick) and the gradient of the relaxed
    :math:`y` backward (straight-through).

    Args:
      temperature: temperature :math:`t > 0` of the softmax (not a distribution's :math:`\tau`:
        the noise is standard Gumbel).
      hard: straight-through one-hot forward.
      axis: the axis of ``theta`` along which one entry is selected.
      samples: ``None`` for one sample shaped like ``theta``; ``S`` for a leading axis of size S.

    Returns:
      An :class:`imlejax.Estimator` ``f(key, theta)`` (no extra arguments: ``TypeError``);
      ``f.map_fn`` is ``ij.argmax(axis=axis)``.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> f = ij.gumbel_softmax(temperature=0.5, hard=True, samples=3)
      >>> z = f(jax.random.key(0), jnp.array([0.0, 1.0, -1.0, 0.5]))
      >>> z.shape, z.sum(axis=-1).tolist()
      ((3, 4), [1.0, 1.0, 1.0])

    References:
      Jang, Gu & Poole, *Categorical Reparameterization with Gumbel-Softmax*, ICLR 2017;
      Maddison, Mnih & Teh, *The Concrete Distribution*, ICLR 2017.
    """
    check_positive("temperature", temperature)
    hard = check_bool("hard", hard)
    axis = check_int("axis", axis)
    samples = check_optional_int("samples", samples, minimum=1)

    def relaxed(key, theta, *args):
        _no_args("gumbel_softmax", args)
        key = as_key(key)
        theta = check_theta(theta)
        ax = normalize_axis(axis, theta.ndim, "gumbel_softmax")
        g = jax.random.gumbel(key, _sample_shape(samples, theta.shape), theta.dtype)
        ax = ax if samples is None else ax + 1
        t = jnp.asarray(temperature, theta.dtype)
        y = jax.nn.softmax((lead(theta, g.ndim) + g) / t, axis=ax)
        if not hard:
            return y
        y_hard = jax.nn.one_hot(jnp.argmax(y, axis=ax), y.shape[ax], dtype=y.dtype, axis=ax)
        return y_hard + (y - jax.lax.stop_gradient(y))

    options = {"temperature": temperature, "hard": hard, "axis": axis}
    return _estimator("gumbel_softmax", relaxed, argmax(axis=axis), samples, options)


def l2x(k: int, *, temperature: Any = 1.0, samples: int | None = None) -> Estimator:
    r"""L2X's relaxed k-hot sample: the elementwise maximum of k Concrete samples.

    With ``k`` independent standard Gumbel vectors :math:`G_j`, drawn as
    ``jax.random.gumbel(key, (k, *theta.shape))`` (``(S, k, *theta.shape)`` with ``samples=S``),

    .. math:: z = \max_{j=1..k}\ \mathrm{softmax}\big((\theta + G_j)/t\big),

    the softmax along the last axis and the maximum elementwise. Entries lie in ``[0, 1]`` and
    sum to at most ``k`` (close to ``k`` for small :math:`t` when the k draws differ).
    Differentiated by ordinary autodiff.

    Args:
      k: number of Concrete samples, an integer ``1 <= k <= m`` (``m`` = size of the last axis).
      temperature: softmax temperature :math:`t > 0` (L2X's :math:`\tau`; the noise is standard
        Gumbel).
      samples: ``None`` for one sample shaped like ``theta``; ``S`` for a leading axis of size S.

    Returns:
      An :class:`imlejax.Estimator` ``f(key, theta)`` (no extra arguments: ``TypeError``);
      ``f.map_fn`` is ``ij.top_k(k)``.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> z = ij.l2x(2, temperature=0.1)(jax.random.key(0), jnp.array([0.0, 3.0, -1.0, 2.5]))
      >>> z.shape, bool(z.sum() <= 2.0 + 1e-6)
      ((4,), True)

    References:
      Chen, Song, Wainwright & Jordan, *Learning to Explain: An Information-Theoretic
      Perspective on Model Interpretation*, ICML 2018.
    """
    k = check_int("k", k, minimum=1)
    check_positive("temperature", temperature)
    samples = check_optional_int("samples", samples, minimum=1)

    def relaxed(key, theta, *args):
        key, theta = _prepare_k("l2x", key, theta, args, k)
        g = jax.random.gumbel(key, _sample_shape(samples, (k, *theta.shape)), theta.dtype)
        t = jnp.asarray(temperature, theta.dtype)
        c = jax.nn.softmax((lead(theta, g.ndim) + g) / t, axis=-1)
        return jnp.max(c, axis=0 if samples is None else 1)

    return _estimator("l2x", relaxed, top_k(k), samples, {"k": k, "temperature": temperature})


def softsub(
    k: int, *, temperature: Any = 1.0, samples: int | None = None, hard: bool = False
) -> Estimator:
    r"""SoftSub: the relaxed top-k of Xie & Ermon (2019) on Gumbel-perturbed scores.

    With standard Gumbel noise :math:`G` drawn as ``jax.random.gumbel(key, shape)``, start from
    :math:`r^{(1)} = \theta + G` and repeat for :math:`j = 1..k`, along the last axis,

    .. math:: a^{(j)} = \mathrm{softmax}(r^{(j)}/t), \qquad
              r^{(j+1)} = r^{(j)} + \log\max(1 - a^{(j)}, \delta), \qquad
              z = \sum_{j=1}^{k} a^{(j)},

    with :math:`\delta` the smallest normal number of the dtype. Each round softly removes the
    entry just selected, so :math:`z \in [0,1]^m` sums to exactly ``k`` and tends to the top-k
    indicator of :math:`\theta + G` as :math:`t \to 0`. ``hard=True`` returns that top-k
    indicator of ``z`` forward and the gradient of ``z`` backward (straight-through).

    Args:
      k: subset size, an integer ``1 <= k <= m`` (``m`` = size of the last axis).
      temperature: softmax temperature :math:`t > 0` (the noise is standard Gumbel).
      samples: ``None`` for one sample shaped like ``theta``; ``S`` for a leading axis of size S.
      hard: straight-through k-hot forward.

    Returns:
      An :class:`imlejax.Estimator` ``f(key, theta)`` (no extra arguments: ``TypeError``);
      ``f.map_fn`` is ``ij.top_k(k)``.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> z = ij.softsub(2, temperature=0.5)(jax.random.key(0), jnp.array([0.0, 3.0, -1.0, 2.5]))
      >>> z.shape, round(float(z.sum()), 4)
      ((4,), 2.0)

    References:
      Xie & Ermon, *Reparameterizable Subset Sampling via Continuous Relaxations*, IJCAI 2019;
      Plötz & Roth, *Neural Nearest Neighbors Networks*, NeurIPS 2018.
    """
    k = check_int("k", k, minimum=1)
    check_positive("temperature", temperature)
    samples = check_optional_int("samples", samples, minimum=1)
    hard = check_bool("hard", hard)
    oracle = top_k(k)

    def relaxed(key, theta, *args):
        key, theta = _prepare_k("softsub", key, theta, args, k)
        g = jax.random.gumbel(key, _sample_shape(samples, theta.shape), theta.dtype)
        t = jnp.asarray(temperature, theta.dtype)
        tiny = jnp.asarray(jnp.finfo(theta.dtype).tiny, theta.dtype)

        def round_(carry, _):
            r, z = carry
            a = jax.nn.softmax(r / t, axis=-1)
            return (r + jnp.log(jnp.maximum(1 - a, tiny)), z + a), None

        init = (lead(theta, g.ndim) + g, jnp.zeros_like(g))
        (_, z), _ = jax.lax.scan(round_, init, None, length=k)
        if not hard:
            return z
        return batch_parallel(oracle)(z) + (z - jax.lax.stop_gradient(z))

    options = {"k": k, "temperature": temperature, "hard": hard}
    return _estimator("softsub", relaxed, oracle, samples, options)


def simple(k: int, *, tau: Any = 1.0, samples: int | None = None) -> Estimator:
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

    ``theta`` of shape ``(..., m)`` holds independent groups along its leading axes, each with
    exactly ``k`` ones (the grouped layout of :func:`imlejax.top_k`).

    Args:
      k: subset size, a static int with ``1 <= k <= m``.
      tau: temperature :math:`\tau > 0` of the distribution.
      samples: ``None`` for one sample shaped like ``theta``; ``S`` for a leading axis of size S.

    Returns:
      An :class:`imlejax.Estimator` ``f(key, theta)`` (no extra arguments: ``TypeError``);
      ``f.map_fn`` is ``ij.top_k(k)``.

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
    k = check_int("k", k, minimum=1)
    check_positive("tau", tau)
    samples = check_optional_int("samples", samples, minimum=1)

    def estimate(key, theta, *args):
        key, theta = _prepare_k("simple", key, theta, args, k)
        fixed = jax.lax.stop_gradient(theta)
        z = grouped_sample(key, fixed, k, tau, samples)
        mu = grouped_marginals(theta, k, tau)
        return z + lead(mu - jax.lax.stop_gradient(mu), z.ndim)

    return _estimator("simple", estimate, top_k(k), samples, {"k": k, "tau": tau})
