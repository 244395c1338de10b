"""Synthetic k-subset experiments of Niepert et al. (2021), appendix C.1, and a gradient study.

A 5-subset distribution over ``m = 10`` items, ``p(z; theta) ∝ exp(<z, theta>)``, and the loss
``L(theta) = E_p[||z - b||^2]`` for a fixed ``b``. Every quantity is exact: ``L`` and its gradient
by enumeration of the ``C(10, 5) = 252`` states (or, equivalently, by the closed form
``k - 2 <mu(theta), b> + ||b||^2`` through the k-subset marginals).

    python -m experiments.synthetic --preset reference   # the authors' configuration, 8 minutes
    python -m experiments.synthetic --preset library     # theta_0 = 0, b ~ N(0, I), wide grids
    python -m experiments.synthetic --preset smoke       # tiny grids (used by the tests)

Modules: :mod:`.problem` (the loss, exact gradients, the authors' instance), :mod:`.estimators`
(one-sample gradient estimators), :mod:`.train` (batched SGD runs, the optimality gap),
:mod:`.quality` (gradient quality against the exact gradient), :mod:`.runtime` (cost of exact
``L``, faithful and perturb-and-MAP samples), :mod:`.plots` and :mod:`.__main__` (presets, the
command line, with checkpoint and resume).
"""
