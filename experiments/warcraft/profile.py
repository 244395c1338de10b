"""Seconds per training step and per epoch, split into model and solver time.

For each grid size ``K`` and method, on one batch of generated maps (or ``--data``):

* ``step_s``: the whole jitted train step (network forward and backward with batch norm, the
  estimator's oracle calls forward and backward, the Adam update);
* ``solver_s``: the jitted estimator alone on the batch's vertex costs (the same oracle calls:
  forward sample(s) and, in the backward pass, the target's solve(s), with the Hamming loss's
  upstream gradient), i.e. what the step spends in the solver;
* ``model_s``: the jitted network forward and backward alone (a linear loss of its output, no
  solver);
* ``predict_s``: one evaluation call (network in evaluation mode and one solve) on
  ``eval_batch`` maps.

Each number is the median of ``--repeats`` timed calls after a compiling call. The epoch time
is estimated as ``steps_per_epoch * step_s + (n_val / eval_batch) * predict_s`` for the paper's
10000 training and 1000 validation maps. ``solver_share = solver_s / step_s``.

Usage::

    python -m experiments.warcraft.profile --sizes 12 18 24 30 --methods blackbox imle-mumu
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
from flax import nnx

from experiments.warcraft.configs import METHODS
from experiments.warcraft.data import REPO_ROOT, channel_stats, load_warcraft
from experiments.warcraft.generate import generate
from experiments.warcraft.train import TrainConfig, Trainer


def _median_time(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def profile_one(data, method: str, batch: int, eval_batch: int, repeats: int) -> dict:
    """Timings of one method on the first ``batch`` training maps of ``data``."""
    k = data.k
    cfg = TrainConfig(method=method, k=k, batch_size=batch, eval_batch=eval_batch)
    mean, std = channel_stats(data.train.maps)
    trainer = Trainer(cfg, mean, std, data.train.n)
    maps = jnp.asarray(data.train.maps[:batch])
    paths = jnp.asarray(data.train.paths[:batch])
    state = trainer.initial_state()

    def step():
        nonlocal state
        state, m = trainer.step(state, maps, paths, jnp.int32(0))
        return m

    step_s = _median_time(step, repeats)

    w = jax.block_until_ready(trainer.costs(state, maps))
    if trainer.built.kind == "direct":
        solver_s = 0.0
    else:
        key = jax.random.key(0)
        aimle = state["aimle"]
        solve = jax.jit(jax.grad(lambda w: trainer._loss(w, paths, key, aimle)[0]))
        solver_s = _median_time(lambda: solve(w), repeats)

    model = nnx.merge(trainer.train_def, state["params"], state["other"])
    weight = jax.random.normal(jax.random.key(1), w.shape)

    @nnx.jit
    def model_grad(model):
        return nnx.grad(lambda m: jnp.sum(m(maps) * weight))(model)

    model_s = _median_time(lambda: model_grad(model), repeats)
    eval_maps = jnp.asarray(data.train.maps[:eval_batch])
    predict_s = _median_time(lambda: trainer.predict(state, eval_maps), repeats)
    steps = 10000 // 70
    epoch_s = steps * step_s + (1000 / eval_batch) * predict_s
    return dict(
        k=k,
        method=method,
        batch=batch,
        step_s=step_s,
        solver_s=solver_s,
        model_s=model_s,
        predict_s=predict_s,
        eval_batch=eval_batch,
        solver_share=solver_s / step_s,
        epoch_s_estimate=epoch_s,
        steps_per_epoch=steps,
    )


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m experiments.warcraft.profile")
    parser.add_argument("--sizes", type=int, nargs="+", default=[12, 18, 24, 30])
    parser.add_argument("--methods", nargs="+", default=["blackbox", "imle-mumu"])
    parser.add_argument("--data", default=None, help="data folder (default: generated maps)")
    parser.add_argument("--batch", type=int, default=70)
    parser.add_argument("--eval-batch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--out", default=str(REPO_ROOT / "docs" / "results" / "warcraft_speed.json")
    )
    args = parser.parse_args(argv)
    for m in args.methods:
        if m not in METHODS:
            parser.error(f"unknown method {m!r}; choose from {sorted(METHODS)}")
    out = Path(args.out)
    payload = json.loads(out.read_text()) if out.is_file() else {"rows": []}
    payload.update(
        device=str(jax.devices()[0]),
        cpu_count=os.cpu_count(),
        note="generated stand-in maps; shared machine, medians of repeated timed calls",
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        n = max(args.batch, args.eval_batch)
        root = args.data
        if root is None:
            root = generate(tmp, sizes=args.sizes, n_train=n, n_val=1, n_test=1, seed=11)
        for k in args.sizes:
            data = load_warcraft(root, k, max_train=n, max_val=1, max_test=1)
            for method in args.methods:
                row = profile_one(data, method, args.batch, args.eval_batch, args.repeats)
                row.update(repeats=args.repeats, load_average=os.getloadavg()[0])
                rows.append(row)
                print(
                    f"{k}x{k} {method}: step {row['step_s']:.3f} s, solver {row['solver_s']:.3f} s"
                    f" ({100 * row['solver_share']:.1f} %), model {row['model_s']:.3f} s, "
                    f"epoch ~{row['epoch_s_estimate']:.0f} s",
                    flush=True,
                )
                # keep earlier rows of other (K, method) pairs; write after every row
                keep = [r for r in payload["rows"] if (r["k"], r["method"]) != (k, method)]
                payload["rows"] = sorted(keep + [row], key=lambda r: (r["k"], r["method"]))
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(json.dumps(payload, indent=1))
    return rows


if __name__ == "__main__":
    main(sys.argv[1:])
