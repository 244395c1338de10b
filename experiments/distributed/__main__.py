"""Data-parallel I-MLE training in several processes (``jax.distributed``), checked against one.

    python -m experiments.distributed --smoke          # a few seconds (used by the tests)
    python -m experiments.distributed                  # 200 steps, batch 256
    python -m experiments.distributed --processes 2 --local-devices 2

The launcher starts ``--processes`` worker processes on this machine with a localhost
coordinator on a free port, each with ``--local-devices`` CPU devices; they train on one global
batch sharded over all their devices. It then runs the same training in one process on the same
number of devices and in one process on one device, and compares the parameters: the multi-process
run must equal the single-process run on as many devices bit for bit, and the one-device run to
the tolerance explained in ``docs/scaling.md`` (the gradient's sum over the batch is split into
per-device partial sums). Writes ``distributed.json`` to ``--out`` (default
``outputs/distributed``).

A worker alone (what runs on each host of a cluster; see ``docs/scaling.md``):

    python -m experiments.distributed --worker --coordinator HOST:PORT \\
        --num-processes N --process-id I [--local-devices D]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import numpy as np

from experiments.distributed.config import PRESETS, Config

_DEVICE_FLAG = "--xla_force_host_platform_device_count"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def worker_env(local_devices: int | None) -> dict:
    """The environment of a CPU worker with ``local_devices`` host devices."""
    env = dict(os.environ)
    if local_devices is not None:
        flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(_DEVICE_FLAG)]
        env["XLA_FLAGS"] = " ".join([*flags, f"{_DEVICE_FLAG}={local_devices}"])
        env["JAX_PLATFORMS"] = "cpu"
    return env


def config_args(cfg: Config) -> list[str]:
    return [
        f"--{name.replace('_', '-')}={value}" for name, value in dataclasses.asdict(cfg).items()
    ]


def launch(
    cfg: Config,
    out: pathlib.Path,
    processes: int,
    local_devices: int,
    tag: str,
    timeout: float,
) -> list[dict]:
    """Runs ``processes`` workers (a coordinator on a free localhost port when more than one)
    and returns their records; kills every worker it started if one fails or time runs out."""
    port = free_port()
    procs = []
    paths = []
    for pid in range(processes):
        path = out / f"{tag}_p{pid}.json"
        path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "experiments.distributed", "--worker", *config_args(cfg)]
        cmd += ["--record", str(path), "--no-progress"]
        if processes > 1:
            cmd += [f"--coordinator=localhost:{port}", f"--num-processes={processes}"]
            cmd += [f"--process-id={pid}"]
        procs.append(subprocess.Popen(cmd, env=worker_env(local_devices)))
        paths.append(path)
    deadline = time.monotonic() + timeout
    try:
        for proc in procs:
            rc = proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            if rc != 0:
                raise RuntimeError(f"a {tag} worker exited with status {rc}")
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [json.loads(p.read_text()) for p in paths]


def compare(distributed: list[dict], same_devices: dict, one_device: dict) -> dict:
    """Bitwise equality across processes and with one process; the gap to one device."""
    params = [np.asarray(r["params_hex"], np.uint32) for r in distributed]
    w = np.asarray(distributed[0]["params"], np.float32)
    w1 = np.asarray(one_device["params"], np.float32)
    return {
        "processes_agree_bitwise": all(np.array_equal(params[0], p) for p in params[1:]),
        "equals_one_process_same_devices_bitwise": bool(
            np.array_equal(params[0], np.asarray(same_devices["params_hex"], np.uint32))
        ),
        "losses_equal_one_process_same_devices": distributed[0]["losses"] == same_devices["losses"],
        "max_abs_diff_to_one_device": float(np.max(np.abs(w - w1))),
        "max_rel_diff_to_one_device": float(np.max(np.abs(w - w1) / np.maximum(np.abs(w1), 1e-30))),
        "max_abs_loss_diff_to_one_device": float(
            np.max(np.abs(np.subtract(distributed[0]["losses"], one_device["losses"])))
        ),
    }


def run_all(cfg: Config, out: pathlib.Path, processes: int, local_devices: int, timeout: float):
    """The multi-process run (subprocesses), then the references in this process: the same
    training on as many devices, and on one device."""
    out.mkdir(parents=True, exist_ok=True)
    devices = processes * local_devices
    distributed = launch(cfg, out, processes, local_devices, "distributed", timeout)
    import jax

    from experiments.distributed.train import train

    if jax.device_count() < devices:
        raise RuntimeError(
            f"the reference run needs {devices} devices in this process; it has "
            f"{jax.device_count()} (set {_DEVICE_FLAG}={devices} in XLA_FLAGS)."
        )
    same = train(cfg, progress=False, devices=jax.devices()[:devices])
    one = train(cfg, progress=False, devices=jax.devices()[:1])
    summary = {
        "config": dataclasses.asdict(cfg),
        "processes": processes,
        "local_devices": local_devices,
        "comparison": compare(distributed, same, one),
        "hlo": {
            "distributed": distributed[0]["hlo"],
            f"one_process_{devices}_devices": same["hlo"],
            "one_device": one["hlo"],
        },
        "losses": distributed[0]["losses"],
        "seconds": {
            "distributed_train": distributed[0]["train_seconds"],
            "one_device_train": one["train_seconds"],
        },
    }
    (out / "distributed.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="the tiny preset (a few steps)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--local-devices", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per launch")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("outputs/distributed"))
    parser.add_argument("--worker", action="store_true", help="run one worker process")
    parser.add_argument("--coordinator", default=None, help="HOST:PORT of process 0")
    parser.add_argument("--num-processes", type=int, default=None)
    parser.add_argument("--process-id", type=int, default=None)
    parser.add_argument("--record", type=pathlib.Path, default=None)
    parser.add_argument("--no-progress", action="store_true")
    defaults = Config()
    for field in dataclasses.fields(Config):
        kind = type(getattr(defaults, field.name))
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=None)
    args = parser.parse_args(argv)
    base = PRESETS["smoke"] if args.smoke else defaults
    cfg = dataclasses.replace(
        base,
        **{
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(Config)
            if getattr(args, f.name) is not None
        },
    )

    if args.worker:
        import jax

        if args.num_processes is not None and args.num_processes > 1 or args.coordinator:
            jax.distributed.initialize(
                coordinator_address=args.coordinator,
                num_processes=args.num_processes,
                process_id=args.process_id,
            )
        from experiments.distributed.train import train

        record = train(cfg, args.record, progress=not args.no_progress)
        if jax.process_index() == 0:
            print(
                f"process {jax.process_index()}/{jax.process_count()}, {jax.device_count()} "
                f"devices: final loss {record['losses'][-1]:.4f}"
            )
        if jax.process_count() > 1:
            jax.distributed.shutdown()
        return record

    if "jax" not in sys.modules:  # the reference runs in this process need as many devices
        os.environ.update(worker_env(args.processes * args.local_devices))
    print(
        f"imlejax distributed: generated stand-in data; {args.processes} processes x "
        f"{args.local_devices} CPU device(s), {cfg.steps} steps, global batch {cfg.batch}"
    )
    summary = run_all(cfg, args.out, args.processes, args.local_devices, args.timeout)
    for name, value in summary["comparison"].items():
        print(f"  {name}: {value}")
    return summary


if __name__ == "__main__":
    main()
