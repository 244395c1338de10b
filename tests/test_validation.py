"""Every numeric, boolean and callable argument of every factory is checked where the object is made.

Each case names the factory call and the argument the error must name. ``None``, strings,
booleans, NaN and infinities are rejected for every real-valued parameter.
"""

import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import imlejax as ij

ORACLE = ij.top_k(2)
BAD_REALS = [None, "1.0", True, math.nan, math.inf, -math.inf, np.array([1.0, 2.0])]

# (factory taking the value, argument name, lower bound kind)
REAL_PARAMS = [
    (lambda v: ij.gumbel(v), "tau", "positive"),
    (lambda v: ij.normal(v), "tau", "positive"),
    (lambda v: ij.sog(2, tau=v), "tau", "positive"),
    (lambda v: ij.Gumbel(v), "tau", "positive"),
    (lambda v: ij.pid(v), "lam", "positive"),
    (lambda v: ij.pid(1.0, alpha=v), "alpha", "nonnegative"),
    (
        lambda v: ij.pid(1.0, target_tau=v) if v is not None else ij.pid(1.0, target_tau=0.0),
        "target_tau",
        "positive",
    ),
    (lambda v: ij.aimle(target_norm=v), "target_norm", "nonnegative"),
    (lambda v: ij.aimle(step=v), "step", "nonnegative"),
    (lambda v: ij.aimle(momentum=v), "momentum", "nonnegative"),
    (lambda v: ij.aimle(decay=v), "decay", "unit"),
    (lambda v: ij.aimle(init_beta=v), "init_beta", "nonnegative"),
    (lambda v: ij.aimle(init_nnz=v), "init_nnz", "nonnegative"),
    (lambda v: ij.aimle(alpha=v), "alpha", "nonnegative"),
    (lambda v: ij.blackbox(ORACLE, lam=v), "lam", "positive"),
    (lambda v: ij.sfe(2, jnp.sum, tau=v), "tau", "positive"),
    (lambda v: ij.simple(2, tau=v), "tau", "positive"),
    (lambda v: ij.gumbel_softmax(temperature=v), "temperature", "positive"),
    (lambda v: ij.l2x(2, temperature=v), "temperature", "positive"),
    (lambda v: ij.softsub(2, temperature=v), "temperature", "positive"),
]

OUT_OF_RANGE = {"positive": [0.0, -1.0], "nonnegative": [-1e-3], "unit": [1.0, -0.1]}


@pytest.mark.parametrize("factory,name,kind", REAL_PARAMS, ids=lambda x: getattr(x, "__name__", x))
def test_real_parameters_reject_bad_values(factory, name, kind):
    for value in BAD_REALS + OUT_OF_RANGE[kind]:
        with pytest.raises((ValueError, TypeError), match=name):
            factory(value)


# (factory taking the value, argument name, minimum, whether None is allowed)
INT_PARAMS = [
    (lambda v: ij.sog(v), "k", 1, False),
    (lambda v: ij.sog(2, terms=v), "terms", 1, False),
    (lambda v: ij.top_k(v), "k", 1, False),
    (lambda v: ij.imle(ORACLE, samples=v), "samples", 1, True),
    (lambda v: ij.ste(ORACLE, samples=v), "samples", 1, True),
    (lambda v: ij.perturbed(ORACLE, num_samples=v), "num_samples", 1, False),
    (lambda v: ij.fenchel_young_loss(ORACLE, num_samples=v), "num_samples", 1, False),
    (lambda v: ij.sfe(v, jnp.sum), "k", 1, False),
    (lambda v: ij.sfe(2, jnp.sum, num_samples=v), "num_samples", 1, False),
    (lambda v: ij.simple(v), "k", 1, False),
    (lambda v: ij.simple(2, samples=v), "samples", 1, True),
    (lambda v: ij.l2x(v), "k", 1, False),
    (lambda v: ij.softsub(v), "k", 1, False),
    (lambda v: ij.gumbel_softmax(samples=v), "samples", 1, True),
    (lambda v: ij.aimle(batch_ndim=v), "batch_ndim", 0, False),
]


@pytest.mark.parametrize("factory,name,minimum,none_ok", INT_PARAMS)
def test_integer_parameters_reject_bad_values(factory, name, minimum, none_ok):
    bad = [1.5, "2", True, math.nan, minimum - 1]
    if not none_ok:
        bad.append(None)
    for value in bad:
        with pytest.raises((ValueError, TypeError), match=name):
            factory(value)
    factory(minimum + 1)
    if none_ok:
        factory(None)


