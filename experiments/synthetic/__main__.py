"""Command line of the synthetic experiments (appendix C.1 of the I-MLE paper, and beyond).

    python -m experiments.synthetic --smoke              # tiny grids (used by the tests)
    python -m experiments.synthetic                      # reduced grids, two to three minutes
    python -m experiments.synthetic --full               # the paper's configuration
    python -m experiments.synthetic --full --publish docs  # also copy figures/results into docs/

Stages (each saved to ``--out`` as ``synthetic_<stage>.json`` when it completes, and skipped on a
rerun with the same configuration unless ``--force``): ``imle`` (Figs. 5/6), ``ste_sfe`` (Fig. 8),
``runtime`` (Fig. 7), ``quality`` (gradient quality). Figures and CSV files are rewritten from the
saved results on every run.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import shutil
import time

import numpy as np
from scipy import stats
from tqdm import tqdm

from experiments.synthetic import estimators as est
from experiments.synthetic import plots, problem, quality, runtime, train

STAGES = ("imle", "ste_sfe", "runtime", "quality")


def _geom125(lo_exp: int, hi: float) -> list[float]:
    """1-2-5 sequence from 10**lo_exp up to hi."""
    out = []
    e = lo_exp
    while True:
        for d in (1, 2, 5):
            v = float(f"{d}e{e}")
            if v > hi * (1 + 1e-9):
                return out
            out.append(v)
        e += 1


def config(preset: str, seed: int) -> dict:
    """The configuration of a preset: ``smoke``, ``default`` or ``full``."""
    full = {
        "seed": seed,
        "m": 10,
        "k": 5,
        "theta0": "zeros",
        "momentum": train.MOMENTUM,
        "imle": {
            "lams": [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0],
            "lrs": _geom125(-3, 5.0),
            "runs": 100,
            "steps": 50,
        },
        "ste_sfe": {
            "ste_lrs": _geom125(-4, 5.0),
            "ste_runs": 100,
            "ste_steps": 50,
            "sfe_lrs": _geom125(-5, 0.5),
            "sfe_runs": 20,
            "sfe_steps": 500,
        },
        "runtime": {
            "enum_ms": list(range(2, 23, 2)),
            "dp_ms": [2**i for i in range(2, 14)],
            "pam_ms": [2**i for i in range(2, 13)],
            "pam_direct_ms": [2**i for i in range(2, 15)],
            "repeats": 10,
        },
        "quality": {
            "lams": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0],
            "sample_sizes": [1, 2, 5, 10, 20, 50, 100],
            "points": 8,
            "n": 20000,
            "check_lams": [1.0, 10.0],
            "check_estimators": None,
            "check_keys": 20000,
        },
    }
    if preset == "full":
        return full
    if preset == "default":
        cfg = json.loads(json.dumps(full))
        cfg["imle"].update(lams=[0.1, 1.0, 10.0, 100.0], lrs=_geom125(-2, 5.0)[::2], runs=20)
        cfg["ste_sfe"].update(
            ste_lrs=_geom125(-3, 5.0)[::2],
            ste_runs=20,
            sfe_lrs=_geom125(-4, 0.5)[::2],
            sfe_runs=5,
            sfe_steps=200,
        )
        cfg["runtime"].update(
            enum_ms=[4, 8, 12, 16],
            dp_ms=[16, 128, 1024],
            pam_ms=[16, 128, 1024],
            pam_direct_ms=[16, 1024],
            repeats=5,
        )
        cfg["quality"].update(
            points=2, n=2000, lams=[0.1, 1.0, 10.0], sample_sizes=[1, 10, 100], check_keys=2000
        )
        return cfg
    if preset == "smoke":
        cfg = json.loads(json.dumps(full))
        cfg["imle"].update(lams=[1.0, 10.0], lrs=[0.1, 1.0], runs=4, steps=5)
        cfg["ste_sfe"].update(
            ste_lrs=[0.1, 1.0],
            ste_runs=4,
            ste_steps=5,
            sfe_lrs=[0.01, 0.1],
            sfe_runs=2,
            sfe_steps=10,
        )
        cfg["runtime"].update(enum_ms=[6], dp_ms=[8], pam_ms=[8], pam_direct_ms=[8], repeats=2)
        cfg["quality"].update(
            points=1,
            n=64,
            lams=[1.0, 10.0],
            sample_sizes=[1, 2],
            check_estimators=["SFE"],
            check_keys=16,
        )
        return cfg
    raise ValueError(f"unknown preset {preset!r}")


# ----------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------


def stage_imle(pb, cfg: dict, seed: int) -> dict:
    """I-MLE over (lam, lr) with SoG and Gumbel noise, in both scalings of the estimate."""
    c = cfg["imle"]
    out = {"lams": c["lams"], "lrs": c["lrs"], "runs": c["runs"], "steps": c["steps"]}
    out["paper"], out["library"] = {}, {}
    for nm in est.NOISES:
        grad_fn = est.imle_gradient(pb, est.make_noise(nm, pb.k))
        runner = train.make_grid_runner(pb, grad_fn, c["steps"])
        for semantics, lr_times_lam in (("paper", True), ("library", False)):
            curves = train.run_grid(
                pb,
                grad_fn,
                c["lams"],
                c["lrs"],
                runs=c["runs"],
                steps=c["steps"],
                seed=seed,
                lr_times_lam=lr_times_lam,
                runner=runner,
                progress=lambda xs, s=semantics, n=nm: tqdm(
                    xs, desc=f"I-MLE {n} ({s})", unit="λ", leave=False
                ),
            )
            out[semantics][nm] = _summary(curves)
    return out


def stage_ste_sfe(pb, cfg: dict, seed: int) -> dict:
    """STE with SoG and Gumbel noise, and SFE, over learning rates."""
    c = cfg["ste_sfe"]
    out = dict(c)
    out["ste"] = {}
    for nm in tqdm(est.NOISES, desc="STE", leave=False):
        grad_fn = est.ste_gradient(pb, est.make_noise(nm, pb.k))
        curves = train.run_grid(
            pb, grad_fn, [1.0], c["ste_lrs"], runs=c["ste_runs"], steps=c["ste_steps"], seed=seed
        )[0]
        out["ste"][nm] = _summary(curves)
    curves = train.run_grid(
        pb,
        est.sfe_gradient(pb),
        [1.0],
        c["sfe_lrs"],
        runs=c["sfe_runs"],
        steps=c["sfe_steps"],
        seed=seed,
        progress=lambda xs: tqdm(xs, desc="SFE", leave=False),
    )[0]
    out["sfe"] = _summary(curves)
    return out


def stage_runtime(pb, cfg: dict, seed: int) -> dict:
    c = cfg["runtime"]
    return runtime.run_runtime(
        enum_ms=c["enum_ms"],
        dp_ms=c["dp_ms"],
        pam_ms=c["pam_ms"],
        pam_direct_ms=c["pam_direct_ms"],
        repeats=c["repeats"],
        seed=seed,
        progress=lambda xs: tqdm(xs, desc="runtime", unit="m", leave=False),
    )


def stage_quality(pb, cfg: dict, seed: int) -> dict:
    c = cfg["quality"]
    res = quality.run_quality(
        pb,
        lams=c["lams"],
        sample_sizes=c["sample_sizes"],
        points=c["points"],
        n=c["n"],
        seed=seed + 100,
        progress=lambda xs: tqdm(xs, desc="gradient quality", unit="θ", leave=False),
    )
    res["check_gradient"] = quality.run_check_gradient(
        pb,
        lams=c["check_lams"],
        num_keys=c["check_keys"],
        seed=seed + 100,
        points=c["points"],
        only=c["check_estimators"],
    )
    return res


def _summary(curves: np.ndarray) -> dict:
    s = train.summarise(curves)
    return {name: np.asarray(v).tolist() for name, v in s.items()}


# ----------------------------------------------------------------------------------------------
# Analysis, tables, figures
# ----------------------------------------------------------------------------------------------


def compare_noises(res: dict, semantics: str) -> dict:
    """Counts of (lam, lr) cells where SoG beats Gumbel, in mean and in std of the final loss.

    ``significant`` counts cells where the difference of means exceeds two standard errors
    (Welch), in either direction, and, for the standard deviations, cells where the two-sided
    F-test of equal variances rejects at the 5% level.
    """
    sog, gum = res[semantics]["sog"], res[semantics]["gumbel"]
    ms, mg = np.asarray(sog["final_mean"]), np.asarray(gum["final_mean"])
    ss, sg = np.asarray(sog["final_std"]), np.asarray(gum["final_std"])
    n = res["runs"]
    se = np.sqrt((ss**2 + sg**2) / n)
    diff = ms - mg
    ratio = ss**2 / np.maximum(sg**2, 1e-30)
    f_lo, f_hi = stats.f.ppf([0.025, 0.975], n - 1, n - 1)
    return {
        "cells": int(diff.size),
        "sog_lower_mean": int(np.sum(diff < 0)),
        "gumbel_lower_mean": int(np.sum(diff > 0)),
        "sog_lower_mean_significant": int(np.sum(diff < -2 * se)),
        "gumbel_lower_mean_significant": int(np.sum(diff > 2 * se)),
        "sog_lower_std": int(np.sum(ss < sg)),
        "gumbel_lower_std": int(np.sum(ss > sg)),
        "sog_lower_std_significant": int(np.sum(ratio < f_lo)),
        "gumbel_lower_std_significant": int(np.sum(ratio > f_hi)),
        "best_sog": _best(ms, ss, res),
        "best_gumbel": _best(mg, sg, res),
        "mean_diff_over_cells": float(diff.mean()),
    }


def _best(mean, std, res) -> dict:
    i, j = np.unravel_index(np.argmin(mean), mean.shape)
    return {
        "lam": res["lams"][i],
        "lr": res["lrs"][j],
        "mean": float(mean[i, j]),
        "std": float(std[i, j]),
    }


def write_csvs(out: pathlib.Path, results: dict) -> None:
    if "imle" in results:
        r = results["imle"]
        rows = []
        for sem in ("paper", "library"):
            for nm in est.NOISES:
                for i, lam in enumerate(r["lams"]):
                    for j, lr in enumerate(r["lrs"]):
                        cell = r[sem][nm]
                        rows.append(
                            _final_row(
                                {"scaling": sem, "noise": nm, "lam": lam, "lr": lr},
                                cell["final_mean"][i][j],
                                cell["final_std"][i][j],
                                r["runs"],
                                r["steps"],
                            )
                        )
        _write_csv(out / "synthetic_imle.csv", rows)
    if "ste_sfe" in results:
        r = results["ste_sfe"]
        rows = []
        for nm in est.NOISES:
            for j, lr in enumerate(r["ste_lrs"]):
                rows.append(
                    _final_row(
                        {"estimator": "ste", "noise": nm, "lr": lr},
                        r["ste"][nm]["final_mean"][j],
                        r["ste"][nm]["final_std"][j],
                        r["ste_runs"],
                        r["ste_steps"],
                    )
                )
        for j, lr in enumerate(r["sfe_lrs"]):
            rows.append(
                _final_row(
                    {"estimator": "sfe", "noise": "faithful", "lr": lr},
                    r["sfe"]["final_mean"][j],
                    r["sfe"]["final_std"][j],
                    r["sfe_runs"],
                    r["sfe_steps"],
                )
            )
        _write_csv(out / "synthetic_ste_sfe.csv", rows)
    if "runtime" in results:
        r = results["runtime"]
        rows = []
        for method in ("enumeration", "dp", "perturb_and_map", "perturb_and_map_direct"):
            for row in r[method]:
                rows.append(
                    {
                        "method": method,
                        **{
                            f: row.get(f, "")
                            for f in (
                                "m",
                                "k",
                                *(
                                    f"{w}_{s}"
                                    for w in ("exact", "sample")
                                    for s in ("mean", "std", "median", "min")
                                ),
                            )
                        },
                    }
                )
        _write_csv(out / "synthetic_runtime.csv", rows)
    if "quality" in results:
        r = results["quality"]
        rows = []
        for nm in est.NOISES:
            q = r["imle"][nm]
            for i, lam in enumerate(r["lams"]):
                for j, s in enumerate(r["sample_sizes"]):
                    rows.append(
                        {
                            "estimator": "imle",
                            "noise": nm,
                            "lam": lam,
                            "S": s,
                            "cosine": q["cosine"][i][j],
                            "rel_rmse": q["rel_rmse"][i][j],
                            "rel_bias": q["rel_bias"][i],
                            "bias_cosine": q["bias_cosine"][i],
                            "scale": q["scale"][i],
                            "noise_floor": q["noise_floor"][i],
                        }
                    )
            for name in ("ste", "aimle"):
                q = r[name][nm]
                for j, s in enumerate(r["sample_sizes"]):
                    per_s = name == "aimle"
                    rows.append(
                        {
                            "estimator": name,
                            "noise": nm,
                            "lam": "",
                            "S": s,
                            "cosine": q["cosine"][j],
                            "rel_rmse": q["rel_rmse"][j],
                            "rel_bias": q["rel_bias"][j] if per_s else q["rel_bias"],
                            "bias_cosine": q["bias_cosine"][j] if per_s else q["bias_cosine"],
                            "scale": q["scale"][j] if per_s else q["scale"],
                            "noise_floor": q["noise_floor"][j] if per_s else q["noise_floor"],
                        }
                    )
        q = r["sfe"]
        for j, s in enumerate(r["sample_sizes"]):
            rows.append(
                {
                    "estimator": "sfe",
                    "noise": "faithful",
                    "lam": "",
                    "S": s,
                    "cosine": q["cosine"][j],
                    "rel_rmse": q["rel_rmse"][j],
                    "rel_bias": q["rel_bias"],
                    "bias_cosine": q["bias_cosine"],
                    "scale": q["scale"],
                    "noise_floor": q["noise_floor"],
                }
            )
        _write_csv(out / "synthetic_quality.csv", rows)


def _final_row(fields, mean, std, runs, steps):
    """One CSV row: the cell's identifying ``fields`` and its final-loss statistics."""
    return {**fields, "final_mean": mean, "final_std": std, "runs": runs, "steps": steps}


