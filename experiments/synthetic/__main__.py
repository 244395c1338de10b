"""Command line of the synthetic experiments (appendix C.1 of the I-MLE paper, and beyond).

    python -m experiments.synthetic --preset reference        # the authors' SYNTH/main.py setting
    python -m experiments.synthetic --preset library          # zeros, b ~ N(0, I), wide grids
    python -m experiments.synthetic --preset smoke            # tiny grids (used by the tests)
    python -m experiments.synthetic --preset smoke-reference  # the same, reference setting
    python -m experiments.synthetic --preset reference --publish docs   # copy into docs/

Presets (:func:`config`): ``reference`` reproduces the configuration of the authors' code for
Figs. 5-8 (``theta_0`` and ``b = |.|`` from ``RandomState(0)``, their grids, the unscaled I-MLE
estimate, the optimality gap recorded before each update with their rule for negative gaps, 100
runs per cell); ``library`` is the configuration this experiment used before (``theta_0 = 0``,
``b ~ N(0, I)`` from ``jax.random.key(0)``, wide 1-2-5 grids, ``L`` after the last update);
``default`` is ``library`` on reduced grids, ``smoke`` and ``smoke-reference`` are ``library``
and ``reference`` on tiny grids. ``--theta0``, ``--b`` and
``--grid`` change one setting of a preset.

Stages (each saved to ``--out`` as ``synthetic_<stage>.json`` when it completes, and skipped on a
rerun with the same configuration unless ``--force``): ``imle`` (Figs. 5/6), ``ste_sfe`` (Fig. 8),
``curves`` (Fig. 3 of the paper: I-MLE, STE and SFE at chosen cells), ``ablation`` (the claims
with ``theta_0``, ``b`` and the grid switched between the two presets, all 8 combinations),
``runtime`` (Fig. 7), ``quality`` (gradient quality). Figures and CSV files are rewritten from the
saved results on every run.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import pathlib
import shutil
import time

import numpy as np
from scipy import stats
from tqdm import tqdm

from experiments.synthetic import estimators as est
from experiments.synthetic import plots, problem, quality, runtime, train

STAGES = ("imle", "ste_sfe", "curves", "ablation", "runtime", "quality")
PRESETS = ("reference", "library", "default", "smoke", "smoke-reference")
GRID_NAMES = ("reference", "library")
ALPHA = 0.05


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


def _logspace(lo: float, hi: float, num: int) -> list[float]:
    """``exp(linspace(log lo, log hi, num))``, as the authors' code writes its grids."""
    return np.exp(np.linspace(np.log(lo), np.log(hi), num=num)).tolist()


def grids(name: str) -> dict:
    """The learning-rate and step grids of the two configurations."""
    if name == "reference":
        return {
            "imle": {
                "lams": np.linspace(0.5, 3.0, num=6).tolist(),
                "lrs": np.linspace(0.5, 1.0, num=5).tolist(),
            },
            "ste_sfe": {"ste_lrs": _logspace(1e-3, 0.2, 10), "sfe_lrs": _logspace(1e-4, 0.1, 10)},
        }
    if name == "library":
        return {
            "imle": {
                "lams": [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0],
                "lrs": _geom125(-3, 5.0),
            },
            "ste_sfe": {"ste_lrs": _geom125(-4, 5.0), "sfe_lrs": _geom125(-5, 0.5)},
        }
    raise ValueError(f"grid must be one of {GRID_NAMES}; got {name!r}.")


