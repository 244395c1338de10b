"""Training of the Warcraft experiment: a jitted train step, metrics, Orbax checkpoints.

The protocol of appendix C.4 (the defaults of :class:`TrainConfig`): Adam with learning rate
5e-4, divided by 10 at epochs 30 and 40 (an ``optax.piecewise_constant_schedule`` over steps),
50 epochs, batches of 70 maps. Validation every epoch, test at the end.

Determinism: the parameters come from ``nnx.Rngs(seed)``, the order of the training maps of
epoch ``e`` from ``numpy.random.default_rng([seed, e])``, and the noise of global step ``t`` from
``jax.random.fold_in(jax.random.key(seed + 1), t)``, so a run interrupted after epoch ``e``
resumes from the checkpoint of epoch ``e`` (parameters, batch statistics, Adam state with its step
count, AIMLE state) and continues exactly as an uninterrupted run would.
"""

from __future__ import annotations

import csv
import dataclasses
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

from experiments.checkpoint import checkpoint_manager, restore_checkpoint, save_checkpoint
from experiments.warcraft.configs import METHODS, Built, Method
from experiments.warcraft.data import Warcraft, channel_stats
from experiments.warcraft.generate import is_generated
from experiments.warcraft.metrics import hamming_loss, path_metrics, summarise
from experiments.warcraft.model import CostNet, ResNet18

METRIC_KEYS = (
    "epoch",
    "lr",
    "train_loss",
    "train_hamming",
    "val_optimal",
    "val_hamming_acc",
    "val_exact",
    "val_valid",
    "val_hamming",
    "val_cost_ratio",
    "aimle_beta",
    "aimle_lambda",
    "epoch_time_s",
    "step_time_s",
    "eval_time_s",
)


