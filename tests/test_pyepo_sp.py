"""PyEPO shortest-path benchmark: data, split, oracle, regret, PyEPO's I-MLE, solver calls, smoke.

The comparisons with PyEPO itself (and scikit-learn, which PyEPO installs) run when the optional
extra ``pyepo`` is installed (``pip install -e '.[pyepo]'``) and are skipped otherwise.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.csgraph

import imlejax as ij

pytest.importorskip("optax")
pytest.importorskip("matplotlib")

from experiments.pyepo_sp import __main__ as cli  # noqa: E402
from experiments.pyepo_sp import methods  # noqa: E402
from experiments.pyepo_sp.data import (  # noqa: E402
    gen_data,
    make_problem,
    num_arcs,
    train_test_split,
)
from experiments.pyepo_sp.oracle import grid_oracle  # noqa: E402
from experiments.pyepo_sp.train import (  # noqa: E402
    Config,
    count_solves,
    make_evaluate,
    normalized_regret,
)

NO_PYEPO = "optional extra 'pyepo' not installed (pip install -e '.[pyepo]')"


def _pyepo():
    return pytest.importorskip("pyepo", reason=NO_PYEPO)


def _pyepo_solver(grid):
    """PyEPO's shortest-path model with whichever of its solvers is installed."""
    _pyepo()
    from experiments.pyepo_sp import reference

    for solver in ("gurobi", "ortools"):
        if reference.solver_available(solver):
            return reference.make_optmodel(grid, solver)
    pytest.skip("neither gurobipy nor ortools is installed (optional extra 'pyepo')")


@pytest.fixture(scope="module")
def solve():
    return jax.jit(jax.vmap(grid_oracle((5, 5))))


def test_gen_data_properties():
    x, c = gen_data(50, 5, (5, 5), deg=4, noise_width=0.5, seed=3)
    assert x.shape == (50, 5) and c.shape == (50, 40) and c.dtype == np.float32
    assert np.all(c > 0)
    x2, c2 = gen_data(50, 5, (5, 5), deg=4, noise_width=0.5, seed=3)
    np.testing.assert_array_equal(c, c2)
    _, c3 = gen_data(50, 5, (5, 5), deg=4, noise_width=0.5, seed=4)
    assert not np.allclose(c, c3)
    # No noise, degree 1: c = (B x / sqrt(p) + 3 + 1) / 3.5 with a 0/1 matrix B.
    x, c = gen_data(20, 4, (3, 3), deg=1, noise_width=0.0, seed=0)
    b = np.linalg.lstsq(x, c * 3.5 - 4, rcond=None)[0].T * 2  # = B (p = 4, sqrt(p) = 2)
    np.testing.assert_allclose(b, np.round(b), atol=1e-4)
    assert set(np.round(b).ravel().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="deg"):
        gen_data(5, 5, (5, 5), deg=0)
    with pytest.raises(ValueError, match="noise_width"):
        gen_data(5, 5, (5, 5), noise_width=-0.1)


@pytest.mark.parametrize(
    "args",
    [(100, 5, (5, 5), 4, 0.5), (30, 3, (3, 4), 1, 0.0), (40, 6, (4, 2), 2, 0.25)],
)
def test_gen_data_equals_pyepo(args):
    pyepo = _pyepo()
    from pyepo.data import shortestpath

    for seed in (0, 1, 42, 135):
        x, c = gen_data(*args, seed=seed)
        xp, cp = shortestpath.genData(*args, seed=seed)
        assert pyepo is not None
        np.testing.assert_array_equal(x, xp)
        np.testing.assert_array_equal(c, cp)
        assert c.dtype == cp.dtype


def test_grid_arcs_equal_pyepo():
    _pyepo()
    from pyepo.model.bases import _get_grid_arcs

    for grid in ((5, 5), (3, 4), (4, 2), (1, 3)):
        src, dst = ij.grid_dag_edges(*grid)
        assert list(zip(src.tolist(), dst.tolist(), strict=True)) == list(_get_grid_arcs(grid))
        assert len(src) == num_arcs(grid)


def test_split_equals_sklearn():
    sk = pytest.importorskip("sklearn.model_selection", reason=NO_PYEPO)
    for seed in (0, 246):
        split = train_test_split(2000, 1000, random_state=seed)
        train, test = sk.train_test_split(np.arange(2000), test_size=1000, random_state=seed)
        np.testing.assert_array_equal(split.train, train)
        np.testing.assert_array_equal(split.test, test)
    with pytest.raises(ValueError, match="test_size"):
        train_test_split(10, 10, 0)


def _path_checks(z, src, dst, num_nodes):
    """0/1 entries, unit flow out of node 0 into the last node, conservation elsewhere."""
    assert set(np.unique(z).tolist()) <= {0.0, 1.0}
    flow = np.zeros((len(z), num_nodes))
    np.add.at(flow.T, dst, z.T)
    np.subtract.at(flow.T, src, z.T)
    expected = np.zeros(num_nodes)
    expected[0], expected[-1] = -1, 1
    np.testing.assert_array_equal(flow, np.broadcast_to(expected, flow.shape))


