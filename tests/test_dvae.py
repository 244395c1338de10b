"""Discrete VAE experiment: data loader, losses and test-loss definitions, presets, initialisation,
configurations, a smoke run and exact resume.

One smoke run of the ``aimle-readme`` preset (``S = 2`` to keep it small) is shared by the tests
that need a trained state; its compiled epoch and evaluation are reused by the resume test.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("orbax.checkpoint")

from flax import nnx  # noqa: E402

import imlejax as ij  # noqa: E402
from experiments.dvae import __main__ as cli  # noqa: E402
from experiments.dvae.configs import METHODS, PRESET_FIELDS, PRESETS, gs_tau  # noqa: E402
from experiments.dvae.data import EXPECTED_KEYS, load_mnist, write_fake_mnist  # noqa: E402
from experiments.dvae.model import (  # noqa: E402
    DiscreteVAE,
    kl_to_uniform,
    reference_loss,
    sampled_code_test_loss,
)
from experiments.dvae.train import (  # noqa: E402
    Estimators,
    TrainConfig,
    eval_chunk,
    evaluate,
    final_state,
    train,
)

SMOKE = ["--smoke", "--preset", "aimle-readme", "--samples", "2", "--no-progress"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny file in the mnist.npz layout: 60 training and 20 test images."""
    path = tmp_path_factory.mktemp("data") / "mnist.npz"
    return write_fake_mnist(path, n_train=60, n_test=20)


@pytest.fixture(scope="module")
def smoke_run(tiny, tmp_path_factory):
    """``(result, out_dir, cfg)`` of two smoke epochs of ``aimle-readme`` with ``S = 2``."""
    out = tmp_path_factory.mktemp("smoke")
    result = cli.main([*SMOKE, "--data", str(tiny), "--out", str(out)])
    cfg = cli.resolve_config(
        cli.parse_args(SMOKE), epochs=2, batch_size=20, max_train=60, max_test=20
    )
    return result, out, cfg


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


def _bce(logits, x):
    """Summed BCE with logits written out in NumPy: -[x log p + (1 - x) log(1 - p)]."""
    logits, x = np.asarray(logits, np.float64), np.asarray(x, np.float64)
    p = 1 / (1 + np.exp(-logits))
    return -np.sum(x * np.log(p) + (1 - x) * np.log1p(-p), axis=-1)


def _kl(theta):
    """Sum over groups of KL(softmax(theta_group) || uniform over 20), in NumPy."""
    theta = np.asarray(theta, np.float64)
    q = np.exp(theta - theta.max(-1, keepdims=True))
    q /= q.sum(-1, keepdims=True)
    return np.sum(q * np.log(q * 20.0), axis=(-2, -1))


def test_losses_and_their_reductions():
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(3, 20, 20)).astype(np.float32)
    x = rng.uniform(size=(3, 784)).astype(np.float32)
    logits = rng.normal(size=(4, 3, 784)).astype(np.float32)

    @jax.jit
    def losses(theta, logits, x):
        return dict(
            kl_zero=kl_to_uniform(jnp.zeros_like(theta)),
            kl=kl_to_uniform(theta),
            mean=reference_loss(theta, logits, x),
            sum=reference_loss(theta, logits, x, "sum"),
            one_mean=reference_loss(theta, logits[0], x)[0],
            one_sum=reference_loss(theta, logits[0], x, "sum")[0],
            cli=sampled_code_test_loss(theta, logits, x),
        )

    got = losses(theta, logits, x)
    bce_ref, kl_ref = _bce(logits, x), _kl(theta)  # (S, B), (B,)
    np.testing.assert_allclose(got["kl_zero"], 0.0, atol=1e-6)
    np.testing.assert_allclose(got["kl"], kl_ref, rtol=1e-5)
    loss, (bce, kl) = got["mean"]
    np.testing.assert_allclose(bce, bce_ref.mean(), rtol=1e-5)
    np.testing.assert_allclose(kl, kl_ref.mean(), rtol=1e-5)
    np.testing.assert_allclose(loss, bce_ref.mean() + kl_ref.mean(), rtol=1e-5)
    # Summed over the samples (the AIMLE PyTorch code): S * mean BCE + KL.
    loss_sum, (bce_sum, _) = got["sum"]
    np.testing.assert_allclose(loss_sum, bce_ref.sum(0).mean() + kl_ref.mean(), rtol=1e-5)
    np.testing.assert_allclose(bce_sum, bce, rtol=1e-6)
    # One sample: both reductions agree.
    np.testing.assert_allclose(got["one_sum"], got["one_mean"], rtol=1e-6)
    np.testing.assert_allclose(got["one_mean"], bce_ref[0].mean() + kl_ref.mean(), rtol=1e-5)
    # The CLI's test loss: mean over samples of the BCE plus KL / S.
    np.testing.assert_allclose(got["cli"], bce_ref.mean() + kl_ref.mean() / 4, rtol=1e-5)
    with pytest.raises(ValueError, match="reduction"):
        reference_loss(theta, logits, x, "max")


