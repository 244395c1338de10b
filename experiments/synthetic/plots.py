"""Figures of the synthetic experiments (matplotlib, Agg backend)."""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

NOISE_LABEL = {"sog": "SoG(k=5, τ=1, s=10)", "gumbel": "Gumbel(0, 1)"}

_DPI = [130]
_TIGHT = [True]


def configure(dpi: int = 130, tight: bool = True) -> None:
    """Sets the resolution of the figures written afterwards, and whether they are laid out with
    ``tight_layout`` (slow; the smoke runs skip it)."""
    _DPI[0] = int(dpi)
    _TIGHT[0] = bool(tight)


def _layout(fig) -> None:
    if _TIGHT[0]:
        _layout(fig)


def _fmt(v: float) -> str:
    return f"{v:g}"


def _heat(ax, values, lams, lrs, title, cmap, norm=None, vmin=None, vmax=None, marks=None):
    im = ax.imshow(
        values, origin="lower", aspect="auto", cmap=cmap, norm=norm, vmin=vmin, vmax=vmax
    )
    ax.set_xticks(range(len(lrs)), [_fmt(x) for x in lrs], rotation=90, fontsize=7)
    ax.set_yticks(range(len(lams)), [_fmt(x) for x in lams], fontsize=7)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("λ")
    ax.set_title(title, fontsize=9)
    if values.size <= 200:
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                star = "*" if marks is not None and marks[i, j] else ""
                ax.text(j, i, f"{values[i, j]:.2f}{star}", ha="center", va="center", fontsize=5)
    plt.colorbar(im, ax=ax, fraction=0.046, pad=0.03)


def heatmap_triplet(
    path: pathlib.Path, sog, gumbel, lams, lrs, quantity: str, suptitle: str, p_values=None
):
    """SoG, Gumbel and SoG - Gumbel (blue = SoG lower) heat maps over (lam, lr).

    ``p_values``: per-cell p-values of the comparison; cells below 0.05 get a ``*`` in the
    difference map.
    """
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    vmin = float(min(sog.min(), gumbel.min()))
    vmax = float(max(sog.max(), gumbel.max()))
    for ax, values, nm in ((axes[0], sog, "sog"), (axes[1], gumbel, "gumbel")):
        _heat(
            ax,
            values,
            lams,
            lrs,
            f"{quantity}, I-MLE with {NOISE_LABEL[nm]}",
            "viridis",
            vmin=vmin,
            vmax=vmax,
        )
    diff = sog - gumbel
    lim = float(np.abs(diff).max()) or 1.0
    _heat(
        axes[2],
        diff,
        lams,
        lrs,
        "SoG − Gumbel (blue: SoG lower; *: p < 0.05)",
        "RdBu_r",
        norm=TwoSlopeNorm(0.0, -lim, lim),
        marks=None if p_values is None else np.asarray(p_values) < 0.05,
    )
    fig.suptitle(suptitle, fontsize=9)
    _layout(fig)
    fig.savefig(path, dpi=_DPI[0])
    plt.close(fig)


def ste_sfe_figure(path: pathlib.Path, res: dict, setting: str):
    """STE with SoG and Gumbel over learning rates, and SFE (mean and std) over learning rates."""
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    lrs = np.asarray(res["ste_lrs"])
    for nm, color in (("sog", "C0"), ("gumbel", "C1")):
        mean = np.asarray(res["ste"][nm]["final_mean"])
        std = np.asarray(res["ste"][nm]["final_std"])
        axes[0].plot(lrs, mean, "o-", color=color, label=f"STE, {NOISE_LABEL[nm]}")
        axes[0].fill_between(lrs, mean - std, mean + std, color=color, alpha=0.2)
    axes[0].axhline(0.0, color="k", ls=":", lw=1)
    axes[0].set_title(f"STE: final gap after {res['ste_steps']} steps ({res['ste_runs']} runs)")
    diff = np.asarray(res["ste"]["sog"]["final_mean"]) - np.asarray(
        res["ste"]["gumbel"]["final_mean"]
    )
    axes[1].bar(range(len(lrs)), diff, color=np.where(diff < 0, "tab:blue", "tab:red"))
    axes[1].set_xticks(range(len(lrs)), [f"{x:.3g}" for x in lrs], rotation=90, fontsize=7)
    axes[1].axhline(0.0, color="k", lw=0.8)
    axes[1].set_title("STE: SoG − Gumbel mean (blue: SoG lower)")
    slrs = np.asarray(res["sfe_lrs"])
    axes[2].plot(slrs, res["sfe"]["final_mean"], "o-", color="C2")
    axes[2].axhline(0.0, color="k", ls=":", lw=1)
    axes[2].set_title(f"SFE: mean final gap, {res['sfe_steps']} steps ({res['sfe_runs']} runs)")
    axes[3].plot(slrs, res["sfe"]["final_std"], "o-", color="C3")
    axes[3].set_title("SFE: std of the final gap")
    for ax in (axes[0], axes[2], axes[3]):
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
    axes[1].set_xlabel("learning rate")
    axes[0].set_ylabel("L(θ) − min L")
    axes[0].legend(fontsize=7)
    fig.suptitle(setting, fontsize=9)
    _layout(fig)
    fig.savefig(path, dpi=_DPI[0])
    plt.close(fig)