def test_oracle_against_scipy(solve):
    """Optimal costs equal scipy's Bellman-Ford (negative costs included; DAG, no cycles)."""
    src, dst = ij.grid_dag_edges(5, 5)
    rng = np.random.default_rng(0)
    costs = np.concatenate(
        [
            rng.uniform(0.1, 2.0, (100, 40)),
            rng.normal(0.0, 1.0, (100, 40)),  # predicted costs can be negative
            rng.integers(1, 4, (100, 40)),  # many ties
        ]
    ).astype(np.float32)
    z = np.asarray(solve(costs))
    _path_checks(z, src, dst, 25)
    for c, zi in zip(costs, z, strict=True):
        graph = scipy.sparse.csr_matrix((c.astype(np.float64), (src, dst)), shape=(25, 25))
        best = scipy.sparse.csgraph.shortest_path(graph, method="BF", indices=0)[24]
        np.testing.assert_allclose(c @ zi, best, rtol=1e-5, atol=1e-5)


def test_oracle_equals_pyepo_solver(solve):
    optmodel = _pyepo_solver((5, 5))
    from experiments.pyepo_sp.reference import solve_all

    _, c = gen_data(100, 5, (5, 5), deg=4, noise_width=0.5, seed=7)
    sols, objs = solve_all(optmodel, c)
    z = np.asarray(solve(c))
    np.testing.assert_array_equal(np.abs(sols), z)  # LP solutions may carry -0.0
    np.testing.assert_allclose(np.sum(c * z, axis=1), objs, rtol=1e-5)


def test_regret_definition(solve):
    sp = grid_oracle((5, 5))
    evaluate = make_evaluate(sp)
    _, c = gen_data(40, 5, (5, 5), deg=4, noise_width=0.5, seed=1)
    c = jnp.asarray(c)
    z = jnp.sum(c * solve(c), axis=1)
    assert float(evaluate(c, c, z)) == 0.0  # true costs: no regret
    bad = float(evaluate(-c, c, z))  # the most expensive paths
    longest = jnp.sum(c * solve(-c), axis=1)
    np.testing.assert_allclose(bad, float((longest - z).sum() / z.sum()), rtol=1e-5)
    assert bad > 0.5
    np.testing.assert_allclose(float(normalized_regret(2 * z, z)), 1.0, rtol=1e-6)


def test_regret_equals_pyepo_metric():
    optmodel = _pyepo_solver((5, 5))
    from experiments.pyepo_sp.reference import pyepo_regret

    sp = grid_oracle((5, 5))
    solve_np = jax.jit(jax.vmap(sp))
    problem = make_problem(
        0, lambda c: np.asarray(solve_np(c)), num_train=20, num_test=60, noise_width=0.5
    )
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (5, 40)).astype(np.float32)
    b = rng.uniform(0.2, 1.0, 40).astype(np.float32)
    mine = make_evaluate(sp)(jnp.asarray(problem.x_test @ w + b), problem.c_test, problem.z_test)
    theirs = pyepo_regret(w, b, optmodel, problem.x_test, problem.c_test)
    assert theirs > 0.01
    np.testing.assert_allclose(float(mine), theirs, rtol=1e-4)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class _Table:
    """Noise that returns a fixed table (ignores the key): the same draws as a PyEPO run."""

    table: jax.Array
    tau: float = dataclasses.field(default=1.0, metadata=dict(static=True))

    def sample(self, key, shape, dtype=jnp.float32):
        assert tuple(shape) == self.table.shape, (shape, self.table.shape)
        return self.table.astype(dtype)


class _TorchTable:
    """A PyEPO noise distribution returning a fixed (batch, samples, arcs) table."""

    def __init__(self, table):
        self.table = table

    def sample(self, size, device=None, dtype=None):
        import torch

        assert tuple(size) == self.table.shape
        return torch.tensor(np.array(self.table), dtype=dtype)


