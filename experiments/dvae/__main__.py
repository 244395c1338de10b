"""Command line of the discrete VAE experiment.

Examples::

    python -m experiments.dvae                                  # the tf-notebook preset
    python -m experiments.dvae --preset aimle-readme            # the AIMLE README's command
    python -m experiments.dvae --temperature 1 --epochs 20      # tf-notebook at tau = 1
    python -m experiments.dvae --method aimle --init-beta 0     # override any preset setting
    python -m experiments.dvae --smoke                          # a few steps on a tiny file
    python -m experiments.dvae.report                           # figures and tables from runs/
    python -m experiments.dvae.profile                          # throughput of the train step

A preset (``--preset``, see :data:`experiments.dvae.configs.PRESETS`) fixes the method, the
temperature, the number of samples, AIMLE's initial beta, the reduction of the training loss
over samples and the initialisation; each flag overrides its preset value. Runs go to
``runs/dvae/<run name>/`` (``--out`` to change; the name is the preset, the method and the
overridden settings); running the same command again resumes from the last completed epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from experiments.dvae.configs import INITS, LOSS_REDUCTIONS, METHODS, PRESET_FIELDS, PRESETS
from experiments.dvae.data import ENV_VAR, REPO_ROOT, load_mnist, write_fake_mnist
from experiments.dvae.train import TrainConfig, train


def _samples(value: str) -> int:
    """``--samples``: a positive integer (presets without it draw one sample, no sample axis)."""
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"--samples must be >= 1; got {value}")
    return n


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.dvae",
        description="Discrete VAE on MNIST (20 groups, exactly 10 of 20) with imlejax estimators.",
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tf-notebook")
    parser.add_argument("--method", choices=sorted(METHODS), default=None)
    parser.add_argument("--temperature", type=float, default=None, help="noise temperature τ")
    parser.add_argument("--samples", type=_samples, default=None, help="samples S per example")
    parser.add_argument("--init-beta", type=float, default=None, help="AIMLE's initial β")
    parser.add_argument("--loss-reduction", choices=LOSS_REDUCTIONS, default=None)
    parser.add_argument("--init", choices=INITS, default=None, help="dense-layer initialisation")
    parser.add_argument(
        "--data",
        default=None,
        help=f"mnist.npz (default: ${ENV_VAR}, else ../shared/data/mnist/mnist.npz from the repo)",
    )
    parser.add_argument("--out", default=None, help="run folder (default runs/dvae/<run name>)")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
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


def overrides(args: argparse.Namespace) -> dict:
    """The preset settings given explicitly on the command line."""
    return {f: getattr(args, f) for f in PRESET_FIELDS if getattr(args, f) is not None}


def resolve_config(args: argparse.Namespace, **fixed) -> TrainConfig:
    """The run's configuration: the preset's settings, then the flags, then ``fixed``."""
    settings = {**PRESETS[args.preset], **overrides(args)}
    fields = dict(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        max_train=args.max_train,
        max_test=args.max_test,
    )
    return TrainConfig(**{**settings, **fields, "preset": args.preset, **fixed})


def run_name(args: argparse.Namespace) -> str:
    """``<preset>_<method>`` plus the overridden settings, e.g. ``tf-notebook_aimle_temperature1``."""
    preset = PRESETS[args.preset]
    method = args.method or preset["method"]
    extra = [
        f"{f}{getattr(args, f):g}"
        if isinstance(getattr(args, f), float)
        else f"{f}{getattr(args, f)}"
        for f in PRESET_FIELDS
        if f != "method" and getattr(args, f) is not None and getattr(args, f) != preset[f]
    ]
    if args.seed:
        extra.append(f"seed{args.seed}")
    return "_".join([args.preset, method, *extra])


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.smoke:
        with tempfile.TemporaryDirectory() as tmp:
            path = args.data or write_fake_mnist(Path(tmp) / "mnist.npz", 60, 20)
            cfg = resolve_config(args, epochs=2, batch_size=20, max_train=60, max_test=20)
            out = Path(args.out) if args.out else Path(tmp) / "run"
            result = train(cfg, load_mnist(path), out, progress=not args.no_progress)
            print(json.dumps(result["history"][-1], indent=1))
            return result
    cfg = resolve_config(args)
    out = Path(args.out) if args.out else REPO_ROOT / "runs" / "dvae" / run_name(args)
    result = train(
        cfg, load_mnist(args.data), out, progress=not args.no_progress, stop_after=args.stop_after
    )
    last = result["history"][-1] if result["history"] else {}
    print(f"{out.name}: {result['epochs_completed']} epochs, last: {json.dumps(last)}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
