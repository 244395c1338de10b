r"""Explainer and predictor of the learning-to-explain experiment (Flax NNX).

**Explainer** (the selector of the reference notebook, ``construct_gumbel_selector``, which is
that of Chen et al. 2018): frozen embeddings; ``Conv1D(filters, 3, relu)``; global branch: max
over positions, ``Dense(hidden, relu)``; local branch: two more ``Conv1D(filters, 3, relu)``; the
global vector is tiled along positions and concatenated with the local features; dropout 0.2;
``Conv1D(filters, 1, relu)``; ``Conv1D(1, 1)`` gives one score per token, ``theta`` of shape
``(batch, L)``.

**Predictor**: the same frozen embeddings multiplied by the selection ``z`` (the Multiply layer),
summed over positions and divided by ``k`` (the notebook's Mean lambda, the mean of the ``k``
selected vectors), ``Dense(hidden_pred, relu)``, ``Dense(1, sigmoid)``.

Widths: the appendix says "all 1D convolutional layers have 250 filters with a kernel size of 3,
all dense layers have a dimension of 100" (preset ``paper``: ``filters=250``, ``hidden=100``,
``hidden_pred=100``); the notebook that produced the numbers uses 100 filters in the explainer and
``hidden_dims = 250`` in the predictor (preset ``notebook``). Initialisation as Keras: Glorot
uniform kernels, zero biases.

**Computational window.** Reviews are padded in front to ``max_len = 350`` with ``<PAD>`` (id 0),
whose embedding is the zero vector. The model may be run on the last ``W`` positions only
(``x[:, -W:]``) when every review has at least 2 padding positions inside that window: the first
convolution sees zeros left of the window either way, so every feature of ``conv1`` and hence the
global max are unchanged; the second convolution differs only at the first window position and
the third at the first two, which are padding; the scores of all real tokens and the predictor's
output are exactly those of the full length (tested). :func:`window` computes ``W``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from experiments.l2x.data import PAD
from experiments.l2x.methods import Built
from imlejax.flax.nnx import DiscreteLayer

_INIT = dict(kernel_init=nnx.initializers.glorot_uniform(), bias_init=nnx.initializers.zeros)
WINDOW_MARGIN = 2


class Frozen(nnx.Variable):
    """A non-trainable array of the model (the word embeddings)."""


def window(*xs: np.ndarray, margin: int = WINDOW_MARGIN) -> int:
    """The shortest window ``W`` with at least ``margin`` padding positions before every review.

    ``W = min(L, longest review + margin)`` over all arrays ``xs`` of front-padded ids ``(N, L)``.
    """
    length = xs[0].shape[1]
    longest = 0
    for x in xs:
        real = x != PAD
        lengths = np.where(real.any(axis=1), length - np.argmax(real, axis=1), 0)
        longest = max(longest, int(lengths.max(initial=0)))
    return min(length, longest + margin)


class Explainer(nnx.Module):
    """Scores every token: ``(batch, L)`` ids to ``(batch, L)`` scores ``theta``."""

    def __init__(self, dim: int, filters: int, hidden: int, dropout: float, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(dim, filters, 3, padding="SAME", rngs=rngs, **_INIT)
        self.dense_global = nnx.Linear(filters, hidden, rngs=rngs, **_INIT)
        self.conv2 = nnx.Conv(filters, filters, 3, padding="SAME", rngs=rngs, **_INIT)
        self.conv3 = nnx.Conv(filters, filters, 3, padding="SAME", rngs=rngs, **_INIT)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.conv_last = nnx.Conv(hidden + filters, filters, 1, rngs=rngs, **_INIT)
        self.conv_out = nnx.Conv(filters, 1, 1, rngs=rngs, **_INIT)

    def __call__(self, emb: jax.Array) -> jax.Array:
        first = jax.nn.relu(self.conv1(emb))
        global_info = jax.nn.relu(self.dense_global(jnp.max(first, axis=1)))
        local = jax.nn.relu(self.conv3(jax.nn.relu(self.conv2(first))))
        tiled = jnp.broadcast_to(global_info[:, None, :], (*local.shape[:2], global_info.shape[-1]))
        net = self.dropout(jnp.concatenate([tiled, local], axis=-1))
        net = jax.nn.relu(self.conv_last(net))
        return self.conv_out(net)[..., 0]


class Predictor(nnx.Module):
    """Predicts the score from the selected embeddings: ``sigmoid(Dense(relu(Dense(sum/k))))``."""

    def __init__(self, dim: int, hidden: int, k: int, *, rngs: nnx.Rngs):
        self.k = k
        self.dense = nnx.Linear(dim, hidden, rngs=rngs, **_INIT)
        self.out = nnx.Linear(hidden, 1, rngs=rngs, **_INIT)

    def __call__(self, emb: jax.Array, z: jax.Array) -> jax.Array:
        pooled = jnp.sum(emb * z[..., None], axis=-2) / self.k
        return jax.nn.sigmoid(self.out(jax.nn.relu(self.dense(pooled))))[..., 0]


class L2XModel(nnx.Module):
    """Explainer, k-subset selection (:class:`imlejax.flax.nnx.DiscreteLayer`), predictor."""

    def __init__(
        self,
        embeddings: np.ndarray,
        built: Built,
        *,
        k: int,
        filters: int = 250,
        hidden: int = 100,
        hidden_pred: int = 100,
        dropout: float = 0.2,
        rngs: nnx.Rngs,
    ):
        dim = embeddings.shape[1]
        self.embeddings = Frozen(jnp.asarray(embeddings, jnp.float32))
        self.explainer = Explainer(dim, filters, hidden, dropout, rngs=rngs)
        self.select = DiscreteLayer(
            built.estimator, map_fn=built.map_fn, state=built.state, rngs=rngs
        )
        self.predictor = Predictor(dim, hidden_pred, k, rngs=rngs)

    def scores(self, x: jax.Array) -> jax.Array:
        """The explainer's scores ``theta`` ``(batch, L)`` of the ids ``x``."""
        return self.explainer(self.embeddings[...][x])

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Returns ``(prediction, z, theta)`` for ids ``x`` ``(batch, L)``."""
        emb = self.embeddings[...][x]
        theta = self.explainer(emb)
        z = self.select(theta, x != PAD)
        return self.predictor(emb, z), z, theta
