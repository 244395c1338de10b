"""Data-parallel scaling of the I-MLE gradient over host devices, with the per-device oracle work.

Problem (as in ``imle_bench``): top-k oracle, a batch of ``B`` instances via ``jax.vmap`` with
one key per instance, ``m`` items, ``k`` selected, ``S`` samples, ``SoG(k)`` noise, ``pid(10.0)``
target, loss ``sum(z * w)``. For every device count ``n`` a fresh process with ``n`` host CPU
devices (``--xla_force_host_platform_device_count=n``) shards the keys, ``theta`` and ``w`` over
a one-axis mesh (``NamedSharding(mesh, P("batch"))``), compiles ``jax.jit(jax.grad(loss))`` and
reads from the optimised per-device HLO the operand shapes of XLA's ``TopK`` calls (the oracle
work per device) and the collectives; it checks that the sharded gradient equals the gradient on
one device bit for bit, and times the gradient (median over ``--repeats`` runs).

    python -m experiments.benchmarks.scaling --devices 1,2,4 [--json docs/results/...json]
    nox -s scaling -- --devices 1,2,4

Host devices share the machine's cores, so the throughput gain is bounded by the core count; the
oracle rows per device show the division of the work itself.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def worker(args) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import AxisType, NamedSharding
    from jax.sharding import PartitionSpec as P

    import imlejax as ij
    from experiments.benchmarks import hlo

    n = jax.device_count()
    k = args.k if args.oracle == "top_k" else 1
    oracle = ij.top_k(k) if args.oracle == "top_k" else ij.argmax()
    sampler = ij.imle(oracle, noise=ij.sog(k), target=ij.pid(10.0), samples=args.samples)

    def grad(keys, theta, w):
        return jax.grad(lambda t: jnp.sum(jax.vmap(sampler)(keys, t) * w))(theta)

    theta = jax.random.normal(jax.random.key(0), (args.batch, args.m))
    w = jax.random.normal(jax.random.key(1), (args.batch, args.samples, args.m))
    keys = jax.random.split(jax.random.key(2), args.batch)
    mesh = jax.make_mesh((n,), ("batch",), axis_types=(AxisType.Auto,))
    sharded = [jax.device_put(x, NamedSharding(mesh, P("batch"))) for x in (keys, theta, w)]
    start = time.perf_counter()
    compiled = jax.jit(grad).lower(*sharded).compile()
    compile_s = time.perf_counter() - start
    text = compiled.as_text()
    out = jax.block_until_ready(compiled(*sharded))
    reference = jax.jit(grad)(keys, theta, w)  # on one device
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*sharded))
        times.append(time.perf_counter() - start)
    calls = hlo.oracle_calls(text)
    seconds = float(np.median(times))
    return {
        "devices": n,
        "oracle_calls": calls,
        "oracle_rows_per_device": [hlo.rows(c["operand"]) for c in calls],
        "collectives": hlo.collectives(text),
        "bit_identical_to_one_device": bool(np.array_equal(np.asarray(out), np.asarray(reference))),
        "output_devices": len(out.sharding.device_set),
        "compile_seconds": compile_s,
        "gradient_ms": 1e3 * seconds,
        "gradient_ms_quartiles": [1e3 * float(q) for q in np.percentile(times, [25, 75])],
        "instances_per_second": args.batch / seconds,
    }


def run_worker(n: int, argv: list[str], timeout: float) -> dict:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICE_FLAG)]
    env["XLA_FLAGS"] = " ".join([*flags, f"{_DEVICE_FLAG}={n}"])
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, "-m", "experiments.benchmarks.scaling", "--worker", *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the {n}-device worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict], header: str) -> str:
    base = rows[0]
    lines = [
        header,
        "",
        "| devices | TopK operand per device | oracle rows per device | rows x devices | "
        "all-gathers | gradient (ms) | instances/s | speed-up | bit-identical |",
        "|---:|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        shapes = ", ".join(sorted({c["operand"] for c in r["oracle_calls"]}))
        per = max(r["oracle_rows_per_device"]) if r["oracle_rows_per_device"] else 0
        speed = base["gradient_ms"] / r["gradient_ms"]
        lines.append(
            f"| {r['devices']} | {shapes} | {per} | {per * r['devices']} | "
            f"{r['collectives']['all-gather']} | {r['gradient_ms']:.1f} | "
            f"{r['instances_per_second']:.0f} | {speed:.2f} | "
            f"{'yes' if r['bit_identical_to_one_device'] else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", default="1,2,4", help="comma-separated device counts")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--m", type=int, default=400)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per process")
    parser.add_argument("--rounds", type=int, default=1, help="processes per device count")
    parser.add_argument("--oracle", choices=["top_k", "argmax"], default="top_k")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per device count")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return None
    import numpy as np

    counts = [int(c) for c in args.devices.split(",")]
    bad = [c for c in counts if c < 1 or args.batch % c]
    if bad:
        raise SystemExit(f"--devices {bad}: every count must be >= 1 and divide --batch.")
    passed = [
        f"--batch={args.batch}",
        f"--m={args.m}",
        f"--k={args.k}",
        f"--samples={args.samples}",
        f"--repeats={args.repeats}",
        f"--oracle={args.oracle}",
    ]
    # Rounds visit the device counts in turn, so that load changes on the machine affect all of
    # them alike; a row reports the median over the rounds of each round's median run time.
    runs = {n: [] for n in counts}
    for r in range(args.rounds):
        for n in counts:
            runs[n].append(run_worker(n, passed, args.timeout))
            print(
                f"round {r + 1}, {n} device(s): {runs[n][-1]['gradient_ms']:.1f} ms",
                file=sys.stderr,
            )
    rows = []
    for n in counts:
        row = dict(runs[n][0])
        row["gradient_ms_rounds"] = [x["gradient_ms"] for x in runs[n]]
        row["gradient_ms"] = float(np.median(row["gradient_ms_rounds"]))
        row["instances_per_second"] = 1e3 * args.batch / row["gradient_ms"]
        row["bit_identical_to_one_device"] = all(x["bit_identical_to_one_device"] for x in runs[n])
        rows.append(row)
    header = (
        f"I-MLE gradient, {args.oracle}, batch {args.batch}, m={args.m}, k={args.k}, "
        f"S={args.samples}, SoG noise, host CPU devices on {os.cpu_count()} cores"
    )
    print(table(rows, header))
    result = {"config": {k: v for k, v in vars(args).items() if k != "worker"}, "rows": rows}
    result["cpu_count"] = os.cpu_count()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()
