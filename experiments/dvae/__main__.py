"""Command line of the discrete VAE experiment.

Examples::

    python -m experiments.dvae --method imle_sog_lam10            # train (or resume) 100 epochs
    python -m experiments.dvae --method aimle --epochs 20         # stop at epoch 20
    python -m experiments.dvae --smoke                            # a few steps on a tiny file
    python -m experiments.dvae.report                             # figures and tables from runs/
    python -m experiments.dvae.profile                            # throughput of the train step

Runs go to ``runs/dvae/<method>/`` (``--out`` to change); running the same command again resumes
from the last completed epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from experiments.dvae.configs import METHODS
from experiments.dvae.data import ENV_VAR, REPO_ROOT, load_mnist, write_fake_mnist
from experiments.dvae.train import TrainConfig, train


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.dvae",
        description="Discrete VAE on MNIST (20 groups, exactly 10 of 20) with imlejax estimators.",
    )
    parser.add_argument("--method", choices=sorted(METHODS), default="imle_sog_lam10")
    parser.add_argument(
        "--data",
        default=None,
        help=f"mnist.npz (default: ${ENV_VAR}, else ../shared/data/mnist/mnist.npz from the repo)",
    )
    parser.add_argument("--out", default=None, help="run folder (default runs/dvae/<method>)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=None, help="samples S per example")
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--max-test", type=int, default=None)
    parser.add_argument(
        "--stop-after", type=int, default=None, help="stop after this many epochs in this call"
    )
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="2 epochs of 3 steps on a tiny generated file (or --data), in a temporary folder",
    )
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            path = args.data or write_fake_mnist(Path(tmp) / "mnist.npz", 60, 20)
            cfg = TrainConfig(
                method=args.method,
                epochs=2,
                batch_size=20,
                seed=args.seed,
                samples=args.samples,
                max_train=60,
                max_test=20,
            )
            out = Path(args.out) if args.out else Path(tmp) / "run"
            result = train(cfg, load_mnist(path), out, progress=not args.no_progress)
            print(json.dumps(result["history"][-1], indent=1))
            return result
    cfg = TrainConfig(
        method=args.method,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        samples=args.samples,
        max_train=args.max_train,
        max_test=args.max_test,
    )
    out = Path(args.out) if args.out else REPO_ROOT / "runs" / "dvae" / args.method
    result = train(
        cfg, load_mnist(args.data), out, progress=not args.no_progress, stop_after=args.stop_after
    )
    last = result["history"][-1] if result["history"] else {}
    print(f"{args.method}: {result['epochs_completed']} epochs, last: {json.dumps(last)}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
