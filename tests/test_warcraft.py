"""Warcraft experiment: networks, metrics, method configurations, smoke run and exact resume."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")

from flax import nnx  # noqa: E402

from experiments.warcraft import __main__ as cli  # noqa: E402
from experiments.warcraft.configs import LAMBDA_BB, LAMBDA_MAPMAP, METHODS  # noqa: E402
from experiments.warcraft.data import load_warcraft  # noqa: E402
from experiments.warcraft.generate import generate, shortest_paths  # noqa: E402
from experiments.warcraft.metrics import hamming_loss, path_metrics  # noqa: E402
from experiments.warcraft.model import CostNet, ResNet18, adaptive_max_pool  # noqa: E402
from experiments.warcraft.train import TrainConfig, final_state, train  # noqa: E402

K = 12


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Generated 12x12 files: 20 training, 10 validation and 10 test maps."""
    root = generate(tmp_path_factory.mktemp("wc"), sizes=(K,), n_train=20, n_val=10, n_test=10)
    return load_warcraft(root, K)


def _torch_adaptive_max_pool(x, out):
    """PyTorch's AdaptiveMaxPool2d by its definition, with loops."""
    b, h, w, c = x.shape
    res = np.zeros((b, out, out, c), x.dtype)
    for i in range(out):
        r0, r1 = (i * h) // out, -(-((i + 1) * h) // out)
        for j in range(out):
            c0, c1 = (j * w) // out, -(-((j + 1) * w) // out)
            res[:, i, j] = x[:, r0:r1, c0:c1].max(axis=(1, 2))
    return res


@pytest.mark.parametrize("shape,out", [((2, 7, 5, 3), 3), ((1, 24, 24, 2), 12), ((1, 9, 9, 1), 4)])
def test_adaptive_max_pool(shape, out):
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    got = adaptive_max_pool(jnp.asarray(x), out)
    np.testing.assert_array_equal(got, _torch_adaptive_max_pool(x, out))


def _count(model):
    return sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _maps(k, n, seed=0):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.integers(0, 256, (n, 8 * k, 8 * k, 3), dtype=np.uint8))


def test_networks_match_the_reference_architectures():
    net = nnx.eval_shape(lambda: CostNet(K, rngs=nnx.Rngs(0)))
    # conv1 3*64*49 + 5 batch norms * 128 + four 3x3 convolutions of 64 -> 64 (torchvision)
    assert _count(net) == 9408 + 5 * 128 + 4 * 36864 == 157504
    baseline = nnx.eval_shape(lambda: ResNet18(K, rngs=nnx.Rngs(0)))
    # torchvision resnet18(num_classes=144): 11,689,512 - (512*1000 + 1000) + (512*144 + 144)
    assert _count(baseline) == 11_250_384
    w = CostNet(4, rngs=nnx.Rngs(0))(_maps(4, 2))
    assert w.shape == (2, 4, 4) and float(w.min()) >= 0.0


@pytest.mark.slow
def test_baseline_forward():
    logits = nnx.jit(lambda m, x: m(x))(ResNet18(2, rngs=nnx.Rngs(0)), _maps(2, 2))
    assert logits.shape == (2, 2, 2) and bool(jnp.all(jnp.isfinite(logits)))


def test_batch_norm_modes_and_normalisation():
    maps = _maps(4, 4)
    mean, std = np.array([100.0, 120.0, 80.0]), np.array([40.0, 50.0, 30.0])
    net = CostNet(4, mean, std, rngs=nnx.Rngs(0))
    plain = CostNet(4, rngs=nnx.Rngs(0))  # same weights, identity normalisation
    x = (np.asarray(maps, np.float32) - mean) / std
    np.testing.assert_allclose(net(maps), plain(jnp.asarray(x, jnp.float32)), rtol=2e-5, atol=1e-5)
    before = jax.tree.map(jnp.copy, nnx.state(net, nnx.BatchStat))
    net.train()
    alone = net(maps[:1])
    together = net(maps)[:1]
    assert not np.allclose(alone, together)  # training mode: batch statistics
    after = nnx.state(net, nnx.BatchStat)
    assert not np.allclose(before["stem"]["bn1"]["mean"][...], after["stem"]["bn1"]["mean"][...])
    net.eval()
    frozen = jax.tree.map(jnp.copy, nnx.state(net, nnx.BatchStat))
    np.testing.assert_allclose(net(maps[:1]), net(maps)[:1], rtol=1e-5, atol=1e-6)
    after = jax.tree.leaves(nnx.state(net, nnx.BatchStat))
    for a, b in zip(jax.tree.leaves(frozen), after, strict=True):
        np.testing.assert_array_equal(a, b)  # evaluation mode: running averages, unchanged


