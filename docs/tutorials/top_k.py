"""Learning a top-k selector with I-MLE.

Each instance is a set of ``m`` items with ``d`` features. A hidden linear scorer ``w_true``
picks the gold subset ``y = top_k(x @ w_true)``. A linear model ``theta = x @ w`` is trained
through the top-k oracle with a Hamming loss: the loss only sees the discrete subset, and I-MLE
supplies the gradient. Runs in a few seconds on a CPU:

    python docs/tutorials/top_k.py

Asserts that the learnt scorer recovers the planted top-k on held-out instances and that its
direction matches ``w_true``. Writes ``top_k_training.png`` to ``docs/figures/tutorials/`` (or
to ``$IMLEJAX_TUTORIAL_FIGURES``).
"""

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax

import imlejax as ij

FIGURES = pathlib.Path(
    os.environ.get(
        "IMLEJAX_TUTORIAL_FIGURES",
        pathlib.Path(__file__).resolve().parents[1] / "figures" / "tutorials",
    )
)

# --8<-- [start:data]
m, d, k = 20, 8, 5  # items per instance, features per item, subset size
rng = np.random.default_rng(0)
w_true = rng.standard_normal(d, dtype=np.float32)  # the hidden scorer
select = jax.jit(jax.vmap(ij.top_k(k)))  # the oracle acts on one instance: vmap the batch

x = rng.standard_normal((1512, m, d), dtype=np.float32)  # features of 1512 instances
y = np.asarray(select(x @ w_true))  # gold subsets, exactly k ones each
x_train, y_train = jnp.asarray(x[:512]), jnp.asarray(y[:512])
x_test, y_test = jnp.asarray(x[512:]), jnp.asarray(y[512:])
key_noise = jax.random.key(0)
# --8<-- [end:data]

# --8<-- [start:sampler]
samples, batch = 4, 32
sampler = ij.imle(ij.top_k(k), noise=ij.sog(k), target=ij.pid(lam=100.0), samples=samples)
print(sampler)
# --8<-- [end:sampler]


# --8<-- [start:loss]
def loss_fn(w, key, x, y):
    theta = x @ w  # (batch, m): one score per item
    keys = jax.random.split(key, x.shape[0])  # one key per instance
    z = jax.vmap(sampler)(keys, theta)  # (batch, samples, m), exactly k ones per sample
    # Hamming distance to the gold subset, summed over items, averaged over samples and batch.
    return jnp.mean(jnp.sum(jnp.abs(z - y[:, None, :]), axis=-1))


optimizer = optax.adam(0.05)


@jax.jit
def train_step(w, opt_state, step):
    key_batch, key_step = jax.random.split(jax.random.fold_in(key_noise, step))
    idx = jax.random.choice(key_batch, x_train.shape[0], (batch,), replace=False)
    loss, grad = jax.value_and_grad(loss_fn)(w, key_step, x_train[idx], y_train[idx])
    updates, opt_state = optimizer.update(grad, opt_state, w)
    return optax.apply_updates(w, updates), opt_state, loss


@jax.jit
def precision(w, x, y):
    """Fraction of the gold items that the MAP selection of the learnt scorer picks."""
    z = jax.vmap(ij.top_k(k))(x @ w)  # evaluation: the deterministic oracle, no noise
    return jnp.mean(jnp.sum(z * y, axis=-1) / k)


# --8<-- [end:loss]

# --8<-- [start:train]
w = jnp.asarray(0.01 * rng.standard_normal(d, dtype=np.float32))
opt_state = optimizer.init(w)
history = [(0, float("nan"), float(precision(w, x_test, y_test)))]  # before training
print(f"before training: test precision {history[0][2]:.3f}")
for step in range(1, 101):
    w, opt_state, loss = train_step(w, opt_state, step)
    if step % 10 == 0:
        history.append((step, float(loss), float(precision(w, x_test, y_test))))
        print(
            f"step {step:3d}  train loss {history[-1][1]:6.3f}  test precision {history[-1][2]:.3f}"
        )
# --8<-- [end:train]

# --8<-- [start:check]
final = float(precision(w, x_test, y_test))
w_np = np.asarray(w)
cosine = float(w_np @ w_true / (np.linalg.norm(w_np) * np.linalg.norm(w_true)))
print(f"test precision {final:.3f}, cosine(w, w_true) = {cosine:.4f}")
assert history[0][2] < 0.5, "the initial scorer should be far from the gold selection"
assert final > 0.95, f"the learnt selector should recover the planted top-k; got {final:.3f}"
assert cosine > 0.98, f"the learnt direction should match w_true; got {cosine:.4f}"
# --8<-- [end:check]

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

steps, losses, precisions = map(np.array, zip(*history, strict=True))
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
ax1.plot(steps[1:], losses[1:], marker="o")
ax1.set_xlabel("step")
ax1.set_ylabel("train Hamming loss")
ax2.plot(steps, precisions, marker="o", color="C1")
ax2.axhline(k / m, color="gray", linestyle=":", label="chance (k/m)")
ax2.set_xlabel("step")
ax2.set_ylabel("test precision")
ax2.set_ylim(0, 1.02)
ax2.legend(loc="lower right")
fig.suptitle(f"I-MLE top-{k} of {m} items, SoG noise, generated data")
fig.tight_layout()
FIGURES.mkdir(parents=True, exist_ok=True)
fig.savefig(FIGURES / "top_k_training.png", dpi=110)
plt.close(fig)
