"""The comparison estimators against closed forms, exact gradients and hand-computed examples.

Statistical tests use fixed keys. Each z-test on a mean uses a two-sided threshold of 4.5 standard
errors per coordinate (false-failure probability 6.8e-6 per coordinate); the file has fewer than
60 such coordinates, so it fails by chance with probability below 5e-4.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import stats
from stats_helpers import assert_mean_matches, softmax

import imlejax as ij
from imlejax import ksubset

THETA = jnp.array([0.5, -0.3, 1.2, 0.0, -1.0])
W = jnp.array([1.0, -2.0, 0.5, 3.0, -1.0])


def per_key(fn, n, seed=0):
    keys = jax.random.split(jax.random.key(seed), n)
    return jax.jit(jax.vmap(fn))(keys)


def argmin(w):
    return ij.argmax()(-w)


# ---------------------------------------------------------------------------------------------
# Straight-through


def test_ste_forward_is_perturbed_map_and_backward_is_identity():
    noise = ij.gumbel(0.5)
    f = ij.ste(ij.argmax(), noise=noise, samples=3)
    key = jax.random.key(1)
    eps = noise.sample(key, (3, 5), THETA.dtype)
    np.testing.assert_array_equal(f(key, THETA), jax.vmap(ij.argmax())(THETA[None] + eps))
    ws = jax.random.normal(jax.random.key(2), (3, 5))
    g = jax.grad(lambda t: jnp.sum(ws * f(key, t)))(THETA)
    np.testing.assert_allclose(g, ws.sum(0), rtol=1e-6)
    g_mean = jax.grad(lambda t: jnp.mean(f(key, t) @ W))(THETA)
    np.testing.assert_allclose(g_mean, W, rtol=1e-6)


def test_ste_minimize_flips_the_sign_and_calls_the_oracle_on_costs():
    noise = ij.gumbel()
    f = ij.ste(argmin, noise=noise, minimize=True)
    key = jax.random.key(3)
    eps = noise.sample(key, (1, 5), THETA.dtype)[0]
    np.testing.assert_array_equal(f(key, THETA), argmin(THETA - eps))
    g = jax.grad(lambda w: f(key, w) @ W)(THETA)
    np.testing.assert_allclose(g, -W, rtol=1e-6)


def test_ste_extra_args_get_zero_cotangents_and_jit_agrees():
    def masked_argmax(theta, mask):
        return ij.argmax()(jnp.where(mask > 0, theta, -1e9))

    f = ij.ste(masked_argmax, noise=None)
    mask = jnp.array([1.0, 1.0, 0.0, 1.0, 1.0])
    z = f(jax.random.PRNGKey(0), THETA, mask)
    np.testing.assert_array_equal(z, [1.0, 0.0, 0.0, 0.0, 0.0])
    g_t, g_m = jax.grad(lambda t, m: f(jax.random.key(0), t, m) @ W, argnums=(0, 1))(THETA, mask)
    np.testing.assert_allclose(g_t, W)
    np.testing.assert_array_equal(g_m, jnp.zeros(5))
    np.testing.assert_array_equal(jax.jit(f)(jax.random.key(0), THETA, mask), z)


# ---------------------------------------------------------------------------------------------
# Score function


B = jnp.array([1.0, 0.0, 1.0, 0.0, 0.0])


def quadratic(z):
    return jnp.sum((z - B) ** 2) + 2.0 * z[0] * z[3]


@pytest.mark.parametrize("baseline", [None, 0.7, "mean"])
def test_sfe_value_is_mc_loss_and_gradient_is_the_score_formula(baseline):
    k, tau, s = 2, 1.5, 4
    f = ij.sfe(k, quadratic, tau=tau, num_samples=s, baseline=baseline)
    key = jax.random.key(5)
    value, grad = jax.value_and_grad(f, argnums=1)(key, THETA)
    z = ksubset.sample(key, THETA, k, tau, samples=s)
    losses = np.asarray(jax.vmap(quadratic)(z), np.float64)
    assert value == jnp.mean(jax.vmap(quadratic)(z))
    if baseline is None:
        b = np.zeros(s)
    elif baseline == "mean":
        b = (losses.sum() - losses) / (s - 1)
    else:
        b = np.full(s, baseline)
    mu = np.asarray(ksubset.marginals(THETA, k, tau), np.float64)
    expected = ((losses - b)[:, None] * (np.asarray(z) - mu[None]) / tau).mean(0)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("baseline", [None, "mean"])
def test_sfe_is_unbiased_against_the_exact_gradient(baseline):
    k, tau = 2, 1.0
    f = ij.sfe(k, quadratic, tau=tau, num_samples=4, baseline=baseline)
    grads = per_key(lambda kk: jax.grad(f, argnums=1)(kk, THETA), 4_000, seed=6)
    assert_mean_matches(grads, ksubset.exact_gradient(quadratic, THETA, k, tau))


def test_sfe_loss_args_get_their_pathwise_gradient():
    f = ij.sfe(2, lambda z, c: jnp.sum(c * z), num_samples=3)
    key = jax.random.key(7)
    c = jnp.arange(5.0)
    g_c = jax.grad(f, argnums=2)(key, THETA, c)
    np.testing.assert_allclose(g_c, ksubset.sample(key, THETA, 2, samples=3).mean(0), rtol=1e-6)


def test_sfe_validates_its_arguments():
    with pytest.raises(ValueError, match="samples >= 2"):
        ij.sfe(2, quadratic, baseline="mean")
    with pytest.raises(ValueError, match="baseline"):
        ij.sfe(2, quadratic, num_samples=3, baseline="median")
    with pytest.raises(ValueError, match="tau"):
        ij.sfe(2, quadratic, tau=0.0)
    with pytest.raises(ValueError, match="scalar"):
        ij.sfe(2, lambda z: z)(jax.random.key(0), THETA)


# ---------------------------------------------------------------------------------------------
# Blackbox differentiation


def test_blackbox_hand_example_maximisation():
    # MAP(theta) = e0; theta - 2 g = [-1, 0, 0.5] gives e2; gradient (e0 - e2) / 2.
    f = ij.blackbox(ij.argmax(), lam=2.0)
    theta = jnp.array([1.0, 0.0, 0.5])
    g = jnp.array([1.0, 0.0, 0.0])
    np.testing.assert_array_equal(f(jax.random.key(0), theta), [1.0, 0.0, 0.0])
    grad = jax.grad(lambda t: f(jax.random.key(0), t) @ g)(theta)
    np.testing.assert_allclose(grad, [0.5, 0.0, -0.5])


def test_blackbox_hand_example_minimisation_sign():
    # y(w) = e1 (cheapest); w' = w + 2 g = [1, 2, 0.5] gives e2; gradient -(e1 - e2) / 2:
    # raising the cost of the chosen item lowers the loss, so its gradient is negative.
    f = ij.blackbox(argmin, lam=2.0, minimize=True)
    w = jnp.array([1.0, 0.0, 0.5])
    g = jnp.array([0.0, 1.0, 0.0])
    np.testing.assert_array_equal(f(jax.random.key(0), w), [0.0, 1.0, 0.0])
    grad = jax.grad(lambda c: f(jax.random.key(0), c) @ g)(w)
    np.testing.assert_allclose(grad, [0.0, -0.5, 0.5])
    # The same problem as a maximisation over theta = -w gives the opposite gradient.
    f_max = ij.blackbox(ij.argmax(), lam=2.0)
    grad_max = jax.grad(lambda t: f_max(jax.random.key(0), t) @ g)(-w)
    np.testing.assert_allclose(grad, -grad_max)


@pytest.mark.parametrize("lam", [0.0, -1.0, float("nan")])
def test_blackbox_validates_lam(lam):
    with pytest.raises(ValueError, match="lam"):
        ij.blackbox(ij.argmax(), lam=lam)


# ---------------------------------------------------------------------------------------------
# Perturbed optimizers and the Fenchel-Young loss


def fd_jacobian(fn, x, h=1e-5):
    x = np.asarray(x, np.float64)
    cols = []
    for j in range(x.size):
        e = np.zeros_like(x)
        e[j] = h
        cols.append((fn(x + e) - fn(x - e)) / (2 * h))
    return np.stack(cols, axis=1)  # J[i, j] = d E_i / d x_j


def test_perturbed_argmax_gumbel_matches_the_softmax_jacobian():
    # E[argmax(theta + sigma G)] = softmax(theta / sigma); its Jacobian by finite differences.
    sigma = 0.5
    f = ij.perturbed(ij.argmax(), noise=ij.gumbel(sigma), num_samples=10)
    out = per_key(lambda kk: jax.value_and_grad(lambda t: f(kk, t) @ W)(THETA), 2_000, seed=8)
    values, grads = out
    jac = fd_jacobian(lambda x: softmax(x, sigma), THETA)
    assert_mean_matches(grads, jac.T @ np.asarray(W, np.float64))
    assert_mean_matches(values, softmax(THETA, sigma) @ np.asarray(W, np.float64))


def test_perturbed_normal_noise_two_items_closed_form():
    # With two items, E[argmax(theta + sigma Z)]_0 = Phi((theta_0 - theta_1) / (sigma sqrt 2)).
    sigma = 0.8
    theta = jnp.array([0.3, -0.2])
    w = jnp.array([1.0, -0.5])

    def expectation(x):
        p = stats.norm.cdf((x[0] - x[1]) / (sigma * np.sqrt(2.0)))
        return np.array([p, 1.0 - p])

    f = ij.perturbed(ij.argmax(), noise=ij.normal(sigma), num_samples=10)
    grads = per_key(lambda kk: jax.grad(lambda t: f(kk, t) @ w)(theta), 2_000, seed=9)
    jac = fd_jacobian(expectation, theta)
    assert_mean_matches(grads, jac.T @ np.asarray(w, np.float64))


@pytest.mark.parametrize("noise", ["gumbel", "normal"])
def test_perturbed_per_key_value_and_jacobian_formula(noise):
    # y_hat = mean_s MAP(theta + sigma Z_s); J = mean_s (MAP(theta + sigma Z_s) - MAP(theta))
    # nu'(Z_s)^T / sigma, nu' = 1 - exp(-Z) (Gumbel) or Z (normal); Z drawn as (S, m) from the key.
    sigma, s = 0.7, 6
    noise_obj = ij.gumbel(sigma) if noise == "gumbel" else ij.normal(sigma)
    f = jax.jit(ij.perturbed(ij.argmax(), noise=noise_obj, num_samples=s))
    key = jax.random.key(10)
    draw = jax.random.gumbel if noise == "gumbel" else jax.random.normal
    z = np.asarray(draw(key, (s, 5), THETA.dtype), np.float64)
    theta = np.asarray(THETA, np.float64)
    y = np.stack([np.eye(5)[np.argmax(theta + sigma * zs)] for zs in z])
    y0 = np.eye(5)[np.argmax(theta)]
    score = (1 - np.exp(-z)) if noise == "gumbel" else z
    jac = np.einsum("si,sj->ij", y - y0, score) / (s * sigma)
    np.testing.assert_allclose(f(key, THETA), y.mean(0), rtol=1e-6)
    np.testing.assert_allclose(jax.jacrev(f, argnums=1)(key, THETA), jac, rtol=1e-4, atol=1e-5)


def test_perturbed_noise_tau_is_the_scale_and_args_get_zero_cotangents():
    def shifted_argmax(theta, shift):
        return ij.argmax()(theta + shift)

    key = jax.random.key(11)
    shift = jnp.zeros(5)
    f = jax.jit(ij.perturbed(shifted_argmax, noise=ij.gumbel(2.0), num_samples=4))
    g = 2.0 * np.asarray(jax.random.gumbel(key, (4, 5), THETA.dtype), np.float64)
    y = np.stack([np.eye(5)[np.argmax(np.asarray(THETA, np.float64) + gs)] for gs in g])
    np.testing.assert_allclose(f(key, THETA, shift), y.mean(0), rtol=1e-6)
    _, gs = jax.grad(lambda t, s: f(key, t, s) @ W, argnums=(0, 1))(THETA, shift)
    np.testing.assert_array_equal(gs, jnp.zeros(5))
    with pytest.raises(TypeError, match="log-density"):
        ij.perturbed(ij.argmax(), noise=ij.sog(2))
    with pytest.raises(TypeError, match="string"):
        ij.perturbed(ij.argmax(), noise="gumbel")


def test_fenchel_young_gradient_is_softmax_minus_target_in_expectation():
    sigma = 0.7
    y = jnp.array([0.0, 1.0, 0.0, 0.0, 0.0])
    loss = ij.fenchel_young_loss(ij.argmax(), noise=ij.gumbel(sigma), num_samples=5)
    grads = per_key(lambda kk: jax.grad(loss, argnums=1)(kk, THETA, y), 2_000, seed=12)
    # Every per-key gradient is y_hat - y exactly: entries are multiples of 1/5 summing to zero.
    np.testing.assert_allclose(np.asarray(grads).sum(-1), 0.0, atol=1e-6)
    y_hat = 5 * (np.asarray(grads) + np.asarray(y)[None])
    np.testing.assert_allclose(np.round(y_hat), y_hat, atol=1e-5)
    assert_mean_matches(grads, softmax(THETA, sigma) - np.asarray(y))


def test_fenchel_young_agrees_with_optax_on_the_same_noise():
    losses = pytest.importorskip("optax.losses")
    sigma, s = 0.7, 5
    key = jax.random.key(13)
    y = jnp.array([0.0, 0.0, 1.0, 0.0, 0.0])
    eps = ij.gumbel().sample(key, (s, 5), THETA.dtype)
    # The perturbed max with this noise: F(t) = mean_s max(t + sigma eps_s).
    reference = losses.make_fenchel_young_loss(
        lambda t: jnp.mean(jnp.max(t[None] + sigma * eps, -1))
    )
    ours = ij.fenchel_young_loss(ij.argmax(), noise=ij.gumbel(sigma), num_samples=s)
    np.testing.assert_allclose(ours(key, THETA, y), reference(THETA, y), rtol=1e-6)
    np.testing.assert_allclose(
        jax.grad(ours, argnums=1)(key, THETA, y), jax.grad(reference)(THETA, y), atol=1e-6
    )


# ---------------------------------------------------------------------------------------------
# Relaxations


@pytest.mark.parametrize("hard", [False, True])
def test_gumbel_softmax_matches_the_closed_form_for_a_fixed_key(hard):
    tau = 0.7
    key = jax.random.key(14)
    f = ij.gumbel_softmax(temperature=tau, hard=hard)
    g = jax.random.gumbel(key, THETA.shape, THETA.dtype)

    def closed(t):
        return jax.nn.softmax((t + g) / tau)

    z = f(key, THETA)
    if hard:
        np.testing.assert_array_equal(z, jax.nn.one_hot(jnp.argmax(THETA + g), 5))
    else:
        np.testing.assert_allclose(z, closed(THETA), rtol=1e-6)
    np.testing.assert_allclose(
        jax.jacrev(f, argnums=1)(key, THETA), jax.jacrev(closed)(THETA), rtol=1e-5, atol=1e-7
    )


def test_gumbel_softmax_samples_and_axis():
    theta = jnp.zeros((3, 4))
    z = ij.gumbel_softmax(axis=0, samples=2, hard=True)(jax.random.key(0), theta)
    assert z.shape == (2, 3, 4)
    np.testing.assert_array_equal(z.sum(axis=1), jnp.ones((2, 4)))


def test_simple_forward_is_the_exact_sample_and_backward_the_marginals_vjp():
    k, tau, s = 2, 0.8, 3
    f = ij.simple(k, tau=tau, samples=s)
    key = jax.random.key(15)
    np.testing.assert_array_equal(f(key, THETA), ksubset.sample(key, THETA, k, tau, samples=s))
    ws = jax.random.normal(jax.random.key(16), (s, 5))
    grad = jax.grad(lambda t: jnp.sum(ws * f(key, t)))(THETA)
    _, vjp = jax.vjp(lambda t: ksubset.marginals(t, k, tau), THETA)
    np.testing.assert_allclose(grad, vjp(ws.sum(0))[0], rtol=1e-6, atol=1e-7)
    single = ij.simple(k, tau=tau)
    np.testing.assert_array_equal(single(key, THETA), ksubset.sample(key, THETA, k, tau))


def test_l2x_shapes_sum_and_gradient():
    key = jax.random.key(17)
    z = ij.l2x(2, temperature=0.05, samples=4)(key, THETA)
    assert z.shape == (4, 5)
    assert np.all((z >= 0) & (z <= 1))
    assert np.all(np.asarray(z).sum(-1) <= 2 + 1e-5)
    # At a low temperature the sum counts the distinct winners of k independent categorical
    # draws from softmax(theta): its mean is sum_i 1 - (1 - p_i)^k.
    cold = jax.jit(ij.l2x(3, temperature=0.01, samples=2_000))(key, THETA)
    p = softmax(THETA)
    assert_mean_matches(np.asarray(cold).sum(-1, keepdims=True), [np.sum(1 - (1 - p) ** 3)])
    f = ij.l2x(2, temperature=1.0)
    check_grads(lambda t: f(key, t), (THETA,), order=1, modes=["rev"], atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("hard", [False, True])
def test_softsub_shapes_sum_and_gradient(hard):
    key = jax.random.key(18)
    f = ij.softsub(2, temperature=0.5, samples=3, hard=hard)
    z = f(key, THETA)
    assert z.shape == (3, 5)
    np.testing.assert_allclose(np.asarray(z).sum(-1), 2.0, rtol=1e-5)
    soft = ij.softsub(2, temperature=0.5, samples=3)
    if hard:
        np.testing.assert_array_equal(z, jax.vmap(ij.top_k(2))(soft(key, THETA)))
    # As tau -> 0 the relaxation tends to the top-k of the perturbed scores.
    g = jax.random.gumbel(key, (5,), THETA.dtype)
    cold = ij.softsub(2, temperature=1e-3)(key, THETA)
    np.testing.assert_allclose(cold, ij.top_k(2)(THETA + g), atol=1e-3)
    single = ij.softsub(2, temperature=1.0, hard=hard)
    check_grads(lambda t: soft(key, t), (THETA,), order=1, modes=["rev"], atol=2e-2, rtol=2e-2)
    # The straight-through version has the soft version's gradient.
    w = jnp.arange(5.0)
    np.testing.assert_allclose(
        jax.grad(lambda t: single(key, t) @ w)(THETA),
        jax.grad(lambda t: ij.softsub(2, temperature=1.0)(key, t) @ w)(THETA),
        rtol=1e-6,
    )


@pytest.mark.parametrize(
    "factory",
    [
        lambda: ij.l2x(0),
        lambda: ij.softsub(0),
        lambda: ij.simple(2, tau=-1.0),
        lambda: ij.gumbel_softmax(samples=0),
        lambda: ij.perturbed(ij.argmax(), num_samples=0),
        lambda: ij.fenchel_young_loss(ij.argmax(), num_samples=-1),
        lambda: ij.ste(ij.argmax(), samples=0),
    ],
)
def test_constructors_validate(factory):
    with pytest.raises(ValueError):
        factory()


def test_relaxations_check_k_against_the_last_axis():
    with pytest.raises(ValueError, match="exceeds"):
        ij.softsub(6)(jax.random.key(0), THETA)
    with pytest.raises(ValueError, match="exceeds"):
        ij.l2x(6)(jax.random.key(0), THETA)
