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
import orbax.checkpoint as ocp
from flax import nnx
from tqdm import tqdm

from experiments.dvae.configs import METHODS, Method
from experiments.dvae.data import MNIST
from experiments.dvae.model import DiscreteVAE, reference_loss
from imlejax.flax.nnx import aimle_filter, apply_aimle_update

METRIC_KEYS = (
    "epoch",
    "train_loss",
    "train_bce",
    "train_kl",
    "test_loss",
    "test_bce",
    "test_kl",
    "test_loss_sample",
    "tau",
    "aimle_beta",
    "epoch_time_s",
    "eval_time_s",
)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a run (defaults: the paper's, §C.3).

    Attributes:
      method: key of :data:`experiments.dvae.configs.METHODS`.
      epochs: number of epochs.
      batch_size: examples per step.
      lr: Adam learning rate.
      adam_eps: Adam epsilon (1e-7, TensorFlow's default, as in the reference).
      seed: seed of the parameters, the noise and the data order.
      samples: ``None`` (one sample) or the number of samples ``S`` per example.
      max_train: use only the first ``max_train`` training images (``None``: all).
      max_test: use only the first ``max_test`` test images (``None``: all).
    """

    method: str
    epochs: int = 100
    batch_size: int = 100
    lr: float = 1e-3
    adam_eps: float = 1e-7
    seed: int = 0
    samples: int | None = None
    max_train: int | None = None
    max_test: int | None = None


# ------------------------------------------------------------------------------------------------
# Model, optimiser and the jitted epoch
# ------------------------------------------------------------------------------------------------


_BUILT: dict[Any, Any] = {}


class Estimators:
    """Builds a method's estimator once per (method, samples, temperature) in a process.

    Reusing the same estimator object keeps the model's graph definition, a static argument of
    the jitted epoch, equal between runs, so that the compiled epoch is reused.
    """

    def __init__(self, method: Method, samples: int | None):
        self.method = method
        self.samples = samples
        self._cache = _BUILT if method.name in METHODS else {}

    def tau(self, epoch: int) -> float | None:
        sched = self.method.tau_schedule
        return None if sched is None else float(sched(epoch))

    def get(self, epoch: int):
        key = (self.method.name, self.samples, self.tau(epoch))
        if key not in self._cache:
            self._cache[key] = self.method.build(self.samples, key[2])
        return self._cache[key]


def init_state(cfg: TrainConfig, estimators: Estimators):
    """Returns ``(graphdef, state)`` of ``(model, optimizer)`` for epoch 1."""
    built = estimators.get(1)
    model = DiscreteVAE(built, rngs=nnx.Rngs(params=cfg.seed, noise=cfg.seed + 1))
    tx = optax.adam(cfg.lr, eps=cfg.adam_eps)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    return nnx.split((model, optimizer))


def with_estimator(graphdef, state, built):
    """The graph definition of the same model with the code layer's estimator replaced."""
    model, optimizer = nnx.merge(graphdef, state)
    model.code.estimator = built.estimator
    model.code.map_fn = built.map_fn
    return nnx.split((model, optimizer))[0]


def loss_fn(model: DiscreteVAE, x: jax.Array):
    theta, _, logits = model(x)
    return reference_loss(theta, logits, x)


def train_step(model: DiscreteVAE, optimizer: nnx.Optimizer, x: jax.Array):
    """One Adam step on the batch ``x``; advances the AIMLE state when the model has one."""
    grad_fn = nnx.value_and_grad(loss_fn, argnums=nnx.DiffState(0, aimle_filter), has_aux=True)
    (loss, (bce, kl)), grads = grad_fn(model, x)
    grads = apply_aimle_update(model, grads)
    optimizer.update(model, grads)
    return jnp.stack([loss, bce, kl])


@functools.partial(jax.jit, static_argnums=(0, 4), donate_argnums=(1,))
def run_epoch(graphdef, state, x_train: jax.Array, perm: jax.Array, batch_size: int):
    """Trains one epoch; ``perm`` orders the examples. Returns the new state and per-step losses."""
    batches = x_train[perm].reshape(-1, batch_size, x_train.shape[-1])

    def body(state, x):
        model, optimizer = nnx.merge(graphdef, state)
        metrics = train_step(model, optimizer, x)
        return nnx.state((model, optimizer)), metrics

    return jax.lax.scan(body, state, batches)


@functools.partial(jax.jit, static_argnums=(0,))
def evaluate(graphdef, state, x: jax.Array, key: jax.Array):
    """Test metrics: the loss with the MAP code, and with one sampled code (``key``)."""
    model, _ = nnx.merge(graphdef, state)
    theta = model.encode(x)
    z_map = model.code(theta, deterministic=True)
    loss, (bce, kl) = reference_loss(theta, model.decode(z_map), x)
    z_s = model.code(theta, deterministic=False, rngs=key)
    loss_s, _ = reference_loss(theta, model.decode(z_s), x)
    return dict(test_loss=loss, test_bce=bce, test_kl=kl, test_loss_sample=loss_s)


@functools.partial(jax.jit, static_argnums=(0,))
def reconstruct(graphdef, state, x: jax.Array):
    """MAP codes and reconstructed pixel probabilities of ``x``."""
    model, _ = nnx.merge(graphdef, state)
    z = model.code(model.encode(x), deterministic=True)
    return z, jax.nn.sigmoid(model.decode(z))


def permutation(seed: int, epoch: int, n: int, batch_size: int) -> np.ndarray:
    """The order of the training examples in ``epoch`` (whole batches only)."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[: (n // batch_size) * batch_size].astype(np.int32)


# ------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------


def _is_key(x) -> bool:
    return jnp.issubdtype(jnp.asarray(x).dtype, jax.dtypes.prng_key)


def _to_arrays(state) -> dict[str, Any]:
    leaves = jax.tree.leaves(state)
    return {
        f"leaf_{i:04d}": (jax.random.key_data(x) if _is_key(x) else x) for i, x in enumerate(leaves)
    }


def _from_arrays(template, arrays: dict[str, Any]):
    leaves, treedef = jax.tree.flatten(template)
    out = []
    for i, t in enumerate(leaves):
        a = arrays[f"leaf_{i:04d}"]
        out.append(jax.random.wrap_key_data(a, impl=jax.random.key_impl(t)) if _is_key(t) else a)
    return jax.tree.unflatten(treedef, out)


def checkpoint_manager(directory: Path) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
    return ocp.CheckpointManager(directory.resolve(), options=options)


def save_checkpoint(mngr, epoch: int, state, history: list[dict]) -> None:
    mngr.save(
        epoch,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(_to_arrays(state)),
            history=ocp.args.JsonSave({"history": history}),
        ),
    )
    mngr.wait_until_finished()


def restore_checkpoint(mngr, epoch: int, template):
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, _to_arrays(template))
    restored = mngr.restore(
        epoch,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()
        ),
    )
    return _from_arrays(template, restored["state"]), restored["history"]["history"]


# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------


def write_metrics(out_dir: Path, cfg: TrainConfig, history: list[dict], extra: dict) -> None:
    method = METHODS[cfg.method]
    payload = {
        "method": cfg.method,
        "label": method.label,
        "description": method.description,
        "config": dataclasses.asdict(cfg),
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


def _aimle_beta(graphdef, state) -> float | None:
    model, _ = nnx.merge(graphdef, state)
    if model.code.aimle is None:
        return None
    return float(model.code.aimle.get_value().beta)


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
    if config_file.exists():
        saved = json.loads(config_file.read_text())
        mine = json.loads(json.dumps(dataclasses.asdict(cfg)))
        saved.pop("epochs", None)
        mine.pop("epochs", None)
        if saved != mine:
            raise ValueError(
                f"{out_dir} holds a run with another configuration ({saved}); use another --out."
            )
    config_file.write_text(json.dumps(dataclasses.asdict(cfg), indent=1))

    method = METHODS[cfg.method]
    estimators = Estimators(method, cfg.samples)
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
    eval_key = jax.random.key(cfg.seed + 2)
    compile_s = None
    done_here = 0
    epochs = range(start + 1, cfg.epochs + 1)
    bar = tqdm(epochs, desc=cfg.method, disable=not progress, initial=start, total=cfg.epochs)
    for epoch in bar:
        if stop_after is not None and done_here >= stop_after:
            break
        built = estimators.get(epoch)
        graphdef = with_estimator(graphdef, state, built)
        perm = jnp.asarray(permutation(cfg.seed, epoch, n_train, cfg.batch_size))
        if compile_s is None:
            t0 = time.perf_counter()
            run_epoch.lower(graphdef, state, x_train, perm, cfg.batch_size).compile()
            compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        state, losses = run_epoch(graphdef, state, x_train, perm, cfg.batch_size)
        losses = np.asarray(jax.block_until_ready(losses))
        epoch_time = time.perf_counter() - t0
        t0 = time.perf_counter()
        test = {
            k: float(v)
            for k, v in evaluate(
                graphdef, state, x_test, jax.random.fold_in(eval_key, epoch)
            ).items()
        }
        eval_time = time.perf_counter() - t0
        row = {
            "epoch": epoch,
            "train_loss": float(losses[:, 0].mean()),
            "train_bce": float(losses[:, 1].mean()),
            "train_kl": float(losses[:, 2].mean()),
            **test,
            "tau": estimators.tau(epoch),
            "aimle_beta": _aimle_beta(graphdef, state),
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
        bar.set_postfix(test=f"{row['test_loss']:.2f}", s_per_epoch=f"{epoch_time:.1f}")
        done_here += 1
    mngr.close()
    write_metrics(out_dir, cfg, history, {"compile_s": compile_s})
    return json.loads((out_dir / "metrics.json").read_text())


def final_state(cfg: TrainConfig, out_dir: Path):
    """``(graphdef, state)`` of the latest checkpoint in ``out_dir`` (for figures)."""
    estimators = Estimators(METHODS[cfg.method], cfg.samples)
    graphdef, state = init_state(cfg, estimators)
    mngr = checkpoint_manager(Path(out_dir) / "checkpoints")
    latest = mngr.latest_step()
    if latest is None:
        raise FileNotFoundError(f"no checkpoint in {out_dir}/checkpoints")
    state, _ = restore_checkpoint(mngr, latest, state)
    mngr.close()
    graphdef = with_estimator(graphdef, state, estimators.get(latest))
    return graphdef, state, latest
