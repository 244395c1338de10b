"""Fast inverse-CDF sampler for Sum-of-Gamma noise.

The standardised Sum-of-Gamma variable is

.. math:: X = \\sum_{j=1}^{s} \\mathrm{Gamma}(a, b_j), \\qquad a = 1/k, \\quad b_j = k/j,

a sum of independent gammas with a common shape. Its distribution is known exactly as a gamma
mixture (Moschopoulos, 1985): with ``b_1 = min_j b_j = k/s`` and ``rho = s a = s/k``,

.. math::
   X \\overset{d}{=} \\mathrm{Gamma}(\\rho + N, b_1), \\qquad
   P(N = n) = C \\delta_n, \\quad C = \\prod_j (b_1/b_j)^a,

   \\gamma_i = \\frac{a}{i} \\sum_j (1 - b_1/b_j)^i, \\quad
   \\delta_0 = 1, \\quad \\delta_{n+1} = \\frac{1}{n+1} \\sum_{i=1}^{n+1} i \\gamma_i \\delta_{n+1-i}.

``N`` is the sum of independent negative binomials ``NB(a, j/s)``, ``j = 1..s``, so ``P(N = n)``
decays like ``(1 - 1/s)^n`` and the series is cut where the tail mass drops below ``1e-20``.
With ``y = x/b_1`` and ``t_m(y) = y^{rho+m} e^{-y} / Gamma(rho+m+1)`` (a Poisson-like kernel in
``m``), summation by parts turns the mixture into sums of positive terms only,

.. math::
   F(x) = \\sum_{m \\ge 0} t_m(y) P(N \\le m), \\qquad
   1 - F(x) = Q(\\rho, y) + \\sum_{m \\ge 0} t_m(y) P(N > m),

so both tails are computed with full relative accuracy, in log space, from ``log x`` (the left tail
of ``X`` can lie far below the smallest double when ``rho`` is small).

The sampler inverts ``F`` by a table built once per ``(k, terms)`` on the host in float64:
``log Q(u)`` is tabulated on a uniform grid of ``w = logit(u)`` over ``[-40, 40]`` with step
``1/32``, each node solved by safeguarded Newton iterations on the exact CDF, and interpolated by
cubic Hermite polynomials whose slopes come from the exact density. ``log x`` is close to linear in
``w`` in the left tail and to ``log(k w)`` in the right tail, so this parametrisation is smooth
everywhere. Drawing a sample costs one uniform, one logarithm, one table lookup, a cubic and one
exponential. :func:`max_cdf_error` measures the sup-CDF error of the resulting map.
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

__all__ = ["cdf", "sf", "max_cdf_error", "sample_standard"]

_W_MAX = 40.0  # the table covers logit(u) in [-40, 40]; float64 uniforms reach |logit(u)| < 36.8
_CELLS_PER_UNIT = 32  # cell width 1/32: a power of two keeps the cell coordinate exact
_N_CELLS = int(2 * _W_MAX * _CELLS_PER_UNIT)
_TAIL_MASS = 1e-20  # truncation of the mixing distribution of N
_MAX_ROWS_X_WIDTH = 1 << 21  # chunking of the windowed sums


class _Mixture(NamedTuple):
    """Exact gamma-mixture representation of ``X`` (all arrays indexed by ``m = 0..L-1``)."""

    rho: float
    log_b1: float
    log_cdf_n: np.ndarray  # log P(N <= m)
    log_sf_n: np.ndarray  # log P(N > m)
    log_p_next: np.ndarray  # log P(N = m + 1)
    log_p0: float
    lgamma: np.ndarray  # lgamma(rho + m + 1)
    log_norm: np.ndarray  # lgamma(rho + m + 1) - (nu + 1/2) log nu + nu, nu = rho + m
    weights: np.ndarray  # (L, 3): exp of the three log weights above (underflow to 0 is harmless)


def _mixing_log_pmf(k: int, terms: int) -> np.ndarray:
    """``log P(N = n)``, ``n = 0..L-1``, with ``P(N >= L) < 1e-20``."""
    s, a = terms, 1.0 / k
    if s == 1:
        return np.zeros(1)
    q = 1.0 - np.arange(1, s) / s  # 1 - b_1/b_j for j = 1..s-1 (j = s gives 0)
    mean_n = (s / k) * (math.fsum(1.0 / j for j in range(1, s + 1)) - 1.0)
    n_max = int(1.25 * (mean_n + s * (math.log(1.0 / _TAIL_MASS) + 12.0))) + 64
    log_c = a * float(np.sum(np.log(np.arange(1, s + 1) / s)))
    # Since i gamma_i = a sum_j q_j^i, the convolution sum_i i gamma_i delta_{n+1-i} equals
    # a sum_j r_j with r_j = sum_i q_j^i delta_{n+1-i}, and r_j <- q_j (r_j + delta_{n+1}): each
    # step costs O(s), and all terms stay positive. delta_n is stored with a running scale
    # exp(log_scale) (C underflows for large s / k).
    buf = np.zeros(n_max + 1)
    buf[0] = 1.0
    r = q.copy()
    log_scale = 0.0
    big = 1e250
    # Past its mode, P(N = n) decays at least as fast as (1 - 1/s)^n up to a polynomial factor, so
    # the remaining mass is below P(N = n) / (1 - (1 - 1/s)) = s P(N = n); a factor 100 is kept
    # in reserve.
    log_threshold = math.log(_TAIL_MASS / (100.0 * s))
    n = 0
    while True:
        v = a * float(r.sum()) / (n + 1)
        n += 1
        buf[n] = v
        r += v
        r *= q
        if v > big:
            seg = buf[: n + 1]
            seg *= 1.0 / big
            seg[seg < 1e-200] = 0.0
            r *= 1.0 / big
            log_scale += math.log(big)
        if n > mean_n and v > 0 and math.log(v) + log_c + log_scale < log_threshold:
            break
        if n >= n_max:
            raise RuntimeError("the mixing series of the Sum-of-Gamma CDF did not converge")
    delta = buf[: n + 1]
    with np.errstate(divide="ignore"):
        log_p = np.log(delta) + (log_c + log_scale)
    total = math.fsum(np.exp(log_p))
    if abs(total - 1.0) > 1e-11:
        raise RuntimeError(f"mixing weights sum to {total!r}, not 1")
    # the omitted tail is below 1e-20: the rounding accumulated by the recursion is removed
    return log_p - math.log(total)


def _log_norm(nu: np.ndarray) -> np.ndarray:
    """``lgamma(nu + 1) - (nu + 1/2) log(nu) + nu`` (Stirling's series where ``nu >= 15``)."""
    direct = special.gammaln(nu + 1.0) - (nu + 0.5) * np.log(nu) + nu
    big = np.maximum(nu, 15.0)
    inv2 = 1.0 / (big * big)
    series = 0.5 * math.log(2 * math.pi) + (
        1.0 / 12.0
        - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 * (1.0 / 1680.0 - inv2 / 1188.0)))
    ) / big
    return np.where(nu >= 15.0, series, direct)


