"""Exact shortest-path oracle on grids of tile costs, in pure JAX (``jit`` and ``vmap``).

Both shortest-path oracles (this grid oracle and the graph oracle of ``_graph_path``) run the
synchronous Bellman-Ford iteration in the min-plus semiring until no distance changes, then mark
the path by walking the predecessor pointers back from the target. Round ``k`` of the synchronous
iteration holds the cheapest walks of at most ``k`` steps, so the round that last lowers a
vertex's distance is the fewest steps of a cheapest path to it; each vertex points to a
predecessor one step closer on such a path, ties going to the predecessor with the smallest index.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = ["grid_shortest_path"]

# Predecessor offsets (row, column) in row-major order of the predecessor's position, so that
# the first minimum in this order is the predecessor with the smallest flat index.
_OFFSETS = {
    8: ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)),
    4: ((-1, 0), (0, -1), (0, 1), (1, 0)),
}


def check_index(name: str, value: Any, size: int | None = None) -> int:
    """An integer in ``[0, size)`` (``>= 0`` when ``size`` is None), else ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a non-negative integer; got {value!r}.")
    if value < 0 or (size is not None and value >= size):
        bound = f" and < {size}" if size is not None else ""
        raise ValueError(f"{name} must be an integer >= 0{bound}; got {value!r}.")
    return int(value)


def work_dtype(x: jax.Array, who: str, what: str) -> Any:
    """The dtype distances are computed in: ``x``'s, widened to float32 for half precision."""
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{who}: {what} must have a floating dtype; got {x.dtype}.")
    return jnp.promote_types(x.dtype, jnp.float32)


def bellman_ford(relax: Callable, dist: jax.Array, aux: jax.Array, max_rounds: int) -> tuple:
    """Runs ``dist, aux, improved = relax(dist, aux, r)`` for rounds ``r = 1, 2, ...`` until
    nothing improves or ``max_rounds`` rounds have run; returns ``dist, aux, still_changing,
    rounds``."""

    def cond(carry):
        return carry[2] & (carry[3] < max_rounds)

    def body(carry):
        dist, aux, _, rounds = carry
        dist, aux, improved = relax(dist, aux, rounds + 1)
        return dist, aux, jnp.any(improved), rounds + 1

    init = (dist, aux, jnp.bool_(True), jnp.int32(0))
    return lax.while_loop(cond, body, init)


