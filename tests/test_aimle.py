"""AIMLE: the adaptive rule, and statistics that stay right wherever autodiff sums cotangents."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import imlejax as ij

CFG = dict(target_norm=2.0, step=0.05, momentum=0.5, decay=0.9, init_beta=0.3, init_nnz=1.0)


def _reference_update(cfg, beta, avg, vel, nnz):
    avg = cfg["decay"] * avg + (1 - cfg["decay"]) * nnz
    vel = cfg["momentum"] * vel + (cfg["step"] if avg < cfg["target_norm"] else -cfg["step"])
    return max(beta + vel, 0.0), avg, vel


def test_aimle_state_follows_the_reference_rule_inside_scan():
    samples, m, steps = 3, 10, 12
    target = ij.aimle(**CFG)
    noise = ij.sog(3)
    oracle = ij.top_k(3)
    sampler = ij.imle(oracle, noise=noise, target=target, samples=samples)
    theta = jax.random.normal(jax.random.key(0), (m,))
    ws = jax.random.normal(jax.random.key(1), (steps, samples, m))
    keys = jax.random.split(jax.random.key(2), steps)

    def step(state, inp):
        key, w = inp
        loss = lambda t, s: jnp.sum(w * sampler(key, t, state=s))  # noqa: E731
        g, stats = jax.grad(loss, argnums=(0, 1))(theta, state)
        new_state = target.update(state, stats)
        return new_state, (g, new_state, stats)

    _, (grads, states, stats) = jax.jit(lambda s: jax.lax.scan(step, s, (keys, ws)))(target.init())

    # The reference rule in plain NumPy, on the same noise.
    beta, avg, vel = CFG["init_beta"], CFG["init_nnz"], 0.0
    theta_np = np.asarray(theta, np.float64)
    for i in range(steps):
        eps = noise.sample(keys[i], (samples, m), jnp.float32)
        z = np.asarray(jax.vmap(oracle)(theta[None] + eps))
        w = np.asarray(ws[i], np.float64)
        norm_theta = np.linalg.norm(np.tile(theta_np, (samples, 1)))
        lam = beta * norm_theta / np.linalg.norm(w) if np.linalg.norm(w) > 0 else 0.0
        z_t = np.asarray(jax.vmap(oracle)(theta[None] - jnp.float32(lam) * ws[i] + eps))
        diff = z - z_t
        grad = diff.sum(0) / (lam if lam > 0 else 1.0)
        nnz = np.count_nonzero(diff) / samples
        beta, avg, vel = _reference_update(CFG, beta, avg, vel, nnz)
        np.testing.assert_allclose(grads[i], grad, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(states.beta[i], beta, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(states.nnz[i], avg, rtol=1e-5)
        np.testing.assert_allclose(states.velocity[i], vel, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(states.lam[i], lam, rtol=1e-5)
        assert float(stats.stats.estimates[i]) == samples
        assert float(stats.stats.nnz_sum[i]) == np.count_nonzero(diff)
    # The rule moved beta up and down: the trajectory is not constant.
    assert len(set(np.round(np.asarray(states.beta), 6).tolist())) > 2
    # The cotangent of the state proper is zero: only the statistics carry information.
    for name in ("beta", "nnz", "velocity", "lam"):
        np.testing.assert_array_equal(getattr(stats, name), 0.0)
    # A new state carries no statistics.
    np.testing.assert_array_equal(np.asarray(jax.tree.leaves(states.stats)), 0.0)


def _per_instance_nnz(sampler, oracle, noise, keys, thetas, w, beta, samples):
    """Non-zero counts of the per-sample differences of each instance, recomputed by hand."""
    counts = []
    for key, theta, wi in zip(keys, thetas, w, strict=True):
        eps = noise.sample(key, (samples, theta.shape[0]), theta.dtype)
        norm_theta = jnp.sqrt(jnp.sum(theta**2) * samples)
        lam = beta * norm_theta / jnp.linalg.norm(wi)
        z = jax.vmap(oracle)(theta[None] + eps)
        z_t = jax.vmap(oracle)(theta[None] - lam * wi + eps)
        counts.append(int(jnp.count_nonzero(z - z_t)))
    return np.array(counts)


def test_vmap_with_one_shared_state_moves_beta_by_one_step():
    # Eight instances under vmap share one state: autodiff sums the eight cotangents. The rule
    # must see the mean non-zero count over all 8 x S per-sample estimates and step beta once.
    b, m, samples = 8, 12, 2
    target = ij.aimle(target_norm=1.0, step=1e-3, init_nnz=1.0)
    oracle, noise = ij.top_k(3), ij.sog(3)
    sampler = ij.imle(oracle, noise=noise, target=target, samples=samples)
    thetas = jax.random.normal(jax.random.key(0), (b, m))
    w = jax.random.normal(jax.random.key(1), (b, samples, m))
    keys = jax.random.split(jax.random.key(2), b)
    state = target.init()

    def loss(t, s):
        z = jax.vmap(lambda k, ti: sampler(k, ti, state=s))(keys, t)
        return jnp.sum(z * w)

    _, stats = jax.jit(jax.grad(loss, argnums=(0, 1)))(thetas, state)
    new = target.update(state, stats)

    counts = _per_instance_nnz(sampler, oracle, noise, keys, thetas, w, 1.0, samples)
    assert float(stats.stats.estimates) == b * samples
    assert float(stats.stats.nnz_sum) == counts.sum()
    assert float(stats.stats.calls) == b
    mean_nnz = counts.sum() / (b * samples)
    beta, avg, _ = _reference_update(
        dict(decay=0.9, momentum=0.0, step=1e-3, target_norm=1.0), 1.0, 1.0, 0.0, mean_nnz
    )
    np.testing.assert_allclose(new.nnz, avg, rtol=1e-6)
    np.testing.assert_allclose(new.beta, beta, rtol=1e-6)
    # One step from 1.0 is 1.0 +- step (the summed-state bug gave 8.008).
    assert abs(float(new.beta) - 1.0) == pytest.approx(1e-3, rel=1e-4)


def test_two_calls_in_one_loss_give_one_step_with_the_mean_over_both():
    target = ij.aimle(target_norm=1.0, step=1e-3)
    oracle, noise = ij.top_k(2), ij.gumbel(1.0)
    sampler = ij.imle(oracle, noise=noise, target=target, samples=3)
    theta = jax.random.normal(jax.random.key(0), (8,))
    w1, w2 = jax.random.normal(jax.random.key(1), (2, 3, 8))
    k1, k2 = jax.random.split(jax.random.key(2))
    state = target.init()

    def loss(t, s):
        return jnp.sum(sampler(k1, t, state=s) * w1) + jnp.sum(sampler(k2, t, state=s) * w2)

    _, stats = jax.grad(loss, argnums=(0, 1))(theta, state)
    one1 = jax.grad(lambda s: jnp.sum(sampler(k1, theta, state=s) * w1))
    one2 = jax.grad(lambda s: jnp.sum(sampler(k2, theta, state=s) * w2))
    s1, s2 = one1(state).stats, one2(state).stats
    assert float(stats.stats.estimates) == 6
    assert float(stats.stats.nnz_sum) == float(s1.nnz_sum + s2.nnz_sum)
    new = target.update(state, stats)
    mean_nnz = float(s1.nnz_sum + s2.nnz_sum) / 6
    np.testing.assert_allclose(new.nnz, 0.9 * 1.0 + 0.1 * mean_nnz, rtol=1e-6)
    assert abs(float(new.beta) - 1.0) == pytest.approx(1e-3, rel=1e-4)


@pytest.mark.skipif(jax.device_count() < 4, reason="needs 4 devices (tests/conftest.py sets them)")
@pytest.mark.parametrize("check_vma", [True, False])
def test_sharded_step_equals_one_device(check_vma):
    # shard_map over 4 devices, the state replicated. With JAX's varying-axis checks the gradient
    # of a replicated input comes back summed over the devices (autodiff inserts the psum); without
    # them the caller sums with psum, as for any replicated parameter.
    from jax.sharding import Mesh, PartitionSpec

    b, m, samples = 8, 10, 2
    target = ij.aimle(target_norm=1.0, step=1e-2)
    sampler = ij.imle(ij.top_k(3), noise=ij.sog(3), target=target, samples=samples)
    thetas = jax.random.normal(jax.random.key(0), (b, m))
    w = jax.random.normal(jax.random.key(1), (b, samples, m))
    keys = jax.random.split(jax.random.key(2), b)
    state = target.init()

    def local_grads(t, k, wi, s):
        def loss(t, s):
            return jnp.sum(jax.vmap(lambda kk, ti: sampler(kk, ti, state=s))(k, t) * wi)

        return jax.grad(loss, argnums=(0, 1))(t, s)

    g_single, stats_single = jax.jit(local_grads)(thetas, keys, w, state)
    mesh = Mesh(np.array(jax.devices()[:4]), ("b",))
    spec = PartitionSpec("b")

    def per_device(t, k, wi, s):
        g, stats = local_grads(t, k, wi, s)
        return g, stats if check_vma else jax.lax.psum(stats, "b")

    sharded = jax.shard_map(
        per_device,
        mesh=mesh,
        in_specs=(spec, spec, spec, PartitionSpec()),
        out_specs=(spec, PartitionSpec()),
        check_vma=check_vma,
    )
    g_sharded, stats_sharded = jax.jit(sharded)(thetas, keys, w, state)
    np.testing.assert_array_equal(np.asarray(g_sharded), np.asarray(g_single))
    # Counts are exact; the summed step lam_sum may differ in the last bit (summation order).
    for name in ("nnz_sum", "estimates", "calls"):
        assert float(getattr(stats_sharded.stats, name)) == float(getattr(stats_single.stats, name))
    np.testing.assert_allclose(stats_sharded.stats.lam_sum, stats_single.stats.lam_sum, rtol=1e-6)
    new_sharded = target.update(state, stats_sharded)
    new_single = target.update(state, stats_single)
    for a, c in zip(jax.tree.leaves(new_sharded), jax.tree.leaves(new_single), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-6)
    assert float(stats_single.stats.estimates) == b * samples


def test_update_without_statistics_leaves_the_state_unchanged():
    target = ij.aimle(step=0.1)
    state = target.init()
    new = target.update(state, ij.AIMLEStats.zeros())
    for a, c in zip(jax.tree.leaves(new), jax.tree.leaves(state), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(c))
    with pytest.raises(TypeError, match="stats"):
        target.update(state, {"nnz": 1.0})


def test_aimle_scale_is_a_finite_difference():
    # With S samples the estimate is the sum of per-sample finite differences divided by the step
    # actually taken; a loss averaged over samples gets the same estimate as one sample's loss.
    target = ij.aimle(init_beta=0.5)
    oracle = ij.top_k(2)
    theta = jax.random.normal(jax.random.key(0), (6,))
    w = jax.random.normal(jax.random.key(1), (6,))
    one = ij.imle(oracle, noise=ij.gumbel(), target=target)
    many = ij.imle(oracle, noise=ij.gumbel(), target=target, samples=4)
    key = jax.random.key(3)
    g_one = jax.grad(lambda t: jnp.vdot(w, one(key, t, state=target.init())))(theta)
    g_many = jax.grad(lambda t: jnp.mean(many(key, t, state=target.init()) @ w))(theta)
    # lam_s = beta*||theta|| / ||w|| for one sample; with four samples each sees g = w/4 and the
    # same lam*g, so each contribution is the single-sample estimate of its own noise, averaged.
    eps = ij.gumbel().sample(key, (4, 6), theta.dtype)
    lam = 0.5 * jnp.linalg.norm(theta) / jnp.linalg.norm(w)
    per = jax.vmap(lambda e: (oracle(theta + e) - oracle(theta - lam * w + e)) / lam)(eps)
    np.testing.assert_allclose(g_many, per.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(g_one, per[0], rtol=1e-5, atol=1e-6)


def test_state_errors():
    stateful = ij.imle(ij.top_k(2), target=ij.aimle())
    theta = jnp.array([0.5, -0.3, 1.2, 0.0])
    with pytest.raises(ValueError, match="state"):
        stateful(jax.random.key(0), theta)
    with pytest.raises(TypeError, match="state"):
        ij.imle(ij.top_k(2))(jax.random.key(0), theta, state=ij.aimle().init())
    # A wrong state is rejected when the transform is called, not in the backward pass.
    with pytest.raises(TypeError, match="AIMLEState"):
        stateful(jax.random.key(0), theta, state=(1.0, 1.0, 0.0))
