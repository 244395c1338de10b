"""The discrete VAE: encoder 784-512-256-400, a 20 x (10 of 20) code, decoder 400-256-512-784."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from experiments.dvae.configs import GROUPS, Built, M
from imlejax.flax.nnx import DiscreteLayer

_INIT = dict(kernel_init=nnx.initializers.glorot_uniform(), bias_init=nnx.initializers.zeros)


class DiscreteVAE(nnx.Module):
    """MLP encoder to ``theta`` (``(B, 20, 20)``), a :class:`DiscreteLayer`, MLP decoder to logits.

    Dense layers are initialised like Keras (Glorot uniform kernels, zero biases). In training
    mode the code is the estimator's sample (``(B, 20, 20)``, or ``(S, B, 20, 20)`` with ``S``
    samples); in evaluation mode (``model.eval()``) it is the MAP code of ``theta``.
    """

    def __init__(self, built: Built, *, rngs: nnx.Rngs, data_dim: int = 784):
        self.enc1 = nnx.Linear(data_dim, 512, rngs=rngs, **_INIT)
        self.enc2 = nnx.Linear(512, 256, rngs=rngs, **_INIT)
        self.enc3 = nnx.Linear(256, GROUPS * M, rngs=rngs, **_INIT)
        self.code = DiscreteLayer(
            built.estimator, map_fn=built.map_fn, state=built.state, rngs=rngs
        )
        self.dec1 = nnx.Linear(GROUPS * M, 256, rngs=rngs, **_INIT)
        self.dec2 = nnx.Linear(256, 512, rngs=rngs, **_INIT)
        self.dec3 = nnx.Linear(512, data_dim, rngs=rngs, **_INIT)

    def encode(self, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(self.enc1(x))
        h = jax.nn.relu(self.enc2(h))
        return self.enc3(h).reshape(*x.shape[:-1], GROUPS, M)

    def decode(self, z: jax.Array) -> jax.Array:
        h = jax.nn.relu(self.dec1(z.reshape(*z.shape[:-2], GROUPS * M)))
        h = jax.nn.relu(self.dec2(h))
        return self.dec3(h)

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Returns ``(theta, code, logits)``; ``logits`` has the code's leading axes."""
        theta = self.encode(x)
        z = self.code(theta)
        return theta, z, self.decode(z)


def kl_to_uniform(theta: jax.Array) -> jax.Array:
    """Sum over groups of KL(softmax(theta_group) || uniform over M), per example."""
    log_q = jax.nn.log_softmax(theta, axis=-1)
    q = jnp.exp(log_q)
    return jnp.sum(q * (log_q + jnp.log(float(M))), axis=(-2, -1))


def reference_loss(theta: jax.Array, logits: jax.Array, x: jax.Array) -> tuple[Any, Any]:
    """The reference loss, averaged over the batch: summed BCE plus the groups' KL to uniform.

    ``logits`` may carry a leading sample axis; the BCE is then averaged over the samples.
    Returns ``(loss, (bce, kl))``.
    """
    xb = jnp.broadcast_to(x, logits.shape)
    bce = jnp.sum(optax.sigmoid_binary_cross_entropy(logits, xb), axis=-1)
    bce = jnp.mean(bce)
    kl = jnp.mean(kl_to_uniform(theta))
    return bce + kl, (bce, kl)
