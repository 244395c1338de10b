"""A Flax NNX model with ``DiscreteLayer``: learning which features to keep.

The target depends on 3 of 10 input features. The model scores the features (a linear
selector), keeps the top 3 through a ``DiscreteLayer`` that wraps an I-MLE estimator, and
predicts the target from the kept features only. The only way to a low loss is to select the
planted features, and the selection is discrete, so its gradient comes from I-MLE:

    python docs/tutorials/flax_nnx.py

Asserts that in evaluation mode (the MAP selection, no noise) the layer keeps exactly the planted
features on held-out inputs and that the prediction error is small.
"""

import os
import pathlib

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import imlejax as ij
from imlejax.flax.nnx import DiscreteLayer

FIGURES = pathlib.Path(
    os.environ.get(
        "IMLEJAX_TUTORIAL_FIGURES",
        pathlib.Path(__file__).resolve().parents[1] / "figures" / "tutorials",
    )
)

# --8<-- [start:data]
d, k = 10, 3
planted = np.array([1, 4, 7])
coef = np.zeros(d, np.float32)
coef[planted] = [1.0, 2.0, -1.5]
rng = np.random.default_rng(0)
x = rng.standard_normal((2548, d), dtype=np.float32)
x_train, y_train = x[:2048], x[:2048] @ coef  # NumPy: batches are sliced on the host
x_test, y_test = jnp.asarray(x[2048:]), jnp.asarray(x[2048:] @ coef)
# --8<-- [end:data]


# --8<-- [start:model]
class Selector(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.scores = nnx.Linear(d, d, rngs=rngs)  # theta: one score per feature and input
        estimator = ij.imle(ij.top_k(k), noise=ij.sog(k), target=ij.pid(lam=10.0))
        self.select = DiscreteLayer(estimator, rngs=rngs)  # keys from the "noise" stream
        self.predict = nnx.Linear(d, 1, rngs=rngs)

    def __call__(self, x):
        theta = self.scores(x)  # (batch, d): top_k acts on the last axis, one group per input
        mask = self.select(theta)  # exactly k ones per row; MAP(theta) in evaluation mode
        return self.predict(x * mask)[:, 0], mask


model = Selector(nnx.Rngs(params=0, noise=1))
print(model.select.estimator)
# --8<-- [end:model]

# --8<-- [start:train]
optimizer = nnx.Optimizer(model, optax.adam(3e-2), wrt=nnx.Param)


def loss_fn(model, x, y):
    pred, _ = model(x)
    return jnp.mean((pred - y) ** 2)


@nnx.jit
def train_step(model, optimizer, x, y):
    loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
    optimizer.update(model, grads)
    return loss


@nnx.jit
def evaluate(model, x, y):
    pred, mask = model(x)
    return jnp.mean((pred - y) ** 2), mask


# The model and optimiser graphs are traversed once, not on every call:
step_fn = nnx.cached_partial(train_step, model, optimizer)
batch, losses = 64, []
for step in range(150):
    lo = (step * batch) % x_train.shape[0]
    losses.append(float(step_fn(x_train[lo : lo + batch], y_train[lo : lo + batch])))
    if step % 25 == 0 or step == 149:
        print(f"step {step:3d}  train loss {losses[-1]:.4f}")
# --8<-- [end:train]

# --8<-- [start:check]
model.eval()  # deterministic: the layer returns MAP(theta), no noise, no key drawn
mse, mask = evaluate(model, x_test, y_test)
mask = np.asarray(mask)
frequency = mask.mean(axis=0)
print(f"test MSE {float(mse):.4f} (variance of y: {float(jnp.var(y_test)):.2f})")
print("selection frequency per feature:", np.round(frequency, 3))
assert np.all(mask.sum(axis=1) == k)
assert np.all(mask[:, planted] == 1), "evaluation mode should keep exactly the planted features"
assert float(mse) < 0.01 * float(jnp.var(y_test))
model.train()  # back to sampling
# --8<-- [end:check]

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.2))
ax1.semilogy(losses)
ax1.set_xlabel("step")
ax1.set_ylabel("train MSE")
colors = ["C1" if i in planted else "C0" for i in range(d)]
ax2.bar(range(d), frequency, color=colors)
ax2.set_xticks(range(d))
ax2.set_xlabel("feature (orange: planted)")
ax2.set_ylabel("kept on test inputs (eval mode)")
fig.suptitle("Flax NNX DiscreteLayer: I-MLE top-3 feature selection (generated data)")
fig.tight_layout()
FIGURES.mkdir(parents=True, exist_ok=True)
fig.savefig(FIGURES / "flax_nnx_selection.png", dpi=110)
plt.close(fig)
