"""The discrete VAE: encoder 784-512-256-400, a 20 x (10 of 20) code, decoder 400-256-512-784.

The losses, per example, with ``S`` sampled codes ``z_1..z_S`` of ``theta``, the BCE of the
reconstruction summed over the 784 pixels, ``BCE(z)``, and ``KL(theta)``, the sum over the 20 groups
of ``KL(softmax(theta_group) || uniform over 20)``:

* training loss: ``mean_s BCE(z_s) + KL(theta)`` (``reduction="mean"``), or
  ``sum_s BCE(z_s) + KL(theta)`` (``reduction="sum"``, the AIMLE PyTorch code);
* test loss, **MAP code**: ``BCE(MAP(theta)) + KL(theta)``;
* test loss, **sampled codes** (the AIMLE PyTorch CLI's definition, which evaluates in training
  mode): ``mean_s BCE(z_s) + KL(theta) / S``.

All are averaged over the examples. With ``S = 1`` the two reductions coincide, and the
sampled-code test loss is the loss of one sampled code.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from experiments.dvae.configs import GROUPS, INITS, Built, M
from imlejax.flax.nnx import DiscreteLayer


def _uniform_bias(fan_in: int):
    bound = 1.0 / fan_in**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def dense_init(init: str, fan_in: int) -> dict[str, Any]:
    """Kernel and bias initialisers of a dense layer with ``fan_in`` inputs; see ``INITS``."""
    if init == "glorot":
        return dict(kernel_init=nnx.initializers.glorot_uniform(), bias_init=nnx.initializers.zeros)
    if init == "torch":
        # kaiming_uniform(a=sqrt(5)): bound = sqrt(6 / ((1 + a^2) fan_in)) = 1 / sqrt(fan_in).
        kernel = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
        return dict(kernel_init=kernel, bias_init=_uniform_bias(fan_in))
    if init == "xavier_relu":
        kernel = nnx.initializers.variance_scaling(2.0, "fan_avg", "uniform")
        return dict(kernel_init=kernel, bias_init=nnx.initializers.zeros)
    raise ValueError(f"init must be one of {INITS}; got {init!r}.")


class DiscreteVAE(nnx.Module):
    """MLP encoder to ``theta`` (``(B, 20, 20)``), a :class:`DiscreteLayer`, MLP decoder to logits.

    ``init`` selects the initialisation of the dense layers (``INITS``). In training mode the
    code is the estimator's sample (``(B, 20, 20)``, or ``(S, B, 20, 20)`` with ``S`` samples); in
    evaluation mode (``model.eval()``) it is the MAP code of ``theta``.
    """

    def __init__(self, built: Built, *, rngs: nnx.Rngs, data_dim: int = 784, init: str = "glorot"):
        def dense(n_in, n_out):
            return nnx.Linear(n_in, n_out, rngs=rngs, **dense_init(init, n_in))

        self.enc1 = dense(data_dim, 512)
        self.enc2 = dense(512, 256)
        self.enc3 = dense(256, GROUPS * M)
        self.code = DiscreteLayer(
            built.estimator, map_fn=built.map_fn, state=built.state, rngs=rngs
        )
        self.dec1 = dense(GROUPS * M, 256)
        self.dec2 = dense(256, 512)
        self.dec3 = dense(512, data_dim)

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


def bce_per_code(logits: jax.Array, x: jax.Array) -> jax.Array:
    """BCE with logits summed over the pixels, per code: shape ``logits.shape[:-1]``."""
    xb = jnp.broadcast_to(x, logits.shape)
    return jnp.sum(optax.sigmoid_binary_cross_entropy(logits, xb), axis=-1)


def reference_loss(
    theta: jax.Array, logits: jax.Array, x: jax.Array, reduction: str = "mean"
) -> tuple[Any, Any]:
    """The training loss, averaged over the batch: BCE over the samples plus the groups' KL.

    ``logits`` may carry a leading sample axis of size ``S``; ``reduction`` says whether the
    per-example BCE is averaged (``"mean"``) or summed (``"sum"``) over it. Returns
    ``(loss, (bce, kl))`` with ``bce`` the mean over samples and examples (whatever the
    reduction) and ``kl`` the mean over examples.
    """
    per_code = bce_per_code(logits, x)
    bce = jnp.mean(per_code)
    kl = jnp.mean(kl_to_uniform(theta))
    if reduction == "mean":
        return bce + kl, (bce, kl)
    if reduction == "sum":
        samples = per_code.size // x.shape[0]
        return samples * bce + kl, (bce, kl)
    raise ValueError(f"reduction must be 'mean' or 'sum'; got {reduction!r}.")


def sampled_code_test_loss(theta: jax.Array, logits: jax.Array, x: jax.Array) -> jax.Array:
    """The AIMLE PyTorch CLI's test loss: ``mean_s BCE(z_s) + KL / S``, averaged over examples.

    ``logits`` of shape ``(S, B, 784)`` or ``(B, 784)`` (``S = 1``).
    """
    per_code = bce_per_code(logits, x)
    samples = per_code.size // x.shape[0]
    return jnp.mean(per_code) + jnp.mean(kl_to_uniform(theta)) / samples
