"""Figures and tables from the runs: ``python -m experiments.dvae.report [--runs runs/dvae]``.

Every run folder under ``--runs`` (one per run name, see ``python -m experiments.dvae``) is copied
to ``docs/results/dvae_<run>.csv`` and recorded, with its configuration, in the index
``docs/results/dvae_runs.json``; runs listed in the index whose folder is not present keep their
CSV file. From all indexed runs it writes ``docs/results/dvae_summary.{json,csv}`` (both test-loss
definitions at the last and the best epoch and at fixed epochs) and the figures in
``docs/figures/``:

* ``dvae_test_loss.png``: the ``tf-notebook`` runs (τ = 10, one sample) of every method, with the
  MAP-code and the sampled-code test loss;
* ``dvae_temperature.png``: τ = 1 against τ = 10 for the methods run at both;
* ``dvae_aimle_readme.png``: the ``aimle-readme`` run next to the test losses printed in the
  AIMLE README's log (the sampled-code definition);
* ``dvae_aimle_trace.png``: AIMLE's training loss, β, λ and non-zero count per epoch;
* ``dvae_reconstructions.png``: test digits and their reconstructions (Fig. 9 of the appendix).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import numpy as np

from experiments.dvae.configs import METHODS, PRESETS
from experiments.dvae.data import REPO_ROOT
from experiments.dvae.train import TEST_LOSSES

#: Average test loss printed by the AIMLE README's discrete-VAE command (the AIMLE PyTorch CLI's
#: sampled-code definition), by epoch, as published in that README's log.
README_LOG = {1: 79.85607, 2: 72.88469, 3: 70.79888, 99: 60.44106, 100: 60.20955}
#: The same log's training loss (BCE summed over the 10 samples, plus the KL) and beta.
README_TRAIN_LOG = {
    1: (1102.3853, 0.6),
    2: (765.9837, 1.058),
    3: (720.9445, 1.056),
    4: (699.9427, 1.064),
    99: (593.7420, 0.298),
    100: (593.5313, 0.270),
}

AT_EPOCHS = (1, 3, 10, 20, 30, 45, 50, 100)

SUMMARY_KEYS = (
    "run",
    "label",
    "preset",
    "method",
    "temperature",
    "samples",
    "init_beta",
    "loss_reduction",
    "init",
    "seed",
    "epochs_completed",
    "final_test_loss_map",
    "best_test_loss_map",
    "best_epoch_map",
    "final_test_loss_cli",
    "best_test_loss_cli",
    "best_epoch_cli",
    "final_train_loss",
    "median_epoch_time_s",
    *(f"test_loss_{d}_at_{e}" for d in ("map", "cli") for e in AT_EPOCHS),
)


def _float(v: str):
    return None if v in ("", "None") else float(v)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: _float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def run_label(entry: dict) -> str:
    """``<method label>, τ=<T>, S=<S>`` plus the preset's other settings when they differ."""
    cfg = entry["config"]
    method = METHODS[cfg["method"]]
    parts = [method.label]
    if method.uses_temperature:
        parts.append(f"τ={cfg['temperature']:g}")
    parts.append(f"S={cfg['samples'] or 1}")
    if cfg["method"] == "aimle":
        parts.append(f"β₀={cfg['init_beta']:g}")
    preset = PRESETS.get(cfg.get("preset") or "", {})
    for field in ("loss_reduction", "init"):
        if field in preset and cfg.get(field) != preset[field]:
            parts.append(f"{field}={cfg.get(field)}")
    if cfg.get("seed"):
        parts.append(f"seed {cfg['seed']}")
    return ", ".join(parts)


def collect(runs_dir: Path, results: Path) -> dict[str, dict]:
    """Copies the run folders' metrics into ``results`` and returns the updated index."""
    index_file = results / "dvae_runs.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else {}
    for metrics in sorted(runs_dir.glob("*/metrics.json")):
        payload = json.loads(metrics.read_text())
        if not payload["history"]:
            continue
        name = metrics.parent.name
        shutil.copyfile(metrics.parent / "metrics.csv", results / f"dvae_{name}.csv")
        index[name] = {
            "config": payload["config"],
            "description": payload["description"],
            "epochs_completed": payload["epochs_completed"],
            "source": f"runs/dvae/{name}",
        }
    for entry in index.values():
        entry["label"] = run_label(entry)
    index_file.write_text(json.dumps(index, indent=1, ensure_ascii=False))
    return index


def _at(history: list[dict], key: str, epoch: int):
    for r in history:
        if int(r["epoch"]) == epoch:
            return r[key]
    return None


