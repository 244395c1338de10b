"""The synthetic experiments (appendix C.1): exactness of the problem, the scaling of the I-MLE
estimate against the paper's formula, and a smoke run of the command line."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.synthetic import estimators as est
from experiments.synthetic import problem as prob
from experiments.synthetic import train
from experiments.synthetic.__main__ import main
from imlejax import ksubset


@pytest.fixture(scope="module")
def pb():
    return prob.make_problem()


def test_problem_is_a_5_subset_of_10(pb):
    assert (pb.m, pb.k) == (10, 5)
    assert pb.states.shape == (math.comb(10, 5), 10)
    assert bool(jnp.all(pb.states.sum(-1) == 5))
    assert pb.loss_min < float(prob.expected_loss(pb, jnp.zeros(10))) < pb.loss_max


def test_closed_form_matches_enumeration(pb):
    theta = jax.random.normal(jax.random.key(1), (10,))
    by_states = prob.expected_loss(pb, theta)
    by_marginals = prob.expected_loss_marginals(pb, theta)
    np.testing.assert_allclose(by_states, by_marginals, rtol=1e-5)
    grad = prob.exact_gradient(pb, theta)
    reference = ksubset.exact_gradient(lambda z: prob.pointwise_loss(pb, z), theta, 5)
    np.testing.assert_allclose(grad, reference, rtol=1e-4, atol=1e-6)
    grad_marginals = jax.grad(lambda t: prob.expected_loss_marginals(pb, t))(theta)
    np.testing.assert_allclose(grad, grad_marginals, rtol=1e-3, atol=1e-5)
    # grad L = -2 Cov(z) b for binary z with a constant number of ones.
    p = jax.nn.softmax(pb.states @ theta)
    mu = p @ pb.states
    cov = (pb.states * p[:, None]).T @ pb.states - jnp.outer(mu, mu)
    np.testing.assert_allclose(grad, -2 * cov @ pb.b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("noise", est.NOISES)
@pytest.mark.parametrize("lam", [0.5, 20.0])
def test_library_imle_is_paper_formula_over_lam(pb, noise, lam):
    theta = jax.random.normal(jax.random.key(2), (10,))
    lib = est.imle_gradient(pb, est.make_noise(noise, 5))
    paper = est.paper_imle_gradient(pb, est.make_noise(noise, 5))
    for i in range(5):
        key = jax.random.key(10 + i)
        np.testing.assert_allclose(lam * lib(key, theta, lam), paper(key, theta, lam), atol=1e-5)


def test_lr_times_lam_reproduces_the_paper_update(pb):
    """SGD with lr * lam on the library estimate equals SGD with lr on the paper's estimate."""
    noise = est.make_noise("sog", 5)
    lam, lr, steps = 5.0, 0.05, 8
    curves = train.run_grid(
        pb,
        est.imle_gradient(pb, noise),
        [lam],
        [lr],
        runs=2,
        steps=steps,
        seed=3,
        lr_times_lam=True,
    )[0, 0]
    paper = est.paper_imle_gradient(pb, noise)
    for r, key in enumerate(train.run_keys(3, 2)):
        theta, velocity = jnp.zeros(10), jnp.zeros(10)
        for step_key in jax.random.split(key, steps):
            velocity = paper(step_key, theta, lam) + train.MOMENTUM * velocity
            theta = theta - lr * velocity
        np.testing.assert_allclose(curves[r, -1], prob.expected_loss(pb, theta), rtol=1e-4)


def test_smoke_run_writes_sane_outputs(tmp_path):
    out = tmp_path / "synthetic"
    summary = main(["--smoke", "--out", str(out), "--publish", str(tmp_path / "docs")])
    names = ["imle", "ste_sfe", "runtime", "quality"]
    for name in names:
        assert (out / f"synthetic_{name}.json").exists()
        assert (out / f"synthetic_{name}.csv").stat().st_size > 0
    for fig in [
        "fig5_mean",
        "fig6_std",
        "fig5_mean_library",
        "fig6_std_library",
        "fig7_runtime",
        "fig8_ste_sfe",
        "quality",
        "curves",
    ]:
        assert (out / f"synthetic_{fig}.png").stat().st_size > 1000
        assert (tmp_path / "docs" / "figures" / f"synthetic_{fig}.png").exists()
    assert (tmp_path / "docs" / "results" / "synthetic_summary.json").exists()

    lo, hi = summary["problem"]["loss_min"], summary["problem"]["loss_max"]
    imle = json.loads((out / "synthetic_imle.json").read_text())["results"]
    for sem in ("paper", "library"):
        for noise in est.NOISES:
            mean = np.asarray(imle[sem][noise]["final_mean"])
            std = np.asarray(imle[sem][noise]["final_std"])
            assert mean.shape == (2, 2) and np.all(np.isfinite(mean))
            assert np.all((mean >= lo - 1e-4) & (mean <= hi + 1e-4))
            assert np.all(std >= 0)
    ste_sfe = json.loads((out / "synthetic_ste_sfe.json").read_text())["results"]
    for vals in (ste_sfe["ste"]["sog"], ste_sfe["ste"]["gumbel"], ste_sfe["sfe"]):
        mean = np.asarray(vals["final_mean"])
        assert np.all((mean >= lo - 1e-4) & (mean <= hi + 1e-4))
    runtime = json.loads((out / "synthetic_runtime.json").read_text())["results"]
    assert all(r["sample_mean"] > 0 for r in runtime["dp"] + runtime["perturb_and_map"])
    quality = json.loads((out / "synthetic_quality.json").read_text())["results"]
    cos = np.asarray(quality["imle"]["sog"]["cosine"])
    assert cos.shape == (2, 2) and np.all(np.abs(cos) <= 1 + 1e-6)
    assert quality["check_gradient"][0]["estimator"] == "SFE"
    assert 0 <= quality["forward"]["tv_faithful"] <= 1

    # A second run resumes: every stage is loaded, none is recomputed.
    again = main(["--smoke", "--out", str(out)])
    assert again["skipped_stages"] == names
