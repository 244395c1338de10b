"""Synthetic k-subset experiments of Niepert et al. (2021), appendix C.1, and a gradient study.

A 5-subset distribution over ``m = 10`` items, ``p(z; theta) ∝ exp(<z, theta>)``, and the loss
``L(theta) = E_p[||z - b||^2]`` with ``b ~ N(0, I)`` drawn once. Every quantity is exact: ``L`` and
its gradient by enumeration of the ``C(10, 5) = 252`` states (or, equivalently, by the closed form
``k - 2 <mu(theta), b> + ||b||^2`` through the k-subset marginals).

    python -m experiments.synthetic --smoke   # tiny grids (used by the tests), under a minute
    python -m experiments.synthetic           # reduced grids, two to three minutes
    python -m experiments.synthetic --full    # the paper's configuration, about six minutes

Modules: :mod:`.problem` (the loss, exact gradients, state bounds), :mod:`.estimators` (one-sample
gradient estimators), :mod:`.train` (batched SGD runs), :mod:`.quality` (gradient quality against
the exact gradient), :mod:`.runtime` (cost of exact ``L``, faithful and perturb-and-MAP samples),
:mod:`.plots` and :mod:`.__main__` (the command line, with checkpoint and resume).
"""
