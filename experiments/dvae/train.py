"""Training of the discrete VAE: one jitted ``lax.scan`` per epoch, metrics, Orbax checkpoints.

Determinism: the parameters come from ``nnx.Rngs(params=seed)``, the perturbations from the
``noise`` stream ``nnx.Rngs(noise=seed + 1)`` (its counter is part of the checkpointed state), and
the order of the training examples in epoch ``e`` from ``numpy.random.default_rng([seed, e])``. A run
interrupted after epoch ``e`` resumes from the checkpoint of epoch ``e`` and continues exactly as an
uninterrupted run would.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm import tqdm

from experiments import checkpoint as ckpt
from experiments.dvae.configs import (
    INITS,
    LOSS_REDUCTIONS,
    METHODS,
    TEMPERATURE,
    Built,
    EstimatorSettings,
    Method,
)
from experiments.dvae.data import MNIST
from experiments.dvae.model import (
    DiscreteVAE,
    bce_per_code,
    kl_to_uniform,
    reference_loss,
)
from imlejax.flax.nnx import aimle_filter, apply_aimle_update

METRIC_KEYS = (
    "epoch",
    "train_loss",
    "train_bce",
    "train_kl",
    "test_loss_map",
    "test_bce_map",
    "test_kl",
    "test_loss_cli",
    "test_bce_cli",
    "tau",
    "aimle_beta",
    "aimle_beta_mean",
    "aimle_nnz",
    "aimle_nnz_mean",
    "aimle_lambda",
    "aimle_lambda_mean",
    "theta_rms",
    "epoch_time_s",
    "eval_time_s",
)

#: The two definitions of the test loss, by metric name.
TEST_LOSSES = {
    "test_loss_map": "MAP code, full KL",
    "test_loss_cli": "sampled codes, mean over S of the BCE + KL / S (AIMLE PyTorch CLI)",
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a run (defaults: the ``tf-notebook`` preset, the paper's §C.3).

    Attributes:
      method: key of :data:`experiments.dvae.configs.METHODS`.
      epochs: number of epochs.
      batch_size: examples per step.
      lr: Adam learning rate.
      adam_eps: Adam epsilon (1e-7, TensorFlow's default, as in the reference).
      seed: seed of the parameters, the noise and the data order.
      samples: ``None`` (one sample) or the number of samples ``S`` per example.
      temperature: temperature ``tau`` of the perturbations.
      init_beta: initial ``beta`` of AIMLE.
      loss_reduction: ``"mean"`` or ``"sum"`` of the BCE over the samples in the training loss.
      init: initialisation of the dense layers (``configs.INITS``).
      max_train: use only the first ``max_train`` training images (``None``: all).
      max_test: use only the first ``max_test`` test images (``None``: all).
      preset: the name of the preset the run was resolved from (a record; not compared on resume).
    """

    method: str
    epochs: int = 100
    batch_size: int = 100
    lr: float = 1e-3
    adam_eps: float = 1e-7
    seed: int = 0
    samples: int | None = None
    temperature: float = TEMPERATURE
    init_beta: float = 1.0
    loss_reduction: str = "mean"
    init: str = "glorot"
    max_train: int | None = None
    max_test: int | None = None
    preset: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}; got {self.method!r}.")
        if self.samples is not None and (
            isinstance(self.samples, bool) or not isinstance(self.samples, int) or self.samples < 1
        ):
            raise ValueError(f"samples must be None or an integer >= 1; got {self.samples!r}.")
        if not (isinstance(self.temperature, int | float) and self.temperature > 0):
            raise ValueError(f"temperature must be a number > 0; got {self.temperature!r}.")
        if not (isinstance(self.init_beta, int | float) and self.init_beta >= 0):
            raise ValueError(f"init_beta must be a number >= 0; got {self.init_beta!r}.")
        if self.loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(
                f"loss_reduction must be one of {LOSS_REDUCTIONS}; got {self.loss_reduction!r}."
            )
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS}; got {self.init!r}.")

    def settings(self, gs_tau: float | None = None) -> EstimatorSettings:
        """The estimator settings of this run (``gs_tau``: the epoch's softmax temperature)."""
        return EstimatorSettings(
            samples=self.samples,
            temperature=float(self.temperature),
            init_beta=float(self.init_beta),
            gs_tau=gs_tau,
        )

    @property
    def num_samples(self) -> int:
        """``S`` (1 when ``samples`` is ``None``)."""
        return 1 if self.samples is None else self.samples


