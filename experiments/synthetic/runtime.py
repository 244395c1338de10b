"""Cost of the exact loss, of a faithful sample and of a perturb-and-MAP sample as ``m`` grows.

``k = m / 2`` and ``l(z) = ||z - b||^2`` with ``theta, b ~ N(0, I_m)``. Three ways:

* enumeration: all ``C(m, k)`` states (built once per ``m``, outside the timing) scored by
  ``<s, theta>``; the exact ``L`` is the softmax-weighted loss, a faithful sample of ``l`` a
  categorical draw over the states;
* dynamic program (:mod:`imlejax.ksubset`): the exact ``L = k - 2 <mu, b> + ||b||^2`` from the
  marginals, a faithful sample by :func:`imlejax.ksubset.sample`;
* perturb-and-MAP: ``l(top_k(theta + eps))`` with ``eps ~ SoG(k, 1, 10)``, drawn with the default
  inverse-CDF table (``method="table"``, built once per ``k`` outside the timing) and, for every
  ``m`` including those where no table is available, by summing gamma draws (``method="direct"``).
  The table is built for ``k <= 2048`` (``m <= 4096``); for ``k >= 4096``,
  :func:`imlejax.sog` raises ``RuntimeError`` ("table ... is not monotone") when it is drawn.

Each function is compiled and run once before timing; the reported times are the mean, standard
deviation, median and minimum over ``repeats`` evaluations of the jitted function
(``block_until_ready``), with a fresh key for every sample. On a shared machine the mean and
standard deviation include interference from other processes; the minimum is the robust statistic.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import imlejax as ij
from imlejax import ksubset


def _time(fn: Callable, args_for: Callable[[int], tuple], repeats: int) -> dict:
    """Mean, standard deviation, median and minimum of ``repeats`` timed calls (after a warm-up)."""
    jax.block_until_ready(fn(*args_for(-1)))
    times = []
    for i in range(repeats):
        args = args_for(i)
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return {
        "mean": float(np.mean(times)),
        "std": float(np.std(times, ddof=1) if repeats > 1 else 0.0),
        "median": float(np.median(times)),
        "min": float(np.min(times)),
    }


def _row(m: int, k: int, **timings: dict) -> dict:
    row: dict = {"m": m, "k": k}
    for what, stats in timings.items():
        row.update({f"{what}_{name}": value for name, value in stats.items()})
    return row


def _instance(m: int, seed: int):
    k_theta, k_b = jax.random.split(jax.random.key(seed))
    return jax.random.normal(k_theta, (m,)), jax.random.normal(k_b, (m,))


def time_enumeration(m: int, repeats: int, seed: int) -> dict:
    k = m // 2
    theta, b = _instance(m, seed)
    states = ksubset.enumerate_states(m, k, dtype=jnp.float32)

    @jax.jit
    def exact(theta, b, states):
        losses = jnp.sum((states - b[None]) ** 2, axis=-1)
        return jnp.dot(jax.nn.softmax(states @ theta), losses)

    @jax.jit
    def faithful(key, theta, b, states):
        z = states[jax.random.categorical(key, states @ theta)]
        return jnp.sum((z - b) ** 2)

    base = jax.random.key(seed + 1)
    t_exact = _time(exact, lambda i: (theta, b, states), repeats)
    t_sample = _time(
        faithful, lambda i: (jax.random.fold_in(base, i + 1), theta, b, states), repeats
    )
    return {"states": math.comb(m, k), **_row(m, k, exact=t_exact, sample=t_sample)}


def time_dp(m: int, repeats: int, seed: int) -> dict:
    k = m // 2
    theta, b = _instance(m, seed)

    @jax.jit
    def exact(theta, b):
        mu = ksubset.marginals(theta, k)
        return k - 2 * jnp.dot(mu, b) + jnp.dot(b, b)

    @jax.jit
    def faithful(key, theta, b):
        z = ksubset.sample(key, theta, k)
        return jnp.sum((z - b) ** 2)

    base = jax.random.key(seed + 1)
    t_exact = _time(exact, lambda i: (theta, b), repeats)
    t_sample = _time(faithful, lambda i: (jax.random.fold_in(base, i + 1), theta, b), repeats)
    return _row(m, k, exact=t_exact, sample=t_sample)


def time_perturb_and_map(m: int, repeats: int, seed: int, method: str = "table") -> dict:
    k = m // 2
    theta, b = _instance(m, seed)
    oracle = ij.top_k(k)
    noise = ij.sog(k=k, tau=1.0, terms=10, method=method)

    @jax.jit
    def pam(key, theta, b):
        z = oracle(theta + noise.sample(key, theta.shape, theta.dtype))
        return jnp.sum((z - b) ** 2)

    base = jax.random.key(seed + 1)
    t_sample = _time(pam, lambda i: (jax.random.fold_in(base, i + 1), theta, b), repeats)
    return _row(m, k, sample=t_sample)


def time_perturb_and_map_direct(m: int, repeats: int, seed: int) -> dict:
    return time_perturb_and_map(m, repeats, seed, method="direct")


def run_runtime(
    *,
    enum_ms,
    dp_ms,
    pam_ms,
    pam_direct_ms,
    repeats: int,
    seed: int,
    progress: Callable | None = None,
) -> dict:
    """Times the methods on their grids of ``m``; returns JSON-ready rows per method."""
    tasks = [("enumeration", m, time_enumeration) for m in enum_ms]
    tasks += [("dp", m, time_dp) for m in dp_ms]
    tasks += [("perturb_and_map", m, time_perturb_and_map) for m in pam_ms]
    tasks += [("perturb_and_map_direct", m, time_perturb_and_map_direct) for m in pam_direct_ms]
    out: dict = {
        "enumeration": [],
        "dp": [],
        "perturb_and_map": [],
        "perturb_and_map_direct": [],
        "repeats": repeats,
        "device": str(jax.devices()[0].platform),
    }
    it = tasks if progress is None else progress(tasks)
    for name, m, fn in it:
        out[name].append(fn(m, repeats, seed))
    return out
