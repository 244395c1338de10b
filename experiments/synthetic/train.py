"""Batched SGD runs: ``jax.vmap`` over runs and learning rates, ``jax.lax.scan`` over steps.

Every run starts from ``theta_0`` (an argument: zeros, or the authors' ``RandomState(0)`` draw)
and takes ``steps`` SGD steps with momentum 0.9 (``optax.sgd(lr, momentum=0.9)``, the same update
as ``torch.optim.SGD(lr, momentum=0.9)``), one estimator sample per step. The exact loss
``L(theta_t)`` is recorded for ``t = 0..steps``. Run ``r`` uses the key ``split(key(seed), runs)[r]``
in every cell, so all cells share the same random streams (common random numbers, as the
authors' code, which restarts ``RandomState(0)`` in every cell).

One compiled runner per (estimator, noise, number of steps) serves every grid, instance and
preset: the step ``lam``, the learning rates, ``theta_0`` and ``b`` are traced arguments
(:func:`grid_runner` keeps them in a cache for the process).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.synthetic import estimators as est
from experiments.synthetic.estimators import GradFn
from experiments.synthetic.problem import Problem, expected_loss

MOMENTUM = 0.9

Runner = Callable[[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array], jax.Array]


def run_keys(seed: int, runs: int) -> jax.Array:
    """One key per run, shared by every cell of a grid."""
    return jax.random.split(jax.random.key(seed), runs)


def make_grid_runner(problem: Problem, grad_fn: GradFn, steps: int) -> Runner:
    """Returns a jitted ``runner(keys, lam, rates, theta0, b) -> curves`` for one row of a grid.

    ``keys`` has shape ``(runs,)``, ``lam`` is a scalar (the estimator's step), ``rates`` has
    shape ``(n_lr,)`` (the optimiser's learning rates), ``theta0`` and ``b`` shape ``(m,)``; the
    result holds ``L(theta_t)`` for ``t = 0..steps`` with shape ``(n_lr, runs, steps + 1)``.
    """

    def one_run(key, lam, rate, theta0, b):
        opt = optax.sgd(rate, momentum=MOMENTUM)

        def body(carry, step_key):
            theta, opt_state = carry
            g = grad_fn(step_key, theta, lam, b)
            updates, opt_state = opt.update(g, opt_state, theta)
            theta = optax.apply_updates(theta, updates)
            return (theta, opt_state), expected_loss(problem, theta, b)

        keys = jax.random.split(key, steps)
        _, curve = jax.lax.scan(body, (theta0, opt.init(theta0)), keys)
        return jnp.concatenate([expected_loss(problem, theta0, b)[None], curve])

    over_runs = jax.vmap(one_run, in_axes=(0, None, None, None, None))
    over_lrs = jax.vmap(over_runs, in_axes=(None, None, 0, None, None))
    return jax.jit(over_lrs)


_RUNNERS: dict[tuple, Runner] = {}


def grid_runner(problem: Problem, kind: str, noise: str | None, steps: int) -> Runner:
    """The cached runner of estimator ``kind`` (``est.gradient``) with ``noise`` for ``steps``."""
    key = (kind, noise, steps, problem.m, problem.k)
    if key not in _RUNNERS:
        _RUNNERS[key] = make_grid_runner(problem, est.gradient(kind, problem, noise), steps)
    return _RUNNERS[key]


def run_grid(
    problem: Problem,
    grad_fn: GradFn | None,
    lams,
    lrs,
    *,
    runs: int,
    steps: int,
    seed: int,
    theta0=None,
    lr_times_lam: bool = False,
    runner: Runner | None = None,
    progress: Callable | None = None,
) -> np.ndarray:
    """Runs every (lam, lr) cell; returns curves of shape ``(n_lam, n_lr, runs, steps + 1)``.

    With ``lr_times_lam`` the optimiser's learning rate in row ``lam`` is ``lr * lam``: SGD with
    momentum is linear in the gradient, so this is exactly SGD with learning rate ``lr`` on
    ``lam`` times the estimate (the authors' unscaled I-MLE estimate). Pass ``runner`` (from
    :func:`grid_runner` or :func:`make_grid_runner`) to reuse a compiled function, else
    ``grad_fn`` is compiled. ``theta0`` defaults to zeros; ``b`` is the problem's. ``progress``
    wraps the iteration over rows (e.g. ``tqdm``).
    """
    if runner is None:
        runner = make_grid_runner(problem, grad_fn, steps)
    keys = run_keys(seed, runs)
    theta0 = jnp.zeros((problem.m,), jnp.float32) if theta0 is None else theta0
    theta0 = jnp.asarray(theta0, jnp.float32)
    lrs = np.asarray(lrs, np.float64)
    rows = []
    it = list(lams) if progress is None else progress(list(lams))
    for lam in it:
        rates = jnp.asarray(lrs * lam if lr_times_lam else lrs, jnp.float32)
        lam = jnp.asarray(lam, jnp.float32)
        rows.append(np.asarray(runner(keys, lam, rates, theta0, problem.b)))
    return np.stack(rows)


def optimality_gap(curves: np.ndarray, loss_min: float, final_step: int) -> tuple[np.ndarray, int]:
    """``L(theta_t) - min_z ||z - b||^2`` for ``t = 0..final_step``, with the authors' rule.

    The authors' code records ``L`` before each of its updates and replaces the last recorded
    value by ``5`` when its gap is negative ("then it's all lost"); this applies that rule to
    step ``final_step``. Returns the gaps (last axis cut to ``final_step + 1``) and the number
    of runs the rule changed.
    """
    gaps = curves[..., : final_step + 1] - loss_min
    negative = gaps[..., -1] < 0
    gaps[..., -1] = np.where(negative, 5.0 - loss_min, gaps[..., -1])
    return gaps, int(negative.sum())


def summarise(gaps: np.ndarray) -> dict:
    """Mean and standard deviation over runs of the final value, and mean/std curves per cell."""
    final = gaps[..., -1]
    runs = final.shape[-1]
    return {
        "final_mean": final.mean(axis=-1),
        "final_std": final.std(axis=-1, ddof=1) if runs > 1 else np.zeros_like(final[..., 0]),
        "curve_mean": gaps.mean(axis=-2),
        "curve_std": gaps.std(axis=-2, ddof=1) if runs > 1 else np.zeros_like(gaps[..., 0, :]),
    }