# ------------------------------------------------------------------------------------------------
# Model, optimiser and the jitted epoch
# ------------------------------------------------------------------------------------------------


_BUILT: dict[Any, Any] = {}


class Estimators:
    """Builds a method's estimator once per (method, settings) in a process.

    Reusing the same estimator object keeps the model's graph definition, a static argument of
    the jitted epoch, equal between runs, so that the compiled epoch is reused.
    """

    def __init__(self, method: Method, cfg: TrainConfig):
        self.method = method
        self.cfg = cfg
        self._cache = _BUILT if method.name in METHODS else {}

    def tau(self, epoch: int) -> float | None:
        sched = self.method.tau_schedule
        return None if sched is None else float(sched(epoch))

    def get(self, epoch: int) -> Built:
        settings = self.cfg.settings(self.tau(epoch))
        key = (self.method.name, settings)
        if key not in self._cache:
            self._cache[key] = self.method.build(settings)
        return self._cache[key]


@functools.cache
def adam(lr: float, eps: float) -> optax.GradientTransformation:
    """One optax Adam object per ``(lr, eps)`` in a process.

    The transformation is static configuration of the optimiser, hence part of the graph
    definition that keys the compiled epoch; reusing the object reuses the compiled epoch.
    """
    return optax.adam(lr, eps=eps)


def init_state(cfg: TrainConfig, estimators: Estimators):
    """Returns ``(graphdef, state)`` of ``(model, optimizer)`` for epoch 1."""
    built = estimators.get(1)
    model = DiscreteVAE(built, rngs=nnx.Rngs(params=cfg.seed, noise=cfg.seed + 1), init=cfg.init)
    tx = adam(cfg.lr, cfg.adam_eps)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    return nnx.split((model, optimizer))


def with_estimator(graphdef, state, built):
    """The graph definition of the same model with the code layer's estimator replaced."""
    model, optimizer = nnx.merge(graphdef, state)
    model.code.estimator = built.estimator
    model.code.map_fn = built.map_fn
    return nnx.split((model, optimizer))[0]


def loss_fn(model: DiscreteVAE, x: jax.Array, reduction: str = "mean"):
    theta, _, logits = model(x)
    return reference_loss(theta, logits, x, reduction)


def _aimle_fields(model: DiscreteVAE) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(beta, nnz, lam)`` of the model's AIMLE state (zeros without one)."""
    if model.code.aimle is None:
        return jnp.zeros(()), jnp.zeros(()), jnp.zeros(())
    state = model.code.aimle.get_value()
    return state.beta, state.nnz, state.lam


def train_step(model: DiscreteVAE, optimizer: nnx.Optimizer, x: jax.Array, reduction: str = "mean"):
    """One Adam step on the batch ``x``; advances the AIMLE state when the model has one.

    Returns ``[loss, bce, kl, beta, nnz, lam]`` (AIMLE's state after the step: ``beta``, the
    moving average ``nnz`` and ``lam``, the mean step of this step's backward pass; zeros without
    AIMLE).
    """
    grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, aimle_filter), has_aux=True)
    (loss, (bce, kl)), grads = grad_fn(model, x, reduction)
    grads = apply_aimle_update(model, grads)
    optimizer.update(model, grads)
    beta, nnz, lam = _aimle_fields(model)
    return jnp.stack([loss, bce, kl, beta, nnz, lam])