def test_imle_pyepo_gradient_equals_pyepo_torch():
    """With the same noise draws, ``imle_pyepo``'s gradient is PyEPO's torch implicitMLE's."""
    _pyepo()
    torch = pytest.importorskip("torch", reason=NO_PYEPO)
    from pyepo.func import implicitMLE

    optmodel = _pyepo_solver((5, 5))
    sp = grid_oracle((5, 5))
    batch, s = 4, methods.PYEPO_SAMPLES
    rng = np.random.default_rng(3)
    _, c = gen_data(batch, 5, (5, 5), deg=4, noise_width=0.5, seed=2)
    w = np.array(jax.vmap(sp)(jnp.asarray(c)))
    c_hat = (c + rng.normal(0, 0.3, c.shape)).astype(np.float32)
    table = np.asarray(
        ij.sog(methods.PYEPO_KAPPA, 1.0, methods.PYEPO_TERMS).sample(
            jax.random.key(0), (batch, s, 40)
        )
    )

    imle = implicitMLE(
        optmodel,
        n_samples=s,
        sigma=methods.PYEPO_SIGMA,
        lambd=methods.PYEPO_LAMBDA,
        distribution=_TorchTable(table),
    )
    cp = torch.tensor(c_hat, requires_grad=True)
    loss = torch.nn.L1Loss()(imle(cp), torch.as_tensor(w))
    loss.backward()
    theirs = cp.grad.numpy()

    def batch_loss(c_hat):
        z = jnp.stack(
            [
                methods.pyepo_imle(sp, noise=_Table(jnp.asarray(table[i])))(
                    jax.random.key(0), c_hat[i]
                )
                for i in range(batch)
            ]
        )
        return methods._l1(jnp.mean(z, axis=1), w)

    value, mine = jax.jit(jax.value_and_grad(batch_loss))(jnp.asarray(c_hat))
    np.testing.assert_allclose(float(value), loss.item(), rtol=1e-6)
    assert np.count_nonzero(theirs) > 10  # the finite differences are not all zero
    np.testing.assert_allclose(np.asarray(mine), theirs, rtol=1e-5, atol=1e-9)


def test_spo_plus_gradient(solve):
    built = methods.METHODS["spo_plus"].build(grid_oracle((5, 5)))
    rng = np.random.default_rng(0)
    c = jnp.asarray(rng.uniform(0.1, 2.0, (8, 40)), jnp.float32)
    c_hat = jnp.asarray(rng.normal(0.5, 0.5, (8, 40)), jnp.float32)
    w = solve(c)
    g = jax.grad(lambda ch: built.loss(None, ch, c, w, None))(c_hat)
    expected = 2 * (w - solve(2 * c_hat - c)) / 8
    np.testing.assert_allclose(np.asarray(g), np.asarray(expected), atol=1e-7)


def test_solver_calls_are_counted():
    sp = grid_oracle((5, 5))
    solve = jax.jit(jax.vmap(sp))
    cfg = Config(num_train=24, num_test=8, epochs=1, batch_size=8)
    problem = make_problem(0, lambda c: np.asarray(solve(c)), **cfg.data_kwargs())
    assert count_solves(methods.METHODS["blackbox"], sp, problem, cfg, 0) == 24 * 2
    assert count_solves(methods.METHODS["2stage_ls"], sp, problem, cfg, 0) == 0
    assert methods.METHODS["blackbox"].solves == (1, 1)


def test_smoke(tmp_path):
    """Two epochs on 64 instances; a second call recomputes (--fresh) the same imlejax numbers."""
    from experiments.pyepo_sp import reference

    pyepo = "torch" if reference.available() is None else "off"
    argv = ["--smoke", "--methods", "2stage_ls,imle_pyepo", "--no-count", "--no-progress"]
    argv += ["--out", str(tmp_path)]
    result = cli.main([*argv, "--pyepo", pyepo])
    runs = {r["method"]: r for r in result["runs"]}
    assert len(runs["imle_pyepo"]["curve"]) == 3 and len(runs["imle_pyepo"]["epoch_s"]) == 2
    for name in ("pyepo_sp.json", "pyepo_sp.csv", "pyepo_sp_regret.png", "pyepo_sp_curves.png"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "pyepo_sp.json").read_text())
    assert saved["summary"]["imle_pyepo"]["regret_median"] == runs["imle_pyepo"]["test_regret"]
    again = cli.main([*argv, "--pyepo", "off", "--fresh"])  # the imlejax runs again
    runs2 = {r["method"]: r for r in again["runs"]}
    assert runs2["imle_pyepo"]["curve"] == runs["imle_pyepo"]["curve"]
    if pyepo == "torch":
        torch_run = runs["pyepo_torch"]
        assert torch_run["solves_per_epoch"] == 64 * 2 * methods.PYEPO_SAMPLES
        np.testing.assert_allclose(
            torch_run["pyepo_metric_regret"], torch_run["test_regret"], rtol=1e-4
        )


@pytest.mark.slow
def test_every_method_trains(solve):
    """Every configuration builds, and one training epoch gives a finite loss and regret."""
    from experiments.pyepo_sp.train import run_method

    sp = grid_oracle((5, 5))
    cfg = Config(num_train=32, num_test=16, epochs=1, batch_size=16)
    problem = make_problem(0, lambda c: np.asarray(solve(c)), **cfg.data_kwargs())
    for method in methods.METHODS.values():
        record = run_method(method, sp, problem, cfg, 0, progress=False)
        assert np.isfinite(record["test_regret"]), method.name
        assert all(np.isfinite(record["train_loss"])), method.name
