"""Discrete VAE on MNIST with 20 groups of exactly-10-of-20 codes (Niepert et al., 2021, §C.3).

Run ``python -m experiments.dvae --help``. The pieces: :mod:`.data` (the ``mnist.npz`` loader),
:mod:`.configs` (one configuration per gradient estimator), :mod:`.model` (the NNX model with
:class:`imlejax.flax.nnx.DiscreteLayer`), :mod:`.train` (jitted epochs, metrics, Orbax checkpoints),
:mod:`.report` (figures and tables) and :mod:`.profile` (throughput).
"""
