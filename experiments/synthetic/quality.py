"""Gradient quality on the synthetic problem: estimators against the exact gradient.

At ``points`` parameters ``theta ~ N(0, I)`` (key ``seed``), for each estimator, ``n`` one-sample
estimates ``g_1..g_n`` are drawn and compared with the exact gradient ``g* = grad L(theta)``:

* ``cosine(S)``: the mean cosine similarity between an ``S``-sample estimate (the mean of ``S``
  one-sample estimates, consecutive groups of the ``n`` draws) and ``g*``;
* ``rel_bias``: ``||mean_i g_i - g*|| / ||g*||``, with ``noise_floor``, the part of it explained
  by the Monte Carlo error, ``sqrt(trace Cov(g) / n) / ||g*||``;
* ``rel_rmse(S)``: ``sqrt(E ||g_S - g*||^2) / ||g*||``;
* ``bias_cosine``: the cosine between ``mean_i g_i`` and ``g*`` (the direction of the bias).

The forward pass is measured too: ``forward_tv`` is the total-variation distance between the
empirical distribution of ``n`` perturb-and-MAP samples ``top_k(theta + eps)`` and the exact
``p(z; theta)``, next to the same distance for ``n`` faithful samples (the Monte Carlo floor), and
``forward_mu_err`` the largest error of the empirical marginals.

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
from experiments.synthetic.problem import Problem, exact_gradient, pointwise_loss
from imlejax import ksubset


def _cos(a: jax.Array, b: jax.Array) -> jax.Array:
    b = jnp.broadcast_to(b, a.shape)
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
            float(jnp.sqrt(jnp.mean(jnp.sum((groups - exact[None]) ** 2, axis=-1))) / norm)
        )
    return out


def parameter_points(problem: Problem, points: int, seed: int) -> jax.Array:
    """The parameters of the study, ``theta ~ N(0, I)``, shape ``(points, m)``."""
    return jax.random.normal(jax.random.key(seed), (points, problem.m), jnp.float32)


def _draw(grad_fn: Callable, key: jax.Array, theta: jax.Array, lam, b, n: int) -> jax.Array:
    keys = jax.random.split(key, n)
    return jax.vmap(lambda k: grad_fn(k, theta, lam, b))(keys)


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
    thetas = parameter_points(problem, points, seed)
    lams = [float(x) for x in lams]
    sample_sizes = [int(s) for s in sample_sizes]
    imle_fns = {nm: est.imle_gradient(problem, est.make_noise(nm, problem.k)) for nm in est.NOISES}
    ste_fns = {nm: est.ste_gradient(problem, est.make_noise(nm, problem.k)) for nm in est.NOISES}
    sfe_fn = est.sfe_gradient(problem)
    target = ij.aimle()

    oracle = ij.top_k(problem.k)
    aimle_fns = {
        (nm, s): est.aimle_gradient(problem, est.make_noise(nm, problem.k), target, samples=s)
        for nm in est.NOISES
        for s in sample_sizes
    }

    def forward(key, theta):
        probs = jax.nn.softmax(problem.states @ theta)
        out = {}
        for nm in est.NOISES:
            eps = est.make_noise(nm, problem.k).sample(key, (n, problem.m), theta.dtype)
            out[nm] = jax.vmap(oracle)(theta[None] + eps)
        out["faithful"] = ksubset.sample(key, theta, problem.k, samples=n)
        res = {}
        for name, z in out.items():
            idx = jnp.argmax(z @ problem.states.T, axis=-1)
            freq = jnp.zeros(problem.states.shape[0]).at[idx].add(1.0 / n)
            res[f"tv_{name}"] = 0.5 * jnp.sum(jnp.abs(freq - probs))
            res[f"mu_err_{name}"] = jnp.max(jnp.abs(z.mean(0) - probs @ problem.states))
        return res

    b = problem.b

    @jax.jit
    def point_draws(key, theta, lam_arr):
        """Every draw needed at one parameter point, in one compiled function."""
        out = {
            f"imle_{nm}": jax.vmap(lambda lam, f=f: _draw(f, key, theta, lam, b, n))(lam_arr)
            for nm, f in imle_fns.items()
        }
        out.update({f"ste_{nm}": _draw(f, key, theta, 0.0, b, n) for nm, f in ste_fns.items()})
        out["sfe"] = _draw(sfe_fn, key, theta, 0.0, b, n)
        for (nm, s), f in aimle_fns.items():
            keys = jax.random.split(jax.random.fold_in(key, s), max(n // s, 2))
            out[f"aimle_{nm}_{s}"] = jax.vmap(lambda kk, f=f: f(kk, theta, target.init())[0])(keys)
        out["forward"] = forward(key, theta)
        return out

    fwd_rows = []
    per_point: dict = {
        "imle": {nm: [] for nm in est.NOISES},
        "ste": {nm: [] for nm in est.NOISES},
        "sfe": [],
        "aimle": {nm: [] for nm in est.NOISES},
    }
    lam_arr = jnp.asarray(lams, jnp.float32)
    it = range(points) if progress is None else progress(range(points))
    for p in it:
        theta = thetas[p]
        exact = exact_gradient(problem, theta)
        key = jax.random.fold_in(jax.random.key(seed + 1), p)
        draws = point_draws(key, theta, lam_arr)
        fwd_rows.append({f: float(v) for f, v in draws["forward"].items()})
        for nm in est.NOISES:
            d = draws[f"imle_{nm}"]
            rows = [one_sample_metrics(d[i], exact, sample_sizes) for i in range(len(lams))]
            per_point["imle"][nm].append({f: [r[f] for r in rows] for f in rows[0]})
            per_point["ste"][nm].append(one_sample_metrics(draws[f"ste_{nm}"], exact, sample_sizes))
            rows = [one_sample_metrics(draws[f"aimle_{nm}_{s}"], exact, [1]) for s in sample_sizes]
            per_point["aimle"][nm].append(
                {f: [r[f][0] if isinstance(r[f], list) else r[f] for r in rows] for f in rows[0]}
            )
        per_point["sfe"].append(one_sample_metrics(draws["sfe"], exact, sample_sizes))
    return {
        "lams": lams,
        "sample_sizes": sample_sizes,
        "points": points,
        "n": n,
        "imle": {nm: _average(per_point["imle"][nm]) for nm in est.NOISES},
        "ste": {nm: _average(per_point["ste"][nm]) for nm in est.NOISES},
        "sfe": _average(per_point["sfe"]),
        "aimle": {nm: _average(per_point["aimle"][nm]) for nm in est.NOISES},
        "forward": _average(fwd_rows),
        "forward_per_point": fwd_rows,
    }


def run_check_gradient(
    problem: Problem, *, lams, num_keys: int, seed: int, points: int = 1, only=None
) -> list[dict]:
    """Cross-check with :func:`imlejax.check_gradient` at the first parameter point of the study.

    One-sample estimators (I-MLE at each ``lam`` in ``lams``, STE, SFE, AIMLE from its initial
    state); returns the report's cosine, relative bias, variance and largest z-score per estimator.
    ``only`` restricts the list to the named estimators.
    """
    theta = parameter_points(problem, points, seed)[0]
    oracle = ij.top_k(problem.k)
    target = ij.aimle()
    entries = []
    for nm in est.NOISES:
        noise = est.make_noise(nm, problem.k)
        for lam in lams:
            entries.append(
                (f"I-MLE {nm} lam={lam:g}", ij.imle(oracle, noise=noise, target=ij.pid(float(lam))))
            )
        entries.append((f"STE {nm}", ij.ste(oracle, noise=noise)))
        aimle_sampler = ij.imle(oracle, noise=noise, target=target)
        entries.append(
            (f"AIMLE {nm}", lambda key, t, f=aimle_sampler: f(key, t, state=target.init()))
        )
    entries.append(("SFE", ij.sfe(problem.k, lambda z: pointwise_loss(problem, z))))
    rows = []
    for name, estimator in entries:
        if only is not None and name not in only:
            continue
        report = ij.check_gradient(
            estimator,
            lambda z: pointwise_loss(problem, z),
            theta,
            k=problem.k,
            num_keys=num_keys,
            key=jax.random.key(seed + 2),
        )
        rows.append(
            {
                "estimator": name,
                "cosine": report.cosine,
                "relative_bias": report.relative_bias,
                "variance": report.variance,
                "max_z": report.max_z,
                "num_keys": report.num_keys,
            }
        )
    return rows
