"""Tests of the shortest-path oracles against SciPy's Dijkstra, networkx and an exact reference
of the documented tie-breaking rule."""

import functools
import heapq

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

import imlejax as ij
from imlejax._shortest_path import _OFFSETS, _grid_solve

# ------------------------------------------------------------------------------ references


def _grid_arcs(shape, neighbourhood):
    """``(u, v)`` flat indices of every move between neighbouring tiles."""
    h, w = shape
    arcs = []
    for i in range(h):
        for j in range(w):
            for di, dj in _OFFSETS[neighbourhood]:
                if 0 <= i + di < h and 0 <= j + dj < w:
                    arcs.append(((i + di) * w + j + dj, i * w + j))
    return np.asarray(arcs, np.int64).reshape(-1, 2)


def _scipy_grid(w, neighbourhood, source, target):
    """Optimal cost and one optimal path (indicator) by SciPy's Dijkstra on the digraph whose
    arc u -> v costs w[v], plus the source's own cost. Needs w > 0 (explicit zeros vanish)."""
    h, wd = w.shape
    arcs = _grid_arcs(w.shape, neighbourhood)
    graph = csr_matrix((w.ravel()[arcs[:, 1]], (arcs[:, 0], arcs[:, 1])), shape=(h * wd,) * 2)
    s, t = source[0] * wd + source[1], target[0] * wd + target[1]
    dist, pred = dijkstra(graph, indices=s, return_predecessors=True)
    z = np.zeros(h * wd)
    v = t
    while v != s:
        z[v], v = 1, pred[v]
    z[s] = 1
    return dist[t] + w.ravel()[s], z.reshape(w.shape)


def _lexicographic(num_nodes, arcs, source, init):
    """Exact Dijkstra on (cost, steps) pairs, then the documented backtrack: at each node the
    tight incoming arc with the smallest id whose tail has one step fewer. ``arcs`` holds
    ``(tail, head, cost, id)`` with exact (integer) costs."""
    into = [[] for _ in range(num_nodes)]
    out = [[] for _ in range(num_nodes)]
    for a in arcs:
        out[a[0]].append(a)
        into[a[1]].append(a)
    best = [None] * num_nodes
    best[source] = (init, 0)
    heap = [(init, 0, source)]
    while heap:
        cost, steps, u = heapq.heappop(heap)
        if (cost, steps) != best[u]:
            continue
        for _, v, c, _ in out[u]:
            key = (cost + c, steps + 1)
            if best[v] is None or key < best[v]:
                best[v] = key
                heapq.heappush(heap, (*key, v))

    def backtrack(target):
        if best[target] is None:
            return None
        ids, v = [], target
        while v != source:
            cost, steps = best[v]
            tight = [
                a
                for a in into[v]
                if best[a[0]] is not None and best[a[0]] == (cost - a[2], steps - 1)
            ]
            a = min(tight, key=lambda a: a[3])
            ids.append(a[3])
            v = a[0]
        return ids

    return best, backtrack


def _reference_grid(w, neighbourhood, source, target):
    """The documented path of the grid oracle, for integer-valued costs w >= 0."""
    h, wd = w.shape
    flat = [int(x) for x in w.ravel()]
    arcs = [(u, v, flat[v], u) for u, v in _grid_arcs(w.shape, neighbourhood).tolist()]
    s, t = source[0] * wd + source[1], target[0] * wd + target[1]
    best, backtrack = _lexicographic(h * wd, arcs, s, flat[s])
    z = np.zeros(h * wd)
    z[[s, t, *backtrack(t)]] = 1  # arc ids are the tails: every tile before t
    return z.reshape(w.shape), best


def _check_grid_path(z, w, neighbourhood, source, target, cost):
    """z marks a connected set of tiles holding source and target with the optimal cost: for
    positive costs, exactly one optimal path."""
    assert set(np.unique(z)) <= {0.0, 1.0}
    assert z[source] == 1 and z[target] == 1
    on = {tuple(p) for p in np.argwhere(z == 1).tolist()}
    seen, stack = {tuple(source)}, [tuple(source)]
    while stack:
        i, j = stack.pop()
        for di, dj in _OFFSETS[neighbourhood]:
            nb = (i + di, j + dj)
            if nb in on and nb not in seen:
                seen.add(nb)
                stack.append(nb)
    assert seen == on, "the marked tiles are not one connected path"
    np.testing.assert_allclose(np.sum(z * w), cost, rtol=1e-5)


