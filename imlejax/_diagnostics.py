r"""Diagnostics for user code: a gradient estimator against the exact gradient of an expected
loss (:func:`check_gradient`), and an oracle against the MAP-oracle contract (:func:`check_oracle`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from imlejax import ksubset
from imlejax._oracles import _as_float_array, _check_int
from imlejax._validation import as_key, check_theta, name_of

__all__ = ["GradientReport", "check_gradient", "check_oracle"]


@dataclasses.dataclass(frozen=True, eq=False)
class GradientReport:
    r"""Result of :func:`check_gradient`: an estimator's mean gradient against the exact one.

    Attributes:
      exact: the exact gradient :math:`\nabla_\theta\,\mathbb{E}_p[\ell(z)]`, shaped like
        ``theta`` (NumPy, float64).
      mean: the Monte Carlo mean of the estimator's gradient over ``num_keys`` keys.
      stderr: per-coordinate standard errors of ``mean``.
      cosine: cosine similarity of ``mean`` and ``exact``.
      relative_bias: :math:`\|\mathrm{mean} - \mathrm{exact}\| / \|\mathrm{exact}\|`.
      variance: the per-coordinate variance of one key's gradient, averaged over coordinates.
      max_z: :math:`\max_i |\mathrm{mean}_i - \mathrm{exact}_i| / \mathrm{stderr}_i` (a
        coordinate with zero standard error counts as 0 if it matches and ``inf`` if not).
      num_keys: the number of keys averaged.

    Example:
      >>> import jax.numpy as jnp, imlejax as ij
      >>> f = ij.sfe(1, lambda z: z[0], num_samples=4, baseline="mean")
      >>> r = ij.check_gradient(f, lambda z: z[0], jnp.zeros(3), k=1, num_keys=500)
      >>> r.exact.shape, r.num_keys
      ((3,), 500)
    """

    exact: np.ndarray
    mean: np.ndarray
    stderr: np.ndarray
    cosine: float
    relative_bias: float
    variance: float
    max_z: float
    num_keys: int

    @property
    def z(self) -> np.ndarray:
        """Signed z-scores ``(mean - exact) / stderr`` (``0`` or ``+-inf`` where stderr is 0)."""
        return _z_scores(self.mean, self.exact, self.stderr)

    def __str__(self) -> str:
        z = self.z
        width = max(5, *(len(_label(i, self.exact.shape)) for i in np.ndindex(self.exact.shape)))
        head = f"{'coord':>{width}} {'exact':>11} {'mean':>11} {'stderr':>11} {'z':>8}"
        rows = [f"check_gradient over {self.num_keys} keys", head]
        for i in np.ndindex(self.exact.shape):
            rows.append(
                f"{_label(i, self.exact.shape):>{width}} {self.exact[i]:>11.5g} "
                f"{self.mean[i]:>11.5g} {self.stderr[i]:>11.3g} {z[i]:>8.2f}"
            )
        rows.append(
            f"cosine {self.cosine:.4f} | relative bias {self.relative_bias:.4f} | "
            f"variance {self.variance:.4g} | max |z| {self.max_z:.2f}"
        )
        return "\n".join(rows)


def _label(index: tuple[int, ...], shape: tuple[int, ...]) -> str:
    return str(index[0]) if len(shape) == 1 else str(index)


def _z_scores(mean: np.ndarray, exact: np.ndarray, stderr: np.ndarray) -> np.ndarray:
    diff = mean - exact
    matches = np.abs(diff) <= 1e-6 * (1.0 + np.abs(exact))
    z = diff / np.where(stderr > 0, stderr, 1.0)
    return np.where(stderr > 0, z, np.where(matches, 0.0, np.copysign(np.inf, diff)))


def _exact_over_states(loss_fn: Callable, theta: jax.Array, states: Any, tau: Any) -> jax.Array:
    states = jnp.asarray(states)
    if states.ndim != theta.ndim + 1 or states.shape[1:] != theta.shape:
        raise ValueError(
            f"states must have shape (n_states, *theta.shape) with theta.shape = {theta.shape}; "
            f"got {states.shape}."
        )
    states = states.astype(theta.dtype)
    flat = states.reshape(states.shape[0], -1)
    losses = jax.vmap(loss_fn)(states)
    if losses.shape != (states.shape[0],):
        raise ValueError(
            f"loss_fn must return a scalar per state; got output of shape {losses.shape[1:]}."
        )

    def expected(t):
        weights = jax.nn.softmax(flat @ t.reshape(-1) / jnp.asarray(tau, t.dtype))
        return jnp.dot(weights, losses.astype(t.dtype))

    return jax.grad(expected)(theta)


def check_gradient(
    estimator: Callable[..., jax.Array],
    loss_fn: Callable[[jax.Array], jax.Array],
    theta: Any,
    *,
    k: int | None = None,
    states: Any = None,
    tau: Any = 1.0,
    num_keys: int = 2000,
    key: Any = None,
    args: tuple = (),
) -> GradientReport:
    r"""Compares an estimator's expected gradient with the exact gradient of an expected loss.

    The reference distribution is :math:`p(z;\theta) \propto \exp(\langle z, \theta\rangle/\tau)`
    over a finite feasible set: the exactly-``k`` subsets (``k`` given; ``theta`` of shape
    ``(m,)``) or the rows of ``states`` (an array ``(n_states, *theta.shape)``, for instance
    ``jnp.eye(m)`` for argmax or all paths of a small graph). The exact gradient

    .. math:: \nabla_\theta\, \mathbb{E}_{p(z;\theta)}[\ell(z)]
              = \nabla_\theta \sum_{s} \mathrm{softmax}\big(\langle s,\theta\rangle/\tau\big)_s\,
              \ell(s)

    is taken by autodiff through the softmax over the enumerated states
    (:func:`imlejax.ksubset.exact_gradient` for k-subsets, which enumerates the
    :math:`\binom{m}{k}` states: keep ``m`` small, about 20 at most). The estimator's gradient
    :math:`\hat g(\kappa) = \nabla_\theta\, \ell(\mathrm{estimator}(\kappa, \theta, *args))` is
    averaged over ``num_keys`` keys :math:`\kappa` (vmapped and jitted); with a sample axis the
    loss is the mean of :math:`\ell` over the samples, and an estimator that returns a scalar
    (such as :func:`imlejax.sfe`) is taken as the Monte Carlo loss itself. The report gives the
    mean, per-coordinate standard errors, the cosine similarity, the relative bias
    :math:`\|\bar g - g\|/\|g\|`, the mean per-coordinate variance and the largest z-score
    :math:`\max_i |\bar g_i - g_i| / \mathrm{se}_i`; ``print(report)`` shows one row per
    coordinate and a summary line.

    Reading the report: an unbiased estimator (:func:`imlejax.sfe`) matches within standard
    errors (``max_z`` of a few units: with ``m`` coordinates, ``max_z > 4.5`` has probability
    below ``m * 7e-6``). Biased estimators (I-MLE, straight-through, blackbox, relaxations) do
    not; the report shows by how much. A sign error gives ``cosine`` near ``-1``, a scale error
    ``c`` a ``relative_bias`` near ``|c - 1|`` with ``cosine`` near 1.

    How to use it on your own oracle: enumerate its feasible set into ``states`` (every state the
    oracle can return, each shaped like ``theta``), pick a small ``theta`` and a loss, and pass the
    estimator built from the oracle. The estimator's distribution must be the one above, e.g.
    ``ij.imle(oracle, noise=ij.gumbel(tau))`` is exact in the forward pass only for argmax-like
    sets; for a minimisation oracle (``minimize=True``, costs ``w = -theta``) pass
    ``lambda key, t, *a: est(key, -t, *a)``.

    Args:
      estimator: ``estimator(key, theta, *args)`` returning a sample shaped like ``theta``, a
        stack ``(S, *theta.shape)``, or a scalar loss.
      loss_fn: ``loss_fn(z) -> scalar`` on one state shaped like ``theta``; ``jax.vmap``-able.
      theta: a small floating array (one instance).
      k: subset size for the k-subset distribution (exclusive with ``states``).
      states: the feasible set, ``(n_states, *theta.shape)`` (exclusive with ``k``).
      tau: temperature of the reference distribution (match the estimator's noise temperature).
      num_keys: number of keys averaged, ``>= 2``.
      key: PRNG key; ``jax.random.key(0)`` if ``None``.
      args: extra arguments passed to the estimator.

    Returns:
      A :class:`GradientReport`.

    Raises:
      ValueError: if neither or both of ``k`` and ``states`` are given, shapes disagree, or
        ``num_keys < 2``.

    Example:
      >>> import jax.numpy as jnp, imlejax as ij
      >>> theta = jnp.array([0.5, -0.3, 1.0, 0.0])
      >>> w = jnp.array([1.0, -2.0, 0.5, 3.0])
      >>> loss = lambda z: jnp.dot(z, w)
      >>> est = ij.imle(ij.argmax(), noise=ij.gumbel(), target=ij.pid(0.5), samples=4)
      >>> report = ij.check_gradient(est, loss, theta, states=jnp.eye(4), num_keys=500)
      >>> bool(report.cosine > 0.9)
      True
      >>> print(report)  # doctest: +ELLIPSIS
      check_gradient over 500 keys
      coord       exact        mean      stderr        z
          0 ...
      cosine ...

    References:
      Niepert, Minervini & Franceschi, *Implicit MLE*, NeurIPS 2021 (exact gradients of
      k-subset expected losses as the reference for estimators, Fig. 7).
    """
    theta = check_theta(theta)
    if (k is None) == (states is None):
        raise ValueError("pass exactly one of k (k-subset distribution) and states.")
    if isinstance(num_keys, bool) or not isinstance(num_keys, (int, np.integer)) or num_keys < 2:
        raise ValueError(f"num_keys must be an integer >= 2; got {num_keys!r}.")
    if not isinstance(args, tuple):
        raise TypeError(f"args must be a tuple; got {type(args).__name__}.")
    key = jax.random.key(0) if key is None else as_key(key)

    if k is not None:
        exact = ksubset.exact_gradient(loss_fn, theta, k, tau)
    else:
        exact = _exact_over_states(loss_fn, theta, states, tau)

    def mc_loss(out):
        if out.shape == ():
            return out
        if out.shape == theta.shape:
            return loss_fn(out)
        if out.ndim == theta.ndim + 1 and out.shape[1:] == theta.shape:
            return jnp.mean(jax.vmap(loss_fn)(out))
        raise ValueError(
            f"the estimator returned shape {out.shape}; expected a scalar loss, theta's shape "
            f"{theta.shape} or (samples, *{theta.shape})."
        )

    def one(sample_key):
        return jax.grad(lambda t: mc_loss(estimator(sample_key, t, *args)))(theta)

    grads = jax.jit(jax.vmap(one))(jax.random.split(key, num_keys))
    grads = np.asarray(grads, np.float64)
    exact_np = np.asarray(exact, np.float64)
    mean = grads.mean(axis=0)
    var = grads.var(axis=0, ddof=1)
    stderr = np.sqrt(var / num_keys)
    norm_exact = float(np.linalg.norm(exact_np))
    norm_mean = float(np.linalg.norm(mean))
    denom = norm_exact * norm_mean
    cosine = float(np.vdot(mean, exact_np) / denom) if denom > 0 else float("nan")
    diff = float(np.linalg.norm(mean - exact_np))
    relative_bias = diff / norm_exact if norm_exact > 0 else float("inf") if diff > 0 else 0.0
    z = _z_scores(mean, exact_np, stderr)
    return GradientReport(
        exact=exact_np,
        mean=mean,
        stderr=stderr,
        cosine=cosine,
        relative_bias=relative_bias,
        variance=float(var.mean()),
        max_z=float(np.abs(z).max()) if z.size else 0.0,
        num_keys=int(num_keys),
    )


def check_oracle(
    map_fn: Callable[..., Any],
    theta: Any,
    *args: Any,
    num_trials: int = 3,
    key: jax.Array | None = None,
    exact_k: int | None = None,
) -> None:
    """Checks that ``map_fn`` behaves as a MAP oracle on ``theta``, eagerly, and raises if not.

    ``map_fn(theta, *args)`` is called on ``theta`` itself and on ``num_trials`` random
    perturbations ``theta + s * eps``, with standard normal ``eps`` drawn by NumPy from a generator
    seeded with the data of ``key`` and ``s`` the larger of 1 and the standard deviation of
    ``theta``. Each output must have the shape and dtype of ``theta``
    and only the values 0 and 1, and, if ``exact_k`` is given, exactly ``exact_k`` ones in total.
    The check is meant for interactive use and tests; it runs outside ``jax.jit``. It does not
    check optimality.

    Args:
      map_fn: the oracle under test, ``map_fn(theta, *args) -> z``.
      theta: a floating array of scores for one instance.
      *args: extra arguments passed unchanged to ``map_fn``.
      num_trials: the number of random perturbations tried besides ``theta``, ``>= 0``.
      key: a JAX PRNG key (typed or raw) seeding the perturbations; ``jax.random.key(0)`` if
        ``None``. The same key gives the same perturbations.
      exact_k: if given, the total number of ones every output must have (for a grouped oracle,
        ``k`` times the number of groups).

    Returns:
      None when every check passes.

    Raises:
      ValueError: if an output has the wrong shape, a value other than 0 or 1, or a number of
        ones other than ``exact_k``; or if ``num_trials`` or ``exact_k`` is invalid.
      TypeError: if an output's dtype differs from ``theta``'s, or ``theta`` is not floating.

    Example:
      >>> import jax.numpy as jnp, imlejax as ij
      >>> ij.check_oracle(ij.top_k(2), jnp.array([0.1, 0.4, 0.3]), exact_k=2)
      >>> ij.check_oracle(jnp.round, jnp.array([0.1, 1.7, 0.3]))  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: check_oracle: round returned values other than 0 and 1 (e.g. 2.0) on ...
    """
    num_trials = _check_int("num_trials", num_trials, minimum=0)
    if exact_k is not None:
        exact_k = _check_int("exact_k", exact_k, minimum=0)
    name = name_of(map_fn)
    theta = _as_float_array(theta, "check_oracle")
    if key is None:
        key = jax.random.key(0)
    cdtype = jnp.promote_types(theta.dtype, jnp.float32)
    scale = max(1.0, float(np.std(np.asarray(theta, np.float64)))) if theta.size else 1.0

    inputs = [("the unperturbed theta", theta)]
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
    cdtype = np.dtype(cdtype)
    base = np.asarray(theta).astype(cdtype)
    for i in range(num_trials):
        eps = rng.standard_normal(theta.shape).astype(cdtype)
        perturbed = jnp.asarray((base + cdtype.type(scale) * eps).astype(theta.dtype))
        inputs.append((f"random perturbation {i + 1} of theta", perturbed))

    for where, t in inputs:
        z = map_fn(t, *args)
        if not (hasattr(z, "shape") and hasattr(z, "dtype")):
            z = np.asarray(z)
        if tuple(z.shape) != tuple(theta.shape):
            raise ValueError(
                f"check_oracle: {name} returned shape {tuple(z.shape)} for theta of shape "
                f"{tuple(theta.shape)} on {where}; an oracle must return an array shaped like "
                "theta."
            )
        if np.dtype(z.dtype) != np.dtype(theta.dtype):
            raise TypeError(
                f"check_oracle: {name} returned dtype {np.dtype(z.dtype)} for theta of dtype "
                f"{np.dtype(theta.dtype)} on {where}; an oracle must return theta's dtype."
            )
        zn = np.asarray(z).astype(np.float64)
        bad = ~((zn == 0) | (zn == 1))
        if bad.any():
            raise ValueError(
                f"check_oracle: {name} returned values other than 0 and 1 "
                f"(e.g. {zn[bad].flat[0]}) on {where}."
            )
        if exact_k is not None:
            ones = int(zn.sum())
            if ones != exact_k:
                raise ValueError(
                    f"check_oracle: {name} returned {ones} ones on {where}; expected exactly "
                    f"exact_k={exact_k}."
                )
    return None
