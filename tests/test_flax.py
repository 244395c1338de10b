"""Flax NNX and Linen layers: same samples and gradients as the functional transforms."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import imlejax as ij

flax = pytest.importorskip("flax")
from flax import linen as nn  # noqa: E402
from flax import nnx  # noqa: E402

from imlejax.flax.linen import DiscreteLayer as LinenLayer  # noqa: E402
from imlejax.flax.linen import apply_aimle_update as apply_linen_update  # noqa: E402
from imlejax.flax.nnx import (  # noqa: E402
    AIMLEVariable,
    DiscreteLayer,
    aimle_filter,
    apply_aimle_update,
    split_aimle,
)

THETA = jnp.array([[0.3, -1.0, 2.0, 0.5, 1.1], [1.5, 0.2, -0.4, 0.9, 0.0]])
W = jnp.array([[1.0, -2.0, 0.5, 3.0, -1.0], [0.0, 1.0, -1.0, 2.0, 0.5]])


def _loss(z):
    return jnp.sum(jnp.mean(z, axis=0) * W) if z.ndim == 3 else jnp.sum(z * W)


def _next_key(layer: DiscreteLayer) -> jax.Array:
    """The key the layer's next call uses: fold_in(stream key, stream count)."""
    return jax.random.fold_in(layer.rngs.key[...], layer.rngs.count[...])


class Holder(nnx.Module):
    def __init__(self, estimator, *, state=None, map_fn=None, seed=0):
        self.theta = nnx.Param(THETA)
        self.layer = DiscreteLayer(estimator, map_fn=map_fn, state=state, rngs=nnx.Rngs(noise=seed))

    def __call__(self):
        return self.layer(self.theta[...])


ESTIMATORS = {
    "imle": lambda: ij.imle(
        ij.top_k(2), noise=ij.sog(2, method="direct"), target=ij.pid(10.0), samples=3
    ),
    "imle_single": lambda: ij.imle(ij.top_k(2), noise=ij.gumbel(), target=ij.pid(1.0)),
}
if hasattr(ij, "ste"):
    ESTIMATORS["ste"] = lambda: ij.ste(ij.top_k(2), noise=ij.sog(2, method="direct"))
if hasattr(ij, "gumbel_softmax"):
    ESTIMATORS["gumbel_softmax"] = lambda: ij.gumbel_softmax(temperature=0.5, samples=2)


def _map_fn(name):
    return ij.argmax() if name == "gumbel_softmax" else None


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_nnx_matches_functional(name):
    est = ESTIMATORS[name]()
    model = Holder(est, map_fn=_map_fn(name))
    key = _next_key(model.layer)
    z = model()
    np.testing.assert_array_equal(z, est(key, THETA))
    # The stream advanced by one: the next call uses the next key.
    key2 = _next_key(model.layer)
    grads = nnx.grad(lambda m: _loss(m()))(model)
    expected = jax.grad(lambda t: _loss(est(key2, t)))(THETA)
    np.testing.assert_allclose(grads["theta"][...], expected, rtol=1e-6)


def test_nnx_eval_returns_map_and_draws_no_key():
    est = ESTIMATORS["imle"]()
    model = Holder(est)
    model.eval()
    count = int(model.layer.rngs.count[...])
    z = model()
    assert z.shape == (3, *THETA.shape)
    np.testing.assert_array_equal(z, jnp.broadcast_to(ij.top_k(2)(THETA), z.shape))
    assert int(model.layer.rngs.count[...]) == count
    model.train()
    assert not model.layer.deterministic
    assert model().shape == (3, *THETA.shape)
    assert int(model.layer.rngs.count[...]) == count + 1
    view = nnx.view(model, deterministic=True)
    np.testing.assert_array_equal(view()[0], ij.top_k(2)(THETA))
    # The call argument overrides the flag.
    np.testing.assert_array_equal(model.layer(THETA, deterministic=True)[1], ij.top_k(2)(THETA))


def test_nnx_explicit_key_and_errors():
    est = ESTIMATORS["imle_single"]()
    layer = DiscreteLayer(est)
    key = jax.random.key(3)
    np.testing.assert_array_equal(layer(THETA, rngs=key), est(key, THETA))
    with pytest.raises(ValueError, match="needs keys"):
        layer(THETA)
    with pytest.raises(ValueError, match="map_fn"):
        DiscreteLayer(lambda key, theta: theta)
    with pytest.raises(TypeError, match="AIMLEState"):
        DiscreteLayer(est, state=(1.0, 1.0, 0.0))


