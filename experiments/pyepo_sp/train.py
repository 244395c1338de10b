r"""Training and evaluation of the linear cost model with imlejax estimators.

One jitted function runs a whole epoch (a ``lax.scan`` over the full batches, then one step on
the remainder), so that an epoch is one dispatch. Determinism: the initial weights come from
:func:`init_params` (``numpy.random.default_rng([seed, 1])``), the order of the training rows of
epoch ``e`` from :func:`batch_orders` (``default_rng([seed, 2])``), both shared with the PyEPO runs
of :mod:`experiments.pyepo_sp.reference`; the noise of step ``i`` of epoch ``e`` comes from
``fold_in(fold_in(key(seed), e), i)``, split once per instance.

**Regret** (``pyepo.metric.regret`` with its default ``reduction="normalized"``):

.. math:: \mathrm{regret} = \frac{\sum_i \big(\langle c_i, \mathrm{sp}(\hat c_i)\rangle -
          z^*_i\big)}{\sum_i |z^*_i| + 10^{-7}}, \qquad z^*_i = \min_z \langle c_i, z\rangle,

over the test instances (PyEPO's ``_EPS`` is ``1e-7``).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

from experiments.pyepo_sp.data import Problem
from experiments.pyepo_sp.methods import Built, Method

__all__ = [
    "Config",
    "batch_orders",
    "count_solves",
    "fit_least_squares",
    "init_params",
    "normalized_regret",
    "run_method",
]

PYEPO_EPS = 1e-7


@dataclasses.dataclass(frozen=True)
class Config:
    """The benchmark's setting (defaults: the reference setting).

    Attributes:
      num_train, num_test: instances of ``genData(num_train + num_test, ...)`` and its split.
      num_feat, grid, deg, noise_width: arguments of ``genData``.
      epochs, batch_size, lr: Adam training of the linear model.
    """

    num_train: int = 1000
    num_test: int = 1000
    num_feat: int = 5
    grid: tuple[int, int] = (5, 5)
    deg: int = 4
    noise_width: float = 0.5
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-2

    def data_kwargs(self) -> dict:
        return dict(
            num_train=self.num_train,
            num_test=self.num_test,
            num_feat=self.num_feat,
            grid=self.grid,
            deg=self.deg,
            noise_width=self.noise_width,
        )


def init_params(seed: int, num_feat: int, num_arcs: int) -> dict[str, np.ndarray]:
    """``torch.nn.Linear``'s default initialisation: weights and bias ``U(-1/sqrt(p), 1/sqrt(p))``.

    ``W`` has shape ``(p, d)`` (``torch.nn.Linear.weight`` is its transpose), ``b`` shape ``(d,)``.
    """
    rng = np.random.default_rng([seed, 1])
    bound = 1.0 / np.sqrt(num_feat)
    w = rng.uniform(-bound, bound, (num_feat, num_arcs)).astype(np.float32)
    b = rng.uniform(-bound, bound, (num_arcs,)).astype(np.float32)
    return {"W": w, "b": b}


def batch_orders(seed: int, epochs: int, num: int) -> np.ndarray:
    """The permutation of the training rows of every epoch, ``(epochs, num)``."""
    rng = np.random.default_rng([seed, 2])
    return np.stack([rng.permutation(num) for _ in range(epochs)]).astype(np.int32)


def predict(params: dict, x: jax.Array) -> jax.Array:
    return x @ params["W"] + params["b"][None, :]


def normalized_regret(z_pred_cost: jax.Array, z_opt: jax.Array) -> jax.Array:
    """``sum(true cost of the predicted paths - optimal cost) / (sum |optimal cost| + 1e-7)``."""
    return jnp.sum(z_pred_cost - z_opt) / (jnp.sum(jnp.abs(z_opt)) + PYEPO_EPS)


def make_evaluate(sp: Callable) -> Callable:
    """``evaluate(c_hat, c, z) -> normalized regret`` (jitted)."""

    @jax.jit
    def evaluate(c_hat, c, z):
        paths = jax.vmap(sp)(c_hat)
        return normalized_regret(jnp.sum(c * paths, axis=-1), z)

    return evaluate


def fit_least_squares(x: np.ndarray, c: np.ndarray) -> dict[str, np.ndarray]:
    """Least-squares linear fit with intercept (``sklearn.linear_model.LinearRegression``)."""
    a = np.concatenate([x, np.ones((len(x), 1), x.dtype)], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(a, c.astype(np.float64), rcond=None)
    return {"W": coef[:-1].astype(np.float32), "b": coef[-1].astype(np.float32)}


def make_epoch(built: Built, tx: optax.GradientTransformation, num: int, batch_size: int):
    """``epoch(params, opt_state, state, key, x, c, w, perm) -> (params, opt_state, state, loss)``.

    ``loss`` is the mean of the batch losses of the epoch (the value before each step).
    """
    full, rem = divmod(num, batch_size)

    def objective(params, state, key, x, c, w):
        return built.loss(key, predict(params, x), c, w, state)

    def step(params, opt_state, state, key, x, c, w):
        loss, (g_params, g_state) = jax.value_and_grad(objective, argnums=(0, 1))(
            params, state, key, x, c, w
        )
        updates, opt_state = tx.update(g_params, opt_state, params)
        params = optax.apply_updates(params, updates)
        if built.next_state is not None:
            state = built.next_state(state, g_state)
        return params, opt_state, state, loss

    def epoch(params, opt_state, state, key, x, c, w, perm):
        xs, cs, ws = x[perm], c[perm], w[perm]

        def shaped(a):
            return a[: full * batch_size].reshape((full, batch_size, *a.shape[1:]))

        def body(carry, batch):
            i, xb, cb, wb = batch
            params, opt_state, state = carry
            params, opt_state, state, loss = step(
                params, opt_state, state, jax.random.fold_in(key, i), xb, cb, wb
            )
            return (params, opt_state, state), loss

        (params, opt_state, state), losses = jax.lax.scan(
            body,
            (params, opt_state, state),
            (jnp.arange(full), shaped(xs), shaped(cs), shaped(ws)),
        )
        total = jnp.sum(losses)
        if rem:
            tail = slice(full * batch_size, num)
            params, opt_state, state, loss = step(
                params,
                opt_state,
                state,
                jax.random.fold_in(key, full),
                xs[tail],
                cs[tail],
                ws[tail],
            )
            total = total + loss
        return params, opt_state, state, total / (full + (1 if rem else 0))

    return epoch


def count_solves(method: Method, sp: Callable, problem: Problem, cfg: Config, seed: int) -> int:
    """Oracle calls of one training epoch, counted by running it with a counting oracle.

    Each call of the one-instance oracle (under ``vmap``: each instance) triggers a host
    callback that increments a counter; the epoch runs once, outside any timing.
    """
    if method.build is None:
        return 0
    count = [0]

    def tick(*_):
        count[0] += 1

    def counting(c, *args):
        jax.debug.callback(tick, c)
        return sp(c, *args)

    built = method.build(counting)
    tx = optax.adam(cfg.lr)
    params = jax.tree.map(jnp.asarray, init_params(seed, cfg.num_feat, problem.c_train.shape[1]))
    epoch = jax.jit(make_epoch(built, tx, len(problem.x_train), cfg.batch_size))
    perm = batch_orders(seed, 1, len(problem.x_train))[0]
    out = epoch(
        params,
        tx.init(params),
        built.state,
        jax.random.key(seed),
        problem.x_train,
        problem.c_train,
        problem.w_train,
        perm,
    )
    jax.block_until_ready(out)
    jax.effects_barrier()
    return count[0]


_COMPILED: dict[Any, Any] = {}


def run_method(
    method: Method,
    sp: Callable,
    problem: Problem,
    cfg: Config,
    seed: int,
    *,
    progress: bool = True,
) -> dict:
    """Trains ``method`` on ``problem`` and returns its record.

    The record holds the test regret after every epoch (``curve``, index 0 = initial weights),
    the final test and training regret, the wall time of every epoch (evaluation excluded; the
    first call's compilation is timed apart in ``compile_s``, ``0`` when a previous run of the
    same method in this process compiled it) and the mean training loss of every epoch.
    """
    evaluate = make_evaluate(sp)
    n, d = problem.c_train.shape
    x_tr, c_tr, w_tr = (jnp.asarray(a) for a in (problem.x_train, problem.c_train, problem.w_train))
    x_te, c_te, z_te = (jnp.asarray(a) for a in (problem.x_test, problem.c_test, problem.z_test))

    def test_regret(params):
        return float(evaluate(predict(params, x_te), c_te, z_te))

    record: dict[str, Any] = {"method": method.name, "seed": seed}
    if method.build is None:
        t0 = time.perf_counter()
        params = jax.tree.map(jnp.asarray, fit_least_squares(problem.x_train, problem.c_train))
        fit_s = time.perf_counter() - t0
        record.update(
            curve=[test_regret(params)],
            epoch_s=[],
            fit_s=fit_s,
            compile_s=0.0,
            train_loss=[],
        )
    else:
        tx = optax.adam(cfg.lr)
        cache_key = (method.name, id(sp), n, d, cfg.batch_size, cfg.lr, cfg.num_feat)
        params = jax.tree.map(jnp.asarray, init_params(seed, cfg.num_feat, d))
        opt_state = tx.init(params)
        if cache_key not in _COMPILED:
            built = method.build(sp)
            epoch = jax.jit(make_epoch(built, tx, n, cfg.batch_size))
            perm0 = jnp.asarray(batch_orders(seed, 1, n)[0])
            t0 = time.perf_counter()
            compiled = epoch.lower(
                params, opt_state, built.state, jax.random.key(0), x_tr, c_tr, w_tr, perm0
            ).compile()
            _COMPILED[cache_key] = (built, compiled, time.perf_counter() - t0)
            compile_s = _COMPILED[cache_key][2]
        else:
            compile_s = 0.0
        built, compiled, _ = _COMPILED[cache_key]
        state = built.state
        orders = batch_orders(seed, cfg.epochs, n)
        base = jax.random.key(seed)
        curve, times, losses = [test_regret(params)], [], []
        bar = tqdm(range(cfg.epochs), desc=f"{method.name} seed {seed}", disable=not progress)
        for e in bar:
            perm = jnp.asarray(orders[e])
            key = jax.random.fold_in(base, e)
            jax.block_until_ready((params, perm))
            t0 = time.perf_counter()
            params, opt_state, state, loss = compiled(
                params, opt_state, state, key, x_tr, c_tr, w_tr, perm
            )
            jax.block_until_ready((params, opt_state, state, loss))
            times.append(time.perf_counter() - t0)
            losses.append(float(loss))
            curve.append(test_regret(params))
            bar.set_postfix(regret=f"{curve[-1]:.4f}", ms=f"{1e3 * times[-1]:.1f}")
        record.update(curve=curve, epoch_s=times, compile_s=compile_s, train_loss=losses)
        if state is not None:
            record["final_state"] = {
                k: float(getattr(state, k)) for k in ("beta", "nnz", "velocity", "lam")
            }
    record["test_regret"] = record["curve"][-1]
    train_paths = jax.vmap(sp)(predict(params, x_tr))
    z_tr = jnp.asarray(problem.z_train)
    record["train_regret"] = float(normalized_regret(jnp.sum(c_tr * train_paths, axis=-1), z_tr))
    record["params"] = {k: np.asarray(v).tolist() for k, v in params.items()}
    return record