@functools.partial(jax.jit, static_argnums=(0, 4, 5), donate_argnums=(1,))
def run_epoch(
    graphdef, state, x_train: jax.Array, perm: jax.Array, batch_size: int, reduction: str = "mean"
):
    """Trains one epoch; ``perm`` orders the examples. Returns the new state and per-step metrics."""
    batches = x_train[perm].reshape(-1, batch_size, x_train.shape[-1])

    def body(state, x):
        model, optimizer = nnx.merge(graphdef, state)
        metrics = train_step(model, optimizer, x, reduction)
        return nnx.state((model, optimizer)), metrics

    return jax.lax.scan(body, state, batches)


def eval_chunk(n: int, largest: int = 1000) -> int:
    """The largest divisor of ``n`` not above ``largest``: test images per evaluation chunk."""
    return max(d for d in range(1, min(n, largest) + 1) if n % d == 0)


@functools.partial(jax.jit, static_argnums=(0, 3))
def evaluate(graphdef, state, x: jax.Array, chunk: int, key: jax.Array):
    """Test metrics under both definitions, over chunks of ``chunk`` images.

    ``test_loss_map`` = ``BCE(MAP(theta)) + KL``; ``test_loss_cli`` = ``mean_s BCE(z_s) + KL / S``
    with the training-mode samples ``z_s`` (keys from ``key``), the AIMLE PyTorch CLI's test loss.
    Both are averaged over the images.
    """
    model, _ = nnx.merge(graphdef, state)
    xs = x.reshape(-1, chunk, x.shape[-1])
    keys = jax.random.split(key, xs.shape[0])

    def one(args):
        xb, k = args
        theta = model.encode(xb)
        bce_map = jnp.mean(bce_per_code(model.decode(model.code.map_fn(theta)), xb))
        kl = jnp.mean(kl_to_uniform(theta))
        z = model.code(theta, deterministic=False, rngs=k)
        per_code = bce_per_code(model.decode(z), xb)
        samples = per_code.size // xb.shape[0]
        bce_cli = jnp.mean(per_code)
        return jnp.stack([bce_map, kl, bce_cli, jnp.asarray(samples, per_code.dtype)])

    bce_map, kl, bce_cli, samples = jnp.mean(jax.lax.map(one, (xs, keys)), axis=0)
    return dict(
        test_loss_map=bce_map + kl,
        test_bce_map=bce_map,
        test_kl=kl,
        test_loss_cli=bce_cli + kl / samples,
        test_bce_cli=bce_cli,
    )


@functools.partial(jax.jit, static_argnums=(0, 3))
def diagnostics(graphdef, state, x: jax.Array, reduction: str, key: jax.Array):
    """On the batch ``x``: the RMS of ``theta`` and, with AIMLE, the step ``lambda`` it would take.

    ``lambda = beta ||theta|| sqrt(S) / ||g||`` (0 when ``g = 0``), with ``g`` the gradient of the
    training loss with respect to the sampled codes (the rule of :class:`imlejax.AdaptiveTarget`).
    """
    model, _ = nnx.merge(graphdef, state)
    theta = model.encode(x)
    out = {"theta_rms": jnp.sqrt(jnp.mean(theta**2))}
    if model.code.aimle is None:
        return out
    z = model.code(theta, deterministic=False, rngs=key)
    g = jax.grad(lambda z: reference_loss(theta, model.decode(z), x, reduction)[0])(z)
    samples = 1 if z.ndim == theta.ndim else z.shape[0]
    norm_theta = jnp.sqrt(jnp.sum(theta**2) * samples)
    norm_g = jnp.sqrt(jnp.sum(g**2))
    beta = model.code.aimle.get_value().beta
    out["aimle_lambda"] = jnp.where(norm_g > 0, beta * norm_theta / jnp.maximum(norm_g, 1e-30), 0.0)
    return out


@functools.partial(jax.jit, static_argnums=(0,))
def reconstruct(graphdef, state, x: jax.Array):
    """MAP codes and reconstructed pixel probabilities of ``x``."""
    model, _ = nnx.merge(graphdef, state)
    z = model.code.map_fn(model.encode(x))
    return z, jax.nn.sigmoid(model.decode(z))