# ------------------------------------------------------------------------------ grid oracle

# (neighbourhood, shape, source, target): non-square grids, custom ends, a single row/column.
GRID_CASES = [
    (8, (7, 9), (0, 0), None),
    (4, (7, 9), (0, 0), None),
    (8, (9, 6), (4, 3), (0, 5)),
    (4, (6, 1), (5, 0), (0, 0)),
]


@functools.cache
def _batched_solver(neighbourhood, source, target):
    """The jitted, vmapped private solver (path and rounds run), compiled once per case."""
    return jax.jit(jax.vmap(lambda w: _grid_solve(w, source, target, neighbourhood)))


@pytest.mark.parametrize(("neighbourhood", "shape", "source", "target"), GRID_CASES)
def test_grid_matches_scipy_and_the_documented_ties(neighbourhood, shape, source, target):
    target = target or (shape[0] - 1, shape[1] - 1)
    solve = _batched_solver(neighbourhood, source, target)
    rng = np.random.default_rng([neighbourhood, *shape])
    continuous = rng.uniform(0.1, 10.0, size=(16, *shape)).astype(np.float32)
    positive = rng.integers(1, 4, size=(16, *shape)).astype(np.float32)  # many ties
    with_zeros = rng.integers(0, 3, size=(16, *shape)).astype(np.float32)  # zero-cost cycles
    for kind, ws in (("continuous", continuous), ("positive", positive), ("zeros", with_zeros)):
        zs, rounds = (np.asarray(x) for x in solve(jnp.asarray(ws)))
        assert zs.dtype == np.float32 and zs.shape == ws.shape
        for w, z, r in zip(ws, zs, rounds, strict=True):
            if kind != "zeros":  # SciPy drops explicit zeros of a sparse graph
                cost, expected = _scipy_grid(w.astype(np.float64), neighbourhood, source, target)
                _check_grid_path(z, w, neighbourhood, source, target, cost)
            if kind == "continuous":  # the optimum is unique almost surely
                np.testing.assert_array_equal(z, expected)
                continue
            expected, best = _reference_grid(w, neighbourhood, source, target)
            np.testing.assert_array_equal(z, expected)
            # Per instance under vmap: one round per step of the longest fewest-step cheapest
            # path to any tile, and one round without change.
            assert r == 1 + max(steps for _, steps in best)


def test_grid_public_oracle_jit_vmap_and_eager_agree():
    oracle = ij.grid_shortest_path(neighbourhood=4)
    ws = np.random.default_rng(3).uniform(0.1, 10.0, size=(16, 7, 9)).astype(np.float32)
    zs = jax.jit(jax.vmap(oracle))(ws)
    private_zs, rounds = _batched_solver(4, (0, 0), (6, 8))(ws)
    np.testing.assert_array_equal(zs, private_zs)
    np.testing.assert_array_equal(jax.jit(jax.vmap(oracle.num_rounds))(ws), rounds)
    np.testing.assert_array_equal(oracle(ws[5]), zs[5])
    np.testing.assert_array_equal(
        jax.vmap(jax.vmap(oracle))(ws.reshape(4, 4, 7, 9)).reshape(zs.shape), zs
    )


def test_grid_ties_and_trivial_grids_by_hand():
    # Zero costs: the fewest tiles (the diagonal), no cycle; a single tile is its own path.
    np.testing.assert_array_equal(ij.grid_shortest_path()(jnp.zeros((4, 4))), np.eye(4))
    np.testing.assert_array_equal(ij.grid_shortest_path()(jnp.array([[-3.0]])), [[1.0]])


