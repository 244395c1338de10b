"""AIMLE in a training loop: the adaptive step and its explicit state.

The top-k selection problem of the first tutorial, trained with the adaptive target
``ij.aimle``: the step ``lambda`` is no longer chosen by hand, it is ``beta * ||theta|| /
||g||`` (times the square root of the number of samples), and ``beta`` moves after every step so
that the per-sample gradient estimates keep about ``target_norm`` non-zero entries on average. The state is
an explicit value: the gradient returns the statistics of the backward passes as the cotangent
of the state, and ``target.update`` applies the rule once per step:

    python docs/tutorials/aimle_loop.py

Asserts that the statistics count every (instance, sample) estimate once, that the moving
average of non-zero entries settles near ``target_norm``, and that the selector is learnt.
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

m, d, k = 20, 8, 5  # items per instance, features per item, subset size
rng = np.random.default_rng(0)
w_true = rng.standard_normal(d, dtype=np.float32)  # the hidden scorer
select = jax.jit(jax.vmap(ij.top_k(k)))  # the oracle acts on one instance: vmap the batch

x = rng.standard_normal((1512, m, d), dtype=np.float32)  # features of 1512 instances
y = np.asarray(select(x @ w_true))  # gold subsets, exactly k ones each
x_train, y_train = jnp.asarray(x[:512]), jnp.asarray(y[:512])
x_test, y_test = jnp.asarray(x[512:]), jnp.asarray(y[512:])
key_noise = jax.random.key(0)

# --8<-- [start:sampler]
samples, batch = 4, 32
target = ij.aimle(target_norm=1.0, step=0.02)
sampler = ij.imle(ij.top_k(k), noise=ij.sog(k), target=target, samples=samples)
state = target.init()
print(state)
# --8<-- [end:sampler]


# --8<-- [start:loss]
def loss_fn(w, state, key, x, y):
    theta = x @ w
    keys = jax.random.split(key, x.shape[0])
    # One shared state for the whole batch: vmap over keys and instances only.
    z = jax.vmap(lambda kk, t: sampler(kk, t, state=state))(keys, theta)
    return jnp.mean(jnp.sum(jnp.abs(z - y[:, None, :]), axis=-1))


optimizer = optax.adam(0.05)


@jax.jit
def train_step(w, opt_state, state, step):
    key_batch, key_step = jax.random.split(jax.random.fold_in(key_noise, step))
    idx = jax.random.choice(key_batch, x_train.shape[0], (batch,), replace=False)
    loss, (grad, stats) = jax.value_and_grad(loss_fn, argnums=(0, 1))(
        w, state, key_step, x_train[idx], y_train[idx]
    )
    state = target.update(state, stats)  # the rule, applied once; stats never reach the optimiser
    updates, opt_state = optimizer.update(grad, opt_state, w)
    return optax.apply_updates(w, updates), opt_state, state, loss, stats.stats


# --8<-- [end:loss]

# --8<-- [start:train]
w = jnp.asarray(0.01 * rng.standard_normal(d, dtype=np.float32))
opt_state = optimizer.init(w)
trace = {"beta": [], "lam": [], "nnz": [], "loss": []}
for step in range(150):
    w, opt_state, state, loss, stats = train_step(w, opt_state, state, step)
    for name, value in (("beta", state.beta), ("lam", state.lam), ("nnz", state.nnz)):
        trace[name].append(float(value))
    trace["loss"].append(float(loss))
    if step % 25 == 0 or step == 149:
        print(
            f"step {step:3d}  loss {float(loss):6.3f}  beta {float(state.beta):.3f}  "
            f"lambda {float(state.lam):8.2f}  nnz (moving average) {float(state.nnz):5.2f}"
        )
# --8<-- [end:train]

# --8<-- [start:check]
print(f"statistics of the last step: {stats}")
assert float(stats.estimates) == batch * samples  # one per (instance, sample)
assert float(stats.calls) == batch  # one backward call per instance under vmap
settled = np.mean(trace["nnz"][-50:])
print(
    f"mean of the moving average over the last 50 steps: {settled:.2f} (target {target.target_norm})"
)
assert 0.7 < settled < 1.3
assert min(trace["beta"]) < 0.5  # beta = 1 at first gave too many non-zero entries
z = np.asarray(select(x_test @ w))  # the MAP selection of the learnt scorer
precision = float(np.mean(np.sum(z * y[512:], axis=-1) / k))
print(f"test precision {precision:.3f}")
assert precision > 0.95
# --8<-- [end:check]

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, axes = plt.subplots(1, 4, figsize=(12, 2.9))
for ax, name, label in zip(
    axes,
    ("loss", "beta", "lam", "nnz"),
    ("train loss", r"$\beta$", r"mean $\lambda$ of the step", "moving average of nnz"),
    strict=True,
):
    ax.plot(trace[name])
    ax.set_xlabel("step")
    ax.set_title(label)
axes[3].axhline(float(target.target_norm), color="gray", linestyle=":", label="target_norm")
axes[3].legend()
fig.suptitle("AIMLE state during training (top-5 of 20, generated data)")
fig.tight_layout()
FIGURES.mkdir(parents=True, exist_ok=True)
fig.savefig(FIGURES / "aimle_loop_traces.png", dpi=110)
plt.close(fig)
