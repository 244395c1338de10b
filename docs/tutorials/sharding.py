"""Sharding a training step over devices.

Data parallelism with sharded ``jax.jit``: the batch axis of every per-example array (inputs,
labels, one PRNG key per example) is split over a one-axis mesh, the parameters are replicated,
and each device perturbs and solves only its own examples. Four host CPU devices stand in for
accelerators (on GPUs or TPUs drop the ``XLA_FLAGS`` line); see ``docs/scaling.md`` for the
mechanism and measurements:

    python docs/tutorials/sharding.py

Asserts that the compiled step runs the top-k oracle on each device's shard only, with a single
all-reduce, that the samples are bit-identical to one device's and the trained parameters equal
up to float32 rounding.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")  # CPU stand-in

import re  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import AxisType, NamedSharding  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import imlejax as ij  # noqa: E402

assert jax.device_count() >= 4, "run with XLA_FLAGS=--xla_force_host_platform_device_count=4"

# --8<-- [start:setup]
k, items, features, batch, samples = 5, 20, 8, 64, 4
sampler = ij.imle(ij.top_k(k), noise=ij.sog(k), target=ij.pid(100.0), samples=samples)
optimizer = optax.adam(0.05)


def loss_fn(w, x, y, keys):
    theta = x @ w  # (batch, items): sharded like x
    z = jax.vmap(sampler)(keys, theta)  # one key per example -> (batch, samples, items)
    return jnp.mean(jnp.sum(jnp.abs(z - y[:, None, :]), axis=-1))


def make_step(mesh):
    data = NamedSharding(mesh, P("batch"))  # per-example arrays: split on the batch axis

    @jax.jit
    def step(w, opt_state, x, y, key):
        # Per-example keys from the step key: the same keys, hence the same samples, on any mesh.
        keys = jax.lax.with_sharding_constraint(jax.random.split(key, x.shape[0]), data)
        loss, grad = jax.value_and_grad(loss_fn)(w, x, y, keys)  # grad: all-reduced
        updates, opt_state = optimizer.update(grad, opt_state, w)
        return optax.apply_updates(w, updates), opt_state, loss

    return step


# --8<-- [end:setup]


# --8<-- [start:train]
def train(devices, steps=15):
    mesh = jax.make_mesh((len(devices),), ("batch",), axis_types=(AxisType.Auto,), devices=devices)
    data, replicated = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
    step = make_step(mesh)
    rng = np.random.default_rng(0)
    w_true = rng.standard_normal(features).astype(np.float32)
    w = jax.device_put(jnp.zeros(features), replicated)
    opt_state = jax.device_put(optimizer.init(w), replicated)
    for t in range(steps):
        x = rng.standard_normal((batch, items, features)).astype(np.float32)
        y = jax.vmap(ij.top_k(k))(x @ w_true)  # the gold subsets of a hidden linear scorer
        x, y = jax.device_put((x, y), data)
        key = jax.random.fold_in(jax.random.key(1), t)
        if t == 0:
            hlo = step.lower(w, opt_state, x, y, key).compile().as_text()
        w, opt_state, loss = step(w, opt_state, x, y, key)
    # The samples of the trained model on one more batch, drawn on this mesh.
    keys = jax.device_put(jax.random.split(jax.random.key(2), batch), data)
    z = jax.jit(jax.vmap(sampler))(keys, x @ w)
    return np.asarray(w), float(loss), np.asarray(z), hlo


w4, loss4, z4, hlo = train(jax.devices()[:4])
w1, loss1, z1, _ = train(jax.devices()[:1])
print(f"4 devices: loss after 15 steps {loss4:.4f}")
print(f"1 device:  loss after 15 steps {loss1:.4f}")
# --8<-- [end:train]

# --8<-- [start:check]
lines = hlo.splitlines()
# The oracle's lax.top_k: XLA's TopK custom call on CPU in float32 (a sort in float64).
topk = [line for line in lines if 'custom_call_target="TopK"' in line or " sort(" in line]
all_reduce = [line for line in lines if re.search(r"\ball-reduce\(", line)]
all_gather = [line for line in lines if re.search(r"\ball-gather\(", line)]
rows = sorted({int(re.search(r"f(?:32|64)\[(\d+),\d+\]", t).group(1)) for t in topk})
print(f"top-k calls per device: {len(topk)}, on rows of shape {rows}")
print(f"all-reduce ops: {len(all_reduce)}, all-gather ops: {len(all_gather)}")
per_device_rows = batch // 4 * samples  # 16 examples x 4 samples on each device
assert len(topk) == 2  # forward sample and I-MLE target, both on the local shard only
assert rows == [per_device_rows]
assert len(all_reduce) == 1 and not all_gather  # the parameter gradient (and the loss)
assert np.array_equal(z4, z1)  # the same keys give bit-identical samples on any mesh
# The gradient is summed in a different order (per-device partial sums, then the all-reduce), so
# the parameters agree to float32 rounding rather than bit for bit:
print(f"samples identical; parameters differ by at most {np.abs(w4 - w1).max():.1e}")
assert np.allclose(w4, w1, rtol=0, atol=1e-5)
# --8<-- [end:check]
