"""Throughput of the jitted train step, and the share of noise sampling and oracle calls.

``python -m experiments.dvae.profile [--steps 60] [--repeats 5] [--out FILE.json]`` times
``--steps`` train steps of I-MLE (SoG, lambda=10) run in one ``lax.scan`` (as in training), for
``S = 1`` and ``S = 10`` samples (best of ``--repeats`` timings, the variants timed in turn), and
the same step with

* ``noise=None``: the same oracle calls without noise sampling,
* an estimator that returns ``theta`` itself: neither noise nor oracle (the rest of the step),

plus the noise sampler and the oracle timed alone on arrays of the step's shape. The shares are
``(full - no_noise) / full`` (noise sampling) and ``(no_noise - no_oracle) / full`` (the two
oracle calls, forward and backward, with their custom-VJP plumbing), and from the isolated timings
``2 * noise / full`` (the noise is drawn in the forward pass and regenerated from the key in the
backward pass) and ``2 * oracle / full``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import imlejax as ij
from experiments.dvae.configs import GROUPS, SOG_TAU, Built, K, M, Method
from experiments.dvae.train import Estimators, TrainConfig, init_state, run_epoch, with_estimator

BATCH = 100


def _identity(samples):
    def est(key, theta, *args):
        return theta if samples is None else jnp.broadcast_to(theta, (samples, *theta.shape))

    return est


def variants(samples):
    lam = ij.pid(10.0)
    return {
        "full": Built(
            ij.imle(ij.top_k(K), noise=ij.sog(K, tau=SOG_TAU), target=lam, samples=samples),
            ij.top_k(K),
        ),
        "no_noise": Built(
            ij.imle(ij.top_k(K), noise=None, target=lam, samples=samples), ij.top_k(K)
        ),
        "no_oracle": Built(_identity(samples), ij.top_k(K)),
    }


def _best_time(fn, repeats):
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def prepare_train_steps(built: Built, samples, x, steps: int):
    """A compiled closure running ``steps`` train steps in one ``lax.scan``."""
    method = Method("profile", "profile", "profile", lambda s, t: built)
    cfg = TrainConfig(method="imle_sog_lam10", samples=samples)
    graphdef, state = init_state(cfg, Estimators(method, samples))
    graphdef = with_estimator(graphdef, state, built)
    perm = jnp.arange(steps * BATCH, dtype=jnp.int32)
    holder = {"state": state}

    def once():
        new_state, losses = run_epoch(graphdef, holder["state"], x, perm, BATCH)
        holder["state"] = new_state
        return losses

    jax.block_until_ready(once())  # compile
    return once


def time_interleaved(fns: dict, repeats: int) -> dict:
    """Best time of each closure, the closures timed in turn ``repeats`` times (fair under load)."""
    best = dict.fromkeys(fns, np.inf)
    for _ in range(repeats):
        for name, fn in fns.items():
            best[name] = min(best[name], _best_time(fn, 1))
    return best


def time_alone(samples, repeats: int, calls: int = 200) -> dict:
    """Noise sampling and one oracle call on the step's shape, each in a jitted loop."""
    shape = (samples or 1, BATCH, GROUPS, M)
    noise = ij.sog(K, tau=SOG_TAU)
    oracle = ij.top_k(K)

    @jax.jit
    def sample_loop(key):
        def body(i, acc):
            return acc + noise.sample(jax.random.fold_in(key, i), shape)

        return jax.lax.fori_loop(0, calls, body, jnp.zeros(shape))

    @jax.jit
    def oracle_loop(theta):
        def body(i, acc):
            return acc + oracle(theta + i.astype(theta.dtype) * 1e-3)

        return jax.lax.fori_loop(0, calls, body, jnp.zeros(shape))

    key = jax.random.key(0)
    theta = jax.random.normal(key, shape)
    sample_loop(key), oracle_loop(theta)
    return {
        "noise_sample_s": _best_time(lambda: sample_loop(key), repeats) / calls,
        "oracle_call_s": _best_time(lambda: oracle_loop(theta), repeats) / calls,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m experiments.dvae.profile")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    x = jax.random.uniform(jax.random.key(0), (args.steps * BATCH, 784))
    result = {
        "device": str(jax.devices()[0]),
        "platform": platform.processor() or platform.machine(),
        "batch": BATCH,
        "steps_per_timing": args.steps,
        "results": {},
    }
    for samples in (None, 10):
        s = samples or 1
        fns = {
            name: prepare_train_steps(built, samples, x, args.steps)
            for name, built in variants(samples).items()
        }
        times = time_interleaved(fns, args.repeats)
        row = {f"step_s_{name}": t / args.steps for name, t in times.items()}
        row.update(time_alone(samples, args.repeats))
        full = row["step_s_full"]
        row["examples_per_s"] = BATCH / full
        row["share_noise"] = (full - row["step_s_no_noise"]) / full
        row["share_oracle"] = (row["step_s_no_noise"] - row["step_s_no_oracle"]) / full
        row["share_noise_alone"] = 2 * row["noise_sample_s"] / full
        row["share_oracle_alone"] = 2 * row["oracle_call_s"] / full
        result["results"][f"S={s}"] = row
        print(f"S={s}: " + ", ".join(f"{k}={v:.4g}" for k, v in row.items()), flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
