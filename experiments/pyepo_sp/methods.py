r"""Every estimator configuration of the PyEPO shortest-path benchmark, in one place.

The model predicts arc costs :math:`\hat c \in \mathbb R^{40}`; the oracle ``sp(c) -> z``
(:mod:`experiments.pyepo_sp.oracle`) minimises :math:`\langle z, c\rangle` over the paths from the
top-left to the bottom-right node. A method's ``build(sp)`` returns a batch loss
``loss(key, c_hat, c, w, state)`` (``c_hat`` predicted costs ``(B, 40)``, ``c`` true costs,
``w`` true optimal paths, ``state`` the AIMLE state or ``None``) that the training loop
differentiates with respect to ``c_hat``'s parameters (and ``state``).

**PyEPO's I-MLE, exactly** (``pyepo.func.implicitMLE``, PyEPO 2.2.7, torch and JAX frontends).
Forward: :math:`\tilde c_s = \hat c + \sigma\epsilon_s` with :math:`\epsilon_s \sim
\mathrm{SoG}(\kappa, 1, 10)` (its ``sumGammaDistribution``: :math:`(\sum_{i=1}^{10}
\mathrm{Gamma}(1/\kappa, \mathrm{scale}=\kappa/i) - \log 10)/\kappa`), :math:`z_s =
\mathrm{sp}(\tilde c_s)`, output :math:`\bar z = \frac1S \sum_s z_s`; the loss is
``nn.L1Loss()(z_bar, w)`` (PyEPO's documented pattern for I-MLE). Backward with
:math:`d = \partial\ell/\partial\bar z`: :math:`\nabla_{\hat c} = \frac1S\sum_s
[\mathrm{sp}(\tilde c_s + \lambda d) - z_s] / \lambda` (a forward difference divided by
:math:`\lambda`, plus ``1e-7``). Two differences from imlejax's conventions matter:

* PyEPO *adds* the noise to the costs; imlejax's ``minimize=True`` gives the oracle
  :math:`c - \epsilon` (the perturb-and-MAP sample of :math:`p(z) \propto \exp(-\langle z,
  c\rangle/\tau)`). SoG noise is skewed, so the two differ; :class:`Reflected` negates the noise to
  reproduce PyEPO.
* PyEPO's step uses the gradient of the *mean* :math:`\bar z`; imlejax's uses the gradient of each
  sample, :math:`g_s = d/S`. imlejax's :math:`\lambda = S \lambda_{\mathrm{PyEPO}}` takes the same
  step, and the estimates are then identical: :math:`-\sum_s [z_s - z'_s]/(S\lambda_{\mathrm{PyEPO}})`.

PyEPO's setting here: :math:`S = 3`, :math:`\sigma = 1`, :math:`\lambda = 10`, :math:`\kappa = 5`
with 10 terms, so ``imle_pyepo`` uses ``imle(sp, noise=Reflected(sog(5, 1, 10)), target=pid(30),
samples=3, minimize=True)``. ``tests/test_pyepo_sp.py`` checks with a shared noise table that its
gradient equals PyEPO's torch ``implicitMLE`` gradient.

Solver calls per training instance and step are given as ``(forward, backward)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

import imlejax as ij

__all__ = ["METHODS", "Built", "Method", "Reflected", "TUNING", "imle_variant", "pyepo_imle"]

# PyEPO's I-MLE setting of the benchmark.
PYEPO_SAMPLES = 3
PYEPO_SIGMA = 1.0
PYEPO_LAMBDA = 10.0
PYEPO_KAPPA = 5
PYEPO_TERMS = 10


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Reflected:
    """The negated draws of another noise: ``sample = -noise.sample``.

    With ``minimize=True`` the oracle sees ``c - eps``; with ``Reflected(noise)`` it sees
    ``c + eps``, PyEPO's perturbation ``c + sigma * eps``.
    """

    noise: Any

    @property
    def tau(self) -> Any:
        return self.noise.tau

    def sample(self, key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
        return -self.noise.sample(key, shape, dtype)


@dataclasses.dataclass(frozen=True)
class Built:
    """A method's batch loss ``loss(key, c_hat, c, w, state) -> scalar`` and its AIMLE state.

    ``next_state(state, cotangent)`` returns the state of the next step from the cotangent that
    ``jax.grad`` gives for ``state`` (AIMLE: ``target.update``; ``None`` for stateless methods).
    """

    loss: Callable[..., jax.Array]
    state: Any = None
    next_state: Callable[[Any, Any], Any] | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    """A training configuration.

    Attributes:
      name: identifier (``--methods``).
      label: legend label.
      description: one line for the report.
      build: ``build(sp) -> Built``; ``None`` for the closed-form least-squares fit.
      solves: oracle calls per training instance and step, ``(forward, backward)``.
    """

    name: str
    label: str
    description: str
    build: Callable[[Callable], Built] | None
    solves: tuple[int, int] = (0, 0)


# ------------------------------------------------------------------------------------------------
# Losses on a batch
# ------------------------------------------------------------------------------------------------


def _l1(z_bar: jax.Array, w: jax.Array) -> jax.Array:
    """``torch.nn.L1Loss()``: the mean absolute error over the batch and the arcs.

    Written as ``sign(e) * e`` so that its derivative is ``sign(e)``, ``0`` where ``z_bar = w``,
    as in torch (``jnp.abs``'s derivative at 0 is 1, which would push every arc the sample already
    gets right, and change the I-MLE target).
    """
    e = z_bar - w
    return jnp.mean(jnp.sign(e) * e)


def _mse(a: jax.Array, b: jax.Array) -> jax.Array:
    """``torch.nn.MSELoss()``."""
    return jnp.mean((a - b) ** 2)


def _per_instance(est: Callable, key: jax.Array, c_hat: jax.Array) -> jax.Array:
    """Applies a one-instance estimator to every row of ``c_hat`` with one key per row."""
    keys = jax.random.split(key, c_hat.shape[0])
    return jax.vmap(est)(keys, c_hat)


def _path_loss(kind: str, z: jax.Array, c: jax.Array, w: jax.Array) -> jax.Array:
    """Loss of sampled paths ``z`` of shape ``(B, S, d)``.

    ``"l1"``: ``L1Loss(mean_s z_s, w)``; ``"regret"``: the mean over instances and samples of the
    true cost :math:`\\langle c, z_s\\rangle` (the regret up to a constant).
    """
    if kind == "l1":
        return _l1(jnp.mean(z, axis=1), w)
    if kind == "regret":
        return jnp.mean(jnp.sum(c[:, None, :] * z, axis=-1))
    raise ValueError(f"loss must be 'l1' or 'regret'; got {kind!r}.")


def pyepo_imle(sp: Callable, noise: Any = None) -> Callable:
    """PyEPO's I-MLE on one instance: ``imle(sp, noise=Reflected(sog(5, 1, 10)), target=pid(30),
    samples=3, minimize=True)``; ``noise`` replaces the (unreflected) SoG noise if given."""
    base = ij.sog(PYEPO_KAPPA, PYEPO_SIGMA, PYEPO_TERMS) if noise is None else noise
    return ij.imle(
        sp,
        noise=Reflected(base),
        target=ij.pid(PYEPO_SAMPLES * PYEPO_LAMBDA),
        samples=PYEPO_SAMPLES,
        minimize=True,
    )


def _imle_pyepo(sp: Callable) -> Built:
    est = pyepo_imle(sp)

    def batch_loss(key, c_hat, c, w, state):
        return _l1(jnp.mean(_per_instance(est, key, c_hat), axis=1), w)

    return Built(batch_loss)


def imle_variant(
    *,
    lam: float,
    samples: int = PYEPO_SAMPLES,
    noise: str = "sog",
    tau: float = PYEPO_SIGMA,
    loss: str = "l1",
    reflected: bool = False,
) -> Callable[[Callable], Built]:
    """I-MLE with the perturbation target ``pid(lam)`` on the minimisation oracle.

    ``noise``: ``"sog"`` for ``SoG(5, tau, 10)``, ``"gumbel"`` for ``Gumbel(0, tau)``;
    ``reflected=True`` adds it to the costs as PyEPO does (see :class:`Reflected`).
    """

    def build(sp: Callable) -> Built:
        base = ij.sog(PYEPO_KAPPA, tau, PYEPO_TERMS) if noise == "sog" else ij.gumbel(tau)
        est = ij.imle(
            sp,
            noise=Reflected(base) if reflected else base,
            target=ij.pid(lam),
            samples=samples,
            minimize=True,
        )

        def batch_loss(key, c_hat, c, w, state):
            return _path_loss(loss, _per_instance(est, key, c_hat), c, w)

        return Built(batch_loss)

    return build


def _aimle(target_norm: float, step: float, loss: str = "l1") -> Callable[[Callable], Built]:
    """AIMLE on the whole batch at once (norms over the batch, PyEPO's and the reference rule)."""

    def build(sp: Callable) -> Built:
        target = ij.aimle(target_norm=target_norm, step=step, batch_ndim=1)
        est = ij.imle(
            jax.vmap(sp),
            noise=ij.sog(PYEPO_KAPPA, PYEPO_SIGMA, PYEPO_TERMS),
            target=target,
            samples=PYEPO_SAMPLES,
            minimize=True,
        )

        def batch_loss(key, c_hat, c, w, state):
            z = est(key, c_hat, state=state)  # (S, B, d)
            return _path_loss(loss, jnp.swapaxes(z, 0, 1), c, w)

        return Built(batch_loss, target.init(), next_state=target.update)

    return build


def _blackbox(lam: float) -> Callable[[Callable], Built]:
    def build(sp: Callable) -> Built:
        est = ij.blackbox(sp, lam=lam, minimize=True)

        def batch_loss(key, c_hat, c, w, state):
            return _l1(_per_instance(est, key, c_hat), w)

        return Built(batch_loss)

    return build


def _perturbed(sigma: float, samples: int) -> Callable[[Callable], Built]:
    """Perturbed optimizer (DPO) on the costs with normal noise; MSE to the true path."""

    def build(sp: Callable) -> Built:
        est = ij.perturbed(sp, noise=ij.normal(sigma), num_samples=samples, minimize=True)

        def batch_loss(key, c_hat, c, w, state):
            return _mse(_per_instance(est, key, c_hat), w)

        return Built(batch_loss)

    return build


def _fenchel_young(sigma: float, samples: int) -> Callable[[Callable], Built]:
    """Perturbed Fenchel-Young loss on the costs against the true path ``w``."""

    def build(sp: Callable) -> Built:
        fy = ij.fenchel_young_loss(sp, noise=ij.normal(sigma), num_samples=samples, minimize=True)

        def batch_loss(key, c_hat, c, w, state):
            keys = jax.random.split(key, c_hat.shape[0])
            return jnp.mean(jax.vmap(fy)(keys, c_hat, w))

        return Built(batch_loss)

    return build


def _spo_plus(sp: Callable) -> Built:
    r"""SPO+ (Elmachtoub & Grigas 2022): :math:`-\min_z\langle 2\hat c - c, z\rangle +
    2\langle\hat c, w\rangle - \langle c, w\rangle`, gradient :math:`2(w - \mathrm{sp}(2\hat c - c))`."""

    def one(c_hat, c, w):
        q = 2 * c_hat - c
        zq = sp(jax.lax.stop_gradient(q))
        return -jnp.vdot(q, zq) + 2 * jnp.vdot(c_hat, w) - jnp.vdot(c, w)

    def batch_loss(key, c_hat, c, w, state):
        return jnp.mean(jax.vmap(one)(c_hat, c, w))

    return Built(batch_loss)


def _two_stage(sp: Callable) -> Built:
    def batch_loss(key, c_hat, c, w, state):
        return _mse(c_hat, c)

    return Built(batch_loss)


S = PYEPO_SAMPLES
METHODS: dict[str, Method] = {
    m.name: m
    for m in [
        Method(
            "2stage_ls",
            "2-stage, least squares",
            "2-stage: least-squares linear fit of the costs (closed form), then solve",
            None,
        ),
        Method(
            "2stage_mse",
            "2-stage, MSE (Adam)",
            "2-stage: linear model trained on the cost MSE with Adam, then solve",
            _two_stage,
        ),
        Method(
            "imle_pyepo",
            "I-MLE, PyEPO's setting",
            f"I-MLE exactly as PyEPO's implicitMLE: c + SoG({PYEPO_KAPPA}, σ={PYEPO_SIGMA:g}, "
            f"{PYEPO_TERMS} terms), S={S}, λ_PyEPO={PYEPO_LAMBDA:g} (imlejax λ={S * PYEPO_LAMBDA:g}), "
            "L1 loss to the true path",
            _imle_pyepo,
            solves=(S, S),
        ),
        Method(
            "imle_sog",
            "I-MLE, imlejax sign",
            f"as imle_pyepo with imlejax's perturbation c - SoG({PYEPO_KAPPA}, {PYEPO_SIGMA:g}, "
            f"{PYEPO_TERMS} terms) (perturb-and-MAP of exp(-<z, c>))",
            imle_variant(lam=S * PYEPO_LAMBDA),
            solves=(S, S),
        ),
        Method(
            "imle_tuned",
            "I-MLE, tuned (Gumbel, λ=3000, S=1)",
            "I-MLE, Gumbel(0, 1) noise, λ=3000, S=1, L1 loss to the true path: the lowest mean "
            "regret of the --tune grid (seeds 100-102, docs/results/pyepo_sp_tuning.csv)",
            imle_variant(lam=3000.0, samples=1, noise="gumbel"),
            solves=(1, 1),
        ),
        Method(
            "imle_tuned_regret",
            "I-MLE, tuned, regret loss (SoG, λ=100)",
            f"I-MLE, SoG({PYEPO_KAPPA}, 1, {PYEPO_TERMS}), S={S}, λ=100, loss <c, z> (the regret "
            "up to a constant): the best regret-loss SoG setting of the --tune grid",
            imle_variant(lam=100.0, samples=S, loss="regret"),
            solves=(S, S),
        ),
        Method(
            "aimle",
            "AIMLE",
            f"AIMLE (adaptive λ, target_norm=1, step=1e-3, norms over the batch), SoG({PYEPO_KAPPA}, "
            f"1, {PYEPO_TERMS}), S={S}, L1 loss",
            _aimle(target_norm=1.0, step=1e-3),
            solves=(S, S),
        ),
        Method(
            "blackbox",
            "Blackbox (λ=20)",
            "blackbox differentiation, λ=20 (PyEPO's blackboxOpt setting), L1 loss to the true path",
            _blackbox(20.0),
            solves=(1, 1),
        ),
        Method(
            "dpo",
            "Perturbed optimizer (MSE)",
            f"perturbed optimizer, normal noise σ=1, S={S}, MSE to the true path",
            _perturbed(1.0, S),
            solves=(S + 1, 0),
        ),
        Method(
            "fenchel_young",
            "Fenchel-Young",
            f"perturbed Fenchel-Young loss, normal noise σ=1, S={S}",
            _fenchel_young(1.0, S),
            solves=(S, 0),
        ),
        Method(
            "spo_plus",
            "SPO+",
            "SPO+ loss (one solve of 2ĉ - c per instance)",
            _spo_plus,
            solves=(1, 0),
        ),
    ]
}


# I-MLE settings searched by ``--tune`` (on seeds disjoint from the reported ones), with the
# least-squares 2-stage baseline of the same seeds for reference.
TUNING: dict[str, Method] = {"2stage_ls": METHODS["2stage_ls"]} | {
    f"imle_{noise}_{loss}_lam{lam:g}_s{samples}": Method(
        f"imle_{noise}_{loss}_lam{lam:g}_s{samples}",
        f"I-MLE {noise} {loss} λ={lam:g} S={samples}",
        f"I-MLE, {noise} noise (τ=1), {loss} loss, λ={lam:g}, S={samples}",
        imle_variant(lam=lam, samples=samples, noise=noise, loss=loss),
        solves=(samples, samples),
    )
    for noise in ("sog", "gumbel")
    for loss in ("l1", "regret")
    for lam in (
        (3.0, 30.0, 300.0, 1000.0, 3000.0) if loss == "l1" else (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    )
    for samples in (1, 3, 10)
}
