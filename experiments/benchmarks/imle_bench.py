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


def timed(fn, *args, repeats):
    """Returns (compile seconds, median run seconds) of ``jax.jit(fn)(*args)``."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    jax.block_until_ready(compiled(*args))
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        runs.append(time.perf_counter() - start)
    return compile_s, float(np.median(runs))


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
    res = {}
    res["oracle_S"] = timed(bare_oracle, thetas, repeats=repeats)
    res["oracle_2S"] = timed(bare_oracle_2s, thetas, thetas + 1.0, repeats=repeats)
    res["noise_sog"] = timed(draw("sog"), keys, repeats=repeats)
    res["noise_gumbel"] = timed(draw("gumbel"), keys, repeats=repeats)
    # The direct reference sampler sums `terms` gamma draws; it is timed on a (100, m) slab.
    small = keys[:10]
    res["noise_sog_small"] = timed(draw("sog"), small, repeats=repeats)
    res["noise_gumbel_small"] = timed(draw("gumbel"), small, repeats=repeats)
    res["noise_sog_direct_small"] = timed(
        lambda ks: jax.vmap(lambda kk: ij.sog(k, method="direct").sample(kk, (samples, m)))(ks),
        small,
        repeats=max(3, repeats // 4),
    )
    res["oracle_small"] = timed(bare_oracle, thetas[:10], repeats=repeats)
    res["forward"] = timed(forward, keys, theta, repeats=repeats)
    res["gradient"] = timed(gradient, keys, theta, w, repeats=repeats)
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
    print(f"\n{'measurement':<22}{'compile (s)':>12}{'run (ms)':>12}")
    for name, (c, r) in res.items():
        print(f"{name:<22}{c:>12.3f}{1e3 * r:>12.3f}")
    print(f"\n{'ratio':<34}{'value':>8}")
    for name, v in ratios.items():
        print(f"{name:<34}{v:>8.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"config": vars(args), "times": res, "ratios": ratios}, fh, indent=2)


if __name__ == "__main__":
    main()
