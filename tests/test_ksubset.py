"""Tests of the exact k-subset family against brute-force enumeration."""

import contextlib
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats

from imlejax import ksubset
from imlejax.ksubset import _dp

CASES = [(10, 5), (6, 1), (6, 6), (7, 3)]
TAUS = [1.0, 0.5, 3.0]
# (rtol, atol) per dtype for quantities of order one.
TOL = {"float32": (2e-5, 2e-6), "float64": (1e-11, 1e-12)}


@contextlib.contextmanager
def precision(name):
    """Yields the JAX dtype ``name``, enabling 64-bit floats for ``float64``."""
    if name == "float64":
        with jax.enable_x64(True):
            yield jnp.float64
    else:
        yield jnp.float32


def oracle(theta, k, tau):
    """Log-partition, probabilities, marginals and covariance by enumeration in float64."""
    theta = np.asarray(theta, np.float64)
    m = theta.shape[0]
    states = np.zeros((math.comb(m, k), m))
    for row, idx in enumerate(itertools.combinations(range(m), k)):
        states[row, list(idx)] = 1.0
    logits = states @ theta / tau
    log_z = scipy.special.logsumexp(logits)
    p = np.exp(logits - log_z)
    mu = p @ states
    cov = (states * p[:, None]).T @ states - np.outer(mu, mu)
    return states, log_z, p, mu, cov


def logits_for(m, seed=0, scale=1.0):
    return scale * np.random.default_rng(seed).normal(size=m)


# ----------------------------------------------------------------------------------------------
# Agreement with enumeration
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("m,k", CASES)
def test_matches_enumeration(dtype, m, k):
    rtol, atol = TOL[dtype]
    theta_np = logits_for(m, seed=m * 10 + k)
    with precision(dtype) as dt:
        theta = jnp.asarray(theta_np, dt)
        states = ksubset.enumerate_states(m, k, dtype=dt)[:12]
        for tau in TAUS:
            _, log_z, p, mu, _ = oracle(theta_np, k, tau)
            a = ksubset.log_partition(theta, k, tau)
            assert a.dtype == dt
            np.testing.assert_allclose(a, log_z, rtol=rtol, atol=atol)

            marg = ksubset.marginals(theta, k, tau)
            assert marg.dtype == dt and marg.shape == (m,)
            np.testing.assert_allclose(marg, mu, rtol=rtol, atol=atol)
            np.testing.assert_allclose(jnp.sum(marg), k, rtol=rtol)

            lp = [ksubset.log_prob(z, theta, k, tau) for z in states]
            np.testing.assert_allclose(lp, np.log(p[:12]), rtol=rtol, atol=10 * atol)


@pytest.mark.parametrize("m,k", CASES)
def test_gradient_of_marginals_is_covariance(m, k):
    # d mu_i / d theta_j = Cov(z_i, z_j) / tau, checked through grad of sum(mu * w).
    theta_np = logits_for(m, seed=m * 10 + k)
    theta = jnp.asarray(theta_np, jnp.float32)
    w = jnp.asarray(np.linspace(-1.0, 2.0, m), jnp.float32)
    grad_fn = jax.jit(jax.grad(lambda th, tau: jnp.sum(ksubset.marginals(th, k, tau) * w)))
    for tau in TAUS:
        _, _, _, _, cov = oracle(theta_np, k, tau)
        g = grad_fn(theta, tau)
        assert bool(jnp.all(jnp.isfinite(g)))
        np.testing.assert_allclose(g, cov @ np.asarray(w) / tau, rtol=1e-4, atol=2e-6)


def test_hessian_of_log_partition_is_covariance():
    m, k, tau = 7, 3, 0.5
    theta_np = logits_for(m, seed=3)
    _, _, _, _, cov = oracle(theta_np, k, tau)
    with jax.enable_x64(True):
        hess = jax.hessian(ksubset.log_partition)(jnp.asarray(theta_np, jnp.float64), k, tau)
        np.testing.assert_allclose(hess, cov / tau**2, rtol=1e-10, atol=1e-12)


def test_checkpointed_forward_backward():
    # Large instances checkpoint the forward rows in blocks; the blocked pass (with padding when
    # block does not divide m) must agree with enumeration, including its derivative.
    m, k, tau = 7, 3, 1.0
    theta_np = logits_for(m, seed=21)
    _, log_z, _, mu, cov = oracle(theta_np, k, tau)
    x = jnp.asarray(theta_np, jnp.float32)
    fb = jax.jit(lambda x: _dp.forward_backward(x, k, block=3))
    a, marg = fb(x)
    np.testing.assert_allclose(a, log_z, rtol=2e-6)
    np.testing.assert_allclose(marg, mu, rtol=2e-5, atol=2e-6)
    w = jnp.asarray(np.linspace(-1.0, 2.0, m), jnp.float32)
    g = jax.jit(jax.grad(lambda x: jnp.sum(fb(x)[1] * w)))(x)
    np.testing.assert_allclose(g, cov @ np.asarray(w), rtol=1e-4, atol=2e-6)


