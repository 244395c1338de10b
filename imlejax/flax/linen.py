"""Flax Linen layer around any imlejax estimator (written against Flax 0.12.8)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax

from imlejax._aimle import AIMLEState
from imlejax.flax._common import map_output, resolve_map_fn

__all__ = ["DiscreteLayer", "apply_aimle_update"]


class DiscreteLayer(nn.Module):
    r"""A discrete layer: ``z = est(key, theta, *args)`` in training, ``MAP(theta)`` in evaluation.

    Wraps any estimator of the library, a callable ``est(key, theta, *args)`` built by
    :func:`imlejax.imle`, :func:`imlejax.ste`, :func:`imlejax.gumbel_softmax`, ... In training mode
    the key of each call is ``self.make_rng('noise')``, so ``apply`` needs
    ``rngs={'noise': key}``. With ``deterministic=True`` (attribute or call argument) the layer
    returns ``map_fn(theta, *args)``, the MAP state without noise, broadcast along the sample axis
    when the estimator returns ``S`` samples.

    ``theta`` is handed to the estimator as one instance: oracles such as :func:`imlejax.top_k`
    act on groups along their axis, so a batch needs no ``vmap``.

    **AIMLE.** For an estimator built with an adaptive target, give ``init_state=target.init``:
    the state lives in the variable collection ``aimle`` (entry ``state``) and the estimator is
    called with ``state=``. The cotangent of the ``aimle`` collection holds the additive
    statistics of the backward passes, so a train step differentiates with respect to both
    collections, gives the first to the optimiser and the second to :func:`apply_aimle_update`::

        def loss_fn(params, aimle, x, key):
            x_hat = model.apply({"params": params, "aimle": aimle}, x, rngs={"noise": key})
            return jnp.mean((x_hat - x) ** 2)

        @jax.jit
        def train_step(params, aimle, opt_state, x, key):
            grads, stats = jax.grad(loss_fn, argnums=(0, 1))(params, aimle, x, key)
            updates, opt_state = tx.update(grads, opt_state, params)
            aimle = apply_aimle_update(target, aimle, stats)
            return optax.apply_updates(params, updates), aimle, opt_state

    Attributes:
      estimator: the wrapped estimator, ``est(key, theta, *args)``.
      map_fn: the oracle of the deterministic mode; ``None``: the estimator's ``.map_fn``.
      init_state: ``None``, or a function returning the initial :class:`imlejax.AIMLEState`
        (``target.init``) for an adaptive estimator.
      deterministic: evaluation mode flag (the call argument takes precedence).
      rng_collection: name of the RNG stream the keys come from.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> from imlejax.flax.linen import DiscreteLayer
      >>> layer = DiscreteLayer(ij.imle(ij.top_k(2), noise=ij.sog(2), target=ij.pid(10.0)))
      >>> theta = jnp.array([[0.1, 2.0, -1.0, 1.5]])
      >>> variables = layer.init({"noise": jax.random.key(0)}, theta)
      >>> z = layer.apply(variables, theta, rngs={"noise": jax.random.key(1)})
      >>> z.sum(-1).tolist()
      [2.0]
      >>> layer.apply(variables, theta, deterministic=True).tolist()
      [[0.0, 1.0, 0.0, 1.0]]
    """

    estimator: Callable[..., jax.Array]
    map_fn: Callable[..., jax.Array] | None = None
    init_state: Callable[[], AIMLEState] | None = None
    deterministic: bool = False
    rng_collection: str = "noise"

    @nn.compact
    def __call__(self, theta: jax.Array, *args: Any, deterministic: bool | None = None):
        """Returns the sample(s) of the estimator, or the MAP state in deterministic mode."""
        if deterministic is None:
            deterministic = self.deterministic
        map_fn = resolve_map_fn(self.estimator, self.map_fn)
        state = None
        if self.init_state is not None:
            state = self.variable("aimle", "state", self.init_state).value
        if deterministic:
            return map_output(self.estimator, map_fn, theta, args, state)
        key = self.make_rng(self.rng_collection)
        if state is None:
            return self.estimator(key, theta, *args)
        return self.estimator(key, theta, *args, state=state)


def apply_aimle_update(target: Any, aimle: Any, stats: Any) -> Any:
    """The ``aimle`` collection after one application of ``target``'s rule with ``stats``.

    Args:
      target: the adaptive target the layers' estimators were built with (``ij.aimle(...)``).
      aimle: the ``aimle`` collection the gradient was computed with.
      stats: its cotangent from ``jax.grad`` (summed over devices with ``psum`` if sharded).

    Returns:
      The new ``aimle`` collection: every :class:`imlejax.AIMLEState` in it updated.
    """
    if not callable(getattr(target, "update", None)):
        raise TypeError(f"target must be an adaptive target such as ij.aimle(); got {target!r}.")
    is_state = lambda x: isinstance(x, AIMLEState)  # noqa: E731
    return jax.tree.map(target.update, aimle, stats, is_leaf=is_state)
