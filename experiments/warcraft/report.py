"""Figures and tables of the Warcraft runs.

Reads ``runs/warcraft/{K}x{K}/<method>/metrics.json`` (and ``test_predictions.npz``) and writes

* ``docs/results/warcraft_{K}x{K}_<method>.csv``: the per-epoch metrics of each run;
* ``docs/results/warcraft_summary.json`` and ``.csv``: the final test metrics and each run's
  budget (maps, epochs, steps) and data label;
* ``docs/figures/warcraft_curves.png``: validation accuracy (optimal-cost paths) and training loss
  per epoch and method;
* ``docs/figures/warcraft_paths.png``: test maps with the gold path and each method's predicted
  path drawn on the image.

Every figure title and table row carries the data label ("generated stand-in" for generated
data).

Usage::

    python -m experiments.warcraft.report [--runs runs/warcraft] [--k 12]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from experiments.warcraft.configs import METHODS  # noqa: E402
from experiments.warcraft.data import REPO_ROOT, TILE  # noqa: E402

ORDER = list(METHODS)
SUMMARY_KEYS = (
    "k",
    "method",
    "label",
    "data",
    "epochs",
    "n_train",
    "n_val",
    "n_test",
    "steps",
    "test_optimal",
    "test_hamming_acc",
    "test_exact",
    "test_valid",
    "test_cost_ratio",
    "best_val_optimal",
    "mean_epoch_time_s",
    "median_step_time_s",
)


def load_runs(runs: Path, k: int) -> dict[str, dict]:
    """The metrics payloads of the runs under ``runs/{k}x{k}``, in :data:`ORDER`."""
    folder = runs / f"{k}x{k}"
    found = {}
    for name in ORDER:
        file = folder / name / "metrics.json"
        if file.is_file():
            found[name] = json.loads(file.read_text())
    return found


def summary_row(k: int, payload: dict) -> dict:
    hist = payload["history"]
    test = payload.get("test", {})
    return {
        "k": k,
        "method": payload["method"],
        "label": payload["label"],
        "data": payload.get("data"),
        "epochs": len(hist),
        "n_train": payload.get("n_train"),
        "n_val": payload.get("n_val"),
        "n_test": payload.get("n_test"),
        "steps": len(hist) * payload.get("steps_per_epoch", 0),
        "test_optimal": test.get("test_optimal"),
        "test_hamming_acc": test.get("test_hamming_acc"),
        "test_exact": test.get("test_exact"),
        "test_valid": test.get("test_valid"),
        "test_cost_ratio": test.get("test_cost_ratio"),
        "best_val_optimal": max((r["val_optimal"] for r in hist), default=None),
        "mean_epoch_time_s": float(np.mean([r["epoch_time_s"] for r in hist])) if hist else None,
        "median_step_time_s": float(np.median([r["step_time_s"] for r in hist])) if hist else None,
    }


def plot_curves(k: int, runs: dict[str, dict], file: Path) -> None:
    labels = {p.get("data", "?") for p in runs.values()}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for payload in runs.values():
        hist = payload["history"]
        epochs = [r["epoch"] for r in hist]
        axes[0].plot(epochs, [r["val_optimal"] for r in hist], marker="o", label=payload["label"])
        axes[1].plot(epochs, [r["val_hamming"] for r in hist], marker="o", label=payload["label"])
        axes[2].plot(epochs, [r["train_loss"] for r in hist], marker="o", label=payload["label"])
    axes[0].set_ylabel("validation accuracy: optimal-cost paths (%)")
    axes[1].set_ylabel("validation Hamming distance to the gold path (tiles)")
    axes[2].set_ylabel("training loss (each method's own)")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Warcraft {k}x{k}: {' / '.join(sorted(labels))} data")
    fig.tight_layout()
    fig.savefig(file, dpi=110)
    plt.close(fig)


def _draw_path(ax, path: np.ndarray, **style) -> None:
    for r, c in zip(*np.nonzero(path > 0.5), strict=True):
        ax.add_patch(Rectangle((c * TILE - 0.5, r * TILE - 0.5), TILE, TILE, fill=False, **style))


def plot_paths(k: int, runs: dict[str, dict], runs_dir: Path, file: Path, n_maps: int = 4) -> None:
    preds = {}
    for name in runs:
        npz = runs_dir / f"{k}x{k}" / name / "test_predictions.npz"
        if npz.is_file():
            preds[name] = dict(np.load(npz))
    if not preds:
        return
    first = next(iter(preds.values()))
    n_maps = min(n_maps, first["maps"].shape[0])
    labels = {runs[n].get("data", "?") for n in preds}
    fig, axes = plt.subplots(
        len(preds), n_maps, figsize=(2.7 * n_maps, 2.9 * len(preds) + 0.4), squeeze=False
    )
    for i, (name, p) in enumerate(preds.items()):
        for j in range(n_maps):
            ax = axes[i, j]
            ax.imshow(p["maps"][j])
            _draw_path(ax, p["gold"][j], edgecolor="white", linewidth=1.6)
            ys, xs = np.nonzero(p["pred"][j] > 0.5)
            ax.scatter(xs * TILE + TILE / 2 - 0.5, ys * TILE + TILE / 2 - 0.5, s=9, c="red")
            verdict = "optimal" if p["optimal"][j] else "not optimal"
            ax.set_title(f"{runs[name]['label']}\ntest map {j}: {verdict}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(
        f"Warcraft {k}x{k}, {' / '.join(sorted(labels))}\n"
        "gold path: white squares, predicted path: red dots",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(file, dpi=110)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m experiments.warcraft.report")
    parser.add_argument("--runs", default=str(REPO_ROOT / "runs" / "warcraft"))
    parser.add_argument("--k", type=int, nargs="+", default=[12])
    parser.add_argument("--docs", default=str(REPO_ROOT / "docs"))
    args = parser.parse_args(argv)
    runs_dir, docs = Path(args.runs), Path(args.docs)
    (docs / "results").mkdir(parents=True, exist_ok=True)
    (docs / "figures").mkdir(parents=True, exist_ok=True)
    rows = []
    for k in args.k:
        runs = load_runs(runs_dir, k)
        for name, payload in runs.items():
            shutil.copyfile(
                runs_dir / f"{k}x{k}" / name / "metrics.csv",
                docs / "results" / f"warcraft_{k}x{k}_{name}.csv",
            )
            rows.append(summary_row(k, payload))
        if runs:
            plot_curves(k, runs, docs / "figures" / f"warcraft_{k}x{k}_curves.png")
            plot_paths(k, runs, runs_dir, docs / "figures" / f"warcraft_{k}x{k}_paths.png")
    (docs / "results" / "warcraft_summary.json").write_text(json.dumps(rows, indent=1))
    with open(docs / "results" / "warcraft_summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_KEYS)
        writer.writeheader()
        writer.writerows(rows)
    for r in rows:
        opt = "—" if r["test_optimal"] is None else f"{r['test_optimal']:.1f}"
        acc = "—" if r["test_hamming_acc"] is None else f"{r['test_hamming_acc']:.1f}"
        print(f"| {r['k']} | {r['label']} | {opt} | {acc} | {r['epochs']} ep, {r['steps']} steps |")
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
