"""imlejax: Implicit Maximum Likelihood Estimation for discrete and combinatorial solvers in JAX.

The transform :func:`imle` turns a MAP oracle into a differentiable perturb-and-MAP sampler;
noise (:func:`gumbel`, :func:`sog`, :func:`normal`, :func:`no_noise`) and target distributions
(:func:`pid`, :func:`aimle`) configure it. Every factory returns an :class:`Estimator`;
:mod:`imlejax.ksubset` holds the exact k-subset family.
"""

from imlejax import ksubset as ksubset
from imlejax._aimle import AdaptiveTarget as AdaptiveTarget
from imlejax._aimle import AIMLEState as AIMLEState
from imlejax._aimle import AIMLEStats as AIMLEStats
from imlejax._aimle import aimle as aimle
from imlejax._core import Estimator as Estimator
from imlejax._diagnostics import check_gradient as check_gradient
from imlejax._diagnostics import check_oracle as check_oracle
from imlejax._graph_path import graph_shortest_path as graph_shortest_path
from imlejax._graph_path import grid_dag_edges as grid_dag_edges
from imlejax._host import bipartite_matching as bipartite_matching
from imlejax._host import host_oracle as host_oracle
from imlejax._imle import imle as imle
from imlejax._noise import Gumbel as Gumbel
from imlejax._noise import Noise as Noise
from imlejax._noise import NoNoise as NoNoise
from imlejax._noise import Normal as Normal
from imlejax._noise import SumOfGamma as SumOfGamma
from imlejax._noise import gumbel as gumbel
from imlejax._noise import no_noise as no_noise
from imlejax._noise import normal as normal
from imlejax._noise import sog as sog
from imlejax._oracles import argmax as argmax
from imlejax._oracles import top_k as top_k
from imlejax._perturbed import fenchel_young_loss as fenchel_young_loss
from imlejax._perturbed import perturbed as perturbed
from imlejax._relaxations import gumbel_softmax as gumbel_softmax
from imlejax._relaxations import l2x as l2x
from imlejax._relaxations import simple as simple
from imlejax._relaxations import softsub as softsub
from imlejax._score import sfe as sfe
from imlejax._shortest_path import grid_shortest_path as grid_shortest_path
from imlejax._targets import PerturbationTarget as PerturbationTarget
from imlejax._targets import Target as Target
from imlejax._targets import pid as pid
from imlejax._through import blackbox as blackbox
from imlejax._through import ste as ste

__version__ = "0.2.0"

__all__ = [
    "AIMLEState",
    "AIMLEStats",
    "AdaptiveTarget",
    "Estimator",
    "Gumbel",
    "NoNoise",
    "Noise",
    "Normal",
    "PerturbationTarget",
    "SumOfGamma",
    "Target",
    "aimle",
    "argmax",
    "bipartite_matching",
    "blackbox",
    "check_gradient",
    "check_oracle",
    "fenchel_young_loss",
    "gumbel",
    "graph_shortest_path",
    "grid_dag_edges",
    "grid_shortest_path",
    "gumbel_softmax",
    "host_oracle",
    "imle",
    "ksubset",
    "l2x",
    "no_noise",
    "normal",
    "perturbed",
    "pid",
    "sfe",
    "simple",
    "softsub",
    "sog",
    "ste",
    "top_k",
]
