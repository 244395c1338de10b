"""One configuration per gradient estimator of the Warcraft experiment.

Every method sees the network's vertex costs ``w`` of shape ``(B, K, K)`` (non-negative) and the
gold paths ``y``. The oracle is ``ij.grid_shortest_path(neighbourhood=8)`` (a minimisation
oracle on one ``(K, K)`` grid, both end tiles counted) mapped over the batch with ``jax.vmap``,
so each estimator handles the whole batch as one instance: the noise is drawn for the whole
``(B, K, K)`` tensor at once (i.i.d. over tiles and maps, the same as per map), and AIMLE's
norms span the whole batch, as in the reference rule. The oracle clamps negative costs to zero
(blackbox differentiation's reference solver clips its backward-pass costs at zero the same way;
the reference I-MLE code instead shifts each grid by its minimum).

The loss of the path methods is the Hamming loss of the reference code,
``mean over maps of sum over tiles of z(1 - y) + (1 - z) y`` (averaged over samples too), so the
upstream gradient is ``(1 - 2y) / B`` per tile and ``lambda`` has the reference scale.

Settings (appendix C.4, Table 5, and the reference code ``nec-research/tf-imle``, ``WARCRAFT/``):

* ``blackbox``: blackbox differentiation, ``lambda = 20``.
* ``imle-sog``: I-MLE, perturbation target (Eq. 10), ``lambda = 20``, Sum-of-Gamma noise with
  ``k = int(1.3 K)`` (the reference's average path length heuristic), 10 terms, ``tau = 0.01``,
  one sample (Table 5, column "lambda = 20, tau = 0.01, Eq. (10)").
* ``imle-sog-tau1``: the same with ``tau = 1`` (the larger temperature of the reference's Fig. 11).
* ``imle-mapmap``: I-MLE, loss-gradient target (Eq. 14, ``theta' = -lambda dl/dz``), no noise,
  ``lambda = 50`` (the reference run of Table 5's "M-M, Eq. (14)" column). For the Hamming loss
  its gradient is the perceptron rule ``(MAP(w) - y) / lambda`` with respect to ``-w``.
* ``imle-mumu``: "mu-mu", ``S = 5`` samples with the same Sum-of-Gamma noise (``tau = 0.5``) on
  both sides and the loss-gradient target: each side estimates a marginal, and the gradient is
  ``mean_s [MAP(w - eps_s) - MAP(lambda g_s - eps_s)] / lambda``. The target is built from the
  gold paths alone. The reference's mu-mu row (97.2 % at 12 x 12) built its target from the
  **true vertex costs** (``MAP(w_true - eps)``), which the supervision (gold paths only) does not
  give, so that row is not reproduced. ``lambda = 250 = 50 S`` keeps the target step
  ``lambda g_s = +-50 / B`` per tile equal to ``imle-mapmap``'s (``g_s`` carries ``1/S``).
* ``aimle``: AIMLE (adaptive ``lambda``), the noise of ``imle-sog``, ``target_norm = 10`` non-zero
  gradient entries per map, ``step = 1e-3`` (the discrete VAE setting of the AIMLE code).
* ``perturbed-fy``: the perturbed optimizer with the Fenchel-Young loss (Berthet et al. 2020):
  Gumbel noise ``sigma = 1``, ``S = 5`` samples; the loss is averaged over the maps.
* ``ste``: straight-through, forward ``MAP(w)`` without noise, backward the identity.
* ``resnet18``: the baseline that predicts the path directly (no solver): ResNet18 with
  ``K^2`` sigmoid outputs and the binary cross-entropy, the prediction is the tiles with
  probability above 1/2 (see :mod:`experiments.warcraft.model`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

import imlejax as ij

LAMBDA_BB = 20.0
LAMBDA_MAPMAP = 50.0
MUMU_SAMPLES = 5
FY_SAMPLES = 5


def sog_k(k: int) -> int:
    """The Sum-of-Gamma ``k`` of the reference code: ``int(1.3 K)``, its path-length heuristic."""
    return int(k * 1.3)


def batched_oracle() -> Callable[[jax.Array], jax.Array]:
    """``ij.grid_shortest_path(neighbourhood=8)`` over a batch ``(B, K, K)`` of grids."""
    oracle = ij.grid_shortest_path(neighbourhood=8)
    solve = jax.vmap(oracle)
    solve.__name__ = f"vmap({oracle!r})"  # type: ignore[attr-defined]
    return solve


@dataclasses.dataclass(frozen=True)
class Built:
    """What a method gives the training step.

    Attributes:
      kind: ``"path"`` (``estimator(key, w[, state=]) -> z``, Hamming loss), ``"fy"``
        (``estimator(key, w, y) -> loss``) or ``"direct"`` (no solver).
      estimator: the estimator, or ``None`` for ``"direct"``.
      oracle: the batched oracle used for evaluation (``None`` for ``"direct"``).
      target: the AIMLE target (:func:`imlejax.aimle`), else ``None``.
    """

    kind: str
    estimator: Callable[..., Any] | None
    oracle: Callable[[jax.Array], jax.Array] | None
    target: Any = None

    @property
    def state(self) -> Any:
        """The initial AIMLE state, else ``None``."""
        return None if self.target is None else self.target.init()

    def next_state(self, state: Any, cotangent: Any) -> Any:
        """The AIMLE state after a step: the target's rule applied to the statistics that
        autodiff returned as the cotangent of ``state``."""
        return self.target.update(state, cotangent)


@dataclasses.dataclass(frozen=True)
class Method:
    """A gradient estimator configuration: ``build(k) -> Built`` for ``k x k`` grids."""

    name: str
    label: str
    description: str
    build: Callable[[int], Built]
    network: str = "costnet"  # or "resnet18"


def _blackbox(k: int) -> Built:
    oracle = batched_oracle()
    return Built("path", ij.blackbox(oracle, lam=LAMBDA_BB, minimize=True), oracle)


def _imle_sog(tau: float):
    def build(k: int) -> Built:
        oracle = batched_oracle()
        est = ij.imle(
            oracle, noise=ij.sog(sog_k(k), tau=tau), target=ij.pid(LAMBDA_BB), minimize=True
        )
        return Built("path", est, oracle)

    return build


def _imle_mapmap(k: int) -> Built:
    oracle = batched_oracle()
    est = ij.imle(
        oracle, noise=ij.no_noise(), target=ij.pid(LAMBDA_MAPMAP, alpha=0.0), minimize=True
    )
    return Built("path", est, oracle)


def _imle_mumu(k: int) -> Built:
    oracle = batched_oracle()
    est = ij.imle(
        oracle,
        noise=ij.sog(sog_k(k), tau=0.5),
        target=ij.pid(LAMBDA_MAPMAP * MUMU_SAMPLES, alpha=0.0),
        samples=MUMU_SAMPLES,
        minimize=True,
    )
    return Built("path", est, oracle)


def _aimle(k: int) -> Built:
    oracle = batched_oracle()
    target = ij.aimle(target_norm=10.0, step=1e-3, batch_ndim=1)
    est = ij.imle(oracle, noise=ij.sog(sog_k(k), tau=0.01), target=target, minimize=True)
    return Built("path", est, oracle, target)


def _perturbed_fy(k: int) -> Built:
    oracle = batched_oracle()
    loss = ij.fenchel_young_loss(
        oracle, noise=ij.gumbel(1.0), num_samples=FY_SAMPLES, minimize=True
    )
    return Built("fy", loss, oracle)


def _ste(k: int) -> Built:
    oracle = batched_oracle()
    return Built("path", ij.ste(oracle, noise=ij.no_noise(), minimize=True), oracle)


def _direct(k: int) -> Built:
    return Built("direct", None, None)


METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method("blackbox", "BB (λ=20)", "blackbox differentiation, λ = 20", _blackbox),
        Method(
            "imle-sog",
            "I-MLE, Eq. 10, SoG τ=0.01",
            "I-MLE, perturbation target (Eq. 10) λ = 20, SoG(int(1.3K), τ = 0.01, 10 terms)",
            _imle_sog(0.01),
        ),
        Method(
            "imle-sog-tau1",
            "I-MLE, Eq. 10, SoG τ=1",
            "I-MLE, perturbation target (Eq. 10) λ = 20, SoG(int(1.3K), τ = 1, 10 terms)",
            _imle_sog(1.0),
        ),
        Method(
            "imle-mapmap",
            "I-MLE MAP-MAP, Eq. 14",
            "I-MLE, loss-gradient target (Eq. 14) λ = 50, no noise (MAP-MAP)",
            _imle_mapmap,
        ),
        Method(
            "imle-mumu",
            "I-MLE μ-μ, Eq. 14",
            f"I-MLE μ-μ: {MUMU_SAMPLES} samples, SoG(int(1.3K), τ = 0.5) on both sides, "
            f"loss-gradient target λ = {LAMBDA_MAPMAP * MUMU_SAMPLES:g}",
            _imle_mumu,
        ),
        Method(
            "aimle",
            "AIMLE",
            "AIMLE: adaptive λ (target_norm 10, step 1e-3), SoG(int(1.3K), τ = 0.01)",
            _aimle,
        ),
        Method(
            "perturbed-fy",
            "Perturbed FY",
            f"perturbed optimizer, Fenchel-Young loss, Gumbel σ = 1, {FY_SAMPLES} samples",
            _perturbed_fy,
        ),
        Method("ste", "STE", "straight-through, forward MAP(w) without noise", _ste),
        Method(
            "resnet18",
            "ResNet18 (direct)",
            "ResNet18 predicting the path tiles directly (sigmoid, BCE), no solver",
            _direct,
            network="resnet18",
        ),
    ]
}
