"""Command line of the learning-to-explain experiment (appendix C.2).

Examples::

    python -m experiments.l2x.generate --out data/beer_standin          # stand-in corpus
    python -m experiments.l2x --data data/beer_standin --aspect taste --method imle_t30 \\
        --seeds 0 1 2                                                    # 3 runs, resumable
    python -m experiments.l2x --data DIR --preset notebook ...          # the notebook's widths
    python -m experiments.l2x --smoke                                   # tiny generated run
    python -m experiments.l2x.report                                    # tables and figures

Presets: ``paper`` (default; the appendix: explainer convolutions of 250 filters, dense layers of
100, k = 10, batch 40, 20 epochs, Adam 1e-3) and ``notebook`` (the widths of the reference
notebook: 100 filters, predictor dense layer of 250). Runs go to
``runs/l2x/<aspect>/<method>_k<k>/seed<seed>/`` (``--out`` changes ``runs/l2x``); the same command
again resumes each run from its last completed epoch and skips finished runs. A data folder
holding ``standin.json`` (written by the generator) is labelled "generated stand-in" in every
output.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from experiments.l2x.data import ASPECTS, load_beer
from experiments.l2x.generate import Config, generate
from experiments.l2x.methods import METHODS
from experiments.l2x.train import TrainConfig, train

REPO_ROOT = Path(__file__).resolve().parents[2]
PRESETS = {
    "paper": dict(filters=250, hidden=100, hidden_pred=100),
    "notebook": dict(filters=100, hidden=100, hidden_pred=250),
}


def aspect_id(value: str) -> int:
    if value.isdigit() and int(value) < len(ASPECTS):
        return int(value)
    if value in ASPECTS:
        return ASPECTS.index(value)
    raise argparse.ArgumentTypeError(f"aspect must be 0..4 or one of {', '.join(ASPECTS)}")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m experiments.l2x",
        description="Learning to explain on BeerAdvocate-format data with k-subset estimators.",
    )
    p.add_argument("--data", default=None, help="folder with the BeerAdvocate-format files")
    p.add_argument("--aspect", type=aspect_id, nargs="+", default=[3], help="0..4 or a name")
    p.add_argument("--method", nargs="+", choices=sorted(METHODS), default=["imle_t30"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--k", type=int, nargs="+", default=[10], help="subset sizes (paper: 10)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=40)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-train", type=int, default=None)
    p.add_argument("--full-length", action="store_true", help="no computational window")
    p.add_argument("--out", default=None, help="root of the run folders (default runs/l2x)")
    p.add_argument("--stop-after", type=int, default=None, help="epochs per run in this call")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--smoke", action="store_true", help="2 epochs on a tiny generated corpus")
    return p.parse_args(argv)


def run_dir(root: Path, cfg: TrainConfig) -> Path:
    return root / ASPECTS[cfg.aspect] / f"{cfg.method}_k{cfg.k}" / f"seed{cfg.seed}"


def run_all(args, data_dir: Path, root: Path, **overrides) -> list[dict]:
    standin = (data_dir / "standin.json").is_file()
    results = []
    for aspect in args.aspect:
        for seed in args.seeds:
            data = load_beer(data_dir, aspect, seed=seed)
            for method, k in [(m, k) for k in args.k for m in args.method]:
                cfg = TrainConfig(
                    method=method,
                    aspect=aspect,
                    k=k,
                    seed=seed,
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    lr=args.lr,
                    max_train=args.max_train,
                    use_window=not args.full_length,
                    **PRESETS[args.preset],
                )
                cfg = dataclasses.replace(cfg, **overrides)
                out = run_dir(root, cfg)
                result = train(
                    cfg,
                    data,
                    out,
                    progress=not args.no_progress,
                    stop_after=args.stop_after,
                    generated_standin=standin,
                )
                best = result["best"] or {}
                print(
                    f"{method} {ASPECTS[aspect]} seed {seed}: {result['epochs_completed']} epochs, "
                    f"best epoch {best.get('epoch')}: test MSE x100 "
                    f"{100 * best.get('test_mse', float('nan')):.2f}, precision "
                    f"{100 * best.get('precision', float('nan')):.2f}%"
                    + (" (generated stand-in)" if standin else "")
                )
                results.append(result)
    return results


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            data_dir = Path(args.data) if args.data else Path(tmp) / "data"
            if not args.data:
                generate(data_dir, Config(train=80, heldout=40, annotated=20, extra_words=5))
            root = Path(args.out) if args.out else Path(tmp) / "runs"
            args.epochs = 2
            return run_all(args, data_dir, root, batch_size=20, filters=16, hidden=8, hidden_pred=8)
    if args.data is None:
        raise SystemExit(
            "--data DIR is required: the folder with reviews.aspect{A}.{train,heldout}.txt, "
            "annotations.json and review+wiki.filtered.200.txt (or their .gz). Generate a stand-in "
            "with `python -m experiments.l2x.generate --out DIR`."
        )
    root = Path(args.out) if args.out else REPO_ROOT / "runs" / "l2x"
    results = run_all(args, Path(args.data), root)
    print(json.dumps([r["best"] for r in results], indent=1))
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