def config(preset: str, seed: int = 0, **changes) -> dict:
    """The configuration of a preset, with ``theta0``, ``b`` or ``grid`` changed by ``changes``.

    Fields: ``theta0`` (``"reference"`` or ``"zeros"``), ``b`` (``"reference"`` or
    ``"library"``), ``grid`` (``"reference"`` or ``"library"``, see :func:`grids`), ``record``
    (``"before_update"``: the final value is ``L`` before the last update, as the authors' code
    records it; ``"after_update"``: after it), ``negative_gap_rule`` (replace a negative final
    gap by ``5 - min L`` as the authors' code does), ``scalings`` of the I-MLE estimate
    (``"paper"``: not divided by ``lambda``, i.e. learning rate ``lr * lambda`` on the library's
    estimate; ``"library"``: divided), and one block per stage.
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {PRESETS}; got {preset!r}.")
    base = "reference" if preset.endswith("reference") else "library"
    cfg: dict = {
        "preset": preset,
        "seed": seed,
        "m": 10,
        "k": 5,
        "momentum": train.MOMENTUM,
        "theta0": "reference" if base == "reference" else "zeros",
        "b": base,
        "grid": base,
        "record": "before_update" if base == "reference" else "after_update",
        "negative_gap_rule": True,
        "dpi": 130,
        "scalings": ["paper"] if base == "reference" else ["paper", "library"],
        "imle": {"runs": 100, "steps": 50},
        "ste_sfe": {"ste_runs": 100, "ste_steps": 50, "sfe_runs": 20, "sfe_steps": 500},
        "curves": (
            {
                "imle": {"noise": "sog", "lam": 2.0, "lr": 0.75, "runs": 100, "steps": 50},
                "ste": {"noise": "gumbel", "lr": 0.019, "runs": 100, "steps": 50},
                "sfe": {"lr": 0.0046, "runs": 20, "steps": 500},
            }
            if base == "reference"
            else "best"
        ),
        "ablation": {},
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
        "stages": (
            ["imle", "ste_sfe", "curves", "ablation"]
            if base == "reference"
            else ["imle", "ste_sfe", "curves", "ablation", "runtime", "quality"]
        ),
    }
    for name in ("theta0", "b", "grid"):
        if changes.get(name) is not None:
            cfg[name] = changes[name]
    problem.make_theta0(cfg["theta0"]), problem.make_b(cfg["b"])  # validate
    g = grids(cfg["grid"])
    cfg["imle"].update(g["imle"])
    cfg["ste_sfe"].update(g["ste_sfe"])
    cfg["ablation"]["grids"] = {n: grids(n) for n in GRID_NAMES}
    if preset == "default":
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
        cfg["stages"] = ["imle", "ste_sfe", "curves", "runtime", "quality"]
    if preset.startswith("smoke"):
        cfg["dpi"] = 40
        cfg["imle"].update(lams=[1.0, 10.0], lrs=[0.1, 1.0], runs=4, steps=5)
        cfg["ste_sfe"].update(
            ste_lrs=[0.1, 1.0],
            ste_runs=4,
            ste_steps=5,
            sfe_lrs=[0.01, 0.1],
            sfe_runs=4,
            sfe_steps=5,
        )
        cfg["ablation"]["grids"] = {
            n: {
                "imle": {"lams": [1.0, 10.0], "lrs": [0.1 * (1 + i), 1.0]},
                "ste_sfe": {"ste_lrs": [0.1, 1.0 + i], "sfe_lrs": [0.01, 0.1 + i]},
            }
            for i, n in enumerate(GRID_NAMES)
        }
        cfg["runtime"].update(enum_ms=[6], dp_ms=[8], pam_ms=[8], pam_direct_ms=[8], repeats=2)
        cfg["quality"].update(
            points=1,
            n=64,
            lams=[1.0, 10.0],
            sample_sizes=[1, 2],
            check_estimators=["SFE"],
            check_keys=16,
        )
        if base == "reference":
            for c in cfg["curves"].values():
                c.update(runs=4, steps=5)
        cfg["stages"] = ["imle", "ste_sfe", "curves", "ablation"]
    # SFE is compared with I-MLE at I-MLE's final step.
    cfg["ablation"]["compare_at"] = final_step(cfg, cfg["imle"]["steps"])
    return cfg


def final_step(cfg: dict, steps: int) -> int:
    """The step whose ``L`` is the final value: ``steps - 1`` (before the last update) or ``steps``."""
    return steps - 1 if cfg["record"] == "before_update" else steps


# ----------------------------------------------------------------------------------------------
# Running grids
# ----------------------------------------------------------------------------------------------


class Context:
    """The instance of a configuration: the problem (with its ``b``), ``theta_0`` and the seed."""

    def __init__(self, cfg: dict, theta0: str | None = None, b: str | None = None):
        self.cfg = cfg
        self.theta0_kind = theta0 or cfg["theta0"]
        self.b_kind = b or cfg["b"]
        self.seed = cfg["seed"]
        self.pb = problem.make_problem(cfg["m"], cfg["k"], b=problem.make_b(self.b_kind, cfg["m"]))
        self.theta0 = problem.make_theta0(self.theta0_kind, cfg["m"])

    def gaps(self, kind, noise, lams, lrs, *, runs, steps, lr_times_lam=False, desc=None):
        """Optimality gaps of every cell, ``(n_lam, n_lr, runs, final + 1)``, and the rule count."""
        runner = train.grid_runner(self.pb, kind, noise, steps)
        progress = None if desc is None else (lambda xs: tqdm(xs, desc=desc, leave=False))
        curves = train.run_grid(
            self.pb,
            None,
            lams,
            lrs,
            runs=runs,
            steps=steps,
            seed=self.seed,
            theta0=self.theta0,
            lr_times_lam=lr_times_lam,
            runner=runner,
            progress=progress,
        )
        gaps, negative = train.optimality_gap(curves, self.pb.loss_min, final_step(self.cfg, steps))
        if not self.cfg["negative_gap_rule"]:
            gaps = curves[..., : final_step(self.cfg, steps) + 1] - self.pb.loss_min
        return gaps, negative


def _summary(gaps: np.ndarray, negative: int, curves: bool = True) -> dict:
    s = train.summarise(gaps)
    out = {"negative_gaps": negative, "final": gaps[..., -1].tolist()}
    for name, v in s.items():
        if curves or not name.startswith("curve"):
            out[name] = np.asarray(v).tolist()
    return out


def run_imle_grid(ctx: Context, c: dict, scalings, *, curves=True, desc="I-MLE") -> dict:
    out = {}
    for sem in scalings:
        out[sem] = {}
        for nm in est.NOISES:
            gaps, negative = ctx.gaps(
                "imle",
                nm,
                c["lams"],
                c["lrs"],
                runs=c["runs"],
                steps=c["steps"],
                lr_times_lam=sem == "paper",
                desc=f"{desc} {nm} ({sem})",
            )
            out[sem][nm] = _summary(gaps, negative, curves)
    return out


def run_ste_sfe_grid(ctx: Context, c: dict, *, keep: int | None = None) -> dict:
    """STE (both noises) and SFE over their learning rates; ``keep``: also the stats at that step."""
    out: dict = {"ste": {}}
    for nm in est.NOISES:
        gaps, negative = ctx.gaps(
            "ste", nm, [1.0], c["ste_lrs"], runs=c["ste_runs"], steps=c["ste_steps"]
        )
        out["ste"][nm] = _summary(gaps[0], negative, keep is None)
    gaps, negative = ctx.gaps(
        "sfe", None, [1.0], c["sfe_lrs"], runs=c["sfe_runs"], steps=c["sfe_steps"], desc="SFE"
    )
    out["sfe"] = _summary(gaps[0], negative, keep is None)
    if keep is not None:
        at = gaps[0][..., min(keep, gaps.shape[-1] - 1)]
        out["sfe"][f"mean_at_{keep}"] = at.mean(-1).tolist()
        out["sfe"][f"std_at_{keep}"] = at.std(-1, ddof=1).tolist()
    return out


# ----------------------------------------------------------------------------------------------
# Stages
# ----------------------------------------------------------------------------------------------


def stage_imle(ctx: Context) -> dict:
    """I-MLE over (lam, lr) with SoG and Gumbel noise, in the configured scalings."""
    c = ctx.cfg["imle"]
    out = {"lams": c["lams"], "lrs": c["lrs"], "runs": c["runs"], "steps": c["steps"]}
    out.update(run_imle_grid(ctx, c, ctx.cfg["scalings"]))
    for sem in ctx.cfg["scalings"]:
        out[f"compare_{sem}"] = compare_noises(out[sem]["sog"], out[sem]["gumbel"])
    return out


def stage_ste_sfe(ctx: Context) -> dict:
    """STE with SoG and Gumbel noise, and SFE, over learning rates."""
    c = ctx.cfg["ste_sfe"]
    return {**c, **run_ste_sfe_grid(ctx, c)}


def stage_curves(ctx: Context, results: dict) -> dict:
    """Mean and std of the gap per step at chosen cells (the authors' quoted cells, or the best).

    A chosen cell runs as a row of the grid's width (the cell's learning rate repeated), so that
    the grid's compiled runner is reused; the first column is kept.
    """
    c = ctx.cfg["curves"]
    if c == "best":
        return best_cells(results)
    width = {
        "imle": len(ctx.cfg["imle"]["lrs"]),
        "ste": len(ctx.cfg["ste_sfe"]["ste_lrs"]),
        "sfe": len(ctx.cfg["ste_sfe"]["sfe_lrs"]),
    }
    out = {}
    for kind in ("imle", "ste", "sfe"):
        cell = c[kind]
        gaps, neg = ctx.gaps(
            kind,
            cell.get("noise"),
            [cell.get("lam", 1.0)],
            [cell["lr"]] * width[kind],
            runs=cell["runs"],
            steps=cell["steps"],
            lr_times_lam=kind == "imle",
        )
        out[kind] = {**cell, **_summary(gaps[0, 0], neg // width[kind])}
    return out


def best_cells(results: dict) -> dict:
    """The best cells of the ``imle`` (paper scaling) and ``ste_sfe`` grids, with their curves."""
    out = {}
    if "imle" in results:
        r = results["imle"]
        for nm in est.NOISES:
            mean = np.asarray(r["paper"][nm]["final_mean"])
            i, j = np.unravel_index(np.argmin(mean), mean.shape)
            out[f"imle_{nm}"] = {
                "noise": nm,
                "lam": r["lams"][i],
                "lr": r["lrs"][j],
                "runs": r["runs"],
                "steps": r["steps"],
                "curve_mean": r["paper"][nm]["curve_mean"][i][j],
                "curve_std": r["paper"][nm]["curve_std"][i][j],
            }
    if "ste_sfe" in results:
        r = results["ste_sfe"]
        for nm in est.NOISES:
            j = int(np.argmin(r["ste"][nm]["final_mean"]))
            out[f"ste_{nm}"] = {
                "noise": nm,
                "lr": r["ste_lrs"][j],
                "runs": r["ste_runs"],
                "steps": r["ste_steps"],
                "curve_mean": r["ste"][nm]["curve_mean"][j],
                "curve_std": r["ste"][nm]["curve_std"][j],
            }
        j = int(np.argmin(r["sfe"]["final_mean"]))
        out["sfe"] = {
            "lr": r["sfe_lrs"][j],
            "runs": r["sfe_runs"],
            "steps": r["sfe_steps"],
            "curve_mean": r["sfe"]["curve_mean"][j],
            "curve_std": r["sfe"]["curve_std"][j],
        }
    return out


def stage_ablation(ctx: Context) -> dict:
    """The four claims for every combination of ``theta_0``, ``b`` and grid (paper scaling)."""
    cfg = ctx.cfg
    a = cfg["ablation"]
    rows = []
    combos = list(itertools.product(problem.THETA0S, problem.BS, GRID_NAMES))
    for theta0, b, grid in tqdm(combos, desc="ablation", leave=False):
        sub = Context(cfg, theta0=theta0, b=b)
        g = a["grids"][grid]
        imle_c = {**cfg["imle"], **g["imle"]}
        ste_c = {**cfg["ste_sfe"], **g["ste_sfe"]}
        imle = run_imle_grid(sub, imle_c, ["paper"], curves=False, desc=f"{theta0}/{b}/{grid}")
        imle = {"lams": imle_c["lams"], "lrs": imle_c["lrs"], "runs": imle_c["runs"], **imle}
        ste_sfe = {**ste_c, **run_ste_sfe_grid(sub, ste_c, keep=a["compare_at"])}
        cmp = compare_noises(imle["paper"]["sog"], imle["paper"]["gumbel"])
        rows.append(
            {
                "theta0": theta0,
                "b": b,
                "grid": grid,
                "loss_min": sub.pb.loss_min,
                "compare": cmp,
                "claims": claims(imle, ste_sfe, cmp, compare_at=a["compare_at"]),
                "negative_gaps": sum(imle["paper"][nm]["negative_gaps"] for nm in est.NOISES),
                "imle": {
                    nm: {k: imle["paper"][nm][k] for k in ("final_mean", "final_std")}
                    for nm in est.NOISES
                },
            }
        )
    return {"rows": rows}


def stage_runtime(ctx: Context) -> dict:
    c = ctx.cfg["runtime"]
    return runtime.run_runtime(
        enum_ms=c["enum_ms"],
        dp_ms=c["dp_ms"],
        pam_ms=c["pam_ms"],
        pam_direct_ms=c["pam_direct_ms"],
        repeats=c["repeats"],
        seed=ctx.seed,
        progress=lambda xs: tqdm(xs, desc="runtime", unit="m", leave=False),
    )


def stage_quality(ctx: Context) -> dict:
    c = ctx.cfg["quality"]
    res = quality.run_quality(
        ctx.pb,
        lams=c["lams"],
        sample_sizes=c["sample_sizes"],
        points=c["points"],
        n=c["n"],
        seed=ctx.seed + 100,
        progress=lambda xs: tqdm(xs, desc="gradient quality", unit="θ", leave=False),
    )
    res["check_gradient"] = quality.run_check_gradient(
        ctx.pb,
        lams=c["check_lams"],
        num_keys=c["check_keys"],
        seed=ctx.seed + 100,
        points=c["points"],
        only=c["check_estimators"],
    )
    return res


def stage_config(cfg: dict, stage: str) -> dict:
    """What a stage's results depend on (a saved stage is reused when this matches)."""
    common = {"seed": cfg["seed"]}
    if stage == "runtime":
        return {**common, **cfg["runtime"]}
    if stage == "quality":
        return {**common, "b": cfg["b"], **cfg["quality"]}
    problem_cfg = {
        **common,
        **{f: cfg[f] for f in ("theta0", "b", "record", "negative_gap_rule", "momentum")},
    }
    if stage == "imle":
        return {**problem_cfg, "scalings": cfg["scalings"], **cfg["imle"]}
    if stage == "ste_sfe":
        return {**problem_cfg, **cfg["ste_sfe"]}
    if stage == "curves":
        return {**problem_cfg, "curves": cfg["curves"], "imle": cfg["imle"], **cfg["ste_sfe"]}
    if stage == "ablation":
        return {
            **common,
            **{f: cfg[f] for f in ("record", "negative_gap_rule", "momentum")},
            "imle": {k: cfg["imle"][k] for k in ("runs", "steps")},
            "ste_sfe": {k: v for k, v in cfg["ste_sfe"].items() if k.endswith(("runs", "steps"))},
            **cfg["ablation"],
        }
    raise ValueError(f"unknown stage {stage!r}")


