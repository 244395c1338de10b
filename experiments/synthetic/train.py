"""Batched SGD runs: ``jax.vmap`` over runs and grid cells, ``jax.lax.scan`` over steps.

Every run starts from ``theta = 0`` (the uniform distribution over the 5-subsets) and takes
``steps`` SGD steps with momentum 0.9 (``optax.sgd(lr, momentum=0.9)``), one estimator sample per
step. The exact loss ``L(theta)`` is recorded after every step. Run ``r`` uses the key
``split(key(seed), runs)[r]`` in every cell, so all cells and estimators share the same random
streams (common random numbers).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.synthetic.estimators import GradFn
from experiments.synthetic.problem import Problem, expected_loss

MOMENTUM = 0.9


def run_keys(seed: int, runs: int) -> jax.Array:
    """One key per run, shared by every cell of a grid."""
    return jax.random.split(jax.random.key(seed), runs)


def make_grid_runner(
    problem: Problem, grad_fn: GradFn, steps: int
) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """Returns a jitted ``runner(keys, lam, rates) -> curves`` for one row of a (lam, lr) grid.

    ``keys`` has shape ``(runs,)``, ``lam`` is a scalar (the estimator's step) and ``rates`` has
    shape ``(n_lr,)`` (the optimiser's learning rates); the result holds ``L(theta_t)`` for
    ``t = 0..steps`` with shape ``(n_lr, runs, steps + 1)``.
    """

    def one_run(key, lam, rate):
        opt = optax.sgd(rate, momentum=MOMENTUM)
        theta = jnp.zeros((problem.m,), jnp.float32)

        def body(carry, step_key):
            theta, opt_state = carry
            g = grad_fn(step_key, theta, lam)
            updates, opt_state = opt.update(g, opt_state, theta)
            theta = optax.apply_updates(theta, updates)
            return (theta, opt_state), expected_loss(problem, theta)

        keys = jax.random.split(key, steps)
        _, curve = jax.lax.scan(body, (theta, opt.init(theta)), keys)
        return jnp.concatenate([expected_loss(problem, theta)[None], curve])

    over_runs = jax.vmap(one_run, in_axes=(0, None, None))
    over_lrs = jax.vmap(over_runs, in_axes=(None, None, 0))
    return jax.jit(over_lrs)


def run_grid(
    problem: Problem,
    grad_fn: GradFn,
    lams,
    lrs,
    *,
    runs: int,
    steps: int,
    seed: int,
    lr_times_lam: bool = False,
    runner: Callable | None = None,
    progress: Callable | None = None,
) -> np.ndarray:
    """Runs every (lam, lr) cell; returns curves of shape ``(n_lam, n_lr, runs, steps + 1)``.

    With ``lr_times_lam`` the optimiser's learning rate in row ``lam`` is ``lr * lam``: SGD with
    momentum is linear in the gradient, so this is exactly SGD with learning rate ``lr`` on
    ``lam`` times the estimate. One compiled function serves every row and both scalings
    (``lam`` and the rates are traced); pass ``runner`` (from :func:`make_grid_runner`) to reuse
    it across calls. ``progress`` wraps the iteration over rows (e.g. ``tqdm``).
    """
    if runner is None:
        runner = make_grid_runner(problem, grad_fn, steps)
    keys = run_keys(seed, runs)
    lrs = np.asarray(lrs, np.float64)
    rows = []
    it = list(lams) if progress is None else progress(list(lams))
    for lam in it:
        rates = jnp.asarray(lrs * lam if lr_times_lam else lrs, jnp.float32)
        rows.append(np.asarray(runner(keys, jnp.asarray(lam, jnp.float32), rates)))
    return np.stack(rows)


def run_aimle_lrs(
    problem: Problem, grad_fn, init_state, lrs, *, runs: int, steps: int, seed: int, theta0=None
) -> np.ndarray:
    """SGD with AIMLE over learning rates; returns curves of shape ``(n_lr, runs, steps + 1)``."""
    theta_init = jnp.zeros((problem.m,), jnp.float32) if theta0 is None else theta0

    def one_run(key, lr):
        opt = optax.sgd(lr, momentum=MOMENTUM)

        def body(carry, step_key):
            theta, opt_state, state = carry
            g, state = grad_fn(step_key, theta, state)
            updates, opt_state = opt.update(g, opt_state, theta)
            theta = optax.apply_updates(theta, updates)
            return (theta, opt_state, state), expected_loss(problem, theta)

        keys = jax.random.split(key, steps)
        carry = (theta_init, opt.init(theta_init), init_state)
        _, curve = jax.lax.scan(body, carry, keys)
        return jnp.concatenate([expected_loss(problem, theta_init)[None], curve])

    f = jax.jit(jax.vmap(jax.vmap(one_run, in_axes=(0, None)), in_axes=(None, 0)))
    return np.asarray(f(run_keys(seed, runs), jnp.asarray(lrs, jnp.float32)))


def summarise(curves: np.ndarray) -> dict:
    """Mean and standard deviation over runs of the final loss, and the mean curve per cell."""
    final = curves[..., -1]
    return {
        "final_mean": final.mean(axis=-1),
        "final_std": final.std(axis=-1, ddof=1)
        if final.shape[-1] > 1
        else np.zeros_like(final[..., 0]),
        "curve_mean": curves.mean(axis=-2),
    }
