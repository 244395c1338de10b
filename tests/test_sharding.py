"""Data parallelism: under sharded ``jit`` every device perturbs and solves only its own instances.

The checks read the optimised per-device HLO (``.lower(...).compile().as_text()``): the oracle's
operand (XLA's ``TopK`` call, or the host callback) has the shape of one device's shard of the
batch times the samples, and the program holds no collective at all (in particular no all-gather
of theta or of the noise before the oracle). Results are bit-identical to one device for the same
per-instance keys, under sharded ``jit``, ``shard_map`` and ``pmap``, with automatic and explicit
mesh axes.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import imlejax as ij
from experiments.benchmarks import hlo
from imlejax._sharding import batch_parallel

pytestmark = pytest.mark.skipif(
    jax.device_count() < 4, reason="needs 4 devices (tests/conftest.py sets them)"
)

B, M, K, S = 16, 12, 3, 3


def _host_top_k(theta):
    z = np.zeros_like(theta)
    z[np.argsort(-theta, kind="stable")[:K]] = 1
    return z


def _host_top_k_shifted(theta, shift):
    return _host_top_k(theta + shift)


def _lax_top_k(theta):  # a user oracle written with lax.top_k, which XLA would replicate
    _, idx = jax.lax.top_k(theta, K)
    return jnp.sum(jax.nn.one_hot(idx, theta.shape[-1], dtype=theta.dtype), axis=0)


ORACLES = {
    "top_k": (ij.top_k(K), ij.sog(K), "TopK"),
    "argmax": (ij.argmax(), ij.gumbel(), "TopK"),
    "user_lax_top_k": (_lax_top_k, ij.gumbel(), "TopK"),
    "host": (ij.host_oracle(_host_top_k), ij.gumbel(), "callback"),
}

# The default suite compiles a few sharded gradients (top_k and host oracles, under sharded jit,
# shard_map and explicit axes); the other oracles and layouts are in the slow suite.
slow = pytest.mark.slow


def _problem(oracle, noise, shifted=False):
    sampler = ij.imle(oracle, noise=noise, target=ij.pid(2.0), samples=S)
    theta = jax.random.normal(jax.random.key(0), (B, M))
    w = jax.random.normal(jax.random.key(1), (B, S, M))
    keys = jax.random.split(jax.random.key(2), B)
    shift = jax.random.normal(jax.random.key(3), (B, M))

    def loss(theta, keys, w, shift):
        extra = (shift,) if shifted else ()
        return jnp.sum(jax.vmap(sampler)(keys, theta, *extra) * w)

    return jax.jit(jax.grad(loss)), (theta, keys, w, shift)


def _sharded(args, mesh, spec):
    return [jax.device_put(x, NamedSharding(mesh, spec)) for x in args]


def _check_per_device(grad, args, sharded, rows_per_device, op):
    single = grad(*args)
    compiled = grad.lower(*sharded).compile()
    text = compiled.as_text()
    calls = hlo.oracle_calls(text)
    assert calls and {c["op"] for c in calls} == {op}, calls
    # Forward and backward each solve the shard's instances times the samples, nothing more.
    assert [hlo.rows(c["operand"]) for c in calls] == [rows_per_device] * len(calls), calls
    assert sum(hlo.collectives(text).values()) == 0, hlo.collectives(text)
    out = compiled(*sharded)
    assert len(out.sharding.device_set) == 4
    np.testing.assert_array_equal(np.asarray(out), np.asarray(single))


@pytest.mark.parametrize("name", [pytest.param(n, marks=slow) for n in ORACLES])
def test_sharded_gradient_solves_each_devices_shard(name):
    oracle, noise, op = ORACLES[name]
    grad, args = _problem(oracle, noise)
    mesh = Mesh(np.array(jax.devices()[:4]), ("batch",))
    _check_per_device(grad, args, _sharded(args, mesh, P("batch")), B // 4 * S, op)


@slow
def test_host_oracle_with_batched_argument_is_data_parallel():
    grad, args = _problem(ij.host_oracle(_host_top_k_shifted), ij.sog(K), shifted=True)
    mesh = Mesh(np.array(jax.devices()[:4]), ("batch",))
    _check_per_device(grad, args, _sharded(args, mesh, P("batch")), B // 4 * S, "callback")


@slow
def test_two_axis_mesh_splits_the_batch_over_the_data_axis():
    """With the batch on ``data`` and replicated over ``model``, the TopK operand is half the
    batch: the devices of one ``model`` group solve the same half."""
    grad, args = _problem(ij.top_k(K), ij.sog(K))
    mesh = Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("data", "model"))
    _check_per_device(grad, args, _sharded(args, mesh, P("data")), B // 2 * S, "TopK")


@pytest.mark.parametrize("name", ["top_k", pytest.param("host", marks=slow)])
def test_explicit_mesh_axes(name):
    """``jax.make_mesh`` makes Explicit axes by default: shardings are part of the types."""
    oracle, noise, op = ORACLES[name]
    grad, args = _problem(oracle, noise)
    mesh = jax.make_mesh((4,), ("batch",), axis_types=(AxisType.Explicit,))
    _check_per_device(grad, args, _sharded(args, mesh, P("batch")), B // 4 * S, op)


@pytest.mark.parametrize("name", ["top_k", "host"])
def test_issue_configuration(name):
    """``vmap(imle(top_k(10), sog(10), pid(10.0), samples=4))`` over a batch of 64 on 4 devices:
    the TopK operand is ``(16 * 4, m)`` per device (it was ``(64 * 4, m)`` after 2 all-gathers)."""
    oracle = ij.top_k(10) if name == "top_k" else ij.host_oracle(_top10)
    sampler = ij.imle(oracle, noise=ij.sog(10), target=ij.pid(10.0), samples=4)
    theta = jax.random.normal(jax.random.key(0), (64, 20))
    w = jax.random.normal(jax.random.key(1), (64, 4, 20))
    keys = jax.random.split(jax.random.key(2), 64)
    grad = jax.jit(jax.grad(lambda t, k, w: jnp.sum(jax.vmap(sampler)(k, t) * w)))
    mesh = Mesh(np.array(jax.devices()[:4]), ("b",))
    args = (theta, keys, w)
    op = "TopK" if name == "top_k" else "callback"
    _check_per_device(grad, args, _sharded(args, mesh, P("b")), 64, op)


def test_oracle_closing_over_arrays_is_data_parallel():
    """Arrays an oracle closes over, constant or traced in the caller, are operands that every
    device receives whole."""
    weights = jnp.linspace(0.5, 1.5, M)
    theta = jax.random.normal(jax.random.key(0), (B, M))
    w = jax.random.normal(jax.random.key(1), (B, S, M))
    keys = jax.random.split(jax.random.key(2), B)

    def loss(theta, keys, w, scale):
        oracle = lambda t: ij.top_k(K)(t * weights + scale)  # noqa: E731
        sampler = ij.imle(oracle, noise=ij.gumbel(), target=ij.pid(2.0), samples=S)
        return jnp.sum(jax.vmap(sampler)(keys, theta) * w)

    grad = jax.jit(jax.grad(loss))
    mesh = Mesh(np.array(jax.devices()[:4]), ("batch",))
    args = (theta, keys, w, jnp.linspace(-1.0, 1.0, M))
    sharded = [*_sharded(args[:3], mesh, P("batch")), *_sharded(args[3:], mesh, P())]
    _check_per_device(grad, args, sharded, B // 4 * S, "TopK")


def _top10(theta):
    z = np.zeros_like(theta)
    z[np.argsort(-theta, kind="stable")[:10]] = 1
    return z


@pytest.mark.parametrize("name", [pytest.param("top_k", marks=slow), "host"])
def test_shard_map_gradient_equals_single_device(name):
    oracle, noise, _ = ORACLES[name]
    grad, args = _problem(oracle, noise)
    mesh = Mesh(np.array(jax.devices()[:4]), ("batch",))
    mapped = jax.jit(jax.shard_map(grad, mesh=mesh, in_specs=P("batch"), out_specs=P("batch")))
    np.testing.assert_array_equal(np.asarray(mapped(*args)), np.asarray(grad(*args)))


@slow
def test_pmap_gradient_of_host_oracle_equals_single_device():
    grad, args = _problem(ORACLES["host"][0], ij.sog(K))
    split = [x.reshape((4, B // 4) + x.shape[1:]) for x in args]
    pmapped = jax.pmap(grad)(*split)
    np.testing.assert_array_equal(
        np.asarray(pmapped).reshape(B, M), np.asarray(grad(*args)), strict=True
    )


@slow
def test_indivisible_batch_is_solved_correctly():
    """A batch that no device count divides (replicated over 4 devices) falls back to one call."""
    theta = jax.random.normal(jax.random.key(0), (6, M))
    keys = jax.random.split(jax.random.key(1), 6)
    sampler = ij.imle(ij.host_oracle(_host_top_k), noise=ij.sog(K), samples=S)
    fn = jax.jit(jax.vmap(sampler))
    mesh = Mesh(np.array(jax.devices()[:4]), ("batch",))
    replicated = _sharded((keys, theta), mesh, P())
    np.testing.assert_array_equal(np.asarray(fn(*replicated)), np.asarray(fn(keys, theta)))


# ---------------------------------------------------------------------------------------------
# batch_parallel itself: a vmap at any depth, arguments batched or not.


def _shifted_scores(theta, shift, scale):
    return ij.top_k(2)(theta * scale + shift)


@pytest.mark.parametrize(
    "outer, inner",
    [((0, 0, 0), (0, 0, 0)), ((0, None, 0), (0, 0, None)), ((None, 0, None), (0, None, 0))],
)
def test_batch_parallel_equals_vmap_at_any_depth(outer, inner):
    """Nested vmaps with mapped and unmapped arguments (``None``) at either level."""
    rng = np.random.default_rng(0)
    shapes = [
        (3,) * (o is not None) + (4,) * (i is not None) + (6,)
        for o, i in zip(outer, inner, strict=True)
    ]
    args = [jnp.asarray(rng.normal(size=shape), jnp.float32) for shape in shapes]
    expected = jax.vmap(jax.vmap(_shifted_scores, inner), outer)(*args)
    wrapped = batch_parallel(_shifted_scores)
    got = jax.jit(jax.vmap(jax.vmap(wrapped, inner), outer))(*args)
    assert got.shape == (3, 4, 6)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))


def test_batch_parallel_is_the_function_on_one_instance_and_has_zero_tangent():
    theta = jnp.array([0.3, -1.0, 2.0, 0.5])
    wrapped = batch_parallel(ij.top_k(2))
    np.testing.assert_array_equal(wrapped(theta), ij.top_k(2)(theta))
    tangent = jax.jvp(jax.vmap(wrapped), (theta[None],), (jnp.ones((1, 4)),))[1]
    np.testing.assert_array_equal(tangent, jnp.zeros((1, 4)))