def test_grid_float64_resolves_differences_float32_cannot():
    base = np.ones((6, 6))
    base[1:5, 1:5] = 5.0
    eps = 1e-12 * np.arange(36).reshape(6, 6)  # far below float32 resolution of the sums
    with jax.enable_x64(True):
        z = jax.jit(ij.grid_shortest_path(neighbourhood=4))(jnp.asarray(base + eps, jnp.float64))
        assert z.dtype == jnp.float64
        _, expected = _scipy_grid(base + eps, 4, (0, 0), (5, 5))
        np.testing.assert_array_equal(z, expected)
    z = ij.grid_shortest_path()(jnp.asarray(base, jnp.bfloat16))  # solved in float32
    assert z.dtype == jnp.bfloat16
    np.testing.assert_array_equal(z, _reference_grid(base, 8, (0, 0), (5, 5))[0])


def test_grid_rounding_that_hides_a_later_improvement_still_gives_the_optimal_path():
    # In float32, 2.5 + 1e8 == 2.3 + 1e8: the tile (0, 3) keeps the distance it got in round 3
    # through (0, 2) reached the short way (cost 2.5, two steps), while (0, 2) improves in round 4
    # the long way (cost 2.3, four steps). The predecessor rule falls back to the closer tile.
    w = np.array([[1.0, 0.5, 1.0, 1e8], [0.1, 0.1, 0.1, np.inf]], np.float32)
    assert np.float32(2.5) + np.float32(1e8) == np.float32(2.3) + np.float32(1e8)
    z = ij.grid_shortest_path(neighbourhood=4, target=(0, 3))(w)
    np.testing.assert_array_equal(z, [[1, 0, 1, 1], [1, 1, 1, 0]])


def test_grid_negative_costs_are_clamped_and_non_finite_costs_documented():
    solve = _batched_solver(8, (0, 0), (6, 8))  # compiled for a batch of 16 grids of 7 x 9
    w = np.random.default_rng(0).normal(size=(16, 7, 9)).astype(np.float32)
    np.testing.assert_array_equal(solve(w)[0], solve(np.maximum(w, 0))[0])
    # +inf tiles are impassable: a wall with one gap forces the path through the gap.
    ws = np.ones((16, 7, 9), np.float32)
    ws[0, 3, :8] = np.inf  # a wall with a gap at (3, 8)
    ws[1, 3, :] = np.inf  # a closed wall
    ws[2, 0, 4] = np.nan
    ws[3, 0, 0] = np.inf  # an impassable source
    zs = np.asarray(solve(ws)[0])
    finite = np.where(np.isinf(ws[0]), 1e9, ws[0])
    cost, _ = _scipy_grid(finite, 8, (0, 0), (6, 8))
    _check_grid_path(zs[0], finite, 8, (0, 0), (6, 8), cost)
    assert zs[0][3, 8] == 1
    # No path (closed wall, impassable source) or a NaN anywhere: all NaN, never a path.
    assert np.all(np.isnan(zs[1:4]))
    assert not np.any(np.isnan(zs[4:]))


def test_grid_inside_imle_gradient_by_hand():
    # Two equal paths on a 2 x 2 grid with 4-neighbourhood: the tie goes to the top-right one
    # ((0, 1) has the smaller flat index than (1, 0)). The loss penalises its top-right tile.
    # Backward: w' = w + lam * dL/dz moves the path to the bottom-left, and
    # dL/dw = (z(w') - z(w)) / lam.
    w = jnp.ones((2, 2))
    g = jnp.array([[0.0, 5.0], [0.0, 0.0]])
    sampler = ij.imle(
        ij.grid_shortest_path(neighbourhood=4), noise=None, target=ij.pid(1.0), minimize=True
    )
    z = sampler(jax.random.key(0), w)
    np.testing.assert_array_equal(z, [[1, 1], [0, 1]])
    grad = jax.grad(lambda w: jnp.sum(sampler(jax.random.key(0), w) * g))(w)
    np.testing.assert_array_equal(grad, [[0, -1], [1, 0]])


