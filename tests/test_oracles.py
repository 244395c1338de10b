"""Tests of the jit/vmap-able MAP oracles and of ``check_oracle``."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from imlejax import argmax, check_oracle, top_k

HALF_AND_SINGLE = [jnp.bfloat16, jnp.float16, jnp.float32]


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _reference_top_k(theta: np.ndarray, k: int) -> np.ndarray:
    """Top-k indicator along the last axis, ties to the lowest index (stable sort)."""
    order = np.argsort(-theta, axis=-1, kind="stable")[..., :k]
    z = np.zeros(theta.shape)
    np.put_along_axis(z, order, 1.0, axis=-1)
    return z


# --------------------------------------------------------------------------------------- top_k


@pytest.mark.parametrize("m", [1, 4, 7])
def test_top_k_exact_and_maximal_against_brute_force(m):
    rng = np.random.default_rng(m)
    theta = rng.normal(size=(8, m)).astype(np.float32)
    for k in range(1, m + 1):
        z = np.asarray(top_k(k)(jnp.asarray(theta)))  # 8 independent groups of size m
        assert set(np.unique(z)) <= {0.0, 1.0}
        np.testing.assert_array_equal(z.sum(axis=-1), k)
        for t, zi in zip(theta.astype(np.float64), z, strict=True):
            best = max(t[list(c)].sum() for c in itertools.combinations(range(m), k))
            np.testing.assert_allclose(zi @ t, best, rtol=0, atol=1e-12)


def test_top_k_ties_lowest_index_first():
    theta = jnp.array([1.0, 3.0, 2.0, 3.0, 3.0, 0.0])
    np.testing.assert_array_equal(top_k(2)(theta), [0, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(top_k(4)(theta), [0, 1, 1, 1, 1, 0])
    np.testing.assert_array_equal(top_k(3)(jnp.zeros(5)), [1, 1, 1, 0, 0])


def test_top_k_ties_match_stable_sort_jitted_and_vmapped():
    rng = np.random.default_rng(0)
    theta = rng.integers(0, 3, size=(50, 12)).astype(np.float32)
    expected = _reference_top_k(theta, 4)
    oracle = top_k(4)
    np.testing.assert_array_equal(oracle(jnp.asarray(theta)), expected)
    np.testing.assert_array_equal(jax.jit(oracle)(jnp.asarray(theta)), expected)
    np.testing.assert_array_equal(jax.jit(jax.vmap(oracle))(jnp.asarray(theta)), expected)
    # Deterministic: repeated calls give identical results.
    np.testing.assert_array_equal(jax.jit(oracle)(jnp.asarray(theta)), expected)


def _reference_top_k_total_order(theta: np.ndarray, k: int) -> np.ndarray:
    """Top-k in the total order of floats (-NaN < -inf < -0 < +0 < +inf < +NaN), ties to the
    lowest index."""
    itype = {4: np.int32, 8: np.int64}[theta.dtype.itemsize]
    bits = theta.view(itype)
    key = (bits ^ ((bits >> (8 * theta.dtype.itemsize - 1)) & np.iinfo(itype).max)).astype(object)
    order = np.array([sorted(range(len(r)), key=lambda i, r=r: -r[i])[:k] for r in key])
    z = np.zeros(theta.shape)
    np.put_along_axis(z, order, 1.0, axis=-1)
    return z


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_k_total_order_on_special_values(dtype):
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0, 2.0], dtype)
    theta = np.random.default_rng(4).choice(specials, size=(300, 9))
    with jax.enable_x64(dtype == np.float64):
        for k in (1, 2, 5, 9):
            z = np.asarray(jax.jit(top_k(k))(jnp.asarray(theta)))
            np.testing.assert_array_equal(z.sum(axis=-1), k)
            np.testing.assert_array_equal(z, _reference_top_k_total_order(theta, k))


@pytest.mark.parametrize("k", [1, 32, 33, 63])
def test_top_k_compare_and_scatter_forms_match_stable_sort(k):
    # Up to k = 32 the indicator is built by comparisons, above by a scatter.
    theta = np.random.default_rng(k).integers(0, 5, size=(40, 64)).astype(np.float32)
    z = np.asarray(jax.jit(jax.vmap(top_k(k)))(jnp.asarray(theta)))
    np.testing.assert_array_equal(z, _reference_top_k(theta, k))


def test_top_k_groups_and_axis():
    rng = np.random.default_rng(1)
    theta = rng.normal(size=(20, 20)).astype(np.float32)
    z = np.asarray(top_k(3)(jnp.asarray(theta)))
    np.testing.assert_array_equal(z, _reference_top_k(theta, 3))
    np.testing.assert_array_equal(z.sum(axis=1), 3)

    z0 = np.asarray(top_k(3, axis=0)(jnp.asarray(theta)))
    np.testing.assert_array_equal(z0, _reference_top_k(theta.T, 3).T)

    theta3 = rng.normal(size=(2, 5, 3)).astype(np.float32)
    z3 = np.asarray(jax.jit(top_k(2, axis=1))(jnp.asarray(theta3)))
    expected = np.moveaxis(_reference_top_k(np.moveaxis(theta3, 1, -1), 2), -1, 1)
    np.testing.assert_array_equal(z3, expected)
    np.testing.assert_array_equal(top_k(2, axis=-2)(jnp.asarray(theta3)), expected)


def test_top_k_vmap_over_groups_matches_batched_call():
    theta = _normal(0, (4, 6, 10))
    oracle = top_k(3)
    np.testing.assert_array_equal(jax.vmap(oracle)(theta), oracle(theta))
    np.testing.assert_array_equal(jax.vmap(jax.vmap(oracle))(theta), oracle(theta))


@pytest.mark.parametrize("dtype", HALF_AND_SINGLE)
def test_top_k_keeps_dtype(dtype):
    theta = _normal(1, (5, 16)).astype(dtype)
    z = jax.jit(top_k(3))(theta)
    assert z.dtype == dtype and z.shape == theta.shape
    expected = _reference_top_k(np.asarray(theta.astype(jnp.float32)), 3)
    np.testing.assert_array_equal(np.asarray(z, np.float32), expected)


def test_top_k_float64_under_x64():
    with jax.enable_x64(True):
        theta = jnp.asarray(np.random.default_rng(2).normal(size=(3, 9)), jnp.float64)
        z = jax.jit(jax.vmap(top_k(4)))(theta)
        assert z.dtype == jnp.float64
        np.testing.assert_array_equal(z, _reference_top_k(np.asarray(theta), 4))


@pytest.mark.parametrize("k", [0, -1, 2.0, True, "3", None])
def test_top_k_rejects_bad_k(k):
    with pytest.raises(ValueError, match="k"):
        top_k(k)


def test_top_k_rejects_k_larger_than_m():
    with pytest.raises(ValueError, match=r"k=5.*1\.\.3"):
        top_k(5)(jnp.ones(3))
    with pytest.raises(ValueError, match=r"k=5.*1\.\.3"):
        jax.jit(top_k(5))(jnp.ones(3))
    with pytest.raises(ValueError, match=r"1\.\.2"):
        top_k(3, axis=0)(jnp.ones((2, 4)))


def test_top_k_rejects_non_floating_and_bad_axis():
    with pytest.raises(TypeError, match="floating"):
        top_k(1)(jnp.arange(4))
    with pytest.raises(TypeError, match="floating"):
        top_k(1)(jnp.ones(4, bool))
    with pytest.raises(ValueError, match="axis"):
        top_k(1, axis=1)(jnp.ones(4))
    with pytest.raises(ValueError, match="scalar"):
        top_k(1)(jnp.float32(1.0))
    with pytest.raises(ValueError, match="axis"):
        top_k(1, axis=0.5)


def test_top_k_name_hash_and_static_use():
    oracle = top_k(10)
    assert repr(oracle) == "top_k(k=10)" and oracle.__name__ == "top_k(k=10)"
    assert repr(top_k(2, axis=0)) == "top_k(k=2, axis=0)"
    assert oracle == top_k(10) and hash(oracle) == hash(top_k(10))
    assert oracle != top_k(9) and oracle != top_k(10, axis=0)

    @functools.partial(jax.jit, static_argnums=0)
    def apply(map_fn, theta):
        return map_fn(theta)

    theta = jnp.arange(12.0)
    np.testing.assert_array_equal(apply(top_k(2), theta), _reference_top_k(np.arange(12.0), 2))
    np.testing.assert_array_equal(jax.jit(lambda t: oracle(t))(theta), oracle(theta))


def test_top_k_has_zero_gradient():
    g = jax.grad(lambda t: jnp.sum(top_k(2)(t) * t))(jnp.array([1.0, 3.0, 2.0]))
    np.testing.assert_array_equal(g, [0.0, 1.0, 1.0])
    _, tangent = jax.jvp(top_k(2), (jnp.array([1.0, 3.0, 2.0]),), (jnp.ones(3),))
    np.testing.assert_array_equal(tangent, [0.0, 0.0, 0.0])


@pytest.mark.parametrize("oracle", [top_k(3), argmax()], ids=["top_k", "argmax"])
def test_vmapped_oracles_fold_batch_axes_into_one_2d_top_k(oracle):
    # vmap's batch axes are folded into the rows of one 2-D TopK, so that XLA fuses the
    # computation of the scores (e.g. theta + noise) into the kernel's input
    theta = _normal(2, (4, 5, 7))
    hlo = jax.jit(jax.vmap(jax.vmap(oracle))).lower(theta).as_text()
    assert "chlo.top_k" in hlo and "tensor<20x7xf32> -> (tensor<20x" in hlo, hlo
    np.testing.assert_array_equal(jax.vmap(jax.vmap(oracle))(theta), oracle(theta))
    # batch axes that are not leading: the oracle acts along axis 0 of theta
    inner = jax.vmap(oracle, in_axes=1, out_axes=1)
    expected = jnp.moveaxis(oracle(jnp.moveaxis(theta, 0, -1)), -1, 0)
    np.testing.assert_array_equal(jax.jit(jax.vmap(inner, in_axes=2, out_axes=2))(theta), expected)


# -------------------------------------------------------------------------------------- argmax


@pytest.mark.parametrize("dtype", [*HALF_AND_SINGLE, np.float64])
def test_argmax_special_values_match_numpy(dtype):
    # The first NaN wins, -0 and +0 tie (first wins), +inf beats everything but NaN.
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1.0, -1.0], np.float64)
    theta = np.random.default_rng(5).choice(specials, size=(400, 6))
    with jax.enable_x64(dtype == np.float64):
        t = jnp.asarray(theta, dtype)
        expected = np.eye(6)[np.argmax(np.asarray(t, np.float64), axis=-1)]
        np.testing.assert_array_equal(jax.jit(jax.vmap(argmax()))(t), expected)
        np.testing.assert_array_equal(argmax(axis=0)(t.T), expected.T)


def test_argmax_one_hot_and_ties():
    np.testing.assert_array_equal(argmax()(jnp.array([0.5, 2.0, -1.0, 2.0])), [0, 1, 0, 0])
    np.testing.assert_array_equal(argmax()(jnp.zeros(4)), [1, 0, 0, 0])
    rng = np.random.default_rng(3)
    theta = rng.integers(0, 3, size=(40, 7)).astype(np.float32)
    z = jax.jit(jax.vmap(argmax()))(jnp.asarray(theta))
    np.testing.assert_array_equal(z, _reference_top_k(theta, 1))
    np.testing.assert_array_equal(argmax()(jnp.asarray(theta)), _reference_top_k(theta, 1))


def test_argmax_maximal_and_axis():
    rng = np.random.default_rng(4)
    theta = rng.normal(size=(6, 5)).astype(np.float32)
    z = np.asarray(argmax()(jnp.asarray(theta)))
    np.testing.assert_array_equal(z.sum(axis=-1), 1)
    np.testing.assert_allclose((z * theta).sum(axis=-1), theta.max(axis=-1))
    z0 = np.asarray(jax.jit(argmax(axis=0))(jnp.asarray(theta)))
    np.testing.assert_array_equal(z0, _reference_top_k(theta.T, 1).T)
    np.testing.assert_array_equal(argmax()(jnp.asarray(theta)), top_k(1)(jnp.asarray(theta)))


@pytest.mark.parametrize("dtype", HALF_AND_SINGLE)
def test_argmax_keeps_dtype(dtype):
    theta = _normal(2, (3, 8)).astype(dtype)
    z = jax.vmap(argmax())(theta)
    assert z.dtype == dtype and z.shape == theta.shape
    expected = _reference_top_k(np.asarray(theta.astype(jnp.float32)), 1)
    np.testing.assert_array_equal(np.asarray(z, np.float32), expected)


def test_argmax_float64_under_x64():
    with jax.enable_x64(True):
        theta = jnp.asarray([1.0, 1.0 + 1e-12, 1.0], jnp.float64)
        z = jax.jit(argmax())(theta)
        assert z.dtype == jnp.float64
        np.testing.assert_array_equal(z, [0, 1, 0])


def test_argmax_validation_and_name():
    with pytest.raises(TypeError, match="floating"):
        argmax()(jnp.arange(3))
    with pytest.raises(ValueError, match="axis"):
        argmax(axis=2)(jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="empty"):
        argmax()(jnp.ones((2, 0)))
    with pytest.raises(ValueError, match="axis"):
        argmax(axis="last")
    assert repr(argmax()) == "argmax()" and argmax().__name__ == "argmax()"
    assert repr(argmax(axis=0)) == "argmax(axis=0)"
    assert argmax() == argmax() and hash(argmax()) == hash(argmax())


# -------------------------------------------------------------------------------- check_oracle


def test_check_oracle_accepts_valid_oracles():
    theta = _normal(3, (10,))
    assert check_oracle(top_k(3), theta, exact_k=3) is None
    assert check_oracle(argmax(), theta, exact_k=1, num_trials=0) is None
    assert check_oracle(top_k(2), jnp.ones((4, 5)), exact_k=8, key=jax.random.PRNGKey(1)) is None
    assert check_oracle(jax.jit(top_k(3)), theta.astype(jnp.bfloat16), exact_k=3) is None

    def numpy_oracle(t, k):  # returns NumPy; extra arguments are passed through
        return np.asarray(top_k(int(k))(t))

    assert check_oracle(numpy_oracle, theta, 4, exact_k=4) is None


def test_check_oracle_catches_non_binary():
    def soft_oracle(theta):
        return jax.nn.sigmoid(theta)

    with pytest.raises(ValueError, match="soft_oracle.*other than 0 and 1"):
        check_oracle(soft_oracle, jnp.zeros(4))


def test_check_oracle_catches_failure_on_perturbation_only():
    theta = jnp.zeros(5)

    def fragile_oracle(t):
        return jnp.where(jnp.all(t == 0), top_k(1)(t), 0.5 * jnp.ones_like(t))

    with pytest.raises(ValueError, match="fragile_oracle.*random perturbation 1"):
        check_oracle(fragile_oracle, theta)
    assert check_oracle(fragile_oracle, theta, num_trials=0) is None


def test_check_oracle_catches_wrong_shape():
    def flat_oracle(theta):
        return top_k(1)(theta).reshape(-1)

    with pytest.raises(ValueError, match=r"flat_oracle returned shape \(6,\).*\(2, 3\)"):
        check_oracle(flat_oracle, jnp.ones((2, 3)))


def test_check_oracle_catches_wrong_dtype():
    def int_oracle(theta):
        return top_k(1)(theta).astype(jnp.int32)

    with pytest.raises(TypeError, match="int_oracle returned dtype int32"):
        check_oracle(int_oracle, jnp.ones(3, jnp.float32))
    with pytest.raises(TypeError, match="returned dtype float64 for theta of dtype float16"):
        check_oracle(lambda t: np.asarray(top_k(1)(t), np.float64), jnp.ones(3, jnp.float16))


def test_check_oracle_catches_wrong_k_and_names_unnamed_callables():
    with pytest.raises(ValueError, match=r"top_k\(k=2\) returned 2 ones.*exact_k=3"):
        check_oracle(top_k(2), jnp.arange(5.0), exact_k=3)
    unnamed = functools.partial(lambda t, k: top_k(k)(t), k=2)
    with pytest.raises(ValueError, match="functools.partial"):
        check_oracle(unnamed, jnp.arange(5.0), exact_k=1)


def test_check_oracle_argument_validation():
    with pytest.raises(ValueError, match="num_trials"):
        check_oracle(top_k(1), jnp.ones(3), num_trials=-1)
    with pytest.raises(ValueError, match="exact_k"):
        check_oracle(top_k(1), jnp.ones(3), exact_k=1.5)
    with pytest.raises(TypeError, match="floating"):
        check_oracle(top_k(1), jnp.arange(3))
