"""PyEPO's own I-MLE on the same data, batch order and initial weights (optional extra ``pyepo``).

``run_torch_imle`` trains a ``torch.nn.Linear`` with ``pyepo.func.implicitMLE`` and
``run_jax_imle`` the same linear map with ``pyepo.func.jax.implicitMLE`` (jitted with an explicit
key per step), both with ``nn.L1Loss`` to the true paths, Adam, and PyEPO's host solver (OR-Tools'
GLOP linear program, or Gurobi). The PyEPO modules get ``seed`` for their noise generators. Their
records have the fields of :func:`experiments.pyepo_sp.train.run_method`; the per-epoch test
regret of the curves is computed with the benchmark's exact oracle, outside the timing, and the
final test regret also with ``pyepo.metric.regret`` (``pyepo_metric_regret``).

Nothing here is imported unless PyEPO runs are asked for.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from experiments.pyepo_sp import methods as M
from experiments.pyepo_sp.data import Problem
from experiments.pyepo_sp.train import Config, batch_orders, init_params

__all__ = [
    "SOLVERS",
    "available",
    "make_optmodel",
    "pyepo_regret",
    "run_jax_imle",
    "run_torch_imle",
    "solver_available",
]

SOLVERS = {"ortools": "ortools", "gurobi": "gurobipy"}


def available() -> str | None:
    """``None`` when PyEPO and torch import, else the reason they do not."""
    for module in ("torch", "pyepo"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[pyepo]')"
    return None


def solver_available(solver: str) -> bool:
    return importlib.util.find_spec(SOLVERS[solver]) is not None


def make_optmodel(grid: tuple[int, int], solver: str):
    """PyEPO's ``shortestPathModel`` for ``solver`` (``"ortools"``: GLOP; ``"gurobi"``)."""
    if solver == "ortools":
        from pyepo.model.ort import shortestPathModel

        return shortestPathModel(grid)
    if solver == "gurobi":
        from pyepo.model.grb import shortestPathModel

        return shortestPathModel(grid)
    raise ValueError(f"solver must be one of {sorted(SOLVERS)}; got {solver!r}.")


def solve_all(optmodel, costs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PyEPO's solutions and objective values of every row of ``costs``."""
    sols, objs = [], []
    for c in costs:
        optmodel.setObj(c)
        sol, obj = optmodel.solve()
        sols.append(np.asarray(sol, dtype=np.float64))
        objs.append(obj)
    return np.stack(sols), np.asarray(objs)


class _Counter:
    """Counts the calls of ``optmodel.solve`` (PyEPO solves one instance per call)."""

    def __init__(self, optmodel):
        self.calls = 0
        self._solve = optmodel.solve

        def counted(*args, **kwargs):
            self.calls += 1
            return self._solve(*args, **kwargs)

        optmodel.solve = counted
        self._optmodel = optmodel

    def close(self):
        self._optmodel.solve = self._solve


def pyepo_regret(w: np.ndarray, b: np.ndarray, optmodel, x: np.ndarray, c: np.ndarray) -> float:
    """``pyepo.metric.regret`` of the linear model ``x @ w + b`` on ``(x, c)``."""
    import torch
    from pyepo.data.dataset import optDataset
    from pyepo.metric import regret

    dataset = optDataset(optmodel, x, c)
    loader = torch.utils.data.DataLoader(dataset, batch_size=32, shuffle=False)
    model = torch.nn.Linear(w.shape[0], w.shape[1])
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(np.array(w, dtype=np.float32).T))
        model.bias.copy_(torch.as_tensor(np.array(b, dtype=np.float32)))
    return float(regret(model, optmodel, loader))


def _record(name, seed, curve, times, losses, calls, epochs, extra) -> dict[str, Any]:
    record = {
        "method": name,
        "seed": seed,
        "curve": curve,
        "epoch_s": times,
        "compile_s": 0.0,
        "train_loss": losses,
        "test_regret": curve[-1],
        "solves_per_epoch": calls / max(epochs, 1),
    }
    record.update(extra)
    return record