def test_presets_resolve_field_by_field():
    args = cli.parse_args(["--preset", "tf-notebook"])
    cfg = cli.resolve_config(args)
    assert (cfg.preset, cfg.method, cfg.temperature, cfg.samples) == (
        "tf-notebook",
        "imle_sog_lam10",
        10.0,
        None,
    )
    assert (cfg.init_beta, cfg.loss_reduction, cfg.init) == (1.0, "mean", "glorot")
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.adam_eps, cfg.seed) == (100, 100, 1e-3, 1e-7, 0)
    built = Estimators(METHODS[cfg.method], cfg).get(1)
    assert built.noise == ij.sog(10, tau=10.0, terms=10)
    assert built.target == ij.pid(10.0)
    assert cli.run_name(args) == "tf-notebook_imle_sog_lam10"

    args = cli.parse_args(["--preset", "aimle-readme"])
    cfg = cli.resolve_config(args)
    assert (cfg.preset, cfg.method, cfg.temperature, cfg.samples) == (
        "aimle-readme",
        "aimle",
        1.0,
        10,
    )
    assert (cfg.init_beta, cfg.loss_reduction, cfg.init) == (0.0, "sum", "xavier_relu")
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.seed) == (100, 100, 1e-3, 0)
    built = Estimators(METHODS[cfg.method], cfg).get(1)
    assert built.noise == ij.sog(10, tau=1.0, terms=10)
    t = built.target
    assert (t.target_norm, t.step, t.central, t.init_beta, t.momentum) == (10.0, 1e-3, True, 0.0, 0)
    assert (t.decay, t.init_nnz, t.alpha, t.target_tau, t.batch_ndim) == (0.9, 1.0, 1.0, None, 2)
    assert float(built.state.beta) == 0.0
    assert cli.run_name(args) == "aimle-readme_aimle"
    assert set(PRESETS["aimle-readme"]) == set(PRESETS["tf-notebook"]) == set(PRESET_FIELDS)

    # Every preset setting is a flag that overrides it.
    flags = [
        "--preset",
        "tf-notebook",
        "--method",
        "aimle",
        "--temperature",
        "1",
        "--samples",
        "3",
        "--init-beta",
        "0.5",
        "--loss-reduction",
        "sum",
        "--init",
        "torch",
    ]
    args = cli.parse_args(flags)
    cfg = cli.resolve_config(args)
    assert (cfg.method, cfg.temperature, cfg.samples, cfg.init_beta) == ("aimle", 1.0, 3, 0.5)
    assert (cfg.loss_reduction, cfg.init, cfg.preset) == ("sum", "torch", "tf-notebook")
    assert cli.run_name(args) == (
        "tf-notebook_aimle_temperature1_samples3_init_beta0.5_loss_reductionsum_inittorch"
    )
    for bad in (dict(temperature=0.0), dict(loss_reduction="max"), dict(init="he"),
                dict(init_beta=-1.0), dict(samples=0), dict(method="nope")):  # fmt: skip
        with pytest.raises(ValueError, match=next(iter(bad))):
            TrainConfig(**{"method": "aimle", **bad})


@pytest.mark.parametrize("init", ["torch", "glorot", "xavier_relu"])
def test_initialisations(init):
    built = METHODS["imle_sog_lam10"].build(TrainConfig("imle_sog_lam10").settings())
    model = DiscreteVAE(built, rngs=nnx.Rngs(params=0, noise=1), init=init)
    for layer in (model.enc1, model.enc3, model.dec3):
        w, b = np.asarray(layer.kernel[...]), np.asarray(layer.bias[...])
        fan_in, fan_out = w.shape
        bound = {
            "torch": 1 / np.sqrt(fan_in),
            "glorot": np.sqrt(6 / (fan_in + fan_out)),
            "xavier_relu": np.sqrt(12 / (fan_in + fan_out)),
        }[init]
        # Uniform on [-bound, bound]: the extremes approach the bound, the variance is bound^2/3.
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
        np.testing.assert_allclose(w.var(), bound**2 / 3, rtol=0.05)
        if init == "torch":
            assert np.abs(b).max() <= 1 / np.sqrt(fan_in) and b.std() > 0.4 / np.sqrt(fan_in)
        else:
            assert np.all(b == 0)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_methods_give_codes(name):
    method = METHODS[name]
    cfg = TrainConfig(name, temperature=1.0)
    built = method.build(cfg.settings(method.tau_schedule(1) if method.tau_schedule else None))
    theta = jax.random.normal(jax.random.key(0), (2, 20, 20))
    kwargs = {} if built.state is None else {"state": built.state}
    z, z_map = jax.jit(lambda k, t: (built.estimator(k, t, **kwargs), built.map_fn(t)))(
        jax.random.key(1), theta
    )
    assert z.shape == z_map.shape == theta.shape
    ones = 1.0 if name == "gumbel_softmax" else 10.0
    np.testing.assert_allclose(z.sum(-1), ones, rtol=1e-5)
    np.testing.assert_array_equal(z_map.sum(-1), ones)
    # The MAP code selects the largest entries of each group.
    t, zm = np.asarray(theta), np.asarray(z_map)
    assert np.all(np.where(zm == 1, t, np.inf).min(-1) > np.where(zm == 0, t, -np.inf).max(-1))
    if built.noise is not None:
        assert built.noise.tau == 1.0