def test_gradient_of_log_partition():
    m, k, tau = 6, 2, 0.7
    theta_np = logits_for(m, seed=5)
    _, _, _, mu, _ = oracle(theta_np, k, tau)
    theta = jnp.asarray(theta_np, jnp.float32)
    d_theta, d_tau = jax.grad(ksubset.log_partition, argnums=(0, 2))(theta, k, jnp.float32(tau))
    np.testing.assert_allclose(d_theta, mu / tau, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d_tau, -(mu @ theta_np) / tau**2, rtol=1e-5)
    jitted = jax.jit(ksubset.marginals, static_argnums=1)
    np.testing.assert_allclose(jitted(theta, k, tau), mu, rtol=1e-5, atol=1e-6)


def test_enumerate_states():
    states = ksubset.enumerate_states(3, 2)
    assert states.dtype == jnp.result_type(float)
    np.testing.assert_array_equal(states, [[1, 1, 0], [1, 0, 1], [0, 1, 1]])
    states = np.asarray(ksubset.enumerate_states(7, 3, dtype=jnp.float32))
    assert states.shape == (35, 7)
    np.testing.assert_array_equal(states.sum(axis=1), 3)
    assert len({tuple(r) for r in states}) == 35
    expected = [list(np.flatnonzero(r)) for r in states]
    assert expected == [list(c) for c in itertools.combinations(range(7), 3)]
    np.testing.assert_array_equal(ksubset.enumerate_states(4, 4), np.ones((1, 4)))


def test_log_prob_outside_support_is_minus_inf():
    theta = jnp.zeros(4)
    for z in ([1.0, 1.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 1.0, 0.0]):
        assert float(ksubset.log_prob(jnp.asarray(z), theta, 2)) == -np.inf
    lp = ksubset.log_prob(jnp.asarray([True, False, True, False]), theta, 2)
    np.testing.assert_allclose(lp, -math.log(6), rtol=1e-6)


# ----------------------------------------------------------------------------------------------
# Stability and size
# ----------------------------------------------------------------------------------------------


def test_large_logits_are_stable():
    m, k = 50, 20
    theta_np = np.random.default_rng(7).uniform(-1e3, 1e3, size=m)
    theta32 = jnp.asarray(theta_np, jnp.float32)
    grad_fn = jax.jit(jax.grad(lambda th, tau: jnp.sum(ksubset.marginals(th, k, tau) ** 2)))
    for tau in (1.0, 0.05):
        a32 = ksubset.log_partition(theta32, k, tau)
        mu32 = ksubset.marginals(theta32, k, tau)
        assert bool(jnp.isfinite(a32))
        assert bool(jnp.all((mu32 >= 0) & (mu32 <= 1)))
        np.testing.assert_allclose(jnp.sum(mu32), k, rtol=1e-6)
        with jax.enable_x64(True):
            theta64 = jnp.asarray(theta_np, jnp.float64)
            a64 = ksubset.log_partition(theta64, k, tau)
            mu64 = ksubset.marginals(theta64, k, tau)
            # The largest k logits dominate: A ~ sum(top k) / tau.
            np.testing.assert_allclose(a64, np.sort(theta_np)[-k:].sum() / tau, rtol=1e-6)
        np.testing.assert_allclose(a32, a64, rtol=1e-6)
        np.testing.assert_allclose(mu32, mu64, atol=1e-5)
        assert bool(jnp.all(jnp.isfinite(grad_fn(theta32, tau))))


def test_medium_size_against_float64_and_closed_form():
    m, k = 2000, 1000
    theta_np = logits_for(m, seed=11)
    theta = jnp.asarray(theta_np, jnp.float32)
    a32 = ksubset.log_partition(theta, k)
    mu32 = ksubset.marginals(theta, k)
    np.testing.assert_allclose(jnp.sum(mu32), k, rtol=1e-6)
    with jax.enable_x64(True):
        theta64 = jnp.asarray(theta_np, jnp.float64)
        a64 = ksubset.log_partition(theta64, k)
        mu64 = ksubset.marginals(theta64, k)
        # Constant logits: A = log C(m, k) + k c / tau and mu = k / m.
        c, tau = 0.3, 2.0
        flat = jnp.full((m,), c, jnp.float64)
        log_binom = math.lgamma(m + 1) - math.lgamma(k + 1) - math.lgamma(m - k + 1)
        np.testing.assert_allclose(
            ksubset.log_partition(flat, k, tau), log_binom + k * c / tau, rtol=1e-12
        )
        np.testing.assert_allclose(ksubset.marginals(flat, k, tau), k / m, rtol=1e-10)
    np.testing.assert_allclose(a32, a64, rtol=1e-6)
    np.testing.assert_allclose(mu32, mu64, atol=1e-5)


