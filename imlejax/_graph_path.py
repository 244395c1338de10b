"""Exact shortest paths on a directed graph given as an edge list, in pure JAX, and the edge
list of PyEPO's grid shortest-path problem."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from imlejax._shortest_path import bellman_ford, check_index, mark_ancestors, work_dtype

__all__ = ["graph_shortest_path", "grid_dag_edges"]


def _graph_relax(dist, pred, rounds, cost, sources, targets, num_nodes):
    """One synchronous round over all edges: ``dist[v] <- min(dist[v], min_e dist[s_e] + c_e)``
    over the edges ``e`` into ``v``; ``pred[v]`` is the smallest such minimising edge index, set
    when ``dist[v]`` strictly decreases (so, first, in the round of the fewest edges)."""
    cand = dist[sources] + cost
    best = jax.ops.segment_min(cand, targets, num_segments=num_nodes)
    edge = jnp.arange(cost.shape[0], dtype=jnp.int32)
    first = jax.ops.segment_min(
        jnp.where(cand == best[targets], edge, cost.shape[0]), targets, num_segments=num_nodes
    )
    improved = best < dist
    return jnp.where(improved, best, dist), jnp.where(improved, first, pred), improved


@functools.partial(jax.jit, static_argnums=(1,))
def _graph_solve(c, spec):
    """The edge indicator (``c``'s dtype, NaN where no path is returned) and the rounds run."""
    n, num_edges = spec.num_nodes, len(spec.sources)
    sources = np.asarray(spec.sources, np.int32)
    targets = np.asarray(spec.targets, np.int32)
    cost = c.astype(jnp.promote_types(c.dtype, jnp.float32))
    dist = jnp.full(n, jnp.inf, cost.dtype).at[spec.source].set(0)
    pred = jnp.full(n, -1, jnp.int32)
    relax = functools.partial(
        _graph_relax, cost=cost, sources=sources, targets=targets, num_nodes=n
    )
    # Without a negative cycle reachable from the source nothing changes in round n.
    dist, pred, changing, rounds = bellman_ford(relax, dist, pred, n)
    from_node = jnp.asarray(np.append(sources, 0), jnp.int32)
    parent = jnp.where(pred < 0, jnp.arange(n, dtype=jnp.int32), from_node[pred])
    mark, root = mark_ancestors(parent, spec.target, c.dtype)
    on_path = (mark[targets] == 1) & (pred[targets] == np.arange(num_edges, dtype=np.int32))
    z = on_path.astype(c.dtype)
    bad = jnp.any(jnp.isnan(c) | (c == -jnp.inf))
    ok = (root == spec.source) & ~changing & ~bad
    return jnp.where(ok, z, jnp.asarray(jnp.nan, c.dtype)), rounds


@dataclasses.dataclass(frozen=True)
class _GraphShortestPath:
    """Edge-cost shortest-path oracle on a fixed digraph; built by :func:`graph_shortest_path`."""

    sources: tuple[int, ...]
    targets: tuple[int, ...]
    num_nodes: int
    source: int
    target: int

    @property
    def __name__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        return (
            f"graph_shortest_path(num_nodes={self.num_nodes}, num_edges={len(self.sources)}, "
            f"source={self.source}, target={self.target})"
        )

    def check(self, c: Any) -> jax.Array:
        c = jnp.asarray(c)
        work_dtype(c, repr(self), "c")
        if c.shape != (len(self.sources),):
            raise ValueError(
                f"{self!r}: c must hold one cost per edge, shape ({len(self.sources)},); got "
                f"shape {c.shape}. Use jax.vmap for a batch of cost vectors."
            )
        return c

    def __call__(self, c: Any) -> jax.Array:
        return _graph_solve(self.check(c), self)[0]

    def num_rounds(self, c: Any) -> jax.Array:
        """The number of Bellman-Ford rounds the oracle runs on ``c`` (an int32 scalar; works
        under ``jit`` and ``vmap``): one per edge of the longest fewest-edge cheapest path from
        the source to any node, plus one that sees no change; ``num_nodes`` if still changing
        (a negative cycle)."""
        return _graph_solve(self.check(c), self)[1]


def _edge_array(name: str, value: Any, num_nodes: int) -> np.ndarray:
    if isinstance(value, jax.core.Tracer):
        raise TypeError(f"{name} must be a concrete array fixed at construction, not a tracer.")
    arr = np.asarray(value)
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer) or arr.size == 0):
        raise TypeError(
            f"{name} must be a 1-D array of integer node indices; got dtype {arr.dtype} and "
            f"shape {arr.shape}."
        )
    if arr.size and (arr.min() < 0 or arr.max() >= num_nodes):
        raise ValueError(
            f"{name} holds node indices outside 0..{num_nodes - 1} (num_nodes={num_nodes}); got "
            f"values in {int(arr.min())}..{int(arr.max())}."
        )
    return arr.astype(np.int64)


