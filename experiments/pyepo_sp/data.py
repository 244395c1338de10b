r"""PyEPO's shortest-path data, re-implemented in NumPy, and the train/test split.

:func:`gen_data` reproduces ``pyepo.data.shortestpath.genData`` (PyEPO 2.2.7) draw for draw: with
``rnd = np.random.RandomState(seed)``, ``d = (h - 1) w + (w - 1) h`` arcs and ``p`` features,

.. math:: B \sim \mathrm{Bernoulli}(0.5)^{d\times p}, \quad x_i \sim \mathcal N(0, I_p), \quad
          c_{ij} = \frac{\big[(B x_i)_j / \sqrt p + 3\big]^{\mathrm{deg}} + 1}{3.5^{\mathrm{deg}}}
          \cdot \varepsilon_{ij}, \quad \varepsilon_{ij} \sim U[1 - \bar\varepsilon, 1 + \bar\varepsilon],

drawn in that order (``B``, then ``x``, then the noise); the costs are returned as float32.
:func:`train_test_split` reproduces ``sklearn.model_selection.train_test_split(..., test_size=n,
random_state=s)`` (a ``ShuffleSplit``): ``perm = RandomState(s).permutation(N)``, test rows
``perm[:n]``, training rows ``perm[n:]``. The tests compare both with the originals when PyEPO and
scikit-learn are installed (the optional extra ``pyepo``); nothing here imports them.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = [
    "REFERENCE",
    "Problem",
    "Split",
    "gen_data",
    "make_problem",
    "num_arcs",
    "train_test_split",
]

# The reference setting of the benchmark: 1000 training and 1000 test instances, 5 features,
# a 5x5 grid (40 arcs), polynomial degree 4, multiplicative noise half-width 0.5.
REFERENCE = dict(num_train=1000, num_test=1000, num_feat=5, grid=(5, 5), deg=4, noise_width=0.5)


def num_arcs(grid: tuple[int, int]) -> int:
    """Number of right and down arcs of an ``(h, w)`` node grid: ``(h - 1) w + (w - 1) h``."""
    h, w = grid
    return (h - 1) * w + (w - 1) * h


def gen_data(
    num_data: int,
    num_feat: int,
    grid: tuple[int, int],
    deg: int = 1,
    noise_width: float = 0.0,
    seed: int = 135,
) -> tuple[np.ndarray, np.ndarray]:
    """Features and arc costs exactly as ``pyepo.data.shortestpath.genData``.

    Args:
      num_data: number of instances ``N``.
      num_feat: number of features ``p``.
      grid: node grid ``(h, w)``; the costs have ``(h - 1) w + (w - 1) h`` entries.
      deg: polynomial degree, an integer ``>= 1``.
      noise_width: half-width of the multiplicative uniform noise, ``>= 0``.
      seed: seed of ``numpy.random.RandomState``.

    Returns:
      ``x`` of shape ``(N, p)`` (float64) and ``c`` of shape ``(N, d)`` (float32), positive.

    Example:
      >>> x, c = gen_data(3, 5, (5, 5), deg=4, noise_width=0.5, seed=0)
      >>> x.shape, c.shape, c.dtype.name
      ((3, 5), (3, 40), 'float32')
    """
    if isinstance(deg, bool) or not isinstance(deg, (int, np.integer)) or deg < 1:
        raise ValueError(f"deg must be an integer >= 1; got {deg!r}.")
    if not np.isfinite(noise_width) or noise_width < 0:
        raise ValueError(f"noise_width must be a finite number >= 0; got {noise_width!r}.")
    rnd = np.random.RandomState(seed)
    d = num_arcs(grid)
    b = rnd.binomial(1, 0.5, (d, num_feat))
    x = rnd.normal(0, 1, (num_data, num_feat))
    c = (x @ b.T / np.sqrt(num_feat) + 3) ** deg + 1
    c /= 3.5**deg
    c *= rnd.uniform(1 - noise_width, 1 + noise_width, (num_data, d))
    return x, c.astype(np.float32)


class Split(NamedTuple):
    """Row indices of the training and test sets."""

    train: np.ndarray
    test: np.ndarray


def train_test_split(num_data: int, test_size: int, random_state: int) -> Split:
    """Row indices as ``sklearn.model_selection.train_test_split(test_size=n, random_state=s)``.

    Example:
      >>> split = train_test_split(10, 3, random_state=0)
      >>> len(split.train), len(split.test)
      (7, 3)
    """
    if not 0 < test_size < num_data:
        raise ValueError(f"test_size must be in 1..{num_data - 1}; got {test_size!r}.")
    perm = np.random.RandomState(random_state).permutation(num_data)
    return Split(train=perm[test_size:], test=perm[:test_size])


class Problem(NamedTuple):
    """One benchmark instance set: features, true costs, optimal paths and optimal costs.

    ``w`` holds the 0/1 arc indicators of the optimal paths of the true costs and ``z`` their
    costs (``z = sum(c * w, -1)``), for the training and the test rows.
    """

    x_train: np.ndarray
    c_train: np.ndarray
    w_train: np.ndarray
    z_train: np.ndarray
    x_test: np.ndarray
    c_test: np.ndarray
    w_test: np.ndarray
    z_test: np.ndarray


def make_problem(
    seed: int,
    solve,
    *,
    num_train: int = 1000,
    num_test: int = 1000,
    num_feat: int = 5,
    grid: tuple[int, int] = (5, 5),
    deg: int = 4,
    noise_width: float = 0.5,
) -> Problem:
    """PyEPO's recipe: ``genData(num_train + num_test, ..., seed)``, then a seeded split.

    ``solve(c)`` maps a ``(N, d)`` float32 cost array to the ``(N, d)`` optimal arc indicators.
    The split uses ``random_state=seed`` as well.
    """
    x, c = gen_data(num_train + num_test, num_feat, grid, deg, noise_width, seed)
    split = train_test_split(len(x), num_test, random_state=seed)
    x = x.astype(np.float32)
    w = np.asarray(solve(c), dtype=np.float32)
    z = np.sum(c * w, axis=-1, dtype=np.float64).astype(np.float32)
    tr, te = split.train, split.test
    return Problem(x[tr], c[tr], w[tr], z[tr], x[te], c[te], w[te], z[te])
