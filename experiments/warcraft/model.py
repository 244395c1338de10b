"""The networks of the Warcraft experiment (Flax NNX, written against Flax 0.12.8).

* :class:`CostNet`, the network of the reference code (``CombRenset18`` in the blackbox
  differentiation and I-MLE Warcraft code): the first block of ResNet18 -- a 7 x 7 stride-2
  convolution with 64 channels, batch norm, ReLU, a 3 x 3 stride-2 max pool and ``layer1``
  (two basic blocks of 64 channels) -- then an adaptive max pool to K x K and the mean over the
  64 channels. Its output is made non-negative with the absolute value, as the reference
  trainers do (``output = torch.abs(output)  # make grid weights positive``), and is the grid
  of vertex costs handed to the shortest-path solver. (``layer1`` ends in a ReLU, so the
  channel mean is already non-negative and the absolute value changes nothing; it is kept so
  that the network is the reference's whatever its last layer.)
* :class:`ResNet18`, the baseline of the reference code that predicts the path directly: the
  whole torchvision ResNet18 (``conv1`` 7 x 7/2 with 64 channels, batch norm, ReLU, max pool,
  ``layer1`` ... ``layer4`` with 64, 128, 256, 512 channels, global average pool and a linear
  layer to K^2 outputs), whose K^2 logits are read as independent Bernoulli tile probabilities
  (sigmoid, binary cross-entropy); the predicted path is the set of tiles with probability
  above 1/2.

Both take the maps as uint8 ``(B, 8K, 8K, 3)`` and normalise each channel with the training
set's mean and standard deviation (stored in the model as :class:`Normalisation` variables,
checkpointed with it). Initialisation follows PyTorch's: the convolutions of the residual blocks
Kaiming-normal with fan-out, the replaced ``conv1`` and the linear layer PyTorch's default
(uniform in :math:`\\pm 1/\\sqrt{\\mathrm{fan\\_in}}`), batch-norm scales 1 and offsets 0; batch
norm uses momentum 0.1 in PyTorch's convention (``momentum=0.9`` here) and epsilon 1e-5. In
training mode (``model.train()``) batch norm normalises with the batch statistics and updates the
running averages; in evaluation mode (``model.eval()``) it uses the running averages.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

BN = dict(momentum=0.9, epsilon=1e-5)
_KAIMING_OUT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")
_TORCH_DEFAULT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class Normalisation(nnx.Variable):
    """Per-channel input statistics (not trained)."""


def _conv(cin, cout, k, stride, *, init, rngs):
    pad = (k - 1) // 2
    return nnx.Conv(
        cin,
        cout,
        kernel_size=(k, k),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        use_bias=False,
        kernel_init=init,
        rngs=rngs,
    )


class BasicBlock(nnx.Module):
    """ResNet basic block: two 3 x 3 convolutions with batch norm, plus the (projected) input."""

    def __init__(self, cin: int, cout: int, stride: int = 1, *, rngs: nnx.Rngs):
        self.conv1 = _conv(cin, cout, 3, stride, init=_KAIMING_OUT, rngs=rngs)
        self.bn1 = nnx.BatchNorm(cout, rngs=rngs, **BN)
        self.conv2 = _conv(cout, cout, 3, 1, init=_KAIMING_OUT, rngs=rngs)
        self.bn2 = nnx.BatchNorm(cout, rngs=rngs, **BN)
        if stride != 1 or cin != cout:
            self.down_conv = _conv(cin, cout, 1, stride, init=_KAIMING_OUT, rngs=rngs)
            self.down_bn = nnx.BatchNorm(cout, rngs=rngs, **BN)
        else:
            self.down_conv = nnx.data(None)
            self.down_bn = nnx.data(None)

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        skip = x if self.down_conv is None else self.down_bn(self.down_conv(x))
        return jax.nn.relu(h + skip)


def adaptive_max_pool(x: jax.Array, out: int) -> jax.Array:
    """PyTorch's ``AdaptiveMaxPool2d(out)`` on ``(B, H, W, C)``: window ``i`` spans rows
    ``floor(i H / out)`` to ``ceil((i + 1) H / out)`` (likewise columns)."""
    b, h, w, c = x.shape
    if h % out == 0 and w % out == 0:
        return x.reshape(b, out, h // out, out, w // out, c).max(axis=(2, 4))

    def pool_axis(x, n, axis):
        starts = [math.floor(i * n / out) for i in range(out)]
        stops = [math.ceil((i + 1) * n / out) for i in range(out)]
        parts = [
            jnp.max(jax.lax.slice_in_dim(x, s, e, axis=axis), axis=axis, keepdims=True)
            for s, e in zip(starts, stops, strict=True)
        ]
        return jnp.concatenate(parts, axis=axis)

    return pool_axis(pool_axis(x, h, 1), w, 2)


class _Stem(nnx.Module):
    """Normalisation, ``conv1`` (7 x 7/2, 64), batch norm, ReLU, 3 x 3/2 max pool."""

    def __init__(self, mean, std, *, rngs: nnx.Rngs):
        self.mean = Normalisation(jnp.asarray(mean, jnp.float32).reshape(3))
        self.std = Normalisation(jnp.asarray(std, jnp.float32).reshape(3))
        self.conv1 = _conv(3, 64, 7, 2, init=_TORCH_DEFAULT, rngs=rngs)
        self.bn1 = nnx.BatchNorm(64, rngs=rngs, **BN)

    def __call__(self, maps: jax.Array) -> jax.Array:
        mean, std = self.mean[...].reshape(1, 1, 1, 3), self.std[...].reshape(1, 1, 1, 3)
        x = (maps.astype(jnp.float32) - mean) / std
        x = jax.nn.relu(self.bn1(self.conv1(x)))
        return nnx.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class CostNet(nnx.Module):
    """Vertex costs ``(B, K, K)`` >= 0 from maps ``(B, 8K, 8K, 3)`` uint8 (see the module doc)."""

    def __init__(self, k: int, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), *, rngs: nnx.Rngs):
        self.k = k
        self.stem = _Stem(mean, std, rngs=rngs)
        self.layer1 = nnx.List([BasicBlock(64, 64, rngs=rngs), BasicBlock(64, 64, rngs=rngs)])

    def __call__(self, maps: jax.Array) -> jax.Array:
        x = self.stem(maps)
        for block in self.layer1:
            x = block(x)
        x = adaptive_max_pool(x, self.k)
        return jnp.abs(jnp.mean(x, axis=-1))


class ResNet18(nnx.Module):
    """ResNet18 with ``K^2`` outputs: tile logits ``(B, K, K)`` (see the module doc)."""

    def __init__(self, k: int, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), *, rngs: nnx.Rngs):
        self.k = k
        self.stem = _Stem(mean, std, rngs=rngs)
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride, rngs=rngs), BasicBlock(cout, cout, rngs=rngs)]
            cin = cout
        self.blocks = nnx.List(blocks)
        bound = 1.0 / np.sqrt(512)
        self.fc = nnx.Linear(
            512,
            k * k,
            kernel_init=_TORCH_DEFAULT,
            bias_init=lambda key, shape, dtype: jax.random.uniform(
                key, shape, dtype, -bound, bound
            ),
            rngs=rngs,
        )

    def __call__(self, maps: jax.Array) -> jax.Array:
        x = self.stem(maps)
        for block in self.blocks:
            x = block(x)
        logits = self.fc(jnp.mean(x, axis=(1, 2)))
        return logits.reshape(-1, self.k, self.k)
