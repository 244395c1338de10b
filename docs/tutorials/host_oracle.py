"""Your own oracle on the host: a SciPy assignment solver through ``ij.host_oracle``.

``scipy.optimize.linear_sum_assignment`` solves a maximum-weight perfect matching on the host, in
NumPy. ``ij.host_oracle`` turns it into a JAX oracle (``jax.pure_callback``) that works under
``jax.jit`` and ``jax.vmap``, so I-MLE can train a model whose output is a matching:

    python docs/tutorials/host_oracle.py

Asserts that the wrapped solver passes ``ij.check_oracle``, that it finds the best of all
permutations on random instances (brute force), that the host is called as often as expected,
and that the trained model predicts the planted matchings of held-out instances.
"""

import itertools
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.optimize import linear_sum_assignment

import imlejax as ij

FIGURES = pathlib.Path(
    os.environ.get(
        "IMLEJAX_TUTORIAL_FIGURES",
        pathlib.Path(__file__).resolve().parents[1] / "figures" / "tutorials",
    )
)

# --8<-- [start:oracle]
calls = {"instances": 0}


def max_weight_matching(theta):
    """One instance: theta (n, n) NumPy scores -> 0/1 permutation matrix maximising <z, theta>."""
    calls["instances"] += 1
    rows, cols = linear_sum_assignment(theta, maximize=True)
    z = np.zeros_like(theta)
    z[rows, cols] = 1
    return z


oracle = ij.host_oracle(max_weight_matching)
n = 4
ij.check_oracle(oracle, jnp.ones((n, n)), exact_k=n)  # shape, dtype, 0/1, n ones
print(oracle)
# --8<-- [end:oracle]

# --8<-- [start:brute_force]
rng = np.random.default_rng(0)
for _ in range(20):
    scores = rng.standard_normal((n, n)).astype(np.float32)
    z = np.asarray(jax.jit(oracle)(scores))
    best = max(scores[range(n), list(p)].sum() for p in itertools.permutations(range(n)))
    assert np.isclose((z * scores).sum(), best, atol=1e-5)
    assert np.array_equal(z, np.asarray(ij.bipartite_matching()(scores)))
print("linear_sum_assignment matches brute force over all 24 permutations on 20 instances")
# --8<-- [end:brute_force]

# --8<-- [start:data]
d = 3  # features per (row, column) pair
w_true = rng.standard_normal(d, dtype=np.float32)
solve = jax.jit(jax.vmap(oracle))  # a batch of instances: one host call for the whole batch

x = rng.standard_normal((456, n, n, d), dtype=np.float32)
y = np.asarray(solve(x @ w_true))  # gold matchings
x_train, y_train = jnp.asarray(x[:256]), jnp.asarray(y[:256])
x_test, y_test = jnp.asarray(x[256:]), jnp.asarray(y[256:])
key_noise = jax.random.key(0)
# --8<-- [end:data]

# --8<-- [start:train]
samples, batch = 2, 16
# Every perfect matching has exactly n ones, so SoG(n) noise is made for it (see Concepts).
sampler = ij.imle(oracle, noise=ij.sog(n), target=ij.pid(lam=20.0), samples=samples)
optimizer = optax.adam(0.05)


def loss_fn(w, key, x, y):
    keys = jax.random.split(key, x.shape[0])
    z = jax.vmap(sampler)(keys, x @ w)  # (batch, samples, n, n)
    return jnp.mean(jnp.sum(jnp.abs(z - y[:, None]), axis=(-2, -1)))


@jax.jit
def train_step(w, opt_state, step):
    key_batch, key_step = jax.random.split(jax.random.fold_in(key_noise, step))
    idx = jax.random.choice(key_batch, x_train.shape[0], (batch,), replace=False)
    loss, grad = jax.value_and_grad(loss_fn)(w, key_step, x_train[idx], y_train[idx])
    updates, opt_state = optimizer.update(grad, opt_state, w)
    return optax.apply_updates(w, updates), opt_state, loss


@jax.jit
def accuracy(w):
    """Fraction of held-out instances whose predicted matching is exactly the gold one."""
    z = solve(x_test @ w)
    return jnp.mean(jnp.all(z == y_test, axis=(-2, -1)))


w = jnp.zeros(d)  # all scores equal: the solver returns the same matching everywhere
opt_state = optimizer.init(w)
history = [(0, float(accuracy(w)))]
print(f"before training: test accuracy {history[0][1]:.3f}")
calls["instances"] = 0
steps = 60
for step in range(1, steps + 1):
    w, opt_state, loss = train_step(w, opt_state, step)
    if step % 10 == 0:
        history.append((step, float(accuracy(w))))
        print(f"step {step:3d}  train loss {float(loss):6.3f}  test accuracy {history[-1][1]:.3f}")
# --8<-- [end:train]

# --8<-- [start:check]
per_step = 2 * batch * samples  # forward and target solves, every (instance, sample)
evaluations = len(history) - 1
assert calls["instances"] == steps * per_step + evaluations * x_test.shape[0], calls
print(f"host solves: {calls['instances']} ({per_step} per training step)")
final = history[-1][1]
assert history[0][1] < 0.5 and final > 0.9, history
print(f"test accuracy {history[0][1]:.3f} -> {final:.3f}")
# --8<-- [end:check]

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, axes = plt.subplots(1, 3, figsize=(9, 3.1))
steps_, accs = zip(*history, strict=True)
axes[0].plot(steps_, accs, marker="o")
axes[0].set_xlabel("step")
axes[0].set_ylabel("test accuracy (exact matching)")
axes[0].set_ylim(0, 1.02)
theta0 = np.asarray(x_test[0] @ w)
for ax, mat, title in (
    (axes[1], np.asarray(y_test[0]), "gold matching"),
    (axes[2], theta0, "learnt scores"),
):
    ax.imshow(mat, cmap="viridis")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
rows, cols = np.nonzero(np.asarray(solve(x_test @ w))[0])
axes[2].scatter(cols, rows, marker="x", color="white", s=80, label="predicted")
axes[2].legend(loc="upper right", fontsize=7)
fig.suptitle("Learning 4 x 4 matchings through linear_sum_assignment (generated data)")
fig.tight_layout()
FIGURES.mkdir(parents=True, exist_ok=True)
fig.savefig(FIGURES / "host_oracle_matching.png", dpi=110)
plt.close(fig)