def mark_ancestors(parent: jax.Array, start: Any, dtype: Any) -> tuple[jax.Array, jax.Array]:
    """Indicator (in ``dtype``) of ``start, parent[start], parent[parent[start]], ...`` over
    ``parent``'s indices, where a root is its own parent, and the root reached. A walk of at most
    ``n`` steps that keeps the marks in a bit set of ``ceil(n / 32)`` words: under ``vmap`` the
    loop carries a few words per instance, not ``n`` marks."""
    n = parent.shape[0]
    words = jnp.zeros((n + 31) // 32, jnp.uint32)

    def add(words, v):
        bit = jnp.left_shift(jnp.uint32(1), (v % 32).astype(jnp.uint32))
        return words.at[v // 32].set(words[v // 32] | bit)

    def cond(carry):
        _, v, steps = carry
        return (parent[v] != v) & (steps < n)

    def step(carry):
        words, v, steps = carry
        return add(words, parent[v]), parent[v], steps + 1

    start = jnp.asarray(start, jnp.int32)
    words, root, _ = lax.while_loop(cond, step, (add(words, start), start, jnp.int32(0)))
    index = jnp.arange(n, dtype=jnp.uint32)
    bits = jnp.right_shift(words[index // 32], index % 32) & 1
    return bits.astype(dtype), root


def _shifted(padded, di, dj, shape):
    """``x[i + di, j + dj]`` for every tile ``(i, j)``, from ``x`` padded by one on each side."""
    return lax.slice(padded, (1 + di, 1 + dj), (1 + di + shape[0], 1 + dj + shape[1]))


def _grid_relax(dist, hops, rounds, w, offsets):
    """One synchronous round, ``dist[v] <- min(dist[v], min_u dist[u] + w[v])`` over the
    neighbours ``u`` of ``v``; ``hops[v]`` is the round that last lowered ``dist[v]``."""
    padded = jnp.pad(dist, 1, constant_values=jnp.inf)
    best = None
    for di, dj in offsets:
        shifted = _shifted(padded, di, dj, dist.shape)
        best = shifted if best is None else jnp.where(shifted < best, shifted, best)
    cand = best + w  # min_u fl(d_u + w) = fl(min_u d_u + w): rounding is monotone
    improved = cand < dist
    return jnp.where(improved, cand, dist), jnp.where(improved, rounds, hops), improved


def _grid_parents(dist, hops, w, offsets):
    """The flat index of each tile's predecessor on its path (its own index if none).

    Round ``r`` of the synchronous iteration holds the cheapest walks of at most ``r`` steps, so
    ``hops[v]``, the round that last lowered ``dist[v]``, is the fewest steps of a cheapest path to
    ``v``, and every tight neighbour ``u`` (``dist[u] + w[v] == dist[v]``) has ``hops[u] >=
    hops[v] - 1``. The predecessor is the first tight neighbour in ``offsets`` order with
    ``hops[u] < hops[v]``, else (possible only when rounding hides a later improvement of ``u``)
    the first tight one with ``dist[u] < dist[v]``. Both kinds of step lower ``hops`` or ``dist``
    and neither raises ``dist`` (costs are >= 0), so the pointers form no cycle.
    """
    h, wd = dist.shape
    d_pad = jnp.pad(dist, 1, constant_values=jnp.inf)
    h_pad = jnp.pad(hops, 1, constant_values=jnp.iinfo(hops.dtype).max)
    fewer = closer = jnp.full(dist.shape, -1, jnp.int32)
    for k in reversed(range(len(offsets))):  # the first offset written last wins
        du = _shifted(d_pad, *offsets[k], dist.shape)
        tight = (du + w == dist) & jnp.isfinite(dist)
        fewer = jnp.where(tight & (_shifted(h_pad, *offsets[k], dist.shape) < hops), k, fewer)
        closer = jnp.where(tight & (du < dist), k, closer)
    pred = jnp.where(fewer >= 0, fewer, closer)
    parent = jnp.arange(h * wd, dtype=jnp.int32).reshape(h, wd)
    for k, (di, dj) in enumerate(offsets):
        parent = jnp.where(pred == k, parent + (di * wd + dj), parent)
    return parent.ravel()


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _grid_solve(w, source, target, neighbourhood):
    """The path indicator (``w``'s dtype, NaN where no path is returned) and the rounds run."""
    offsets = _OFFSETS[neighbourhood]
    h, wd = w.shape
    n = h * wd
    cost = jnp.maximum(w.astype(jnp.promote_types(w.dtype, jnp.float32)), 0)
    dist = jnp.full((h, wd), jnp.inf, cost.dtype).at[source].set(cost[source])
    hops = jnp.zeros((h, wd), jnp.int32)
    relax = functools.partial(_grid_relax, w=cost, offsets=offsets)
    dist, hops, changing, rounds = bellman_ford(relax, dist, hops, n)
    parent = _grid_parents(dist, hops, cost, offsets)
    src, tgt = source[0] * wd + source[1], target[0] * wd + target[1]
    mark, root = mark_ancestors(parent, tgt, w.dtype)
    ok = (root == src) & jnp.isfinite(dist[target]) & ~changing & ~jnp.any(jnp.isnan(w))
    z = jnp.where(ok, mark, jnp.asarray(jnp.nan, w.dtype)).reshape(h, wd)
    return z, rounds


@dataclasses.dataclass(frozen=True)
class _GridShortestPath:
    """Vertex-weighted grid shortest-path oracle; built by :func:`grid_shortest_path`."""

    neighbourhood: int = 8
    source: tuple[int, int] = (0, 0)
    target: tuple[int, int] | None = None

    @property
    def __name__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        parts = [f"neighbourhood={self.neighbourhood}"]
        if self.source != (0, 0):
            parts.append(f"source={self.source}")
        if self.target is not None:
            parts.append(f"target={self.target}")
        return f"grid_shortest_path({', '.join(parts)})"

    def resolve(self, w: Any) -> tuple[jax.Array, tuple[int, int], tuple[int, int]]:
        """Checks ``w`` and returns it with the source and target tiles for its shape."""
        w = jnp.asarray(w)
        work_dtype(w, repr(self), "w")
        if w.ndim != 2 or 0 in w.shape:
            raise ValueError(
                f"{self!r}: w must be a non-empty (H, W) array of tile costs for one grid; got "
                f"shape {w.shape}. Use jax.vmap for a batch of grids."
            )
        target = self.target if self.target is not None else (w.shape[0] - 1, w.shape[1] - 1)
        for name, tile in (("source", self.source), ("target", target)):
            if not all(0 <= t < s for t, s in zip(tile, w.shape, strict=True)):
                raise ValueError(
                    f"{self!r}: {name} {tile} is outside the grid of shape {w.shape}; it must "
                    f"satisfy 0 <= row < {w.shape[0]} and 0 <= column < {w.shape[1]}."
                )
        return w, self.source, target

    def __call__(self, w: Any) -> jax.Array:
        w, source, target = self.resolve(w)
        return _grid_solve(w, source, target, self.neighbourhood)[0]

    def num_rounds(self, w: Any) -> jax.Array:
        """The number of Bellman-Ford rounds the oracle runs on ``w`` (an int32 scalar; works
        under ``jit`` and ``vmap``): one per step of the longest fewest-step cheapest path from
        the source to any tile, plus one that sees no change. A ``vmap``-ed batch runs as many
        rounds as its largest count."""
        w, source, target = self.resolve(w)
        return _grid_solve(w, source, target, self.neighbourhood)[1]


def _check_tile(name: str, tile: Any) -> tuple[int, int]:
    if not isinstance(tile, (tuple, list)) or len(tile) != 2:
        raise ValueError(f"{name} must be a (row, column) pair of integers >= 0; got {tile!r}.")
    return (check_index(f"{name}[0]", tile[0]), check_index(f"{name}[1]", tile[1]))


def grid_shortest_path(
    *,
    neighbourhood: int = 8,
    source: tuple[int, int] = (0, 0),
    target: tuple[int, int] | None = None,
) -> Callable[[jax.Array], jax.Array]:
    r"""Returns the exact vertex-weighted shortest-path oracle on a grid of tile costs.

    The oracle ``z = grid_shortest_path()(w)`` takes the costs ``w`` of shape ``(H, W)`` of one
    grid and returns the ``(H, W)`` 0/1 indicator, in ``w``'s dtype, of a path of tiles
    :math:`P` from ``source`` to ``target``, each step to one of the 8 (or 4) neighbouring tiles,
    that minimises the sum of the costs of **all** its tiles, both ends included (the Warcraft
    convention of Vlastelica et al.):

    .. math:: z = \operatorname*{arg\,min}_{P:\ \mathrm{source}\to\mathrm{target}}
              \sum_{v \in P} \max(w_v, 0), \qquad \langle z, w\rangle = \text{the path cost}.

    It is a **minimisation** oracle: use it with ``ij.imle(ij.grid_shortest_path(), ...,
    minimize=True)``, which passes it the perturbed costs ``w - eps`` and differentiates with
    respect to ``w``. The oracle acts on one grid; batches come from ``jax.vmap``. Pure JAX:
    works under ``jax.jit`` and ``jax.vmap``, in float32 and float64 (half-precision costs are
    solved in float32).

    **Algorithm.** Synchronous Bellman-Ford in the min-plus semiring, one round
    :math:`d_v \leftarrow \min(d_v, \min_{u \sim v} d_u + w_v)` per step of a
    ``jax.lax.while_loop`` until no distance changes (rounds = the largest number of steps of a
    cheapest path to any tile, plus one; under ``vmap`` a batch runs as many rounds as its slowest
    grid), then the path is marked by walking back from the target. Distances are exact for the costs as
    summed in floating point along the path from the source, so the returned path is optimal
    for those sums (with integer-valued costs, exactly optimal).

    **Tie-breaking** (deterministic; exact when the sums are exact, e.g. integer-valued costs):
    among the cheapest paths, one with the fewest tiles; among those, the path found by walking
    back from the target and stepping, at each tile, to the predecessor with the smallest flat
    index ``row * W + column`` (the first in row-major order) among those on such a path.

    **Negative costs** are clamped to zero, as blackbox differentiation's reference solver does
    for its backward-pass costs: the oracle solves the problem with costs :math:`\max(w, 0)`. (A
    cheapest simple path under negative tile costs is NP-hard; on an undirected grid any two
    adjacent negative tiles form a negative cycle.) This keeps the oracle total inside
    ``imle(..., minimize=True)``, whose noise can push small costs below zero; the returned path
    is exact for non-negative costs and optimal for the clamped ones otherwise.

    **Non-finite costs.** A ``+inf`` tile is impassable. If ``w`` contains a NaN, or no path of
    finite cost joins ``source`` and ``target`` (e.g. either end is impassable), the oracle returns
    an all-NaN array instead of a path, so the failure is visible downstream. Value checks never
    raise: they would fail on traced values inside ``jax.jit``.

    The returned oracle is immutable, hashable and equal to any oracle built with the same
    arguments; its ``repr`` and ``__name__`` read ``grid_shortest_path(neighbourhood=8)``. Its
    method ``num_rounds(w)`` returns the number of rounds the loop runs on ``w``.

    Args:
      neighbourhood: 8 (king moves, as in the Warcraft experiment) or 4 (rook moves).
      source: the (row, column) tile the path starts from.
      target: the (row, column) tile the path ends at; the bottom-right tile ``(H - 1, W - 1)``
        by default. Both are checked against the shape of ``w`` at call time.

    Returns:
      An oracle ``oracle(w) -> z`` for floating ``w`` of shape ``(H, W)``.

    Raises:
      ValueError: at construction for a ``neighbourhood`` other than 4 or 8 or a tile that is not
        a pair of integers ``>= 0``; at call (trace) time if ``w`` is not a non-empty 2-D array or
        ``source``/``target`` is outside it.
      TypeError: at call time if ``w`` does not have a floating dtype.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> w = jnp.array([[1.0, 9.0, 1.0],
      ...                [1.0, 9.0, 1.0],
      ...                [1.0, 1.0, 1.0]])
      >>> ij.grid_shortest_path()(w)  # cost 1 + 1 + 1 + 1 = 4
      Array([[1., 0., 0.],
             [1., 0., 0.],
             [0., 1., 1.]], dtype=float32)
      >>> ij.grid_shortest_path(neighbourhood=4, target=(0, 2))(w)  # 7 tiles of cost 1
      Array([[1., 0., 1.],
             [1., 0., 1.],
             [1., 1., 1.]], dtype=float32)
      >>> ij.grid_shortest_path().num_rounds(w)  # 4 steps to (0, 2), then a round with no change
      Array(5, dtype=int32)
      >>> sampler = ij.imle(ij.grid_shortest_path(), noise=ij.sog(k=3), minimize=True)
      >>> jax.jit(sampler)(jax.random.key(0), w).shape
      (3, 3)

    References:
      Vlastelica, Paulus, Musil, Martius & Rolínek, *Differentiation of Blackbox Combinatorial
      Solvers*, ICLR 2020 (the Warcraft shortest-path benchmark); Niepert, Minervini &
      Franceschi, *Implicit MLE*, NeurIPS 2021, Section 5; Bellman, *On a routing problem*, 1958.
    """
    if neighbourhood not in _OFFSETS or isinstance(neighbourhood, bool):
        raise ValueError(f"neighbourhood must be 4 or 8; got {neighbourhood!r}.")
    source = _check_tile("source", source)
    if target is not None:
        target = _check_tile("target", target)
    return _GridShortestPath(neighbourhood=int(neighbourhood), source=source, target=target)