def default_milestones(epochs: int) -> tuple[int, int]:
    """The epochs of the two learning-rate drops: (30, 40) of 50, scaled to ``epochs``."""
    return (round(epochs * 30 / 50), round(epochs * 40 / 50))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a run (defaults: the paper's, appendix C.4).

    Attributes:
      method: key of :data:`experiments.warcraft.configs.METHODS`.
      k: grid size.
      epochs: number of epochs.
      batch_size: maps per step.
      lr: initial Adam learning rate.
      milestones: epochs after which the learning rate is divided by 10.
      seed: seed of the parameters, the data order and the noise.
      max_train: use only the first ``max_train`` training maps (``None``: all); likewise
        ``max_val`` and ``max_test``.
      eval_batch: maps per evaluation call.
    """

    method: str
    k: int = 12
    epochs: int = 50
    batch_size: int = 70
    lr: float = 5e-4
    milestones: tuple[int, int] = (30, 40)
    seed: int = 0
    max_train: int | None = None
    max_val: int | None = None
    max_test: int | None = None
    eval_batch: int = 100


def build_model(method: Method, k: int, mean, std, seed: int) -> nnx.Module:
    """The method's network with the given input statistics."""
    net = ResNet18 if method.network == "resnet18" else CostNet
    return net(k, mean, std, rngs=nnx.Rngs(seed))


class Trainer:
    """The jitted train and evaluation steps of one configuration.

    Attributes:
      cfg: the configuration.
      method: its :class:`Method`; ``built`` the estimator built for ``cfg.k``.
      train_def, eval_def: graph definitions of the model in training and evaluation mode.
      tx: the optax optimiser; ``steps_per_epoch`` whole batches per epoch.
    """

    def __init__(self, cfg: TrainConfig, mean, std, n_train: int):
        if cfg.method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}; got {cfg.method!r}.")
        if n_train < cfg.batch_size:
            raise ValueError(f"{n_train} training maps are fewer than a batch of {cfg.batch_size}.")
        self.cfg = cfg
        self.method = METHODS[cfg.method]
        self.built: Built = self.method.build(cfg.k)
        self.steps_per_epoch = n_train // cfg.batch_size
        self.mean, self.std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        model = build_model(self.method, cfg.k, self.mean, self.std, cfg.seed)
        model.train()
        self.train_def = nnx.split(model, nnx.Param, ...)[0]
        model.eval()
        self.eval_def = nnx.split(model, nnx.Param, ...)[0]
        spe = self.steps_per_epoch
        self.schedule = optax.piecewise_constant_schedule(
            cfg.lr, {m * spe: 0.1 for m in cfg.milestones if 0 < m < cfg.epochs}
        )
        self.tx = optax.adam(self.schedule)
        self.noise_key = jax.random.key(cfg.seed + 1)
        self.step = jax.jit(self._step, donate_argnums=(0,))
        self.predict = jax.jit(self._predict)

    def initial_state(self) -> dict:
        """A fresh state of epoch 0: parameters, other variables, Adam and AIMLE states."""
        model = build_model(self.method, self.cfg.k, self.mean, self.std, self.cfg.seed)
        _, params, other = nnx.split(model, nnx.Param, ...)
        state = self.built.state
        aimle = None if state is None else jax.tree.map(jnp.array, state)  # a copy (donation)
        return dict(params=params, other=other, opt=self.tx.init(params), aimle=aimle)

    # -- the loss of each kind of method -------------------------------------------------------

    def _loss(self, out: jax.Array, y: jax.Array, key: jax.Array, aimle: Any):
        """``(loss, hamming of the forward prediction)`` of the network output ``out``."""
        built = self.built
        if built.kind == "direct":
            loss = jnp.mean(optax.sigmoid_binary_cross_entropy(out, y))
            return loss, hamming_loss((out > 0).astype(y.dtype), y)
        if built.kind == "fy":
            loss = built.estimator(key, out, y) / out.shape[0]
            return loss, jnp.asarray(jnp.nan, out.dtype)
        z = built.estimator(key, out) if aimle is None else built.estimator(key, out, state=aimle)
        loss = hamming_loss(z, y)
        return loss, jax.lax.stop_gradient(loss)

    def _step(self, state: dict, maps: jax.Array, y: jax.Array, step: jax.Array):
        key = jax.random.fold_in(self.noise_key, step)
        model = nnx.merge(self.train_def, state["params"], state["other"])

        def loss_fn(model, aimle):
            return self._loss(model(maps), y, key, aimle)

        grad_fn = nnx.value_and_grad(
            loss_fn, argnums=(nnx.DiffState(0, nnx.Param), 1), has_aux=True
        )
        (loss, ham), (g_params, g_aimle) = grad_fn(model, state["aimle"])
        other = nnx.split(model, nnx.Param, ...)[2]  # batch statistics updated by the forward
        updates, opt = self.tx.update(g_params, state["opt"], state["params"])
        aimle = state["aimle"]
        if aimle is not None:
            aimle = self.built.next_state(aimle, g_aimle)
        new = dict(
            params=optax.apply_updates(state["params"], updates),
            other=other,
            opt=opt,
            aimle=aimle,
        )
        return new, jnp.stack([loss, ham])

    def _predict(self, state: dict, maps: jax.Array) -> jax.Array:
        """Predicted 0/1 paths (evaluation mode, no noise)."""
        model = nnx.merge(self.eval_def, state["params"], state["other"])
        out = model(maps)
        if self.built.kind == "direct":
            return (out > 0).astype(jnp.float32)
        return self.built.oracle(out)

    def costs(self, state: dict, maps: jax.Array) -> jax.Array:
        """The network output in evaluation mode (vertex costs, or logits for ``resnet18``)."""
        model = nnx.merge(self.eval_def, state["params"], state["other"])
        return model(maps)

    def lr(self, epoch: int) -> float:
        """The learning rate used during ``epoch`` (from 1)."""
        return float(self.schedule((epoch - 1) * self.steps_per_epoch))

    def permutation(self, epoch: int, n: int) -> np.ndarray:
        """The order of the training maps in ``epoch`` (whole batches only)."""
        perm = np.random.default_rng([self.cfg.seed, epoch]).permutation(n)
        return perm[: self.steps_per_epoch * self.cfg.batch_size].astype(np.int32)

    def evaluate(self, state: dict, split) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Per-map metrics (:func:`path_metrics`) and predicted paths of a split."""
        preds = []
        b = self.cfg.eval_batch
        for i in range(0, split.n, b):
            preds.append(np.asarray(self.predict(state, jnp.asarray(split.maps[i : i + b]))))
        pred = np.concatenate(preds)
        return path_metrics(pred, split.paths, split.weights), pred


_TRAINERS: dict[Any, Trainer] = {}


def get_trainer(cfg: TrainConfig, mean, std, n_train: int) -> Trainer:
    """A :class:`Trainer`, shared by the runs of one process with the same configuration (all but
    ``epochs``-independent fields equal), so that their jitted steps are compiled once."""
    key = (
        dataclasses.replace(cfg, max_val=None, max_test=None),
        np.asarray(mean, np.float32).tobytes(),
        np.asarray(std, np.float32).tobytes(),
        n_train,
    )
    if key not in _TRAINERS:
        _TRAINERS[key] = Trainer(cfg, mean, std, n_train)
    return _TRAINERS[key]


# ------------------------------------------------------------------------------------------------
# Outputs
# ------------------------------------------------------------------------------------------------


def data_label(data: Warcraft) -> str:
    """``"generated stand-in"`` for generated data, else ``"original"``."""
    return "generated stand-in" if is_generated(data.folder) else "original"


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


def _check_config(out_dir: Path, cfg: TrainConfig) -> None:
    config_file = out_dir / "config.json"
    mine = json.loads(json.dumps(dataclasses.asdict(cfg)))
    if config_file.exists():
        saved = json.loads(config_file.read_text())
        a, b = dict(saved), dict(mine)
        for key in ("epochs", "eval_batch", "max_test"):  # may change between resumed calls
            a.pop(key, None)
            b.pop(key, None)
        if a != b:
            raise ValueError(
                f"{out_dir} holds a run with another configuration ({saved}); use another --out."
            )
    config_file.write_text(json.dumps(mine, indent=1))


def train(
    cfg: TrainConfig,
    data: Warcraft,
    out_dir: Path,
    *,
    progress: bool = True,
    stop_after: int | None = None,
) -> dict:
    """Trains (or resumes) a run in ``out_dir``; returns the metrics payload.

    Args:
      cfg: the run's configuration.
      data: the data set (its grid size must be ``cfg.k``).
      out_dir: run folder: ``checkpoints/``, ``config.json``, ``metrics.json``, ``metrics.csv``,
        ``test_predictions.npz`` (after the last epoch).
      progress: show tqdm bars.
      stop_after: stop after this many epochs *in this call* (the run stays resumable).
    """
    if data.k != cfg.k:
        raise ValueError(f"the data has {data.k}x{data.k} maps but cfg.k is {cfg.k}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _check_config(out_dir, cfg)
    train_set = data.train
    n_train = train_set.n if cfg.max_train is None else min(cfg.max_train, train_set.n)
    val = data.val if cfg.max_val is None else data.val._replace(**_head(data.val, cfg.max_val))
    test = (
        data.test if cfg.max_test is None else data.test._replace(**_head(data.test, cfg.max_test))
    )
    mean, std = channel_stats(train_set.maps[:n_train])
    trainer = get_trainer(cfg, mean, std, n_train)
    state = trainer.initial_state()
    mngr = checkpoint_manager(out_dir / "checkpoints")
    history: list[dict] = []
    start = 0
    latest = mngr.latest_step()
    if latest is not None:
        state, history = restore_checkpoint(mngr, latest, state)
        start = latest
    extra = {
        "data": data_label(data),
        "data_folder": str(data.folder),
        "n_train": n_train,
        "n_val": val.n,
        "n_test": test.n,
        "steps_per_epoch": trainer.steps_per_epoch,
        "input_mean": mean.tolist(),
        "input_std": std.tolist(),
    }

    maps = jnp.asarray(train_set.maps[:n_train])
    paths = jnp.asarray(train_set.paths[:n_train])
    b, spe = cfg.batch_size, trainer.steps_per_epoch
    done_here = 0
    bar = tqdm(
        range(start + 1, cfg.epochs + 1),
        desc=cfg.method,
        disable=not progress,
        initial=start,
        total=cfg.epochs,
        mininterval=5,
    )
    for epoch in bar:
        if stop_after is not None and done_here >= stop_after:
            break
        order = jnp.asarray(trainer.permutation(epoch, n_train).reshape(spe, b))
        t0 = time.perf_counter()
        losses = []
        steps = tqdm(range(spe), desc=f"epoch {epoch}", leave=False, disable=not progress)
        step_times = []
        for i in steps:
            ts = time.perf_counter()
            idx = order[i]
            state, m = trainer.step(state, maps[idx], paths[idx], jnp.int32((epoch - 1) * spe + i))
            losses.append(np.asarray(m))  # blocks: the step's time is measured whole
            step_times.append(time.perf_counter() - ts)
        epoch_time = time.perf_counter() - t0
        losses = np.stack(losses)
        t0 = time.perf_counter()
        val_metrics, _ = trainer.evaluate(state, val)
        eval_time = time.perf_counter() - t0
        row = {
            "epoch": epoch,
            "lr": trainer.lr(epoch),
            "train_loss": float(losses[:, 0].mean()),
            "train_hamming": float(losses[:, 1].mean()),
            **summarise(val_metrics, "val"),
            "aimle_beta": None if state["aimle"] is None else float(state["aimle"].beta),
            "aimle_lambda": None if state["aimle"] is None else float(state["aimle"].lam),
            "epoch_time_s": epoch_time,
            # the first epoch's first step includes the compilation
            "step_time_s": float(np.median(step_times)),
            "eval_time_s": eval_time,
        }
        history.append(row)
        save_checkpoint(mngr, epoch, state, history)
        write_metrics(out_dir, cfg, history, extra)
        bar.set_postfix(val_opt=f"{row['val_optimal']:.1f}", s_epoch=f"{epoch_time:.0f}")
        done_here += 1
    mngr.close()
    if len(history) == cfg.epochs:
        t0 = time.perf_counter()
        test_metrics, pred = trainer.evaluate(state, test)
        extra["test"] = summarise(test_metrics, "test")
        extra["test_time_s"] = time.perf_counter() - t0
        n_fig = min(16, test.n)
        np.savez(
            out_dir / "test_predictions.npz",
            maps=test.maps[:n_fig],
            gold=test.paths[:n_fig],
            pred=pred[:n_fig],
            weights=test.weights[:n_fig],
            costs=np.asarray(trainer.costs(state, jnp.asarray(test.maps[:n_fig]))),
            optimal=test_metrics["optimal"][:n_fig],
        )
    write_metrics(out_dir, cfg, history, extra)
    return json.loads((out_dir / "metrics.json").read_text())


def _head(split, n: int) -> dict:
    return {f: getattr(split, f)[:n] for f in split._fields}


def final_state(cfg: TrainConfig, data: Warcraft, out_dir: Path):
    """``(trainer, state, epoch)`` of the latest checkpoint in ``out_dir``."""
    n_train = data.train.n if cfg.max_train is None else min(cfg.max_train, data.train.n)
    mean, std = channel_stats(data.train.maps[:n_train])
    trainer = get_trainer(cfg, mean, std, n_train)
    mngr = checkpoint_manager(Path(out_dir) / "checkpoints")
    latest = mngr.latest_step()
    if latest is None:
        raise FileNotFoundError(f"no checkpoint in {out_dir}/checkpoints")
    state, _ = restore_checkpoint(mngr, latest, trainer.initial_state())
    mngr.close()
    return trainer, state, latest
