"""Data-parallel scaling of the I-MLE gradient over host devices, with the per-device oracle work.

Problem (as in ``imle_bench``): top-k oracle, a batch of ``B`` instances via ``jax.vmap`` with
one key per instance, ``m`` items, ``k`` selected, ``S`` samples, ``SoG(k)`` noise, ``pid(10.0)``
target, loss ``sum(z * w)``. One process with ``max(--devices)`` host CPU devices
(``--xla_force_host_platform_device_count``) compiles ``jax.jit(jax.grad(loss))`` for a one-axis
mesh over the first ``n`` devices for every ``n`` in ``--devices``, with the keys, ``theta`` and
``w`` sharded over it (``NamedSharding(mesh, P("batch"))``). From each optimised per-device HLO
it reads the operand shapes of XLA's ``TopK`` calls (the oracle work per device) and the
collectives; it checks that every sharded gradient equals the one-device gradient bit for bit;
and it times the gradients interleaved, one call of each device count per round, so that load
changes on the machine affect all of them alike. The speed-up is taken within each round and
reported as the median and quartiles over the rounds.

    python -m experiments.benchmarks.scaling --devices 1,2,4 [--json docs/results/...json]
    nox -s scaling -- --devices 1,2,4

Host devices share the machine's cores, so the throughput gain is bounded by the number of cores
free for the run; the oracle rows per device show the division of the work itself.
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

    counts = [int(c) for c in args.devices.split(",")]
    k = args.k if args.oracle == "top_k" else 1
    oracle = ij.top_k(k) if args.oracle == "top_k" else ij.argmax()
    sampler = ij.imle(oracle, noise=ij.sog(k), target=ij.pid(10.0), samples=args.samples)

    def grad(keys, theta, w):
        return jax.grad(lambda t: jnp.sum(jax.vmap(sampler)(keys, t) * w))(theta)

    theta = jax.random.normal(jax.random.key(0), (args.batch, args.m))
    w = jax.random.normal(jax.random.key(1), (args.batch, args.samples, args.m))
    keys = jax.random.split(jax.random.key(2), args.batch)
    reference = np.asarray(jax.jit(grad)(keys, theta, w))  # on one device
    rows, programs = [], {}
    for n in counts:
        devices = jax.devices()[:n]
        mesh = jax.make_mesh((n,), ("batch",), axis_types=(AxisType.Auto,), devices=devices)
        sharded = [jax.device_put(x, NamedSharding(mesh, P("batch"))) for x in (keys, theta, w)]
        start = time.perf_counter()
        compiled = jax.jit(grad).lower(*sharded).compile()
        compile_s = time.perf_counter() - start
        text = compiled.as_text()
        out = jax.block_until_ready(compiled(*sharded))
        calls = hlo.oracle_calls(text)
        programs[n] = (compiled, sharded)
        rows.append(
            {
                "devices": n,
                "oracle_calls": calls,
                "oracle_rows_per_device": [hlo.rows(c["operand"]) for c in calls],
                "collectives": hlo.collectives(text),
                "bit_identical_to_one_device": bool(np.array_equal(np.asarray(out), reference)),
                "output_devices": len(out.sharding.device_set),
                "compile_seconds": compile_s,
            }
        )
    times = {n: [] for n in counts}
    for _ in range(args.repeats):
        for n in counts:
            compiled, sharded = programs[n]
            start = time.perf_counter()
            jax.block_until_ready(compiled(*sharded))
            times[n].append(time.perf_counter() - start)
    base = np.asarray(times[counts[0]])
    for row in rows:
        t = np.asarray(times[row["devices"]])
        speedup = base / t  # within each round
        row["gradient_ms"] = 1e3 * float(np.median(t))
        row["gradient_ms_quartiles"] = [1e3 * float(q) for q in np.percentile(t, [25, 75])]
        row["instances_per_second"] = args.batch / float(np.median(t))
        row["speedup"] = float(np.median(speedup))
        row["speedup_quartiles"] = [float(q) for q in np.percentile(speedup, [25, 75])]
    return {"rows": rows, "jax": jax.__version__, "platform": jax.devices()[0].platform}


def run_worker(argv: list[str], devices: int, timeout: float) -> dict:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICE_FLAG)]
    env["XLA_FLAGS"] = " ".join([*flags, f"{_DEVICE_FLAG}={devices}"])
    env["JAX_PLATFORMS"] = "cpu"
    cmd = [sys.executable, "-m", "experiments.benchmarks.scaling", "--worker", *argv]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"the benchmark worker failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict], header: str) -> str:
    lines = [
        header,
        "",
        "| devices | TopK operand per device | oracle rows per device | rows x devices | "
        "all-gathers | gradient (ms) | instances/s | speed-up (quartiles) | bit-identical |",
        "|---:|---|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for r in rows:
        shapes = ", ".join(sorted({c["operand"] for c in r["oracle_calls"]}))
        per = max(r["oracle_rows_per_device"]) if r["oracle_rows_per_device"] else 0
        lo, hi = r["speedup_quartiles"]
        lines.append(
            f"| {r['devices']} | {shapes} | {per} | {per * r['devices']} | "
            f"{r['collectives']['all-gather']} | {r['gradient_ms']:.1f} | "
            f"{r['instances_per_second']:.0f} | {r['speedup']:.2f} ({lo:.2f}-{hi:.2f}) | "
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
    parser.add_argument("--repeats", type=int, default=30, help="timing rounds")
    parser.add_argument("--oracle", choices=["top_k", "argmax"], default="top_k")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds for the worker")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)))
        return None

    counts = [int(c) for c in args.devices.split(",")]
    if any(c < 1 or args.batch % c for c in counts) or counts[0] != min(counts):
        raise SystemExit(
            "--devices: counts >= 1 that divide --batch, the first the smallest "
            "(the speed-up is relative to it)."
        )
    passed = [
        f"--devices={args.devices}",
        f"--batch={args.batch}",
        f"--m={args.m}",
        f"--k={args.k}",
        f"--samples={args.samples}",
        f"--repeats={args.repeats}",
        f"--oracle={args.oracle}",
    ]
    result = run_worker(passed, max(counts), args.timeout)
    header = (
        f"I-MLE gradient, {args.oracle}, batch {args.batch}, m={args.m}, k={args.k}, "
        f"S={args.samples}, SoG noise, host CPU devices on {os.cpu_count()} cores"
    )
    print(table(result["rows"], header))
    result["config"] = {k: v for k, v in vars(args).items() if k != "worker"}
    result["cpu_count"] = os.cpu_count()
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()