@pytest.mark.slow
def test_grid_inside_imle_with_noise_jitted():
    # With noise and samples, jitted: finite gradients of the costs' shape that move the path
    # towards the gold diagonal (lower costs on it, higher off it, on average).
    noisy = ij.imle(
        ij.grid_shortest_path(), noise=ij.gumbel(0.5), target=ij.pid(10.0), samples=4, minimize=True
    )
    gold = jnp.eye(6)
    w = jnp.asarray(np.random.default_rng(2).uniform(0.5, 2, (6, 6)), jnp.float32)
    grad = jax.jit(jax.grad(lambda w: jnp.sum(jnp.abs(noisy(jax.random.key(1), w) - gold[None]))))(
        w
    )
    assert grad.shape == w.shape and bool(jnp.all(jnp.isfinite(grad)))
    assert jnp.sum(grad * gold) > 0 > jnp.sum(grad * (1 - gold))


def test_grid_errors():
    with pytest.raises(ValueError, match="neighbourhood must be 4 or 8"):
        ij.grid_shortest_path(neighbourhood=6)
    with pytest.raises(ValueError, match="source"):
        ij.grid_shortest_path(source=(-1, 0))
    with pytest.raises(ValueError, match="target"):
        ij.grid_shortest_path(target=(1,))
    oracle = ij.grid_shortest_path(target=(5, 5))
    with pytest.raises(ValueError, match=r"w must be a non-empty \(H, W\)"):
        oracle(jnp.ones(5))
    with pytest.raises(TypeError, match="floating dtype"):
        oracle(jnp.ones((6, 6), jnp.int32))
    with pytest.raises(ValueError, match="target \\(5, 5\\) is outside the grid"):
        jax.jit(oracle)(jnp.ones((5, 6)))
    assert repr(oracle) == "grid_shortest_path(neighbourhood=8, target=(5, 5))"
    assert oracle == ij.grid_shortest_path(target=(5, 5)) and hash(oracle) == hash(
        ij.grid_shortest_path(target=(5, 5))
    )


# ------------------------------------------------------------------------------ graph oracle


def _nx_path(sources, targets, c, source, target, negative=False):
    """Optimal cost and one optimal path (edge indicator) by networkx on a multigraph."""
    g = nx.MultiDiGraph()
    g.add_nodes_from(range(max(max(sources), max(targets), source, target) + 1))
    for e, (u, v) in enumerate(zip(sources, targets, strict=True)):
        g.add_edge(u, v, key=e, weight=float(c[e]))
    find = nx.bellman_ford_path if negative else nx.dijkstra_path
    nodes = find(g, source, target)
    z = np.zeros(len(c))
    cost = 0.0
    for u, v in zip(nodes[:-1], nodes[1:], strict=True):
        e = min(g[u][v], key=lambda e: g[u][v][e]["weight"])
        z[e], cost = 1, cost + g[u][v][e]["weight"]
    return cost, z


def _check_edge_path(z, sources, targets, source, target, c, cost):
    """z is a simple path of edges from source to target with the optimal cost."""
    assert set(np.unique(z)) <= {0.0, 1.0}
    edges = np.flatnonzero(z)
    nxt = {sources[e]: targets[e] for e in edges}
    assert len(nxt) == len(edges), "two chosen edges leave the same node"
    v, visited = source, {source}
    while v != target:
        v = nxt.pop(v)
        assert v not in visited
        visited.add(v)
    assert not nxt, "edges off the path are marked"
    np.testing.assert_allclose(z @ c, cost, rtol=1e-5, atol=1e-6)


def _random_digraph(seed, num_nodes=9, num_edges=30):
    rng = np.random.default_rng(seed)
    sources = rng.integers(0, num_nodes, num_edges)
    targets = rng.integers(0, num_nodes, num_edges)
    return sources.tolist(), targets.tolist()  # cycles, parallel edges and self-loops


