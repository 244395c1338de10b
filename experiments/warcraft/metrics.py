"""Loss and metrics of the Warcraft experiment.

* :func:`hamming_loss`: the reference code's Hamming loss, ``mean over maps (and samples) of
  sum over tiles of z (1 - y) + (1 - z) y``.
* :func:`path_metrics`: on the host, in float64, per map: whether the predicted tiles contain an
  8-connected path between the two corner tiles ("valid"), whether that prediction has the
  optimal cost under the true vertex weights (valid and ``|c(z) - c(y)| / c(y) < 1e-6``, the
  accuracy of the paper's tables), whether it equals the gold path, and its Hamming accuracy (the
  fraction of tiles where it agrees with the gold path).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage

OPTIMAL_RTOL = 1e-6
_EIGHT = np.ones((3, 3), bool)


def hamming_loss(z: jax.Array, y: jax.Array) -> jax.Array:
    """Mean over the leading axes of the summed tile mismatches of ``z`` ``(..., B, K, K)``."""
    y = jnp.broadcast_to(y, z.shape)
    errors = z * (1.0 - y) + (1.0 - z) * y
    return jnp.mean(jnp.sum(errors, axis=(-2, -1)))


def connects_corners(mask: np.ndarray) -> bool:
    """Whether the tiles of ``mask`` ``(K, K)`` 8-connect the top-left and bottom-right tiles."""
    if not (mask[0, 0] and mask[-1, -1]):
        return False
    labels, _ = scipy.ndimage.label(mask, structure=_EIGHT)
    return bool(labels[0, 0] == labels[-1, -1])


def path_metrics(pred: np.ndarray, gold: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Per-map metrics of 0/1 predictions ``pred`` against ``gold`` ``(N, K, K)``.

    Returns arrays of shape ``(N,)``: ``optimal`` (valid and of optimal cost under ``weights``),
    ``valid``, ``exact`` (equal to the gold path), ``hamming_acc`` (fraction of agreeing tiles),
    ``hamming`` (number of disagreeing tiles) and ``cost_ratio`` (predicted over gold cost).
    """
    pred = np.asarray(pred, np.float64) > 0.5
    gold = np.asarray(gold, np.float64) > 0.5
    w = np.asarray(weights, np.float64)
    cost_pred = np.sum(w * pred, axis=(1, 2))
    cost_gold = np.sum(w * gold, axis=(1, 2))
    valid = np.array([connects_corners(p) for p in pred], bool)
    rel = np.abs(cost_pred - cost_gold) / np.maximum(cost_gold, 1e-12)
    mismatch = np.sum(pred != gold, axis=(1, 2))
    return dict(
        optimal=valid & (rel < OPTIMAL_RTOL),
        valid=valid,
        exact=mismatch == 0,
        hamming_acc=1.0 - mismatch / pred[0].size,
        hamming=mismatch.astype(np.float64),
        cost_ratio=cost_pred / np.maximum(cost_gold, 1e-12),
    )


def summarise(metrics: dict[str, np.ndarray], prefix: str) -> dict[str, float]:
    """Means of :func:`path_metrics` as percentages (``optimal``, ``valid``, ``exact``,
    ``hamming_acc``) or plain means (``hamming``, ``cost_ratio``), keys prefixed."""
    out = {}
    for key, values in metrics.items():
        scale = 100.0 if key in ("optimal", "valid", "exact", "hamming_acc") else 1.0
        out[f"{prefix}_{key}"] = float(np.mean(values) * scale)
    return out
