"""The shortest-path oracle of the benchmark: PyEPO's grid network through imlejax's graph oracle.

``grid_oracle(grid)`` is ``ij.graph_shortest_path(*ij.grid_dag_edges(h, w), h * w, source=0,
target=h * w - 1)``: a minimisation oracle ``c -> z`` on one instance, ``c`` the ``(d,)`` arc
costs in PyEPO's arc order, ``z`` the 0/1 indicator of the arcs of a cheapest path from the
top-left to the bottom-right node, in ``c``'s dtype. The grid is a DAG, so the oracle is exact for
costs of any sign (predicted and perturbed costs can be negative).
"""

from __future__ import annotations

from collections.abc import Callable

import jax

import imlejax as ij

__all__ = ["grid_oracle"]


def grid_oracle(grid: tuple[int, int] = (5, 5)) -> Callable[[jax.Array], jax.Array]:
    """Minimisation oracle of PyEPO's ``(h, w)`` grid shortest path, in PyEPO's arc order."""
    h, w = grid
    sources, targets = ij.grid_dag_edges(h, w)
    return ij.graph_shortest_path(sources, targets, h * w, source=0, target=h * w - 1)
