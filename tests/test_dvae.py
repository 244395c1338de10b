"""Discrete VAE experiment: data loader, loss, configurations, smoke run and exact resume."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")

from experiments.dvae import __main__ as cli  # noqa: E402
from experiments.dvae.configs import METHODS, gs_tau  # noqa: E402
from experiments.dvae.data import EXPECTED_KEYS, load_mnist, write_fake_mnist  # noqa: E402
from experiments.dvae.model import kl_to_uniform, reference_loss  # noqa: E402
from experiments.dvae.train import TrainConfig, final_state, train  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny file in the mnist.npz layout: 60 training and 20 test images."""
    path = tmp_path_factory.mktemp("data") / "mnist.npz"
    return write_fake_mnist(path, n_train=60, n_test=20)


def test_load_mnist(tiny, monkeypatch):
    data = load_mnist(tiny)
    assert data.x_train.shape == (60, 784) and data.x_test.shape == (20, 784)
    assert data.x_train.dtype == np.float32
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0
    raw = np.load(tiny)["x_train"]
    np.testing.assert_allclose(data.x_train[3], raw[3].reshape(-1) / 255.0, rtol=1e-6)
    monkeypatch.setenv("IMLEJAX_MNIST", str(tiny))
    assert load_mnist().x_test.shape == (20, 784)


def test_load_mnist_errors(tmp_path):
    missing = tmp_path / "nope" / "mnist.npz"
    with pytest.raises(FileNotFoundError, match="nope/mnist.npz") as err:
        load_mnist(missing)
    assert all(k in str(err.value) for k in EXPECTED_KEYS)
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=np.zeros((2, 28, 28), np.uint8), y_train=np.zeros(2, np.uint8))
    with pytest.raises(ValueError, match="missing key.*x_test") as err:
        load_mnist(partial)
    assert "partial.npz" in str(err.value)
    bad_shape = tmp_path / "shape.npz"
    arrays = {k: np.zeros((2, 28, 28) if k[0] == "x" else (2,), np.uint8) for k in EXPECTED_KEYS}
    arrays["x_test"] = np.zeros((2, 784), np.uint8)
    np.savez(bad_shape, **arrays)
    with pytest.raises(ValueError, match=r"x_test has shape \(2, 784\)"):
        load_mnist(bad_shape)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="garbage.npz: not a readable .npz"):
        load_mnist(garbage)


def test_reference_loss():
    theta = jnp.zeros((3, 20, 20))
    np.testing.assert_allclose(kl_to_uniform(theta), 0.0, atol=1e-6)
    theta = jax.random.normal(jax.random.key(0), (3, 20, 20))
    q = jax.nn.softmax(theta, -1)
    np.testing.assert_allclose(
        kl_to_uniform(theta), jnp.sum(q * jnp.log(q * 20.0), axis=(-2, -1)), rtol=1e-5
    )
    x = jax.random.uniform(jax.random.key(1), (3, 784))
    logits = jax.random.normal(jax.random.key(2), (2, 3, 784))
    loss, (bce, kl) = reference_loss(theta, logits, x)
    p = jax.nn.sigmoid(logits)
    x = jnp.broadcast_to(x, p.shape)
    bce_ref = -jnp.mean(jnp.sum(x * jnp.log(p) + (1 - x) * jnp.log1p(-p), axis=-1))
    np.testing.assert_allclose(bce, bce_ref, rtol=1e-4)
    np.testing.assert_allclose(loss, bce + jnp.mean(kl_to_uniform(theta)), rtol=1e-6)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_methods_give_codes(name):
    method = METHODS[name]
    built = method.build(None, method.tau_schedule(1) if method.tau_schedule else None)
    theta = jax.random.normal(jax.random.key(0), (2, 20, 20))
    kwargs = {} if built.state is None else {"state": built.state}
    z = built.estimator(jax.random.key(1), theta, **kwargs)
    assert z.shape == theta.shape
    ones = 1.0 if name == "gumbel_softmax" else 10.0
    np.testing.assert_allclose(z.sum(-1), ones, rtol=1e-5)
    assert built.map_fn(theta).sum(-1).min() == ones


def test_gs_schedule():
    assert gs_tau(1) == pytest.approx(np.exp(-3e-4))
    assert gs_tau(10) == pytest.approx(np.exp(-3e-4 * 55))
    assert gs_tau(100) == 0.5


def test_smoke_cli(tiny, tmp_path, capsys):
    result = cli.main(["--smoke", "--data", str(tiny), "--no-progress", "--out", str(tmp_path)])
    assert result["epochs_completed"] == 2
    assert np.isfinite(result["history"][-1]["test_loss"])
    assert (tmp_path / "metrics.csv").read_text().startswith("epoch,")
    assert json.loads((tmp_path / "metrics.json").read_text())["method"] == "imle_sog_lam10"


def _strip_times(history):
    return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in history]


def test_resume_is_exact(tiny, tmp_path):
    data = load_mnist(tiny)
    cfg = TrainConfig(method="aimle", epochs=2, batch_size=20, max_test=20)
    straight = train(cfg, data, tmp_path / "straight", progress=False)
    first = train(cfg, data, tmp_path / "resumed", progress=False, stop_after=1)
    assert first["epochs_completed"] == 1
    resumed = train(cfg, data, tmp_path / "resumed", progress=False)
    assert resumed["epochs_completed"] == 2
    assert _strip_times(resumed["history"]) == _strip_times(straight["history"])
    _, state_a, epoch_a = final_state(cfg, tmp_path / "straight")
    _, state_b, epoch_b = final_state(cfg, tmp_path / "resumed")
    assert epoch_a == epoch_b == 2
    leaves_a, leaves_b = jax.tree.leaves(state_a), jax.tree.leaves(state_b)
    assert len(leaves_a) == len(leaves_b)
    for a, b in zip(leaves_a, leaves_b, strict=True):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="another configuration"):
        train(TrainConfig(method="ste", epochs=2, batch_size=20), data, tmp_path / "straight")