def _write_csv(path: pathlib.Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def make_figures(out: pathlib.Path, results: dict, pb) -> list[pathlib.Path]:
    paths = []
    if "imle" in results:
        r = results["imle"]
        for sem, tag in (("paper", ""), ("library", "_library")):
            note = (
                "paper scaling: gradient MAP(θ+ε) − MAP(θ'+ε), optimiser lr = lr·λ on the "
                "library estimate"
                if sem == "paper"
                else "library scaling: gradient [MAP(θ+ε) − MAP(θ'+ε)] / λ, optimiser lr = lr"
            )
            for quantity, key, fig in (
                ("mean final L", "final_mean", "fig5_mean"),
                ("std of final L", "final_std", "fig6_std"),
            ):
                path = out / f"synthetic_{fig}{tag}.png"
                plots.heatmap_triplet(
                    path,
                    np.asarray(r[sem]["sog"][key]),
                    np.asarray(r[sem]["gumbel"][key]),
                    r["lams"],
                    r["lrs"],
                    quantity,
                    f"{quantity} after {r['steps']} SGD steps (momentum 0.9), {r['runs']} runs "
                    f"per cell; {note}",
                )
                paths.append(path)
        path = out / "synthetic_curves.png"
        curves = {}
        for nm in est.NOISES:
            mean = np.asarray(r["paper"][nm]["final_mean"])
            i, j = np.unravel_index(np.argmin(mean), mean.shape)
            curves[f"I-MLE {nm}, best cell λ={r['lams'][i]:g}, lr={r['lrs'][j]:g}"] = np.asarray(
                r["paper"][nm]["curve_mean"]
            )[i, j]
        if "ste_sfe" in results:
            s = results["ste_sfe"]
            for nm in est.NOISES:
                mean = np.asarray(s["ste"][nm]["final_mean"])
                j = int(np.argmin(mean))
                curves[f"STE {nm}, best lr={s['ste_lrs'][j]:g}"] = np.asarray(
                    s["ste"][nm]["curve_mean"]
                )[j]
        plots.curves_figure(
            path,
            curves,
            f"Mean exact L over {r['runs']} runs at the best cells "
            f"(min_z ||z − b||² = {pb.loss_min:.3f})",
        )
        paths.append(path)
    if "ste_sfe" in results:
        path = out / "synthetic_fig8_ste_sfe.png"
        plots.ste_sfe_figure(path, results["ste_sfe"], pb.loss_min)
        paths.append(path)
    if "runtime" in results:
        path = out / "synthetic_fig7_runtime.png"
        plots.runtime_figure(path, results["runtime"])
        paths.append(path)
    if "quality" in results:
        path = out / "synthetic_quality.png"
        plots.quality_figure(path, results["quality"], lam_ref=1.0)
        paths.append(path)
    return paths


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    preset = parser.add_mutually_exclusive_group()
    preset.add_argument("--smoke", action="store_true", help="tiny grids (the tests' run)")
    preset.add_argument("--full", action="store_true", help="the paper's configuration")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("outputs/synthetic"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--force", action="store_true", help="recompute completed stages")
    parser.add_argument(
        "--publish",
        type=pathlib.Path,
        default=None,
        help="docs folder: copy figures to DIR/figures and results to DIR/results",
    )
    args = parser.parse_args(argv)

    name = "smoke" if args.smoke else "full" if args.full else "default"
    cfg = config(name, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    pb = problem.make_problem(cfg["m"], cfg["k"], seed=args.seed)
    start = time.perf_counter()
    fns = {
        "imle": stage_imle,
        "ste_sfe": stage_ste_sfe,
        "runtime": stage_runtime,
        "quality": stage_quality,
    }
    results, walls, skipped = {}, {}, []
    for stage in tqdm(args.stages, desc=f"synthetic ({name})", unit="stage"):
        path = args.out / f"synthetic_{stage}.json"
        stage_cfg = {
            "preset": name,
            "seed": args.seed,
            "theta0": cfg["theta0"],
            "momentum": cfg["momentum"],
            **cfg[stage],
        }
        if path.exists() and not args.force:
            saved = json.loads(path.read_text())
            if saved.get("config") == stage_cfg:
                results[stage] = saved["results"]
                walls[stage] = saved["wall_seconds"]
                skipped.append(stage)
                continue
        t0 = time.perf_counter()
        res = fns[stage](pb, cfg, args.seed)
        walls[stage] = time.perf_counter() - t0
        results[stage] = res
        path.write_text(
            json.dumps({"config": stage_cfg, "wall_seconds": walls[stage], "results": res})
        )

    summary = {
        "preset": name,
        "problem": problem.describe(pb),
        "stage_wall_seconds": walls,
        "skipped_stages": skipped,
        "wall_seconds_this_run": time.perf_counter() - start,
    }
    if "imle" in results:
        summary["sog_vs_gumbel"] = {
            sem: compare_noises(results["imle"], sem) for sem in ("paper", "library")
        }
    if "ste_sfe" in results:
        r = results["ste_sfe"]
        summary["ste_best"] = {}
        for nm in est.NOISES:
            mean = np.asarray(r["ste"][nm]["final_mean"])
            j = int(np.argmin(mean))
            summary["ste_best"][nm] = {
                "lr": r["ste_lrs"][j],
                "mean": float(mean[j]),
                "std": r["ste"][nm]["final_std"][j],
            }
        mean = np.asarray(r["sfe"]["final_mean"])
        j = int(np.argmin(mean))
        summary["sfe_best"] = {
            "lr": r["sfe_lrs"][j],
            "mean": float(mean[j]),
            "std": r["sfe"]["final_std"][j],
        }
    write_csvs(args.out, results)
    figures = make_figures(args.out, results, pb)
    (args.out / "synthetic_summary.json").write_text(json.dumps(summary, indent=2))
    if args.publish is not None:
        (args.publish / "figures").mkdir(parents=True, exist_ok=True)
        (args.publish / "results").mkdir(parents=True, exist_ok=True)
        for fig in figures:
            shutil.copy2(fig, args.publish / "figures" / fig.name)
        for res in sorted(args.out.glob("synthetic_*.json")) + sorted(
            args.out.glob("synthetic_*.csv")
        ):
            shutil.copy2(res, args.publish / "results" / res.name)
    print(
        json.dumps(
            {
                k: summary[k]
                for k in ("preset", "stage_wall_seconds", "skipped_stages", "wall_seconds_this_run")
            },
            indent=1,
        )
    )
    if "sog_vs_gumbel" in summary:
        for sem, c in summary["sog_vs_gumbel"].items():
            print(
                f"[{sem} scaling] SoG lower mean in {c['sog_lower_mean']}/{c['cells']} cells "
                f"({c['sog_lower_mean_significant']} significant; Gumbel significantly lower in "
                f"{c['gumbel_lower_mean_significant']}), lower std in "
                f"{c['sog_lower_std']}/{c['cells']} ({c['sog_lower_std_significant']} significant; "
                f"Gumbel significantly lower in {c['gumbel_lower_std_significant']})"
            )
    print(f"wrote {args.out}")
    return summary


if __name__ == "__main__":
    main()
