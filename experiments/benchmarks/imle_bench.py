"""Cost of the I-MLE transform over the bare work it must do, measured in one run.

Problem: top-k oracle (or argmax), a batch of B instances via ``jax.vmap``, m items, k selected,
S samples, ``pid(10.0)`` target, loss ``sum(z * w)``.

* forward ratio  = jitted forward  / (S oracle calls + one noise draw)
* gradient ratio = jitted gradient / (2S oracle calls + one noise draw)
* sampling ratio = SoG draw / Gumbel draw of the same shape

The bare oracle calls solve exactly the inputs the transform solves (``theta + eps_s`` forward,
``theta - lam * w_s + eps_s`` backward; checked before timing), because the cost of XLA's CPU
``TopK`` kernel depends on the data: it is reported on ``S`` identical copies of ``theta`` too.

Compile times are reported separately; run times are medians over ``--repeats`` rounds, in each
of which every function runs once; ratios are taken within each round and reported as the median
and quartiles over the rounds.

    python -m experiments.benchmarks.imle_bench [--batch 1000 --m 400 --k 10 --samples 10]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

import imlejax as ij


def compile_all(fns):
    """Compiles every ``(fn, args)``; returns ``{name: (compiled, args, compile seconds)}``."""
    out = {}
    for name, (fn, args) in fns.items():
        start = time.perf_counter()
        # A fresh wrapper per row, so that rows sharing a function each pay their own compile.
        compiled = jax.jit(lambda *a, fn=fn: fn(*a)).lower(*args).compile()
        out[name] = (compiled, args, time.perf_counter() - start)
        jax.block_until_ready(compiled(*args))
    return out


def time_interleaved(compiled, repeats, slow=()):
    """Run seconds of each compiled function in every round, ``[{name: seconds}]``. The functions
    are timed in turn in every round, so that load changes on the machine affect all of them
    alike. Functions in ``slow`` run every 4th round."""
    rounds = []
    for r in range(repeats):
        times = {}
        for name, (fn, args, _) in compiled.items():
            if name in slow and r % 4:
                continue
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[name] = time.perf_counter() - start
        rounds.append(times)
    return rounds


def per_round(rounds, ratio):
    """``ratio(times)`` in every round that timed all its functions: median and quartiles."""
    values = []
    for times in rounds:
        try:
            values.append(ratio(times))
        except KeyError:
            continue
    return tuple(float(q) for q in np.percentile(values, [50, 25, 75]))


def build(batch, m, k, samples, noise_name="sog", oracle_name="top_k", lam=10.0):
    """The timed functions and their arguments, ``{name: (fn, args)}``."""
    key = jax.random.key(0)
    theta = jax.random.normal(key, (batch, m))
    w = jax.random.normal(jax.random.key(1), (batch, samples, m))
    keys = jax.random.split(jax.random.key(2), batch)
    oracle = ij.top_k(k) if oracle_name == "top_k" else ij.argmax()
    nk = k if oracle_name == "top_k" else 1
    noise = make_noise(noise_name, nk)
    sampler = ij.imle(oracle, noise=noise, target=ij.pid(lam), samples=samples)

    def bare_oracle(thetas):  # (B, S, m): B*S oracle calls
        return jax.vmap(jax.vmap(oracle))(thetas)

    def bare_oracle_2s(thetas, thetas2):
        return bare_oracle(thetas), bare_oracle(thetas2)

    def draw(kind, method="table"):
        nz = make_noise(kind, nk, method)
        return lambda keys: jax.vmap(lambda kk: nz.sample(kk, (samples, m)))(keys)

    def forward(keys, theta):
        return jax.vmap(sampler)(keys, theta)

    def gradient(keys, theta, w):
        return jax.grad(lambda t: jnp.sum(jax.vmap(sampler)(keys, t) * w))(theta)

    # The oracle inputs the transform solves: theta + eps_s forward and, since the upstream
    # gradient of sum(z * w) is w, theta - lam * w_s + eps_s backward, with the same noise.
    eps = jax.jit(draw(noise_name))(keys)
    perturbed = theta[:, None, :] + eps
    targets = theta[:, None, :] - lam * w + eps
    small = keys[:10]
    fns = {
        "oracle_S": (bare_oracle, (perturbed,)),
        "oracle_2S": (bare_oracle_2s, (perturbed, targets)),
        "noise_sog": (draw("sog"), (keys,)),
        "noise_gumbel": (draw("gumbel"), (keys,)),
        "forward": (forward, (keys, theta)),
        "gradient": (gradient, (keys, theta, w)),
        # The oracle on S identical copies of theta per instance: XLA's CPU TopK kernel is
        # data-dependent and runs faster on repeated rows than on the perturbed ones.
        "oracle_S_copies": (bare_oracle, (jnp.broadcast_to(theta[:, None, :], w.shape) + 0.0,)),
        # The direct reference sampler sums `terms` gamma draws; it is timed on a (100, m) slab.
        "oracle_small": (bare_oracle, (perturbed[:10],)),
        "noise_sog_small": (draw("sog"), (small,)),
        "noise_gumbel_small": (draw("gumbel"), (small,)),
        "noise_sog_direct_small": (draw("sog", "direct"), (small,)),
    }
    return fns


def run(batch, m, k, samples, repeats, noise_name="sog", oracle_name="top_k", lam=10.0):
    fns = build(batch, m, k, samples, noise_name, oracle_name, lam)
    compiled = compile_all(fns)
    check_baseline(*(compiled[n][0] for n in ("oracle_S", "forward", "gradient")), fns, lam)
    rounds = time_interleaved(compiled, repeats, slow=("noise_sog_direct_small",))
    res = {
        name: (compiled[name][2], float(np.median([t[name] for t in rounds if name in t])))
        for name in compiled
    }
    noise = "noise_sog" if noise_name == "sog" else "noise_gumbel"
    # Each ratio is taken within a round, from functions timed one after the other, and
    # summarised by its median and quartiles over the rounds.
    ratio_fns = {
        "forward / (S oracle + noise)": lambda t: t["forward"] / (t["oracle_S"] + t[noise]),
        "gradient / (2S oracle + noise)": lambda t: t["gradient"] / (t["oracle_2S"] + t[noise]),
        "SoG (table) / Gumbel sampling": lambda t: t["noise_sog"] / t["noise_gumbel"],
        "SoG (table) / Gumbel, (100, m) slab": lambda t: (
            t["noise_sog_small"] / t["noise_gumbel_small"]
        ),
        "SoG (direct) / Gumbel, (100, m) slab": lambda t: (
            t["noise_sog_direct_small"] / t["noise_gumbel_small"]
        ),
        "SoG (direct) / oracle, (100, m) slab": lambda t: (
            t["noise_sog_direct_small"] / t["oracle_small"]
        ),
        "oracle on theta + eps / on S copies of theta": lambda t: (
            t["oracle_S"] / t["oracle_S_copies"]
        ),
        # The same ratios against oracle calls on unperturbed copies, which understate the work.
        "forward / (S oracle on copies + noise)": lambda t: (
            t["forward"] / (t["oracle_S_copies"] + t[noise])
        ),
        "gradient / (2 x S oracle on copies + noise)": lambda t: (
            t["gradient"] / (2 * t["oracle_S_copies"] + t[noise])
        ),
    }
    ratios = {name: per_round(rounds, fn) for name, fn in ratio_fns.items()}
    return res, ratios


def make_noise(kind, k, method="table"):
    """SoG(k) or Gumbel noise."""
    return ij.sog(k, method=method) if kind == "sog" else ij.gumbel()


def check_baseline(bare_oracle, forward, gradient, fns, lam):
    """The baseline's oracle inputs are exactly the ones the transform solves."""
    (perturbed,), (_, targets) = fns["oracle_S"][1], fns["oracle_2S"][1]
    z = bare_oracle(perturbed)
    if not np.array_equal(z, forward(*fns["forward"][1])):
        raise AssertionError("the forward pass does not solve theta + eps")
    expected = jnp.sum(z - bare_oracle(targets), axis=1) / lam
    if not np.allclose(expected, gradient(*fns["gradient"][1]), atol=1e-6):
        raise AssertionError("the gradient does not solve theta - lam * g + eps")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--m", type=int, default=400)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--noise", choices=["sog", "gumbel"], default="sog")
    parser.add_argument(
        "--oracle",
        choices=["top_k", "argmax"],
        default="top_k",
        help="argmax uses SoG(1) noise and ignores --k",
    )
    parser.add_argument("--json", type=str, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    print(
        f"imlejax bench on {jax.devices()[0].platform} ({jax.device_count()} device(s)): "
        f"{args.oracle}, batch {args.batch} (vmap), m={args.m}, k={args.k}, S={args.samples}, "
        f"noise={args.noise}"
    )
    res, ratios = run(
        args.batch, args.m, args.k, args.samples, args.repeats, args.noise, args.oracle
    )
    print(f"\n{'measurement':<24}{'compile (s)':>12}{'run (ms)':>12}")
    for name, (c, r) in res.items():
        print(f"{name:<24}{c:>12.3f}{1e3 * r:>12.3f}")
    print(f"\n{'ratio (median over rounds)':<46}{'median':>8}{'quartiles':>22}")
    for name, (med, lo, hi) in ratios.items():
        print(f"{name:<46}{med:>8.3f}{f'{lo:.3f} - {hi:.3f}':>22}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(
                {
                    "config": vars(args),
                    "times": res,
                    "ratios": {name: v[0] for name, v in ratios.items()},
                    "ratio_quartiles": {name: v[1:] for name, v in ratios.items()},
                },
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
