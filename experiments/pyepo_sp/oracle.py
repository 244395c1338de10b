r"""The shortest-path oracle of the benchmark: PyEPO's grid network, source node 0, sink node h w - 1.

``grid_oracle(grid)`` returns a minimisation oracle ``c -> z`` on one instance: ``c`` the
``(d,)`` arc costs in PyEPO's arc order (:func:`experiments.pyepo_sp.data.grid_arcs`), ``z`` the
0/1 indicator of the arcs of a cheapest path from the top-left to the bottom-right node, in
``c``'s dtype. Every arc of the grid goes from a lower to a higher node number, so the graph is a
DAG in topological order and a dynamic program over the nodes in that order is exact for costs of
any sign (predicted and perturbed costs can be negative). Ties go to the incoming arc listed
first.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from experiments.pyepo_sp.data import grid_arcs

__all__ = ["dag_shortest_path", "grid_oracle"]


def dag_shortest_path(
    sources: np.ndarray, targets: np.ndarray, num_nodes: int, *, source: int, target: int
) -> Callable[[jax.Array], jax.Array]:
    """Exact shortest path on a DAG whose node numbers are a topological order.

    The dynamic program ``d[v] = min_{(u, v)} d[u] + c[(u, v)]`` runs over the nodes in increasing
    order (one ``lax.scan`` step per node), then the path is read back from ``target`` through the
    arg-min arcs (a fixed ``num_nodes - 1`` steps).

    Args:
      sources, targets: arc end points, integer arrays of one length ``d`` with
        ``sources < targets`` element-wise.
      num_nodes: number of nodes.
      source, target: end nodes of the path; ``target`` must be reachable from ``source``.

    Returns:
      ``oracle(c) -> z`` for costs ``c`` of shape ``(d,)``.
    """
    src = np.asarray(sources, dtype=np.int32)
    dst = np.asarray(targets, dtype=np.int32)
    if src.shape != dst.shape or src.ndim != 1:
        raise ValueError(
            f"sources and targets must be 1-d of one length; got {src.shape}, {dst.shape}."
        )
    if np.any(src >= dst):
        raise ValueError("every arc must go from a lower to a higher node number (a DAG in order).")
    reach = np.zeros(num_nodes, bool)
    reach[source] = True
    for u, v in sorted(zip(src.tolist(), dst.tolist(), strict=True)):
        reach[v] |= reach[u]
    if not reach[target]:
        raise ValueError(f"target node {target} is not reachable from source node {source}.")
    max_in = max(1, int(np.bincount(dst, minlength=num_nodes).max()))
    in_arc = np.full((num_nodes, max_in), -1, np.int32)
    for v in range(num_nodes):
        arcs = np.flatnonzero(dst == v)
        in_arc[v, : len(arcs)] = arcs
    valid = in_arc >= 0
    in_src = np.where(valid, src[np.maximum(in_arc, 0)], 0)
    num_arcs = len(src)

    def oracle(c: jax.Array) -> jax.Array:
        if c.shape != (num_arcs,):
            raise ValueError(f"c must have shape ({num_arcs},); got {c.shape}.")
        inf = jnp.asarray(jnp.inf, c.dtype)
        dist0 = jnp.full((num_nodes,), inf, c.dtype).at[source].set(0)

        def relax(dist, row):
            v, ok, u, arc = row
            cand = jnp.where(ok, dist[u] + c[jnp.maximum(arc, 0)], inf)
            k = jnp.argmin(cand)
            new = jnp.where(v == source, dist[v], cand[k])
            return dist.at[v].set(new), arc[k]

        rows = (jnp.arange(num_nodes), jnp.asarray(valid), jnp.asarray(in_src), jnp.asarray(in_arc))
        _, pred = jax.lax.scan(relax, dist0, rows)

        def back(i, carry):
            z, node = carry
            arc = pred[node]
            step = node != source
            z = jnp.where(step, z.at[arc].set(1), z)
            return z, jnp.where(step, src_j[arc], node)

        src_j = jnp.asarray(src)
        z, _ = jax.lax.fori_loop(0, num_nodes - 1, back, (jnp.zeros_like(c), jnp.int32(target)))
        return z

    return oracle


def grid_oracle(grid: tuple[int, int] = (5, 5)) -> Callable[[jax.Array], jax.Array]:
    """Minimisation oracle of PyEPO's ``(h, w)`` grid shortest path, in PyEPO's arc order."""
    src, dst = grid_arcs(grid)
    h, w = grid
    return dag_shortest_path(src, dst, h * w, source=0, target=h * w - 1)