def permutation(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
    """The order of the training examples in ``epoch`` (whole batches only)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[: (n // batch_size) * batch_size].astype(np.int32)


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------


def _key_name(entry) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(entry, attr):
            return str(getattr(entry, attr))
    return str(entry)


def _named_leaves(state) -> list[tuple[str, Any]]:
    """The leaves of ``state`` named by their path, e.g. ``0.enc1.kernel.value``."""
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    named = [(".".join(_key_name(e) for e in path), x) for path, x in leaves]
    if len({n for n, _ in named}) != len(named):
        raise ValueError("two leaves of the train state have the same path name")
    return named


def _to_arrays(state) -> dict[str, Any]:
    return {n: ckpt.as_array(x) for n, x in _named_leaves(state)}


def _from_arrays(template, arrays: dict[str, Any]):
    leaves, treedef = jax.tree.flatten(template)
    names = [n for n, _ in _named_leaves(template)]
    return jax.tree.unflatten(
        treedef, [ckpt.like(t, arrays[n]) for n, t in zip(names, leaves, strict=True)]
    )


def checkpoint_manager(directory: Path):
    return ckpt.checkpoint_manager(directory, max_to_keep=2)


def save_checkpoint(mngr, epoch: int, state, history: list[dict]) -> None:
    ckpt.save_checkpoint(mngr, epoch, state, history, to_arrays=_to_arrays)


def restore_checkpoint(mngr, epoch: int, template):
    """Restores ``(state, history)``; leaves are matched by path (or, for checkpoints written in
    the earlier layout, by their index in the flattened state)."""
    try:
        return ckpt.restore_checkpoint(mngr, epoch, template, _to_arrays, _from_arrays)
    except (ValueError, KeyError):
        return ckpt.restore_checkpoint(mngr, epoch, template)


# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------


def write_metrics(out_dir: Path, cfg: TrainConfig, history: list[dict], extra: dict) -> None:
    method = METHODS[cfg.method]
    payload = {
        "method": cfg.method,
        "label": method.label,
        "description": method.description.format(tau=f"{cfg.temperature:g}"),
        "config": dataclasses.asdict(cfg),
        "test_losses": TEST_LOSSES,
        "epochs_completed": len(history),
        **extra,
        "history": history,
    }
    (out_dir / "metrics.json").write_text(json.dumps(payload, indent=1))
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_KEYS)
        writer.writeheader()
        for row in history:
            writer.writerow({k: row.get(k) for k in METRIC_KEYS})


def _comparable(cfg: dict) -> dict:
    """The fields that must agree to resume a run (all but ``epochs`` and ``preset``)."""
    return {k: v for k, v in cfg.items() if k not in ("epochs", "preset")}


def train(
    cfg: TrainConfig,
    data: MNIST,
    out_dir: Path,
    *,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Trains (or resumes) a run in ``out_dir``; returns the metrics payload.

    Args:
      cfg: the run's configuration.
      data: the data set.
      out_dir: run folder: ``checkpoints/``, ``metrics.json``, ``metrics.csv``, ``recon.npz``.
      progress: show a tqdm bar over epochs.
      stop_after: stop after this many epochs *in this call* (the run stays resumable).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config_file = out_dir / "config.json"
    mine = json.loads(json.dumps(dataclasses.asdict(cfg)))
    if config_file.exists():
        saved = json.loads(config_file.read_text())
        if _comparable(saved) != _comparable(mine):
            raise ValueError(
                f"{out_dir} holds a run with another configuration ({saved}); use another --out."
            )
    config_file.write_text(json.dumps(mine, indent=1))

    method = METHODS[cfg.method]
    estimators = Estimators(method, cfg)
    graphdef, state = init_state(cfg, estimators)
    mngr = checkpoint_manager(out_dir / "checkpoints")
    history: list[dict] = []
    start = 0
    latest = mngr.latest_step()
    if latest is not None:
        state, history = restore_checkpoint(mngr, latest, state)
        start = latest

    x_train = jnp.asarray(data.x_train[: cfg.max_train])
    x_test = jnp.asarray(data.x_test[: cfg.max_test])
    n_train = x_train.shape[0]
    if n_train < cfg.batch_size:
        raise ValueError(f"{n_train} training images are fewer than a batch of {cfg.batch_size}.")
    chunk = eval_chunk(x_test.shape[0])
    x_diag = x_train[: cfg.batch_size]
    eval_key = jax.random.key(cfg.seed + 2)
    diag_key = jax.random.key(cfg.seed + 3)
    compile_s = None
    done_here = 0
    epochs = range(start + 1, cfg.epochs + 1)
    bar = tqdm(epochs, desc=out_dir.name, disable=not progress, initial=start, total=cfg.epochs)
    for epoch in bar:
        if stop_after is not None and done_here >= stop_after:
            break
        built = estimators.get(epoch)
        graphdef = with_estimator(graphdef, state, built)
        perm = jnp.asarray(permutation(cfg.seed, epoch, n_train, cfg.batch_size))
        epoch_args = (graphdef, state, x_train, perm, cfg.batch_size, cfg.loss_reduction)
        if compile_s is None:
            t0 = time.perf_counter()
            run_epoch.lower(*epoch_args).compile()
            compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        state, steps = run_epoch(*epoch_args)
        steps = np.asarray(jax.block_until_ready(steps))
        epoch_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        test = evaluate(graphdef, state, x_test, chunk, jax.random.fold_in(eval_key, epoch))
        test = {k: float(v) for k, v in test.items()}
        eval_time = time.perf_counter() - t0
        diag = diagnostics(
            graphdef, state, x_diag, cfg.loss_reduction, jax.random.fold_in(diag_key, epoch)
        )
        has_aimle = "aimle_lambda" in diag
        row = {
            "epoch": epoch,
            "train_loss": float(steps[:, 0].mean()),
            "train_bce": float(steps[:, 1].mean()),
            "train_kl": float(steps[:, 2].mean()),
            **test,
            "tau": estimators.tau(epoch),
            "aimle_beta": float(steps[-1, 3]) if has_aimle else None,
            "aimle_beta_mean": float(steps[:, 3].mean()) if has_aimle else None,
            "aimle_nnz": float(steps[-1, 4]) if has_aimle else None,
            "aimle_nnz_mean": float(steps[:, 4].mean()) if has_aimle else None,
            "aimle_lambda": float(diag["aimle_lambda"]) if has_aimle else None,
            "aimle_lambda_mean": float(steps[:, 5].mean()) if has_aimle else None,
            "theta_rms": float(diag["theta_rms"]),
            "epoch_time_s": epoch_time,
            "eval_time_s": eval_time,
        }
        history.append(row)
        save_checkpoint(mngr, epoch, state, history)
        z, recon = reconstruct(graphdef, state, x_test[:16])
        np.savez(
            out_dir / "recon.npz",
            x=np.asarray(x_test[:16]),
            z=np.asarray(z),
            recon=np.asarray(recon),
            epoch=epoch,
        )
        write_metrics(out_dir, cfg, history, {"compile_s": compile_s})
        bar.set_postfix(
            map=f"{row['test_loss_map']:.2f}",
            cli=f"{row['test_loss_cli']:.2f}",
            s_per_epoch=f"{epoch_time:.1f}",
        )
        done_here += 1
    mngr.close()
    write_metrics(out_dir, cfg, history, {"compile_s": compile_s})
    return json.loads((out_dir / "metrics.json").read_text())


def final_state(cfg: TrainConfig, out_dir: Path):
    """``(graphdef, state)`` of the latest checkpoint in ``out_dir`` (for figures)."""
    estimators = Estimators(METHODS[cfg.method], cfg)
    graphdef, state = init_state(cfg, estimators)
    mngr = checkpoint_manager(Path(out_dir) / "checkpoints")
    latest = mngr.latest_step()
    if latest is None:
        raise FileNotFoundError(f"no checkpoint in {out_dir}/checkpoints")
    state, _ = restore_checkpoint(mngr, latest, state)
    mngr.close()
    graphdef = with_estimator(graphdef, state, estimators.get(latest))
    return graphdef, state, latest