def rounded(tree, digits: int = 6):
    """``tree`` with its floats rounded to ``digits`` decimals (the saved results' precision)."""
    if isinstance(tree, float):
        return round(tree, digits)
    if isinstance(tree, dict):
        return {k: rounded(v, digits) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [rounded(v, digits) for v in tree]
    return tree


def _matches(saved: dict, wanted: dict) -> bool:
    """The saved configuration holds every wanted field with the wanted value."""
    return all(k in saved and saved[k] == v for k, v in wanted.items())


# ----------------------------------------------------------------------------------------------
# Analysis
# ----------------------------------------------------------------------------------------------


def compare_noises(sog: dict, gum: dict) -> dict:
    """Counts of (lam, lr) cells where SoG beats Gumbel, in mean and in std of the final gap.

    Per cell, over the runs: Welch's two-sided t-test of equal means and the Brown-Forsythe test
    of equal variances (Levene's test about the medians, robust to the skewed, often bimodal
    final gaps), each at the 5% level. A cell where both samples are constant has no test (it
    counts as not significant). With ``C`` cells and no true difference, about ``0.05 C`` cells
    per direction pair would be flagged by chance.
    """
    fs, fg = np.asarray(sog["final"]), np.asarray(gum["final"])
    ms, mg = fs.mean(-1), fg.mean(-1)
    ss, sg = fs.std(-1, ddof=1), fg.std(-1, ddof=1)
    p_mean = np.ones(ms.shape)
    p_var = np.ones(ms.shape)
    for idx in np.ndindex(ms.shape):
        a, b = fs[idx], fg[idx]
        if np.ptp(a) == 0 and np.ptp(b) == 0:
            continue
        p_mean[idx] = stats.ttest_ind(a, b, equal_var=False).pvalue
        if np.ptp(a) > 0 or np.ptp(b) > 0:
            p_var[idx] = stats.levene(a, b, center="median").pvalue
    p_mean = np.nan_to_num(p_mean, nan=1.0)
    p_var = np.nan_to_num(p_var, nan=1.0)
    sig_m, sig_v = p_mean < ALPHA, p_var < ALPHA
    return {
        "cells": int(ms.size),
        "test_mean": "Welch t-test, two-sided, 5%",
        "test_std": "Brown-Forsythe (Levene about the median), two-sided, 5%",
        "sog_lower_mean": int(np.sum(ms < mg)),
        "gumbel_lower_mean": int(np.sum(ms > mg)),
        "sog_lower_mean_significant": int(np.sum((ms < mg) & sig_m)),
        "gumbel_lower_mean_significant": int(np.sum((ms > mg) & sig_m)),
        "sog_lower_std": int(np.sum(ss < sg)),
        "gumbel_lower_std": int(np.sum(ss > sg)),
        "sog_lower_std_significant": int(np.sum((ss < sg) & sig_v)),
        "gumbel_lower_std_significant": int(np.sum((ss > sg) & sig_v)),
        "mean_diff_over_cells": float((ms - mg).mean()),
        "p_mean": p_mean.tolist(),
        "p_std": p_var.tolist(),
    }


def _best(mean, std, lams, lrs) -> dict:
    mean = np.asarray(mean)
    i, j = np.unravel_index(np.argmin(mean), mean.shape)
    return {"lam": lams[i], "lr": lrs[j], "mean": float(mean[i, j]), "std": float(std[i][j])}


def _welch(m1, s1, n1, m2, s2, n2) -> float:
    """Two-sided p-value of Welch's test from summary statistics (1 when both are constant)."""
    if s1 == 0 and s2 == 0:
        return 1.0 if m1 == m2 else 0.0
    return float(stats.ttest_ind_from_stats(m1, s1, n1, m2, s2, n2, equal_var=False).pvalue)


def claims(imle: dict, ste_sfe: dict, cmp: dict, compare_at: int = 50) -> dict:
    """The paper's four qualitative claims on one configuration's grids (paper scaling).

    * ``sog_lower_loss``: SoG has the lower mean final gap in more than half of the cells;
    * ``sog_lower_variance``: SoG has the lower standard deviation in more than half of them;
    * ``ste_worse``: the best STE cell (over both noises and the learning rates) has a higher
      mean final gap than the best I-MLE cell (over both noises and the grid), by Welch's test;
    * ``sfe_slower``: after ``compare_at`` steps SFE (at its best learning rate for that step)
      is further from the optimum than I-MLE's best cell after its ``compare_at`` steps, by
      Welch's test; SFE's gap after all its steps is reported beside it.
    """
    cells = cmp["cells"]
    best_imle = min(
        (
            {
                "noise": nm,
                **_best(
                    imle["paper"][nm]["final_mean"],
                    imle["paper"][nm]["final_std"],
                    imle["lams"],
                    imle["lrs"],
                ),
            }
            for nm in est.NOISES
        ),
        key=lambda r: r["mean"],
    )
    n_imle = imle["runs"]
    best_ste = min(
        (
            {
                "noise": nm,
                "lr": ste_sfe["ste_lrs"][j],
                "mean": float(ste_sfe["ste"][nm]["final_mean"][j]),
                "std": float(ste_sfe["ste"][nm]["final_std"][j]),
            }
            for nm in est.NOISES
            for j in [int(np.argmin(ste_sfe["ste"][nm]["final_mean"]))]
        ),
        key=lambda r: r["mean"],
    )
    sfe = ste_sfe["sfe"]
    if f"mean_at_{compare_at}" in sfe:
        at_mean, at_std = sfe[f"mean_at_{compare_at}"], sfe[f"std_at_{compare_at}"]
    else:
        step = min(compare_at, len(sfe["curve_mean"][0]) - 1)
        at_mean = [c[step] for c in sfe["curve_mean"]]
        at_std = [c[step] for c in sfe["curve_std"]]
    j = int(np.argmin(at_mean))
    jf = int(np.argmin(sfe["final_mean"]))
    p_ste = _welch(
        best_ste["mean"],
        best_ste["std"],
        ste_sfe["ste_runs"],
        best_imle["mean"],
        best_imle["std"],
        n_imle,
    )
    p_sfe = _welch(
        at_mean[j], at_std[j], ste_sfe["sfe_runs"], best_imle["mean"], best_imle["std"], n_imle
    )
    return {
        "sog_lower_loss": {
            "holds": cmp["sog_lower_mean"] > cells / 2,
            "sog_lower": cmp["sog_lower_mean"],
            "significant": cmp["sog_lower_mean_significant"],
            "gumbel_significant": cmp["gumbel_lower_mean_significant"],
            "cells": cells,
        },
        "sog_lower_variance": {
            "holds": cmp["sog_lower_std"] > cells / 2,
            "sog_lower": cmp["sog_lower_std"],
            "significant": cmp["sog_lower_std_significant"],
            "gumbel_significant": cmp["gumbel_lower_std_significant"],
            "cells": cells,
        },
        "ste_worse": {
            "holds": bool(best_ste["mean"] > best_imle["mean"] and p_ste < ALPHA),
            "best_imle": best_imle,
            "best_ste": best_ste,
            "p": p_ste,
        },
        "sfe_slower": {
            "holds": bool(at_mean[j] > best_imle["mean"] and p_sfe < ALPHA),
            "step": compare_at,
            "sfe_at_step": {"lr": ste_sfe["sfe_lrs"][j], "mean": at_mean[j], "std": at_std[j]},
            "sfe_final": {
                "lr": ste_sfe["sfe_lrs"][jf],
                "mean": float(sfe["final_mean"][jf]),
                "std": float(sfe["final_std"][jf]),
                "steps": ste_sfe["sfe_steps"],
            },
            "best_imle": best_imle,
            "p": p_sfe,
        },
    }


# ----------------------------------------------------------------------------------------------
# Tables and figures
# ----------------------------------------------------------------------------------------------


def write_csvs(out: pathlib.Path, results: dict) -> None:
    if "imle" in results:
        r = results["imle"]
        rows = []
        for sem in (s for s in ("paper", "library") if s in r):
            cmp = r[f"compare_{sem}"]
            for nm in est.NOISES:
                cell = r[sem][nm]
                for i, lam in enumerate(r["lams"]):
                    for j, lr in enumerate(r["lrs"]):
                        rows.append(
                            _final_row(
                                {"scaling": sem, "noise": nm, "lam": lam, "lr": lr},
                                cell["final_mean"][i][j],
                                cell["final_std"][i][j],
                                r["runs"],
                                r["steps"],
                                p_mean=cmp["p_mean"][i][j],
                                p_std=cmp["p_std"][i][j],
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
    if "ablation" in results:
        rows = []
        for row in results["ablation"]["rows"]:
            c = row["claims"]
            rows.append(
                {
                    "theta0": row["theta0"],
                    "b": row["b"],
                    "grid": row["grid"],
                    "cells": c["sog_lower_loss"]["cells"],
                    "sog_lower_mean": c["sog_lower_loss"]["sog_lower"],
                    "sog_lower_mean_significant": c["sog_lower_loss"]["significant"],
                    "gumbel_lower_mean_significant": c["sog_lower_loss"]["gumbel_significant"],
                    "sog_lower_std": c["sog_lower_variance"]["sog_lower"],
                    "sog_lower_std_significant": c["sog_lower_variance"]["significant"],
                    "gumbel_lower_std_significant": c["sog_lower_variance"]["gumbel_significant"],
                    "best_imle_gap": c["ste_worse"]["best_imle"]["mean"],
                    "best_ste_gap": c["ste_worse"]["best_ste"]["mean"],
                    "ste_worse": c["ste_worse"]["holds"],
                    "sfe_gap_at_step": c["sfe_slower"]["sfe_at_step"]["mean"],
                    "sfe_final_gap": c["sfe_slower"]["sfe_final"]["mean"],
                    "sfe_slower": c["sfe_slower"]["holds"],
                    "negative_gaps": row["negative_gaps"],
                }
            )
        _write_csv(out / "synthetic_ablation.csv", rows)
    if "runtime" in results:
        r = results["runtime"]
        rows = []
        fields = (
            "m",
            "k",
            *(f"{w}_{s}" for w in ("exact", "sample") for s in ("mean", "std", "median", "min")),
        )
        for method in ("enumeration", "dp", "perturb_and_map", "perturb_and_map_direct"):
            for row in r[method]:
                rows.append({"method": method, **{f: row.get(f, "") for f in fields}})
        _write_csv(out / "synthetic_runtime.csv", rows)
    if "quality" in results:
        _write_csv(out / "synthetic_quality.csv", quality_rows(results["quality"]))


def quality_rows(r: dict) -> list[dict]:
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
            per_s = name == "aimle"
            for j, s in enumerate(r["sample_sizes"]):
                rows.append(
                    {
                        "estimator": name,
                        "noise": nm,
                        "lam": "",
                        "S": s,
                        "cosine": q["cosine"][j],
                        "rel_rmse": q["rel_rmse"][j],
                        **{
                            f: q[f][j] if per_s else q[f]
                            for f in ("rel_bias", "bias_cosine", "scale", "noise_floor")
                        },
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
                **{f: q[f] for f in ("rel_bias", "bias_cosine", "scale", "noise_floor")},
            }
        )
    return rows


def _final_row(fields, mean, std, runs, steps, **extra):
    """One CSV row: the cell's identifying ``fields`` and its final-gap statistics."""
    return {
        **fields,
        "final_gap_mean": mean,
        "final_gap_std": std,
        "runs": runs,
        "steps": steps,
        **extra,
    }


def _write_csv(path: pathlib.Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _setting(cfg: dict) -> str:
    return (
        f"θ₀ = {cfg['theta0']}, b = {cfg['b']}, grid = {cfg['grid']}, "
        f"final gap {'before' if cfg['record'] == 'before_update' else 'after'} the last update"
    )


def make_figures(out: pathlib.Path, results: dict, cfg: dict, pb) -> list[pathlib.Path]:
    paths = []
    plots.configure(dpi=cfg["dpi"], tight=not cfg["preset"].startswith("smoke"))
    setting = _setting(cfg)
    if "imle" in results:
        r = results["imle"]
        for sem in (s for s in ("paper", "library") if s in r):
            tag = "" if sem == "paper" else "_library_scaling"
            note = (
                "I-MLE estimate MAP(θ+ε) − MAP(θ'+ε), not divided by λ"
                if sem == "paper"
                else "I-MLE estimate divided by λ, learning rate lr"
            )
            for quantity, key, fig in (
                ("mean final gap", "final_mean", "fig5_mean"),
                ("std of final gap", "final_std", "fig6_std"),
            ):
                path = out / f"synthetic_{fig}{tag}.png"
                plots.heatmap_triplet(
                    path,
                    np.asarray(r[sem]["sog"][key]),
                    np.asarray(r[sem]["gumbel"][key]),
                    r["lams"],
                    r["lrs"],
                    quantity,
                    f"{quantity} L(θ) − min L after {r['steps']} SGD steps (momentum 0.9), "
                    f"{r['runs']} runs per cell; {note}\n{setting}",
                    p_values=np.asarray(
                        r[f"compare_{sem}"]["p_mean" if key == "final_mean" else "p_std"]
                    ),
                )
                paths.append(path)
    if "ste_sfe" in results:
        path = out / "synthetic_fig8_ste_sfe.png"
        plots.ste_sfe_figure(path, results["ste_sfe"], setting)
        paths.append(path)
    if "curves" in results and results["curves"]:
        path = out / "synthetic_fig3_curves.png"
        plots.curves_figure(
            path,
            results["curves"],
            f"Mean ± std of the optimality gap per step; {setting}",
        )
        paths.append(path)
    if "ablation" in results:
        path = out / "synthetic_ablation.png"
        plots.ablation_figure(path, results["ablation"]["rows"])
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


def summarise(cfg: dict, ctx: Context, results: dict) -> dict:
    summary: dict = {
        "preset": cfg["preset"],
        "setting": {f: cfg[f] for f in ("theta0", "b", "grid", "record", "negative_gap_rule")},
        "problem": problem.describe(ctx.pb, ctx.theta0),
    }
    if "imle" in results:
        r = results["imle"]
        summary["sog_vs_gumbel"] = {}
        for sem in (s for s in ("paper", "library") if s in r):
            c = {k: v for k, v in r[f"compare_{sem}"].items() if not k.startswith("p_")}
            for nm in est.NOISES:
                c[f"best_{nm}"] = _best(
                    r[sem][nm]["final_mean"], r[sem][nm]["final_std"], r["lams"], r["lrs"]
                )
                c[f"negative_gaps_{nm}"] = r[sem][nm]["negative_gaps"]
            summary["sog_vs_gumbel"][sem] = c
    if "imle" in results and "ste_sfe" in results:
        summary["claims"] = claims(
            results["imle"],
            results["ste_sfe"],
            results["imle"]["compare_paper"],
            compare_at=cfg["ablation"]["compare_at"],
        )
    if "ste_sfe" in results:
        r = results["ste_sfe"]
        summary["negative_gaps_ste_sfe"] = {
            "ste_" + nm: r["ste"][nm]["negative_gaps"] for nm in est.NOISES
        } | {"sfe": r["sfe"]["negative_gaps"]}
    if "curves" in results:
        summary["curves"] = {
            name: {
                **{k: v for k, v in c.items() if not k.startswith(("curve", "final"))},
                "final_mean": c["curve_mean"][-1],
                "final_std": c["curve_std"][-1],
                "gap_at_50_mean": c["curve_mean"][min(50, len(c["curve_mean"]) - 1)],
            }
            for name, c in results["curves"].items()
        }
    if "ablation" in results:
        summary["ablation"] = [
            {
                **{k: row[k] for k in ("theta0", "b", "grid", "loss_min", "negative_gaps")},
                "holds": {name: c["holds"] for name, c in row["claims"].items()},
            }
            for row in results["ablation"]["rows"]
        ]
    return summary


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, default="default")
    parser.add_argument("--smoke", action="store_true", help="same as --preset smoke")
    parser.add_argument("--full", action="store_true", help="same as --preset library")
    parser.add_argument("--theta0", choices=problem.THETA0S, default=None)
    parser.add_argument("--b", choices=problem.BS, default=None)
    parser.add_argument("--grid", choices=GRID_NAMES, default=None)
    parser.add_argument("--out", type=pathlib.Path, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=None)
    parser.add_argument("--force", action="store_true", help="recompute completed stages")
    parser.add_argument("--no-figures", action="store_true", help="write no figures")
    parser.add_argument(
        "--publish",
        type=pathlib.Path,
        default=None,
        help="docs folder: copy figures to DIR/figures and results to DIR/results, "
        "named synthetic_<preset>_*",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.preset = "smoke"
    if args.full:
        args.preset = "library"
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = config(args.preset, args.seed, theta0=args.theta0, b=args.b, grid=args.grid)
    name = cfg["preset"] + "".join(
        f"_{f}-{cfg[f]}"
        for f in ("theta0", "b", "grid")
        if getattr(args, f) is not None and getattr(args, f) != config(args.preset)[f]
    )
    out = args.out or pathlib.Path("outputs/synthetic") / name
    out.mkdir(parents=True, exist_ok=True)
    ctx = Context(cfg)
    stages = args.stages or cfg["stages"]
    fns = {
        "imle": stage_imle,
        "ste_sfe": stage_ste_sfe,
        "ablation": stage_ablation,
        "runtime": stage_runtime,
        "quality": stage_quality,
    }
    start = time.perf_counter()
    results, walls, skipped = {}, {}, []
    for stage in tqdm(stages, desc=f"synthetic ({name})", unit="stage"):
        path = out / f"synthetic_{stage}.json"
        stage_cfg = stage_config(cfg, stage)
        if path.exists() and not args.force:
            saved = json.loads(path.read_text())
            if _matches(saved.get("config", {}), stage_cfg):
                results[stage] = saved["results"]
                walls[stage] = saved["wall_seconds"]
                skipped.append(stage)
                continue
        t0 = time.perf_counter()
        res = stage_curves(ctx, results) if stage == "curves" else fns[stage](ctx)
        walls[stage] = time.perf_counter() - t0
        results[stage] = res
        path.write_text(
            json.dumps({"config": stage_cfg, "wall_seconds": walls[stage], "results": rounded(res)})
        )

    summary = summarise(cfg, ctx, results)
    summary.update(
        run=name,
        stage_wall_seconds=walls,
        skipped_stages=skipped,
        wall_seconds_this_run=time.perf_counter() - start,
    )
    write_csvs(out, results)
    figures = [] if args.no_figures else make_figures(out, results, cfg, ctx.pb)
    (out / "synthetic_summary.json").write_text(json.dumps(summary, indent=2))
    if args.publish is not None:
        (args.publish / "figures").mkdir(parents=True, exist_ok=True)
        (args.publish / "results").mkdir(parents=True, exist_ok=True)
        for fig in figures:
            shutil.copy2(
                fig,
                args.publish / "figures" / fig.name.replace("synthetic_", f"synthetic_{name}_", 1),
            )
        for res in sorted(out.glob("synthetic_*.json")) + sorted(out.glob("synthetic_*.csv")):
            shutil.copy2(
                res,
                args.publish / "results" / res.name.replace("synthetic_", f"synthetic_{name}_", 1),
            )
    print(
        json.dumps(
            {k: summary[k] for k in ("run", "stage_wall_seconds", "skipped_stages")}, indent=1
        )
    )
    for sem, c in summary.get("sog_vs_gumbel", {}).items():
        print(
            f"[{sem} scaling] SoG lower mean in {c['sog_lower_mean']}/{c['cells']} cells "
            f"({c['sog_lower_mean_significant']} significant; Gumbel significantly lower in "
            f"{c['gumbel_lower_mean_significant']}), lower std in "
            f"{c['sog_lower_std']}/{c['cells']} ({c['sog_lower_std_significant']} significant; "
            f"Gumbel significantly lower in {c['gumbel_lower_std_significant']})"
        )
    for claim, c in summary.get("claims", {}).items():
        print(f"claim {claim}: {'holds' if c['holds'] else 'does not hold'}")
    print(f"wrote {out}")
    return summary


if __name__ == "__main__":
    main()
