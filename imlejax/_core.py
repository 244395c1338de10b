"""What every estimator shares: the estimator object and the perturb-and-MAP ``custom_vjp``.

An estimator is an :class:`Estimator`: called as ``est(key, theta, *args, state=None)`` on one
instance, with an honest ``repr`` and the deterministic oracle it was built on as ``.map_fn``.
:func:`perturb_and_map` builds the forward ``MAP(theta + eps_s)`` and a backward rule around it for
the estimators whose backward pass needs only the oracle (I-MLE, straight-through, blackbox).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from imlejax._sharding import batch_parallel
from imlejax._validation import as_key, check_theta, name_of, zero_cotangents

__all__ = ["Estimator", "check_oracle_output", "perturb_and_map", "prepare", "signed_oracle"]

_DEFAULT_SIGNATURE = inspect.Signature(
    [
        inspect.Parameter("key", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("theta", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL),
    ]
)


class Estimator:
    """A gradient estimator on one instance: ``est(key, theta, *args)``.

    Every factory of the library (:func:`imlejax.imle`, :func:`imlejax.ste`, ...) returns one.
    ``theta`` is the one differentiable argument; ``args`` are passed to the oracle (or the loss)
    with zero cotangents; ``key`` is a typed or raw PRNG key. For batches, ``jax.vmap`` over keys
    and instances. An estimator built with an adaptive target (:func:`imlejax.aimle`) is called
    with ``state=``.

    Attributes:
      name: the factory that built it, e.g. ``"imle"``.
      map_fn: the deterministic MAP oracle of the estimator (used by the Flax layers in
        evaluation mode), or ``None`` where there is none (score-function, losses).
      noise: the perturbation (a :class:`imlejax.Noise`), or ``None`` where there is none.
      target: the target distribution (I-MLE), or ``None``.
      samples: ``None`` (one sample shaped like ``theta``) or the size of the leading sample axis.
      stateful: whether calls need ``state=``.
      options: the other settings, for the ``repr``.

    Example:
      >>> import inspect, imlejax as ij
      >>> est = ij.imle(ij.top_k(2), noise=ij.gumbel(0.5), target=ij.pid(10.0), samples=4)
      >>> est.map_fn, est.samples
      (top_k(k=2), 4)
      >>> inspect.signature(est)
      <Signature (key, theta, *args)>
    """

    def __init__(
        self,
        name: str,
        impl: Callable[..., Any],
        *,
        map_fn: Callable | None = None,
        noise: Any = None,
        target: Any = None,
        samples: int | None = None,
        stateful: bool = False,
        options: dict[str, Any] | None = None,
        signature: inspect.Signature | None = None,
        subject: str | None = None,
    ) -> None:
        self.name = name
        self.map_fn = map_fn
        self.noise = noise
        self.target = target
        self.samples = samples
        self.stateful = stateful
        self.options = dict(options or {})
        self._impl = impl
        self._subject = subject
        sig = signature or _DEFAULT_SIGNATURE
        if stateful:
            state = inspect.Parameter("state", inspect.Parameter.KEYWORD_ONLY, default=None)
            sig = sig.replace(parameters=[*sig.parameters.values(), state])
        self.__signature__ = sig

    def __call__(self, key: Any, theta: Any, *args: Any, state: Any = None) -> Any:
        if self.stateful:
            if state is None:
                raise ValueError(
                    f"{self.name} has an adaptive target: call it with state=target.init() "
                    "(see ij.aimle)."
                )
            check = getattr(self.target, "check_state", None)
            if callable(check):
                check(state)
            return self._impl(key, theta, *args, state=state)
        if state is not None:
            raise TypeError(
                f"{self.name}: state= is only accepted with an adaptive target such as ij.aimle()."
            )
        return self._impl(key, theta, *args)

    def __repr__(self) -> str:
        parts = []
        if self._subject is not None:
            if self._subject:
                parts.append(self._subject)
        elif self.map_fn is not None:
            parts.append(name_of(self.map_fn))
        if self.noise is not None:
            parts.append(f"noise={self.noise!r}")
        if self.target is not None:
            parts.append(f"target={self.target!r}")
        if self.samples is not None:
            parts.append(f"samples={self.samples}")
        parts.extend(f"{k}={v!r}" for k, v in self.options.items())
        return f"{self.name}({', '.join(parts)})"


def check_oracle_output(map_fn: Callable, theta: jax.Array, args: tuple) -> None:
    """Checks at trace time that ``map_fn(theta, *args)`` has the shape and dtype of ``theta``."""
    name = name_of(map_fn)
    try:
        out = jax.eval_shape(map_fn, theta, *args)
    except (TypeError, ValueError) as err:
        msg = f"map_fn {name} failed on theta of shape {theta.shape}: {err}"
        raise type(err)(msg) from err
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"map_fn {name} must return a single array; got {jax.tree.structure(out)}.")
    if out.shape != theta.shape:
        raise ValueError(
            f"map_fn {name} must return an array of theta's shape {theta.shape}; got shape "
            f"{out.shape}."
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(
            f"map_fn {name} must return a floating array (0./1. entries); got {out.dtype}."
        )
    if out.dtype != theta.dtype:
        raise TypeError(f"map_fn {name} must return theta's dtype {theta.dtype}; got {out.dtype}.")


def signed_oracle(map_fn: Callable, minimize: bool) -> Callable:
    """``oracle(theta, args)`` maximising ``<z, theta>``: a cost oracle is called on ``-theta``.

    Batched calls (under ``jax.vmap``) are data-parallel under sharded ``jit``: each device solves
    the instances of its own shard (:func:`imlejax._sharding.batch_parallel`). The oracle is never
    differentiated: its output has a zero tangent.
    """

    def signed(theta, *args):
        return map_fn(-theta, *args) if minimize else map_fn(theta, *args)

    parallel = batch_parallel(signed)

    def oracle(theta, args):
        return parallel(theta, *args)

    return oracle


def prepare(
    key: Any, theta: Any, args: tuple, oracle: Callable, minimize: bool
) -> tuple[jax.Array, jax.Array]:
    """The key and the internal ``theta`` (``-w`` for costs), with the oracle's output checked."""
    key = as_key(key)
    theta = check_theta(theta)
    if minimize:
        theta = -theta
    check_oracle_output(lambda t, *a: oracle(t, a), theta, args)
    return key, theta


