"""Command line of the Warcraft shortest-path experiment.

Examples::

    python -m experiments.warcraft.generate --out data/ --sizes 12      # generated stand-in data
    python -m experiments.warcraft --k 12 --method imle-sog --data data/  # the paper protocol
    python -m experiments.warcraft --k 12 --method blackbox --data data/ --preset reduced-12
    python -m experiments.warcraft --smoke                               # a few steps, tiny maps
    python -m experiments.warcraft.profile --data data/                  # model vs solver time
    python -m experiments.warcraft.report                                # figures and tables

Runs go to ``runs/warcraft/{K}x{K}/<method>/`` (``--out`` to change); running the same command
again resumes from the last completed epoch. ``--preset paper`` (the default) is the protocol of
appendix C.4: 50 epochs over all training maps, batch 70, Adam 5e-4 divided by 10 at epochs 30
and 40; explicit options override a preset's values.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from experiments.warcraft.configs import METHODS
from experiments.warcraft.data import ENV_VAR, REPO_ROOT, load_warcraft
from experiments.warcraft.generate import generate
from experiments.warcraft.train import TrainConfig, default_milestones, train

#: Named budgets. ``paper`` is the full protocol; ``reduced-12`` is the budget the 12 x 12
#: stand-in results of docs/warcraft.md were run with on a shared 2-core CPU machine.
PRESETS: dict[str, dict] = {
    "paper": dict(epochs=50, max_train=None, max_val=None, max_test=None),
    "reduced-12": dict(epochs=6, max_train=1400, max_val=200, max_test=None),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.warcraft",
        description="Warcraft shortest paths (appendix C.4) with imlejax gradient estimators.",
    )
    parser.add_argument("--method", choices=sorted(METHODS), default="imle-sog")
    parser.add_argument("--k", type=int, default=12, help="grid size (12, 18, 24, 30)")
    parser.add_argument(
        "--data",
        default=None,
        help=f"warcraft_shortest_path_oneskin folder or its parent (default: ${ENV_VAR})",
    )
    parser.add_argument("--out", default=None, help="run folder (default runs/warcraft/KxK/M)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=70)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument(
        "--milestones",
        type=int,
        nargs=2,
        default=None,
        help="epochs of the two /10 drops (default 30 40, scaled to --epochs)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--max-val", type=int, default=None)
    parser.add_argument("--max-test", type=int, default=None)
    parser.add_argument(
        "--stop-after", type=int, default=None, help="stop after this many epochs in this call"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="2 epochs of 2 steps on tiny generated 12x12 maps, in a temporary folder",
    )
    return parser.parse_args(argv)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of the preset with the explicit options applied."""
    preset = dict(PRESETS[args.preset])
    for key in ("epochs", "max_train", "max_val", "max_test"):
        value = getattr(args, key)
        if value is not None:
            preset[key] = value
    milestones = tuple(args.milestones) if args.milestones else default_milestones(preset["epochs"])
    return TrainConfig(
        method=args.method,
        k=args.k,
        batch_size=args.batch_size,
        lr=args.lr,
        milestones=milestones,
        seed=args.seed,
        **preset,
    )


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            root = args.data or generate(Path(tmp), sizes=(12,), n_train=20, n_val=10, n_test=10)
            cfg = TrainConfig(
                method=args.method, k=12, epochs=2, batch_size=10, milestones=(1, 2), seed=args.seed
            )
            out = Path(args.out) if args.out else Path(tmp) / "run"
            result = train(cfg, load_warcraft(root, 12), out, progress=not args.no_progress)
            print(json.dumps(result["history"][-1], indent=1))
            return result
    cfg = config_from_args(args)
    data = load_warcraft(
        args.data, cfg.k, max_train=cfg.max_train, max_val=cfg.max_val, max_test=cfg.max_test
    )
    out = Path(args.out) if args.out else REPO_ROOT / "runs" / "warcraft" / f"{cfg.k}x{cfg.k}"
    out = out / cfg.method if not args.out else out
    result = train(cfg, data, out, progress=not args.no_progress, stop_after=args.stop_after)
    last = result["history"][-1] if result["history"] else {}
    print(f"{cfg.method}: {result['epochs_completed']} epochs, last: {json.dumps(last)}")
    if "test" in result:
        print(f"test ({result['data']}): {json.dumps(result['test'])}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
