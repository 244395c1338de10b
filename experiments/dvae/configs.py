"""The estimators of the discrete VAE, and the named presets of the reference setups.

Every method produces a code of 20 groups of 20 binary entries from the encoder's logits
``theta`` of shape ``(batch, 20, 20)``; I-MLE, AIMLE, STE and SIMPLE sample exactly 10 of 20 per
group (oracle ``ij.top_k(10)``, which acts on the last axis, so the whole batch is one call), the
Gumbel-softmax baseline relaxes a one-hot (1 of 20) code per group, as in the reference code.

Every place that builds an estimator is in this module. A method is built from
:class:`EstimatorSettings`: the number of samples ``S``, the temperature of the perturbations
(the ``tau`` of the noise, and SIMPLE's temperature), the initial ``beta`` of AIMLE and, for the
Gumbel-softmax baseline, the epoch's softmax temperature.

Presets (:data:`PRESETS`) name the two reference setups; each fixes the method and the settings
that move the test loss (temperature, samples, initial beta, reduction of the training loss over
samples, initialisation of the dense layers):

* ``tf-notebook``: the reference TensorFlow notebook of the I-MLE paper: I-MLE with SoG noise,
  ``tau = 10``, ``lambda = 10``, one sample, Glorot-uniform kernels and zero biases (Keras).
* ``aimle-readme``: the discrete-VAE command of the AIMLE PyTorch code's README: AIMLE with
  ``S = 10`` SoG samples at ``tau = 1``, central differences, the adaptive target with
  ``target_norm = 10``, ``step = 1e-3`` and ``beta_0 = 0``, the BCE summed over the samples and
  the initialisation of that code's ``DiscreteVAE`` module (``xavier_uniform_`` with the ReLU
  gain, zero biases).
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
TEMPERATURE = 10.0  # temperature of the perturbations in the TF notebook and the AIMLE CLI default

# AIMLE's adaptive target in the discrete VAE of the AIMLE code (its README's command line).
AIMLE_TARGET_NORM = 10.0
AIMLE_STEP = 1e-3
AIMLE_CENTRAL = True

# Gumbel-softmax temperature schedule of the reference TensorFlow notebook: at the start of epoch
# e (from 1), tau <- max(tau * exp(-anneal_rate * e), min_tau), from tau = 1.
GS_INIT_TAU = 1.0
GS_ANNEAL_RATE = 3e-4
GS_MIN_TAU = 0.5


@dataclasses.dataclass(frozen=True)
class EstimatorSettings:
    """What a method needs to build its estimator.

    Attributes:
      samples: ``None`` (one sample, no sample axis) or the number of samples ``S``.
      temperature: temperature ``tau`` of the perturbations (SoG and Gumbel noise, SIMPLE).
      init_beta: initial ``beta`` of AIMLE's adaptive target.
      gs_tau: the epoch's softmax temperature of the Gumbel-softmax baseline (``None``: not used).
    """

    samples: int | None = None
    temperature: float = TEMPERATURE
    init_beta: float = 1.0
    gs_tau: float | None = None


@dataclasses.dataclass(frozen=True)
class Built:
    """What a method gives the model: the estimator, its MAP oracle and an initial AIMLE state."""

    estimator: ij.Estimator
    map_fn: Callable[..., jax.Array]
    state: Any = None

    @property
    def noise(self) -> Any:
        """The estimator's noise (``None`` where it has none)."""
        return self.estimator.noise

    @property
    def target(self) -> Any:
        """The estimator's target distribution (``None`` where it has none)."""
        return self.estimator.target


def built(estimator: ij.Estimator, state: Any = None) -> Built:
    """``Built`` with the estimator's own MAP oracle."""
    return Built(estimator, estimator.map_fn, state)


@dataclasses.dataclass(frozen=True)
class Method:
    """A gradient estimator configuration.

    Attributes:
      name: identifier (``--method``).
      label: legend label.
      description: one line for the report; ``{tau}`` is replaced by the temperature.
      build: ``build(settings) -> Built``.
      tau_schedule: ``epoch -> softmax temperature`` (epochs from 1) or ``None``.
      uses_temperature: whether the perturbation temperature changes the method.
    """

    name: str
    label: str
    description: str
    build: Callable[[EstimatorSettings], Built]
    tau_schedule: Callable[[int], float] | None = None
    uses_temperature: bool = True


def gs_tau(epoch: int) -> float:
    """Temperature of epoch ``epoch`` (from 1): ``max(exp(-rate * e (e + 1) / 2), 0.5)``."""
    return max(GS_INIT_TAU * math.exp(-GS_ANNEAL_RATE * epoch * (epoch + 1) / 2), GS_MIN_TAU)


def sog_noise(settings: EstimatorSettings) -> ij.Noise:
    """SoG(k=10, tau, 10 terms): the sum over 10 coordinates is approximately Gumbel(0, tau)."""
    return ij.sog(K, tau=settings.temperature)


