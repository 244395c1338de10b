"""Figures and tables from the runs: ``python -m experiments.dvae.report [--runs runs/dvae]``.

Writes to ``docs/figures/``: ``dvae_test_loss.png`` (test loss of every method per epoch, as in
Fig. 4 of the paper) and ``dvae_reconstructions.png`` (test digits and their reconstructions for
I-MLE SoG with lambda = 1 and lambda = 10, as in Fig. 9 of the appendix); and to
``docs/results/``: ``dvae_<method>.csv`` (each run's per-epoch metrics), ``dvae_summary.json`` and
``dvae_summary.csv`` (final test losses, epochs completed, time per epoch).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np

from experiments.dvae.configs import METHODS
from experiments.dvae.data import REPO_ROOT

SUMMARY_KEYS = (
    "method",
    "label",
    "epochs_completed",
    "final_test_loss",
    "best_test_loss",
    "final_test_loss_sample",
    "final_train_loss",
    "median_epoch_time_s",
    "median_eval_time_s",
)


def load_runs(runs: Path) -> dict[str, dict]:
    out = {}
    for name in METHODS:
        f = runs / name / "metrics.json"
        if f.exists():
            payload = json.loads(f.read_text())
            if payload["history"]:
                out[name] = payload
    return out


def summarise(runs: dict[str, dict]) -> list[dict]:
    rows = []
    for name, payload in runs.items():
        h = payload["history"]
        rows.append(
            {
                "method": name,
                "label": payload["label"],
                "epochs_completed": len(h),
                "final_test_loss": h[-1]["test_loss"],
                "best_test_loss": min(r["test_loss"] for r in h),
                "final_test_loss_sample": h[-1]["test_loss_sample"],
                "final_train_loss": h[-1]["train_loss"],
                "median_epoch_time_s": float(np.median([r["epoch_time_s"] for r in h])),
                "median_eval_time_s": float(np.median([r["eval_time_s"] for r in h])),
            }
        )
    return rows


def plot_curves(runs: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for payload in runs.values():
        h = payload["history"]
        epochs = [r["epoch"] for r in h]
        label = f"{payload['label']} ({len(h)} ep.)"
        axes[0].plot(epochs, [r["test_loss"] for r in h], label=label)
        axes[1].plot(epochs, [r["test_loss_sample"] for r in h], label=label)
    axes[0].set_title("test loss, MAP code")
    axes[1].set_title("test loss, one sampled code")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("BCE (summed over pixels) + KL to uniform")
    lo = min(min(r["test_loss"] for r in p["history"]) for p in runs.values())
    axes[0].set_ylim(lo - 5, lo + 60)
    axes[1].legend(fontsize=8)
    fig.suptitle("Discrete VAE on MNIST, 20 groups of 20 (MNIST test set, 10,000 images)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_reconstructions(runs_dir: Path, runs: dict[str, dict], path: Path, n: int = 8) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [
        m for m in ("imle_sog_lam1", "imle_sog_lam10") if (runs_dir / m / "recon.npz").exists()
    ]
    if not names:
        return False
    recs = {m: np.load(runs_dir / m / "recon.npz") for m in names}
    x = recs[names[0]]["x"][:n]
    rows = 1 + len(names)
    fig, axes = plt.subplots(rows, n, figsize=(1.1 * n + 1.2, 1.25 * rows), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(x[i].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        for j, m in enumerate(names):
            axes[j + 1, i].imshow(recs[m]["recon"][i].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("test digit", fontsize=8)
    for j, m in enumerate(names):
        lam = "1" if m.endswith("lam1") else "10"
        axes[j + 1, 0].set_ylabel(f"λ={lam}\nepoch {int(recs[m]['epoch'])}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m experiments.dvae.report")
    parser.add_argument("--runs", default=str(REPO_ROOT / "runs" / "dvae"))
    parser.add_argument("--docs", default=str(REPO_ROOT / "docs"))
    args = parser.parse_args(argv)
    runs_dir, docs = Path(args.runs), Path(args.docs)
    runs = load_runs(runs_dir)
    if not runs:
        raise SystemExit(f"no runs with metrics in {runs_dir}")
    (docs / "figures").mkdir(parents=True, exist_ok=True)
    (docs / "results").mkdir(parents=True, exist_ok=True)
    plot_curves(runs, docs / "figures" / "dvae_test_loss.png")
    plot_reconstructions(runs_dir, runs, docs / "figures" / "dvae_reconstructions.png")
    for name in runs:
        shutil.copyfile(runs_dir / name / "metrics.csv", docs / "results" / f"dvae_{name}.csv")
    rows = summarise(runs)
    (docs / "results" / "dvae_summary.json").write_text(json.dumps(rows, indent=1))
    with open(docs / "results" / "dvae_summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_KEYS)
        writer.writeheader()
        writer.writerows(rows)
    for r in rows:
        print(
            f"| {r['label']} | {r['epochs_completed']} | {r['final_test_loss']:.2f} | "
            f"{r['best_test_loss']:.2f} | {r['final_test_loss_sample']:.2f} | "
            f"{r['median_epoch_time_s']:.1f} |"
        )
    return rows


if __name__ == "__main__":
    main()
