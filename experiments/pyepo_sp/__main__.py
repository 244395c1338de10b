"""Command line of the PyEPO shortest-path benchmark.

Examples::

    python -m experiments.pyepo_sp                       # reference setting, 3 seeds, all methods,
                                                         # PyEPO's I-MLE too when installed
    python -m experiments.pyepo_sp --seeds 0-9 --methods imle_pyepo --pyepo torch
                                                         # more seeds for the paired comparison
    python -m experiments.pyepo_sp --tune                # I-MLE settings on the tuning seeds
    python -m experiments.pyepo_sp --smoke               # tiny data, two epochs (the test suite)

Each run (method, seed) is saved to ``--out`` (default ``outputs/pyepo_sp``) as
``runs/<method>/seed<k>.json`` when it completes, and reused by a later call with the same
configuration (``--fresh`` recomputes). The tables, figures and the JSON/CSV files are written
from every saved run of the chosen seeds; with ``--publish`` (the default for the reference
setting) they go to ``docs/results`` and ``docs/figures``, otherwise under ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from experiments.pyepo_sp import reference
from experiments.pyepo_sp import report as rep
from experiments.pyepo_sp.data import make_problem
from experiments.pyepo_sp.methods import METHODS, TUNING
from experiments.pyepo_sp.oracle import grid_oracle
from experiments.pyepo_sp.train import Config, count_solves, make_evaluate, run_method

REPO_ROOT = Path(__file__).resolve().parents[2]
PYEPO_RUNS = ("pyepo_torch", "pyepo_jax")
LABELS = {m.name: m.label for m in {**METHODS, **TUNING}.values()} | {
    "pyepo_torch": "PyEPO I-MLE (torch)",
    "pyepo_jax": "PyEPO I-MLE (JAX)",
}
TUNING_SEEDS = (100, 101, 102)
SMOKE = Config(num_train=64, num_test=32, epochs=2, batch_size=32)


def _seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return out


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m experiments.pyepo_sp",
        description="PyEPO's shortest-path benchmark with imlejax estimators, beside PyEPO.",
    )
    p.add_argument("--seeds", default=None, help="e.g. 0,1,2 or 0-9 (default 0-2)")
    p.add_argument(
        "--methods",
        default="all",
        help=f"comma-separated from {', '.join(METHODS)} (default all); 'none' for PyEPO only",
    )
    p.add_argument(
        "--pyepo",
        default="auto",
        help="PyEPO runs: auto (both when installed), torch, jax, torch,jax, or off",
    )
    p.add_argument(
        "--pyepo-solver",
        default="auto",
        choices=["auto", *reference.SOLVERS],
        help="PyEPO's solver (auto: OR-Tools if installed, else Gurobi)",
    )
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--tune", action="store_true", help="run the I-MLE tuning grid (TUNING)")
    p.add_argument("--smoke", action="store_true", help="64 training instances, two epochs")
    p.add_argument("--out", default=None, help="run folder (default outputs/pyepo_sp)")
    p.add_argument("--publish", default=None, choices=["yes", "no"], help="write into docs/")
    p.add_argument("--name", default=None, help="stem of the result files (default pyepo_sp)")
    p.add_argument("--fresh", action="store_true", help="recompute saved runs")
    p.add_argument("--no-count", action="store_true", help="skip counting the solver calls")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def _config_hash(cfg: Config, extra: dict) -> str:
    text = json.dumps({"cfg": dataclasses.asdict(cfg), **extra}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "machine": platform.machine()}
    for name in ("jax", "jaxlib", "optax", "numpy", "imlejax", "pyepo", "torch", "ortools"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    try:
        out["gurobipy"] = md.version("gurobipy")
    except md.PackageNotFoundError:
        pass
    out["cpus"] = os.cpu_count()
    return out


def _pick_solver(choice: str) -> str | None:
    if choice != "auto":
        return choice if reference.solver_available(choice) else None
    for solver in ("ortools", "gurobi"):
        if reference.solver_available(solver):
            return solver
    return None


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = SMOKE if args.smoke else Config()
    if args.epochs is not None:
        cfg = dataclasses.replace(cfg, epochs=args.epochs)
    if args.tune:
        table = TUNING
        seeds = _seeds(args.seeds) if args.seeds else list(TUNING_SEEDS)
        names = list(TUNING) if args.methods == "all" else args.methods.split(",")
        pyepo_runs: list[str] = []
    else:
        table = METHODS
        seeds = _seeds(args.seeds) if args.seeds else ([0] if args.smoke else [0, 1, 2])
        names = (
            list(METHODS)
            if args.methods == "all"
            else []
            if args.methods == "none"
            else args.methods.split(",")
        )
        pyepo_runs = _pyepo_runs(args)
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; choose from {', '.join(table)}")

    tmp = tempfile.TemporaryDirectory() if args.smoke and args.out is None else None
    out = Path(tmp.name) if tmp else Path(args.out or REPO_ROOT / "outputs" / "pyepo_sp")
    publish = args.publish == "yes" or (args.publish is None and not args.smoke)
    stem = args.name or ("pyepo_sp_tuning" if args.tune else "pyepo_sp")
    results_dir = REPO_ROOT / "docs" / "results" if publish else out
    figures_dir = REPO_ROOT / "docs" / "figures" if publish else out

    solver = _pick_solver(args.pyepo_solver) if pyepo_runs else None
    if pyepo_runs and solver is None:
        print("PyEPO runs skipped: neither ortools nor gurobipy is installed", file=sys.stderr)
        pyepo_runs = []
    sp = grid_oracle(cfg.grid)
    solve = jax.jit(jax.vmap(sp))
    evaluate_fn = make_evaluate(sp)
    optmodel = reference.make_optmodel(cfg.grid, solver) if solver else None
    load_start = os.getloadavg()

    records, label_checks, solves = [], {}, {}
    total = len(seeds) * (len(names) + len(pyepo_runs))
    bar = tqdm(total=total, desc="runs", disable=args.no_progress, position=0)
    for seed in seeds:
        problem = make_problem(seed, lambda c: np.asarray(solve(c)), **cfg.data_kwargs())
        if optmodel is not None:
            label_checks[seed] = _check_labels(optmodel, problem)

        def evaluate(c_hat, problem=problem):
            c_hat = jnp.asarray(c_hat, jnp.float32)
            return float(evaluate_fn(c_hat, problem.c_test, problem.z_test))

        jobs = [(n, None) for n in names] + [(n, solver) for n in pyepo_runs]
        for name, run_solver in jobs:
            path = out / "runs" / name / f"seed{seed}.json"
            tag = _config_hash(cfg, {"method": name, "seed": seed, "solver": run_solver})
            cached = _load(path, tag) if not args.fresh else None
            if cached is None:
                if name in PYEPO_RUNS:
                    run = (
                        reference.run_torch_imle
                        if name == "pyepo_torch"
                        else reference.run_jax_imle
                    )
                    record = run(
                        problem, cfg, seed, optmodel, evaluate, progress=not args.no_progress
                    )
                    record["solver"] = run_solver
                else:
                    method = table[name]
                    record = run_method(
                        method, sp, problem, cfg, seed, progress=not args.no_progress
                    )
                    record["solves_per_instance_step"] = list(method.solves)
                record["config_hash"] = tag
                record["loadavg_after"] = list(os.getloadavg())
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(record))
                cached = record
            records.append(cached)
            bar.update(1)
        if seed == seeds[0] and not args.no_count:
            for name in names:
                solves[name] = _count(table[name], sp, problem, cfg, seed, out, args.fresh)
    bar.close()
    for r in records:
        if r["method"] in solves:
            r["solves_per_epoch"] = solves[r["method"]]

    order = names + list(pyepo_runs)
    summary = rep.summarize(records, order)
    comparisons = {}
    if "imle_pyepo" in names:
        for ref_name in pyepo_runs:
            a = [r for r in records if r["method"] == "imle_pyepo"]
            b = [r for r in records if r["method"] == ref_name]
            comparisons[f"imle_pyepo vs {ref_name}"] = rep.compare_paired(a, b)
    speedups = _speedups(records, names)
    result = {
        "config": dataclasses.asdict(cfg),
        "seeds": seeds,
        "pyepo_solver": solver,
        "versions": _versions(),
        "loadavg": {"start": list(load_start), "end": list(os.getloadavg())},
        "label_checks": label_checks,
        "summary": summary,
        "comparisons": comparisons,
        "speedups_vs_pyepo_torch": speedups,
        "runs": [{k: v for k, v in r.items() if k != "params"} for r in records],
        "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{stem}.json").write_text(json.dumps(result, indent=1))
    rep.write_csv(results_dir / f"{stem}.csv", records)
    table_md = rep.markdown_table(summary, LABELS, "pyepo_torch" if pyepo_runs else None)
    (out / f"{stem}_table.md").parent.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}_table.md").write_text(table_md + "\n")
    if not args.tune:
        rep.plot_regret(figures_dir / f"{stem}_regret.png", records, order, LABELS)
        rep.plot_curves(figures_dir / f"{stem}_curves.png", records, order, LABELS)
    print(table_md)
    for k, v in comparisons.items():
        print(k, json.dumps(v))
    if tmp is not None:
        result["out"] = str(out)
        tmp.cleanup()
    return result


def _pyepo_runs(args) -> list[str]:
    choice = args.pyepo
    if choice == "off":
        return []
    reason = reference.available()
    if choice == "auto":
        if reason is not None:
            print(f"PyEPO runs skipped: {reason}", file=sys.stderr)
            return []
        return list(PYEPO_RUNS)
    runs = [f"pyepo_{part}" for part in choice.split(",")]
    bad = [r for r in runs if r not in PYEPO_RUNS]
    if bad:
        raise SystemExit(f"--pyepo must be auto, off, or a list of torch, jax; got {choice!r}")
    if reason is not None:
        raise SystemExit(f"--pyepo {choice}: {reason}")
    return runs


def _load(path: Path, tag: str) -> dict | None:
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    return record if record.get("config_hash") == tag else None


def _count(method, sp, problem, cfg, seed, out: Path, fresh: bool) -> int:
    """Solver calls of one epoch (:func:`count_solves`), saved beside the method's runs."""
    path = out / "runs" / method.name / "solves.json"
    tag = _config_hash(cfg, {"method": method.name, "seed": seed, "count": True})
    cached = None if fresh else _load(path, tag)
    if cached is None:
        cached = {"config_hash": tag, "seed": seed, "solves_per_epoch": 0}
        cached["solves_per_epoch"] = count_solves(method, sp, problem, cfg, seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(cached))
    return cached["solves_per_epoch"]


def _check_labels(optmodel, problem) -> dict:
    """Compares the benchmark oracle's optimal paths of the test set with PyEPO's solver."""
    sols, objs = reference.solve_all(optmodel, problem.c_test)
    z = problem.z_test.astype(np.float64)
    return {
        "instances": len(z),
        "max_abs_objective_diff": float(np.max(np.abs(objs - z))),
        "paths_differing": int(np.sum(np.any(np.abs(sols - problem.w_test) > 1e-6, axis=1))),
    }


def _speedups(records, names) -> dict:
    """Per method, the median over seeds of PyEPO torch's epoch time over the method's, seed by
    seed, with the median (``median``) and with the fastest (``min``) epoch of each run."""
    out = {}
    for stat in ("median", "min"):
        f = getattr(np, stat)
        ref = {r["seed"]: f(r["epoch_s"]) for r in records if r["method"] == "pyepo_torch"}
        for name in [*names, "pyepo_jax"]:
            ratios = [
                ref[r["seed"]] / f(r["epoch_s"])
                for r in records
                if r["method"] == name and r["seed"] in ref and r.get("epoch_s")
            ]
            if ratios:
                out.setdefault(name, {})[stat] = float(np.median(ratios))
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