def gumbel_noise(settings: EstimatorSettings) -> ij.Noise:
    """Gumbel(0, tau) on each coordinate."""
    return ij.gumbel(settings.temperature)


def _imle(lam: float, noise_fn: Callable[[EstimatorSettings], Any]):
    def build(s: EstimatorSettings) -> Built:
        return built(ij.imle(ij.top_k(K), noise=noise_fn(s), target=ij.pid(lam), samples=s.samples))

    return build


def aimle_target(settings: EstimatorSettings) -> ij.AdaptiveTarget:
    """The adaptive target; ``batch_ndim=2``: the non-zero count is per group of 20."""
    return ij.aimle(
        target_norm=AIMLE_TARGET_NORM,
        step=AIMLE_STEP,
        central=AIMLE_CENTRAL,
        init_beta=settings.init_beta,
        batch_ndim=2,
    )


def _aimle(s: EstimatorSettings) -> Built:
    target = aimle_target(s)
    return built(
        ij.imle(ij.top_k(K), noise=sog_noise(s), target=target, samples=s.samples), target.init()
    )


def _ste(s: EstimatorSettings) -> Built:
    return built(ij.ste(ij.top_k(K), noise=sog_noise(s), samples=s.samples))


def _gumbel_softmax(s: EstimatorSettings) -> Built:
    tau = GS_INIT_TAU if s.gs_tau is None else s.gs_tau
    est = ij.gumbel_softmax(temperature=tau, hard=False, samples=s.samples)
    return Built(est, ij.argmax())


def _simple(s: EstimatorSettings) -> Built:
    # SIMPLE takes the grouped theta (batch, 20, 20) directly: one exact sample per group.
    return built(ij.simple(K, tau=s.temperature, samples=s.samples))


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "imle_sog_lam1",
            "I-MLE, SoG, λ=1",
            f"I-MLE, SoG({K}, τ={{tau}}, 10 terms) noise, perturbation target λ=1",
            _imle(1.0, sog_noise),
        ),
        Method(
            "imle_sog_lam10",
            "I-MLE, SoG, λ=10",
            f"I-MLE, SoG({K}, τ={{tau}}, 10 terms) noise, perturbation target λ=10",
            _imle(10.0, sog_noise),
        ),
        Method(
            "imle_gumbel",
            "I-MLE, Gumbel, λ=10",
            "I-MLE, Gumbel(0, τ={tau}) noise on each coordinate, perturbation target λ=10",
            _imle(10.0, gumbel_noise),
        ),
        Method(
            "aimle",
            "AIMLE (adaptive λ)",
            f"AIMLE, SoG({K}, τ={{tau}}) noise, adaptive λ (target_norm={AIMLE_TARGET_NORM:g}, "
            f"step={AIMLE_STEP:g}, central difference)",
            _aimle,
        ),
        Method(
            "ste",
            "STE",
            f"straight-through, forward MAP(θ + SoG({K}, τ={{tau}}))",
            _ste,
        ),
        Method(
            "gumbel_softmax",
            "Gumbel-softmax (1 of 20)",
            "Gumbel-softmax relaxation of a one-hot code per group, τ annealed from 1 to 0.5",
            _gumbel_softmax,
            tau_schedule=gs_tau,
            uses_temperature=False,
        ),
        Method(
            "simple",
            "SIMPLE",
            f"SIMPLE: exact {K}-subset samples of exp(<z, θ>/τ), τ={{tau}}, marginals' gradient",
            _simple,
        ),
    ]
}

#: Training-loss reductions over the sample axis: the BCE averaged over the ``S`` samples, or
#: summed over them (the AIMLE PyTorch code; this weights the KL term by ``1/S``).
LOSS_REDUCTIONS = ("mean", "sum")

#: Initialisations of the dense layers: ``glorot`` (Keras: Glorot-uniform kernels, zero biases),
#: ``xavier_relu`` (the AIMLE PyTorch code's ``DiscreteVAE``: ``torch.nn.init.xavier_uniform_``
#: with ``gain=calculate_gain("relu") = sqrt(2)``, zero biases) and ``torch`` (PyTorch's default
#: for ``nn.Linear``: kernel and bias uniform in ``±1/sqrt(fan_in)``).
INITS = ("glorot", "xavier_relu", "torch")

#: The settings a preset fixes (all of them can be overridden from the command line).
PRESET_FIELDS = ("method", "temperature", "samples", "init_beta", "loss_reduction", "init")

PRESETS: dict[str, dict[str, Any]] = {
    "tf-notebook": {
        "method": "imle_sog_lam10",
        "temperature": 10.0,
        "samples": None,
        "init_beta": 1.0,
        "loss_reduction": "mean",
        "init": "glorot",
    },
    "aimle-readme": {
        "method": "aimle",
        "temperature": 1.0,
        "samples": 10,
        "init_beta": 0.0,
        "loss_reduction": "sum",
        "init": "xavier_relu",
    },
}
