"""imlejax: Implicit Maximum Likelihood Estimation for discrete and combinatorial solvers in JAX.

The transform :func:`imle` turns a MAP oracle into a differentiable perturb-and-MAP sampler;
noise (:func:`gumbel`, :func:`sog`) and target distributions (:func:`pid`, :func:`aimle`) configure
it; :mod:`imlejax.ksubset` holds the exact k-subset family.
"""

from imlejax import ksubset as ksubset
from imlejax._check import check_gradient as check_gradient
from imlejax._estimators import blackbox as blackbox
from imlejax._estimators import fenchel_young_loss as fenchel_young_loss
from imlejax._estimators import gumbel_softmax as gumbel_softmax
from imlejax._estimators import l2x as l2x
from imlejax._estimators import perturbed as perturbed
from imlejax._estimators import sfe as sfe
from imlejax._estimators import simple as simple
from imlejax._estimators import softsub as softsub
from imlejax._estimators import ste as ste
from imlejax._graph_path import graph_shortest_path as graph_shortest_path
from imlejax._graph_path import grid_dag_edges as grid_dag_edges
from imlejax._host import bipartite_matching as bipartite_matching
from imlejax._host import host_oracle as host_oracle
from imlejax._imle import imle as imle
from imlejax._noise import Gumbel as Gumbel
from imlejax._noise import Noise as Noise
from imlejax._noise import SumOfGamma as SumOfGamma
from imlejax._noise import gumbel as gumbel
from imlejax._noise import sog as sog
from imlejax._oracles import argmax as argmax
from imlejax._oracles import check_oracle as check_oracle
from imlejax._oracles import top_k as top_k
from imlejax._shortest_path import grid_shortest_path as grid_shortest_path
from imlejax._targets import AdaptiveTarget as AdaptiveTarget
from imlejax._targets import AIMLEState as AIMLEState
from imlejax._targets import PerturbationTarget as PerturbationTarget
from imlejax._targets import Target as Target
from imlejax._targets import aimle as aimle
from imlejax._targets import pid as pid

__version__ = "0.1.0"

__all__ = [
    "AIMLEState",
    "AdaptiveTarget",
    "Gumbel",
    "Noise",
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
    "perturbed",
    "pid",
    "sfe",
    "simple",
    "softsub",
    "sog",
    "ste",
    "top_k",
]