def test_graph_pyepo_grid_matches_networkx_with_negative_costs():
    sources, targets = ij.grid_dag_edges(5, 5)
    oracle = ij.graph_shortest_path(sources, targets, 25, source=0, target=24)
    rng = np.random.default_rng(0)
    continuous = rng.normal(0.5, 1.0, size=(20, 40))  # a DAG: negative costs are fine
    integer = rng.integers(-1, 3, size=(20, 40))  # many ties
    costs = np.concatenate([continuous, integer]).astype(np.float32)
    zs = np.asarray(jax.jit(jax.vmap(oracle))(costs))
    arcs = list(zip(sources.tolist(), targets.tolist(), strict=True))
    for i, (c, z) in enumerate(zip(costs, zs, strict=True)):
        cost, expected = _nx_path(sources.tolist(), targets.tolist(), c, 0, 24, negative=True)
        _check_edge_path(z, sources, targets, 0, 24, c, cost)
        if i < 20:
            np.testing.assert_array_equal(z, expected)
        else:  # the documented tie-breaking
            ids = _lexicographic(25, [(u, v, int(c[e]), e) for e, (u, v) in enumerate(arcs)], 0, 0)
            np.testing.assert_array_equal(np.flatnonzero(z), sorted(ids[1](24)))
    np.testing.assert_array_equal(oracle(costs[0]), zs[0])


@pytest.mark.parametrize("seed", range(2))
def test_graph_with_cycles_matches_networkx(seed):
    sources, targets = _random_digraph(seed)
    oracle = jax.jit(jax.vmap(ij.graph_shortest_path(sources, targets, 9, source=0, target=8)))
    rng = np.random.default_rng(seed)
    continuous = rng.uniform(0.1, 5.0, size=(20, 30)).astype(np.float32)
    integer = rng.integers(0, 3, size=(20, 30)).astype(np.float32)
    for costs in (continuous, integer):
        for c, z in zip(costs, np.asarray(oracle(costs)), strict=True):
            try:
                cost, expected = _nx_path(sources, targets, c, 0, 8)
            except nx.NetworkXNoPath:
                assert np.all(np.isnan(z))
                continue
            _check_edge_path(z, sources, targets, 0, 8, c, cost)
            if costs is continuous:
                np.testing.assert_array_equal(z, expected)
            else:
                arcs = [
                    (u, v, int(c[e]), e)
                    for e, (u, v) in enumerate(zip(sources, targets, strict=True))
                ]
                ids = _lexicographic(9, arcs, 0, 0)[1](8)
                np.testing.assert_array_equal(np.flatnonzero(z), sorted(ids))


def test_graph_non_finite_costs_negative_cycles_and_unreachable_targets():
    # 0 -> 1 -> 2 -> 3 and a cycle 1 -> 2 -> 1.
    oracle = ij.graph_shortest_path([0, 1, 2, 2], [1, 2, 3, 1], 5, source=0, target=3)
    np.testing.assert_array_equal(oracle(jnp.array([1.0, 1.0, 1.0, 1.0])), [1, 1, 1, 0])
    np.testing.assert_array_equal(oracle(jnp.array([1.0, 1.0, 1.0, -1.0])), [1, 1, 1, 0])
    for bad in ([1.0, 1.0, 1.0, -1.5], [1.0, np.nan, 1.0, 1.0], [1.0, 1.0, -np.inf, 1.0]):
        assert np.all(np.isnan(oracle(jnp.array(bad)))), bad  # negative cycle, NaN, -inf
    assert np.all(np.isnan(oracle(jnp.array([1.0, np.inf, 1.0, 1.0]))))  # +inf: no edge
    # A negative cycle reachable from the source, even off every path to the target: all NaN.
    side = ij.graph_shortest_path([0, 0, 2, 3], [1, 2, 3, 2], 4, source=0, target=1)
    np.testing.assert_array_equal(side(jnp.array([1.0, 1.0, 1.0, -0.5])), [1, 0, 0, 0])
    assert np.all(np.isnan(side(jnp.array([1.0, 1.0, 1.0, -1.5]))))
    to_4 = ij.graph_shortest_path([0, 1, 2, 2], [1, 2, 3, 1], 5, source=0, target=4)
    assert np.all(np.isnan(to_4(jnp.ones(4))))  # node 4 unreachable
    loop = ij.graph_shortest_path([0, 1, 2, 2], [1, 2, 3, 1], 5, source=2, target=2)
    np.testing.assert_array_equal(loop(jnp.ones(4)), [0, 0, 0, 0])
    assert (
        oracle.num_rounds(jnp.array([1.0, 1.0, 1.0, -1.5])) == 5
    )  # stopped after num_nodes rounds, still improving
    assert (
        oracle.num_rounds(jnp.array([1.0, 1.0, 1.0, -1.0])) == 4
    )  # three steps to node 3, then one round without change