def graph_shortest_path(
    sources: Any, targets: Any, num_nodes: int, *, source: int, target: int
) -> Callable[[jax.Array], jax.Array]:
    r"""Returns the exact shortest-path oracle over the edge costs of a fixed directed graph.

    The graph has ``num_nodes`` nodes and the edges ``e = 0..E-1`` from ``sources[e]`` to
    ``targets[e]``, fixed at construction (parallel edges and self-loops allowed). The oracle
    ``z = oracle(c)`` takes one cost per edge, ``c`` of shape ``(E,)``, and returns the ``(E,)``
    0/1 indicator, in ``c``'s dtype, of a cheapest path from node ``source`` to node ``target``:

    .. math:: z = \operatorname*{arg\,min}_{P:\ \mathrm{source}\to\mathrm{target}} \sum_{e\in P} c_e
              , \qquad \langle z, c\rangle = \text{the path cost}.

    It is a **minimisation** oracle: use it with ``ij.imle(oracle, ..., minimize=True)``. It
    acts on one cost vector; batches come from ``jax.vmap``. Pure JAX: works under ``jax.jit``
    and ``jax.vmap``, in float32 and float64 (half precision is solved in float32). It covers
    PyEPO's shortest-path problem: ``ij.graph_shortest_path(*ij.grid_dag_edges(5, 5), 25,
    source=0, target=24)`` takes PyEPO's 40 arc costs in PyEPO's order.

    **Algorithm.** Synchronous Bellman-Ford over all edges at once (``jax.ops.segment_min``) in a
    ``jax.lax.while_loop`` until no distance changes, at most ``num_nodes`` rounds; the path is
    then marked by walking back from ``target``. Distances are exact for the costs as summed in floating
    point along the path, so the path is optimal for those sums.

    **Which graphs and costs.** The oracle is exact on any graph whose costs leave no cycle of
    negative total cost reachable from ``source``: on a DAG (such as PyEPO's grid, with arcs
    only right and down) any finite costs, negative ones included; on graphs with cycles
    non-negative costs (or negative costs with non-negative cycles). A negative cycle reachable
    from ``source`` is detected (still improving after ``num_nodes`` rounds) and the result is an
    all-NaN array. Edges with cost ``+inf`` are absent. A cost vector holding a NaN or ``-inf``,
    or a ``target`` that no finite-cost path reaches, also gives an all-NaN array, never a path.
    These value checks do not raise, so that they work on traced values inside ``jax.jit``.

    **Tie-breaking** (deterministic; exact when the sums are exact, e.g. integer costs): among
    the cheapest paths, one with the fewest edges; among those, the path found by walking back
    from ``target`` along, at each node, the incoming edge with the smallest index among those
    on such a path. ``source == target`` gives the empty path (all zeros).

    The returned oracle is immutable, hashable and equal to any oracle built from the same graph
    and ends; its ``repr`` and ``__name__`` read ``graph_shortest_path(num_nodes=..., ...)``. Its
    method ``num_rounds(c)`` returns the number of rounds the loop runs on ``c``.

    Args:
      sources: the tail node of each edge, a 1-D integer array of length ``E``.
      targets: the head node of each edge, a 1-D integer array of length ``E``.
      num_nodes: the number of nodes, an integer ``>= 1``; nodes are ``0..num_nodes-1``.
      source: the node the path starts from.
      target: the node the path ends at.

    Returns:
      An oracle ``oracle(c) -> z`` for floating ``c`` of shape ``(E,)``.

    Raises:
      ValueError: at construction for node indices out of range, a ``num_nodes`` that is not an
        integer ``>= 1``, or edge arrays of different lengths; at call (trace) time if ``c`` is
        not of shape ``(E,)``.
      TypeError: at construction if ``sources``/``targets`` are not 1-D integer arrays (or are
        traced); at call time if ``c`` does not have a floating dtype.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> oracle = ij.graph_shortest_path([0, 0, 1, 2, 1], [1, 2, 3, 3, 2], 4, source=0, target=3)
      >>> oracle(jnp.array([1.0, 4.0, 5.0, 1.0, 1.0]))  # 0 -> 1 -> 2 -> 3 costs 3
      Array([1., 0., 0., 1., 1.], dtype=float32)
      >>> pyepo = ij.graph_shortest_path(*ij.grid_dag_edges(5, 5), 25, source=0, target=24)
      >>> jax.vmap(pyepo)(jnp.ones((32, 40))).sum(axis=-1)[:3]  # 8 arcs on every path
      Array([8., 8., 8.], dtype=float32)

    References:
      Bellman, *On a routing problem*, 1958; Tang & Khalil, *PyEPO: a PyTorch-based end-to-end
      predict-then-optimize library for linear and integer programming*, Math. Prog. Comp. 2024.
    """
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, (int, np.integer)):
        raise ValueError(f"num_nodes must be an integer >= 1; got {num_nodes!r}.")
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be an integer >= 1; got {num_nodes!r}.")
    num_nodes = int(num_nodes)
    src = _edge_array("sources", sources, num_nodes)
    tgt = _edge_array("targets", targets, num_nodes)
    if src.shape != tgt.shape:
        raise ValueError(
            f"sources and targets must have the same length; got {src.shape[0]} and {tgt.shape[0]}."
        )
    return _GraphShortestPath(
        sources=tuple(src.tolist()),
        targets=tuple(tgt.tolist()),
        num_nodes=num_nodes,
        source=check_index("source", source, num_nodes),
        target=check_index("target", target, num_nodes),
    )


