"""Oracle calls that stay data-parallel under sharded ``jax.jit``.

XLA's SPMD partitioner does not divide every operation along the batch axes of its operands. Two
that matter here run on the whole batch on every device whatever the sharding of their inputs:
the ``TopK`` custom call behind :func:`jax.lax.top_k` (the oracles :func:`top_k`, and
:func:`argmax` on CPU), which is preceded by an all-gather of its operand; and host callbacks
(:func:`jax.pure_callback`, used by :func:`host_oracle`), which run once, on the first device, on
the gathered global array, and whose result is then broadcast to every device.

:func:`batch_parallel` wraps an oracle written for one instance. Unbatched, it is the oracle. A
batched call (under ``jax.vmap``, at any depth, with any of the arguments batched) is traced once
on one instance and becomes a single primitive over all batch axes, which every device computes
on the instances of its own shard; the solutions are bit-identical to those of one device,
instance by instance. How it is split is decided when the program is lowered:

* oracles in JAX become a :func:`jax.experimental.custom_partitioning` call whose sharding rule
  makes every batch axis a pass-through factor shared by the operands and the result, and every
  other axis a factor that needs replication. After sharding propagation the oracle is lowered
  once more on the per-device shapes, in a fully manual context (``lax.top_k`` then sees the
  per-device operand);
* oracles with a host callback cannot be lowered inside ``custom_partitioning`` (the callback
  would be registered with a temporary module and lost), so they are lowered as a
  :func:`jax.shard_map` over the devices of the computation: the first batch axis whose size the
  device count divides is split over all mesh axes (``P(mesh.axis_names)``), the layout of a
  data-parallel batch, and the callback runs on every device with its local instances. A batch
  that no batch axis divides is solved as one call, as without the wrapper;
* with mesh axes of type ``Explicit`` (the default of :func:`jax.make_mesh`) the shardings are
  known when tracing, and the call is a :func:`jax.shard_map` over the batch axes' mesh axes.

On one device, under ``pmap``, inside ``shard_map`` and for :func:`jax.export` the call is the
vmapped oracle itself. Arrays the oracle closes over are passed to every device whole.

The wrapped oracle is treated as piecewise constant: its inputs pass through
:func:`jax.lax.stop_gradient`, so it has a zero tangent and is never differentiated itself.
"""

from __future__ import annotations

import functools
import importlib
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from jax.interpreters import mlir
from jax.sharding import NamedSharding, PartitionSpec

__all__ = ["batch_parallel"]


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:  # pragma: no cover - older jax
        return None


_cp = _import("jax.experimental.custom_partitioning")

# What the wrapper needs from jax (jax >= 0.6.1 has all of it); without it, batched oracle calls
# are left to XLA as they are.
SUPPORTED = (
    _cp is not None
    and hasattr(_cp, "SdyShardingRule")
    and hasattr(jax, "shard_map")
    and hasattr(jax, "typeof")
    and hasattr(jax.sharding, "get_abstract_mesh")
    and hasattr(jax.sharding, "reshard")
    and hasattr(jax.sharding, "AxisType")
    and hasattr(jax.extend.core, "jaxprs_in_params")
    and hasattr(jax.extend.core, "Primitive")
)


