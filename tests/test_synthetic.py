"""The synthetic experiments (appendix C.1): exactness of the problem, the authors' instance and
presets, the scaling of the I-MLE estimate against the authors' formula, the optimality gap and
its rule, the significance counts, and smoke runs of the command line.

The smoke runs use the grid shapes of ``test_lr_times_lam_reproduces_the_paper_update``, so the
compiled runners (cached per estimator, noise and number of steps) are shared by the tests.
"""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import imlejax as ij
from experiments.synthetic import __main__ as cli
from experiments.synthetic import estimators as est
from experiments.synthetic import problem as prob
from experiments.synthetic import train
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

    @jax.jit
    def quantities(theta):
        return dict(
            by_states=prob.expected_loss(pb, theta),
            by_marginals=prob.expected_loss_marginals(pb, theta),
            grad=prob.exact_gradient(pb, theta),
            reference=ksubset.exact_gradient(lambda z: prob.pointwise_loss(pb, z), theta, 5),
            grad_marginals=jax.grad(lambda t: prob.expected_loss_marginals(pb, t))(theta),
        )

    q = quantities(theta)
    np.testing.assert_allclose(q["by_states"], q["by_marginals"], rtol=1e-5)
    np.testing.assert_allclose(q["grad"], q["reference"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(q["grad"], q["grad_marginals"], rtol=1e-3, atol=1e-5)
    # grad L = -2 Cov(z) b for binary z with a constant number of ones (in NumPy).
    states, b = np.asarray(pb.states, np.float64), np.asarray(pb.b, np.float64)
    w = states @ np.asarray(theta, np.float64)
    p = np.exp(w - w.max())
    p /= p.sum()
    mu = p @ states
    cov = (states * p[:, None]).T @ states - np.outer(mu, mu)
    np.testing.assert_allclose(q["grad"], -2 * cov @ b, rtol=1e-4, atol=1e-5)


def test_reference_instance_is_the_authors_draw():
    rng = np.random.RandomState(0)
    theta0_ref, b_ref = rng.randn(10), np.abs(rng.randn(10))
    theta0, b = prob.reference_instance()
    np.testing.assert_allclose(theta0, theta0_ref, rtol=1e-6)
    np.testing.assert_allclose(b, b_ref, rtol=1e-6)
    assert np.all(b > 0) and np.any(theta0 != 0)
    np.testing.assert_array_equal(prob.make_theta0("reference"), theta0)
    np.testing.assert_array_equal(prob.make_theta0("zeros"), np.zeros(10))
    np.testing.assert_array_equal(prob.make_b("reference"), b)
    np.testing.assert_array_equal(prob.make_b("library"), prob.library_b())
    # The authors' closed form of min_z ||z - b||^2 (the largest five b_i set to one).
    sb = np.sort(b_ref)
    loss_min = np.sum(sb[:5] ** 2) + np.sum((sb[5:] - 1) ** 2)
    assert prob.make_problem(b=b).loss_min == pytest.approx(loss_min, rel=1e-5)
    with pytest.raises(ValueError, match="theta0"):
        prob.make_theta0("ones")
    with pytest.raises(ValueError, match="b must be"):
        prob.make_b("random")


def test_reference_preset_field_by_field():
    cfg = cli.config("reference")
    assert (cfg["m"], cfg["k"], cfg["seed"], cfg["momentum"]) == (10, 5, 0, 0.9)
    assert (cfg["theta0"], cfg["b"], cfg["grid"]) == ("reference", "reference", "reference")
    assert (cfg["record"], cfg["negative_gap_rule"], cfg["scalings"]) == (
        "before_update",
        True,
        ["paper"],
    )
    imle, ss = cfg["imle"], cfg["ste_sfe"]
    np.testing.assert_allclose(imle["lams"], [0.5, 1.0, 1.5, 2.0, 2.5, 3.0])
    np.testing.assert_allclose(imle["lrs"], [0.5, 0.625, 0.75, 0.875, 1.0])
    assert (imle["runs"], imle["steps"]) == (100, 50)
    np.testing.assert_allclose(ss["ste_lrs"], np.exp(np.linspace(np.log(1e-3), np.log(0.2), 10)))
    np.testing.assert_allclose(ss["sfe_lrs"], np.exp(np.linspace(np.log(1e-4), np.log(0.1), 10)))
    assert (ss["ste_runs"], ss["ste_steps"], ss["sfe_runs"], ss["sfe_steps"]) == (100, 50, 20, 500)
    c = cfg["curves"]
    assert (c["imle"]["noise"], c["imle"]["lam"], c["imle"]["lr"]) == ("sog", 2.0, 0.75)
    assert (c["ste"]["noise"], c["ste"]["lr"], c["sfe"]["lr"]) == ("gumbel", 0.019, 0.0046)
    assert (c["imle"]["runs"], c["ste"]["runs"], c["sfe"]["runs"], c["sfe"]["steps"]) == (
        100,
        100,
        20,
        500,
    )
    assert cfg["ablation"]["compare_at"] == 49 == cli.final_step(cfg, 50)
    assert est.make_noise("sog", 5) == ij.sog(k=5, tau=1.0, terms=10)
    assert est.make_noise("gumbel", 5) == ij.gumbel(1.0)
    assert cfg["stages"] == ["imle", "ste_sfe", "curves", "ablation"]


def test_library_preset_and_one_change_at_a_time():
    cfg = cli.config("library")
    assert (cfg["theta0"], cfg["b"], cfg["grid"], cfg["record"]) == (
        "zeros",
        "library",
        "library",
        "after_update",
    )
    assert cfg["scalings"] == ["paper", "library"] and cli.final_step(cfg, 50) == 50
    assert cfg["imle"]["lams"] == [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]
    assert cfg["imle"]["lrs"] == [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5]
    assert (cfg["imle"]["runs"], cfg["ste_sfe"]["sfe_runs"], cfg["curves"]) == (100, 20, "best")
    changed = cli.config("reference", theta0="zeros")
    assert (changed["theta0"], changed["b"], changed["grid"]) == ("zeros", "reference", "reference")
    changed = cli.config("reference", grid="library")
    assert changed["imle"]["lrs"] == cfg["imle"]["lrs"] and changed["theta0"] == "reference"
    assert cli.config("library", b="reference")["b"] == "reference"
    with pytest.raises(ValueError, match="grid"):
        cli.config("reference", grid="wide")
    with pytest.raises(ValueError, match="preset"):
        cli.config("paper")


@pytest.mark.parametrize("noise", est.NOISES)
def test_library_imle_is_paper_formula_over_lam(pb, noise):
    theta = jax.random.normal(jax.random.key(2), (10,))
    lib = est.imle_gradient(pb, est.make_noise(noise, 5))
    paper = est.paper_imle_gradient(pb, est.make_noise(noise, 5))

    @jax.jit
    def both(key, lam):
        return lam * lib(key, theta, lam, pb.b), paper(key, theta, lam, pb.b)

    for lam in (0.5, 20.0):
        for i in range(5):
            scaled, direct = both(jax.random.key(10 + i), lam)
            np.testing.assert_allclose(scaled, direct, atol=1e-5)


def test_lr_times_lam_reproduces_the_paper_update():
    """SGD with lr * lam on the library estimate equals SGD with lr on the paper's estimate,
    from the authors' theta_0 and b (traced arguments of the shared runner)."""
    theta0, b = prob.reference_instance()
    pb = prob.make_problem(b=b)
    lams, lrs, runs, steps = [1.0, 10.0], [0.1, 1.0], 4, 5  # the smoke grid's shapes
    runner = train.grid_runner(pb, "imle", "sog", steps)
    curves = train.run_grid(
        pb, None, lams, lrs, runs=runs, steps=steps, seed=3, theta0=theta0, lr_times_lam=True,
        runner=runner,
    )  # fmt: skip
    paper = jax.jit(est.paper_imle_gradient(pb, est.make_noise("sog", 5)))
    lam, lr = lams[1], lrs[0]
    for r, key in enumerate(train.run_keys(3, runs)):
        theta, velocity = jnp.asarray(theta0), jnp.zeros(10)
        np.testing.assert_allclose(curves[1, 0, r, 0], prob.expected_loss(pb, theta), rtol=1e-5)
        for step_key in jax.random.split(key, steps):
            velocity = paper(step_key, theta, lam, pb.b) + train.MOMENTUM * velocity
            theta = theta - lr * velocity
        np.testing.assert_allclose(curves[1, 0, r, -1], prob.expected_loss(pb, theta), rtol=1e-4)


def test_optimality_gap_and_the_negative_gap_rule():
    curves = np.array([[3.0, 2.5, 2.0, 1.9], [3.0, 2.0, 0.9, 0.5]])  # loss_min = 1
    gaps, negative = train.optimality_gap(curves.copy(), 1.0, final_step=2)
    np.testing.assert_allclose(gaps, [[2.0, 1.5, 1.0], [2.0, 1.0, 4.0]])  # 0.9 - 1 < 0 -> 5 - 1
    assert negative == 1
    gaps, negative = train.optimality_gap(curves.copy(), 1.0, final_step=3)
    np.testing.assert_allclose(gaps[:, -1], [0.9, 4.0])
    assert negative == 1


def test_compare_noises_counts_and_tests():
    rng = np.random.default_rng(0)
    n = 100
    sog = rng.normal(0.0, 1.0, (2, 3, n))
    gum = rng.normal(0.0, 1.0, (2, 3, n))
    sog[0, 0] -= 1.0  # SoG clearly lower in mean
    gum[1, 2] *= 3.0  # Gumbel clearly more variable
    sog[1, 1], gum[1, 1] = 2.0, 2.0  # constant: no test
    c = cli.compare_noises({"final": sog.tolist()}, {"final": gum.tolist()})
    assert c["cells"] == 6
    p = np.asarray(c["p_mean"])
    assert p[0, 0] == pytest.approx(stats.ttest_ind(sog[0, 0], gum[0, 0], equal_var=False).pvalue)
    welch = stats.ttest_ind(sog[1, 2], gum[1, 2], equal_var=False).pvalue
    assert p[1, 2] == pytest.approx(welch, rel=1e-9)
    assert welch != pytest.approx(stats.ttest_ind(sog[1, 2], gum[1, 2]).pvalue, rel=1e-6)
    assert p[0, 0] < 1e-6 and p[1, 1] == 1.0
    assert c["sog_lower_mean_significant"] >= 1 and c["sog_lower_std_significant"] >= 1
    pv = np.asarray(c["p_std"])
    assert pv[1, 2] == pytest.approx(stats.levene(sog[1, 2], gum[1, 2], center="median").pvalue)
    # The other cells differ by chance only: at 5% each, 4 null cells rarely reach 3 rejections
    # (probability below 5e-4 per test).
    assert c["gumbel_lower_mean_significant"] + c["sog_lower_mean_significant"] <= 3
    assert c["sog_lower_mean"] + c["gumbel_lower_mean"] == 5


def _check_run(out, summary, preset, figures=True):
    for stage in ("imle", "ste_sfe", "curves", "ablation"):
        assert (out / f"synthetic_{stage}.json").exists()
    for name in ("imle", "ste_sfe", "ablation"):
        assert (out / f"synthetic_{name}.csv").stat().st_size > 0
    for fig in ("fig5_mean", "fig6_std", "fig8_ste_sfe", "fig3_curves", "ablation"):
        assert (out / f"synthetic_{fig}.png").exists() == figures
        assert not figures or (out / f"synthetic_{fig}.png").stat().st_size > 1000
    hi = summary["problem"]["loss_max"] - summary["problem"]["loss_min"]
    imle = json.loads((out / "synthetic_imle.json").read_text())["results"]
    cfg = cli.config(preset)
    for noise in est.NOISES:
        mean = np.asarray(imle["paper"][noise]["final_mean"])
        assert mean.shape == (2, 2) and np.all((mean >= 0) & (mean <= hi + 1e-4))
        assert np.all(np.asarray(imle["paper"][noise]["final_std"]) >= 0)
        assert len(imle["paper"][noise]["curve_mean"][0][0]) == cli.final_step(cfg, 5) + 1
    ablation = json.loads((out / "synthetic_ablation.json").read_text())["results"]["rows"]
    assert {(r["theta0"], r["b"], r["grid"]) for r in ablation} == {
        (t, b, g) for t in prob.THETA0S for b in prob.BS for g in cli.GRID_NAMES
    }
    assert set(summary["claims"]) == {
        "sog_lower_loss",
        "sog_lower_variance",
        "ste_worse",
        "sfe_slower",
    }


def test_smoke_runs_write_sane_outputs_and_resume(tmp_path):
    out = tmp_path / "library"
    summary = cli.main(["--smoke", "--out", str(out), "--publish", str(tmp_path / "docs")])
    _check_run(out, summary, "smoke")
    assert (out / "synthetic_fig5_mean_library_scaling.png").stat().st_size > 1000
    assert summary["problem"]["loss_at_zero"] == summary["problem"]["loss_at_theta0"]
    assert set(summary["sog_vs_gumbel"]) == {"paper", "library"}
    assert (tmp_path / "docs" / "figures" / "synthetic_smoke_fig5_mean.png").exists()
    assert (tmp_path / "docs" / "results" / "synthetic_smoke_summary.json").exists()

    ref = tmp_path / "reference"  # the figures are drawn by the same code as above
    summary = cli.main(["--preset", "smoke-reference", "--out", str(ref), "--no-figures"])
    _check_run(ref, summary, "smoke-reference", figures=False)
    assert set(summary["sog_vs_gumbel"]) == {"paper"}
    assert summary["setting"]["theta0"] == "reference" and summary["setting"]["b"] == "reference"
    curves = json.loads((ref / "synthetic_curves.json").read_text())["results"]
    assert (curves["imle"]["lam"], curves["imle"]["lr"], curves["ste"]["lr"]) == (2.0, 0.75, 0.019)
    assert len(curves["sfe"]["curve_mean"]) == 5  # gaps before each of the 5 updates

    # A second run resumes: every stage is loaded, none is recomputed.
    again = cli.main(["--smoke", "--out", str(out)])
    assert again["skipped_stages"] == ["imle", "ste_sfe", "curves", "ablation"]


@pytest.mark.slow
def test_runtime_and_quality_stages(tmp_path):
    out = tmp_path / "synthetic"
    cli.main(["--smoke", "--out", str(out), "--stages", "runtime", "quality"])
    runtime = json.loads((out / "synthetic_runtime.json").read_text())["results"]
    assert all(r["sample_mean"] > 0 for r in runtime["dp"] + runtime["perturb_and_map"])
    quality = json.loads((out / "synthetic_quality.json").read_text())["results"]
    cos = np.asarray(quality["imle"]["sog"]["cosine"])
    assert cos.shape == (2, 2) and np.all(np.abs(cos) <= 1 + 1e-6)
    assert quality["check_gradient"][0]["estimator"] == "SFE"
    assert 0 <= quality["forward"]["tv_faithful"] <= 1
    for fig in ("fig7_runtime", "quality"):
        assert (out / f"synthetic_{fig}.png").stat().st_size > 1000
    assert (out / "synthetic_quality.csv").stat().st_size > 0