def test_graph_float64_and_imle_gradient():
    sources, targets = ij.grid_dag_edges(3, 3)
    oracle = ij.graph_shortest_path(sources, targets, 9, source=0, target=8)
    with jax.enable_x64(True):
        c = jnp.ones(12, jnp.float64) + 1e-12 * jnp.arange(12)
        z = oracle(c)
        assert z.dtype == jnp.float64
        _, expected = _nx_path(sources.tolist(), targets.tolist(), np.asarray(c), 0, 8)
        np.testing.assert_array_equal(z, expected)
    # Regret loss <z, c_true> of the path chosen for predicted costs: the gradient moves the
    # predicted costs up on the chosen arcs and down on the better path's arcs.
    sampler = ij.imle(oracle, noise=None, target=ij.pid(10.0), minimize=True)
    c_true = jnp.asarray(np.random.default_rng(0).uniform(0, 2, 12), jnp.float32)
    c_pred = 2.0 - c_true
    grad = jax.jit(jax.grad(lambda c: sampler(jax.random.key(0), c) @ c_true))(c_pred)
    z_pred, z_best = oracle(c_pred), oracle(c_true)
    assert not np.array_equal(z_pred, z_best)
    np.testing.assert_array_equal(grad, (oracle(c_pred + 10.0 * c_true) - z_pred) / 10.0)
    # Hand case: a cost increase on the used edge moves the path; dL/dc = (z(c') - z(c)) / lam.
    two = ij.graph_shortest_path([0, 0], [1, 1], 2, source=0, target=1)
    sampler = ij.imle(two, noise=None, target=ij.pid(1.0), minimize=True)
    grad = jax.grad(lambda c: sampler(jax.random.key(0), c) @ jnp.array([3.0, 0.0]))
    np.testing.assert_array_equal(grad(jnp.array([1.0, 2.0])), [-1.0, 1.0])


def test_grid_dag_edges_is_pyepos_arc_order():
    sources, targets = ij.grid_dag_edges(5, 5)
    assert sources.dtype == np.int32 and len(sources) == 40
    # pyepo.model.utils._get_grid_arcs((5, 5)) begins and ends with these arcs.
    arcs = list(zip(sources.tolist(), targets.tolist(), strict=True))
    assert arcs[:9] == [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (1, 6), (2, 7), (3, 8), (4, 9)]
    assert arcs[-4:] == [(20, 21), (21, 22), (22, 23), (23, 24)]
    assert len(set(arcs)) == 40
    assert ij.grid_dag_edges(1, 1)[0].shape == (0,)
    with pytest.raises(ValueError, match="rows must be an integer >= 1"):
        ij.grid_dag_edges(0, 5)


def test_graph_errors():
    with pytest.raises(ValueError, match="num_nodes must be an integer >= 1"):
        ij.graph_shortest_path([0], [1], 0, source=0, target=0)
    with pytest.raises(ValueError, match="targets holds node indices outside 0..1"):
        ij.graph_shortest_path([0], [2], 2, source=0, target=1)
    with pytest.raises(TypeError, match="integer node indices"):
        ij.graph_shortest_path([0.0], [1.0], 2, source=0, target=1)
    with pytest.raises(ValueError, match="same length"):
        ij.graph_shortest_path([0, 1], [1], 2, source=0, target=1)
    with pytest.raises(ValueError, match="target must be an integer >= 0 and < 2"):
        ij.graph_shortest_path([0], [1], 2, source=0, target=2)
    oracle = ij.graph_shortest_path([0], [1], 2, source=0, target=1)
    with pytest.raises(ValueError, match=r"c must hold one cost per edge, shape \(1,\)"):
        jax.jit(oracle)(jnp.ones((2,)))
    with pytest.raises(TypeError, match="floating dtype"):
        oracle(jnp.ones(1, jnp.int32))
    assert repr(oracle) == "graph_shortest_path(num_nodes=2, num_edges=1, source=0, target=1)"
    assert oracle == ij.graph_shortest_path(np.array([0]), np.array([1]), 2, source=0, target=1)