def test_gs_schedule():
    assert gs_tau(1) == pytest.approx(np.exp(-3e-4))
    assert gs_tau(10) == pytest.approx(np.exp(-3e-4 * 55))
    assert gs_tau(100) == 0.5


def test_smoke_cli(smoke_run):
    result, out, cfg = smoke_run
    assert result["epochs_completed"] == 2
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["method"] == "aimle" and saved["config"]["preset"] == "aimle-readme"
    assert saved["config"] == json.loads(json.dumps(cfg.__dict__))
    assert set(saved["test_losses"]) == {"test_loss_map", "test_loss_cli"}
    assert (out / "metrics.csv").read_text().startswith("epoch,")
    last = result["history"][-1]
    for key in ("test_loss_map", "test_loss_cli", "train_loss", "aimle_lambda", "theta_rms"):
        assert np.isfinite(last[key])
    # beta starts at 0 and grows by 1e-3 per step while the non-zero count is below 10.
    assert last["aimle_beta"] == pytest.approx(6e-3, rel=1e-4)
    # The summed reduction: the training loss is S times the mean BCE plus the KL.
    np.testing.assert_allclose(
        last["train_loss"], 2 * last["train_bce"] + last["train_kl"], rtol=1e-5
    )


def test_test_loss_definitions(smoke_run, tiny):
    """``evaluate`` against the definitions computed directly from the trained model."""
    _, out, cfg = smoke_run
    graphdef, state, _ = final_state(cfg, out)
    x = jnp.asarray(load_mnist(tiny).x_test)
    key = jax.random.key(7)
    got = evaluate(graphdef, state, x, eval_chunk(x.shape[0]), key)

    @jax.jit
    def pieces(state, x, key):
        model, _ = nnx.merge(graphdef, state)
        theta = model.encode(x)
        z = model.code(theta, deterministic=False, rngs=key)
        return theta, model.decode(ij.top_k(10)(theta)), z, model.decode(z)

    theta, logits_map, z, logits = pieces(state, x, jax.random.split(key, 1)[0])
    kl = _kl(theta).mean()
    np.testing.assert_allclose(got["test_loss_map"], _bce(logits_map, x).mean() + kl, rtol=1e-5)
    assert z.shape == (2, 20, 20, 20)
    bce = _bce(logits, x)  # (S, B)
    np.testing.assert_allclose(got["test_loss_cli"], bce.mean() + kl / 2, rtol=1e-5)
    assert abs(float(got["test_loss_cli"] - got["test_loss_map"])) > 1e-3
    assert eval_chunk(10_000) == 1000 and eval_chunk(20) == 20 and eval_chunk(7919) == 1


def _strip_times(history):
    return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in history]


def test_resume_is_exact(smoke_run, tiny, tmp_path):
    straight, out, cfg = smoke_run
    data = load_mnist(tiny)
    first = train(cfg, data, tmp_path / "resumed", progress=False, stop_after=1)
    assert first["epochs_completed"] == 1
    resumed = train(cfg, data, tmp_path / "resumed", progress=False)
    assert resumed["epochs_completed"] == 2
    assert _strip_times(resumed["history"]) == _strip_times(straight["history"])
    _, state_a, epoch_a = final_state(cfg, out)
    _, state_b, epoch_b = final_state(cfg, tmp_path / "resumed")
    assert epoch_a == epoch_b == 2
    leaves_a, leaves_b = jax.tree.leaves(state_a), jax.tree.leaves(state_b)
    assert len(leaves_a) == len(leaves_b)
    for a, b in zip(leaves_a, leaves_b, strict=True):
        if jnp.issubdtype(a.dtype, jax.dtypes.prng_key):
            a, b = jax.random.key_data(a), jax.random.key_data(b)
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="another configuration"):
        train(TrainConfig(method="ste", epochs=2, batch_size=20), data, out)
