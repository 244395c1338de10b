"""Tables and figures of the learning-to-explain runs.

    python -m experiments.l2x.report                       # runs/l2x -> docs/results, docs/figures
    python -m experiments.l2x.report --runs DIR --rationale taste imle_t30 0

Writes ``docs/results/l2x_summary.{json,csv}`` (mean and standard deviation over seeds of the
best-validation epoch's test MSE x100 and subset precision %), ``docs/results/l2x_runs.csv`` (every
epoch of every run), ``docs/figures/l2x_curves.png`` (validation MSE and precision per epoch,
mean over seeds), and highlighted rationales of a few annotated reviews
(``docs/figures/l2x_rationales.{html,png}``). Standard deviations are NumPy's ``np.std`` (over
seeds, ``ddof=0``), as the reference notebook prints them. Runs made on a generated stand-in
corpus are labelled so in every output.
"""

from __future__ import annotations

import argparse
import csv
import html
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from experiments.l2x.data import ASPECTS
from experiments.l2x.methods import METHODS

REPO_ROOT = Path(__file__).resolve().parents[2]
STANDIN = "generated stand-in"

#: Table 3 of the paper (BeerAdvocate, k = 10): (test MSE x100, subset precision %), mean and std.
PAPER_TABLE3 = {
    "l2x": {
        "appearance": (10.70, 4.82, 30.02, 15.82),
        "palate": (6.70, 0.63, 50.39, 13.58),
        "taste": (6.92, 1.61, 32.23, 4.92),
    },
    "softsub": {
        "appearance": (2.48, 0.10, 52.86, 7.08),
        "palate": (2.94, 0.08, 39.17, 3.17),
        "taste": (2.18, 0.10, 41.98, 1.42),
    },
    "imle_t30": {
        "appearance": (2.51, 0.05, 65.47, 4.95),
        "palate": (2.96, 0.04, 40.73, 3.15),
        "taste": (2.38, 0.04, 41.38, 1.55),
    },
}
PAPER_LABELS = {
    "l2x": "L2X (t = 0.1)",
    "softsub": "SoftSub (t = 0.5)",
    "imle_t30": "I-MLE (τ = 30)",
}


def collect(root: Path) -> list[dict]:
    """All ``metrics.json`` payloads under ``root`` (``<aspect>/<method>_k<k>/seed<s>/``)."""
    return [json.loads(p.read_text()) for p in sorted(root.glob("*/*/seed*/metrics.json"))]


