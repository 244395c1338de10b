"""check_gradient tells right gradients from wrong ones.

Statistical assertions use fixed keys. The z-test on the unbiased estimator uses the threshold 4.5
on each of 5 coordinates (false-failure probability 3.4e-5). The bounds on cosines and relative
biases allow Monte Carlo errors of at least three times their typical norm (false-failure
probability below 1e-6 each).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import imlejax as ij
from imlejax import ksubset

THETA = jnp.array([0.5, -0.3, 1.2, 0.0, -1.0])
B = jnp.array([1.0, 0.0, 1.0, 0.0, 0.0])
W = jnp.array([1.0, -2.0, 0.5, 3.0, -1.0])


def quadratic(z):
    return jnp.sum((z - B) ** 2) + 2.0 * z[0] * z[3]


def linear(z):
    return jnp.vdot(z, W)


SFE = ij.sfe(2, quadratic, num_samples=4, baseline="mean")


def sign_flipped(key, theta):
    value = SFE(key, theta)
    return 2 * jax.lax.stop_gradient(value) - value  # same value, negated gradient


def scaled(key, theta):
    value = SFE(key, theta)
    return 6.5 * value - jax.lax.stop_gradient(5.5 * value)  # same value, gradient x 6.5


@pytest.fixture(scope="module")
def sfe_report():
    return ij.check_gradient(SFE, quadratic, THETA, k=2, num_keys=2_000)


def test_unbiased_sfe_passes(sfe_report):
    r = sfe_report
    np.testing.assert_allclose(r.exact, ksubset.exact_gradient(quadratic, THETA, 2), rtol=1e-6)
    assert r.max_z < 4.5
    assert r.cosine > 0.99
    assert r.relative_bias < 0.1
    assert r.variance > 0 and np.all(r.stderr > 0)
    np.testing.assert_allclose(r.stderr, np.sqrt(r.variance * 5 / 2_000), rtol=1.0)


def test_sign_flip_gives_cosine_minus_one(sfe_report):
    r = ij.check_gradient(sign_flipped, quadratic, THETA, k=2, num_keys=2_000)
    np.testing.assert_allclose(r.mean, -sfe_report.mean, rtol=1e-5, atol=1e-7)
    assert r.cosine < -0.99
    assert abs(r.relative_bias - 2.0) < 0.2
    assert r.max_z > 20


def test_scale_bug_shows_in_the_relative_bias(sfe_report):
    r = ij.check_gradient(scaled, quadratic, THETA, k=2, num_keys=2_000)
    np.testing.assert_allclose(r.mean, 6.5 * sfe_report.mean, rtol=1e-5, atol=1e-6)
    assert abs(r.relative_bias - 5.5) < 0.5
    assert r.cosine > 0.99
    assert r.max_z > 20


def test_imle_on_argmax_with_gumbel_and_a_small_step_points_the_right_way():
    est = ij.imle(ij.argmax(), noise=ij.gumbel(), target=ij.pid(0.1))
    r = ij.check_gradient(est, linear, THETA, states=jnp.eye(5), num_keys=8_000)
    p = jax.nn.softmax(THETA)
    np.testing.assert_allclose(r.exact, p * (W - p @ W), rtol=1e-5, atol=1e-6)
    assert r.cosine > 0.95


def test_deterministic_biased_estimator_has_zero_variance_and_infinite_z():
    r = ij.check_gradient(
        ij.blackbox(ij.argmax(), lam=1.0), linear, THETA, states=jnp.eye(5), num_keys=4
    )
    assert r.variance == 0.0
    assert r.max_z == np.inf
    assert np.all(r.stderr == 0)


def test_sample_axis_and_matrix_theta_and_the_printed_table():
    theta = jnp.array([[0.2, -0.1], [0.4, 0.0]])
    states = jnp.eye(4).reshape(4, 2, 2)
    flat = ij.imle(lambda t: ij.argmax()(t.reshape(-1)).reshape(t.shape), samples=3)
    r = ij.check_gradient(flat, lambda z: jnp.sum(z * theta), theta, states=states, num_keys=50)
    assert r.mean.shape == (2, 2)
    text = str(r)
    lines = text.splitlines()
    assert lines[0] == "check_gradient over 50 keys"
    assert len(lines) == 2 + 4 + 1
    assert "(1, 0)" in text and lines[-1].startswith("cosine ")
    assert r.z.shape == (2, 2)


def test_validation():
    with pytest.raises(ValueError, match="exactly one"):
        ij.check_gradient(SFE, quadratic, THETA)
    with pytest.raises(ValueError, match="exactly one"):
        ij.check_gradient(SFE, quadratic, THETA, k=2, states=jnp.eye(5))
    with pytest.raises(ValueError, match="states must have shape"):
        ij.check_gradient(SFE, quadratic, THETA, states=jnp.eye(4))
    with pytest.raises(ValueError, match="num_keys"):
        ij.check_gradient(SFE, quadratic, THETA, k=2, num_keys=1)
    with pytest.raises(ValueError, match="estimator returned shape"):
        ij.check_gradient(lambda key, t: jnp.zeros(3) * t[0], quadratic, THETA, k=2, num_keys=2)