def summarise(index: dict[str, dict], histories: dict[str, list[dict]]) -> list[dict]:
    rows = []
    for name, entry in index.items():
        h, cfg = histories[name], entry["config"]
        row = {
            "run": name,
            "label": entry["label"],
            **{f: cfg.get(f) for f in ("preset", "method", "temperature", "init_beta")},
            "samples": cfg["samples"] or 1,
            **{f: cfg.get(f) for f in ("loss_reduction", "init", "seed")},
            "epochs_completed": len(h),
            "final_train_loss": h[-1]["train_loss"],
            "median_epoch_time_s": float(np.median([r["epoch_time_s"] for r in h])),
        }
        for d in ("map", "cli"):
            key = f"test_loss_{d}"
            best = min(h, key=lambda r, key=key: r[key])
            row[f"final_{key}"] = h[-1][key]
            row[f"best_{key}"] = best[key]
            row[f"best_epoch_{d}"] = int(best["epoch"])
            for e in AT_EPOCHS:
                row[f"{key}_at_{e}"] = _at(h, key, e)
        rows.append(row)
    return rows


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _two_panels(plt, title: str):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4), sharey=True)
    for ax, (key, what) in zip(axes, TEST_LOSSES.items(), strict=True):
        ax.set_title(f"test loss: {what}", fontsize=9)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.key = key
    axes[0].set_ylabel("BCE (summed over pixels) + KL to uniform")
    fig.suptitle(title, fontsize=10)
    return fig, axes


def _ylim(axes, values, span=60.0):
    lo = min(values)
    for ax in axes:
        ax.set_ylim(lo - 3, lo + span)


def _longest(index, histories, names) -> dict[tuple, str]:
    """For each (method, temperature), the run among ``names`` with the most epochs."""
    best: dict[tuple, str] = {}
    for n in names:
        cfg = index[n]["config"]
        key = (cfg["method"], cfg["temperature"])
        if key not in best or len(histories[n]) > len(histories[best[key]]):
            best[key] = n
    return best


def _tf_notebook(cfg: dict) -> bool:
    """A run of the tf-notebook preset with one sample, seed 0 and the preset's other settings."""
    return (
        cfg.get("preset") == "tf-notebook"
        and not cfg.get("seed")
        and (cfg["samples"] or 1) == 1
        and cfg.get("loss_reduction", "mean") == "mean"
        and cfg.get("init", "glorot") == "glorot"
        and cfg.get("init_beta", 1.0) == 1.0
    )


