"""The I-MLE transform against closed forms, hand-computed backward passes and its contract.

Statistical tests use fixed keys. Each z-test on a mean uses a two-sided threshold of 4.5 standard
errors per coordinate (false-failure probability 6.8e-6 per coordinate), so that a file of a few
hundred such coordinates fails by chance with probability below 1e-3.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from stats_helpers import assert_mean_matches, softmax

import imlejax as ij

THETA = jnp.array([0.5, -0.3, 1.2, 0.0, -1.0])
W = jnp.array([1.0, -2.0, 0.5, 3.0, -1.0])


def per_key_grads(sampler, theta, w, n, seed=0, **kwargs):
    keys = jax.random.split(jax.random.key(seed), n)
    grad = jax.grad(lambda t, k: jnp.vdot(w, sampler(k, t, **kwargs)))
    return jax.jit(jax.vmap(grad, in_axes=(None, 0)))(theta, keys)


# ---------------------------------------------------------------------------------------------
# Closed forms with Gumbel noise and an argmax oracle.


@pytest.mark.parametrize("lam", [0.3, 1.0, 5.0])
@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_expected_gradient_equals_softmax_finite_difference(lam, tau):
    # E[(MAP(theta+eps) - MAP(theta - lam*w + eps)) / lam] = (softmax(theta/tau) - softmax((theta-lam*w)/tau)) / lam
    sampler = ij.imle(ij.argmax(), noise=ij.gumbel(tau), target=ij.pid(lam))
    grads = per_key_grads(sampler, THETA, W, 40_000)
    expected = (softmax(THETA, tau) - softmax(THETA - lam * W, tau)) / lam
    assert_mean_matches(grads, expected)


def test_samples_axis_agrees_with_vmap_over_keys():
    lam = 2.0
    sampler = ij.imle(ij.argmax(), noise=ij.gumbel(), target=ij.pid(lam), samples=8)
    keys = jax.random.split(jax.random.key(3), 5_000)
    grad = jax.grad(lambda t, k: jnp.mean(sampler(k, t) @ W))
    grads = jax.jit(jax.vmap(grad, in_axes=(None, 0)))(THETA, keys)
    # Averaging over 8 samples scales each upstream gradient by 1/8, so the step in theta is
    # (lam/8) * W: lam acts on the scale of the upstream gradient.
    step = lam / 8
    expected = (softmax(THETA) - softmax(THETA - step * W)) / step
    assert_mean_matches(grads, expected)
    # The same loss written as a vmap over 8 keys gets the same expectation.
    keys8 = jax.random.split(jax.random.key(4), (5_000, 8))
    single = ij.imle(ij.argmax(), noise=ij.gumbel(), target=ij.pid(lam))
    grad_v = jax.grad(lambda t, k: jnp.mean(jax.vmap(single, in_axes=(0, None))(k, t) @ W))
    grads_v = jax.jit(jax.vmap(grad_v, in_axes=(None, 0)))(THETA, keys8)
    assert_mean_matches(grads_v, expected)


def test_central_difference_expectation():
    lam = 1.0
    sampler = ij.imle(ij.argmax(), noise=ij.gumbel(), target=ij.pid(lam, central=True))
    grads = per_key_grads(sampler, THETA, W, 40_000, seed=1)
    expected = (softmax(THETA + lam * W) - softmax(THETA - lam * W)) / (2 * lam)
    assert_mean_matches(grads, expected)


def test_forward_frequencies_equal_softmax():
    # Chi-square goodness of fit, 4 degrees of freedom, p > 1e-4 (false-failure rate 1e-4).
    from scipy import stats

    tau = 0.7
    sampler = ij.imle(ij.argmax(), noise=ij.gumbel(tau), samples=50_000)
    z = np.asarray(sampler(jax.random.key(11), THETA))
    counts = z.sum(axis=0)
    expected = softmax(THETA, tau) * z.shape[0]
    assert stats.chisquare(counts, expected).pvalue > 1e-4


def test_backward_reuses_forward_noise():
    # Coupled differences MAP(theta+eps) - MAP(theta'+eps) vanish for small steps; with independent
    # noise they do not. The coupled variance must be far below the independent one.
    lam = 0.1
    noise = ij.gumbel()
    sampler = ij.imle(ij.argmax(), noise=noise, target=ij.pid(lam))
    grads = np.asarray(per_key_grads(sampler, THETA, W, 4_000, seed=2))
    keys = jax.random.split(jax.random.key(2), 4_000)
    oracle = ij.argmax()

    def independent(k):
        k1, k2 = jax.random.split(k)
        e1 = noise.sample(k1, THETA.shape)
        e2 = noise.sample(k2, THETA.shape)
        return (oracle(THETA + e1) - oracle(THETA - lam * W + e2)) / lam

    indep = np.asarray(jax.vmap(independent)(keys))
    assert grads.var(axis=0).sum() < 0.1 * indep.var(axis=0).sum()


def test_backward_recomputed_by_hand():
    k, shape = 3, (6,)
    lam, tau, target_tau = 4.0, 1.5, 0.5
    noise = ij.sog(k, tau=tau)
    oracle = ij.top_k(k)
    theta = jax.random.normal(jax.random.key(0), shape)
    w = jax.random.normal(jax.random.key(1), (4, *shape))
    key = jax.random.key(42)
    sampler = ij.imle(oracle, noise=noise, target=ij.pid(lam, target_tau=target_tau), samples=4)
    got = jax.grad(lambda t: jnp.sum(w * sampler(key, t)))(theta)

    eps = noise.sample(key, (4, *shape), theta.dtype)
    z = jax.vmap(oracle)(theta[None] + eps)
    z_target = jax.vmap(oracle)(theta[None] - lam * w + eps * (target_tau / tau))
    expected = jnp.sum(z - z_target, axis=0) / lam
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(sampler(key, theta), z)


def test_central_backward_recomputed_by_hand_with_alpha():
    lam, alpha = 0.7, 0.5
    noise = ij.gumbel()
    oracle = ij.top_k(2)
    theta = jax.random.normal(jax.random.key(5), (7,))
    w = jax.random.normal(jax.random.key(6), (7,))
    key = jax.random.key(7)
    sampler = ij.imle(oracle, noise=noise, target=ij.pid(lam, alpha=alpha, central=True))
    got = jax.grad(lambda t: jnp.vdot(w, sampler(key, t)))(theta)
    eps = noise.sample(key, (1, 7), theta.dtype)[0]
    expected = (oracle(alpha * theta + lam * w + eps) - oracle(alpha * theta - lam * w + eps)) / (
        2 * lam
    )
    np.testing.assert_allclose(got, expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Exactness, non-differentiation of the oracle, Fact 1.


def test_linear_oracle_makes_the_estimator_exact():
    # For a linear, symmetric "oracle" z = A theta the finite difference is exact: A g.
    a = jax.random.normal(jax.random.key(0), (4, 4))
    a = a + a.T
    sampler = ij.imle(lambda t: a @ t, noise=ij.gumbel(), target=ij.pid(0.37))
    key = jax.random.key(1)
    theta = jnp.array([0.3, -1.0, 2.0, 0.5])
    with jax.enable_x64(True):
        a64, theta64 = a.astype(jnp.float64), theta.astype(jnp.float64)
        sampler = ij.imle(lambda t: a64 @ t, noise=ij.gumbel(), target=ij.pid(0.37))
        check_grads(lambda t: sampler(key, t), (theta64,), order=1, modes=["rev"])


@jax.custom_jvp
def _undifferentiable_top2(theta):
    _, idx = jax.lax.top_k(theta, 2)
    return jax.nn.one_hot(idx, theta.shape[-1], dtype=theta.dtype).sum(0)


@_undifferentiable_top2.defjvp
def _undifferentiable_top2_jvp(primals, tangents):
    raise AssertionError("the oracle was differentiated")


def test_oracle_is_never_differentiated():
    with pytest.raises(AssertionError, match="differentiated"):
        jax.jvp(_undifferentiable_top2, (THETA,), (THETA,))
    sampler = ij.imle(_undifferentiable_top2, noise=ij.sog(2), target=ij.pid(2.0), samples=3)
    g = jax.jit(jax.grad(lambda t: jnp.sum(sampler(jax.random.key(0), t) @ W)))(THETA)
    assert g.shape == THETA.shape
    a = ij.imle(_undifferentiable_top2, target=ij.aimle(central=True))
    state = ij.aimle().init()
    jax.grad(lambda t, s: jnp.vdot(W, a(jax.random.key(0), t, state=s)), argnums=(0, 1))(
        THETA, state
    )


@pytest.mark.parametrize("lam", [1.0, 2.0])
def test_fact1_hamming_loss_gives_the_perceptron_rule(lam):
    m, k = 8, 3
    theta = jax.random.normal(jax.random.key(0), (m,))
    y = jnp.zeros(m).at[jnp.array([1, 4, 6])].set(1.0)
    hamming = lambda z: jnp.mean(z + y - 2 * z * y)  # noqa: E731
    sampler = ij.imle(ij.top_k(k), noise=None, target=ij.pid(lam, alpha=0.0))
    g = jax.grad(lambda t: hamming(sampler(jax.random.key(0), t)))(theta)
    np.testing.assert_array_equal(g, (ij.top_k(k)(theta) - y) / lam)


# ---------------------------------------------------------------------------------------------
# Minimisation convention.


def test_minimize_convention_and_sign():
    w = jnp.array([3.0, 1.0, 2.0, 0.0, 5.0])
    argmin = lambda c: ij.argmax()(-c)  # noqa: E731
    key = jax.random.key(9)
    f_min = ij.imle(argmin, noise=ij.gumbel(), target=ij.pid(2.0), minimize=True)
    f_max = ij.imle(ij.argmax(), noise=ij.gumbel(), target=ij.pid(2.0))
    c = jnp.array([1.0, 0.0, -1.0, 2.0, 0.5])
    np.testing.assert_array_equal(f_min(key, w), f_max(key, -w))
    g_min = jax.grad(lambda v: jnp.vdot(c, f_min(key, v)))(w)
    g_max = jax.grad(lambda t: jnp.vdot(c, f_max(key, t)))(-w)
    np.testing.assert_array_equal(g_min, -g_max)
    # Without noise: z = argmin(w); increasing the cost of a chosen item lowers its selection.
    f0 = ij.imle(argmin, noise=None, target=ij.pid(10.0), minimize=True)
    np.testing.assert_array_equal(f0(key, w), jnp.array([0, 0, 0, 1.0, 0]))
    # loss = chosen cost c.z with c pointing at item 3: target w' = w + lam c moves away from 3.
    c3 = jnp.array([0, 0, 0, 1.0, 0])
    g = jax.grad(lambda v: jnp.vdot(c3, f0(key, v)))(w)
    # w' = w + lam*c3 selects item 1, so dL/dw = -(z - z')/lam = (e_1 - e_3)/lam.
    np.testing.assert_array_equal(g, (jnp.array([0, 1.0, 0, 0, 0]) - c3) / 10.0)


def test_minimize_frequencies_equal_softmax_of_minus_costs():
    from scipy import stats

    w = jnp.array([0.5, -0.3, 1.2, 0.0])
    f_min = ij.imle(lambda c: ij.argmax()(-c), noise=ij.gumbel(), samples=40_000, minimize=True)
    counts = np.asarray(f_min(jax.random.key(4), w)).sum(axis=0)
    # Chi-square, 3 degrees of freedom, false-failure rate 1e-4.
    assert stats.chisquare(counts, softmax(-w) * counts.sum()).pvalue > 1e-4


# ---------------------------------------------------------------------------------------------
# Contract: keys, samples, args, dtypes, determinism, residuals.


def test_raw_and_typed_keys_give_the_same_samples():
    sampler = ij.imle(ij.top_k(2), noise=ij.sog(2), samples=3)
    typed = sampler(jax.random.key(5), THETA)
    raw = sampler(jax.random.PRNGKey(5), THETA)
    np.testing.assert_array_equal(typed, raw)
    with pytest.raises(TypeError, match="key"):
        sampler(jnp.ones(3), THETA)


def test_same_key_same_result_jit_and_eager():
    sampler = ij.imle(ij.top_k(3), noise=ij.sog(3), target=ij.pid(5.0), samples=4)
    loss = lambda t, k: jnp.sum(sampler(k, t) @ jnp.arange(5.0))  # noqa: E731
    key = jax.random.key(123)
    eager = jax.grad(loss)(THETA, key)
    jitted = jax.jit(jax.grad(loss))(THETA, key)
    np.testing.assert_array_equal(eager, jitted)
    np.testing.assert_array_equal(jax.grad(loss)(THETA, key), eager)
    np.testing.assert_array_equal(sampler(key, THETA), jax.jit(sampler)(key, THETA))


def test_sample_shapes_and_exact_k():
    theta = jax.random.normal(jax.random.key(0), (20, 20))
    one = ij.imle(ij.top_k(10), noise=ij.sog(10))(jax.random.key(1), theta)
    many = ij.imle(ij.top_k(10), noise=ij.sog(10), samples=5)(jax.random.key(1), theta)
    assert one.shape == (20, 20) and many.shape == (5, 20, 20)
    np.testing.assert_array_equal(one.sum(-1), 10.0)
    np.testing.assert_array_equal(many.sum(-1), 10.0)
    assert set(np.unique(np.asarray(many)).tolist()) <= {0.0, 1.0}


def test_extra_arguments_pass_through_with_zero_cotangents():
    def masked_top2(theta, mask, offset):
        return ij.top_k(2)(jnp.where(mask, theta + offset["shift"], -1e9))

    sampler = ij.imle(masked_top2, noise=ij.gumbel(), target=ij.pid(1.0), samples=2)
    mask = jnp.array([True, True, False, True, True])
    offset = {"shift": jnp.zeros(5)}
    key = jax.random.key(0)
    z = sampler(key, THETA, mask, offset)
    assert np.all(np.asarray(z)[:, 2] == 0)
    g_theta, g_offset = jax.grad(
        lambda t, o: jnp.sum(sampler(key, t, mask, o) * W[None]), argnums=(0, 1)
    )(THETA, offset)
    assert g_theta.shape == (5,)
    np.testing.assert_array_equal(g_offset["shift"], jnp.zeros(5))


def test_decorator_form():
    @ij.imle(noise=ij.sog(2), target=ij.pid(3.0), samples=2)
    def solver(theta):
        return ij.top_k(2)(theta)

    assert solver(jax.random.key(0), THETA).shape == (2, 5)
    assert isinstance(solver, ij.Estimator)
    assert solver.map_fn.__name__ == "solver"
    assert repr(solver).startswith("imle(solver, noise=SumOfGamma(k=2")


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32])
def test_dtypes(dtype):
    sampler = ij.imle(ij.top_k(2), noise=ij.sog(2), target=ij.pid(2.0), samples=3)
    theta = THETA.astype(dtype)
    z = sampler(jax.random.key(0), theta)
    assert z.dtype == dtype
    g = jax.grad(lambda t: jnp.sum(sampler(jax.random.key(0), t) @ W.astype(dtype)))(theta)
    assert g.dtype == dtype and np.all(np.isfinite(np.asarray(g, np.float32)))


def test_float64():
    with jax.enable_x64(True):
        theta = THETA.astype(jnp.float64)
        for noise in (ij.gumbel(), ij.sog(2)):
            sampler = ij.imle(ij.top_k(2), noise=noise, target=ij.pid(2.0))
            g = jax.grad(lambda t: jnp.vdot(W.astype(jnp.float64), sampler(jax.random.key(0), t)))(
                theta
            )
            assert g.dtype == jnp.float64
            assert sampler(jax.random.key(0), theta).dtype == jnp.float64


def _residual_bytes(fn, *primals):
    _, vjp_fn = jax.vjp(fn, *primals)
    leaves = [x for x in jax.tree.leaves(vjp_fn) if hasattr(x, "dtype")]
    return sum(
        x.size * x.dtype.itemsize
        for x in leaves
        if not jnp.issubdtype(x.dtype, jax.dtypes.prng_key)
    )


def test_residuals_hold_no_noise_and_no_copies_of_theta():
    s, m = 16, 400
    theta = jax.random.normal(jax.random.key(0), (m,))
    sampler = ij.imle(ij.top_k(10), noise=ij.sog(10), target=ij.pid(1.0), samples=s)
    key = jax.random.key(1)
    got = _residual_bytes(lambda t: sampler(key, t), theta)
    theta_bytes, samples_bytes = m * 4, s * m * 4
    # theta and the samples only: a stored noise tensor or tiled theta would add s*m*4 bytes.
    assert got <= theta_bytes + samples_bytes + 64, got


# ---------------------------------------------------------------------------------------------
# Errors.


def test_oracle_output_is_checked_at_trace_time():
    wrong_shape = ij.imle(lambda t: t[:2], noise=ij.gumbel())
    with pytest.raises(ValueError, match="map_fn.*shape"):
        wrong_shape(jax.random.key(0), THETA)
    wrong_dtype = ij.imle(lambda t: (t > 0).astype(jnp.int32), noise=ij.gumbel())
    with pytest.raises(TypeError, match="map_fn.*floating"):
        wrong_dtype(jax.random.key(0), THETA)
    mixed = ij.imle(lambda t: (t > 0).astype(jnp.float16), noise=ij.gumbel())
    with pytest.raises(TypeError, match="map_fn.*dtype"):
        mixed(jax.random.key(0), THETA)
    with pytest.raises(TypeError, match="theta"):
        ij.imle(ij.top_k(2))(jax.random.key(0), jnp.arange(5))


def test_constructor_errors():
    with pytest.raises(ValueError, match="lam"):
        ij.pid(0.0)
    with pytest.raises(ValueError, match="lam"):
        ij.pid(-1.0)
    with pytest.raises(ValueError, match="alpha"):
        ij.pid(1.0, alpha=-1.0)
    with pytest.raises(ValueError, match="target_tau"):
        ij.pid(1.0, target_tau=0.0)
    with pytest.raises(ValueError, match="samples"):
        ij.imle(ij.top_k(2), samples=0)
    with pytest.raises(TypeError, match="map_fn"):
        ij.imle(3)
    with pytest.raises(TypeError, match="noise"):
        ij.imle(ij.top_k(2), noise="gumbel")
    with pytest.raises(ValueError, match="decay"):
        ij.aimle(decay=1.0)
    with pytest.raises(ValueError, match="state"):
        ij.imle(ij.top_k(2), target=ij.aimle())(jax.random.key(0), THETA)
    with pytest.raises(TypeError, match="state"):
        ij.imle(ij.top_k(2))(jax.random.key(0), THETA, state=ij.aimle().init())


# ---------------------------------------------------------------------------------------------
# Multiple devices.


def _batch_problem():
    b, m = 8, 12
    theta = jax.random.normal(jax.random.key(0), (b, m))
    w = jax.random.normal(jax.random.key(1), (b, 3, m))
    keys = jax.random.split(jax.random.key(2), b)
    sampler = ij.imle(ij.top_k(4), noise=ij.sog(4), target=ij.pid(2.0), samples=3)

    def loss(theta, keys, w):
        z = jax.vmap(sampler)(keys, theta)
        return jnp.sum(z * w)

    return loss, theta, keys, w


@pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 devices (tests/conftest.py sets them)")
def test_sharded_gradient_equals_single_device():
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    loss, theta, keys, w = _batch_problem()
    single = jax.jit(jax.grad(loss))(theta, keys, w)
    mesh = Mesh(np.array(jax.devices()[:4]), ("batch",))
    shard = NamedSharding(mesh, PartitionSpec("batch"))
    args = [jax.device_put(x, shard) for x in (theta, keys, w)]
    sharded = jax.jit(jax.grad(loss))(*args)
    assert len(sharded.sharding.device_set) == 4
    np.testing.assert_array_equal(np.asarray(sharded), np.asarray(single))


@pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 devices (tests/conftest.py sets them)")
def test_pmap_gradient_equals_single_device():
    loss, theta, keys, w = _batch_problem()
    single = jax.jit(jax.grad(loss))(theta, keys, w)
    split = lambda x: x.reshape((4, 2) + x.shape[1:])  # noqa: E731
    pmapped = jax.pmap(jax.grad(loss))(split(theta), split(keys), split(w))
    np.testing.assert_array_equal(np.asarray(pmapped).reshape(single.shape), np.asarray(single))


def test_host_solver_inside_the_transform_under_vmap_and_jit():
    # A SciPy matching solver behind jax.pure_callback: forward and backward stay host calls and
    # the transform composes with vmap and jit; the backward equals the formula recomputed by hand.
    n, b, lam = 4, 3, 2.0
    oracle = ij.bipartite_matching()
    noise = ij.gumbel(0.5)
    sampler = ij.imle(oracle, noise=noise, target=ij.pid(lam), samples=2)
    theta = jax.random.normal(jax.random.key(0), (b, n, n))
    w = jax.random.normal(jax.random.key(1), (b, 2, n, n))
    keys = jax.random.split(jax.random.key(2), b)
    grad = jax.jit(jax.grad(lambda t: jnp.sum(jax.vmap(sampler)(keys, t) * w)))(theta)
    for i in range(b):
        eps = noise.sample(keys[i], (2, n, n), theta.dtype)
        z = jax.vmap(oracle)(theta[i][None] + eps)
        z_t = jax.vmap(oracle)(theta[i][None] - lam * w[i] + eps)
        np.testing.assert_allclose(grad[i], jnp.sum(z - z_t, axis=0) / lam, atol=1e-6)
        np.testing.assert_array_equal(z.sum(-1), 1.0)