def test_hamming_loss_and_path_metrics():
    y = np.zeros((2, 3, 3), np.float32)
    y[:, [0, 1, 2], [0, 1, 2]] = 1  # the diagonal
    z = y.copy()
    z[1, 1, 1], z[1, 0, 1], z[1, 1, 2] = 0, 1, 1  # around the centre: 3 mismatches
    np.testing.assert_allclose(hamming_loss(jnp.asarray(z), jnp.asarray(y)), 1.5)
    np.testing.assert_allclose(hamming_loss(jnp.stack([z, y]), jnp.asarray(y)), 0.75)
    w = np.ones((2, 3, 3), np.float32)
    m = path_metrics(z, y, w)
    assert m["valid"].tolist() == [True, True] and m["exact"].tolist() == [True, False]
    assert m["optimal"].tolist() == [True, False]  # 4 tiles cost more than 3
    np.testing.assert_allclose(m["hamming_acc"], [1.0, 6 / 9])
    w0 = np.ones((1, 3, 3))
    two = np.array([[[1, 0, 0], [0, 0, 0], [0, 0, 1]]], np.float32)  # corners, not connected
    assert path_metrics(two, y[:1], w0)["valid"].tolist() == [False]
    assert path_metrics(two, y[:1], w0)["optimal"].tolist() == [False]


def test_equal_cost_alternative_is_optimal():
    w = np.array([[[1.0, 1.0, 5.0], [1.0, 5.0, 1.0], [5.0, 1.0, 1.0]]])
    gold = np.array([[[1, 1, 0], [0, 0, 1], [0, 0, 1]]], np.float32)  # cost 4
    other = np.array([[[1, 0, 0], [1, 0, 0], [0, 1, 1]]], np.float32)  # cost 4
    m = path_metrics(other, gold, w)
    assert m["optimal"].tolist() == [True] and m["exact"].tolist() == [False]


def _batch(tiny, n=3):
    w = jnp.asarray(tiny.train.weights[:n]) + 0.01 * jax.random.uniform(
        jax.random.key(0), (n, K, K)
    )
    return w, jnp.asarray(tiny.train.paths[:n])


SOLVER_METHODS = sorted(set(METHODS) - {"resnet18"})