@pytest.mark.slow
def test_large_size_runs():
    m, k = 10_000, 5_000
    theta = jnp.asarray(logits_for(m, seed=13), jnp.float32)
    a = ksubset.log_partition(theta, k)
    mu = ksubset.marginals(theta, k)
    assert bool(jnp.isfinite(a))
    assert bool(jnp.all((mu >= 0) & (mu <= 1)))
    np.testing.assert_allclose(jnp.sum(mu), k, rtol=1e-6)
    log_binom = math.lgamma(m + 1) - math.lgamma(k + 1) - math.lgamma(m - k + 1)
    flat = jnp.full((m,), 0.5, jnp.float32)
    np.testing.assert_allclose(ksubset.log_partition(flat, k), log_binom + 0.5 * k, rtol=1e-5)
    np.testing.assert_allclose(ksubset.marginals(flat, k), 0.5, atol=1e-5)
    g = jax.grad(ksubset.log_partition)(theta, k)
    np.testing.assert_allclose(g, mu, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Sampling
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("m,k", [(6, 3), (6, 1), (6, 6), (1000, 300)])
def test_samples_have_exactly_k_ones(m, k):
    theta = jnp.asarray(logits_for(m, seed=1, scale=3.0), jnp.float32)
    for seed in range(4):
        z = ksubset.sample(jax.random.key(seed), theta, k, 0.5)
        assert z.shape == (m,) and z.dtype == jnp.float32
        assert set(np.unique(np.asarray(z))) <= {0.0, 1.0}
        assert float(jnp.sum(z)) == k


def test_sample_frequencies_match_exact_probabilities():
    m, k, tau, n = 6, 3, 1.0, 20_000
    theta_np = logits_for(m, seed=2, scale=0.7)
    states, _, p, _, _ = oracle(theta_np, k, tau)
    assert n * p.min() > 5  # chi-square approximation is valid
    keys = jax.random.split(jax.random.key(123), n)
    theta = jnp.asarray(theta_np, jnp.float32)
    zs = np.asarray(jax.vmap(lambda key: ksubset.sample(key, theta, k, tau))(keys))
    # samples=n draws one sample per split key: the same draws from one shared table.
    np.testing.assert_array_equal(ksubset.sample(jax.random.key(123), theta, k, tau, samples=n), zs)
    np.testing.assert_array_equal(zs.sum(axis=1), k)
    index = {tuple(s): i for i, s in enumerate(states)}
    counts = np.bincount([index[tuple(z)] for z in zs], minlength=len(states))
    # Under a faithful sampler the p-value is uniform: false-failure rate 1e-4 (fixed key, so the
    # outcome is deterministic).
    assert scipy.stats.chisquare(counts, n * p).pvalue > 1e-4
    # Marginal frequencies: each z_i is binomial(n, mu_i); 5 standard deviations per coordinate
    # gives a false-failure rate below 6 * 6e-7.
    mu = p @ states
    sd = np.sqrt(mu * (1 - mu) / n)
    assert np.all(np.abs(zs.mean(axis=0) - mu) < 5 * sd)


def test_sample_is_deterministic_and_jit_matches_eager():
    m, k = 6, 3
    theta = jnp.asarray(logits_for(m, seed=4), jnp.float32)
    key = jax.random.key(9)
    z1 = ksubset.sample(key, theta, k, 0.8)
    z2 = ksubset.sample(key, theta, k, 0.8)
    np.testing.assert_array_equal(z1, z2)
    jitted = jax.jit(ksubset.sample, static_argnums=2)(key, theta, k, 0.8)
    np.testing.assert_array_equal(z1, jitted)
    raw = ksubset.sample(jax.random.PRNGKey(9), theta, k, 0.8)
    assert float(jnp.sum(raw)) == k
    assert not np.array_equal(z1, ksubset.sample(jax.random.key(10), theta, k, 0.8))


def test_sample_extremes_and_batch():
    theta = jnp.asarray([50.0, -300.0, 400.0, 0.0, -1000.0, 1000.0])
    z = ksubset.sample(jax.random.key(0), theta, 3)
    np.testing.assert_array_equal(z, [1, 0, 1, 0, 0, 1])
    batch = jnp.stack([theta, -theta])
    keys = jax.random.split(jax.random.key(1), 2)
    zs = jax.vmap(lambda kk, th: ksubset.sample(kk, th, 3))(keys, batch)
    np.testing.assert_array_equal(zs[1], [0, 1, 0, 1, 1, 0])


# ----------------------------------------------------------------------------------------------
# Dtypes, batching, exact expectations
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    m, k = 7, 3
    theta32 = jnp.asarray(logits_for(m, seed=6), jnp.float32)
    theta = theta32.astype(dtype)
    ref = theta.astype(jnp.float32)
    a = ksubset.log_partition(theta, k)
    mu = ksubset.marginals(theta, k)
    z = ksubset.sample(jax.random.key(0), theta, k)
    assert a.dtype == mu.dtype == z.dtype == dtype
    np.testing.assert_allclose(
        a.astype(jnp.float32), ksubset.log_partition(ref, k).astype(dtype).astype(jnp.float32)
    )
    np.testing.assert_allclose(
        mu.astype(jnp.float32), ksubset.marginals(ref, k).astype(dtype).astype(jnp.float32)
    )
    assert float(jnp.sum(z.astype(jnp.float32))) == k


def test_vmap_over_a_batch():
    k = 3
    thetas = jnp.asarray(np.random.default_rng(8).normal(size=(4, 7)), jnp.float32)
    a = jax.vmap(lambda th: ksubset.log_partition(th, k))(thetas)
    mu = jax.vmap(lambda th: ksubset.marginals(th, k, 2.0))(thetas)
    for b in range(4):
        _, log_z, _, _, _ = oracle(np.asarray(thetas[b]), k, 1.0)
        np.testing.assert_allclose(a[b], log_z, rtol=2e-5)
        _, _, _, ref_mu, _ = oracle(np.asarray(thetas[b]), k, 2.0)
        np.testing.assert_allclose(mu[b], ref_mu, rtol=2e-5, atol=2e-6)


def test_expected_loss_and_exact_gradient():
    m, k, tau = 7, 3, 0.5
    theta_np = logits_for(m, seed=12)
    states, _, p, mu, cov = oracle(theta_np, k, tau)
    theta = jnp.asarray(theta_np, jnp.float32)
    w = jnp.asarray(np.arange(m, dtype=np.float32) - 3.0)
    target = jnp.asarray(np.eye(m, dtype=np.float32)[0] + np.eye(m, dtype=np.float32)[4])

    def linear(z):
        return jnp.dot(z, w)

    def squared(z):
        return jnp.sum((z - target) ** 2)

    f = ((states - np.asarray(target)) ** 2).sum(axis=1)
    references = [
        (linear, mu @ np.asarray(w), cov @ np.asarray(w) / tau),
        (squared, p @ f, ((states - mu) * (p * f)[:, None]).sum(axis=0) / tau),
    ]
    for loss_fn, value, grad in references:
        run = jax.jit(
            lambda th, loss_fn=loss_fn: (
                ksubset.expected_loss(loss_fn, th, k, tau),
                ksubset.exact_gradient(loss_fn, th, k, tau),
            )
        )
        e, g = run(theta)
        np.testing.assert_allclose(e, value, rtol=1e-5)
        np.testing.assert_allclose(g, grad, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Validation
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [0, -1, 6])
def test_k_out_of_range(k):
    for fn in (ksubset.log_partition, ksubset.marginals):
        with pytest.raises(ValueError, match=r"1 <= k <= m = 5; got k="):
            fn(jnp.zeros(5), k)
    with pytest.raises(ValueError, match="k"):
        ksubset.sample(jax.random.key(0), jnp.zeros(5), k)
    with pytest.raises(ValueError, match="k"):
        ksubset.enumerate_states(5, k)


def test_validation_errors():
    theta = jnp.zeros(5)
    for tau in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="tau"):
            ksubset.log_partition(theta, 2, tau)
    with pytest.raises(TypeError, match="k must be a static Python int"):
        ksubset.marginals(theta, 2.0)
    with pytest.raises(TypeError, match="floating"):
        ksubset.log_partition(jnp.zeros(5, jnp.int32), 2)
    with pytest.raises(ValueError, match=r"shape \(m,\)"):
        ksubset.marginals(jnp.zeros((2, 5)), 2)
    with pytest.raises(ValueError, match="z must have the shape"):
        ksubset.log_prob(jnp.zeros(4), theta, 2)
    with pytest.raises(ValueError, match="samples"):
        ksubset.sample(jax.random.key(0), theta, 2, samples=0)
    with pytest.raises(ValueError, match="exceeds the enumeration limit"):
        ksubset.enumerate_states(40, 20)
    with pytest.raises(ValueError, match="exceeds the enumeration limit"):
        ksubset.expected_loss(jnp.sum, jnp.zeros(40), 20)
    with pytest.raises(ValueError, match="scalar"):
        ksubset.expected_loss(lambda z: z, jnp.zeros(4), 2)
