"""Cost of the I-MLE transform over the bare work it must do, measured in one run.

Problem: top-k oracle, a batch of B instances via ``jax.vmap``, m items, k selected, S samples.

* forward ratio  = jitted forward  / (S oracle calls + one noise draw)
* gradient ratio = jitted gradient / (2S oracle calls + one noise draw)
* sampling ratio = SoG draw / Gumbel draw of the same shape

Compile times are reported separately; run times are medians over ``--repeats`` runs.

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
        compiled = jax.jit(fn).lower(*args).compile()
        out[name] = (compiled, args, time.perf_counter() - start)
        jax.block_until_ready(compiled(*args))
    return out


def time_interleaved(compiled, repeats, slow=()):
    """Median run seconds of each compiled function, timed in turn in every round so that load
    changes on the machine affect all of them alike. Functions in ``slow`` run every 4th round."""
    runs = {name: [] for name in compiled}
    for r in range(repeats):
        for name, (fn, args, _) in compiled.items():
            if name in slow and r % 4:
                continue
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            runs[name].append(time.perf_counter() - start)
    return {name: (compiled[name][2], float(np.median(v))) for name, v in runs.items()}


def run(batch, m, k, samples, repeats, noise_name="sog"):
    key = jax.random.key(0)
    theta = jax.random.normal(key, (batch, m))
    w = jax.random.normal(jax.random.key(1), (batch, samples, m))
    keys = jax.random.split(jax.random.key(2), batch)
    oracle = ij.top_k(k)
    noise = ij.sog(k) if noise_name == "sog" else ij.gumbel()
    sampler = ij.imle(oracle, noise=noise, target=ij.pid(10.0), samples=samples)

    def bare_oracle(thetas):  # (B, S, m): B*S oracle calls
        return jax.vmap(jax.vmap(oracle))(thetas)

    def bare_oracle_2s(thetas, thetas2):
        return bare_oracle(thetas), bare_oracle(thetas2)

    def draw(kind):
        nz = ij.sog(k) if kind == "sog" else ij.gumbel()
        return lambda keys: jax.vmap(lambda kk: nz.sample(kk, (samples, m)))(keys)

    def forward(keys, theta):
        return jax.vmap(sampler)(keys, theta)

    def gradient(keys, theta, w):
        return jax.grad(lambda t: jnp.sum(jax.vmap(sampler)(keys, t) * w))(theta)

    thetas = theta[:, None, :] + jnp.zeros((1, samples, 1))
    small = keys[:10]
    fns = {
        "oracle_S": (bare_oracle, (thetas,)),
        "oracle_2S": (bare_oracle_2s, (thetas, thetas + 1.0)),
        "noise_sog": (draw("sog"), (keys,)),
        "noise_gumbel": (draw("gumbel"), (keys,)),
        "forward": (forward, (keys, theta)),
        "gradient": (gradient, (keys, theta, w)),
        # The direct reference sampler sums `terms` gamma draws; it is timed on a (100, m) slab.
        "oracle_small": (bare_oracle, (thetas[:10],)),
        "noise_sog_small": (draw("sog"), (small,)),
        "noise_gumbel_small": (draw("gumbel"), (small,)),
        "noise_sog_direct_small": (
            lambda ks: jax.vmap(lambda kk: ij.sog(k, method="direct").sample(kk, (samples, m)))(ks),
            (small,),
        ),
    }
    res = time_interleaved(compile_all(fns), repeats, slow=("noise_sog_direct_small",))
    noise_key = "noise_sog" if noise_name == "sog" else "noise_gumbel"
    t = {name: v[1] for name, v in res.items()}
    ratios = {
        "forward / (S oracle + noise)": t["forward"] / (t["oracle_S"] + t[noise_key]),
        "gradient / (2S oracle + noise)": t["gradient"] / (t["oracle_2S"] + t[noise_key]),
        "SoG (table) / Gumbel sampling": t["noise_sog"] / t["noise_gumbel"],
        "SoG (table) / Gumbel, (100, m) slab": t["noise_sog_small"] / t["noise_gumbel_small"],
        "SoG (direct) / Gumbel, (100, m) slab": t["noise_sog_direct_small"]
        / t["noise_gumbel_small"],
        "SoG (direct) / oracle, (100, m) slab": t["noise_sog_direct_small"] / t["oracle_small"],
    }
    return res, ratios


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--m", type=int, default=400)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--noise", choices=["sog", "gumbel"], default="sog")
    parser.add_argument("--json", type=str, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    print(
        f"imlejax bench on {jax.devices()[0].platform} ({jax.device_count()} device(s)): "
        f"top-k, batch {args.batch} (vmap), m={args.m}, k={args.k}, S={args.samples}, "
        f"noise={args.noise}"
    )
    res, ratios = run(args.batch, args.m, args.k, args.samples, args.repeats, args.noise)
    print(f"\n{'measurement':<24}{'compile (s)':>12}{'run (ms)':>12}")
    for name, (c, r) in res.items():
        print(f"{name:<24}{c:>12.3f}{1e3 * r:>12.3f}")
    print(f"\n{'ratio':<40}{'value':>8}")
    for name, v in ratios.items():
        print(f"{name:<40}{v:>8.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"config": vars(args), "times": res, "ratios": ratios}, fh, indent=2)


if __name__ == "__main__":
    main()
