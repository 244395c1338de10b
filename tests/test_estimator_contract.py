"""One estimator contract: explicit objects, honest signatures, one meaning per argument name."""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import imlejax as ij
from imlejax import ksubset

THETA = jnp.array([0.5, -0.3, 1.2, 0.0, -1.0])
ORACLE = ij.top_k(2)


def _estimators():
    return {
        "imle": (ij.imle(ORACLE, noise=ij.sog(2)), ORACLE),
        "ste": (ij.ste(ORACLE), ORACLE),
        "blackbox": (ij.blackbox(ORACLE, lam=2.0), ORACLE),
        "perturbed": (ij.perturbed(ORACLE, num_samples=2), ORACLE),
        "fenchel_young_loss": (ij.fenchel_young_loss(ORACLE), ORACLE),
        "sfe": (ij.sfe(2, jnp.sum), None),
        "simple": (ij.simple(2), "top_k(k=2)"),
        "l2x": (ij.l2x(2), "top_k(k=2)"),
        "softsub": (ij.softsub(2), "top_k(k=2)"),
        "gumbel_softmax": (ij.gumbel_softmax(axis=0), "argmax(axis=0)"),
    }


@pytest.mark.parametrize("name", sorted(_estimators()))
def test_every_factory_returns_an_honest_estimator(name):
    est, map_fn = _estimators()[name]
    assert isinstance(est, ij.Estimator)
    assert est.name == name
    assert repr(est).startswith(f"{name}(")
    # No impersonation of the oracle (or of the loss): no copied name, doc or __wrapped__.
    assert not hasattr(est, "__wrapped__")
    assert not hasattr(est, "__name__")
    params = list(inspect.signature(est).parameters)
    assert params[:2] == ["key", "theta"]
    if isinstance(map_fn, str):
        assert repr(est.map_fn) == map_fn
    else:
        assert est.map_fn is map_fn


def test_signatures_say_what_each_estimator_accepts():
    assert str(inspect.signature(ij.imle(ORACLE))) == "(key, theta, *args)"
    assert str(inspect.signature(ij.imle(ORACLE, target=ij.aimle()))) == (
        "(key, theta, *args, state=None)"
    )
    assert str(inspect.signature(ij.fenchel_young_loss(ORACLE))) == "(key, theta, y, *args)"
    assert str(inspect.signature(ij.l2x(2))) == "(key, theta)"
    r = repr(ij.imle(ORACLE, noise=ij.gumbel(0.5), target=ij.pid(3.0), samples=4, minimize=True))
    assert "top_k(k=2)" in r and "Gumbel(tau=0.5)" in r and "lam=3.0" in r
    assert "samples=4" in r and "minimize=True" in r


@pytest.mark.parametrize(
    "est", [ij.l2x(2), ij.softsub(2), ij.simple(2), ij.gumbel_softmax()], ids=repr
)
def test_estimators_without_an_oracle_reject_extra_arguments(est):
    with pytest.raises(TypeError, match="no extra arguments"):
        est(jax.random.key(0), THETA, jnp.zeros(5))


def test_defaults_agree_between_the_perturb_and_map_estimators():
    for est in (ij.imle(ORACLE), ij.ste(ORACLE), ij.perturbed(ORACLE)):
        assert est.noise == ij.gumbel(1.0)
    assert isinstance(ij.imle(ORACLE, noise=None).noise, ij.NoNoise)
    assert isinstance(ij.ste(ORACLE, noise=None).noise, ij.NoNoise)
    # blackbox is I-MLE without noise: the same backward rule, bit for bit.
    w = jnp.array([1.0, -2.0, 0.5, 3.0, -1.0])
    bb = ij.blackbox(ORACLE, lam=2.0)
    im = ij.imle(ORACLE, noise=ij.no_noise(), target=ij.pid(2.0))
    g_bb = jax.grad(lambda t: bb(jax.random.key(0), t) @ w)(THETA)
    g_im = jax.grad(lambda t: im(jax.random.key(1), t) @ w)(THETA)
    np.testing.assert_array_equal(g_bb, g_im)


def test_ste_without_noise_is_the_unperturbed_map():
    z = ij.ste(ORACLE, noise=None)(jax.random.key(0), THETA)
    np.testing.assert_array_equal(z, ORACLE(THETA))


def test_simple_accepts_grouped_theta():
    theta = jax.random.normal(jax.random.key(0), (3, 6))
    key = jax.random.key(1)
    est = ij.simple(2, tau=0.7, samples=4)
    z = est(key, theta)
    assert z.shape == (4, 3, 6)
    np.testing.assert_array_equal(z.sum(-1), 2.0)
    keys = jax.random.split(key, 3)
    for g in range(3):
        ref = ksubset.sample(keys[g], theta[g], 2, 0.7, samples=4)
        np.testing.assert_array_equal(z[:, g], ref)
    w = jax.random.normal(jax.random.key(2), (3, 6))
    grad = jax.grad(lambda t: jnp.sum(est(key, t) * w[None]))(theta)
    mu = lambda t: jnp.sum(jax.vmap(lambda r: ksubset.marginals(r, 2, 0.7))(t) * w)  # noqa: E731
    np.testing.assert_allclose(grad, 4 * jax.grad(mu)(theta), rtol=1e-5, atol=1e-6)


def test_sfe_accepts_grouped_theta():
    theta = jax.random.normal(jax.random.key(0), (2, 5))
    b = jax.random.normal(jax.random.key(1), (2, 5))
    loss = lambda z: jnp.sum((z - b) ** 2)  # noqa: E731
    est = ij.sfe(2, loss, tau=1.0, num_samples=3)
    key = jax.random.key(2)
    value, grad = jax.value_and_grad(est, argnums=1)(key, theta)
    keys = jax.random.split(key, 2)
    z = jnp.stack([ksubset.sample(keys[g], theta[g], 2, 1.0, samples=3) for g in range(2)], 1)
    losses = jax.vmap(loss)(z)
    np.testing.assert_allclose(value, losses.mean(), rtol=1e-6)
    mu = jax.vmap(lambda r: ksubset.marginals(r, 2, 1.0))(theta)
    expected = jnp.mean(losses[:, None, None] * (z - mu[None]), axis=0)
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-5)


def test_minimize_is_available_for_every_oracle_estimator():
    w = jnp.array([0.3, 0.1, 2.0, 1.5, 0.2])  # costs: the two cheapest are items 1 and 4
    cheapest = jnp.array([0.0, 1.0, 0.0, 0.0, 1.0])
    max_oracle = ij.top_k(2)

    def min_oracle(c):
        return max_oracle(-c)

    for est in (
        ij.imle(min_oracle, noise=None, minimize=True),
        ij.ste(min_oracle, noise=None, minimize=True),
        ij.blackbox(min_oracle, lam=1.0, minimize=True),
    ):
        np.testing.assert_array_equal(est(jax.random.key(0), w), cheapest)
    y = ij.perturbed(min_oracle, noise=ij.gumbel(1e-3), minimize=True)(jax.random.key(0), w)
    np.testing.assert_array_equal(y, cheapest)
    fy = ij.fenchel_young_loss(min_oracle, noise=ij.gumbel(1e-3), minimize=True)
    # d/dw of the Fenchel-Young loss for costs is y - y_hat: zero at the optimum.
    np.testing.assert_allclose(jax.grad(fy, argnums=1)(jax.random.key(0), w, cheapest), 0.0)
    worse = jnp.array([1.0, 0.0, 0.0, 0.0, 1.0])
    g = jax.grad(fy, argnums=1)(jax.random.key(0), w, worse)
    np.testing.assert_allclose(g, worse - cheapest)