@pytest.mark.slow
def test_methods_give_paths(tiny):
    w, y = _batch(tiny)
    opt, _ = shortest_paths(np.asarray(tiny.train.weights[:3]))
    for name in SOLVER_METHODS:
        built = METHODS[name].build(K)
        # the evaluation oracle gives the optimal path of the true costs
        pred = np.asarray(built.oracle(jnp.asarray(tiny.train.weights[:3])))
        assert path_metrics(pred, opt, tiny.train.weights[:3])["optimal"].all(), name
        if built.kind == "fy":
            assert np.isfinite(float(built.estimator(jax.random.key(1), w, y)))
            continue
        kwargs = {} if built.state is None else {"state": built.state}
        z = built.estimator(jax.random.key(1), w, **kwargs).reshape(-1, K, K)
        assert set(np.unique(z)) <= {0.0, 1.0}, name
        assert path_metrics(z, np.tile(y, (z.shape[0] // 3, 1, 1)), np.ones(z.shape))[
            "valid"
        ].all(), name


@pytest.mark.slow
@pytest.mark.parametrize("name", SOLVER_METHODS)
def test_methods_give_gradients(name, tiny):
    built = METHODS[name].build(K)
    w, y = _batch(tiny)
    key = jax.random.key(1)
    kwargs = {} if built.state is None else {"state": built.state}
    if built.kind == "fy":
        loss = lambda w: built.estimator(key, w, y)  # noqa: E731
    else:
        loss = lambda w: hamming_loss(built.estimator(key, w, **kwargs), y)  # noqa: E731
    g = jax.jit(jax.grad(loss))(w)
    assert g.shape == w.shape and bool(jnp.all(jnp.isfinite(g)))
    assert float(jnp.abs(g).sum()) > 0


def test_mapmap_is_the_perceptron_rule(tiny):
    """Eq. 14 without noise: d loss / d w = -(MAP(w) - y) / lambda for the Hamming loss."""
    built = METHODS["imle-mapmap"].build(K)
    w, y = _batch(tiny)
    g = jax.grad(lambda w: hamming_loss(built.estimator(jax.random.key(0), w), y))(w)
    np.testing.assert_allclose(g, -(built.oracle(w) - y) / LAMBDA_MAPMAP, atol=1e-7)


def test_blackbox_closed_form(tiny):
    """BB: d loss / d w = -(y(w) - y(max(w + lambda g, 0))) / lambda with g = (1 - 2 y) / B."""
    built = METHODS["blackbox"].build(K)
    w, y = _batch(tiny)
    g = jax.grad(lambda w: hamming_loss(built.estimator(jax.random.key(0), w), y))(w)
    up = (1.0 - 2.0 * y) / w.shape[0]
    shifted = built.oracle(jnp.maximum(w + LAMBDA_BB * up, 0.0))
    np.testing.assert_allclose(g, -(built.oracle(w) - shifted) / LAMBDA_BB, atol=1e-7)
    assert float(jnp.abs(g).sum()) > 0


def test_smoke_cli(tmp_path):
    out = tmp_path / "run"
    result = cli.main(["--smoke", "--method", "blackbox", "--no-progress", "--out", str(out)])
    assert result["epochs_completed"] == 2 and result["data"] == "generated stand-in"
    assert 0.0 <= result["test"]["test_optimal"] <= 100.0
    assert (out / "metrics.csv").read_text().startswith("epoch,")
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["method"] == "blackbox" and saved["history"][1]["lr"] == pytest.approx(5e-5)
    assert np.load(out / "test_predictions.npz")["pred"].shape == (10, K, K)


def _strip_times(history):
    return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in history]


@pytest.mark.slow
def test_resume_is_exact(tiny, tmp_path):
    cfg = TrainConfig(method="aimle", k=K, epochs=2, batch_size=10, milestones=(1, 2))
    straight = train(cfg, tiny, tmp_path / "straight", progress=False)
    first = train(cfg, tiny, tmp_path / "resumed", progress=False, stop_after=1)
    assert first["epochs_completed"] == 1 and "test" not in first
    resumed = train(cfg, tiny, tmp_path / "resumed", progress=False)
    assert resumed["epochs_completed"] == 2
    assert _strip_times(resumed["history"]) == _strip_times(straight["history"])
    assert resumed["test"] == straight["test"]
    _, state_a, epoch_a = final_state(cfg, tiny, tmp_path / "straight")
    _, state_b, epoch_b = final_state(cfg, tiny, tmp_path / "resumed")
    assert epoch_a == epoch_b == 2
    leaves_a, leaves_b = jax.tree.leaves(state_a), jax.tree.leaves(state_b)
    assert len(leaves_a) == len(leaves_b)
    for a, b in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(a, b)
    assert float(state_a["aimle"].beta) != 1.0  # the AIMLE state moved and was restored
    with pytest.raises(ValueError, match="another configuration"):
        train(TrainConfig(method="ste", k=K, epochs=2, batch_size=10), tiny, tmp_path / "straight")
