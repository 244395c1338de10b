"""Gradient quality on the synthetic problem: estimators against the exact gradient.

At ``points`` parameters ``theta ~ N(0, I)`` (key ``seed``), for each estimator, ``n`` one-sample
estimates ``g_1..g_n`` are drawn and compared with the exact gradient ``g* = grad L(theta)``:

* ``cosine(S)``: the mean cosine similarity between an ``S``-sample estimate (the mean of ``S``
  one-sample estimates, consecutive groups of the ``n`` draws) and ``g*``;
* ``rel_bias``: ``||mean_i g_i - g*|| / ||g*||``, with ``noise_floor``, the part of it explained
  by the Monte Carlo error, ``sqrt(trace Cov(g) / n) / ||g*||``;
* ``rel_rmse(S)``: ``sqrt(E ||g_S - g*||^2) / ||g*||``;
* ``bias_cosine``: the cosine between ``mean_i g_i`` and ``g*`` (the direction of the bias).

The I-MLE estimates use the library scaling (divided by ``lam``), which is what makes them
estimates of ``grad L``; cosines do not depend on that scale. AIMLE chooses its step from the
``S`` samples at hand, so its ``S``-sample estimates are drawn directly with ``samples=S`` from the
initial state (``beta = 1``, i.e. ``lam ||g|| = ||theta|| sqrt(S)``). Metrics are averaged over the
parameter points.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import imlejax as ij
from experiments.synthetic import estimators as est
from experiments.synthetic.problem import Problem, exact_gradient


def _cos(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.sum(a * b, axis=-1) / (
        jnp.linalg.norm(a, axis=-1) * jnp.linalg.norm(b, axis=-1) + 1e-30
    )


def one_sample_metrics(draws: jax.Array, exact: jax.Array, sample_sizes) -> dict:
    """Metrics of ``draws`` (shape ``(n, m)``) of a one-sample estimator against ``exact``."""
    n = draws.shape[0]
    norm = jnp.linalg.norm(exact)
    mean = jnp.mean(draws, axis=0)
    var = jnp.sum(jnp.var(draws, axis=0, ddof=1))
    out = {
        "rel_bias": float(jnp.linalg.norm(mean - exact) / norm),
        "noise_floor": float(jnp.sqrt(var / n) / norm),
        "bias_cosine": float(_cos(mean, exact)),
        "scale": float(jnp.dot(mean, exact) / norm**2),
        "cosine": [],
        "rel_rmse": [],
    }
    for s in sample_sizes:
        groups = draws[: (n // s) * s].reshape(n // s, s, -1).mean(axis=1)
        out["cosine"].append(float(jnp.mean(_cos(groups, exact))))
        out["rel_rmse"].append(
            float(jnp.sqrt(jnp.mean(jnp.sum((groups - exact) ** 2, axis=-1))) / norm)
        )
    return out


def _draw(grad_fn: Callable, key: jax.Array, theta: jax.Array, lam, n: int) -> jax.Array:
    keys = jax.random.split(key, n)
    return jax.vmap(lambda k: grad_fn(k, theta, lam))(keys)


def _average(per_point: list[dict]) -> dict:
    out = {}
    for name in per_point[0]:
        out[name] = np.mean([np.asarray(p[name]) for p in per_point], axis=0).tolist()
    return out


def run_quality(
    problem: Problem,
    *,
    lams,
    sample_sizes,
    points: int,
    n: int,
    seed: int,
    progress: Callable | None = None,
) -> dict:
    """Runs the study; returns JSON-ready metrics averaged over the parameter points.

    Layout: ``result["imle"][noise]`` holds lists indexed by ``lam`` (and by ``S`` inside
    ``cosine`` and ``rel_rmse``); ``result["ste"][noise]``, ``result["sfe"]`` and
    ``result["aimle"][noise]`` hold single entries (``aimle`` by ``S``).
    """
    thetas = jax.random.normal(jax.random.key(seed), (points, problem.m), jnp.float32)
    lams = [float(x) for x in lams]
    sample_sizes = [int(s) for s in sample_sizes]
    imle_fns = {nm: est.imle_gradient(problem, est.make_noise(nm, problem.k)) for nm in est.NOISES}
    ste_fns = {nm: est.ste_gradient(problem, est.make_noise(nm, problem.k)) for nm in est.NOISES}
    sfe_fn = est.sfe_gradient(problem)
    target = ij.aimle()

    @jax.jit
    def imle_draws(key, theta, lam_arr):
        return {
            nm: jax.vmap(lambda lam, f=f: _draw(f, key, theta, lam, n))(lam_arr)
            for nm, f in imle_fns.items()
        }

    @jax.jit
    def other_draws(key, theta):
        out = {f"ste_{nm}": _draw(f, key, theta, 0.0, n) for nm, f in ste_fns.items()}
        out["sfe"] = _draw(sfe_fn, key, theta, 0.0, n)
        return out

    def aimle_draws(key, theta, s):
        fns = {
            nm: est.aimle_gradient(problem, est.make_noise(nm, problem.k), target, samples=s)
            for nm in est.NOISES
        }
        keys = jax.random.split(key, max(n // s, 2))
        return {
            nm: jax.vmap(lambda kk, f=f: f(kk, theta, target.init())[0])(keys)
            for nm, f in fns.items()
        }

    aimle_jit = jax.jit(aimle_draws, static_argnums=2)
    per_point: dict = {"imle": {nm: [] for nm in est.NOISES}, "ste": {nm: [] for nm in est.NOISES},
                       "sfe": [], "aimle": {nm: [] for nm in est.NOISES}}
    lam_arr = jnp.asarray(lams, jnp.float32)
    it = range(points) if progress is None else progress(range(points))
    for p in it:
        theta = thetas[p]
        exact = exact_gradient(problem, theta)
        key = jax.random.fold_in(jax.random.key(seed + 1), p)
        draws = imle_draws(key, theta, lam_arr)
        for nm in est.NOISES:
            rows = [one_sample_metrics(draws[nm][i], exact, sample_sizes) for i in range(len(lams))]
            per_point["imle"][nm].append({f: [r[f] for r in rows] for f in rows[0]})
        other = other_draws(key, theta)
        for nm in est.NOISES:
            per_point["ste"][nm].append(one_sample_metrics(other[f"ste_{nm}"], exact, sample_sizes))
        per_point["sfe"].append(one_sample_metrics(other["sfe"], exact, sample_sizes))
        aimle_rows = {nm: [] for nm in est.NOISES}
        for s in sample_sizes:
            d = aimle_jit(key, theta, s)
            for nm in est.NOISES:
                aimle_rows[nm].append(one_sample_metrics(d[nm], exact, [1]))
        for nm in est.NOISES:
            rows = aimle_rows[nm]
            per_point["aimle"][nm].append(
                {f: [r[f][0] if isinstance(r[f], list) else r[f] for r in rows] for f in rows[0]}
            )
    return {
        "lams": lams,
        "sample_sizes": sample_sizes,
        "points": points,
        "n": n,
        "imle": {nm: _average(per_point["imle"][nm]) for nm in est.NOISES},
        "ste": {nm: _average(per_point["ste"][nm]) for nm in est.NOISES},
        "sfe": _average(per_point["sfe"]),
        "aimle": {nm: _average(per_point["aimle"][nm]) for nm in est.NOISES},
    }