def test_nnx_aimle_state_advances_in_jitted_train_step():
    target = ij.aimle(target_norm=1.0, step=0.05, central=True, batch_ndim=1)
    est = ij.imle(ij.top_k(2), noise=ij.sog(2, method="direct"), target=target, samples=2)
    model = Holder(est, state=target.init())
    assert isinstance(model.layer.aimle, AIMLEVariable)
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, optimizer):
        grads = nnx.grad(lambda m: _loss(m()), argnums=nnx.DiffState(0, aimle_filter))(model)
        grads = apply_aimle_update(model, grads)
        optimizer.update(model, grads)
        return grads

    reference = jax.jit(jax.grad(lambda k, t, s: _loss(est(k, t, state=s)), argnums=(1, 2)))
    state = target.init()
    theta = THETA
    for _ in range(3):
        g, stats = reference(_next_key(model.layer), theta, state)
        state = target.update(state, stats)
        theta = theta - 0.1 * g
        grads = train_step(model, optimizer)
        assert set(grads.keys()) == {"theta"}
        got = model.layer.aimle.get_value()
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(state), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)
        np.testing.assert_allclose(model.theta[...], theta, rtol=1e-5, atol=1e-6)
    assert float(model.layer.aimle.get_value().beta) != 1.0
    # Evaluation leaves the state alone.
    before = model.layer.aimle.get_value()
    model.eval()
    model()
    after = model.layer.aimle.get_value()
    for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before), strict=True):
        np.testing.assert_array_equal(a, b)


def test_nnx_two_layers_calls_and_split():
    # Two AIMLE layers with different targets, one called twice per loss: each layer's rule is
    # applied once per step with the statistics of all its calls; the optimiser sees only params.
    t1 = ij.aimle(target_norm=100.0, step=0.1)
    t2 = ij.aimle(target_norm=0.0, step=0.1)
    e1 = ij.imle(ij.top_k(2), noise=ij.sog(2), target=t1)
    e2 = ij.imle(ij.top_k(2), noise=ij.sog(2), target=t2)

    class Two(nnx.Module):
        def __init__(self):
            self.theta = nnx.Param(THETA)
            self.a = DiscreteLayer(e1, state=t1.init(), rngs=nnx.Rngs(noise=0))
            self.b = DiscreteLayer(e2, state=t2.init(), rngs=nnx.Rngs(noise=1))

        def __call__(self):
            t = self.theta[...]
            return _loss(self.a(t)) + _loss(self.a(t + 1.0)) + _loss(self.b(t))

    model = Two()
    grads = nnx.grad(lambda m: m(), argnums=nnx.DiffState(0, aimle_filter))(model)
    params, stats = split_aimle(grads)
    assert set(params.keys()) == {"theta"}
    assert float(nnx.to_flat_state(stats)[0][1].get_value().stats.calls) in (1.0, 2.0)
    rest = apply_aimle_update(model, grads)
    assert set(rest.keys()) == {"theta"}
    # One step each: beta rises for the layer below its target, falls for the other.
    np.testing.assert_allclose(model.a.aimle.get_value().beta, 1.1, rtol=1e-6)
    np.testing.assert_allclose(model.b.aimle.get_value().beta, 0.9, rtol=1e-6)


def test_linen_matches_functional_and_eval():
    est = ESTIMATORS["imle"]()
    layer = LinenLayer(est)
    variables = layer.init({"noise": jax.random.key(0)}, THETA)
    rngs = {"noise": jax.random.key(7)}
    # The layer's key is the first make_rng("noise") of the module.
    key = layer.apply(variables, rngs=rngs, method=lambda m: m.make_rng("noise"))
    z = layer.apply(variables, THETA, rngs=rngs)
    np.testing.assert_array_equal(z, est(key, THETA))
    g = jax.grad(lambda t: _loss(layer.apply(variables, t, rngs=rngs)))(THETA)
    np.testing.assert_allclose(g, jax.grad(lambda t: _loss(est(key, t)))(THETA), rtol=1e-6)
    z_map = layer.apply(variables, THETA, deterministic=True)
    np.testing.assert_array_equal(z_map, jnp.broadcast_to(ij.top_k(2)(THETA), z.shape))
    z_eval = LinenLayer(est, deterministic=True).apply(variables, THETA)
    np.testing.assert_array_equal(z_eval, z_map)


def test_linen_aimle_state_advances_in_jitted_train_step():
    target = ij.aimle(target_norm=1.0, step=0.05, batch_ndim=1)
    est = ij.imle(ij.top_k(2), noise=ij.sog(2, method="direct"), target=target)

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            theta = nn.Dense(5)(x)
            return LinenLayer(est, init_state=target.init, name="code")(theta)

    model = Model()
    x = jnp.ones((2, 3))
    variables = model.init({"params": jax.random.key(0), "noise": jax.random.key(1)}, x)
    params, aimle = variables["params"], variables["aimle"]
    assert isinstance(aimle["code"]["state"], ij.AIMLEState)
    tx = optax.adam(1e-2)
    opt_state = tx.init(params)

    def loss_fn(params, aimle, key):
        return _loss(model.apply({"params": params, "aimle": aimle}, x, rngs={"noise": key}))

    @jax.jit
    def train_step(params, aimle, opt_state, key):
        grads, stats = jax.grad(loss_fn, argnums=(0, 1))(params, aimle, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (
            optax.apply_updates(params, updates),
            apply_linen_update(target, aimle, stats),
            opt_state,
        )

    beta = 1.0
    for i in range(3):
        params, aimle, opt_state = train_step(params, aimle, opt_state, jax.random.key(i))
        new_beta = float(aimle["code"]["state"].beta)
        assert abs(abs(new_beta - beta) - 0.05) < 1e-6
        beta = new_beta


def test_import_imlejax_does_not_import_flax():
    code = "import sys, imlejax; assert 'flax' not in sys.modules, 'flax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