def grid_dag_edges(rows: int, cols: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns the edge list of PyEPO's shortest-path grid: arcs right and down, PyEPO's order.

    Nodes are the ``rows * cols`` grid points numbered row by row, ``v = i * cols + j``. For each
    row ``i`` in turn the arcs are: the ``cols - 1`` arcs right, ``(i, j) -> (i, j + 1)`` for
    ``j = 0..cols-2``; then, except on the last row, the ``cols`` arcs down, ``(i, j) ->
    (i + 1, j)`` for ``j = 0..cols-1``. This is the order of ``pyepo.model``'s shortest-path
    models (their ``arcs`` attribute), so PyEPO's cost vectors (``pyepo.data.shortestpath.genData``)
    map one to one onto the edges; its paths run from node 0 to node ``rows * cols - 1``.

    Args:
      rows: the number of grid rows, an integer ``>= 1``.
      cols: the number of grid columns, an integer ``>= 1``.

    Returns:
      ``(sources, targets)``, two int32 NumPy arrays of length
      ``rows * (cols - 1) + (rows - 1) * cols`` (40 for PyEPO's 5 x 5 grid).

    Raises:
      ValueError: if ``rows`` or ``cols`` is not an integer ``>= 1``.

    Example:
      >>> import imlejax as ij
      >>> sources, targets = ij.grid_dag_edges(2, 3)
      >>> list(zip(sources.tolist(), targets.tolist()))
      [(0, 1), (1, 2), (0, 3), (1, 4), (2, 5), (3, 4), (4, 5)]
    """
    for name, value in (("rows", rows), ("cols", cols)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}.")
    arcs = []
    for i in range(rows):
        arcs += [(i * cols + j, i * cols + j + 1) for j in range(cols - 1)]
        if i < rows - 1:
            arcs += [(i * cols + j, (i + 1) * cols + j) for j in range(cols)]
    pairs = np.asarray(arcs, np.int32).reshape(-1, 2)
    return pairs[:, 0].copy(), pairs[:, 1].copy()
