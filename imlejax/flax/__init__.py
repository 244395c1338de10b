"""Flax modules for imlejax (optional extra: ``pip install imlejax[flax]``).

* :mod:`imlejax.flax.nnx`: :class:`~imlejax.flax.nnx.DiscreteLayer` for Flax NNX, with AIMLE state
  kept in an :class:`~imlejax.flax.nnx.AIMLEVariable` and advanced by
  :func:`~imlejax.flax.nnx.apply_aimle_update`.
* :mod:`imlejax.flax.linen`: :class:`~imlejax.flax.linen.DiscreteLayer` for Flax Linen, with AIMLE
  state kept in the ``aimle`` variable collection.

Both wrap any estimator of the library, a callable ``est(key, theta, *args)`` built by
:func:`imlejax.imle` or by the estimators of :mod:`imlejax` (``ste``, ``gumbel_softmax``, ...),
draw the estimator's key from the RNG stream named ``noise``, and return the MAP of ``theta`` (no
noise, no sampling) in deterministic (evaluation) mode. They are written against Flax 0.12.8.

This package imports Flax; ``import imlejax`` never does.
"""

from imlejax.flax import linen as linen
from imlejax.flax import nnx as nnx

__all__ = ["linen", "nnx"]
