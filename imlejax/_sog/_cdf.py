r"""Exact CDF of the standardised Sum-of-Gamma variable (host, NumPy, float64).

The standardised Sum-of-Gamma variable is

.. math:: X = \sum_{j=1}^{s} \mathrm{Gamma}(a, b_j), \qquad a = 1/k, \quad b_j = k/j,

a sum of independent gammas with a common shape. Its distribution is exactly a gamma mixture
(Moschopoulos, 1985): with :math:`b_1 = \min_j b_j = k/s` and :math:`\rho = s a = s/k`,

.. math::
   X \overset{d}{=} \mathrm{Gamma}(\rho + N, b_1), \qquad
   P(N = n) = C \delta_n, \quad C = \prod_j (b_1/b_j)^a,

   \gamma_i = \frac{a}{i} \sum_j (1 - b_1/b_j)^i, \quad
   \delta_0 = 1, \quad \delta_{n+1} = \frac{1}{n+1} \sum_{i=1}^{n+1} i \gamma_i \delta_{n+1-i}.

``N`` is a sum of independent negative binomials ``NB(a, j/s)``, ``j = 1..s``, so ``P(N = n)``
decays like ``(1 - 1/s)^n``; the series is cut where the remaining mass is below ``1e-20``
(``L ~ 50 s`` terms, computed in ``O(L s)`` operations). With ``y = x / b_1`` and the Poisson-like
kernel ``t_m(y) = y^(rho+m) e^(-y) / Gamma(rho+m+1)``, summation by parts turns the mixture into
sums of positive terms only,

.. math::
   F(x) = \sum_{m \ge 0} t_m(y) P(N \le m), \qquad
   1 - F(x) = Q(\rho, y) + \sum_{m \ge 0} t_m(y) P(N > m),

which are evaluated in log space from ``log x`` over windows of ``m`` around the kernel's mode,
widened until the omitted terms are provably negligible. Both tails keep full relative accuracy
(the left tail of ``X`` can lie far below the smallest double when ``rho`` is small).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import numpy as np
from scipy import special

__all__ = ["cdf", "sf"]

_TAIL_MASS = 1e-20  # truncation of the mixing distribution of N
_MAX_ROWS_X_WIDTH = 1 << 21  # chunking of the windowed sums


class _Mixture(NamedTuple):
    """Exact gamma-mixture representation of ``X``.

    The arrays are indexed by ``m = 0..2L`` (``L`` mixture terms, then padding so that any window
    ``[lo, lo + width)`` with ``lo < L`` and ``width <= L`` is in range); ``nu = rho + m``.
    """

    rho: float
    log_b1: float
    log_p0: float  # log P(N = 0)
    size: int  # L
    lgamma: np.ndarray  # lgamma(nu + 1)
    log_nu: np.ndarray  # log(nu)
    log_norm: np.ndarray  # lgamma(nu + 1) - (nu + 1/2) log(nu) + nu
    log_weights: np.ndarray  # (3, 2L + 1): log P(N <= m), log P(N > m), log P(N = m + 1)
    weights: np.ndarray  # (3, 2L + 1): their exponentials (underflow to 0 is harmless)


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
    series = (
        0.5 * math.log(2 * math.pi)
        + (
            1.0 / 12.0
            - inv2 * (1.0 / 360.0 - inv2 * (1.0 / 1260.0 - inv2 * (1.0 / 1680.0 - inv2 / 1188.0)))
        )
        / big
    )
    return np.where(nu >= 15.0, series, direct)


@functools.cache
def _mixture(k: int, terms: int) -> _Mixture:
    log_p = _mixing_log_pmf(k, terms)
    size = log_p.size
    rho = terms / k
    pad = np.full(size + 1, -np.inf)
    log_weights = np.stack(
        [
            np.concatenate([np.minimum(np.logaddexp.accumulate(log_p), 0.0), pad]),
            np.concatenate([np.logaddexp.accumulate(log_p[:0:-1])[::-1], [-np.inf], pad]),
            np.concatenate([log_p[1:], [-np.inf], pad]),
        ]
    )
    nu = rho + np.arange(2 * size + 1)
    with np.errstate(under="ignore"):
        weights = np.exp(log_weights)
    mix = _Mixture(
        rho=rho,
        log_b1=math.log(k / terms),
        log_p0=float(log_p[0]),
        size=size,
        lgamma=special.gammaln(nu + 1.0),
        log_nu=np.log(nu),
        log_norm=_log_norm(nu),
        log_weights=log_weights,
        weights=weights,
    )
    for arr in mix:
        if isinstance(arr, np.ndarray):
            arr.flags.writeable = False
    return mix


def _logsumexp_rows(v: np.ndarray) -> np.ndarray:
    top = np.max(v, axis=-1)
    safe = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore", under="ignore"):
        return safe + np.log(np.sum(np.exp(v - safe[..., None]), axis=-1))


def _windows(arr: np.ndarray, lo: np.ndarray, width: int) -> np.ndarray:
    """``arr[..., lo[r] + j]`` for ``j < width``, shape ``(..., rows, width)``."""
    return np.lib.stride_tricks.sliding_window_view(arr, width, axis=-1)[..., lo, :]


def _log_kernel_rows(
    mix: _Mixture, lo: np.ndarray, width: int, log_y: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """``log t_m(y)`` for ``m = lo[r] + j``, ``j < width``: shape ``(rows, width)``.

    For ``y >= 1`` it is evaluated as ``-[nu log(nu/y) - (nu - y)] - log_norm - log(nu)/2`` with
    ``log(nu/y) = log1p((nu - y)/y)``, whose rounding error is ``~eps |nu - y|`` instead of
    ``~eps nu log(nu)`` (this keeps ``F`` exact to ~1e-14 for large ``terms``).
    """
    nu = (mix.rho + lo)[:, None] + np.arange(width)
    out = np.empty(nu.shape)
    small = y < 1.0
    if np.any(small):
        out[small] = (
            nu[small] * log_y[small, None] - y[small, None] - _windows(mix.lgamma, lo[small], width)
        )
    big = np.nonzero(~small)[0]
    if big.size:
        nb, yb, lob = nu[big], y[big, None], lo[big]
        diff = nb - yb
        out[big] = (
            diff
            - nb * np.log1p(diff / yb)
            - _windows(mix.log_norm, lob, width)
            - 0.5 * _windows(mix.log_nu, lob, width)
        )
    return out


def _window_sums(
    mix: _Mixture, log_y: np.ndarray, y: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Log of the three kernel sums ``sum_m t_m w_m`` over windows ``m >= lo``, and a bound.

    Each row sums at least ``m in [lo, hi)`` (the weights vanish for ``m >= L``). Returns
    ``(log_sums, log_outside)``: ``log_sums`` has shape ``(3, rows)`` and ``log_outside`` bounds the
    log of every omitted sum (the kernel ``t_m`` is unimodal in ``m`` and the weights are <= 1).
    """
    size = mix.size
    out = np.full((3, log_y.size), -np.inf)
    width = np.maximum(hi - lo, 1)
    order = np.argsort(width, kind="stable")
    start = 0
    while start < order.size:
        # widths are sorted: a chunk's widest row is its last one
        rows = max(1, _MAX_ROWS_X_WIDTH // int(width[order[start]]))
        idx = order[start : start + rows]
        while idx.size > 1 and idx.size * int(width[idx[-1]]) > 2 * _MAX_ROWS_X_WIDTH:
            idx = idx[: idx.size // 2]
        w_chunk = int(width[idx[-1]])
        lo_c = lo[idx]
        log_t = _log_kernel_rows(mix, lo_c, w_chunk, log_y[idx], y[idx])
        top = np.max(log_t, axis=1)
        with np.errstate(under="ignore"):
            e = np.exp(log_t - top[:, None])
        # sum_m t_m w_m = exp(top) sum_m e_m w_m with linear weights; rows whose sums underflow
        # (F or 1 - F below ~1e-250 relative to the kernel) are redone in log space
        sums = np.einsum("rm,crm->cr", e, _windows(mix.weights, lo_c, w_chunk))
        with np.errstate(divide="ignore"):
            logs = np.log(sums) + top[None, :]
        bad = np.nonzero(np.any(sums < 1e-250, axis=0))[0]
        if bad.size:
            logs[:, bad] = _logsumexp_rows(
                log_t[bad][None] + _windows(mix.log_weights, lo_c[bad], w_chunk)
            )
        out[:, idx] = logs
        start += idx.size

    # Bound on the omitted terms: fewer than `size` of them on each side, each below the kernel
    # at the nearest omitted index (the kernel is unimodal in m), times a weight <= 1.
    def log_kernel_at(mm: np.ndarray) -> np.ndarray:
        mm_c = np.clip(mm, 0, size - 1)
        val = (mix.rho + mm_c) * log_y - y - mix.lgamma[mm_c]
        return np.where((mm >= 0) & (mm < size), val, -np.inf)

    hi_eff = lo + width
    outside = np.logaddexp(log_kernel_at(lo - 1), log_kernel_at(hi_eff)) + math.log(size)
    return out, outside


def _log_cdf_sf_pdf(
    mix: _Mixture, log_x: np.ndarray, rel_tol: float = 1e-17
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(log F, log(1 - F), log f)`` at ``x = exp(log_x)`` (1-D float64 arrays).

    Windows of the kernel sums grow until the omitted terms are provably below ``rel_tol`` times
    the smallest of ``F``, ``1 - F`` and ``f``; the last resort sums all ``L`` terms.
    """
    log_x = np.asarray(log_x, dtype=np.float64).reshape(-1)
    size = mix.size
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
        (s_cdf, s_sf, s_pdf), outside = _window_sums(mix, ly, yy, lo, hi)
        with np.errstate(divide="ignore", under="ignore"):
            f_part = np.log(special.gammainc(mix.rho + size, yy))  # sum over m >= L
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
        ld = np.logaddexp(s_pdf, mix.log_p0 + (mix.rho - 1.0) * ly - yy - special.gammaln(mix.rho))
        smallest = np.minimum(np.minimum(lf, ls), ld)
        ok = (outside == -np.inf) | (outside < smallest + math.log(rel_tol)) | math.isinf(depth)
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


def _cdf_and_sf(x: Any, k: Any, terms: Any) -> tuple[np.ndarray, np.ndarray]:
    k, terms = _check_params(k, terms)
    x = np.asarray(x, dtype=np.float64)
    inside = (x > 0) & np.isfinite(x)
    lf, ls, _ = _log_cdf_sf_pdf(_mixture(k, terms), np.log(x[inside]))
    f = np.where(x > 0, 1.0, 0.0)
    f[np.isnan(x)] = np.nan
    s = np.array(1.0 - f)
    f[inside], s[inside] = np.exp(lf), np.exp(ls)
    return f, s


def cdf(x: Any, k: int, terms: int) -> np.ndarray:
    """Exact CDF of ``X = sum_{j=1..terms} Gamma(1/k, scale=k/j)`` (NumPy, float64).

    Relative error about ``1e-14 max(1, |log F|)``, also deep in the left tail (measured against
    the closed form ``(1 - exp(-x))^terms`` of ``k = 1``).
    """
    return _cdf_and_sf(x, k, terms)[0][()]


def sf(x: Any, k: int, terms: int) -> np.ndarray:
    """Exact survival function ``1 - F`` of ``X`` (NumPy, float64).

    Computed directly, not as ``1 - cdf``: relative error about ``1e-14`` plus an absolute error
    below ``1e-20`` from the truncation of the mixture.
    """
    return _cdf_and_sf(x, k, terms)[1][()]
