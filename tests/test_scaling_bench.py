"""The scaling benchmark and the HLO evidence script run end to end on tiny problems (timings are
not asserted). The benchmark starts one process per device count; run by ``nox -s distributed``."""

import pytest

from experiments.benchmarks import scaling, sharding_hlo

pytestmark = pytest.mark.distributed


def test_scaling_bench_divides_the_oracle_work(tmp_path, capsys):
    out = tmp_path / "scaling.json"
    tiny = ["--batch", "8", "--m", "12", "--k", "2", "--samples", "2", "--repeats", "1"]
    result = scaling.main([*tiny, "--devices", "1,2", "--json", str(out)])
    assert "oracle rows per device" in capsys.readouterr().out
    rows = {r["devices"]: r for r in result["rows"]}
    # Each device's TopK calls solve its shard of the 8 instances times 2 samples.
    assert rows[1]["oracle_rows_per_device"] == [16, 16]
    assert rows[2]["oracle_rows_per_device"] == [8, 8]
    assert rows[2]["collectives"]["all-gather"] == 0
    assert all(r["bit_identical_to_one_device"] for r in result["rows"])
    assert out.exists()


@pytest.mark.parametrize("oracle", ["top_k", "host"])
def test_sharding_hlo_evidence(oracle):
    result = sharding_hlo.evidence(oracle, batch=16, m=12, k=3, samples=2)
    assert result["bit_identical_to_one_device"]
    rows = 16 // result["devices"] * 2
    calls = result["oracle_calls"]
    assert calls and all(c["operand"].startswith("f32[") for c in calls)
    assert sum(result["collectives"].values()) == 0
    if oracle == "top_k":
        assert [int(c["operand"][4:].split(",")[0]) for c in calls] == [rows] * len(calls)
    assert result["lines"]