def plot_tf_notebook(index, histories, path: Path) -> bool:
    candidates = [
        n
        for n, e in index.items()
        if _tf_notebook(e["config"]) and e["config"]["temperature"] == 10.0
    ]
    names = list(_longest(index, histories, candidates).values())
    if not names:
        return False
    plt = _plt()
    fig, axes = _two_panels(
        plt, "tf-notebook preset (τ = 10, S = 1, Glorot): MNIST test set, 10,000 images"
    )
    values = []
    for n in names:
        h = histories[n]
        for ax in axes:
            y = [r[ax.key] for r in h]
            values += y
            ax.plot([r["epoch"] for r in h], y, label=f"{index[n]['label']} ({len(h)} ep.)")
    _ylim(axes, values)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_temperature(index, histories, path: Path) -> bool:
    by_method: dict[str, dict[float, str]] = {}
    candidates = [n for n, e in index.items() if _tf_notebook(e["config"])]
    for (method, tau), n in _longest(index, histories, candidates).items():
        by_method.setdefault(method, {})[tau] = n
    pairs = {m: t for m, t in by_method.items() if 1.0 in t and 10.0 in t}
    if not pairs:
        return False
    plt = _plt()
    fig, axes = _two_panels(plt, "τ = 1 (dashed) against τ = 10 (solid); tf-notebook otherwise")
    values = []
    for i, (method, temps) in enumerate(sorted(pairs.items())):
        for tau, style in ((10.0, "-"), (1.0, "--")):
            h = histories[temps[tau]]
            for ax in axes:
                y = [r[ax.key] for r in h]
                values += y
                ax.plot(
                    [r["epoch"] for r in h],
                    y,
                    style,
                    color=f"C{i}",
                    label=f"{METHODS[method].label}, τ={tau:g} ({len(h)} ep.)",
                )
    _ylim(axes, values, span=70.0)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_aimle_readme(index, histories, path: Path) -> bool:
    names = [n for n, e in index.items() if e["config"].get("preset") == "aimle-readme"]
    if not names:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.6))
    for i, n in enumerate(names):
        h = histories[n]
        epochs = [r["epoch"] for r in h]
        label = index[n]["label"]
        axes[0].plot(epochs, [r["test_loss_cli"] for r in h], "o-", ms=3, color=f"C{i}",
                     label=f"{label}: sampled codes")  # fmt: skip
        axes[0].plot(epochs, [r["test_loss_map"] for r in h], "s--", ms=3, color=f"C{i}",
                     label=f"{label}: MAP code")  # fmt: skip
        axes[1].plot(epochs, [r["train_loss"] for r in h], "o-", ms=3, color=f"C{i}", label=label)
        axes[2].plot(epochs, [r["aimle_beta"] for r in h], "o-", ms=3, color=f"C{i}", label=label)
    axes[0].plot(list(README_LOG), list(README_LOG.values()), "kx", ms=9,
                 label="AIMLE README log (sampled codes)")  # fmt: skip
    train = {e: v[0] for e, v in README_TRAIN_LOG.items()}
    beta = {e: v[1] for e, v in README_TRAIN_LOG.items()}
    axes[1].plot(list(train), list(train.values()), "kx", ms=9, label="AIMLE README log")
    axes[2].plot(list(beta), list(beta.values()), "kx", ms=9, label="AIMLE README log")
    titles = ("test loss", "training loss (BCE summed over the 10 samples + KL)", "β")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[1].set_yscale("log")
    fig.suptitle(
        "aimle-readme preset (AIMLE, S = 10, τ = 1, β₀ = 0, BCE summed over S, Xavier-ReLU init)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_aimle_trace(index, histories, path: Path) -> bool:
    names = [n for n, e in index.items() if e["config"]["method"] == "aimle"]
    if not names:
        return False
    plt = _plt()
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    panels = (
        ("train_loss", "training loss (per example, mean over S)"),
        ("aimle_beta", "β at the end of the epoch"),
        ("aimle_lambda", "λ on a fixed training batch"),
        ("aimle_nnz", "moving average of non-zeros per group"),
    )
    for i, n in enumerate(names):
        h = histories[n]
        cfg = index[n]["config"]
        s = cfg["samples"] or 1
        scale = s if cfg.get("loss_reduction") == "sum" else 1
        for ax, (key, title) in zip(axes, panels, strict=True):
            pts = [(r["epoch"], r.get(key)) for r in h if r.get(key) is not None]
            if not pts:
                continue
            x, y = zip(*pts, strict=True)
            if key == "train_loss":
                # training loss per sample: the summed reduction is S times the BCE
                y = [r["train_bce"] + r["train_kl"] / scale for r in h]
                x = [r["epoch"] for r in h]
            ax.plot(x, y, color=f"C{i}", label=index[n]["label"])
            ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def plot_reconstructions(runs_dir: Path, path: Path, n: int = 8) -> bool:
    plt = _plt()
    names = [
        m
        for m in ("tf-notebook_imle_sog_lam1", "tf-notebook_imle_sog_lam10")
        if (runs_dir / m / "recon.npz").exists()
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
    (docs / "figures").mkdir(parents=True, exist_ok=True)
    (docs / "results").mkdir(parents=True, exist_ok=True)
    index = collect(runs_dir, docs / "results")
    if not index:
        raise SystemExit(f"no runs with metrics in {runs_dir} or {docs / 'results'}")
    histories = {n: read_csv(docs / "results" / f"dvae_{n}.csv") for n in index}
    figures = docs / "figures"
    plot_tf_notebook(index, histories, figures / "dvae_test_loss.png")
    plot_temperature(index, histories, figures / "dvae_temperature.png")
    plot_aimle_readme(index, histories, figures / "dvae_aimle_readme.png")
    plot_aimle_trace(index, histories, figures / "dvae_aimle_trace.png")
    plot_reconstructions(runs_dir, figures / "dvae_reconstructions.png")
    rows = summarise(index, histories)
    (docs / "results" / "dvae_summary.json").write_text(
        json.dumps(rows, indent=1, ensure_ascii=False)
    )
    with open(docs / "results" / "dvae_summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SUMMARY_KEYS)
        writer.writeheader()
        writer.writerows(rows)
    for r in rows:
        print(
            f"| {r['label']} | {r['epochs_completed']} | {r['final_test_loss_map']:.2f} | "
            f"{r['best_test_loss_map']:.2f} | {r['final_test_loss_cli']:.2f} | "
            f"{r['best_test_loss_cli']:.2f} | {r['median_epoch_time_s']:.1f} |"
        )
    return rows


if __name__ == "__main__":
    main()
