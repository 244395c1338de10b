"""The quick-start demo runs end to end on a few steps and writes its outputs."""

import json

from experiments import demo


def test_demo_smoke(tmp_path):
    summary = demo.main(["--steps", "3", "--out", str(tmp_path)])
    assert (tmp_path / "loss.png").stat().st_size > 0
    assert (tmp_path / "metrics.csv").read_text().startswith("method,step")
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["data"].startswith("generated")
    assert set(saved["methods"]) == set(summary["methods"]) and len(saved["methods"]) == 3
    for res in saved["methods"].values():
        assert 0.0 <= res["final_test_overlap"] <= 1.0
