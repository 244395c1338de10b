"""Metrics of the learning-to-explain experiments: test MSE, subset precision, median rank."""

from __future__ import annotations

import numpy as np

from experiments.l2x.data import PAD


def mse(pred: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error ``mean((pred - y)**2)`` (Table 3 reports it times 100)."""
    pred, y = np.asarray(pred, np.float64), np.asarray(y, np.float64)
    if pred.shape != y.shape:
        raise ValueError(f"pred and y must have the same shape; got {pred.shape} and {y.shape}.")
    return float(np.mean((pred - y) ** 2))


def subset_precision(selected: np.ndarray, x: np.ndarray, gold: np.ndarray, k: int) -> float:
    r"""Subset precision of the reference notebook on the annotated reviews.

    .. math:: \mathrm{precision} = \frac{\sum_r |\{i : s_{ri} = 1,\ x_{ri} \ne \mathrm{PAD},\
              i \in \mathrm{gold}_r\}|}{\sum_r \max(|\{i : s_{ri} = 1,\ x_{ri} \ne
              \mathrm{PAD}\}|,\ k)}

    Only selected non-padding tokens count; a review with fewer than ``k`` of them still counts
    ``k`` in the denominator, one with more counts them all.

    Args:
      selected: ``(N, L)`` selection (non-zero = selected).
      x: ``(N, L)`` token ids (``PAD`` = 0 for padding).
      gold: ``(N, L)`` booleans, the positions inside the aspect's gold spans.
      k: the number of tokens each selection is meant to have.
    """
    selected, x, gold = np.asarray(selected) != 0, np.asarray(x), np.asarray(gold, bool)
    if not selected.shape == x.shape == gold.shape or selected.ndim != 2:
        raise ValueError(
            f"selected, x and gold must have one shape (N, L); got {selected.shape}, {x.shape}, "
            f"{gold.shape}."
        )
    real = selected & (x != PAD)
    correct = int(np.sum(real & gold))
    denominator = int(np.sum(np.maximum(real.sum(axis=1), k)))
    return correct / denominator


def ranks(scores: np.ndarray) -> np.ndarray:
    """Rank of each feature by decreasing score, from 1, per row; ties get the lowest index first."""
    scores = np.asarray(scores)
    order = np.argsort(-scores, axis=-1, kind="stable")
    out = np.empty_like(order)
    np.put_along_axis(out, order, np.arange(1, scores.shape[-1] + 1), axis=-1)
    return out


def median_rank(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Per row, the median of the ranks (:func:`ranks`) of the relevant features.

    ``relevant`` is ``(N, d)`` boolean with the same number of relevant features in every row.
    The best value is ``(r + 1) / 2`` for ``r`` relevant features.
    """
    relevant = np.asarray(relevant, bool)
    counts = relevant.sum(axis=1)
    if relevant.shape != np.shape(scores) or not np.all(counts == counts[0]) or counts[0] == 0:
        raise ValueError("relevant must match scores and mark the same number (>= 1) per row.")
    r = ranks(scores)
    return np.median(r[relevant].reshape(len(r), -1), axis=1)
