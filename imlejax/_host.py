"""NumPy/SciPy solvers as JAX MAP oracles, through ``jax.pure_callback``."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from imlejax._validation import name_of

__all__ = ["host_oracle", "bipartite_matching"]


@dataclasses.dataclass(frozen=True, eq=True)
class _HostOracle:
    """A host solver wrapped as a JAX oracle; built by :func:`host_oracle`."""

    fn: Callable[..., Any]
    batched: bool = False
    name: str | None = None

    @property
    def __name__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        if self.name is not None:
            return self.name
        extra = ", batched=True" if self.batched else ""
        return f"host_oracle({name_of(self.fn)}{extra})"

    def __call__(self, theta: Any, *args: Any) -> jax.Array:
        theta = jnp.asarray(theta)
        if not jnp.issubdtype(theta.dtype, jnp.floating):
            raise TypeError(f"{self!r}: theta must have a floating dtype; got {theta.dtype}.")
        leaves, treedef = jax.tree_util.tree_flatten(args)
        leaves = [jnp.asarray(leaf) for leaf in leaves]
        return _jitted_host_call(self, treedef, theta, *leaves)


def _run_on_host(
    spec: _HostOracle,
    treedef: Any,
    theta_ndim: int,
    theta: Any,
    *leaves: Any,
) -> np.ndarray:
    """Host side of the callback: solves every instance of a (possibly batched) call.

    Under ``vmap_method="expand_dims"`` every input carries the same number of leading batch axes,
    of size 1 where the input is not batched; they are broadcast against each other here.
    """
    theta = np.asarray(theta)
    leaves = tuple(np.asarray(leaf) for leaf in leaves)
    nb = theta.ndim - theta_ndim
    core = theta.shape[nb:]
    batch_shape = np.broadcast_shapes(theta.shape[:nb], *(leaf.shape[:nb] for leaf in leaves))
    size = int(np.prod(batch_shape, dtype=np.int64))
    theta_b = np.broadcast_to(theta, batch_shape + core).reshape((size,) + core)
    leaves_b = [
        np.broadcast_to(leaf, batch_shape + leaf.shape[nb:]).reshape((size,) + leaf.shape[nb:])
        for leaf in leaves
    ]
    name = repr(spec)
    if spec.batched:
        z = np.asarray(spec.fn(theta_b, *jax.tree_util.tree_unflatten(treedef, leaves_b)))
        if z.shape != (size,) + core:
            raise ValueError(
                f"{name}: the batched solver returned shape {z.shape} for a batch of theta of "
                f"shape {theta_b.shape}; expected {theta_b.shape}."
            )
        out = z.astype(theta.dtype, copy=False)
    else:
        out = np.empty((size,) + core, theta.dtype)
        for i in range(size):
            args_i = jax.tree_util.tree_unflatten(treedef, [leaf[i] for leaf in leaves_b])
            z = np.asarray(spec.fn(theta_b[i], *args_i))
            if z.shape != core:
                raise ValueError(
                    f"{name}: the solver returned shape {z.shape} for theta of shape {core}; "
                    "an oracle must return an array shaped like theta."
                )
            out[i] = z
    return out.reshape(batch_shape + core)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _host_call(spec: _HostOracle, treedef: Any, theta: jax.Array, *leaves: jax.Array) -> jax.Array:
    callback = functools.partial(_run_on_host, spec, treedef, theta.ndim)
    result = jax.ShapeDtypeStruct(theta.shape, theta.dtype)
    z = jax.pure_callback(callback, result, theta, *leaves, vmap_method="expand_dims")
    # Inside shard_map the solution varies over the manual axes its inputs vary over; the
    # callback's result carries none, which the transforms would reject as a type mismatch.
    if getattr(jax.lax, "pcast", None) is None or not hasattr(jax, "typeof"):
        return z  # jax without varying manual axes in the types
    varying = frozenset().union(*(_varying_axes(x) for x in (theta, *leaves)))
    missing = tuple(sorted(varying - _varying_axes(z)))
    return jax.lax.pcast(z, missing, to="varying") if missing else z


def _varying_axes(x: jax.Array) -> frozenset:
    """The manual (``shard_map``) mesh axes over which ``x`` varies."""
    aval = jax.typeof(x)
    mat = getattr(aval, "manual_axis_type", None)
    if mat is not None:
        return frozenset(getattr(mat, "varying", ()))
    return frozenset(getattr(aval, "vma", ()))


@_host_call.defjvp
def _host_call_jvp(spec: _HostOracle, treedef: Any, primals: Any, tangents: Any) -> Any:
    raise TypeError(
        f"{spec!r} is a MAP oracle running on the host and cannot be differentiated directly: "
        "its output is piecewise constant in theta. Differentiate through an estimator such as "
        "imlejax.imle, or apply jax.lax.stop_gradient to the oracle's inputs."
    )


_jitted_host_call = jax.jit(_host_call, static_argnums=(0, 1))


def host_oracle(
    fn: Callable[..., Any], *, batched: bool = False, name: str | None = None
) -> Callable[..., jax.Array]:
    """Wraps a NumPy/SciPy MAP solver as a JAX oracle that works under ``jax.jit`` and ``jax.vmap``.

    ``fn(theta, *args) -> z`` solves one instance on NumPy arrays: ``theta`` in the caller's
    dtype, each array leaf of ``args`` as a NumPy array. The returned oracle calls it through
    :func:`jax.pure_callback` and casts ``z`` to ``theta.dtype`` (float64 stays float64 when 64-bit
    mode is on).

    Under ``jax.vmap`` (``vmap_method="expand_dims"``) the host is called once per batch, not once
    per instance: the batched and unbatched inputs are broadcast against each other on the host
    and ``fn`` is applied to each instance in a NumPy loop. With ``batched=True`` ``fn`` is instead
    called once with a leading batch axis on ``theta`` and on every leaf of ``args`` (size 1 outside
    ``vmap``, the flattened product of all batch axes under nested ``vmap``) and must return
    ``z`` with the shape of that batched ``theta``.

    The oracle is meant to be called inside an estimator, never differentiated itself: taking a
    JVP or gradient through it raises a ``TypeError`` that says so. Inputs with a zero tangent
    (for instance behind :func:`jax.lax.stop_gradient`) are fine. Python exceptions raised by
    ``fn`` surface as runtime errors of the computation.

    Args:
      fn: the host solver, ``fn(theta, *args) -> z`` for one instance (or a batch of instances
        with ``batched=True``); it must be deterministic and hashable (plain functions are).
      batched: whether ``fn`` takes a leading batch axis (see above).
      name: the ``repr`` and ``__name__`` of the oracle; ``host_oracle(<fn name>)`` by default.

    Returns:
      An oracle ``oracle(theta, *args) -> z`` with ``z.shape == theta.shape`` and
      ``z.dtype == theta.dtype``. It is immutable and hashable (equal for the same ``fn`` and
      options), so it can be closed over in jitted code or passed as a static argument.

    Raises:
      TypeError: at call time if ``theta`` is not floating; when the oracle is differentiated.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, imlejax as ij
      >>> def best_row(theta):  # one-hot of the row of the largest total score
      ...     z = np.zeros_like(theta)
      ...     z[np.argmax(theta.sum(axis=1))] = 1
      ...     return z
      >>> oracle = ij.host_oracle(best_row)
      >>> jax.jit(oracle)(jnp.array([[0.0, 1.0], [2.0, 0.5]]))
      Array([[0., 0.],
             [1., 1.]], dtype=float32)
      >>> jax.vmap(oracle)(jnp.ones((3, 2, 2))).shape
      (3, 2, 2)

    References:
      JAX documentation, *External callbacks* (``jax.pure_callback``).
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable; got {fn!r}.")
    if not isinstance(batched, bool):
        raise TypeError(f"batched must be a bool; got {batched!r}.")
    return _HostOracle(fn=fn, batched=batched, name=name)


