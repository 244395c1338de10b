"""Tables, statistics and figures of the PyEPO shortest-path benchmark."""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "CSV_FIELDS",
    "compare_paired",
    "markdown_table",
    "plot_curves",
    "plot_regret",
    "summarize",
    "write_csv",
]

CSV_FIELDS = (
    "method",
    "seed",
    "test_regret",
    "train_regret",
    "pyepo_metric_regret",
    "epoch_s_median",
    "epoch_s_mean",
    "epoch_s_min",
    "compile_s",
    "solves_per_epoch",
    "final_train_loss",
)


def _row(r: dict) -> dict:
    times = np.asarray(r.get("epoch_s") or [np.nan], dtype=float)
    losses = r.get("train_loss") or [np.nan]
    return {
        "method": r["method"],
        "seed": r["seed"],
        "test_regret": r["test_regret"],
        "train_regret": r.get("train_regret", ""),
        "pyepo_metric_regret": r.get("pyepo_metric_regret", ""),
        "epoch_s_median": float(np.median(times)),
        "epoch_s_mean": float(np.mean(times)),
        "epoch_s_min": float(np.min(times)),
        "compile_s": r.get("compile_s", 0.0),
        "solves_per_epoch": r.get("solves_per_epoch", ""),
        "final_train_loss": losses[-1],
    }


def write_csv(path: Path, records: Iterable[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS)
        writer.writeheader()
        for r in records:
            writer.writerow(_row(r))


def summarize(records: Sequence[dict], order: Sequence[str]) -> dict[str, dict]:
    """Per method: median/mean/std/min/max test regret over seeds, median epoch time, etc."""
    out = {}
    for name in order:
        rs = [r for r in records if r["method"] == name]
        if not rs:
            continue
        reg = np.asarray([r["test_regret"] for r in rs])
        times = [t for r in rs for t in r.get("epoch_s", [])]
        out[name] = {
            "seeds": [r["seed"] for r in rs],
            "regret_median": float(np.median(reg)),
            "regret_mean": float(np.mean(reg)),
            "regret_std": float(np.std(reg, ddof=1)) if len(reg) > 1 else 0.0,
            "regret_min": float(np.min(reg)),
            "regret_max": float(np.max(reg)),
            "epoch_s_median": float(np.median(times)) if times else None,
            "epoch_s_min": float(np.min(times)) if times else None,
            "compile_s": float(max(r.get("compile_s", 0.0) for r in rs)),
            "solves_per_epoch": rs[0].get("solves_per_epoch"),
        }
    return out


def compare_paired(a: Sequence[dict], b: Sequence[dict], margin: float = 0.01) -> dict:
    """Paired comparison over seeds of the test regrets of two methods (same data per seed).

    Two-sided paired t-test and Wilcoxon signed-rank test of ``regret_a - regret_b`` (level 5%),
    the 95% t confidence interval of the mean difference, and a TOST equivalence test with
    margin ``margin`` (two one-sided t-tests; equivalent at 5% when both reject).
    """
    from scipy import stats

    by_seed = {r["seed"]: r["test_regret"] for r in b}
    pairs = [(r["test_regret"], by_seed[r["seed"]]) for r in a if r["seed"] in by_seed]
    n = len(pairs)
    if n < 2:
        return {"n": n}
    x = np.asarray(pairs)
    d = x[:, 0] - x[:, 1]
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    tq = float(stats.t.ppf(0.975, n - 1))
    out = {
        "n": n,
        "seeds": sorted(r["seed"] for r in a if r["seed"] in by_seed),
        "mean_a": float(x[:, 0].mean()),
        "mean_b": float(x[:, 1].mean()),
        "median_a": float(np.median(x[:, 0])),
        "median_b": float(np.median(x[:, 1])),
        "mean_diff": mean,
        "sd_diff": sd,
        "ci95": [mean - tq * se, mean + tq * se],
    }
    if sd > 0:
        out["ttest_p"] = float(stats.ttest_rel(x[:, 0], x[:, 1]).pvalue)
        t_lo = (mean + margin) / se
        t_hi = (mean - margin) / se
        p_tost = max(float(stats.t.sf(t_lo, n - 1)), float(stats.t.cdf(t_hi, n - 1)))
        out["tost_margin"] = margin
        out["tost_p"] = p_tost
    if np.any(d != 0):
        out["wilcoxon_p"] = float(stats.wilcoxon(x[:, 0], x[:, 1]).pvalue)
    return out


def markdown_table(summary: dict[str, dict], labels: dict[str, str], ref: str | None) -> str:
    """A Markdown table of regret (median and mean ± sd over seeds) and epoch times."""
    ref_t = summary.get(ref, {}).get("epoch_s_median") if ref else None
    lines = [
        "| method | test regret, median (%) | mean ± sd (%) | epoch (ms, median) | "
        "speed-up vs PyEPO torch | compile (s) | solver calls / epoch |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, s in summary.items():
        t = s["epoch_s_median"]
        speed = f"{ref_t / t:.0f}×" if ref_t and t else "–"
        calls = s["solves_per_epoch"]
        lines.append(
            f"| {labels.get(name, name)} (`{name}`) | {100 * s['regret_median']:.2f} | "
            f"{100 * s['regret_mean']:.2f} ± {100 * s['regret_std']:.2f} | "
            f"{'–' if t is None else f'{1e3 * t:.1f}'} | {speed} | {s['compile_s']:.1f} | "
            f"{'–' if calls in (None, '') else f'{calls:.0f}'} |"
        )
    return "\n".join(lines)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_regret(path: Path, records: Sequence[dict], order: Sequence[str], labels: dict) -> None:
    """Test regret per method: one dot per seed, a bar at the median."""
    plt = _plt()
    names = [m for m in order if any(r["method"] == m for r in records)]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(names) + 1.5))
    for i, name in enumerate(names):
        reg = [100 * r["test_regret"] for r in records if r["method"] == name]
        ax.scatter(reg, [i] * len(reg), s=18, color="C0" if "pyepo_" not in name else "C3")
        ax.plot([np.median(reg)] * 2, [i - 0.3, i + 0.3], color="k", lw=1.5)
    ax.set_yticks(range(len(names)), [labels.get(n, n) for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("normalised test regret (%)")
    ax.set_title("PyEPO shortest path (5×5 grid, deg 4, noise 0.5): dots = seeds, bar = median")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(path: Path, records: Sequence[dict], order: Sequence[str], labels: dict) -> None:
    """Median test regret over seeds after every epoch (shaded: min to max)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, name in enumerate(order):
        curves = [r["curve"] for r in records if r["method"] == name and len(r["curve"]) > 1]
        if not curves:
            continue
        c = 100 * np.asarray(curves)
        x = np.arange(c.shape[1])
        style = "--" if name.startswith("pyepo_") else "-"
        ax.plot(x, np.median(c, axis=0), style, color=f"C{i % 10}", label=labels.get(name, name))
        ax.fill_between(x, c.min(axis=0), c.max(axis=0), color=f"C{i % 10}", alpha=0.12)
    ax.set_xlabel("epoch")
    ax.set_ylabel("normalised test regret (%)")
    ax.set_yscale("log")
    ax.set_title("Learning curves (median over seeds; band: min-max)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