def batch_parallel(fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """Returns ``fn`` (one instance: ``fn(x, *args) -> y``, one array) with data-parallel batches.

    ``batch_parallel(fn)(x, *args)`` equals ``fn(x, *args)``; under ``jax.vmap`` it equals the
    vmapped ``fn`` and, under sharded ``jit``, is computed by each device on its own shard of the
    batch (see the module docstring). Its output has a zero tangent.
    """

    if not SUPPORTED:
        return fn

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


def _broadcast_body(fn, lead: int, mapped: Sequence[Sequence[bool]]):
    """``fn`` (one instance, flat operands) on operands with ``lead`` leading axes.

    ``mapped[i][d]`` says whether leading axis ``d`` of operand ``i`` is mapped (else it has size
    1 and is broadcast); ``mapped[i] == ()`` marks an operand without leading axes (a constant).
    The flags are fixed by the global shapes, so the same body is right for a device's shard.
    """

    def apply(level, operands):
        if level == lead:
            return fn(*operands)
        axes = [0 if m and m[level] else None for m in mapped]
        operands = [
            a if ax == 0 or not m else a[0] for a, ax, m in zip(operands, axes, mapped, strict=True)
        ]
        return jax.vmap(lambda *ops: apply(level + 1, ops), in_axes=axes)(*operands)

    return lambda *operands: apply(0, operands)


def _partitioned_call(fn, lead: int, treedef, x, leaves):
    args = (x, *leaves)
    out_lead = np.broadcast_shapes(*(a.shape[:lead] for a in args))
    mapped = tuple(tuple(a.shape[d] == out_lead[d] for d in range(lead)) for a in args)

    def instance_fn(x, *leaves):
        return fn(x, *jax.tree_util.tree_unflatten(treedef, leaves))

    if jax.sharding.get_abstract_mesh().manual_axes:  # inside shard_map or pmap: per device
        return _broadcast_body(instance_fn, lead, mapped)(*args)
    # The oracle traced on one instance: its shapes do not depend on how the batch is split.
    # Arrays it closes over become operands, the same on every device (``mapped == ()``).
    instance = [jax.ShapeDtypeStruct(a.shape[lead:], a.dtype) for a in args]
    closed, out = jax.make_jaxpr(instance_fn, return_shape=True)(*instance)
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"{_name(fn)} must return a single array; got {jax.tree.structure(out)}.")
    if closed.effects:  # effectful callbacks (io_callback, debug prints) keep their order
        return _broadcast_body(instance_fn, lead, mapped)(*args)
    consts = tuple(jnp.asarray(c) for c in closed.consts)
    operands = (*args, *consts)
    mapped = mapped + ((),) * len(consts)
    body = _broadcast_body(_jaxpr_fn(closed.jaxpr, len(args)), lead, mapped)
    out = jax.ShapeDtypeStruct((*out_lead, *out.shape), out.dtype)
    explicit = _explicit_lead_spec(x, lead)
    if explicit is not None:
        return _explicit_shard_map(body, operands, out, explicit, mapped)
    return _batch_p.bind(
        *operands,
        body=body,
        mapped=mapped,
        out_shape=out.shape,
        out_dtype=out.dtype,
        host=_has_host_callback(closed.jaxpr),
    )


def _jaxpr_fn(jaxpr, num_args: int):
    """A traced instance as a function of its arguments followed by its constants."""

    def fn(*operands):
        return jax.core.eval_jaxpr(jaxpr, operands[num_args:], *operands[:num_args])[0]

    return fn


def _operand_spec(lead_spec, m: tuple, ndim: int) -> PartitionSpec:
    """An operand's spec: the leading axes that it maps take ``lead_spec``, the others none."""
    entries = [s if mi else None for s, mi in zip(lead_spec[: len(m)], m, strict=True)]
    return PartitionSpec(*entries, *([None] * (ndim - len(m))))


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


def _explicit_shard_map(body, operands, out, lead_spec: tuple, mapped) -> jax.Array:
    mesh = jax.typeof(operands[0]).sharding.mesh
    specs = tuple(
        _operand_spec(lead_spec, m, a.ndim) for a, m in zip(operands, mapped, strict=True)
    )
    operands = [
        a if jax.typeof(a).sharding.spec == spec else jax.sharding.reshard(a, spec)
        for a, spec in zip(operands, specs, strict=True)
    ]
    out_spec = _operand_spec(lead_spec, (True,) * len(lead_spec), out.ndim)
    return jax.shard_map(body, mesh=mesh, in_specs=specs, out_specs=out_spec)(*operands)


# ---------------------------------------------------------------------------------------------
# Oracles in JAX: custom_partitioning along the batch axes.


def _custom_partitioned(body, args, out, lead: int, mapped) -> Callable[..., jax.Array]:
    """``body`` as a ``custom_partitioning`` function of ``args`` (arrays or avals)."""

    def partition(mesh, arg_shapes, result_shape):
        spec = _lead_spec(result_shape.sharding, lead)
        if spec is None:  # no mesh to name the sharding in: solve on replicated operands
            return mesh, body, _replicated(result_shape), tuple(map(_replicated, arg_shapes))
        arg_shardings = tuple(
            NamedSharding(mesh, _operand_spec(spec, m, a.ndim))
            for a, m in zip(args, mapped, strict=True)
        )
        return mesh, body, _sharding(mesh, spec, out.ndim), arg_shardings

    def infer_sharding_from_operands(mesh, arg_shapes, result_shape):  # GSPMD propagation only
        spec = _lead_spec(arg_shapes[0].sharding, lead)
        if spec is None:
            return _replicated(result_shape)
        return NamedSharding(mesh, _operand_spec(spec, mapped[0], out.ndim))

    call = _cp.custom_partitioning(body)
    call.def_partition(
        partition=partition,
        infer_sharding_from_operands=infer_sharding_from_operands,
        propagate_user_sharding=lambda mesh, user_shape: user_shape.sharding,
        sharding_rule=_sharding_rule(args, out, lead, mapped),
    )
    return call