BOOL_PARAMS = [
    (lambda v: ij.imle(ORACLE, minimize=v), "minimize"),
    (lambda v: ij.ste(ORACLE, minimize=v), "minimize"),
    (lambda v: ij.blackbox(ORACLE, lam=1.0, minimize=v), "minimize"),
    (lambda v: ij.perturbed(ORACLE, minimize=v), "minimize"),
    (lambda v: ij.fenchel_young_loss(ORACLE, minimize=v), "minimize"),
    (lambda v: ij.pid(1.0, central=v), "central"),
    (lambda v: ij.aimle(central=v), "central"),
    (lambda v: ij.gumbel_softmax(hard=v), "hard"),
    (lambda v: ij.softsub(2, hard=v), "hard"),
]


@pytest.mark.parametrize("factory,name", BOOL_PARAMS)
def test_boolean_flags_reject_non_booleans(factory, name):
    for value in (None, 1, "yes"):
        with pytest.raises(TypeError, match=name):
            factory(value)
    factory(True)


def test_callables_noises_and_targets_are_checked_when_the_estimator_is_made():
    with pytest.raises(TypeError, match="map_fn"):
        ij.imle(3)
    with pytest.raises(TypeError, match="map_fn"):
        ij.ste("top_k")
    with pytest.raises(TypeError, match="map_fn"):
        ij.perturbed(None)
    with pytest.raises(TypeError, match="loss_fn"):
        ij.sfe(2, 1.0)
    with pytest.raises(TypeError, match="string"):
        ij.imle(ORACLE, noise="gumbel")

    class NoTau:
        def sample(self, key, shape, dtype=jnp.float32):
            return jnp.zeros(shape, dtype)

    # A noise without a temperature is rejected when the transform is built, not in jax.grad.
    with pytest.raises(TypeError, match="tau"):
        ij.imle(ORACLE, noise=NoTau())
    with pytest.raises(TypeError, match="target"):
        ij.imle(ORACLE, target=ij.gumbel())
    # target_tau rescales the forward noise; without noise there is nothing to rescale.
    with pytest.raises(ValueError, match="target_tau"):
        ij.imle(ORACLE, noise=None, target=ij.pid(1.0, target_tau=2.0))
    with pytest.raises(ValueError, match="target_tau"):
        ij.imle(ORACLE, noise=ij.no_noise(), target=ij.aimle(target_tau=2.0))
    with pytest.raises(ValueError, match="method"):
        ij.sog(2, method="exact")
    with pytest.raises(ValueError, match="baseline"):
        ij.sfe(2, jnp.sum, num_samples=2, baseline="median")


def test_a_noise_that_is_not_a_pytree_is_wrapped():
    class Shifted:
        """A plain object (not a registered pytree) satisfying the Noise protocol."""

        tau = 1.0

        def sample(self, key, shape, dtype=jnp.float32):
            return jnp.full(shape, 0.25, dtype)

    est = ij.imle(ORACLE, noise=Shifted(), target=ij.pid(1.0))
    theta = jnp.array([0.0, 0.1, 0.2, 0.3])
    g = jax.jit(jax.grad(lambda t: est(jax.random.key(0), t) @ jnp.arange(4.0)))(theta)
    assert g.shape == (4,)


def test_traced_temperatures_are_accepted():
    # Temperatures may be traced leaves (a pytree noise passed through jit).
    @jax.jit
    def draw(tau):
        return ij.gumbel(tau).sample(jax.random.key(0), (3,))

    np.testing.assert_allclose(draw(2.0), 2.0 * draw(1.0), rtol=1e-6)


def test_pytree_rebuilds_skip_validation_but_constructors_do_not():
    noise = ij.sog(3, tau=2.0)
    # JAX rebuilds nodes with placeholder leaves inside its transformations.
    rebuilt = jax.tree.map(lambda _: None, noise)
    assert rebuilt.tau is None and rebuilt.k == 3
    with pytest.raises((TypeError, ValueError), match="tau"):
        ij.SumOfGamma(k=3, tau=None)


def test_noise_and_target_parameters_receive_no_gradient():
    # Differentiating with respect to a temperature is not supported: the transform treats noise
    # and target parameters as constants (documented in imle's docstring).
    theta = jnp.array([0.0, 0.1, 0.2, 0.3])

    def loss(lam):
        est = ij.imle(ORACLE, noise=ij.gumbel(1.0), target=ij.pid(lam))
        return est(jax.random.key(0), theta) @ jnp.arange(4.0)

    assert float(jax.grad(loss)(2.0)) == 0.0


def test_every_factory_signature_is_keyword_only_after_its_subject():
    for factory in (ij.imle, ij.ste, ij.blackbox, ij.perturbed, ij.fenchel_young_loss):
        params = list(inspect.signature(factory).parameters.values())
        assert params[0].name == "map_fn"
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[1:]), factory
