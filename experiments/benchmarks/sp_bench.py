"""Grid shortest paths on a batch of Warcraft-sized maps: the native oracle against SciPy and Python.

For each grid size K (K x K tiles, 8-neighbourhood, top-left to bottom-right, both end tiles
counted) and each cost kind, one batch of B maps (B = 70, the Warcraft batch size) is solved by

* ``native``: ``jax.jit(jax.vmap(ij.grid_shortest_path()))``, the library's pure-JAX oracle;
* ``native, lax.map``: the same oracle mapped one grid at a time (``jax.lax.map``), so that no
  grid waits for the slowest one of the batch;
* ``scipy host``: SciPy's Dijkstra (``scipy.sparse.csgraph.dijkstra``) per grid, called through
  ``ij.host_oracle`` inside ``jax.jit(jax.vmap(...))`` (one host call per batch);
* ``python (numpy)``: a plain-Python ``heapq`` Dijkstra looping over the batch in the style of the
  reference Warcraft code: the costs and distances are NumPy arrays read and written one element
  at a time, visited tiles in a set, predecessors in a dict;
* ``python (lists)``: the same algorithm on nested Python lists, about three times faster.

Cost kinds: ``warcraft`` (tile costs from {0.8, 1.2, 5.3, 7.7, 9.2} in contiguous Voronoi regions,
like the Warcraft maps' terrain) and ``uniform`` (i.i.d. uniform on [0.8, 9.2]). Before timing,
the three solvers are checked to return valid paths of the same optimal cost on the batch.

Compile times are reported apart. Run times: in each of ``--repeats`` rounds every solver runs once
in turn (the Python loops every ``--python-every``-th round), so that load changes on the machine
affect all of them alike; medians over the rounds, speedups as medians of within-round ratios, of
wall-clock time and of the CPU time of the process (all its threads), which a loaded machine
distorts less.
The number of Bellman-Ford rounds (``oracle.num_rounds``) is reported per grid: a vmapped batch runs
as many rounds as its slowest grid.

    python -m experiments.benchmarks.sp_bench [--sizes 12 18 24 30 --batch 70 --json out.json]
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

import imlejax as ij

WARCRAFT_COSTS = (0.8, 1.2, 5.3, 7.7, 9.2)
NEIGHBOURS = tuple((di, dj) for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di, dj) != (0, 0))


def warcraft_like(rng, batch, k):
    """Tile costs from the Warcraft set, constant on the Voronoi regions of about k^2/8 random
    centres (contiguous patches of terrain), float32 of shape (batch, k, k)."""
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    tiles = np.stack([i.ravel(), j.ravel()], axis=1)
    out = np.empty((batch, k * k), np.float32)
    for b in range(batch):
        centres = rng.uniform(0, k, size=(max(2, k * k // 8), 2))
        region = np.argmin(((tiles[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        out[b] = rng.choice(WARCRAFT_COSTS, size=len(centres))[region]
    return out.reshape(batch, k, k)


def make_costs(kind, batch, k, seed):
    rng = np.random.default_rng([seed, k])
    if kind == "warcraft":
        return warcraft_like(rng, batch, k)
    return rng.uniform(0.8, 9.2, size=(batch, k, k)).astype(np.float32)


_STRUCTURE = {}


def _csr_structure(h, w):
    """Index arrays of the digraph with an arc u -> v between neighbouring tiles (cached)."""
    if (h, w) not in _STRUCTURE:
        rows, cols = [], []
        for i in range(h):
            for j in range(w):
                for di, dj in NEIGHBOURS:
                    if 0 <= i + di < h and 0 <= j + dj < w:
                        rows.append(i * w + j)
                        cols.append((i + di) * w + j + dj)
        pattern = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(h * w, h * w))
        _STRUCTURE[h, w] = (pattern.indices, pattern.indptr)
    return _STRUCTURE[h, w]


def scipy_path(w):
    """One grid by SciPy's Dijkstra: arc u -> v costs w[v]; the path from the top-left tile to
    the bottom-right one (the source's own cost is the same for every path)."""
    h, wd = w.shape
    indices, indptr = _csr_structure(h, wd)
    graph = csr_matrix((w.ravel()[indices].astype(np.float64), indices, indptr), (h * wd,) * 2)
    _, pred = dijkstra(graph, indices=0, return_predecessors=True)
    z = np.zeros(h * wd, w.dtype)
    v = h * wd - 1
    while v >= 0:
        z[v] = 1
        v = pred[v]
    return z.reshape(h, wd)


def numpy_dijkstra(w):
    """One grid by a plain-Python heapq Dijkstra reading the NumPy cost array one element at a
    time, as the reference Warcraft code does; returns the 0/1 path."""
    h, wd = w.shape
    dist = np.full(w.shape, np.inf)
    dist[0, 0] = w[0, 0]
    heap = [(dist[0, 0], (0, 0))]
    done = set()
    prev = {}
    while heap:
        d, (i, j) = heapq.heappop(heap)
        if (i, j) in done:
            continue
        done.add((i, j))
        for di, dj in NEIGHBOURS:
            x, y = i + di, j + dj
            if 0 <= x < h and 0 <= y < wd and (x, y) not in done:
                if d + w[x][y] < dist[x][y]:
                    dist[x][y] = d + w[x][y]
                    prev[x, y] = (i, j)
                    heapq.heappush(heap, (dist[x][y], (x, y)))
    z = np.zeros_like(w)
    node = (h - 1, wd - 1)
    z[node] = 1
    while node != (0, 0):
        node = prev[node]
        z[node] = 1
    return z


def numpy_loop(ws):
    """The NumPy-indexing Python Dijkstra over every grid of the batch."""
    return np.stack([numpy_dijkstra(w) for w in ws])


def python_dijkstra(w):
    """One grid by a plain-Python heapq Dijkstra on nested lists; returns the 0/1 path."""
    h, wd = len(w), len(w[0])
    dist = [[float("inf")] * wd for _ in range(h)]
    prev = {}
    dist[0][0] = w[0][0]
    heap = [(w[0][0], 0, 0)]
    done = set()
    while heap:
        d, i, j = heapq.heappop(heap)
        if (i, j) in done:
            continue
        done.add((i, j))
        for di, dj in NEIGHBOURS:
            x, y = i + di, j + dj
            if 0 <= x < h and 0 <= y < wd and (x, y) not in done:
                nd = d + w[x][y]
                if nd < dist[x][y]:
                    dist[x][y] = nd
                    prev[x, y] = (i, j)
                    heapq.heappush(heap, (nd, x, y))
    z = [[0.0] * wd for _ in range(h)]
    node = (h - 1, wd - 1)
    z[node[0]][node[1]] = 1.0
    while node != (0, 0):
        node = prev[node]
        z[node[0]][node[1]] = 1.0
    return z


def python_loop(ws):
    """The Python Dijkstra over every grid of the batch (the conversion to lists included)."""
    return np.asarray([python_dijkstra(w) for w in ws.tolist()], np.float32)


def build(costs):
    """The timed solvers, ``{name: (fn, args, is_jax)}``."""
    oracle = ij.grid_shortest_path()
    host = ij.host_oracle(scipy_path, name="scipy_dijkstra")
    return {
        "native": (jax.vmap(oracle), (costs,), True),
        "native, lax.map": (lambda w: jax.lax.map(oracle, w), (costs,), True),
        "scipy host": (jax.vmap(host), (costs,), True),
        "python (numpy)": (numpy_loop, (np.asarray(costs),), False),
        "python (lists)": (python_loop, (np.asarray(costs),), False),
    }


def compile_all(fns):
    """``{name: (callable, args, compile seconds)}``; JAX solvers are jitted and compiled."""
    out = {}
    for name, (fn, args, is_jax) in fns.items():
        start = time.perf_counter()
        if is_jax:
            fn = jax.jit(lambda *a, fn=fn: fn(*a)).lower(*args).compile()
        out[name] = (fn, args, time.perf_counter() - start if is_jax else 0.0)
    return out


def check_paths(results, costs):
    """Every solver returns, for every grid, a path of the same cost (ties may pick different
    optimal paths); the native path is a valid path, tile by tile."""
    costs = np.asarray(costs, np.float64)
    ref = np.sum(np.asarray(results["scipy host"], np.float64) * costs, axis=(1, 2))
    for name, z in results.items():
        z = np.asarray(z, np.float64)
        if not np.allclose(np.sum(z * costs, axis=(1, 2)), ref, rtol=1e-5):
            raise AssertionError(f"{name} returns paths of another cost than SciPy's Dijkstra")
    for z in np.asarray(results["native"]):
        on = {tuple(p) for p in np.argwhere(z == 1).tolist()}
        seen, stack = {(0, 0)}, [(0, 0)]
        while stack:
            i, j = stack.pop()
            for di, dj in NEIGHBOURS:
                if (i + di, j + dj) in on and (i + di, j + dj) not in seen:
                    seen.add((i + di, j + dj))
                    stack.append((i + di, j + dj))
        if seen != on or z[-1, -1] != 1:
            raise AssertionError("the native oracle returned an invalid path")


def time_rounds(compiled, repeats, python_every):
    """Wall-clock and process CPU seconds of each solver in every round, ``[{name: (wall,
    cpu)}]``, timed in turn."""
    rounds = []
    for r in range(repeats):
        times = {}
        for name, (fn, args, _) in compiled.items():
            if name.startswith("python") and r % python_every:
                continue
            wall, cpu = time.perf_counter(), time.process_time()
            jax.block_until_ready(fn(*args))
            times[name] = (time.perf_counter() - wall, time.process_time() - cpu)
        rounds.append(times)
    return rounds


def ratio(rounds, num, den, clock=0):
    """Median over rounds of ``num``'s time over ``den``'s (``clock`` 0: wall, 1: CPU)."""
    values = [t[num][clock] / t[den][clock] for t in rounds if num in t and den in t]
    return float(np.median(values))


def run_size(kind, k, batch, repeats, python_every, seed):
    costs = jnp.asarray(make_costs(kind, batch, k, seed))
    compiled = compile_all(build(costs))
    check_paths({name: fn(*args) for name, (fn, args, _) in compiled.items()}, costs)
    rounds_per_grid = np.asarray(jax.jit(jax.vmap(ij.grid_shortest_path().num_rounds))(costs))
    rounds = time_rounds(compiled, repeats, python_every)
    times = {
        name: {
            "compile_s": compiled[name][2],
            "run_s": float(np.median([t[name][0] for t in rounds if name in t])),
            "cpu_s": float(np.median([t[name][1] for t in rounds if name in t])),
        }
        for name in compiled
    }
    speedups = {}
    for clock, suffix in ((0, ""), (1, "_cpu")):
        for name, key in (("scipy host", "scipy_host"), ("python (numpy)", "python_numpy")):
            speedups[f"speedup_vs_{key}{suffix}"] = ratio(rounds, name, "native", clock)
        speedups[f"speedup_vs_python_lists{suffix}"] = ratio(
            rounds, "python (lists)", "native", clock
        )
    return {
        "kind": kind,
        "k": k,
        "batch": batch,
        "times": times,
        **speedups,
        "lax_map_over_vmap": ratio(rounds, "native, lax.map", "native"),
        "lax_map_over_vmap_cpu": ratio(rounds, "native, lax.map", "native", 1),
        "rounds_mean": float(rounds_per_grid.mean()),
        "rounds_max": int(rounds_per_grid.max()),
        "rounds_min": int(rounds_per_grid.min()),
        # The fraction of a vmapped batch's grid-rounds spent on grids that already converged.
        "idle_fraction": float(1 - rounds_per_grid.mean() / rounds_per_grid.max()),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[12, 18, 24, 30])
    parser.add_argument("--batch", type=int, default=70)
    parser.add_argument("--kinds", nargs="+", choices=["warcraft", "uniform"])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--python-every", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=str, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    kinds = args.kinds or ["warcraft", "uniform"]
    load_start = os.getloadavg()[0]

    print(
        f"shortest-path bench on {jax.devices()[0].platform} ({jax.device_count()} device(s)): "
        f"batch {args.batch}, 8-neighbourhood, sizes {args.sizes}, {args.repeats} rounds"
    )
    header = (
        f"{'costs':<9}{'K':>3} | {'wall ms: native':>15}{'lax.map':>8}{'scipy':>8}{'py np':>8}"
        f"{'py list':>8} | {'x scipy':>8}{'x py np':>8}{'x py li':>8} | {'CPU: x scipy':>12}"
        f"{'x py np':>8}{'x py li':>8} | {'rounds':>9}{'compile s':>10}"
    )
    print(header)
    rows = []
    for kind in kinds:
        for k in args.sizes:
            row = run_size(kind, k, args.batch, args.repeats, args.python_every, args.seed)
            rows.append(row)
            t = {name: 1e3 * v["run_s"] for name, v in row["times"].items()}
            counts = f"{row['rounds_mean']:.1f}/{row['rounds_max']}"
            print(
                f"{kind:<9}{k:>3} | {t['native']:>15.2f}{t['native, lax.map']:>8.2f}"
                f"{t['scipy host']:>8.2f}{t['python (numpy)']:>8.0f}{t['python (lists)']:>8.0f} | "
                f"{row['speedup_vs_scipy_host']:>8.1f}{row['speedup_vs_python_numpy']:>8.0f}"
                f"{row['speedup_vs_python_lists']:>8.0f} | "
                f"{row['speedup_vs_scipy_host_cpu']:>12.1f}{row['speedup_vs_python_numpy_cpu']:>8.0f}"
                f"{row['speedup_vs_python_lists_cpu']:>8.0f} | "
                f"{counts:>9}{row['times']['native']['compile_s']:>10.2f}"
            )
    machine = {
        "platform": jax.devices()[0].platform,
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "jax": jax.__version__,
        "load_average_1min_start_end": [load_start, os.getloadavg()[0]],
    }
    print(f"load average (1 min) at start / end: {load_start:.1f} / {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            config = {**vars(args), "kinds": kinds}
            json.dump({"config": config, "machine": machine, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