def ablation_figure(path: pathlib.Path, rows: list[dict]):
    """Cells where SoG is significantly lower / higher, in mean and std, per configuration."""
    labels = [f"θ₀={r['theta0']}\nb={r['b']}\ngrid={r['grid']}" for r in rows]
    x = np.arange(len(rows))
    fig, axes = plt.subplots(1, 2, figsize=(16, 4.6), sharey=False)
    for ax, claim, title in (
        (axes[0], "sog_lower_loss", "mean of the final gap"),
        (axes[1], "sog_lower_variance", "std of the final gap"),
    ):
        cells = np.array([r["claims"][claim]["cells"] for r in rows], float)
        lower = np.array([r["claims"][claim]["sog_lower"] for r in rows]) / cells
        sig = np.array([r["claims"][claim]["significant"] for r in rows]) / cells
        gsig = np.array([r["claims"][claim]["gumbel_significant"] for r in rows]) / cells
        ax.bar(x - 0.27, lower, 0.27, label="SoG lower", color="tab:blue", alpha=0.5)
        ax.bar(x, sig, 0.27, label="SoG significantly lower", color="tab:blue")
        ax.bar(x + 0.27, gsig, 0.27, label="Gumbel significantly lower", color="tab:red")
        ax.axhline(0.5, color="k", ls=":", lw=1)
        ax.set_xticks(x, labels, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("fraction of the grid's cells")
        ax.set_title(f"SoG vs Gumbel, {title}", fontsize=9)
        ax.legend(fontsize=7)
    _layout(fig)
    fig.savefig(path, dpi=_DPI[0])
    plt.close(fig)


def runtime_figure(path: pathlib.Path, res: dict):
    """Runtime against m: mean ± std (left) and minimum (right) over the repeated evaluations."""
    fig, axes = plt.subplots(1, 2, figsize=(15, 5.2), sharey=True)
    series = [
        ("enumeration", "exact", "Expect. L, enumeration", "C0", "o-"),
        ("enumeration", "sample", "faithful sample, enumeration", "C1", "s-"),
        ("dp", "exact", "Expect. L, DP (marginals)", "C0", "o--"),
        ("dp", "sample", "faithful sample, DP", "C1", "s--"),
        ("perturb_and_map", "sample", "P&M sample, SoG table", "C2", "^-"),
        ("perturb_and_map_direct", "sample", "P&M sample, SoG direct", "C2", "v:"),
    ]
    for method, what, label, color, style in series:
        rows = res.get(method, [])
        if not rows:
            continue
        m = np.array([r["m"] for r in rows])
        mean = np.array([r[f"{what}_mean"] for r in rows])
        std = np.array([r[f"{what}_std"] for r in rows])
        lower = np.minimum(std, 0.9 * mean)  # keep the bar inside the log axis
        axes[0].errorbar(
            m, mean, yerr=[lower, std], fmt=style, color=color, label=label, ms=4, capsize=2
        )
        if f"{what}_min" in rows[0]:
            best = np.array([r[f"{what}_min"] for r in rows])
            axes[1].plot(m, best, style, color=color, label=label, ms=4)
    axes[0].set_title(f"mean ± std over {res['repeats']} evaluations ({res['device']})")
    axes[1].set_title(f"minimum over {res['repeats']} evaluations ({res['device']})")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("m (k = m/2)")
        ax.legend(fontsize=7)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("seconds")
    _layout(fig)
    fig.savefig(path, dpi=_DPI[0])
    plt.close(fig)


def quality_figure(path: pathlib.Path, res: dict, lam_ref: float):
    """Cosine and relative bias against lam, and cosine against the number of samples S."""
    lams = np.asarray(res["lams"])
    ss = np.asarray(res["sample_sizes"])
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    colors = {"sog": "C0", "gumbel": "C1"}
    iref = int(np.argmin(np.abs(np.log(lams / lam_ref))))
    for nm in ("sog", "gumbel"):
        imle = res["imle"][nm]
        cos = np.asarray(imle["cosine"])
        axes[0].plot(lams, cos[:, 0], "o-", color=colors[nm], label=f"I-MLE {nm}, S=1")
        axes[0].plot(lams, cos[:, -1], "o--", color=colors[nm], label=f"I-MLE {nm}, S={ss[-1]}")
        axes[1].plot(lams, imle["rel_bias"], "o-", color=colors[nm], label=f"I-MLE {nm}")
        axes[2].plot(ss, cos[iref], "o-", color=colors[nm], label=f"I-MLE {nm}, λ={lams[iref]:g}")
        ste = res["ste"][nm]
        axes[0].axhline(ste["cosine"][0], color=colors[nm], ls=":", lw=1, label=f"STE {nm}, S=1")
        axes[1].axhline(ste["rel_bias"], color=colors[nm], ls=":", lw=1, label=f"STE {nm}")
        axes[2].plot(ss, ste["cosine"], "s:", color=colors[nm], label=f"STE {nm}")
        aim = res["aimle"][nm]
        axes[1].axhline(
            aim["rel_bias"][0], color=colors[nm], ls="-.", lw=1, label=f"AIMLE {nm} (S=1)"
        )
        axes[2].plot(ss, aim["cosine"], "^-.", color=colors[nm], label=f"AIMLE {nm}")
    sfe = res["sfe"]
    axes[0].axhline(sfe["cosine"][0], color="C2", ls=":", lw=1, label="SFE, S=1")
    axes[1].axhline(sfe["rel_bias"], color="C2", ls=":", lw=1, label="SFE (≈ Monte Carlo floor)")
    axes[2].plot(ss, sfe["cosine"], "D-", color="C2", label="SFE")
    axes[0].set_title("mean cosine(S-sample estimate, exact gradient)")
    axes[1].set_title("relative bias ||E ĝ − ∇L|| / ||∇L||")
    axes[2].set_title("mean cosine against the number of samples S")
    for ax in axes[:2]:
        ax.set_xscale("log")
        ax.set_xlabel("λ (library scaling: finite difference divided by λ)")
    axes[1].set_yscale("log")
    axes[2].set_xscale("log")
    axes[2].set_xlabel("S")
    for ax in axes:
        ax.legend(fontsize=6)
        ax.grid(True, alpha=0.3)
    fig.suptitle(
        f"Gradient quality at {res['points']} points θ ~ N(0, I), {res['n']} draws each",
        fontsize=10,
    )
    _layout(fig)
    fig.savefig(path, dpi=_DPI[0])
    plt.close(fig)


def curves_figure(path: pathlib.Path, curves: dict, title: str):
    """Mean ± std of the gap per step for each entry of ``curves`` (Fig. 3 of the paper).

    SFE curves longer than the others are drawn every tenth step against ``step / 10``, as the
    authors' figure does ("SFE (steps x 10)").
    """
    fig, ax = plt.subplots(figsize=(7.5, 4.6))
    lengths = [len(c["curve_mean"]) for c in curves.values()]
    short = min(lengths)
    for i, (name, c) in enumerate(curves.items()):
        mean, std = np.asarray(c["curve_mean"]), np.asarray(c["curve_std"])
        every = 10 if name == "sfe" and len(mean) >= 10 * (short - 1) else 1
        mean, std = mean[::every], std[::every]
        label = _curve_label(name, c) + (" (steps × 10)" if every > 1 else "")
        steps = np.arange(len(mean))
        ax.plot(steps, mean, color=f"C{i}", label=label)
        ax.fill_between(steps, mean - std, mean + std, color=f"C{i}", alpha=0.25)
    ax.set_xlabel("optimisation step")
    ax.set_ylabel("optimality gap L(θ) − min L")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    _layout(fig)
    fig.savefig(path, dpi=_DPI[0])
    plt.close(fig)


def _curve_label(name: str, c: dict) -> str:
    kind = name.split("_")[0]
    head = {"imle": "I-MLE", "ste": "STE", "sfe": "SFE"}[kind]
    noise = f", {NOISE_LABEL[c['noise']]}" if "noise" in c else ""
    lam = f", λ={c['lam']:g}" if "lam" in c else ""
    return f"{head}{noise}{lam}, lr={c['lr']:.3g} ({c['runs']} runs)"
