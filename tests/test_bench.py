"""The benchmark script runs end to end on a tiny problem (timings are not asserted)."""

import json

import jax
import pytest

from experiments.benchmarks import imle_bench

TINY = ["--batch", "4", "--m", "20", "--k", "2", "--samples", "2", "--repeats", "2"]


@pytest.mark.parametrize("oracle", ["top_k", "argmax"])
def test_bench_runs_and_reports_ratios(tmp_path, capsys, oracle):
    out = tmp_path / "bench.json"
    imle_bench.main([*TINY, "--oracle", oracle, "--json", str(out)])
    printed = capsys.readouterr().out
    assert "gradient / (2S oracle + noise)" in printed
    result = json.loads(out.read_text())
    assert set(result["ratios"]) >= {
        "forward / (S oracle + noise)",
        "SoG (table) / Gumbel sampling",
        "oracle on theta + eps / on S copies of theta",
    }
    assert all(v > 0 for v in result["ratios"].values())


def test_bench_baseline_solves_the_transforms_inputs():
    """The bare oracle calls are checked to solve what the transform solves; a baseline on other
    inputs is refused."""
    fns = imle_bench.build(4, 20, 2, 3, lam=10.0)
    jitted = [jax.jit(fns[n][0]) for n in ("oracle_S", "forward", "gradient")]
    imle_bench.check_baseline(*jitted, fns, lam=10.0)
    with pytest.raises(AssertionError, match="theta - lam"):
        imle_bench.check_baseline(*jitted, fns, lam=5.0)
    copies = dict(fns, oracle_S=(fns["oracle_S"][0], fns["oracle_S_copies"][1]))
    with pytest.raises(AssertionError, match="theta \\+ eps"):
        imle_bench.check_baseline(*jitted, copies, lam=10.0)


def test_noise_cost_runs_and_reports_every_sampler(tmp_path, capsys):
    from experiments.benchmarks import noise_cost

    out = tmp_path / "noise.json"
    noise_cost.main(["--sizes", "4000", "--repeats", "2", "--json", str(out)])
    assert "ns/element" in capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    assert {r["sampler"] for r in rows} == set(noise_cost.samplers())
    assert {r["elements"] for r in rows} == {4000}
    assert all(r["ns_per_element"]["median"] > 0 for r in rows)
