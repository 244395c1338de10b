"""The per-device HLO of a sharded I-MLE gradient: oracle operand shapes and collectives.

Compiles ``jax.jit(jax.grad(loss))`` of ``jax.vmap(ij.imle(oracle, noise, ij.pid(10.0),
samples=S))`` over a batch of ``B`` instances with keys, theta and the upstream weights sharded on
the batch axis (``NamedSharding(mesh, P("b"))``) over ``--devices`` host CPU devices, prints the
lines of the optimised HLO that hold the oracle work (XLA's ``TopK`` calls, host callbacks) and
the collectives, and checks that the gradient equals the one-device gradient bit for bit.

    python -m experiments.benchmarks.sharding_hlo --oracle top_k   # also: argmax, host
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

_DEVICE_FLAG = "--xla_force_host_platform_device_count"
_SHOWN = re.compile(
    r" (all-gather|all-reduce|reduce-scatter|all-to-all|collective-permute)(-start)?\("
    r"|custom_call_target=\"(TopK|xla_ffi_python_cpu_callback)\""
)


def _short(line: str) -> str:
    """An HLO line without its metadata and layout details."""
    line = re.sub(r", metadata=\{.*", "", line.strip())
    line = re.sub(
        r", (called_computations|operand_layout_constraints|backend_config)"
        r"=\{(?:[^{}]|\{[^{}]*\})*\}",
        "",
        line,
    )
    line = re.sub(r", (api_version|channel_id|use_global_device_ids)=[\w]+", "", line)
    return re.sub(r", replica_groups=\S+( \S+)?", "", line)


def _host_top_k(k):
    import numpy as np

    def solve(theta):
        z = np.zeros_like(theta)
        z[np.argsort(-theta, kind="stable")[:k]] = 1
        return z

    solve.__name__ = f"numpy_top_{k}"
    return solve


def evidence(oracle_name: str, batch: int, m: int, k: int, samples: int, run: bool = True) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding
    from jax.sharding import PartitionSpec as P

    import imlejax as ij
    from experiments.benchmarks import hlo

    if oracle_name == "argmax":
        oracle, noise = ij.argmax(), ij.gumbel(1.0)
    elif oracle_name == "host":
        oracle, noise = ij.host_oracle(_host_top_k(k)), ij.sog(k)
    else:
        oracle, noise = ij.top_k(k), ij.sog(k)
    sampler = ij.imle(oracle, noise=noise, target=ij.pid(10.0), samples=samples)

    def loss(theta, keys, w):
        return jnp.sum(jax.vmap(sampler)(keys, theta) * w)

    theta = jax.random.normal(jax.random.key(0), (batch, m))
    w = jax.random.normal(jax.random.key(1), (batch, samples, m))
    keys = jax.random.split(jax.random.key(2), batch)
    mesh = Mesh(np.array(jax.devices()), ("b",))
    sharded = [jax.device_put(x, NamedSharding(mesh, P("b"))) for x in (theta, keys, w)]
    grad = jax.jit(jax.grad(loss))
    compiled = grad.lower(*sharded).compile()
    text = compiled.as_text()
    identical = None
    if run:
        out = compiled(*sharded)
        identical = bool(np.array_equal(np.asarray(out), np.asarray(grad(theta, keys, w))))
    return {
        "oracle": oracle_name,
        "devices": jax.device_count(),
        "batch": batch,
        "m": m,
        "samples": samples,
        "oracle_calls": hlo.oracle_calls(text),
        "collectives": hlo.collectives(text),
        "bit_identical_to_one_device": identical,
        "lines": [_short(line) for line in text.splitlines() if _SHOWN.search(line)],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oracle", choices=["top_k", "argmax", "host"], default="top_k")
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--m", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--compile-only", action="store_true", help="do not run the gradient")
    parser.add_argument("--json", default=None, help="also write the result here")
    args = parser.parse_args(argv)
    if "jax" not in sys.modules:
        flags = [
            f for f in os.environ.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICE_FLAG)
        ]
        os.environ["XLA_FLAGS"] = " ".join([*flags, f"{_DEVICE_FLAG}={args.devices}"])
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
    result = evidence(
        args.oracle, args.batch, args.m, args.k, args.samples, run=not args.compile_only
    )
    print(
        f"{result['oracle']}: batch {args.batch} x {args.samples} samples on {result['devices']} "
        f"devices; bit-identical to one device: {result['bit_identical_to_one_device']}"
    )
    for call in result["oracle_calls"]:
        print(f"  {call['op']}: operand {call['operand']}, result {call['result']}")
    print(f"  collectives: {result['collectives']}")
    for line in result["lines"]:
        print("  " + line)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)
    return result


if __name__ == "__main__":
    main()
