"""The shortest-path benchmark runs end to end on tiny grids (timings are not asserted)."""

import json

import numpy as np
import pytest

from experiments.benchmarks import sp_bench


def test_sp_bench_runs_and_reports(tmp_path, capsys):
    out = tmp_path / "sp.json"
    tiny = ["--sizes", "5", "--batch", "3", "--repeats", "2", "--kinds", "uniform"]
    sp_bench.main([*tiny, "--json", str(out)])
    assert "x py np" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert [(r["kind"], r["k"]) for r in result["rows"]] == [("uniform", 5)]
    for row in result["rows"]:
        assert set(row["times"]) == {
            "native",
            "native, lax.map",
            "scipy host",
            "python (numpy)",
            "python (lists)",
        }
        assert all(v > 0 for key, v in row.items() if key.startswith("speedup"))
        assert 1 <= row["rounds_min"] <= row["rounds_mean"] <= row["rounds_max"] <= 25


def test_sp_bench_baselines_agree_with_the_oracle_and_detect_a_wrong_path():
    costs = sp_bench.make_costs("warcraft", 4, 6, seed=1)
    assert set(np.unique(costs)) <= set(np.float32(sp_bench.WARCRAFT_COSTS))
    results = {
        "native": np.asarray(sp_bench.build(costs)["native"][0](costs)),
        "scipy host": np.stack([sp_bench.scipy_path(w) for w in costs]),
        "python (numpy)": sp_bench.numpy_loop(costs),
        "python (lists)": sp_bench.python_loop(costs),
    }
    sp_bench.check_paths(results, costs)
    wrong = dict(results, **{"python (lists)": np.ones_like(results["python (lists)"])})
    with pytest.raises(AssertionError, match="python \\(lists\\) returns paths of another"):
        sp_bench.check_paths(wrong, costs)
