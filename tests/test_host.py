"""Tests of host (NumPy/SciPy) oracles called through ``jax.pure_callback``."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import imlejax._host
from imlejax import bipartite_matching, check_oracle, host_oracle


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


class CountingArgmax:
    """Host one-hot argmax of ``theta * weight + shift`` that records every call."""

    __name__ = "counting_argmax"

    def __init__(self):
        self.shapes = []

    def __call__(self, theta, weight=None, shift=None):
        self.shapes.append((theta.shape, None if weight is None else weight.shape))
        scores = np.asarray(theta, np.float64)
        if weight is not None:
            scores = scores * weight
        if shift is not None:
            scores = scores + shift
        z = np.zeros(theta.shape, np.float64)  # deliberately float64: the wrapper casts
        z[np.argmax(scores)] = 1.0
        return z


def _one_hot_argmax(scores):
    scores = np.asarray(scores, np.float64)
    z = np.zeros(scores.shape)
    np.put_along_axis(z, np.argmax(scores, axis=-1)[..., None], 1.0, axis=-1)
    return z


def test_host_oracle_eager_and_jit():
    fn = CountingArgmax()
    oracle = host_oracle(fn)
    theta = jnp.array([0.5, 2.0, -1.0])
    np.testing.assert_array_equal(oracle(theta), [0, 1, 0])
    z = jax.jit(oracle)(theta)
    assert z.dtype == theta.dtype
    np.testing.assert_array_equal(z, [0, 1, 0])
    assert repr(oracle) == "host_oracle(counting_argmax)" == oracle.__name__
    assert oracle == host_oracle(fn) and hash(oracle) == hash(host_oracle(fn))


@pytest.fixture
def host_calls(monkeypatch):
    """Counts the host callbacks (one per execution of the wrapped computation)."""
    calls = []
    run = imlejax._host._run_on_host

    def counting_run(*args):
        calls.append(args[3].shape)
        return run(*args)

    monkeypatch.setattr(imlejax._host, "_run_on_host", counting_run)
    return calls


@pytest.mark.parametrize("jit", [False, True])
def test_host_oracle_one_host_call_per_batch(jit, host_calls):
    fn = CountingArgmax()
    batched = jax.vmap(host_oracle(fn))
    if jit:
        batched = jax.jit(batched)
    theta = _normal(0, (16, 5))
    z = batched(theta)
    assert host_calls == [(16, 5)]
    assert [shape for shape, _ in fn.shapes] == [(5,)] * 16  # the per-instance NumPy loop
    np.testing.assert_array_equal(z, _one_hot_argmax(theta))
    if jit:
        batched(theta + 1.0)
        assert len(host_calls) == 2


def test_host_oracle_batched_solver_called_once():
    calls = []

    def batched_argmax(theta):
        calls.append(theta.shape)
        return _one_hot_argmax(theta)

    oracle = host_oracle(batched_argmax, batched=True)
    theta = _normal(1, (2, 3, 4))
    np.testing.assert_array_equal(oracle(theta[0, 0]), _one_hot_argmax(theta[0, 0]))
    assert calls == [(1, 4)]
    z = jax.jit(jax.vmap(jax.vmap(oracle)))(theta)
    assert calls[1:] == [(6, 4)]
    np.testing.assert_array_equal(z, _one_hot_argmax(theta))
    assert repr(oracle) == "host_oracle(batched_argmax, batched=True)"


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_host_oracle_keeps_dtype(dtype):
    oracle = host_oracle(CountingArgmax())
    theta = jnp.array([[0.5, 2.0, -1.0], [3.0, 1.0, 0.0]], dtype)
    z = jax.jit(jax.vmap(oracle))(theta)
    assert z.dtype == dtype
    np.testing.assert_array_equal(np.asarray(z, np.float32), [[0, 1, 0], [1, 0, 0]])


def test_host_oracle_float64_under_x64():
    fn = CountingArgmax()
    oracle = host_oracle(fn)
    with jax.enable_x64(True):
        theta = jnp.array([[1.0, 1.0 + 1e-12], [2.0, 1.0]], jnp.float64)
        z = jax.jit(jax.vmap(oracle))(theta)
        assert z.dtype == jnp.float64
        np.testing.assert_array_equal(z, [[0, 1], [1, 0]])
        assert oracle(theta[0]).dtype == jnp.float64


def test_host_oracle_extra_args_batched_and_unbatched(host_calls):
    fn = CountingArgmax()
    oracle = host_oracle(fn)
    rng = np.random.default_rng(0)
    theta = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    weight = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)
    expected = _one_hot_argmax(np.asarray(theta) * np.asarray(weight))

    z = jax.jit(jax.vmap(oracle))(theta, weight)
    np.testing.assert_array_equal(z, expected)
    z = jax.vmap(oracle, in_axes=(0, None))(theta, weight[1])
    np.testing.assert_array_equal(z, _one_hot_argmax(np.asarray(theta) * np.asarray(weight[1])))
    z = jax.jit(jax.vmap(oracle, in_axes=(None, 0)))(theta[2], weight)
    np.testing.assert_array_equal(z, _one_hot_argmax(np.asarray(theta[2]) * np.asarray(weight)))
    z = jax.vmap(oracle, in_axes=(1, 1))(theta.T, weight.T)
    np.testing.assert_array_equal(z, expected)
    assert len(host_calls) == 4 and len(fn.shapes) == 16

    # Nested vmap: theta batched by the inner map, weight by the outer one; still one host call.
    z = jax.vmap(jax.vmap(oracle, in_axes=(0, None)), in_axes=(None, 0))(theta, weight[:3])
    assert z.shape == (3, 4, 5) and len(host_calls) == 5 and len(fn.shapes) == 28
    for i in range(3):
        prod = np.asarray(theta) * np.asarray(weight[i])
        np.testing.assert_array_equal(z[i], _one_hot_argmax(prod))


def test_host_oracle_pytree_args():
    def shifted_argmax(theta, extras):
        return _one_hot_argmax(theta * extras["weight"] + extras["shift"])

    oracle = host_oracle(shifted_argmax)
    theta = jnp.array([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]])
    extras = {
        "weight": jnp.array([1.0, 1.0, 1.0]),
        "shift": jnp.array([[5.0, 0.0, 0.0], [0.0, 9.0, 0.0]]),
    }
    z = jax.vmap(oracle, in_axes=(0, {"weight": None, "shift": 0}))(theta, extras)
    np.testing.assert_array_equal(z, [[1, 0, 0], [0, 1, 0]])


def test_host_oracle_is_not_differentiable():
    oracle = host_oracle(CountingArgmax())
    theta = jnp.array([0.5, 2.0, -1.0])
    with pytest.raises(
        TypeError, match=r"host_oracle\(counting_argmax\).*cannot be differentiated"
    ):
        jax.grad(lambda t: jnp.sum(oracle(t) * t))(theta)
    with pytest.raises(TypeError, match="cannot be differentiated"):
        jax.jvp(oracle, (theta,), (jnp.ones(3),))
    # A zero tangent (stop_gradient) is fine.
    g = jax.grad(lambda t: jnp.sum(oracle(jax.lax.stop_gradient(t)) * t))(theta)
    np.testing.assert_array_equal(g, [0, 1, 0])


def test_host_oracle_validation():
    with pytest.raises(TypeError, match="callable"):
        host_oracle(3)
    with pytest.raises(TypeError, match="batched"):
        host_oracle(CountingArgmax(), batched=1)
    with pytest.raises(TypeError, match="floating"):
        host_oracle(CountingArgmax())(jnp.arange(3))
    bad = host_oracle(lambda t: t[:-1], name="truncating")
    assert repr(bad) == "truncating"
    with pytest.raises(jax.errors.JaxRuntimeError, match="truncating: the solver returned shape"):
        jax.block_until_ready(bad(jnp.ones(3)))


# -------------------------------------------------------------------------- bipartite_matching


def _brute_force_matching_value(theta):
    n = theta.shape[0]
    return max(theta[np.arange(n), list(p)].sum() for p in itertools.permutations(range(n)))


def _assert_optimal_permutation(z, theta):
    z = np.asarray(z, np.float64)
    theta = np.asarray(theta, np.float64)
    assert set(np.unique(z)) <= {0.0, 1.0}
    np.testing.assert_array_equal(z.sum(axis=0), 1)
    np.testing.assert_array_equal(z.sum(axis=1), 1)
    np.testing.assert_allclose((z * theta).sum(), _brute_force_matching_value(theta), atol=1e-5)


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_bipartite_matching_against_brute_force(n):
    oracle = bipartite_matching()
    thetas = _normal(n, (6, n, n))
    z_eager = oracle(thetas[0])
    _assert_optimal_permutation(z_eager, thetas[0])
    z = jax.jit(jax.vmap(oracle))(thetas)
    assert z.shape == thetas.shape and z.dtype == thetas.dtype
    for zi, ti in zip(z, thetas, strict=True):
        _assert_optimal_permutation(zi, ti)
    np.testing.assert_array_equal(jax.jit(oracle)(thetas[0]), z_eager)
    np.testing.assert_array_equal(z[0], z_eager)


def test_bipartite_matching_ties_and_dtypes():
    oracle = bipartite_matching()
    z = oracle(jnp.zeros((3, 3), jnp.bfloat16))
    assert z.dtype == jnp.bfloat16
    _assert_optimal_permutation(z, np.zeros((3, 3)))
    with jax.enable_x64(True):
        theta = jnp.asarray(np.random.default_rng(5).normal(size=(4, 4)), jnp.float64)
        z = jax.jit(oracle)(theta)
        assert z.dtype == jnp.float64
        _assert_optimal_permutation(z, theta)


def test_bipartite_matching_validation_name_and_check_oracle():
    oracle = bipartite_matching()
    assert repr(oracle) == "bipartite_matching()" == oracle.__name__
    assert oracle == bipartite_matching() and hash(oracle) == hash(bipartite_matching())
    with pytest.raises(ValueError, match="square"):
        oracle(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="square"):
        oracle(jnp.ones(3))
    with pytest.raises(TypeError, match="floating"):
        oracle(jnp.ones((2, 2), jnp.int32))
    with pytest.raises(TypeError, match="cannot be differentiated"):
        jax.grad(lambda t: jnp.sum(oracle(t) * t))(jnp.ones((2, 2)))
    assert check_oracle(oracle, _normal(0, (4, 4)), exact_k=4) is None
