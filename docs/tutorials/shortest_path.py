"""Shortest paths on a grid with the native grid oracle.

Each instance is an ``8 x 8`` grid of tiles with ``d`` features per tile; a hidden linear map
``w_true`` gives the tile costs, and the gold label is the cheapest 8-neighbour path from the
top-left to the bottom-right tile (both end tiles counted), as in the Warcraft experiment. A
linear model predicts the costs from the features and is trained through
``ij.grid_shortest_path()``, a minimisation oracle, with a Hamming loss on the path:

    python docs/tutorials/shortest_path.py

Asserts that the oracle agrees with Dijkstra (SciPy) on random grids, and that training cuts the
regret of the predicted paths under the true costs on held-out grids below 2%.
"""

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import scipy.sparse
import scipy.sparse.csgraph

import imlejax as ij

FIGURES = pathlib.Path(
    os.environ.get(
        "IMLEJAX_TUTORIAL_FIGURES",
        pathlib.Path(__file__).resolve().parents[1] / "figures" / "tutorials",
    )
)

# --8<-- [start:oracle]
size, d = 8, 4
shortest_path = ij.grid_shortest_path()  # 8 neighbours, (0, 0) -> (size - 1, size - 1)
print(shortest_path)


def dijkstra_cost(w):
    """Independent check: the cost of the cheapest path, both end tiles counted (SciPy)."""
    rows, cols, data = [], [], []
    for r in range(size):
        for c in range(size):
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if (dr or dc) and 0 <= rr < size and 0 <= cc < size:
                        rows.append(r * size + c)
                        cols.append(rr * size + cc)
                        data.append(w[rr, cc])  # entering a tile costs the tile
    graph = scipy.sparse.csr_matrix((data, (rows, cols)), shape=(size * size,) * 2)
    dist = scipy.sparse.csgraph.dijkstra(graph, indices=0)
    return w[0, 0] + dist[-1]


# --8<-- [end:oracle]

# --8<-- [start:data]
rng = np.random.default_rng(0)
w_true = np.array([0.5, 8.0, 1.0, 4.0], np.float32)
solve = jax.jit(jax.vmap(shortest_path))  # a batch of grids; compiled once per batch shape

x = rng.uniform(size=(400, size, size, d)).astype(np.float32) ** 3  # tile features, mostly small
costs = x @ w_true  # positive tile costs
y = np.concatenate([np.asarray(solve(c)) for c in np.split(costs, 4)])  # 100 grids per call
for i in range(10):  # the gold paths are optimal: their cost is Dijkstra's on the same grid
    assert np.isclose((y[i] * costs[i]).sum(), dijkstra_cost(costs[i].astype(np.float64)))
x_train, c_train, y_train = (jnp.asarray(a[:300]) for a in (x, costs, y))
x_test, c_test, y_test = (jnp.asarray(a[300:]) for a in (x, costs, y))
key_noise = jax.random.key(0)
print("grid_shortest_path matches SciPy's Dijkstra on 10 grids")
# --8<-- [end:data]

# --8<-- [start:train]
samples, batch = 2, 16
sampler = ij.imle(
    shortest_path, noise=ij.gumbel(0.5), target=ij.pid(lam=50.0), samples=samples, minimize=True
)
optimizer = optax.adam(0.1)


def loss_fn(w, key, x, y):
    costs = x @ w  # predicted tile costs, (batch, size, size)
    keys = jax.random.split(key, x.shape[0])
    z = jax.vmap(sampler)(keys, costs)  # paths for the perturbed costs w - eps
    return jnp.mean(jnp.sum(jnp.abs(z - y[:, None]), axis=(-2, -1)))


@jax.jit
def train_step(w, opt_state, step):
    key_batch, key_step = jax.random.split(jax.random.fold_in(key_noise, step))
    idx = jax.random.choice(key_batch, x_train.shape[0], (batch,), replace=False)
    loss, grad = jax.value_and_grad(loss_fn)(w, key_step, x_train[idx], y_train[idx])
    updates, opt_state = optimizer.update(grad, opt_state, w)
    return optax.apply_updates(w, updates), opt_state, loss


@jax.jit
def evaluate(w):
    """Held-out grids: mean relative regret of the predicted paths under the true costs, and the
    fraction of predicted paths that are optimal."""
    z = solve(x_test @ w)  # the same compiled solver as for the gold paths
    best = jnp.sum(y_test * c_test, axis=(-2, -1))
    regret = (jnp.sum(z * c_test, axis=(-2, -1)) - best) / best
    return jnp.mean(regret), jnp.mean(regret <= 1e-5), z


w = jnp.ones(d)  # equal weights: a poor guess of the costs
opt_state = optimizer.init(w)
history = [(0, *map(float, evaluate(w)[:2]))]
print(f"before training: regret {history[0][1]:.2%}, optimal paths {history[0][2]:.1%}")
for step in range(1, 61):
    w, opt_state, loss = train_step(w, opt_state, step)
    if step % 15 == 0:
        history.append((step, *map(float, evaluate(w)[:2])))
        print(
            f"step {step:3d}  train loss {float(loss):6.3f}  regret {history[-1][1]:.2%}  "
            f"optimal {history[-1][2]:.1%}"
        )
# --8<-- [end:train]

# --8<-- [start:check]
print(f"learnt cost weights {np.round(np.asarray(w), 2)} (true {np.asarray(w_true)})")
assert history[-1][1] < 0.02 and history[-1][1] < history[0][1] / 4, history
assert history[-1][2] > history[0][2] + 0.3, history
# --8<-- [end:check]

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

predicted = evaluate(w)[2]
fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
for ax, i in zip(axes, range(3), strict=True):
    ax.imshow(np.asarray(c_test[i]), cmap="Greys")
    gold = np.nonzero(np.asarray(y_test[i]))
    pred = np.nonzero(np.asarray(predicted[i]))
    ax.scatter(gold[1], gold[0], s=120, facecolors="none", edgecolors="C0", label="gold path")
    ax.scatter(pred[1], pred[0], s=30, color="C1", label="predicted")
    ax.set_xticks([])
    ax.set_yticks([])
axes[0].legend(loc="lower left", fontsize=7)
fig.suptitle("Tile costs (dark = expensive), gold and predicted paths (generated data)")
fig.tight_layout()
FIGURES.mkdir(parents=True, exist_ok=True)
fig.savefig(FIGURES / "shortest_path_grids.png", dpi=110)
plt.close(fig)
