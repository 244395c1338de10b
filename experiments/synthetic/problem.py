"""The synthetic problem: a k-subset distribution and the loss ``L(theta) = E_p ||z - b||^2``."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from imlejax import ksubset


@dataclasses.dataclass(frozen=True)
class Problem:
    """One instance of the synthetic problem (temperature 1).

    Attributes:
      m: number of items.
      k: subset size.
      b: the target vector, shape ``(m,)``.
      states: all ``C(m, k)`` feasible states, shape ``(C(m, k), m)``.
      state_losses: ``||s - b||^2`` for every state ``s``.
    """

    m: int
    k: int
    b: jax.Array
    states: jax.Array
    state_losses: jax.Array

    @property
    def loss_min(self) -> float:
        """``min_z ||z - b||^2`` over the feasible states (the infimum of ``L``)."""
        return float(jnp.min(self.state_losses))

    @property
    def loss_max(self) -> float:
        """``max_z ||z - b||^2`` over the feasible states (the supremum of ``L``)."""
        return float(jnp.max(self.state_losses))


def make_problem(m: int = 10, k: int = 5, seed: int = 0) -> Problem:
    """Draws ``b ~ N(0, I_m)`` from ``jax.random.key(seed)`` and enumerates the states."""
    b = jax.random.normal(jax.random.key(seed), (m,), jnp.float32)
    states = ksubset.enumerate_states(m, k, dtype=jnp.float32)
    state_losses = jnp.sum((states - b[None]) ** 2, axis=-1)
    return Problem(m=m, k=k, b=b, states=states, state_losses=state_losses)


def pointwise_loss(problem: Problem, z: jax.Array) -> jax.Array:
    """``l(z) = ||z - b||^2`` for a state ``z`` of shape ``(..., m)``."""
    return jnp.sum((z - jnp.broadcast_to(problem.b, z.shape)) ** 2, axis=-1)


def expected_loss(problem: Problem, theta: jax.Array) -> jax.Array:
    """Exact ``L(theta) = sum_s softmax(<s, theta>)_s ||s - b||^2`` by enumeration of the states."""
    weights = jax.nn.softmax(problem.states @ theta)
    return jnp.dot(weights, problem.state_losses)


def expected_loss_marginals(problem: Problem, theta: jax.Array) -> jax.Array:
    """Exact ``L(theta) = k - 2 <mu(theta), b> + ||b||^2`` from the k-subset marginals ``mu``.

    Valid because every feasible ``z`` is binary with ``sum(z) = k``, so ``||z||^2 = k``.
    """
    mu = ksubset.marginals(theta, problem.k)
    b = problem.b
    return problem.k - 2 * jnp.dot(mu, b) + jnp.dot(b, b)


def exact_gradient(problem: Problem, theta: jax.Array) -> jax.Array:
    """``grad L(theta) = Cov_p(z, ||z - b||^2) = -2 Cov_p(z) b`` (autodiff of the enumeration)."""
    return jax.grad(lambda t: expected_loss(problem, t))(theta)


def describe(problem: Problem) -> dict:
    """JSON-ready description of the instance."""
    return {
        "m": problem.m,
        "k": problem.k,
        "b": np.asarray(problem.b).round(6).tolist(),
        "num_states": int(problem.states.shape[0]),
        "loss_min": problem.loss_min,
        "loss_max": problem.loss_max,
        "loss_at_zero": float(expected_loss(problem, jnp.zeros(problem.m))),
    }