def _sharding_rule(args, out, lead: int, mapped) -> Any:
    """Batch axes are pass-through factors shared by all arrays; the other axes need replication."""
    names = (f"f{i}" for i in itertools.count())
    batch = [next(names) for _ in range(lead)]
    replicated: list[str] = []

    def mapping(ndim, m):
        dims = [b if mi else next(names) for b, mi in zip(batch[: len(m)], m, strict=True)]
        dims += [next(names) for _ in range(ndim - len(m))]
        replicated.extend(d for d in dims if d not in batch)
        return _cp.ArrayMapping(*dims)

    operands = tuple(mapping(a.ndim, m) for a, m in zip(args, mapped, strict=True))
    result = mapping(out.ndim, (True,) * lead)
    return _cp.SdyShardingRule(operands, (result,), need_replication_factors=tuple(replicated))


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
# The primitive: how the batch is split is decided when lowering, where the devices are known.

_CALLBACKS = frozenset({"pure_callback", "imlejax_batch_parallel"})


def _has_host_callback(jaxpr) -> bool:
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in _CALLBACKS:
            return True
        if any(map(_has_host_callback, jax.extend.core.jaxprs_in_params(eqn.params))):
            return True
    return False


def _batch_abstract_eval(*avals, body, mapped, out_shape, out_dtype, host):
    return jax.core.ShapedArray(out_shape, out_dtype)


def _lowering_mesh(ctx) -> jax.sharding.Mesh | None:
    """The mesh of an automatically partitioned lowering over several devices, or None."""
    if ctx.module_context.lowering_parameters.for_export:
        return None  # exported programs may not carry custom partitioners or host callbacks
    axis_context = ctx.module_context.axis_context
    devices = getattr(axis_context, "device_assignment", None)
    if devices is None or len(devices) < 2 or getattr(axis_context, "manual_axes", None):
        return None
    abstract = getattr(axis_context, "abstract_mesh", None)
    if abstract is None or abstract.empty:
        return jax.sharding.Mesh(np.array(devices), ("devices",))
    return jax.sharding.Mesh(np.array(devices).reshape(abstract.axis_sizes), abstract.axis_names)


def _batch_lowering(ctx, *operands, body, mapped, out_shape, out_dtype, host):
    mesh = _lowering_mesh(ctx)
    if mesh is None:
        return mlir.lower_fun(body, multiple_results=False)(ctx, *operands)
    out = jax.ShapeDtypeStruct(out_shape, out_dtype)
    lead = len(mapped[0])
    if not host:
        call = _custom_partitioned(body, ctx.avals_in, out, lead, mapped)
        return mlir.lower_fun(call, multiple_results=False)(ctx, *operands)
    dim = next((d for d in range(lead) if out_shape[d] % mesh.size == 0), None)
    if dim is None:
        return mlir.lower_fun(body, multiple_results=False)(ctx, *operands)
    lead_spec = [tuple(mesh.axis_names) if d == dim else None for d in range(lead)]
    in_specs = tuple(
        _operand_spec(lead_spec, m, a.ndim) for a, m in zip(ctx.avals_in, mapped, strict=True)
    )
    out_specs = _operand_spec(lead_spec, (True,) * lead, len(out_shape))
    local = jax.shard_map(body, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    return mlir.lower_fun(local, multiple_results=False)(ctx, *operands)


if SUPPORTED:
    _batch_p = jax.extend.core.Primitive("imlejax_batch_parallel")
    _batch_p.def_impl(lambda *operands, body, **params: body(*operands))
    _batch_p.def_abstract_eval(_batch_abstract_eval)
    mlir.register_lowering(_batch_p, _batch_lowering)
    try:  # the lowering reads the device assignment, as the lowering of custom_partitioning does
        from jax._src import dispatch as _dispatch

        _dispatch.prim_requires_devices_during_lowering.add(_batch_p)
    except (ImportError, AttributeError):  # pragma: no cover - then solved as one call
        pass


def _name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or repr(fn)
