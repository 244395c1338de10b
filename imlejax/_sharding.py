"""Oracle calls that stay data-parallel under sharded ``jax.jit``.

XLA's SPMD partitioner does not divide every operation along the batch axes of its operands. Two
that matter here run on the whole batch on every device whatever the sharding of their inputs:
the ``TopK`` custom call behind :func:`jax.lax.top_k` (the oracles :func:`top_k`, and
:func:`argmax` on CPU), which is preceded by an all-gather of its operand; and host callbacks
(:func:`jax.pure_callback`, used by :func:`host_oracle`), which run once, on the first device, on
the gathered global array, and whose result is then broadcast to every device.

:func:`batch_parallel` wraps an oracle written for one instance. Unbatched, it is the oracle. A
batched call (under ``jax.vmap``, at any depth, with any of the arguments batched) becomes a
single call over all batch axes that the partitioner may split along the batch axes only; every
device then solves the instances of its own shard, and the solutions are bit-identical to those
of one device, instance by instance:

* oracles without host callbacks become a :func:`jax.experimental.custom_partitioning` call whose
  sharding rule makes every batch axis a pass-through factor shared by the operands and the
  result and every instance axis a factor that needs replication. After sharding propagation the
  oracle is lowered once more on the per-device shapes, in a fully manual context, and runs on
  each device's shard (``lax.top_k`` sees the per-device operand);
* oracles with a host callback cannot be lowered inside ``custom_partitioning`` (the callback
  would be registered with a temporary module and lost), so the batched call is lowered as a
  :func:`jax.shard_map` over the devices of the computation: the first batch axis whose size the
  device count divides is split over all mesh axes (``P(mesh.axis_names)``), which is the layout
  of a data-parallel batch; the callback then runs on every device with its local instances. A
  batch that no batch axis divides is solved on the first device as before.

On one device, under ``pmap`` and inside ``shard_map`` the computation is per device already and
the batched call is the vmapped oracle itself.

The wrapped oracle is treated as piecewise constant: its inputs pass through
:func:`jax.lax.stop_gradient`, so it has a zero tangent and is never differentiated itself.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from jax.experimental.custom_partitioning import (
    ArrayMapping,
    SdyShardingRule,
    custom_partitioning,
)
from jax.interpreters import mlir
from jax.sharding import NamedSharding, PartitionSpec

__all__ = ["batch_parallel"]


def batch_parallel(fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """Returns ``fn`` (one instance: ``fn(x, *args) -> y``, one array) with data-parallel batches.

    ``batch_parallel(fn)(x, *args)`` equals ``fn(x, *args)``; under ``jax.vmap`` it equals the
    vmapped ``fn`` and, under sharded ``jit``, is computed by each device on its own shard of the
    batch (see the module docstring). Its output has a zero tangent.
    """

    @functools.wraps(fn)
    def wrapped(x: Any, *args: Any) -> jax.Array:
        leaves, treedef = jax.tree_util.tree_flatten(args)
        x = jax.lax.stop_gradient(jnp.asarray(x))
        leaves = [jax.lax.stop_gradient(jnp.asarray(leaf)) for leaf in leaves]
        return _batched_call(fn, 0, treedef, x, *leaves)

    return wrapped


def _batched_call(fn, lead: int, treedef, x, *leaves):
    """``fn`` broadcast over the ``lead`` leading axes of ``x`` and of every leaf.

    Each leading axis of an argument has the size of that axis of the result, or size 1 where
    the argument is not batched (as under ``pure_callback(..., vmap_method="expand_dims")``).
    """

    @jax.custom_batching.custom_vmap
    def call(x, *leaves):
        if lead == 0:
            return fn(x, *jax.tree_util.tree_unflatten(treedef, leaves))
        return _partitioned_call(fn, lead, treedef, x, leaves)

    @call.def_vmap
    def rule(axis_size, in_batched, x, *leaves):
        x = x if in_batched[0] else x[None]
        leaves = [a if b else a[None] for a, b in zip(leaves, in_batched[1:], strict=True)]
        return _batched_call(fn, lead + 1, treedef, x, *leaves), True

    return call(x, *leaves)


def _broadcast_body(fn, lead: int, treedef, mapped: Sequence[Sequence[bool]]):
    """The batched computation on arrays whose ``lead`` leading axes are mapped or of size 1.

    ``mapped[i][d]`` says whether axis ``d`` of argument ``i`` is mapped; it is fixed by the
    global shapes, so the same body is right for a device's shard of the mapped axes.
    """

    def apply(level, x, leaves):
        if level == lead:
            return fn(x, *jax.tree_util.tree_unflatten(treedef, leaves))
        axes = [0 if m[level] else None for m in mapped]
        args = [a if ax == 0 else a[0] for a, ax in zip((x, *leaves), axes, strict=True)]
        return jax.vmap(lambda x, *ls: apply(level + 1, x, ls), in_axes=axes)(*args)

    return lambda x, *leaves: apply(0, x, leaves)


def _partitioned_call(fn, lead: int, treedef, x, leaves):
    args = (x, *leaves)
    out_lead = np.broadcast_shapes(*(a.shape[:lead] for a in args))
    mapped = tuple(tuple(a.shape[d] == out_lead[d] for d in range(lead)) for a in args)
    body = _broadcast_body(fn, lead, treedef, mapped)
    if jax.sharding.get_abstract_mesh().manual_axes:
        return body(*args)  # inside shard_map or pmap: already per device
    jaxpr, out = jax.make_jaxpr(body, return_shape=True)(*args)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"{_name(fn)} must return a single array; got {jax.tree.structure(out)}.")
    if jaxpr.effects:
        return body(*args)  # effectful callbacks (io_callback, debug prints) keep their order
    explicit = _explicit_lead_spec(x, lead)
    if explicit is not None:
        return _explicit_shard_map(body, args, out, explicit, mapped)
    if _has_host_callback(jaxpr.jaxpr):
        return _host_batch_p.bind(*args, body=body, mapped=mapped, out_shape=out.shape)
    return _custom_partitioned(body, args, out, lead, mapped)


# ---------------------------------------------------------------------------------------------
# Explicit sharding (mesh axes of type Explicit, as from jax.make_mesh): the shardings are known
# when tracing, so the batched call is a shard_map over the batch axes' mesh axes.


def _explicit_lead_spec(x, lead: int) -> tuple | None:
    sharding = jax.typeof(x).sharding
    if sharding.mesh.empty or not any(
        t == jax.sharding.AxisType.Explicit for t in sharding.mesh.axis_types
    ):
        return None
    spec = tuple(sharding.spec)[:lead]
    spec = spec + (None,) * (lead - len(spec))
    return spec if any(s is not None for s in spec) else None


def _explicit_shard_map(body, args, out, lead_spec: tuple, mapped) -> jax.Array:
    mesh = jax.typeof(args[0]).sharding.mesh
    specs = []
    resharded = []
    for a, m in zip(args, mapped, strict=True):
        spec = PartitionSpec(*[s if mi else None for s, mi in zip(lead_spec, m, strict=True)])
        spec = PartitionSpec(*spec, *([None] * (a.ndim - len(lead_spec))))
        if jax.typeof(a).sharding.spec != spec:
            a = jax.sharding.reshard(a, spec)
        specs.append(spec)
        resharded.append(a)
    out_spec = PartitionSpec(*lead_spec, *([None] * (out.ndim - len(lead_spec))))
    local = jax.shard_map(body, mesh=mesh, in_specs=tuple(specs), out_specs=out_spec)
    return local(*resharded)


# ---------------------------------------------------------------------------------------------
# Oracles in JAX: custom_partitioning along the batch axes.


def _custom_partitioned(body, args, out, lead: int, mapped) -> jax.Array:
    def partition(mesh, arg_shapes, result_shape):
        spec = _lead_spec(result_shape.sharding, lead)
        if spec is None:  # no mesh to name the sharding in: solve on replicated operands
            return mesh, body, _replicated(result_shape), tuple(map(_replicated, arg_shapes))
        arg_shardings = tuple(
            _sharding(mesh, [s if m[d] else None for d, s in enumerate(spec)], a.ndim)
            for a, m in zip(args, mapped, strict=True)
        )
        return mesh, body, _sharding(mesh, spec, out.ndim), arg_shardings

    def infer_sharding_from_operands(mesh, arg_shapes, result_shape):  # GSPMD propagation only
        spec = _lead_spec(arg_shapes[0].sharding, lead)
        if spec is None:
            return _replicated(result_shape)
        return _sharding(
            mesh, [s if m else None for s, m in zip(spec, mapped[0], strict=True)], out.ndim
        )

    call = custom_partitioning(body)
    call.def_partition(
        partition=partition,
        infer_sharding_from_operands=infer_sharding_from_operands,
        propagate_user_sharding=lambda mesh, user_shape: user_shape.sharding,
        sharding_rule=_sharding_rule(args, out, lead, mapped),
    )
    return call(*args)


def _sharding_rule(args, out, lead: int, mapped) -> SdyShardingRule:
    """Batch axes are pass-through factors shared by all arrays; the other axes need replication."""
    names = (f"f{i}" for i in itertools.count())
    batch = [next(names) for _ in range(lead)]
    replicated: list[str] = []

    def mapping(ndim, m):
        dims = [b if mi else next(names) for b, mi in zip(batch, m, strict=True)]
        dims += [next(names) for _ in range(ndim - lead)]
        replicated.extend(d for d in dims if d not in batch)
        return ArrayMapping(*dims)

    operands = tuple(mapping(a.ndim, m) for a, m in zip(args, mapped, strict=True))
    result = mapping(out.ndim, (True,) * lead)
    return SdyShardingRule(operands, (result,), need_replication_factors=tuple(replicated))


def _lead_spec(sharding: Any, lead: int) -> list | None:
    if not isinstance(sharding, NamedSharding):
        return None
    spec = list(sharding.spec)[:lead]
    return spec + [None] * (lead - len(spec))


def _sharding(mesh, lead_spec, ndim: int) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(*lead_spec, *([None] * (ndim - len(lead_spec)))))


def _replicated(shape: Any) -> NamedSharding:
    devices = np.array(sorted(shape.sharding.device_set, key=lambda d: d.id))
    return NamedSharding(jax.sharding.Mesh(devices, ("devices",)), PartitionSpec())


# ---------------------------------------------------------------------------------------------
# Oracles with host callbacks: shard_map over the computation's devices, chosen when lowered.

_CALLBACKS = frozenset({"pure_callback", "imlejax_host_batch"})


def _has_host_callback(jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in _CALLBACKS:
            return True
        if any(map(_has_host_callback, jax.extend.core.jaxprs_in_params(eqn.params))):
            return True
    return False


_host_batch_p = jax.extend.core.Primitive("imlejax_host_batch")
_host_batch_p.def_impl(lambda *args, body, mapped, out_shape: body(*args))


@_host_batch_p.def_abstract_eval
def _host_batch_abstract_eval(x, *leaves, body, mapped, out_shape):
    return jax.core.ShapedArray(out_shape, x.dtype)


def _lowering_mesh(axis_context) -> jax.sharding.Mesh | None:
    """The mesh of an automatically partitioned lowering over several devices, or None."""
    devices = getattr(axis_context, "device_assignment", None)
    if devices is None or len(devices) < 2 or getattr(axis_context, "manual_axes", None):
        return None
    abstract = getattr(axis_context, "abstract_mesh", None)
    if abstract is None or abstract.empty:
        return jax.sharding.Mesh(np.array(devices), ("devices",))
    return jax.sharding.Mesh(np.array(devices).reshape(abstract.axis_sizes), abstract.axis_names)


def _host_batch_lowering(ctx, *args, body, mapped, out_shape):
    mesh = _lowering_mesh(ctx.module_context.axis_context)
    lead = len(mapped[0])
    dim = None
    if mesh is not None:
        dim = next((d for d in range(lead) if out_shape[d] % mesh.size == 0), None)
    if dim is None:
        return mlir.lower_fun(body, multiple_results=False)(ctx, *args)
    axes = tuple(mesh.axis_names)

    def spec(ndim, split):
        return PartitionSpec(*[axes if split and d == dim else None for d in range(ndim)])

    in_specs = tuple(spec(a.ndim, m[dim]) for a, m in zip(ctx.avals_in, mapped, strict=True))
    local = jax.shard_map(
        body, mesh=mesh, in_specs=in_specs, out_specs=spec(len(out_shape), True), check_vma=False
    )
    return mlir.lower_fun(local, multiple_results=False)(ctx, *args)


mlir.register_lowering(_host_batch_p, _host_batch_lowering)
try:  # the lowering reads the device assignment, as the lowering of custom_partitioning does
    from jax._src import dispatch as _dispatch

    _dispatch.prim_requires_devices_during_lowering.add(_host_batch_p)
except (ImportError, AttributeError):  # pragma: no cover - a later jax: solved on one device
    pass


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or repr(fn)
