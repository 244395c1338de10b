"""Flax NNX layer around any imlejax estimator (written against Flax 0.12.8)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from imlejax._aimle import AIMLEState
from imlejax.flax._common import adaptive_target, map_output, resolve_map_fn

__all__ = ["AIMLEVariable", "DiscreteLayer", "aimle_filter", "apply_aimle_update", "split_aimle"]


class AIMLEVariable(nnx.Variable):
    """Module state holding an :class:`imlejax.AIMLEState` (not a trainable parameter).

    Read it with ``variable.get_value()``. Include it in the ``argnums`` filter of
    :func:`flax.nnx.grad` to receive the AIMLE statistics as its "gradient" (an
    :class:`imlejax.AIMLEState` whose ``stats`` are sums, see :class:`imlejax.AdaptiveTarget`),
    then apply the update rule with :func:`apply_aimle_update`.
    """


#: Filter of the variables to differentiate in a train step with AIMLE: the parameters and the
#: AIMLE state, e.g. ``nnx.grad(loss_fn, argnums=nnx.DiffState(0, aimle_filter))``.
aimle_filter = nnx.Any(nnx.Param, AIMLEVariable)


class DiscreteLayer(nnx.Module):
    r"""A discrete layer: ``z = est(key, theta, *args)`` in training, ``MAP(theta)`` in evaluation.

    Wraps any estimator of the library, that is any callable ``est(key, theta, *args)`` built by
    :func:`imlejax.imle`, :func:`imlejax.ste`, :func:`imlejax.gumbel_softmax`, ... The estimator
    (its oracle, noise, target and number of samples) is static configuration. In training mode
    each call draws a fresh key from the RNG stream named ``noise`` (the stream is forked at
    construction, like :class:`flax.nnx.Dropout`): the key of a call is
    ``jax.random.fold_in(layer.rngs.key[...], layer.rngs.count[...])`` and the count then grows by
    one. In deterministic mode (``deterministic=True``, :meth:`flax.nnx.Module.eval` or
    ``nnx.view(model, deterministic=True)``) the layer returns ``map_fn(theta, *args)``, the MAP
    state without noise, broadcast along the sample axis when the estimator returns ``S`` samples;
    no key is drawn and the AIMLE state is left as it is.

    ``theta`` is handed to the estimator as one instance. Oracles such as :func:`imlejax.top_k` and
    :func:`imlejax.argmax` act on groups along their axis, so a batch of shape ``(B, groups, m)``
    needs no ``vmap``; for an oracle of one instance, pass an estimator that vmaps itself over
    split keys, and give ``map_fn``.

    **AIMLE.** For an estimator built with an adaptive target (``ij.imle(..., target=ij.aimle())``)
    pass ``state=target.init()``: the layer keeps it in an :class:`AIMLEVariable` and calls
    ``est(key, theta, *args, state=state)``. The cotangent autodiff returns for that state holds
    additive statistics of the backward passes, so a jitted train step differentiates with respect
    to the parameters *and* the AIMLE variables, and :func:`apply_aimle_update` applies the rule
    of the estimator's target to each layer's state and returns the parameter gradients alone::

        @nnx.jit
        def train_step(model, optimizer, x):
            grads = nnx.grad(loss_fn, argnums=nnx.DiffState(0, aimle_filter))(model, x)
            grads = apply_aimle_update(model, grads)   # statistics out, parameter grads left
            optimizer.update(model, grads)

    The statistics must never reach the optimiser: :func:`apply_aimle_update` (or
    :func:`split_aimle`) removes them. Calling the layer several times in one loss is fine: the
    statistics add up, and the rule is applied once per step.

    Attributes:
      estimator: the wrapped estimator, ``est(key, theta, *args)``.
      map_fn: the oracle used in deterministic mode.
      deterministic: evaluation mode flag.
      rngs: the forked ``noise`` stream (``None`` when built without ``rngs``).
      aimle: the :class:`AIMLEVariable`, or ``None`` for a non-adaptive estimator.

    Example:
      >>> import jax, jax.numpy as jnp, imlejax as ij
      >>> from flax import nnx
      >>> from imlejax.flax.nnx import DiscreteLayer
      >>> est = ij.imle(ij.top_k(2), noise=ij.sog(2), target=ij.pid(10.0))
      >>> layer = DiscreteLayer(est, rngs=nnx.Rngs(noise=0))
      >>> theta = jnp.array([[0.1, 2.0, -1.0, 1.5]])
      >>> layer(theta).sum(-1).tolist()
      [2.0]
      >>> layer.eval()
      >>> layer(theta).tolist()
      [[0.0, 1.0, 0.0, 1.0]]
    """

    def __init__(
        self,
        estimator: Callable[..., jax.Array],
        *,
        map_fn: Callable[..., jax.Array] | None = None,
        state: AIMLEState | None = None,
        deterministic: bool = False,
        rng_collection: str = "noise",
        rngs: nnx.Rngs | nnx.RngStream | None = None,
    ):
        """Builds the layer.

        Args:
          estimator: ``est(key, theta, *args)``, e.g. ``ij.imle(ij.top_k(10), noise=ij.sog(10))``.
          map_fn: the MAP oracle of the deterministic mode; defaults to the estimator's
            ``.map_fn`` (the oracle it was built on).
          state: the initial :class:`imlejax.AIMLEState` for an adaptive estimator, else ``None``.
          deterministic: start in evaluation mode.
          rng_collection: name of the RNG stream the keys come from.
          rngs: :class:`flax.nnx.Rngs` with a ``noise`` stream (or the stream itself); may be
            ``None`` for a layer only used deterministically or called with ``rngs=``.
        """
        self.estimator = estimator
        self.map_fn = resolve_map_fn(estimator, map_fn)
        self.deterministic = deterministic
        self.rng_collection = rng_collection
        if isinstance(rngs, nnx.Rngs):
            self.rngs = rngs[rng_collection].fork()
        elif isinstance(rngs, nnx.RngStream):
            self.rngs = rngs.fork()
        elif rngs is None:
            self.rngs = nnx.data(None)
        else:
            raise TypeError(f"rngs must be nnx.Rngs, nnx.RngStream or None; got {type(rngs)}.")
        if state is not None and not isinstance(state, AIMLEState):
            raise TypeError(f"state must be an imlejax.AIMLEState (target.init()); got {state!r}.")
        if state is not None:
            adaptive_target(estimator)
        elif getattr(estimator, "stateful", False):
            raise ValueError(
                f"{estimator!r} has an adaptive target: pass state=target.init() to the layer."
            )
        # A copy, so that donating the module's buffers never deletes the caller's state.
        state = None if state is None else jax.tree.map(jnp.array, state)
        self.aimle = AIMLEVariable(state) if state is not None else nnx.data(None)

    def __call__(
        self,
        theta: jax.Array,
        *args: Any,
        deterministic: bool | None = None,
        rngs: nnx.Rngs | nnx.RngStream | jax.Array | None = None,
    ) -> jax.Array:
        """Returns the sample(s) of the estimator, or the MAP state in deterministic mode.

        Args:
          theta: the parameters of the discrete distribution (one instance for the estimator).
          *args: extra oracle arguments, passed unchanged.
          deterministic: overrides the layer's flag for this call.
          rngs: overrides the layer's stream for this call (``nnx.Rngs``, a stream or a key).

        Returns:
          The estimator's output (shape ``theta.shape`` or ``(S, *theta.shape)``).
        """
        if deterministic is None:
            deterministic = self.deterministic
        state = self.aimle.get_value() if self.aimle is not None else None
        if deterministic:
            return map_output(self.estimator, self.map_fn, theta, args, state)
        if rngs is None:
            rngs = self.rngs
        if isinstance(rngs, nnx.Rngs):
            key = rngs[self.rng_collection]()
        elif isinstance(rngs, nnx.RngStream):
            key = rngs()
        elif isinstance(rngs, jax.Array):
            key = rngs
        else:
            raise ValueError(
                "DiscreteLayer in training mode needs keys: build it with "
                f"rngs=nnx.Rngs({self.rng_collection}=seed) or call it with rngs=..."
            )
        if state is None:
            return self.estimator(key, theta, *args)
        return self.estimator(key, theta, *args, state=state)

    def set_view(self, deterministic: bool | None = None) -> None:
        """Used by ``nnx.view``: sets the deterministic (evaluation) flag."""
        if deterministic is not None:
            self.deterministic = deterministic


def split_aimle(grads: nnx.State) -> tuple[nnx.State, nnx.State]:
    """Splits a gradient state into the parameter gradients and the AIMLE statistics.

    Args:
      grads: the result of :func:`flax.nnx.grad` taken with a filter that includes
        :class:`AIMLEVariable` (such as :data:`aimle_filter`).

    Returns:
      ``(param_grads, aimle_stats)``: give the first to the optimiser, the second to
      :func:`apply_aimle_update` (or to each target's ``update``).
    """
    aimle, rest = nnx.split_state(grads, AIMLEVariable, ...)
    return rest, aimle


def _modules(model: nnx.Module) -> dict[tuple, Any]:
    iterate = getattr(nnx, "iter_modules", None)
    pairs = iterate(model) if iterate is not None else model.iter_modules()
    return {tuple(path): module for path, module in pairs}


def apply_aimle_update(model: nnx.Module, grads: nnx.State) -> nnx.State:
    """Applies each layer's AIMLE rule with the statistics in ``grads``; returns the rest.

    ``grads`` comes from :func:`flax.nnx.grad` (or ``nnx.value_and_grad``) taken with respect to a
    filter that includes :class:`AIMLEVariable` (such as :data:`aimle_filter`). Its AIMLE entries
    are the summed statistics of the backward passes (see :class:`imlejax.AdaptiveTarget`); for
    each :class:`DiscreteLayer` the new state is ``layer.estimator.target.update(state, stats)``,
    written into ``model``. Works inside ``nnx.jit``. Statistics gathered over devices must be
    summed (``psum``) before this call.

    Args:
      model: the module holding the :class:`DiscreteLayer` s.
      grads: the gradient state.

    Returns:
      ``grads`` without the AIMLE entries, ready for ``optimizer.update(model, grads)``.

    Example:
      >>> import jax, jax.numpy as jnp, optax, imlejax as ij
      >>> from flax import nnx
      >>> from imlejax.flax.nnx import DiscreteLayer, aimle_filter, apply_aimle_update
      >>> target = ij.aimle(target_norm=1.0, step=0.1)
      >>> est = ij.imle(ij.top_k(2), noise=ij.sog(2), target=target)
      >>> class Model(nnx.Module):
      ...     def __init__(self, rngs):
      ...         self.theta = nnx.Param(jnp.array([0.1, 2.0, -1.0, 1.5]))
      ...         self.layer = DiscreteLayer(est, state=target.init(), rngs=rngs)
      ...     def __call__(self):
      ...         return self.layer(self.theta[...])
      >>> model = Model(nnx.Rngs(noise=0))
      >>> optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
      >>> @nnx.jit
      ... def train_step(model, optimizer):
      ...     loss_fn = lambda m: jnp.sum(m() * jnp.arange(4.0))
      ...     grads = nnx.grad(loss_fn, argnums=nnx.DiffState(0, aimle_filter))(model)
      ...     optimizer.update(model, apply_aimle_update(model, grads))
      >>> train_step(model, optimizer)
      >>> round(float(model.layer.aimle.get_value().beta), 3)
      1.1
    """
    rest, aimle = split_aimle(grads)
    modules = _modules(model)
    for path, variable in nnx.to_flat_state(aimle):
        path = tuple(path)
        layer = modules.get(path[:-1])
        if not isinstance(layer, DiscreteLayer) or path[-1] != "aimle":
            raise TypeError(
                f"apply_aimle_update: the AIMLEVariable at {path} is not the state of a "
                "DiscreteLayer; update it with its target's update(state, stats)."
            )
        stats = variable.get_value() if hasattr(variable, "get_value") else variable
        target = adaptive_target(layer.estimator)
        variable_of_layer = layer.aimle
        assert variable_of_layer is not None
        variable_of_layer.set_value(target.update(variable_of_layer.get_value(), stats))
    return rest