def run_torch_imle(
    problem: Problem, cfg: Config, seed: int, optmodel, evaluate, *, progress: bool = True
) -> dict:
    """PyEPO's torch ``implicitMLE`` (S=3, sigma=1, lambda=10, SoG kappa=5, 10 terms)."""
    import torch
    from pyepo.func import implicitMLE
    from pyepo.func.utils import sumGammaDistribution

    torch.manual_seed(seed)
    n, d = problem.c_train.shape
    init = init_params(seed, cfg.num_feat, d)
    model = torch.nn.Linear(cfg.num_feat, d)
    with torch.no_grad():
        model.weight.copy_(torch.as_tensor(init["W"].T))
        model.bias.copy_(torch.as_tensor(init["b"]))
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    imle = implicitMLE(
        optmodel,
        n_samples=M.PYEPO_SAMPLES,
        sigma=M.PYEPO_SIGMA,
        lambd=M.PYEPO_LAMBDA,
        distribution=sumGammaDistribution(
            kappa=M.PYEPO_KAPPA, n_iterations=M.PYEPO_TERMS, seed=seed
        ),
        processes=1,
    )
    l1 = torch.nn.L1Loss()
    x = torch.as_tensor(problem.x_train)
    w = torch.as_tensor(problem.w_train)

    def weights():
        return (
            model.weight.detach().numpy().T.copy(),
            model.bias.detach().numpy().copy(),
        )

    def regret_now():
        wt, bt = weights()
        return evaluate(problem.x_test @ wt + bt)

    orders = batch_orders(seed, cfg.epochs, n)
    curve, times, losses = [regret_now()], [], []
    counter = _Counter(optmodel)
    try:
        bar = tqdm(range(cfg.epochs), desc=f"pyepo_torch seed {seed}", disable=not progress)
        for e in bar:
            perm = torch.as_tensor(orders[e].astype(np.int64))
            total, steps = 0.0, 0
            t0 = time.perf_counter()
            for start in range(0, n, cfg.batch_size):
                idx = perm[start : start + cfg.batch_size]
                we = imle(model(x[idx]))
                loss = l1(we, w[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item()
                steps += 1
            times.append(time.perf_counter() - t0)
            losses.append(total / steps)
            curve.append(regret_now())
            bar.set_postfix(regret=f"{curve[-1]:.4f}", s=f"{times[-1]:.2f}")
    finally:
        counter.close()
    wt, bt = weights()
    metric = pyepo_regret(wt, bt, optmodel, problem.x_test, problem.c_test)
    return _record(
        "pyepo_torch",
        seed,
        curve,
        times,
        losses,
        counter.calls,
        cfg.epochs,
        {"pyepo_metric_regret": metric, "params": {"W": wt.tolist(), "b": bt.tolist()}},
    )


def run_jax_imle(
    problem: Problem, cfg: Config, seed: int, optmodel, evaluate, *, progress: bool = True
) -> dict:
    """PyEPO's JAX ``implicitMLE`` (same setting), jitted with ``key=fold_in(key, step)``."""
    import jax
    import jax.numpy as jnp
    import optax
    from pyepo.func.jax import implicitMLE

    n, d = problem.c_train.shape
    imle = implicitMLE(
        optmodel,
        n_samples=M.PYEPO_SAMPLES,
        sigma=M.PYEPO_SIGMA,
        lambd=M.PYEPO_LAMBDA,
        kappa=M.PYEPO_KAPPA,
        n_iterations=M.PYEPO_TERMS,
        seed=seed,
        processes=1,
    )
    tx = optax.adam(cfg.lr)
    params = jax.tree.map(jnp.asarray, init_params(seed, cfg.num_feat, d))
    opt_state = tx.init(params)

    def loss_fn(params, key, xb, wb):
        we = imle(xb @ params["W"] + params["b"][None, :], key=key)
        return M._l1(we, wb)  # torch's L1Loss: derivative sign(e), 0 at e = 0

    @jax.jit
    def step(params, opt_state, key, xb, wb):
        loss, grads = jax.value_and_grad(loss_fn)(params, key, xb, wb)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    x = jnp.asarray(problem.x_train)
    w = jnp.asarray(problem.w_train)

    def regret_now():
        return evaluate(problem.x_test @ np.asarray(params["W"]) + np.asarray(params["b"]))

    orders = batch_orders(seed, cfg.epochs, n)
    base = jax.random.key(seed)
    # Compile both batch shapes first (timed apart), as for the imlejax runs.
    t0 = time.perf_counter()
    shapes = sorted({min(cfg.batch_size, n - s) for s in range(0, n, cfg.batch_size)})
    for size in shapes:
        step.lower(params, opt_state, base, x[:size], w[:size]).compile()
    compile_s = time.perf_counter() - t0
    curve, times, losses = [regret_now()], [], []
    counter = _Counter(optmodel)
    try:
        bar = tqdm(range(cfg.epochs), desc=f"pyepo_jax seed {seed}", disable=not progress)
        for e in bar:
            perm = orders[e]
            key_e = jax.random.fold_in(base, e)
            total, steps = 0.0, 0
            t0 = time.perf_counter()
            for i, start in enumerate(range(0, n, cfg.batch_size)):
                idx = jnp.asarray(perm[start : start + cfg.batch_size])
                params, opt_state, loss = step(
                    params, opt_state, jax.random.fold_in(key_e, i), x[idx], w[idx]
                )
                total += float(loss)
                steps += 1
            jax.block_until_ready(params)
            times.append(time.perf_counter() - t0)
            losses.append(total / steps)
            curve.append(regret_now())
            bar.set_postfix(regret=f"{curve[-1]:.4f}", s=f"{times[-1]:.2f}")
    finally:
        counter.close()
    wt, bt = np.asarray(params["W"]), np.asarray(params["b"])
    metric = pyepo_regret(wt, bt, optmodel, problem.x_test, problem.c_test)
    record = _record(
        "pyepo_jax",
        seed,
        curve,
        times,
        losses,
        counter.calls,
        cfg.epochs,
        {"pyepo_metric_regret": metric, "params": {"W": wt.tolist(), "b": bt.tolist()}},
    )
    record["compile_s"] = compile_s
    return record
