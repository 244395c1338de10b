"""One configuration per gradient estimator of the discrete VAE.

Every method produces a code of 20 groups of 20 binary entries from the encoder's logits
``theta`` of shape ``(batch, 20, 20)``; I-MLE, AIMLE, STE and SIMPLE sample exactly 10 of 20 per
group (oracle ``ij.top_k(10)``, which acts on the last axis, so the whole batch is one call), the
Gumbel-softmax baseline relaxes a one-hot (1 of 20) code per group, as in the reference code.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import jax

import imlejax as ij

K = 10  # exactly K of M per group
GROUPS = 20
M = 20
SOG_TAU = 10.0  # temperature of the perturbations in the reference code (tf-imle and AIMLE)

# Gumbel-softmax temperature schedule of the reference TensorFlow notebook: at the start of epoch
# e (from 1), tau <- max(tau * exp(-anneal_rate * e), min_tau), from tau = 1.
GS_INIT_TAU = 1.0
GS_ANNEAL_RATE = 3e-4
GS_MIN_TAU = 0.5


@dataclasses.dataclass(frozen=True)
class Built:
    """What a method gives the model: the estimator, its MAP oracle and an initial AIMLE state."""

    estimator: Callable[..., jax.Array]
    map_fn: Callable[..., jax.Array]
    state: Any = None


@dataclasses.dataclass(frozen=True)
class Method:
    """A gradient estimator configuration.

    Attributes:
      name: identifier (``--method``).
      label: legend label.
      description: one line for the report.
      build: ``build(samples, tau) -> Built``; ``tau`` is the epoch's temperature for methods with
        a schedule and ``None`` otherwise.
      tau_schedule: ``epoch -> tau`` (epochs from 1) or ``None``.
    """

    name: str
    label: str
    description: str
    build: Callable[[int | None, float | None], Built]
    tau_schedule: Callable[[int], float] | None = None


def gs_tau(epoch: int) -> float:
    """Temperature of epoch ``epoch`` (from 1): ``max(exp(-rate * e (e + 1) / 2), 0.5)``."""
    return max(GS_INIT_TAU * math.exp(-GS_ANNEAL_RATE * epoch * (epoch + 1) / 2), GS_MIN_TAU)


def _imle(lam: float, noise_fn: Callable[[], Any]):
    def build(samples, tau):
        est = ij.imle(ij.top_k(K), noise=noise_fn(), target=ij.pid(lam), samples=samples)
        return Built(est, ij.top_k(K))

    return build


def _aimle(samples, tau):
    target = ij.aimle(target_norm=10.0, step=1e-3, central=True, batch_ndim=2)
    est = ij.imle(ij.top_k(K), noise=ij.sog(K, tau=SOG_TAU), target=target, samples=samples)
    return Built(est, ij.top_k(K), target.init())


def _ste(samples, tau):
    return Built(ij.ste(ij.top_k(K), noise=ij.sog(K, tau=SOG_TAU), samples=samples), ij.top_k(K))


def _gumbel_softmax(samples, tau):
    tau = GS_INIT_TAU if tau is None else tau
    return Built(ij.gumbel_softmax(temperature=tau, hard=False, samples=samples), ij.argmax())


def _simple(samples, tau):
    est = ij.simple(K, tau=SOG_TAU, samples=samples)
    return Built(est, ij.top_k(K))


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "imle_sog_lam1",
            "I-MLE, SoG, λ=1",
            f"I-MLE, SoG({K}, τ={SOG_TAU:g}, 10 terms) noise, perturbation target λ=1",
            _imle(1.0, lambda: ij.sog(K, tau=SOG_TAU)),
        ),
        Method(
            "imle_sog_lam10",
            "I-MLE, SoG, λ=10",
            f"I-MLE, SoG({K}, τ={SOG_TAU:g}, 10 terms) noise, perturbation target λ=10",
            _imle(10.0, lambda: ij.sog(K, tau=SOG_TAU)),
        ),
        Method(
            "imle_gumbel",
            "I-MLE, Gumbel, λ=10",
            f"I-MLE, Gumbel(0, τ={SOG_TAU:g}) noise on each coordinate, perturbation target λ=10",
            _imle(10.0, lambda: ij.gumbel(SOG_TAU)),
        ),
        Method(
            "aimle",
            "AIMLE (adaptive λ)",
            f"AIMLE, SoG({K}, τ={SOG_TAU:g}) noise, adaptive λ (target_norm=10, step=1e-3, "
            "central difference)",
            _aimle,
        ),
        Method(
            "ste",
            "STE",
            f"straight-through, forward MAP(θ + SoG({K}, τ={SOG_TAU:g}))",
            _ste,
        ),
        Method(
            "gumbel_softmax",
            "Gumbel-softmax (1 of 20)",
            "Gumbel-softmax relaxation of a one-hot code per group, τ annealed from 1 to 0.5",
            _gumbel_softmax,
            tau_schedule=gs_tau,
        ),
        Method(
            "simple",
            "SIMPLE",
            f"SIMPLE: exact {K}-subset samples of exp(<z, θ>/{SOG_TAU:g}), marginals' gradient",
            _simple,
        ),
    ]
}
