"""One process of the data-parallel training: the problem, the sharded step and the loop.

Problem (generated stand-in data, as in ``experiments.demo``): each instance is a set of ``m``
items with ``d`` features; a hidden linear scorer picks the gold subset
``y = top_k(x @ w_true)``; the model ``theta = x @ w`` is trained through the top-k oracle with
I-MLE (Sum-of-Gamma noise, ``pid(lam)``), a Hamming loss averaged over samples and the batch, and
Adam. The data of step ``t`` and its per-example keys are functions of ``(seed, t)`` only, so
every process and every device count sees the same global batch.

Under ``jax.distributed`` the global batch of every step is one array sharded over all devices of
all processes (``NamedSharding(mesh, P("batch"))``); each process builds only its addressable
shards (``jax.make_array_from_callback``). The parameters and the optimiser state are replicated.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import imlejax as ij
from experiments.benchmarks import hlo
from experiments.distributed.config import Config


def batch_data(cfg: Config, step: int):
    """The global batch of ``step``: features ``(B, m, d)``, gold subsets ``(B, m)``, key data."""
    rng = np.random.default_rng([cfg.seed, step])
    x = rng.standard_normal((cfg.batch, cfg.items, cfg.features)).astype(np.float32)
    w_true = np.random.default_rng([cfg.seed, 10**9]).standard_normal(cfg.features)
    scores = x.astype(np.float64) @ w_true
    top = np.argsort(-scores, axis=-1, kind="stable")[:, : cfg.k]
    y = np.zeros((cfg.batch, cfg.items), np.float32)
    np.put_along_axis(y, top, 1.0, axis=-1)
    # One key per example, from (seed, step, example): independent of the device layout.
    keys = np.stack(
        [rng.integers(0, 2**32, size=2, dtype=np.uint32) for _ in range(cfg.batch)], axis=0
    )
    return x, y, keys


def make_step(cfg: Config, mesh: jax.sharding.Mesh):
    """The jitted training step with replicated parameters and a batch sharded over ``mesh``."""
    sampler = ij.imle(
        ij.top_k(cfg.k), noise=ij.sog(cfg.k), target=ij.pid(cfg.lam), samples=cfg.samples
    )
    optimizer = optax.adam(cfg.lr)

    def loss_fn(w, x, y, keys):
        theta = x @ w  # (B, m)
        z = jax.vmap(sampler)(jax.random.wrap_key_data(keys), theta)  # (B, S, m)
        return jnp.mean(jnp.sum(jnp.abs(z - y[:, None, :]), axis=-1))

    replicated = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P("batch"))

    @jax.jit
    def step(w, opt_state, x, y, keys):
        loss, grad = jax.value_and_grad(loss_fn)(w, x, y, keys)
        updates, opt_state = optimizer.update(grad, opt_state, w)
        return optax.apply_updates(w, updates), opt_state, loss

    def init():
        w = jnp.zeros((cfg.features,), jnp.float32)
        return jax.device_put(w, replicated), jax.device_put(optimizer.init(w), replicated)

    return step, init, replicated, data


def global_batch(cfg: Config, step: int, data: NamedSharding):
    """The batch of ``step`` as global arrays; a process materialises its own shards only."""
    arrays = batch_data(cfg, step)
    return tuple(
        jax.make_array_from_callback(a.shape, data, lambda index, a=a: a[index]) for a in arrays
    )


def train(
    cfg: Config, out: pathlib.Path | None = None, progress: bool = True, devices=None
) -> dict:
    """Runs ``cfg.steps`` steps on ``devices`` (default: all devices of all processes) and
    returns the result record; writes it to ``out`` as JSON if given."""
    devices = jax.devices() if devices is None else list(devices)
    mesh = jax.make_mesh((len(devices),), ("batch",), axis_types=(AxisType.Auto,), devices=devices)
    if cfg.batch % len(devices):
        raise ValueError(f"batch {cfg.batch} is not divisible by {len(devices)} devices.")
    step, init, replicated, data = make_step(cfg, mesh)
    w, opt_state = init()
    first = global_batch(cfg, 0, data)
    start = time.perf_counter()
    compiled = step.lower(w, opt_state, *first).compile()
    compile_s = time.perf_counter() - start
    text = compiled.as_text()
    evidence = {"oracle_calls": hlo.oracle_calls(text), "collectives": hlo.collectives(text)}
    losses = []
    lead = jax.process_index() == 0
    iterator = range(cfg.steps)
    if progress and lead:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="train", file=sys.stderr, leave=False)
    start = time.perf_counter()
    for t in iterator:
        batch = first if t == 0 else global_batch(cfg, t, data)
        w, opt_state, loss = compiled(w, opt_state, *batch)
        losses.append(float(loss.addressable_data(0)))
    w_local = np.asarray(w.addressable_data(0))
    record = {
        "config": dataclasses.asdict(cfg),
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "device_count": len(devices),
        "local_device_count": jax.local_device_count(),
        "compile_seconds": compile_s,
        "train_seconds": time.perf_counter() - start,
        "losses": losses,
        "params": w_local.tolist(),
        "params_hex": w_local.view(np.uint32).tolist(),
        "hlo": evidence,
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(record, indent=1))
    return record