def summarize(runs: list[dict], epochs: int | None = None) -> list[dict]:
    """Mean and std over seeds per (aspect, method, k), of runs that completed ``epochs``."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        cfg = r["config"]
        if r["best"] is None or (epochs is not None and r["epochs_completed"] < epochs):
            continue
        groups[(r["aspect_name"], r["method"], cfg["k"])].append(r)
    rows = []
    for (aspect, method, k), rs in sorted(groups.items()):
        mse = np.array([100 * r["best"]["test_mse"] for r in rs])
        prec = np.array([100 * r["best"]["precision"] for r in rs])
        times = np.array([np.median([h["epoch_time_s"] for h in r["history"]]) for r in rs])
        rows.append(
            {
                "data": STANDIN if all(r["generated_standin"] for r in rs) else "BeerAdvocate",
                "aspect": aspect,
                "method": method,
                "label": METHODS[method].label,
                "k": k,
                "seeds": sorted(r["config"]["seed"] for r in rs),
                "epochs": min(r["epochs_completed"] for r in rs),
                "test_mse_x100_mean": float(mse.mean()),
                "test_mse_x100_std": float(mse.std()),
                "precision_pct_mean": float(prec.mean()),
                "precision_pct_std": float(prec.std()),
                "best_epochs": [r["best"]["epoch"] for r in rs],
                "median_epoch_time_s": float(np.median(times)),
                "train_reviews": rs[0]["data"]["train"],
                "window": rs[0].get("window"),
                "preset": {
                    key: rs[0]["config"][key] for key in ("filters", "hidden", "hidden_pred")
                },
            }
        )
    return rows


def table3_markdown(rows: list[dict], k: int = 10) -> str:
    """Table 3 layout: methods by aspects (appearance, palate, taste), paper rows then ours."""
    aspects = ("appearance", "palate", "taste")
    head = "| method | data | " + " | ".join(f"{a} MSE×100 | {a} precision %" for a in aspects)
    lines = [head + " |", "|" + " --- |" * (2 + 2 * len(aspects))]
    for method, per_aspect in PAPER_TABLE3.items():
        cells = []
        for a in aspects:
            m, ms, p, ps = per_aspect[a]
            cells += [f"{m:.2f} ± {ms:.2f}", f"{p:.2f} ± {ps:.2f}"]
        lines.append(
            f"| {PAPER_LABELS[method]} | BeerAdvocate (paper) | " + " | ".join(cells) + " |"
        )
    by = {(r["aspect"], r["method"]): r for r in rows if r["k"] == k}
    for method in METHODS:
        if not any((a, method) in by for a in aspects):
            continue
        cells = []
        for a in aspects:
            r = by.get((a, method))
            if r is None:
                cells += ["–", "–"]
                continue
            n = len(r["seeds"])
            cells += [
                f"{r['test_mse_x100_mean']:.2f} ± {r['test_mse_x100_std']:.2f}",
                f"{r['precision_pct_mean']:.2f} ± {r['precision_pct_std']:.2f} (n={n})",
            ]
        lines.append(f"| {METHODS[method].label} | {STANDIN} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_markdown(rows: list[dict]) -> str:
    """Every (aspect, method, k) group as one line."""
    lines = [
        "| data | aspect | method | k | seeds | test MSE×100 | precision % | best epochs | s/epoch |",
        "|" + " --- |" * 9,
    ]
    for r in rows:
        lines.append(
            f"| {r['data']} | {r['aspect']} | {r['label']} | {r['k']} | {len(r['seeds'])} | "
            f"{r['test_mse_x100_mean']:.2f} ± {r['test_mse_x100_std']:.2f} | "
            f"{r['precision_pct_mean']:.2f} ± {r['precision_pct_std']:.2f} | "
            f"{','.join(map(str, r['best_epochs']))} | {r['median_epoch_time_s']:.1f} |"
        )
    return "\n".join(lines)


def write_tables(runs: list[dict], rows: list[dict], results: Path) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / "l2x_summary.json").write_text(json.dumps(rows, indent=1))
    keys = [k for k in rows[0] if k not in ("seeds", "best_epochs", "preset")] if rows else []
    with open(results / "l2x_summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys + ["seeds"])
        w.writeheader()
        for r in rows:
            w.writerow({**{k: r[k] for k in keys}, "seeds": " ".join(map(str, r["seeds"]))})
    fields = ["data", "aspect", "method", "k", "seed", "epoch", "train_mse", "val_mse", "test_mse"]
    fields += ["precision", "ann_mse", "aimle_beta", "epoch_time_s"]
    with open(results / "l2x_runs.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for r in runs:
            for h in r["history"]:
                w.writerow(
                    {
                        "data": STANDIN if r["generated_standin"] else "BeerAdvocate",
                        "aspect": r["aspect_name"],
                        "method": r["method"],
                        "k": r["config"]["k"],
                        "seed": r["config"]["seed"],
                        **{key: h.get(key) for key in fields[5:]},
                    }
                )


def plot_curves(runs: list[dict], path: Path, k: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in runs if r["config"]["k"] == k and r["history"]]
    aspects = [a for a in ASPECTS if any(r["aspect_name"] == a for r in runs)]
    if not aspects:
        return
    fig, axes = plt.subplots(2, len(aspects), figsize=(4.2 * len(aspects), 6.4), squeeze=False)
    standin = all(r["generated_standin"] for r in runs)
    for j, aspect in enumerate(aspects):
        for i, method in enumerate(METHODS):
            rs = [r for r in runs if r["aspect_name"] == aspect and r["method"] == method]
            if not rs:
                continue
            n = min(len(r["history"]) for r in rs)
            epochs = np.arange(1, n + 1)
            val = np.mean([[100 * h["val_mse"] for h in r["history"][:n]] for r in rs], axis=0)
            prec = np.mean([[100 * h["precision"] for h in r["history"][:n]] for r in rs], axis=0)
            label = f"{METHODS[method].label} (n={len(rs)})"
            style = dict(marker=".", color=f"C{i}", label=label)  # one colour per method
            axes[0, j].plot(epochs, val, **style)
            axes[1, j].plot(epochs, prec, **style)
        axes[0, j].set_title(f"{aspect}, k={k}")
        axes[0, j].set_ylabel("validation MSE ×100")
        axes[1, j].set_ylabel("subset precision %")
        axes[1, j].set_xlabel("epoch")
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
    for ax in axes[0]:
        ax.legend(fontsize=6)
    title = "Learning to explain: mean over seeds"
    fig.suptitle(title + (f"\n({STANDIN} data)" if standin else ""), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


_COLORS = {"both": "#7ed67e", "gold": "#ffe27a", "selected": "#f59a9a"}


def _marks(sel: np.ndarray, gold: np.ndarray, tokens: np.ndarray) -> list[tuple[str, str | None]]:
    out = []
    for t, s, g in zip(tokens, sel, gold, strict=True):
        if t == "<PAD>":
            continue
        kind = "both" if s and g else "gold" if g else "selected" if s else None
        out.append((str(t), kind))
    return out


def rationales(run_dir: Path, n: int = 4) -> tuple[list, dict]:
    """Highlights of the first ``n`` annotated reviews of a run's best epoch."""
    best = np.load(run_dir / "best_selection.npz")
    meta = json.loads((run_dir / "metrics.json").read_text())
    items = []
    for i in range(min(n, len(best["tokens"]))):
        items.append(
            {
                "marks": _marks(best["z"][i] > 0.5, best["gold"][i], best["tokens"][i]),
                "y": float(best["y"][i]),
                "pred": float(best["pred"][i]),
            }
        )
    return items, {**meta, "best_epoch": int(best["epoch"])}


