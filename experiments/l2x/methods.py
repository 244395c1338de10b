r"""One configuration per k-subset estimator of the learning-to-explain experiments.

Every method selects ``k`` tokens of each review from the explainer's scores ``theta`` of shape
``(batch, L)``; in evaluation mode all of them select the top-k scores (the reference's
``discrete_logits``), so validation and test metrics use the same deterministic selection.

**Padding.** No method may select a padding token. Oracle-based methods (I-MLE, AIMLE, STE)
receive the scores with padding positions set to 0 and the boolean mask ``valid`` as an extra
oracle argument; the oracle :class:`MaskedTopK` replaces the (perturbed) scores of padding
positions by :data:`NEG` before its top-k, so neither the noise nor the target's step
``theta - lambda g`` can bring a padding token into a sample. Zeros rather than a large negative
value keep AIMLE's step :math:`\lambda = \beta\|\theta\|/\|g\|` a function of the real tokens'
scores only. The relaxations and SIMPLE take no oracle argument; they receive the scores with
padding positions set to :data:`NEG` (= -1e6), which puts zero mass there (``exp(-1e6 / t)``
underflows to 0 for every temperature used here) and zero gradient (``jnp.where``). A review
with fewer than ``k`` tokens has ``k - n`` padding positions selected; they embed to the zero
vector and are not counted by the subset precision.

Settings (``k`` = 10 unless ``--k`` says otherwise):

* ``imle_t30``: I-MLE, SoG(k, tau=30, 10 terms) noise, perturbation target lambda = 1000: Table 3's
  tau = 30 with the lambda of the reference layer ``IMLESubsetkLayer(k, _tau=30.0, _lambda=1000.0)``.
* ``imle_t10``: the reference notebook's call, ``IMLESubsetkLayer(select_k, _tau=10.0,
  _lambda=1000.0)``. The reference layer returns ``z - z'`` without dividing by lambda and draws its
  Gamma terms with TensorFlow's *rate* ``k/j`` (a noise about 6.5 times too small for k = 10);
  imlejax divides by lambda and uses the scale ``k/j``.
* ``aimle``: AIMLE, SoG(k, tau=1) noise, adaptive lambda with the learning-to-explain defaults of
  the reference code (``target_norm=1``, ``step=1e-4``), norms over the whole batch. AIMLE's step
  :math:`\lambda g` has the norm :math:`\beta\|\theta\|`; with SoG(k, tau=30) noise and the
  explainer's initial scores (of order 0.1) that step never changes a top-k sample
  (``MAP(theta + eps) = MAP(theta - lambda g + eps)``, zero gradient), and ``beta`` grows by only
  ``step`` = 1e-4 per batch, so the adaptive method gets the noise scale of the initial scores.
* ``l2x``: L2X's k-sample Concrete relaxation, t = 0.1.
* ``softsub``: SoftSub, t = 0.5.
* ``simple``: SIMPLE, exact k-subset samples of ``exp(<z, theta>)`` (tau = 1), gradient of the
  exact marginals.
* ``ste``: straight-through, forward top-k of ``theta + SoG(k, tau=30)``, identity backward.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import imlejax as ij

NEG = -1e6
SOG_TAU = 30.0
NOTEBOOK_TAU = 10.0
LAM = 1000.0
AIMLE_TAU = 1.0


@dataclasses.dataclass(frozen=True)
class MaskedTopK:
    """Top-k oracle of a batch of reviews: ``top_k(k)(where(valid, theta, NEG))`` per row."""

    k: int

    @property
    def __name__(self) -> str:
        return f"masked_top_k(k={self.k})"

    def __call__(self, theta: jax.Array, valid: jax.Array) -> jax.Array:
        return ij.top_k(self.k)(jnp.where(valid, theta, jnp.asarray(NEG, theta.dtype)))


@dataclasses.dataclass(frozen=True)
class OracleSelector:
    """An estimator on a masked oracle: ``est(key, where(valid, theta, 0), valid)``."""

    estimator: Callable[..., jax.Array]

    def __getattr__(self, name: str):
        # The wrapped estimator's attributes (target, stateful, noise, ...) for the Flax layer.
        if name == "estimator":
            raise AttributeError(name)
        return getattr(self.estimator, name)

    def __call__(self, key, theta, valid, **kwargs):
        return self.estimator(key, jnp.where(valid, theta, 0.0), valid, **kwargs)


@dataclasses.dataclass(frozen=True)
class RelaxedSelector:
    """A relaxation (or SIMPLE) on the scores with padding at ``NEG``; ``valid`` goes nowhere.

    The estimator acts on every row (review) of ``theta`` ``(batch, L)`` as an independent group.
    """

    estimator: Callable[..., jax.Array]

    def __call__(self, key, theta, valid):
        return self.estimator(key, jnp.where(valid, theta, jnp.asarray(NEG, theta.dtype)))


@dataclasses.dataclass(frozen=True)
class Built:
    """The selector of a method, its evaluation oracle and an initial AIMLE state."""

    estimator: Callable[..., jax.Array]
    map_fn: Callable[..., jax.Array]
    state: Any = None


@dataclasses.dataclass(frozen=True)
class Method:
    """A configuration: ``name`` (``--method``), plot ``label``, a ``description`` and
    ``build(k) -> Built``."""

    name: str
    label: str
    description: str
    build: Callable[[int], Built]


def _imle(tau: float, lam: float):
    def build(k: int) -> Built:
        est = ij.imle(MaskedTopK(k), noise=ij.sog(k, tau=tau), target=ij.pid(lam))
        return Built(OracleSelector(est), MaskedTopK(k))

    return build


def _aimle(k: int) -> Built:
    target = ij.aimle(target_norm=1.0, step=1e-4, batch_ndim=1)
    est = ij.imle(MaskedTopK(k), noise=ij.sog(k, tau=AIMLE_TAU), target=target)
    return Built(OracleSelector(est), MaskedTopK(k), target.init())


def _ste(k: int) -> Built:
    est = ij.ste(MaskedTopK(k), noise=ij.sog(k, tau=SOG_TAU))
    return Built(OracleSelector(est), MaskedTopK(k))


def _l2x(k: int) -> Built:
    return Built(RelaxedSelector(ij.l2x(k, temperature=0.1)), MaskedTopK(k))


def _softsub(k: int) -> Built:
    return Built(RelaxedSelector(ij.softsub(k, temperature=0.5)), MaskedTopK(k))


def _simple(k: int) -> Built:
    return Built(RelaxedSelector(ij.simple(k, tau=1.0)), MaskedTopK(k))


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "imle_t30",
            "I-MLE (τ=30)",
            f"I-MLE, SoG(k, τ={SOG_TAU:g}, 10 terms), perturbation target λ={LAM:g} (Table 3)",
            _imle(SOG_TAU, LAM),
        ),
        Method(
            "imle_t10",
            "I-MLE (τ=10)",
            f"I-MLE, SoG(k, τ={NOTEBOOK_TAU:g}, 10 terms), λ={LAM:g} (the reference notebook's call)",
            _imle(NOTEBOOK_TAU, LAM),
        ),
        Method(
            "aimle",
            "AIMLE",
            f"AIMLE, SoG(k, τ={AIMLE_TAU:g}), adaptive λ (target_norm=1, step=1e-4)",
            _aimle,
        ),
        Method("l2x", "L2X (t=0.1)", "L2X k-sample Concrete relaxation, t=0.1", _l2x),
        Method("softsub", "SoftSub (t=0.5)", "SoftSub relaxed top-k, t=0.5", _softsub),
        Method(
            "simple", "SIMPLE", "SIMPLE: exact k-subset samples (τ=1), marginals' gradient", _simple
        ),
        Method(
            "ste",
            "STE",
            f"straight-through, forward top-k of θ + SoG(k, τ={SOG_TAU:g})",
            _ste,
        ),
    ]
}

#: The methods of Table 3, in its row order.
TABLE3 = ("l2x", "softsub", "imle_t30")
