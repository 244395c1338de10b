"""Orbax checkpoints of a train state and its metric history, shared by the experiments.

A train state (any pytree of arrays, PRNG keys included) is saved as a flat dictionary of arrays,
keys as their key data, next to the metric history as JSON; a restore rebuilds the state on a
template of the same structure. The default layout names the leaves ``leaf_0000``, ... in
flattening order; an experiment may pass its own ``to_arrays``/``from_arrays`` (e.g. leaves named
by their path).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp


def is_key(x: Any) -> bool:
    """Whether ``x`` is an array of typed PRNG keys."""
    return isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def as_array(x: Any) -> Any:
    """A leaf as it is saved: PRNG keys as their key data."""
    return jax.random.key_data(x) if is_key(x) else x


def like(template_leaf: Any, array: Any) -> Any:
    """A saved array as the template's leaf: key data wrapped back into keys of its kind."""
    if is_key(template_leaf):
        return jax.random.wrap_key_data(array, impl=jax.random.key_impl(template_leaf))
    return array


def to_indexed_arrays(state: Any) -> dict[str, Any]:
    """The leaves of ``state`` named ``leaf_0000``, ... in flattening order."""
    return {f"leaf_{i:04d}": as_array(x) for i, x in enumerate(jax.tree.leaves(state))}


def from_indexed_arrays(template: Any, arrays: dict[str, Any]) -> Any:
    """The inverse of :func:`to_indexed_arrays` on a template of the same structure."""
    leaves, treedef = jax.tree.flatten(template)
    return jax.tree.unflatten(
        treedef, [like(t, arrays[f"leaf_{i:04d}"]) for i, t in enumerate(leaves)]
    )


def checkpoint_manager(directory: Path, max_to_keep: int = 2) -> ocp.CheckpointManager:
    """A synchronous manager keeping the last ``max_to_keep`` epochs."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, enable_async_checkpointing=False
    )
    return ocp.CheckpointManager(Path(directory).resolve(), options=options)


def save_checkpoint(
    mngr: ocp.CheckpointManager,
    epoch: int,
    state: Any,
    history: list[dict],
    to_arrays: Callable[[Any], dict[str, Any]] = to_indexed_arrays,
) -> None:
    """Saves ``state`` and ``history`` as step ``epoch`` and waits until they are written."""
    mngr.save(
        epoch,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(to_arrays(state)),
            history=ocp.args.JsonSave({"history": history}),
        ),
    )
    mngr.wait_until_finished()


def restore_checkpoint(
    mngr: ocp.CheckpointManager,
    epoch: int,
    template: Any,
    to_arrays: Callable[[Any], dict[str, Any]] = to_indexed_arrays,
    from_arrays: Callable[[Any, dict[str, Any]], Any] = from_indexed_arrays,
) -> tuple[Any, list[dict]]:
    """Restores ``(state, history)`` of step ``epoch`` on ``template``."""
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, to_arrays(template))
    restored = mngr.restore(
        epoch,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()
        ),
    )
    return from_arrays(template, restored["state"]), restored["history"]["history"]