@functools.lru_cache(maxsize=None)
def _mixture(k: int, terms: int) -> _Mixture:
    log_p = _mixing_log_pmf(k, terms)
    rho = terms / k
    log_cdf_n = np.minimum(np.logaddexp.accumulate(log_p), 0.0)
    log_sf_n = np.append(np.logaddexp.accumulate(log_p[:0:-1])[::-1], -np.inf)  # log P(N > m)
    log_p_next = np.append(log_p[1:], -np.inf)
    lgamma = special.gammaln(rho + np.arange(log_p.size) + 1.0)
    mix = _Mixture(
        rho=rho,
        log_b1=math.log(k / terms),
        log_cdf_n=log_cdf_n,
        log_sf_n=log_sf_n,
        log_p_next=log_p_next,
        log_p0=float(log_p[0]),
        lgamma=lgamma,
        log_norm=_log_norm(rho + np.arange(log_p.size)),
        weights=np.exp(np.stack([log_cdf_n, log_sf_n, log_p_next], axis=1)),
    )
    for arr in mix:
        if isinstance(arr, np.ndarray):
            arr.flags.writeable = False
    return mix


def _logsumexp_rows(v: np.ndarray) -> np.ndarray:
    top = np.max(v, axis=1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", under="ignore"):
        return safe + np.log(np.sum(np.exp(v - safe[:, None]), axis=1))


def _log_kernel(mix: _Mixture, m: np.ndarray, log_y: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``log t_m(y)`` for ``m`` of shape ``(rows, width)`` and ``y`` of shape ``(rows,)``.

    Rows with ``y >= 1`` use ``-[nu log(nu/y) - (nu - y)] - log_norm - log(nu)/2`` with
    ``log(nu/y) = log1p((nu - y)/y)``: its rounding error is ``~eps |nu - y|`` instead of
    ``~eps nu log(nu)``, which keeps ``F`` exact to ~1e-14 for large ``terms``.
    """
    nu = mix.rho + m
    out = np.empty(m.shape)
    small = y < 1.0
    if np.any(small):
        out[small] = nu[small] * log_y[small, None] - y[small, None] - mix.lgamma[m[small]]
    big = ~small
    if np.any(big):
        nb, yb = nu[big], y[big, None]
        diff = nb - yb
        out[big] = -(nb * np.log1p(diff / yb) - diff) - mix.log_norm[m[big]] - 0.5 * np.log(nb)
    return out


def _window_sums(
    mix: _Mixture, log_y: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Log of the three kernel sums over ``m in [lo, hi)`` and a bound on the terms outside.

    Returns ``(log_sum_cdf, log_sum_sf, log_sum_pdf, log_outside)``; ``log_outside`` bounds the
    log of every omitted sum (the kernel ``t_m`` is unimodal in ``m`` and the weights are <= 1).
    """
    size = mix.lgamma.size
    out = np.full((3, log_y.size), -np.inf)
    width = np.maximum(hi - lo, 1)
    order = np.argsort(width, kind="stable")
    log_w = (mix.log_cdf_n, mix.log_sf_n, mix.log_p_next)
    start = 0
    while start < order.size:
        # widths are sorted: the chunk's widest row is its last one
        rows = max(1, _MAX_ROWS_X_WIDTH // int(width[order[start]]))
        idx = order[start : start + rows]
        while idx.size > 1 and idx.size * int(width[idx[-1]]) > 2 * _MAX_ROWS_X_WIDTH:
            idx = idx[: idx.size // 2]
        m = lo[idx, None] + np.arange(int(width[idx[-1]]))[None, :]
        valid = m < hi[idx, None]
        m = np.minimum(m, size - 1)
        log_t = _log_kernel(mix, m, log_y[idx], y[idx])
        log_t = np.where(valid, log_t, -np.inf)
        top = np.max(log_t, axis=1)
        top = np.where(np.isfinite(top), top, 0.0)
        with np.errstate(under="ignore"):
            e = np.exp(log_t - top[:, None])
        # sum_m t_m w_m = exp(top) sum_m e_m w_m with linear weights; rows whose sums underflow
        # (F or 1 - F below ~1e-250 relative to the kernel) are redone in log space
        sums = np.einsum("rm,rmc->cr", e, mix.weights[m])
        with np.errstate(divide="ignore"):
            logs = np.log(sums) + top[None, :]
        for c in range(3):
            bad = sums[c] < 1e-250
            if np.any(bad):
                logs[c, bad] = _logsumexp_rows(log_t[bad] + log_w[c][m[bad]])
        out[:, idx] = logs
        start += idx.size

    # Bound on the omitted terms: at most `size` of them on each side, each below the kernel at the
    # nearest omitted index (the kernel is unimodal), times a weight <= 1.
    def log_kernel(mm: np.ndarray) -> np.ndarray:
        mm_c = np.clip(mm, 0, size - 1)
        val = (mix.rho + mm_c) * log_y - y - mix.lgamma[mm_c]
        return np.where((mm >= 0) & (mm < size), val, -np.inf)

    outside = np.logaddexp(log_kernel(lo - 1), log_kernel(hi)) + math.log(size)
    return out[0], out[1], out[2], outside


def _log_cdf_sf_pdf(
    mix: _Mixture, log_x: np.ndarray, rel_tol: float = 1e-17
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(log F, log(1 - F), log f)`` at ``x = exp(log_x)``, exact up to ~1e-13 relative."""
    log_x = np.asarray(log_x, dtype=np.float64).reshape(-1)
    size = mix.lgamma.size
    log_y = log_x - mix.log_b1
    with np.errstate(over="ignore"):
        y = np.exp(log_y)
    log_f = np.empty_like(log_x)
    log_s = np.empty_like(log_x)
    log_d = np.empty_like(log_x)
    todo = np.arange(log_x.size)
    for depth in (100.0, 300.0, math.inf):
        if todo.size == 0:
            break
        ly, yy = log_y[todo], y[todo]
        centre = np.clip(np.rint(yy - mix.rho), 0, size - 1).astype(np.int64)
        if math.isinf(depth):
            lo = np.zeros_like(centre)
            hi = np.full_like(centre, size)
        else:
            half = np.ceil(np.sqrt(2.0 * depth * (yy + 1.0)) + depth + 2.0).astype(np.int64)
            lo = np.maximum(centre - half, 0)
            hi = np.minimum(centre + half + 1, size)
        s_cdf, s_sf, s_pdf, outside = _window_sums(mix, ly, yy, lo, hi)
        with np.errstate(divide="ignore", under="ignore"):
            f_part = np.log(special.gammainc(mix.rho + size, yy))
            q_part = np.log(special.gammaincc(mix.rho, yy))
        lf = np.logaddexp(s_cdf, f_part)
        ls = np.logaddexp(s_sf, q_part)
        # the smaller of F and 1 - F is accurate to full relative precision; the larger one is
        # taken from it (this also covers y = x / b_1 underflowing to 0 in the far left tail)
        left = lf < ls
        with np.errstate(divide="ignore"):
            lf, ls = (
                np.where(left, lf, np.log1p(-np.exp(np.minimum(ls, 0.0)))),
                np.where(left, np.log1p(-np.exp(np.minimum(lf, 0.0))), ls),
            )
        ld = np.logaddexp(
            s_pdf, mix.log_p0 + (mix.rho - 1.0) * ly - yy - special.gammaln(mix.rho)
        )
        log_tol = math.log(rel_tol)
        smallest = np.minimum(np.minimum(lf, ls), ld)
        ok = (outside == -np.inf) | (outside < smallest + log_tol) | math.isinf(depth)
        log_f[todo[ok]] = lf[ok]
        log_s[todo[ok]] = ls[ok]
        log_d[todo[ok]] = ld[ok] - mix.log_b1
        todo = todo[~ok]
    return log_f, log_s, log_d


def _check_params(k: Any, terms: Any) -> tuple[int, int]:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1; got {k!r}.")
    if isinstance(terms, bool) or not isinstance(terms, (int, np.integer)) or terms < 1:
        raise ValueError(f"terms must be an integer >= 1; got {terms!r}.")
    return int(k), int(terms)


def _log_x_of(x: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_x = np.log(np.where(x > 0, x, 1.0))
    return x, log_x


def cdf(x: Any, k: int, terms: int) -> np.ndarray:
    """Exact CDF of ``X = sum_{j=1..terms} Gamma(1/k, k/j)`` (NumPy, float64)."""
    k, terms = _check_params(k, terms)
    x, log_x = _log_x_of(x)
    log_f = _log_cdf_sf_pdf(_mixture(k, terms), log_x.reshape(-1))[0].reshape(x.shape)
    return np.where(x > 0, np.exp(log_f), 0.0)[()]


def sf(x: Any, k: int, terms: int) -> np.ndarray:
    """Exact survival function ``1 - F`` of ``X`` (NumPy, float64), accurate in the right tail."""
    k, terms = _check_params(k, terms)
    x, log_x = _log_x_of(x)
    log_s = _log_cdf_sf_pdf(_mixture(k, terms), log_x.reshape(-1))[1].reshape(x.shape)
    return np.where(x > 0, np.exp(log_s), 1.0)[()]


def _logit_and_slope(mix: _Mixture, log_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``w = logit F(x)`` and ``dw / dlog x = x f / (F (1 - F))``."""
    lf, ls, ld = _log_cdf_sf_pdf(mix, log_x)
    return lf - ls, np.exp(ld + log_x - lf - ls)


def _solve_nodes(
    mix: _Mixture, w_nodes: np.ndarray, mean: float
) -> tuple[np.ndarray, np.ndarray]:
    """``ell = log Q(logistic(w))`` at every node, and ``dw/dell`` there.

    Safeguarded Newton iterations on the exact ``w(ell) = logit F(exp(ell))``, started from a
    cubic Hermite interpolant of a coarse grid and kept inside a bracket of the root.
    """
    target_lo, target_hi = w_nodes[0] - 1.0, w_nodes[-1] + 1.0
    ell0 = math.log(mean)
    w0 = float(_logit_and_slope(mix, np.array([ell0]))[0][0])
    # bracket the whole node range
    lo_end, step = ell0, 1.0
    while w0 > target_lo:
        lo_end = ell0 - step
        if float(_logit_and_slope(mix, np.array([lo_end]))[0][0]) < target_lo:
            break
        step *= 2.0
    hi_end, step = ell0, 0.25
    while w0 < target_hi:
        hi_end = ell0 + step
        if float(_logit_and_slope(mix, np.array([hi_end]))[0][0]) > target_hi:
            break
        step *= 2.0
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
        # w(ell) is exact to ~1e-13 for terms ~ 10 and to ~1e-11 for terms ~ 1000
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


@functools.lru_cache(maxsize=None)
def _table(k: int, terms: int) -> np.ndarray:
    """Cubic Hermite coefficients ``(N_CELLS, 4)`` of ``log Q`` in the cell coordinate."""
    mix = _mixture(k, terms)
    h = 1.0 / _CELLS_PER_UNIT
    w_nodes = -_W_MAX + h * np.arange(_N_CELLS + 1)
    mean = math.fsum(1.0 / j for j in range(1, terms + 1))
    ell, dw_dell = _solve_nodes(mix, w_nodes, mean)
    slope = h / dw_dell  # d log x / d(cell coordinate)
    y0, y1 = ell[:-1], ell[1:]
    d0, d1 = slope[:-1], slope[1:]
    coef = np.stack(
        [y0, d0, 3.0 * (y1 - y0) - 2.0 * d0 - d1, 2.0 * (y0 - y1) + d0 + d1], axis=1
    )
    # the interpolant must be increasing in every cell: check its derivative at the ends and at
    # the vertex of the quadratic derivative
    c1, c2, c3 = coef[:, 1], coef[:, 2], coef[:, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        t_v = np.clip(np.where(c3 != 0, -c2 / (3.0 * c3), 0.0), 0.0, 1.0)
    deriv = np.minimum(np.minimum(c1, c1 + 2 * c2 + 3 * c3), c1 + 2 * c2 * t_v + 3 * c3 * t_v**2)
    if not (np.all(np.isfinite(coef)) and np.all(deriv > 0)):
        raise RuntimeError(f"Sum-of-Gamma table for k={k}, terms={terms} is not monotone")
    coef.flags.writeable = False
    return coef


@functools.lru_cache(maxsize=None)
def _table_as(k: int, terms: int, dtype_name: str) -> np.ndarray:
    coef = _table(k, terms).astype(np.dtype(dtype_name))
    coef.flags.writeable = False
    return coef


def _log_quantile(xp: Any, u: Any, coef: Any) -> Any:
    """``log Q(u)`` from the table; ``xp`` is ``numpy`` or ``jax.numpy``, ``0 < u < 1``."""
    w = xp.log(u / (1 - u))
    s = xp.clip(w, -_W_MAX, _W_MAX) * _CELLS_PER_UNIT  # exact: the scale is a power of two
    j = xp.clip(xp.floor(s), -_N_CELLS // 2, _N_CELLS // 2 - 1)
    t = s - j  # exact
    c = coef[(j + _N_CELLS // 2).astype(np.int32)]
    return c[..., 0] + t * (c[..., 1] + t * (c[..., 2] + t * c[..., 3]))


def _uniform_open(key: jax.Array, shape: tuple[int, ...], dtype: jnp.dtype) -> jax.Array:
    """Uniforms at the centres of ``2^p`` equal cells of ``(0, 1)`` (p = 23 or 52).

    Unlike ``jax.random.uniform`` this never returns 0 and is symmetric, ``u -> 1 - u``; both
    ``u`` and ``1 - u`` are exact.
    """
    if dtype == jnp.float64:
        bits = jax.random.bits(key, shape, jnp.uint64)
        one = jax.lax.bitcast_convert_type(
            (bits >> np.uint64(12)) | np.uint64(0x3FF0000000000000), jnp.float64
        )
        return one - (1.0 - 2.0**-53)
    bits = jax.random.bits(key, shape, jnp.uint32)
    one = jax.lax.bitcast_convert_type(
        (bits >> np.uint32(9)) | np.uint32(0x3F800000), jnp.float32
    )
    return one - np.float32(1.0 - 2.0**-24)


def sample_standard(
    key: jax.Array, shape: tuple[int, ...], k: int, terms: int, dtype: Any = jnp.float32
) -> jax.Array:
    """Draws ``X = sum_{j=1..terms} Gamma(1/k, scale=k/j)`` by the tabulated inverse CDF.

    Computed in float64 when ``dtype`` is float64 (and 64-bit types are enabled), in float32
    otherwise; the result has ``dtype``. jit/vmap-able; the table is a compile-time constant.
    """
    k, terms = _check_params(k, terms)
    out_dtype = jnp.dtype(dtype)
    cdtype = jnp.dtype(jax.dtypes.canonicalize_dtype(jnp.float64))
    if out_dtype != jnp.dtype(jnp.float64):
        cdtype = jnp.dtype(jnp.float32)
    coef = jnp.asarray(_table_as(k, terms, cdtype.name))
    u = _uniform_open(key, tuple(shape), cdtype)
    return jnp.exp(_log_quantile(jnp, u, coef)).astype(out_dtype)


def max_cdf_error(k: int, terms: int, dtype: Any = np.float64) -> float:
    """Sup-CDF error ``max |F(Q_table(u)) - u|`` of the table sampler's map ``u -> x``.

    The error of cubic Hermite interpolation is smooth within a cell and largest near its middle,
    so the map is evaluated at ``t = 0, 1/4, 1/2, 3/4`` of every cell of the ``logit(u)`` grid
    (10,240 points) and compared with the exact CDF, ``F`` near ``u < 1/2`` and ``1 - F`` near
    ``u > 1/2`` (both without cancellation).

    ``dtype=float64`` measures the table itself (NumPy, float64). ``dtype=float32`` runs the JAX
    float32 computation on float32 uniforms and measures the map up to ``log x`` in float32,
    i.e. including rounding of ``log(u/(1-u))``, of the coefficients and of the cubic, but not the
    final rounding of ``x`` to float32 (which no float32 sampler can avoid).
    """
    k, terms = _check_params(k, terms)
    mix = _mixture(k, terms)
    h = 1.0 / _CELLS_PER_UNIT
    w = (-_W_MAX + h * np.arange(_N_CELLS)[:, None] + h * np.array([0.0, 0.25, 0.5, 0.75])).ravel()
    dtype = np.dtype(dtype)
    if dtype == np.float64:
        u = special.expit(w)
        with np.errstate(divide="ignore"):
            ell = _log_quantile(np, u, _table(k, terms))
    elif dtype == np.float32:
        w = w[np.abs(w) < 16.7]  # the float32 uniforms of the sampler have |logit(u)| < 16.7
        u32 = special.expit(w).astype(np.float32)
        coef = jnp.asarray(_table_as(k, terms, "float32"))
        x32 = np.asarray(
            jax.jit(lambda v: jnp.exp(_log_quantile(jnp, v, coef)))(jnp.asarray(u32))
        )
        normal = x32 >= np.finfo(np.float32).tiny
        u = u32[normal].astype(np.float64)
        ell = np.log(x32[normal].astype(np.float64))
    else:
        raise TypeError(f"dtype must be float32 or float64; got {dtype}.")
    lf, ls, _ = _log_cdf_sf_pdf(mix, ell)
    err = np.where(u < 0.5, np.abs(np.exp(lf) - u), np.abs(np.exp(ls) - (1.0 - u)))
    return float(np.max(err))
