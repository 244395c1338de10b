r"""Inverse-CDF table of the standardised Sum-of-Gamma variable, built on the host.

For ``X = sum_{j=1..s} Gamma(1/k, scale=k/j)`` with exact CDF ``F`` (:mod:`imlejax._sog._cdf`), the
table is built once per ``(k, terms)`` in float64: ``log Q(u)`` on a uniform grid of
``w = logit(u)`` over ``[-40, 40]`` with step ``1/32``, each node solved by safeguarded Newton
iterations on the exact CDF, interpolated by cubic Hermite polynomials whose slopes come from the
exact density. ``log x`` is close to linear in ``w`` in the left tail and to ``log(k w)`` in the
right tail, so the interpolant is accurate everywhere. Evaluating it (:func:`_cubic`) costs one
division and one logarithm, four lookups in a 2,560-entry table, a cubic and one exponential.
:func:`max_cdf_error` measures the sup-CDF error of the resulting map ``u -> x``.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from imlejax._sog._cdf import _check_params, _log_cdf_sf_pdf, _Mixture, _mixture

__all__ = ["max_cdf_error"]

_W_MAX = 40.0  # the table covers logit(u) in [-40, 40]; float64 uniforms reach |logit(u)| < 36.8
_CELLS_PER_UNIT = 32  # cell width 1/32: a power of two keeps the cell coordinate exact
_N_CELLS = int(2 * _W_MAX * _CELLS_PER_UNIT)


def _logit_and_slope(mix: _Mixture, log_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``w = logit F(x)`` and ``dw / dlog x = x f / (F (1 - F))``."""
    lf, ls, ld = _log_cdf_sf_pdf(mix, log_x)
    return lf - ls, np.exp(ld + log_x - lf - ls)


def _solve_nodes(mix: _Mixture, w_nodes: np.ndarray, mean: float) -> tuple[np.ndarray, np.ndarray]:
    """``ell = log Q(logistic(w))`` at every node, and ``dw/dell`` there.

    Safeguarded Newton iterations on the exact ``w(ell) = logit F(exp(ell))``, started from a
    cubic Hermite interpolant of a coarse grid and kept inside a bracket of the root.
    """
    target_lo, target_hi = w_nodes[0] - 1.0, w_nodes[-1] + 1.0
    ell0 = math.log(mean)
    w0 = float(_logit_and_slope(mix, np.array([ell0]))[0][0])
    # bracket the whole node range
    lo_end, hi_end = ell0, ell0
    for step in 2.0 ** np.arange(64):
        if float(_logit_and_slope(mix, np.array([lo_end]))[0][0]) < target_lo:
            break
        lo_end = ell0 - step
    for step in 2.0 ** np.arange(-2, 62):
        if float(_logit_and_slope(mix, np.array([hi_end]))[0][0]) > target_hi:
            break
        hi_end = ell0 + step
    if not (w0 > target_lo and w0 < target_hi):
        raise RuntimeError("the Sum-of-Gamma CDF could not be bracketed")
    grid = np.linspace(lo_end, hi_end, 1025)
    w_grid, s_grid = _logit_and_slope(mix, grid)
    pos = np.clip(np.searchsorted(w_grid, w_nodes), 1, grid.size - 1)
    lo = grid[pos - 1].copy()
    hi = grid[pos].copy()
    # first guess: cubic Hermite interpolation of ell(w) on the grid cell holding the node
    with np.errstate(divide="ignore", invalid="ignore"):
        dw = w_grid[pos] - w_grid[pos - 1]
        t = np.clip((w_nodes - w_grid[pos - 1]) / dw, 0.0, 1.0)
        d0, d1 = dw / s_grid[pos - 1], dw / s_grid[pos]
        ell = (
            (2 * t**3 - 3 * t**2 + 1) * lo
            + (t**3 - 2 * t**2 + t) * d0
            + (-2 * t**3 + 3 * t**2) * hi
            + (t**3 - t**2) * d1
        )
    t = np.where(np.isfinite(t), t, 0.5)
    ell = np.where((ell >= lo) & (ell <= hi), ell, lo + t * (hi - lo))  # False for NaN
    slope_out = np.empty_like(ell)
    active = np.arange(w_nodes.size)
    for it in range(100):
        w, slope = _logit_and_slope(mix, ell[active])
        slope_out[active] = slope
        res = w - w_nodes[active]
        # two or three steps reach the rounding level of w(ell) (~1e-13 to ~1e-11 depending on
        # k and terms), where the residual stops decreasing
        tol = 1e-13 if it < 3 else 1e-10
        converged = np.abs(res) <= tol * (1.0 + np.abs(w_nodes[active]))
        active, res, slope = active[~converged], res[~converged], slope[~converged]
        if active.size == 0:
            break
        below = res < 0
        lo[active[below]] = ell[active[below]]
        hi[active[~below]] = ell[active[~below]]
        a_lo, a_hi = lo[active], hi[active]
        new = ell[active] - res / slope
        inside = (new >= a_lo) & (new <= a_hi)  # False for NaN
        new = np.where(inside, new, 0.5 * (a_lo + a_hi))
        step = np.abs(new - ell[active])
        ell[active] = new
        # a step this small changes the slope by a relative ~1e-15: the last one is kept
        active = active[step > 4e-16 * (1.0 + np.abs(new))]
        if active.size == 0:
            break
    return ell, slope_out