def _linear_sum_assignment(theta: np.ndarray) -> np.ndarray:
    from scipy.optimize import linear_sum_assignment

    rows, cols = linear_sum_assignment(np.asarray(theta, np.float64), maximize=True)
    z = np.zeros(theta.shape, theta.dtype)
    z[rows, cols] = 1
    return z


@dataclasses.dataclass(frozen=True)
class _BipartiteMatching:
    """Maximum-weight perfect bipartite matching oracle; built by :func:`bipartite_matching`."""

    @property
    def __name__(self) -> str:
        return repr(self)

    def __repr__(self) -> str:
        return "bipartite_matching()"

    def __call__(self, theta: Any) -> jax.Array:
        theta = jnp.asarray(theta)
        if theta.ndim != 2 or theta.shape[0] != theta.shape[1]:
            raise ValueError(
                f"bipartite_matching(): theta must be a square (n, n) score matrix; got shape "
                f"{theta.shape}."
            )
        return _MATCHING_HOST(theta)


_MATCHING_HOST = _HostOracle(fn=_linear_sum_assignment, name="bipartite_matching()")


def bipartite_matching() -> Callable[[jax.Array], jax.Array]:
    """Returns the maximum-weight perfect bipartite matching oracle.

    The oracle maps scores ``theta`` of shape ``(n, n)`` (``theta[i, j]`` the score of matching
    row ``i`` to column ``j``) to the permutation matrix ``z`` maximising ``<z, theta>``, in
    ``theta``'s dtype. It runs :func:`scipy.optimize.linear_sum_assignment` with
    ``maximize=True`` on the host, in float64, through :func:`host_oracle`: it works under
    ``jax.jit`` and ``jax.vmap`` (one host call per batch) and cannot be differentiated directly.

    Returns:
      An oracle ``oracle(theta) -> z`` for floating square ``theta``; it raises ``ValueError`` at
      call time for a non-square ``theta`` and ``TypeError`` for a non-floating one.

    Example:
      >>> import jax.numpy as jnp, imlejax as ij
      >>> ij.bipartite_matching()(jnp.array([[1.0, 3.0], [2.0, 5.0]]))
      Array([[1., 0.],
             [0., 1.]], dtype=float32)

    References:
      Kuhn, *The Hungarian method for the assignment problem*, 1955; Crouse, *On implementing 2D
      rectangular assignment algorithms*, IEEE TAES 2016 (the SciPy solver).
    """
    return _BipartiteMatching()
