"""Reference quantities and hypothesis tests shared by the statistical tests."""

import numpy as np

# Two-sided z threshold per coordinate: false-failure probability 6.8e-6 per coordinate.
Z_THRESHOLD = 4.5


def softmax(x, tau=1.0):
    """Softmax of ``x / tau`` in float64."""
    x = np.asarray(x, np.float64) / tau
    e = np.exp(x - x.max())
    return e / e.sum()


def assert_mean_matches(samples, expected, threshold=Z_THRESHOLD):
    """Per-coordinate z-test of the sample mean against ``expected``; coordinates with zero
    spread must match exactly."""
    samples = np.asarray(samples, np.float64)
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(samples.shape[0])
    expected = np.asarray(expected, np.float64)
    exact = se == 0
    np.testing.assert_allclose(mean[exact], expected[exact], atol=1e-6)
    z = np.abs(mean[~exact] - expected[~exact]) / se[~exact]
    assert np.all(z < threshold), (mean, expected, z)