class _Table(NamedTuple):
    """``log Q(logistic(w)) = shift + c0 + t (c1 + t (c2 + t c3))`` in cell ``i`` of the w-grid.

    ``w = -W_MAX + (i + t) / CELLS_PER_UNIT``, ``0 <= t <= 1``; ``shift`` is the log-median, so
    that the cubic is small in the bulk and ``x = exp(shift) * exp(cubic)`` keeps float32 precision.
    """

    coef: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # (c0, c1, c2, c3), each (N_CELLS,)
    shift: float


@functools.cache
def _table(k: int, terms: int) -> _Table:
    """Cubic Hermite interpolant of ``log Q`` in ``w = logit(u)``, exact at the nodes."""
    mix = _mixture(k, terms)
    h = 1.0 / _CELLS_PER_UNIT
    w_nodes = -_W_MAX + h * np.arange(_N_CELLS + 1)
    mean = math.fsum(1.0 / j for j in range(1, terms + 1))
    ell, dw_dell = _solve_nodes(mix, w_nodes, mean)
    # the log-median, floored so that exp(shift) stays a normal float32 when k >> terms (the median
    # of X then lies far below the float32 range; such X are negligible next to log(terms))
    shift = max(float(ell[_N_CELLS // 2]), -40.0)
    slope = h / dw_dell  # d log x / d(cell coordinate)
    y0, y1 = ell[:-1] - shift, ell[1:] - shift
    d0, d1 = slope[:-1], slope[1:]
    c0, c1, c2, c3 = y0, d0, 3.0 * (y1 - y0) - 2.0 * d0 - d1, 2.0 * (y0 - y1) + d0 + d1
    # the interpolant must be increasing in every cell: its derivative c1 + 2 c2 t + 3 c3 t^2 is
    # checked at both ends and at its extremum
    with np.errstate(divide="ignore", invalid="ignore"):
        t_v = np.clip(np.where(c3 != 0, -c2 / (3.0 * c3), 0.0), 0.0, 1.0)
    deriv = np.minimum(np.minimum(c1, c1 + 2 * c2 + 3 * c3), c1 + 2 * c2 * t_v + 3 * c3 * t_v**2)
    coef = (c0, c1, c2, c3)
    if not (all(np.all(np.isfinite(c)) for c in coef) and np.all(deriv > 0)):
        raise RuntimeError(f"Sum-of-Gamma table for k={k}, terms={terms} is not monotone")
    for c in coef:
        c.flags.writeable = False
    return _Table(coef=coef, shift=shift)


@functools.cache
def _table_as(k: int, terms: int, dtype_name: str) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
    """The coefficients and ``exp(shift)`` in ``dtype_name``."""
    table = _table(k, terms)
    dtype = np.dtype(dtype_name)
    coef = tuple(c.astype(dtype) for c in table.coef)
    for c in coef:
        c.flags.writeable = False
    return coef, np.asarray(math.exp(table.shift), dtype)


def _cubic(xp: Any, u: Any, coef: tuple[Any, ...]) -> Any:
    """``log Q(u) - shift`` from the table; ``xp`` is ``numpy`` or ``jax.numpy``, ``0 < u < 1``."""
    w = xp.log(u / (1 - u))
    s = xp.clip(w, -_W_MAX, _W_MAX) * _CELLS_PER_UNIT  # exact: the scale is a power of two
    j = xp.clip(xp.floor(s), -(_N_CELLS // 2), _N_CELLS // 2 - 1)
    t = s - j  # exact
    i = (j + _N_CELLS // 2).astype(np.int32)
    if xp is np:
        c0, c1, c2, c3 = (c[i] for c in coef)
    else:
        c0, c1, c2, c3 = (_lookup(c, i) for c in coef)
    return c0 + t * (c1 + t * (c2 + t * c3))


def _lookup(table: Any, i: Any) -> Any:
    """``table[i]``; under explicit sharding the result is sharded like the indices ``i``."""
    typeof = getattr(jax, "typeof", None)  # jax >= 0.6
    sharding = getattr(typeof(i), "sharding", None) if typeof is not None else None
    if sharding is None or getattr(sharding, "mesh", None) is None or sharding.mesh.empty:
        return table[i]
    return table.at[i].get(out_sharding=sharding)


def max_cdf_error(k: int, terms: int, dtype: Any = np.float64) -> float:
    """Sup-CDF error ``max |F(Q_table(u)) - u|`` of the table sampler's map ``u -> x``.

    ``F`` is the exact CDF; ``F`` is compared for ``u < 1/2`` and ``1 - F`` for ``u >= 1/2``, both
    without cancellation. The interpolation error is smooth within a cell of the ``logit(u)``
    grid and largest near its middle, so the map is evaluated at ``t = 0, 1/4, 1/2, 3/4`` of every
    cell (10,240 points).

    * ``dtype=float64``: the table itself, in float64 and in ``log x`` (which also covers values of
      ``x`` below the smallest double, e.g. the far left tail for ``k = 100, terms = 1``).
    * ``dtype=float32``: the JAX float32 computation end to end, ``u -> x`` with ``x`` rounded to
      float32, on the float32 uniforms the sampler draws (``|logit(u)| <= 16.7``); points where
      ``x`` falls below the smallest normal float32 are skipped.
    """
    k, terms = _check_params(k, terms)
    mix = _mixture(k, terms)
    h = 1.0 / _CELLS_PER_UNIT
    w = (-_W_MAX + h * np.arange(_N_CELLS)[:, None] + h * np.array([0.0, 0.25, 0.5, 0.75])).ravel()
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        table = _table(k, terms)
        u = special.expit(w)
        with np.errstate(divide="ignore"):
            ell = table.shift + _cubic(np, u, table.coef)
    elif dtype == np.float32:
        # the nearest uniforms the float32 sampler can draw, (m + 1/2) 2^-23
        u = np.unique((np.floor(special.expit(w) * 2.0**23) + 0.5) * 2.0**-23)
        u = u[u < 1.0]
        coef, scale = _table_as(k, terms, "float32")
        jcoef = tuple(jnp.asarray(c) for c in coef)
        x32 = np.asarray(
            jax.jit(lambda v: jnp.exp(_cubic(jnp, v, jcoef)) * scale)(jnp.asarray(u, jnp.float32))
        )
        normal = x32 >= np.finfo(np.float32).tiny
        u = u[normal]
        ell = np.log(x32[normal].astype(np.float64))
    else:
        raise TypeError(f"dtype must be float32 or float64; got {dtype}.")
    lf, ls, _ = _log_cdf_sf_pdf(mix, ell)
    err = np.where(u < 0.5, np.abs(np.exp(lf) - u), np.abs(np.exp(ls) - (1.0 - u)))
    return float(np.max(err))
