"""The synthetic problem: a k-subset distribution and the loss ``L(theta) = E_p ||z - b||^2``.

Two instances are used (both with ``m = 10``, ``k = 5``):

* ``reference`` (:func:`reference_instance`): the authors' code for appendix C.1 draws, from one
  ``numpy.random.RandomState(0)``, the initial ``theta_0 = randn(10)`` and then
  ``b = |randn(10)|`` (so every ``b_i > 0``; the appendix text says ``b ~ N(0, I)``);
* ``library`` (:func:`library_b`): ``b ~ N(0, I)`` from ``jax.random.key(seed)``, with
  ``theta_0 = 0`` (the uniform distribution over the 5-subsets).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from imlejax import ksubset

THETA0S = ("reference", "zeros")
BS = ("reference", "library")


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


def reference_instance(m: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``(theta_0, b)`` of the authors' code: ``RandomState(0)``: ``randn(m)``, then ``|randn(m)|``."""
    rng = np.random.RandomState(0)
    theta0 = rng.randn(m)
    b = np.abs(rng.randn(m))
    return theta0.astype(np.float32), b.astype(np.float32)


def library_b(m: int = 10, seed: int = 0) -> np.ndarray:
    """``b ~ N(0, I_m)`` drawn from ``jax.random.key(seed)``."""
    return np.asarray(jax.random.normal(jax.random.key(seed), (m,), jnp.float32))


def make_b(kind: str, m: int = 10, seed: int = 0) -> np.ndarray:
    """The target vector ``b`` of kind ``"reference"`` or ``"library"``."""
    if kind == "reference":
        return reference_instance(m)[1]
    if kind == "library":
        return library_b(m, seed)
    raise ValueError(f"b must be one of {BS}; got {kind!r}.")


def make_theta0(kind: str, m: int = 10) -> np.ndarray:
    """The initial ``theta`` of kind ``"reference"`` (``RandomState(0).randn(m)``) or ``"zeros"``."""
    if kind == "reference":
        return reference_instance(m)[0]
    if kind == "zeros":
        return np.zeros(m, np.float32)
    raise ValueError(f"theta0 must be one of {THETA0S}; got {kind!r}.")


def make_problem(m: int = 10, k: int = 5, seed: int = 0, b=None) -> Problem:
    """Enumerates the states; ``b`` defaults to ``library_b(m, seed)``."""
    b = library_b(m, seed) if b is None else np.asarray(b, np.float32)
    b = jnp.asarray(b, jnp.float32)
    states = ksubset.enumerate_states(m, k, dtype=jnp.float32)
    return Problem(m=m, k=k, b=b, states=states, state_losses=state_losses(states, b))


def state_losses(states: jax.Array, b: jax.Array) -> jax.Array:
    """``||s - b||^2`` for every state ``s`` (rows of ``states``)."""
    return jnp.sum((states - b[None]) ** 2, axis=-1)


def pointwise_loss(problem: Problem, z: jax.Array, b: jax.Array | None = None) -> jax.Array:
    """``l(z) = ||z - b||^2`` for a state ``z`` of shape ``(..., m)`` (``b``: the problem's)."""
    b = problem.b if b is None else b
    return jnp.sum((z - jnp.broadcast_to(b, z.shape)) ** 2, axis=-1)


def expected_loss(problem: Problem, theta: jax.Array, b: jax.Array | None = None) -> jax.Array:
    """Exact ``L(theta) = sum_s softmax(<s, theta>)_s ||s - b||^2`` by enumeration of the states."""
    losses = problem.state_losses if b is None else state_losses(problem.states, b)
    weights = jax.nn.softmax(problem.states @ theta)
    return jnp.dot(weights, losses)


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


def describe(problem: Problem, theta0=None) -> dict:
    """JSON-ready description of the instance."""
    out = {
        "m": problem.m,
        "k": problem.k,
        "b": np.asarray(problem.b).round(6).tolist(),
        "num_states": int(problem.states.shape[0]),
        "loss_min": problem.loss_min,
        "loss_max": problem.loss_max,
        "loss_at_zero": float(expected_loss(problem, jnp.zeros(problem.m))),
    }
    if theta0 is not None:
        out["theta0"] = np.asarray(theta0).round(6).tolist()
        out["loss_at_theta0"] = float(expected_loss(problem, jnp.asarray(theta0, jnp.float32)))
    return out
