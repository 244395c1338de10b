"""Cost per element of drawing the noise: imlejax's samplers and JAX's threefry, in one run.

For each size n (4e5 and 4e6 elements by default) the draws are timed in two layouts: one key
for a flat (n,) array, and ``jax.vmap`` over B = n / (S m) keys of (S, m) = (10, 400) slabs, the
layout of the I-MLE transform over a batch. Rows:

* ``jax.random.bits``: JAX's threefry bits (the bit source of imlejax 0.1's samplers);
* ``jax.random.gumbel``: JAX's Gumbel sampler (imlejax 0.1's ``ij.gumbel().sample``);
* ``ij.gumbel().sample`` and ``ij.sog(10).sample`` (the table sampler).

Each function is jitted and compiled first; in every round each runs once in turn; reported are
the median and quartiles over rounds of nanoseconds per element.

    python -m experiments.benchmarks.noise_cost [--sizes 400000 4000000 --repeats 15 --json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import numpy as np

import imlejax as ij

SLAB = (10, 400)


def samplers():
    """``{name: fn(key, shape)}``."""
    gumbel, sog = ij.gumbel(), ij.sog(10)
    return {
        "jax.random.bits": lambda key, shape: jax.random.bits(key, shape),
        "jax.random.gumbel": lambda key, shape: jax.random.gumbel(key, shape),
        "ij.gumbel().sample": gumbel.sample,
        "ij.sog(10).sample": sog.sample,
    }


def build(sizes):
    """``{(name, layout, n): (compiled, args)}``."""
    out = {}
    for n in sizes:
        batch = max(1, n // (SLAB[0] * SLAB[1]))
        keys = jax.random.split(jax.random.key(0), batch)
        for name, fn in samplers().items():
            flat = jax.jit(lambda key, fn=fn, n=n: fn(key, (n,)))
            batched = jax.jit(jax.vmap(lambda key, fn=fn: fn(key, SLAB)))
            out[(name, "one key, (n,)", n)] = (flat.lower(keys[0]).compile(), (keys[0],))
            out[(name, f"vmap over {batch} keys, {SLAB}", batch * SLAB[0] * SLAB[1])] = (
                batched.lower(keys).compile(),
                (keys,),
            )
    for fn, args in out.values():
        jax.block_until_ready(fn(*args))
    return out


def measure(fns, repeats):
    """``{key: (median, q1, q3)}`` in nanoseconds per element."""
    times = {key: [] for key in fns}
    for _ in range(repeats):
        for key, (fn, args) in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times[key].append((time.perf_counter() - start) / key[2] * 1e9)
    return {
        key: tuple(float(q) for q in np.percentile(v, [50, 25, 75])) for key, v in times.items()
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[400_000, 4_000_000])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", type=str, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    load = os.getloadavg()
    print(
        f"noise cost on {jax.devices()[0].platform}, imlejax {ij.__version__}; load {load[0]:.2f}"
    )
    res = measure(build(args.sizes), args.repeats)
    print(f"\n{'sampler':<22}{'layout':<34}{'elements':>10}{'ns/element':>12}{'quartiles':>16}")
    for (name, layout, n), (med, lo, hi) in res.items():
        print(f"{name:<22}{layout:<34}{n:>10}{med:>12.2f}{f'{lo:.2f}-{hi:.2f}':>16}")
    print(f"load after: {os.getloadavg()[0]:.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            rows = [
                dict(
                    sampler=name,
                    layout=layout,
                    elements=n,
                    ns_per_element=dict(median=v[0], q1=v[1], q3=v[2]),
                )
                for (name, layout, n), v in res.items()
            ]
            json.dump(
                {"config": vars(args), "load_average": [load, os.getloadavg()], "rows": rows},
                fh,
                indent=2,
            )


if __name__ == "__main__":
    main()
