r"""The exact k-subset distribution.

For ``z`` in ``{0, 1}^m`` with exactly ``k`` ones, the k-subset family with logits ``theta`` and
temperature ``tau`` is

.. math::
   p(z; \theta) = \exp\big(\langle z, \theta\rangle / \tau - A(\theta)\big), \qquad
   A(\theta) = \log e_k\big(\exp(\theta / \tau)\big),

where ``e_k(w) = sum_{|S| = k} prod_{i in S} w_i`` is the k-th elementary symmetric polynomial.
Everything here is computed exactly in ``O(m k)`` time by a dynamic program over the items in
log space,

.. math::
   L_i[j] = \operatorname{logaddexp}\big(L_{i-1}[j],\; L_{i-1}[j-1] + \theta_i / \tau\big),
   \qquad L_0 = (0, -\infty, \dots, -\infty), \qquad A(\theta) = L_m[k],

so that ``L_i[j] = log e_j(exp(theta_{1..i} / tau))``.

Conventions shared by every function of the module:

* **One instance.** ``theta`` has shape ``(m,)``; a batch is a ``jax.vmap`` over instances (and
  over split keys for :func:`sample`).
* **Static k.** ``k`` is a Python ``int`` with ``1 <= k <= m``; it fixes array shapes, so it must
  not be traced (close over it, or mark it static in ``jax.jit``).
* **Temperature.** ``tau`` is a positive scalar; it may be traced (and differentiated).
* **Dtypes.** ``float32`` and ``float64`` inputs are computed in their own precision.
  ``float16`` and ``bfloat16`` inputs are computed in ``float32`` and the results are rounded back
  to the input dtype. Non-floating ``theta`` raises ``TypeError``.
* **Numerics.** ``log 0`` is represented by the finite value ``-finfo(dtype).max / 16`` and every
  row of the dynamic program is shifted by its maximum, with the shifts accumulated separately
  (compensated summation), so that the entries that matter stay of moderate magnitude.
  Results therefore stay finite and gradients stay free of ``nan`` for any ``theta / tau`` of
  magnitude far below ``finfo(dtype).max / 16`` (for instance logits spanning ``+-1e3``).
"""

from imlejax.ksubset._dp import log_partition as log_partition
from imlejax.ksubset._dp import log_prob as log_prob
from imlejax.ksubset._dp import marginals as marginals
from imlejax.ksubset._enumeration import enumerate_states as enumerate_states
from imlejax.ksubset._enumeration import exact_gradient as exact_gradient
from imlejax.ksubset._enumeration import expected_loss as expected_loss
from imlejax.ksubset._sampling import sample as sample

__all__ = [
    "log_partition",
    "marginals",
    "sample",
    "log_prob",
    "enumerate_states",
    "expected_loss",
    "exact_gradient",
]

# The functions are documented and pickled as members of this module, as before the split.
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name
