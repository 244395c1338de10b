"""The benchmark script runs end to end on a tiny problem (timings are not asserted)."""

import json

from experiments.benchmarks import imle_bench


def test_bench_runs_and_reports_ratios(tmp_path, capsys):
    out = tmp_path / "bench.json"
    imle_bench.main(
        [
            "--batch",
            "4",
            "--m",
            "20",
            "--k",
            "2",
            "--samples",
            "2",
            "--repeats",
            "2",
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert "gradient / (2S oracle + noise)" in printed
    result = json.loads(out.read_text())
    assert set(result["ratios"]) >= {
        "forward / (S oracle + noise)",
        "SoG (table) / Gumbel sampling",
    }
    assert all(v > 0 for v in result["ratios"].values())