def write_rationales(run_dir: Path, html_path: Path, png_path: Path, n: int = 4) -> None:
    items, meta = rationales(run_dir, n)
    standin = f" — {STANDIN} data" if meta["generated_standin"] else ""
    title = (
        f"{meta['label']}, aspect {meta['aspect_name']}, k={meta['config']['k']}, seed "
        f"{meta['config']['seed']}, epoch {meta['best_epoch']}{standin}"
    )
    legend = " ".join(
        f'<span style="background:{c}">{html.escape(name)}</span>'
        for name, c in [("selected and gold", _COLORS["both"]), ("gold only", _COLORS["gold"])]
        + [("selected only", _COLORS["selected"])]
    )
    parts = [f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"]
    parts += [f"<h3>{html.escape(title)}</h3><p>{legend}</p>"]
    for it in items:
        words = [
            f'<span style="background:{_COLORS[k]}">{html.escape(t)}</span>'
            if k
            else html.escape(t)
            for t, k in it["marks"]
        ]
        parts.append(
            f"<p><b>score {it['y']:.1f}, predicted {it['pred']:.2f}:</b> "
            + " ".join(words)
            + "</p>"
        )
    parts.append("</body></html>")
    html_path.parent.mkdir(parents=True, exist_ok=True)
    html_path.write_text("\n".join(parts), encoding="utf-8")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width, char = 165, 1.0 / 172  # characters per line; a monospace character's share of 12 in
    lines: list[list[tuple[str, str | None]]] = []
    for it in items:
        lines.append([(f"score {it['y']:.1f}, predicted {it['pred']:.2f}:", "header")])
        current, used = [], 0
        for t, k in it["marks"]:
            if used + len(t) + 1 > width:
                lines.append(current)
                current, used = [], 0
            current.append((t, k))
            used += len(t) + 1
        lines.append(current)
        lines.append([])
    fig = plt.figure(figsize=(12, 0.24 * (len(lines) + 3)))
    fig.text(0.01, 1 - 0.5 / (len(lines) + 3), title, fontsize=9, weight="bold", va="top")
    for row, line in enumerate(lines, start=2):
        y = 1 - (row + 0.5) / (len(lines) + 3)
        x = 0.01
        for t, k in line:
            kw = dict(fontsize=8, family="monospace", va="center")
            if k == "header":
                fig.text(x, y, t, weight="bold", **kw)
                continue
            box = dict(facecolor=_COLORS[k], edgecolor="none", pad=1.0) if k else None
            fig.text(x, y, t, bbox=box, **kw)
            x += (len(t) + 1) * char
    legend_y = 1 - 1.4 / (len(lines) + 3)
    for i, (name, k) in enumerate(
        [("selected and gold", "both"), ("gold only", "gold"), ("selected only", "selected")]
    ):
        fig.text(
            0.01 + 0.16 * i, legend_y, name, fontsize=8, va="center",
            bbox=dict(facecolor=_COLORS[k], edgecolor="none", pad=1.0),
        )  # fmt: skip
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(prog="python -m experiments.l2x.report")
    p.add_argument("--runs", default=str(REPO_ROOT / "runs" / "l2x"))
    p.add_argument("--docs", default=str(REPO_ROOT / "docs"))
    p.add_argument("--epochs", type=int, default=None, help="only runs with this many epochs")
    p.add_argument(
        "--rationale",
        nargs=3,
        default=None,
        metavar=("ASPECT", "METHOD", "SEED"),
        help="the run whose rationales are drawn (default: the first I-MLE run, else any)",
    )
    a = p.parse_args(argv)
    root, docs = Path(a.runs), Path(a.docs)
    runs = collect(root)
    if not runs:
        raise SystemExit(f"no runs under {root}")
    rows = summarize(runs, a.epochs)
    write_tables(runs, rows, docs / "results")
    complete = [r for r in runs if a.epochs is None or r["epochs_completed"] >= a.epochs]
    plot_curves(complete, docs / "figures" / "l2x_curves.png")
    if a.rationale:
        aspect, method, seed = a.rationale
        run = root / aspect / f"{method}_k10" / f"seed{seed}"
    else:
        candidates = sorted(root.glob("*/imle_t30_k10/seed*/best_selection.npz"))
        candidates = candidates or sorted(root.glob("*/*/seed*/best_selection.npz"))
        run = candidates[0].parent if candidates else None
    if run is not None:
        write_rationales(
            run, docs / "figures" / "l2x_rationales.html", docs / "figures" / "l2x_rationales.png"
        )
    print(table3_markdown(rows))
    print()
    print(summary_markdown(rows))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