def _split_pytree(obj: Any) -> tuple[Any, Callable[[Any], Any]]:
    """``(leaves, rebuild)`` for a pytree of arrays; a non-pytree object is kept as a constant."""
    leaves, treedef = jax.tree.flatten(obj)
    if jax.tree_util.treedef_is_leaf(treedef) and leaves and leaves[0] is obj:
        return (), lambda _: obj
    return tuple(leaves), lambda ls: jax.tree.unflatten(treedef, list(ls))


# A backward rule: rule(solve, theta, eps, z, g, state, noise, params) -> (sum_s grad_s, state
# cotangent),
# where solve maps (S, *shape) parameters to (S, *shape) states, eps is the forward noise
# regenerated from the key, z = solve(theta + eps) the forward samples and g their cotangents.
BackwardRule = Callable[..., tuple[jax.Array, Any]]


def perturb_and_map(
    map_fn: Callable[..., jax.Array],
    *,
    noise: Any,
    samples: int | None,
    minimize: bool,
    rule: BackwardRule,
    rule_params: Any = None,
) -> Callable[..., jax.Array]:
    r"""``f(key, theta, *args, state=None)``: :math:`z_s = \mathrm{MAP}(\theta + \epsilon_s)`.

    Forward, ``S`` samples (``samples`` or 1) of the oracle on ``theta + eps``. Backward, ``rule``
    gets the noise regenerated from the key (only the key, ``theta``, the samples and ``args`` are
    saved) and returns the gradient with respect to ``theta``. ``args`` receive zero cotangents and
    ``noise`` and ``rule_params`` (a target) none. With ``minimize=True`` the oracle minimises
    costs ``w``: internally :math:`\theta = -w`, so the oracle receives ``w - eps`` and autodiff
    turns the gradient with respect to :math:`\theta` into one with respect to ``w``.
    """
    num = 1 if samples is None else samples
    noise_leaves, rebuild_noise = _split_pytree(noise)
    param_leaves, rebuild_params = _split_pytree(rule_params)

    oracle = signed_oracle(map_fn, minimize)

    def solve(thetas, args):
        return jax.vmap(lambda t: oracle(t, args))(thetas)

    def draw(key, theta, leaves):
        return rebuild_noise(leaves).sample(key, (num, *theta.shape), theta.dtype)

    @jax.custom_vjp
    def core(key, theta, args, noise_leaves, param_leaves, state):
        return solve(theta[None] + draw(key, theta, noise_leaves), args)

    def core_fwd(key, theta, args, noise_leaves, param_leaves, state):
        z = core(key, theta, args, noise_leaves, param_leaves, state)
        return z, (key, theta, z, args, noise_leaves, param_leaves, state)

    def core_bwd(res, g):
        key, theta, z, args, noise_leaves, param_leaves, state = res
        eps = draw(key, theta, noise_leaves)
        grad, state_ct = rule(
            lambda thetas: solve(thetas, args),
            theta,
            eps,
            z,
            g.astype(theta.dtype),
            state,
            rebuild_noise(noise_leaves),
            rebuild_params(param_leaves),
        )
        state_ct = _vary_as(state_ct, state)
        return (None, grad, zero_cotangents(args), None, None, state_ct)

    core.defvjp(core_fwd, core_bwd)

    def sampler(key, theta, *args, state=None):
        key, theta = prepare(key, theta, args, oracle, minimize)
        state = _vary_like(state, theta)
        z = core(key, theta, args, noise_leaves, param_leaves, state)
        return z[0] if samples is None else z

    return sampler


def _varying_axes(x: Any) -> frozenset:
    """The manual mesh axes (inside ``shard_map``) over which ``x`` varies."""
    aval = jax.typeof(x)
    mat = getattr(aval, "manual_axis_type", None)
    if mat is not None:
        return frozenset(getattr(mat, "varying", ()))
    return frozenset(getattr(aval, "vma", ()))


def _cast_varying(x: Any, axes: frozenset) -> Any:
    missing = tuple(sorted(axes - _varying_axes(x)))
    return jax.lax.pcast(x, missing, to="varying") if missing else x


def _vary_as(cotangent: Any, primal: Any) -> Any:
    """Each leaf of ``cotangent`` cast to vary over the axes its primal leaf varies over."""
    if cotangent is None or primal is None or getattr(jax.lax, "pcast", None) is None:
        return cotangent
    return jax.tree.map(lambda c, p: _cast_varying(c, _varying_axes(p)), cotangent, primal)


def _vary_like(state: Any, theta: jax.Array) -> Any:
    """``state`` cast to vary over the manual mesh axes ``theta`` varies over (in ``shard_map``).

    The backward pass returns per-device statistics for the state; with the state made varying
    before the ``custom_vjp``, autodiff transposes the cast into a ``psum``, so the statistics that
    come back for a replicated state are summed over the devices.
    """
    pcast = getattr(jax.lax, "pcast", None)
    if state is None or pcast is None or not hasattr(jax, "typeof"):
        return state
    axes = _varying_axes(theta)
    if not axes:
        return state

    return jax.tree.map(lambda x: _cast_varying(x, axes), state)
